"""A gRPC app built with dapr.ext.grpc.App. It records what it receives in the sidecar's state store
(key = topic) so a separate checker script can see deliveries.

orders: accepts; flaky: RETRY twice then SUCCESS; poison: DROP (dead letter -> deadletters);
stubborn: always RETRY (dead letter -> deadletters); raw: records the bytes of rawPayload events.
Input binding cron-tick: counts its events (key binding-cron-tick)."""
import json
import os
import warnings

warnings.filterwarnings("ignore")

from dapr.clients import DaprClient
from dapr.clients.grpc._response import TopicEventResponse
from dapr.ext.grpc import App

app = App()
client = DaprClient()
attempts = {"flaky": 0, "stubborn": 0, "cron-tick": 0}


def record(key, event):
    data = event.Data()
    body = {
        "id": event.EventID(),
        "source": event.Source(),
        "type": event.EventType(),
        "specversion": event.CloudEventVersion(),
        "datacontenttype": event.ContentType(),
        "data": data.decode() if isinstance(data, bytes) else data,
        "extensions": {k: str(v) for k, v in (event.Extensions() or {}).items() if not k.startswith("_metadata_")},
    }
    client.save_state("statestore", key, json.dumps(body))


@app.subscribe(pubsub_name="pubsub", topic="orders")
def orders(event):
    record("got-orders", event)
    return TopicEventResponse("success")


@app.subscribe(pubsub_name="pubsub", topic="raw")
def raw(event):
    client.save_state("statestore", "got-raw", json.dumps({"data": event.Data().hex(), "datacontenttype": event.ContentType()}))
    return TopicEventResponse("success")


@app.subscribe(pubsub_name="pubsub", topic="flaky")
def flaky(event):
    attempts["flaky"] += 1
    if attempts["flaky"] <= 2:
        return TopicEventResponse("retry")
    client.save_state("statestore", "flaky-attempts", str(attempts["flaky"]))
    return TopicEventResponse("success")


@app.subscribe(pubsub_name="pubsub", topic="poison", dead_letter_topic="deadletters")
def poison(event):
    return TopicEventResponse("drop")


@app.subscribe(pubsub_name="pubsub", topic="stubborn", dead_letter_topic="deadletters")
def stubborn(event):
    attempts["stubborn"] += 1
    return TopicEventResponse("retry")


@app.subscribe(pubsub_name="pubsub", topic="deadletters")
def dead(event):
    data = event.Data().decode() if isinstance(event.Data(), bytes) else str(event.Data())
    client.save_state("statestore", "dead-" + data, str(attempts["stubborn"]))
    return TopicEventResponse("success")


@app.binding("cron-tick")
def cron_tick(request):
    attempts["cron-tick"] += 1
    client.save_state("statestore", "binding-cron-tick", str(attempts["cron-tick"]))


app.run(int(os.environ["APP_PORT"]))
