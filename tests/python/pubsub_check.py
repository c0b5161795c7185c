"""Publishes to the topics subscriber_app.py serves and checks, through the state it records, that the
CloudEvent arrived, RETRY redelivered, and DROP / exhausted retries went to the dead-letter topic."""
import json

from common import check, eventually, http
from dapr.clients import DaprClient

with DaprClient() as d:
    eventually(
        "app subscriptions registered",
        lambda: {s["topic"] for s in json.loads(http("GET", "/v1.0/metadata")[2])["subscriptions"]}
        >= {"orders", "raw", "flaky", "poison", "stubborn", "deadletters"},
        timeout=30,
    )
    d.publish_event("pubsub", "orders", json.dumps({"order": 7}), data_content_type="application/json")
    raw = eventually("orders delivered", lambda: d.get_state("statestore", "got-orders").data)
    ev = json.loads(raw)
    check("cloudevent specversion", ev["specversion"] == "1.0", ev)
    check("cloudevent type", ev["type"] == "com.dapr.event.sent", ev)
    check("cloudevent source is the publisher app id", ev["source"] == "pubsub-app", ev)
    check("cloudevent id", len(ev["id"]) == 36, ev)
    check("cloudevent data", json.loads(ev["data"]) == {"order": 7}, ev)
    check("cloudevent datacontenttype", ev["datacontenttype"] == "application/json", ev)
    ext = ev["extensions"]
    check("cloudevent extensions", ext.get("pubsubname") == "pubsub" and ext.get("topic") == "orders" and ext.get("traceparent", "").startswith("00-"), ext)

    payload = b'\x00{"not": "a cloudevent"}\xff'
    d.publish_event("pubsub", "raw", payload, data_content_type="application/x-custom", publish_metadata={"rawPayload": "true"})
    got = json.loads(eventually("rawPayload delivered", lambda: d.get_state("statestore", "got-raw").data))
    check("rawPayload: the app gets the published bytes, no envelope", bytes.fromhex(got["data"]) == payload, got)
    check("rawPayload: the publisher's content type", got["datacontenttype"] == "application/x-custom", got)

    d.publish_event("pubsub", "flaky", "f")
    n = eventually("retry redelivers", lambda: d.get_state("statestore", "flaky-attempts").data)
    check("retry count", n == b"3", n)

    d.publish_event("pubsub", "poison", "p1")
    eventually("drop goes to the dead-letter topic", lambda: d.get_state("statestore", "dead-p1").data)

    d.publish_event("pubsub", "stubborn", "s1")
    tries = eventually("exhausted retries go to the dead-letter topic", lambda: d.get_state("statestore", "dead-s1").data)
    check("stubborn retried 5 times before dead-lettering", tries == b"5", tries)
print("ALL OK")
