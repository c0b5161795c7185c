"""Declarative Subscription resources (dapr.io/v2alpha1, from --resources-path) delivered to
http_app.py: routing rules and default route, dead-letter topic, scopes; and the cron input binding
POSTing to the route in its metadata."""
import json

from common import check, eventually, http


def topics():
    return {s["topic"]: s for s in json.loads(http("GET", "/v1.0/metadata")[2])["subscriptions"]}


subs = eventually("declarative subscriptions active", lambda: "decl" in topics() and topics(), timeout=30)
check("declared routes listed", [r["path"] for r in subs["decl"]["rules"]] == ["/widgets", "/nowhere", "/orders"], subs["decl"])
check("declared dead-letter topic listed", subs["decl"]["deadLetterTopic"] == "decl-dead", subs["decl"])
check("subscription scoped to another app is not active", "decl-other" not in subs, sorted(subs))
check("app's own subscriptions still active", "http-orders" in subs, sorted(subs))

check("publish plain", http("POST", "/v1.0/publish/pubsub/decl", {"kind": "plain"})[0] == 204)
ev = json.loads(eventually("default route", lambda: http("GET", "/v1.0/state/statestore/http-orders-decl")[2]))
check("default route got the cloudevent", ev["data"] == {"kind": "plain"} and ev["topic"] == "decl", ev)

widget = {"specversion": "1.0", "id": "dw1", "source": "test", "type": "widget", "datacontenttype": "application/json", "data": {"w": 1}}
http("POST", "/v1.0/publish/pubsub/decl", json.dumps(widget).encode(), {"Content-Type": "application/cloudevents+json"})
ev = json.loads(eventually("rule route", lambda: http("GET", "/v1.0/state/statestore/http-widgets-decl")[2]))
check("rule matched event.type", ev["id"] == "dw1", ev)

http("POST", "/v1.0/publish/pubsub/decl", {"kind": "poison"})
ev = json.loads(eventually("dead-letter topic", lambda: http("GET", "/v1.0/state/statestore/http-orders-decl-dead")[2]))
check("dropped event went to the declared dead-letter topic", ev["data"] == {"kind": "poison"}, ev)

n = eventually("cron binding POSTs to its route", lambda: json.loads(http("GET", "/v1.0/state/statestore/http-cron")[2] or b"0") >= 2, timeout=20)
check("cron fired repeatedly", n, n)
print("ALL OK")
