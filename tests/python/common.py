"""Helpers shared by the oxidecar runtime API test scripts (run against a live sidecar).

The sidecar's ports come from DAPR_GRPC_PORT / DAPR_HTTP_PORT, as for any Dapr app."""
import json
import os
import sys
import time
import urllib.error
import urllib.request
import warnings

warnings.filterwarnings("ignore")

HTTP = f"http://127.0.0.1:{os.environ.get('DAPR_HTTP_PORT', '3500')}"


def check(name, cond, detail=""):
    if not cond:
        print(f"FAIL {name}: {detail}", flush=True)
        sys.exit(1)
    print(f"OK {name}", flush=True)


def eventually(name, fn, timeout=15.0, interval=0.05):
    """Polls fn() until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # keep polling: the condition may not hold yet
            last = e
        time.sleep(interval)
    print(f"FAIL {name}: not true within {timeout}s (last: {last!r})", flush=True)
    sys.exit(1)


def http(method, path, body=None, headers=None):
    """Returns (status, headers, body bytes) for a call to the sidecar's HTTP API."""
    data = None
    hdrs = dict(headers or {})
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(HTTP + path, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, {k.lower(): v for k, v in r.headers.items()}, r.read()
    except urllib.error.HTTPError as e:
        return e.code, {k.lower(): v for k, v in e.headers.items()}, e.read()


def expect_rpc_error(name, fn, code_name, *needles):
    """Calls fn() and checks it fails with the gRPC code and a message containing every needle."""
    import grpc

    try:
        fn()
    except grpc.RpcError as e:
        msg = e.details() or ""
        ok = e.code().name == code_name and all(n in msg for n in needles)
        check(name, ok, f"got {e.code().name}: {msg!r}, want {code_name} with {needles}")
        return
    except Exception as e:  # the SDK may wrap the gRPC error
        msg = str(e)
        ok = code_name.lower() in msg.lower().replace(" ", "_") and all(n in msg for n in needles)
        check(name, ok, f"got {type(e).__name__}: {msg!r}, want {code_name} with {needles}")
        return
    check(name, False, "call succeeded, expected an error")
