"""An HTTP app: declares subscriptions on GET /dapr/subscribe, accepts POSTed CloudEvents and
configuration updates, and answers service invocations. It records what it receives in the sidecar's
state store over the HTTP API."""
import json
import os
import warnings
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

warnings.filterwarnings("ignore")
from common import http  # noqa: E402

SUBSCRIPTIONS = [
    {"pubsubname": "pubsub", "topic": "http-orders", "route": "/orders"},
    {"pubsubname": "pubsub", "topic": "http-raw", "route": "/raw"},
    {
        "pubsubname": "pubsub",
        "topic": "http-routed",
        "routes": {"rules": [{"match": 'event.type == "widget"', "path": "/widgets"}], "default": "/orders"},
    },
]


TICKS = []


def save(key, value):
    http("POST", "/v1.0/state/statestore", [{"key": key, "value": value}])


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body=b"", ctype="application/json"):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path == "/dapr/subscribe":
            return self.reply(200, json.dumps(SUBSCRIPTIONS).encode())
        if self.path.startswith("/echo"):
            return self.reply(200, json.dumps({"path": self.path}).encode())
        self.reply(404)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if self.path in ("/orders", "/widgets"):
            ev = json.loads(body)
            save("http-" + self.path.strip("/") + "-" + ev["topic"], ev)
            return self.reply(200, b'{"status": "SUCCESS"}')
        if self.path == "/cron-route":
            TICKS.append(1)
            save("http-cron", len(TICKS))
            return self.reply(200)
        if self.path == "/raw":
            save("http-raw", {"body": body.hex(), "ct": self.headers.get("Content-Type", "")})
            return self.reply(200, b'{"status": "SUCCESS"}')
        if self.path.startswith("/configuration/"):
            save("http-config-update", json.loads(body))
            return self.reply(200)
        if self.path.startswith("/echo"):
            return self.reply(200, json.dumps({"path": self.path, "body": body.decode()}).encode())
        self.reply(404)


ThreadingHTTPServer(("127.0.0.1", int(os.environ["APP_PORT"])), Handler).serve_forever()
