"""Publishes to TOPIC on `redispubsub` (pubsub.redis behind a relay the test cuts) in one of three
PHASEs and prints `ACKED <data>` for every publish the sidecar acknowledged:

before: the subscription is registered; 10 publishes succeed.
down:   (relay cut) a publish fails with UNAVAILABLE naming the component within the component's
        timeout (1 s) plus slack, three times in a row; the sidecar stays healthy and its other
        components (statestore) keep working.
after:  (relay restored) publishes succeed again; 10 more; then every message acknowledged in any
        phase (ACKED from the earlier phases plus this one's) has reached the app."""
import json
import os
import time

from common import check, eventually, expect_rpc_error, http
from dapr.clients import DaprClient

TOPIC = os.environ["TOPIC"]
PHASE = os.environ["PHASE"]
acked = [a for a in os.environ.get("ACKED", "").split(",") if a]


def publish(d, data):
    d.publish_event("redispubsub", TOPIC, data, data_content_type="text/plain")
    acked.append(data)
    print(f"ACKED {data}", flush=True)


with DaprClient() as d:
    if PHASE == "before":
        eventually(
            "app subscription registered",
            lambda: any(s["topic"] == TOPIC for s in json.loads(http("GET", "/v1.0/metadata")[2])["subscriptions"]),
            timeout=30,
        )
        for i in range(10):
            publish(d, f"before-{i}")
        eventually("a message published before the outage is delivered", lambda: d.get_state("statestore", "got-before-0").data, timeout=20)
    elif PHASE == "down":
        for i in range(3):
            start = time.monotonic()
            expect_rpc_error(f"publish {i} while Redis is unreachable", lambda: publish(d, f"down-{i}"), "UNAVAILABLE", "redispubsub")
            took = time.monotonic() - start
            check(f"publish {i} failed within the component's timeout (took {took:.2f}s)", took < 3.0, took)
        status = http("GET", "/v1.0/healthz")[0]
        check("the sidecar stays healthy", status == 204, status)
        d.save_state("statestore", "during-outage", "still here")
        check("other components keep working", d.get_state("statestore", "during-outage").data == b"still here")
    elif PHASE == "after":
        def first_publish():
            try:
                publish(d, "after-first")
                return True
            except Exception:  # still reconnecting: try again until the deadline
                return False

        eventually("publishing works again after the relay is restored", first_publish, timeout=20, interval=0.2)
        for i in range(10):
            publish(d, f"after-{i}")

        def missing():
            keys = ["got-" + a for a in acked]
            got = {item.key for item in d.get_bulk_state("statestore", keys).items if item.data}
            return [a for a in acked if "got-" + a not in got]

        deadline = time.monotonic() + 40
        while missing() and time.monotonic() < deadline:
            time.sleep(0.2)
        check("every acknowledged message is delivered (before, and after the outage)", not missing(), f"missing {missing()}")
        check("acknowledged before and after the outage", any(a.startswith("before-") for a in acked) and "after-9" in acked, acked)
    else:
        check("known PHASE", False, PHASE)
print("ALL OK")
