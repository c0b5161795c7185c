"""The HTTP API (/v1.0/...) for every block, with bad requests, against a sidecar whose app is
http_app.py."""
import json

from common import check, eventually, http

# --- health
check("healthz", http("GET", "/v1.0/healthz")[0] == 204)
check("healthz outbound", http("GET", "/v1.0/healthz/outbound")[0] == 204)

# --- state
s, _, _ = http("POST", "/v1.0/state/statestore", [{"key": "h1", "value": {"n": 1}}])
check("state save", s == 204, s)
s, h, body = http("GET", "/v1.0/state/statestore/h1")
check("state get", s == 200 and json.loads(body) == {"n": 1} and h.get("etag"), (s, body, h))
etag = h["etag"]
s, _, _ = http("POST", "/v1.0/state/statestore", [{"key": "h1", "value": 2, "etag": etag}])
check("state save with etag", s == 204, s)
s, _, body = http("POST", "/v1.0/state/statestore", [{"key": "h1", "value": 3, "etag": etag}])
check("state stale etag is 409", s == 409 and b"h1" in body, (s, body))
s, _, body = http("POST", "/v1.0/state/statestore/bulk", {"keys": ["h1", "nope"]})
items = json.loads(body)
check("state bulk", items[0]["data"] == 2 and items[0]["etag"] and "data" not in items[1], items)
ops = {"operations": [{"operation": "upsert", "request": {"key": "h2", "value": "x"}}, {"operation": "delete", "request": {"key": "h1"}}]}
check("state transaction", http("POST", "/v1.0/state/statestore/transaction", ops)[0] == 204)
check("state transaction applied", http("GET", "/v1.0/state/statestore/h1")[0] == 204 and http("GET", "/v1.0/state/statestore/h2")[2] == b'"x"')
s, _, _ = http("DELETE", "/v1.0/state/statestore/h2", headers={"If-Match": "999999"})
check("state delete stale etag is 409", s == 409, s)
check("state delete", http("DELETE", "/v1.0/state/statestore/h2")[0] == 204)
http("POST", "/v1.0/state/statestore", [{"key": "h-ttl", "value": 1, "metadata": {"ttlInSeconds": "600"}}])
s, h, _ = http("GET", "/v1.0/state/statestore/h-ttl")
check("state get: ttlExpireTime header", s == 200 and h.get("metadata.ttlexpiretime", "").endswith("Z"), h)
s, _, body = http("POST", "/v1.0/state/statestore/bulk", {"keys": ["h-ttl"]})
check("state bulk: ttlExpireTime metadata", json.loads(body)[0]["metadata"]["ttlExpireTime"].endswith("Z"), body)
s, _, body = http("GET", "/v1.0/state/nostore/k")
err = json.loads(body)
check("state unknown store", s == 400 and err["errorCode"] == "ERR_STATE_STORE_NOT_FOUND" and "nostore" in err["message"], (s, err))
s, _, body = http("POST", "/v1.0/state/statestore", [{"key": "", "value": 1}])
check("state empty key", s == 400 and b"key is empty" in body, (s, body))
s, _, body = http("POST", "/v1.0/state/statestore/transaction", {"operations": [{"operation": "merge", "request": {"key": "a"}}]})
check("state malformed transaction", s == 400 and b"merge" in body, (s, body))
s, _, body = http("POST", "/v1.0/state/statestore", b"{not json")
check("state malformed body", s == 400 and b"ERR_MALFORMED_REQUEST" in body, (s, body))

# --- pub/sub to the HTTP app (routes and rules from GET /dapr/subscribe)
eventually("http app subscriptions", lambda: {s["topic"] for s in json.loads(http("GET", "/v1.0/metadata")[2])["subscriptions"]} >= {"http-orders", "http-routed", "http-raw"}, timeout=30)
check("publish", http("POST", "/v1.0/publish/pubsub/http-orders", {"order": 1})[0] == 204)
ev = json.loads(eventually("http delivery", lambda: http("GET", "/v1.0/state/statestore/http-orders-http-orders")[2]))
check("http cloudevent", ev["data"] == {"order": 1} and ev["specversion"] == "1.0" and ev["pubsubname"] == "pubsub", ev)
raw = b'{"specversion": "1.0", "but": "sent raw"}\x00'
s, _, _ = http("POST", "/v1.0/publish/pubsub/http-raw?metadata.rawPayload=true", raw, {"Content-Type": "text/plain"})
check("publish rawPayload", s == 204, s)
got = json.loads(eventually("rawPayload delivery", lambda: http("GET", "/v1.0/state/statestore/http-raw")[2]))
check("rawPayload: the HTTP app gets the bytes as published", bytes.fromhex(got["body"]) == raw, got)
check("rawPayload: the publisher's content type", got["ct"] == "text/plain", got)
widget = {"specversion": "1.0", "id": "w1", "source": "test", "type": "widget", "datacontenttype": "application/json", "data": {"w": 1}}
s, _, _ = http("POST", "/v1.0/publish/pubsub/http-routed", json.dumps(widget).encode(), {"Content-Type": "application/cloudevents+json"})
check("publish cloudevent", s == 204, s)
ev = json.loads(eventually("routing rule match", lambda: http("GET", "/v1.0/state/statestore/http-widgets-http-routed")[2]))
check("routed cloudevent kept its id", ev["id"] == "w1", ev)
http("POST", "/v1.0/publish/pubsub/http-routed", {"plain": True})
eventually("routing default", lambda: http("GET", "/v1.0/state/statestore/http-orders-http-routed")[0] == 200)
s, _, body = http("POST", "/v1.0/publish/nopubsub/t", {"a": 1})
check("publish unknown pubsub", s == 400 and b"ERR_PUBSUB_NOT_FOUND" in body, (s, body))
entries = [{"entryId": "1", "event": {"a": 1}, "contentType": "application/json"}, {"entryId": "2", "event": "txt", "contentType": "text/plain"}]
check("bulk publish", http("POST", "/v1.0-alpha1/publish/bulk/pubsub/nobody", entries)[0] == 204)

