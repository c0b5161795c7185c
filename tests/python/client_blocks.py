"""Every building block through the official Dapr Python SDK (gRPC), plus one bad request per API.

Expects components: statestore (state.in-memory), pubsub, configstore (configuration.in-memory),
lockstore, localsecretstore (secretstores.local.file with {"db": {"password": "s3cret"}}) and
files (bindings.localstorage)."""
import os
from datetime import datetime, timezone

import grpc
from common import check, eventually, expect_rpc_error, http
from dapr.clients import DaprClient
from dapr.clients.grpc._request import TransactionalStateOperation, TransactionOperationType
from dapr.clients.grpc._state import Concurrency, StateItem, StateOptions
from dapr.proto import api_service_v1, api_v1

# The raw stub, for requests the SDK would refuse to send.
channel = grpc.insecure_channel(f"127.0.0.1:{os.environ['DAPR_GRPC_PORT']}")
stub = api_service_v1.DaprStub(channel)

with DaprClient() as d:
    # --- state
    d.save_state("statestore", "k1", "v1")
    got = d.get_state("statestore", "k1")
    check("state save/get", got.data == b"v1" and got.etag, f"{got.data!r} etag={got.etag!r}")
    etag = got.etag
    d.save_state("statestore", "k1", "v2", etag=etag)
    expect_rpc_error("state stale etag is ABORTED", lambda: d.save_state("statestore", "k1", "v3", etag=etag), "ABORTED", "k1")
    first = StateOptions(concurrency=Concurrency.first_write)
    expect_rpc_error("state first-write on existing key", lambda: d.save_state("statestore", "k1", "x", options=first), "ABORTED")
    d.save_bulk_state("statestore", [StateItem("b1", "one"), StateItem("b2", "two")])
    bulk = d.get_bulk_state("statestore", ["b1", "b2", "missing"]).items
    check("state bulk read", [(i.key, i.data) for i in bulk] == [("b1", b"one"), ("b2", b"two"), ("missing", b"")], bulk)
    d.execute_state_transaction(
        "statestore",
        [
            TransactionalStateOperation(key="t1", data="tx"),
            TransactionalStateOperation(key="b1", data="", operation_type=TransactionOperationType.delete),
        ],
    )
    check("state transaction", d.get_state("statestore", "t1").data == b"tx" and d.get_state("statestore", "b1").data == b"")
    d.save_state("statestore", "ttl", "gone-soon", state_metadata={"ttlInSeconds": "1"})
    check("state ttl set", d.get_state("statestore", "ttl").data == b"gone-soon")
    eventually("state ttl expires", lambda: d.get_state("statestore", "ttl").data == b"", timeout=5)
    # The SDK's StateResponse drops response metadata; ask the raw stub.
    d.save_state("statestore", "ttl-info", "v", state_metadata={"ttlInSeconds": "3600"})
    r = stub.GetState(api_v1.GetStateRequest(store_name="statestore", key="ttl-info"))
    expire = datetime.strptime(r.metadata.get("ttlExpireTime", ""), "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    left = (expire - datetime.now(timezone.utc)).total_seconds()
    check("GetState answers ttlExpireTime (RFC 3339)", 3500 < left <= 3600, dict(r.metadata))
    r = stub.GetBulkState(api_v1.GetBulkStateRequest(store_name="statestore", keys=["ttl-info", "k1"]))
    check("GetBulkState answers ttlExpireTime for keys with a TTL only", "ttlExpireTime" in r.items[0].metadata and not r.items[1].metadata, r.items)
    d.delete_state("statestore", "k1")
    check("state delete", d.get_state("statestore", "k1").data == b"")
    expect_rpc_error("state unknown store", lambda: d.get_state("nostore", "k"), "INVALID_ARGUMENT", "nostore", "statestore")
    expect_rpc_error("state empty key", lambda: d.save_state("statestore", "", "v"), "INVALID_ARGUMENT", "key is empty")
    bad_op = TransactionalStateOperation(key="", data="x")
    expect_rpc_error("state malformed transaction", lambda: d.execute_state_transaction("statestore", [bad_op]), "INVALID_ARGUMENT", "key is empty")

    # --- pub/sub (delivery is covered by the app test)
    d.publish_event("pubsub", "nobody-listens", '{"a": 1}', data_content_type="application/json")
    check("pubsub publish", True)
    expect_rpc_error("pubsub unknown", lambda: d.publish_event("nopubsub", "t", "x"), "INVALID_ARGUMENT", "nopubsub")
    expect_rpc_error("pubsub empty topic", lambda: d.publish_event("pubsub", "", "x"), "INVALID_ARGUMENT", "topic is empty")

    # --- configuration: get, subscribe, see an update written through the HTTP extension
    status, _, _ = http("POST", "/v1.0/configuration/configstore", {"color": "red", "size": "L"})
    check("configuration seed", status == 204, status)
    items = d.get_configuration("configstore", ["color"]).items
    check("configuration get", items["color"].value == "red" and "size" not in items, items)
    seen = []
    sub_id = d.subscribe_configuration("configstore", ["color"], lambda _id, resp: seen.append(resp))
    check("configuration subscribe id", bool(sub_id), sub_id)
    http("POST", "/v1.0/configuration/configstore", {"color": "blue"})
    eventually("configuration update seen", lambda: any("color" in r.items and r.items["color"].value == "blue" for r in seen))
    check("configuration unsubscribe", d.unsubscribe_configuration("configstore", sub_id) is True)
    expect_rpc_error("configuration unknown store", lambda: d.get_configuration("nocfg", ["a"]), "INVALID_ARGUMENT", "nocfg")

    # --- lock: two clients contend for one resource
    with DaprClient() as other:
        a = d.try_lock("lockstore", "res", "owner-a", 60)
        b = other.try_lock("lockstore", "res", "owner-b", 60)
        check("lock first owner wins", a.success and not b.success, (a.success, b.success))
        check("lock non-owner unlock refused", other.unlock("lockstore", "res", "owner-b").status.name == "lock_belongs_to_others")
        check("lock owner unlock", d.unlock("lockstore", "res", "owner-a").status.name == "success")
        check("lock second owner then wins", other.try_lock("lockstore", "res", "owner-b", 60).success)
    expect_rpc_error("lock empty resource", lambda: stub.TryLockAlpha1(api_v1.TryLockRequest(store_name="lockstore", resource_id="", lock_owner="o", expiry_in_seconds=5)), "INVALID_ARGUMENT", "resource id is empty")

    # --- secrets from a local file store
    sec = d.get_secret("localsecretstore", "db:password").secret
    check("secret from local file", sec == {"db:password": "s3cret"}, sec)
    check("bulk secret", "db:password" in d.get_bulk_secret("localsecretstore").secrets)
    expect_rpc_error("secret unknown store", lambda: d.get_secret("novault", "x"), "INVALID_ARGUMENT", "novault")
    expect_rpc_error("secret missing", lambda: d.get_secret("localsecretstore", "nope"), "NOT_FOUND", "nope")

    # --- output binding
    d.invoke_binding("files", "create", "hello", binding_metadata={"fileName": "greeting.txt"})
    resp = d.invoke_binding("files", "get", binding_metadata={"fileName": "greeting.txt"})
    check("binding create/get", resp.data == b"hello", resp.data)
    expect_rpc_error("binding bad operation", lambda: d.invoke_binding("files", "explode"), "INVALID_ARGUMENT", "explode", "create")

    # --- metadata
    d.set_metadata("team", "runtime")
    md = d.get_metadata()
    names = {c.name: c.type for c in md.registered_components}
    check("metadata components", names.get("statestore") == "state.in-memory" and "lockstore" in names, names)
    check("metadata extended", md.extended_metadata.get("team") == "runtime", md.extended_metadata)

    # --- an RPC oxidecar does not serve names itself
    expect_rpc_error("unimplemented names rpc", lambda: stub.GetJobAlpha1(api_v1.GetJobRequest(name="x")), "UNIMPLEMENTED", "GetJobAlpha1")

    # --- the sidecar still serves after all the bad requests
    d.save_state("statestore", "after", "still-serving")
    check("still serving", d.get_state("statestore", "after").data == b"still-serving")
print("ALL OK")
