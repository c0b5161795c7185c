"""API token: the SDK with DAPR_API_TOKEN works; calls without or with a wrong token are refused; the
Shutdown RPC is accepted."""
import os

import grpc
from common import check, expect_rpc_error, http
from dapr.clients import DaprClient
from dapr.proto import api_service_v1, api_v1

with DaprClient() as d:  # picks DAPR_API_TOKEN from the environment
    d.save_state("statestore", "k", "v")
    check("sdk with token", d.get_state("statestore", "k").data == b"v")

stub = api_service_v1.DaprStub(grpc.insecure_channel(f"127.0.0.1:{os.environ['DAPR_GRPC_PORT']}"))
get = api_v1.GetStateRequest(store_name="statestore", key="k")
expect_rpc_error("grpc without token", lambda: stub.GetState(get), "UNAUTHENTICATED", "dapr-api-token")
expect_rpc_error("grpc wrong token", lambda: stub.GetState(get, metadata=(("dapr-api-token", "nope"),)), "UNAUTHENTICATED", "does not match")
check("http without token", http("GET", "/v1.0/state/statestore/k")[0] == 401)
check("http healthz needs no token", http("GET", "/v1.0/healthz")[0] == 204)
check("http with token", http("GET", "/v1.0/state/statestore/k", headers={"dapr-api-token": os.environ["DAPR_API_TOKEN"]})[0] == 200)
with DaprClient() as d:
    d.shutdown()
print("ALL OK")
