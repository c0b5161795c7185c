"""A gRPC app (dapr.ext.grpc.App) for the inbound Resiliency tests: it appends one JSON line per
delivery attempt to the file LOG ({"kind", "topic", "data", "t", "answer"}; t is time.time() when
the attempt arrived) so the test can count attempts and measure their spacing.

pubsub/flaky:    each message fails 3 times (RETRY, an exception, RETRY) and then succeeds.
pubsub/stubborn: each message fails 8 times (more than one run of the retry policy), then succeeds.
pubsub/slow:     the first attempt of each message takes 3 s; later ones answer at once.
pubsub/dropped:  always DROP.
cbpubsub/fragile: RETRY while the file BROKEN exists, success otherwise.
cron-inbound (input binding): the first two events fail with an exception, later ones succeed."""
import json
import os
import threading
import time
import warnings

warnings.filterwarnings("ignore")

from dapr.clients.grpc._response import TopicEventResponse
from dapr.ext.grpc import App

app = App()
LOG = os.environ["LOG"]
BROKEN = os.environ["BROKEN"]
lock = threading.Lock()
seen = {}


def attempt(kind, topic, data, answer):
    """Records one attempt; returns its number for this (topic, data), from 1."""
    with lock:
        n = seen[(topic, data)] = seen.get((topic, data), 0) + 1
        with open(LOG, "a") as f:
            f.write(json.dumps({"kind": kind, "topic": topic, "data": data, "t": time.time(), "n": n, "answer": answer(n)}) + "\n")
        return n


def text(event):
    data = event.Data()
    return data.decode() if isinstance(data, bytes) else str(data)


def failing(times):
    return lambda n: "fail" if n <= times else "success"


@app.subscribe(pubsub_name="pubsub", topic="flaky")
def flaky(event):
    n = attempt("event", "flaky", text(event), failing(3))
    if n == 2:
        raise RuntimeError("flaky handler failed")
    return TopicEventResponse("retry" if n <= 3 else "success")


@app.subscribe(pubsub_name="pubsub", topic="stubborn")
def stubborn(event):
    n = attempt("event", "stubborn", text(event), failing(8))
    return TopicEventResponse("retry" if n <= 8 else "success")


@app.subscribe(pubsub_name="pubsub", topic="slow")
def slow(event):
    n = attempt("event", "slow", text(event), lambda n: "slow" if n == 1 else "success")
    if n == 1:
        time.sleep(3)
    return TopicEventResponse("success")


@app.subscribe(pubsub_name="pubsub", topic="dropped")
def dropped(event):
    attempt("event", "dropped", text(event), lambda n: "drop")
    return TopicEventResponse("drop")


@app.subscribe(pubsub_name="cbpubsub", topic="fragile")
def fragile(event):
    broken = os.path.exists(BROKEN)
    attempt("event", "fragile", text(event), lambda n: "fail" if broken else "success")
    return TopicEventResponse("retry" if broken else "success")


@app.binding("cron-inbound")
def cron(request):
    n = attempt("binding", "cron-inbound", "", failing(2))
    if n <= 2:
        raise RuntimeError("binding handler failed")


app.run(int(os.environ["APP_PORT"]))
