"""Publishes DATA (comma-separated messages) to TOPIC on PUBSUB with the Dapr SDK, as text."""
import os
import warnings

warnings.filterwarnings("ignore")

from dapr.clients import DaprClient

with DaprClient() as d:
    for data in os.environ["DATA"].split(","):
        d.publish_event(os.environ["PUBSUB"], os.environ["TOPIC"], data, data_content_type="text/plain")
print("ALL OK")
