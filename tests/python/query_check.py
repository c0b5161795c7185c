"""QueryStateAlpha1 through the official Dapr Python SDK (gRPC) and the HTTP API.

QUERY_STORES names the query-capable state stores to check (space-separated); QUERY_UNSUPPORTED
names a store without query support."""
import json
import os
import uuid

from common import check, expect_rpc_error, http
from dapr.clients import DaprClient

stores = os.environ.get("QUERY_STORES", "statestore").split()
unsupported = os.environ.get("QUERY_UNSUPPORTED")

# Dapr's documentation data set, keyed under a per-run namespace so reruns against a shared
# PostgreSQL do not see each other's rows.
run = uuid.uuid4().hex[:8]
employees = {
    "1": {"person": {"org": "Dev Ops", "id": 1036}, "city": "Seattle", "state": "WA"},
    "2": {"person": {"org": "Hardware", "id": 1028}, "city": "Portland", "state": "OR"},
    "3": {"person": {"org": "Finance", "id": 1071}, "city": "Sacramento", "state": "CA"},
    "4": {"person": {"org": "Dev Ops", "id": 1042}, "city": "Spokane", "state": "WA"},
    "5": {"person": {"org": "Dev Ops", "id": 1007}, "city": "Seattle", "state": "WA"},
    "6": {"person": {"org": "Finance", "id": 1094}, "city": "Los Angeles", "state": "CA"},
}

with DaprClient() as d:
    for store in stores:
        for k, v in employees.items():
            d.save_state(store, f"{run}-{k}", json.dumps({**v, "run": run}))
        d.save_state(store, f"{run}-binary", b"\x00\x01 not json")

        mine = {"EQ": {"run": run}}
        q = {
            "filter": {"AND": [mine, {"OR": [{"EQ": {"person.org": "Dev Ops"}}, {"IN": {"state": ["CA"]}}]}]},
            "sort": [{"key": "state", "order": "DESC"}, {"key": "person.id"}],
            "page": {"limit": 3},
        }
        page = d.query_state(store, json.dumps(q))
        keys = [r.key for r in page.results]
        want = [f"{run}-5", f"{run}-1", f"{run}-4"]
        check(f"{store}: filter, sort and first page", keys == want, f"{keys} != {want}")
        check(f"{store}: results carry JSON values and etags", page.results[0].json()["city"] == "Seattle" and all(r.etag for r in page.results), page.results[0])
        check(f"{store}: a first page has a token", bool(page.token), page.token)
        q["page"]["token"] = page.token
        page2 = d.query_state(store, json.dumps(q))
        keys2 = [r.key for r in page2.results]
        check(f"{store}: second page", keys2 == [f"{run}-3", f"{run}-6"] and not page2.token, f"{keys2} token={page2.token!r}")

        ranged = {"filter": {"AND": [mine, {"GTE": {"person.id": 1036}}, {"LT": {"person.id": 1071}}]}, "sort": [{"key": "person.id"}]}
        got = [r.key for r in d.query_state(store, json.dumps(ranged)).results]
        check(f"{store}: range on a number", got == [f"{run}-1", f"{run}-4"], got)

        status, _, body = http("POST", f"/v1.0-alpha1/state/{store}/query", {"filter": {"AND": [mine, {"EQ": {"city": "Seattle"}}]}, "sort": [{"key": "person.id"}]})
        doc = json.loads(body or b"{}")
        check(f"{store}: HTTP query", status == 200 and [r["key"] for r in doc.get("results", [])] == [f"{run}-5", f"{run}-1"]
              and doc["results"][0]["data"]["person"]["id"] == 1007 and "token" not in doc, f"{status} {body!r}")

        expect_rpc_error(f"{store}: unknown operator is INVALID_ARGUMENT", lambda: d.query_state(store, '{"filter": {"LIKE": {"a": "b"}}}'), "INVALID_ARGUMENT", "LIKE", store)
        expect_rpc_error(f"{store}: malformed JSON is INVALID_ARGUMENT", lambda: d.query_state(store, "{not json"), "INVALID_ARGUMENT", "not JSON")
        status, _, body = http("POST", f"/v1.0-alpha1/state/{store}/query", {"sort": [{"key": "a", "order": "sideways"}]})
        check(f"{store}: HTTP bad query is 400 naming it", status == 400 and b"ERR_MALFORMED_REQUEST" in body and b"sort[0]" in body, f"{status} {body!r}")

        for k in list(employees) + ["binary"]:
            d.delete_state(store, f"{run}-{k}")

    if unsupported:
        expect_rpc_error("store without query support is UNIMPLEMENTED naming it", lambda: d.query_state(unsupported, "{}"), "UNIMPLEMENTED", unsupported)
    expect_rpc_error("unknown store", lambda: d.query_state("nope", "{}"), "INVALID_ARGUMENT", "nope")

print("ALL OK")
