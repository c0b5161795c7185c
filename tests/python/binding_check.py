"""Checks that the cron input binding `cron-tick` (schedule @every 1s) reaches subscriber_app.py's
`@app.binding("cron-tick")` handler through AppCallback.OnBindingEvent, more than once."""
from common import check, eventually
from dapr.clients import DaprClient

with DaprClient() as d:
    n = eventually("cron events delivered twice", lambda: int(d.get_state("statestore", "binding-cron-tick").data or b"0") >= 2, timeout=20)
    check("OnBindingEvent called repeatedly", n, n)
print("ALL OK")