# --- configuration (updates are POSTed to the app)
http("POST", "/v1.0/configuration/configstore", {"mode": "a"})
s, _, body = http("GET", "/v1.0/configuration/configstore?key=mode")
check("configuration get", s == 200 and json.loads(body)["mode"]["value"] == "a", (s, body))
s, _, body = http("GET", "/v1.0-alpha1/configuration/configstore/subscribe?key=mode")
sub_id = json.loads(body)["id"]
check("configuration subscribe", s == 200 and sub_id, (s, body))
http("POST", "/v1.0/configuration/configstore", {"mode": "b"})
upd = json.loads(eventually("configuration update posted to the app", lambda: http("GET", "/v1.0/state/statestore/http-config-update")[2]))
check("configuration update content", upd["id"] == sub_id and upd["items"]["mode"]["value"] == "b", upd)
s, _, body = http("GET", f"/v1.0/configuration/configstore/{sub_id}/unsubscribe")
check("configuration unsubscribe", json.loads(body)["ok"] is True, body)
check("configuration unknown store", http("GET", "/v1.0/configuration/nocfg?key=a")[0] == 400)

# --- lock
lock = lambda owner: json.loads(http("POST", "/v1.0-alpha1/lock/lockstore", {"resourceId": "r", "lockOwner": owner, "expiryInSeconds": 30})[2])
check("lock contention", lock("a")["success"] is True and lock("b")["success"] is False)
unlock = lambda owner: json.loads(http("POST", "/v1.0-alpha1/unlock/lockstore", {"resourceId": "r", "lockOwner": owner})[2])["status"]
check("unlock by non-owner refused", unlock("b") == 2)
check("unlock by owner", unlock("a") == 0)
s, _, body = http("POST", "/v1.0-alpha1/lock/lockstore", {"resourceId": "", "lockOwner": "a", "expiryInSeconds": 3})
check("lock empty resource", s == 400 and b"resource id is empty" in body, (s, body))

# --- secrets
s, _, body = http("GET", "/v1.0/secrets/localsecretstore/db:password")
check("secret", s == 200 and json.loads(body) == {"db:password": "s3cret"}, (s, body))
check("bulk secret", "db:password" in json.loads(http("GET", "/v1.0/secrets/localsecretstore/bulk")[2]))
check("secret unknown store", http("GET", "/v1.0/secrets/novault/x")[0] == 400)

# --- bindings
s, _, _ = http("POST", "/v1.0/bindings/files", {"operation": "create", "data": "hi", "metadata": {"fileName": "h.txt"}})
check("binding create", s == 204, s)
s, _, body = http("POST", "/v1.0/bindings/files", {"operation": "get", "metadata": {"fileName": "h.txt"}})
check("binding get", s == 200 and body == b"hi", (s, body))
check("binding unknown", http("POST", "/v1.0/bindings/nobinding", {"operation": "create"})[0] == 400)

# --- service invocation to the local app
s, _, body = http("POST", "/v1.0/invoke/http-app/method/echo?x=1", b"ping", {"Content-Type": "text/plain"})
check("invoke", s == 200 and json.loads(body) == {"path": "/echo?x=1", "body": "ping"}, (s, body))
s, _, body = http("GET", "/v1.0/invoke/other-app/method/echo")
check("invoke unknown app", s == 500 and b"other-app" in body, (s, body))

# --- metadata
check("set metadata", http("PUT", "/v1.0/metadata/owner", b"team-a")[0] == 204)
md = json.loads(http("GET", "/v1.0/metadata")[2])
check("metadata", md["id"] == "http-app" and md["extended"]["owner"] == "team-a" and any(c["name"] == "statestore" for c in md["components"]), md)

# --- still serving
check("still serving", http("GET", "/v1.0/healthz")[0] == 204)
print("ALL OK")
