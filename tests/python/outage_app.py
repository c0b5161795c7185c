"""A gRPC app (dapr.ext.grpc.App) subscribed to TOPIC on the `redispubsub` component; it records each
message it accepts in the sidecar's `statestore` (key `got-<data>`) so outage_check.py can see
which published messages arrived."""
import os
import warnings

warnings.filterwarnings("ignore")

from dapr.clients import DaprClient
from dapr.clients.grpc._response import TopicEventResponse
from dapr.ext.grpc import App

app = App()
client = DaprClient()


@app.subscribe(pubsub_name="redispubsub", topic=os.environ["TOPIC"])
def on_message(event):
    data = event.Data()
    data = data.decode() if isinstance(data, bytes) else str(data)
    client.save_state("statestore", "got-" + data, "1")
    return TopicEventResponse("success")


app.run(int(os.environ["APP_PORT"]))
