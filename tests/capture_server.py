"""A capture server on 127.0.0.1 for what the recovery service sends to people.

``POST /hooks/<id>`` answers like a Mattermost incoming webhook (200, ``ok``); ``POST /v2/enqueue``
like PagerDuty's Events API v2 (202 ``{"status": "success", "message": "Event processed",
"dedup_key": ...}``, 400 ``invalid event`` for an event without routing_key, event_action or,
on a trigger, payload.summary/source/severity). ``fault[path] = code`` answers that code instead.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler

from tests.loopback import start_http, stop_http


class Capture:
    def __init__(self):
        self.lock = threading.Lock()
        self.posts: list[tuple[str, dict]] = []
        self.fault: dict[str, int] = {}
        self.server = None

    def chat(self) -> list[dict]:
        with self.lock:
            return [body for path, body in self.posts if path.startswith("/hooks/")]

    def pages(self) -> list[dict]:
        with self.lock:
            return [body for path, body in self.posts if path == "/v2/enqueue"]

    def start(self) -> int:
        capture = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                try:
                    body = json.loads(raw)
                except ValueError:
                    body = {"unparsable": raw.decode("utf-8", "replace")}
                code = capture.fault.get(self.path)
                if code is None:
                    with capture.lock:
                        capture.posts.append((self.path, body))
                if self.path == "/v2/enqueue":
                    code, answer = code or 202, self.pagerduty(body)
                    if "errors" in answer:
                        code = 400
                elif self.path.startswith("/hooks/"):
                    code, answer = code or 200, "ok"
                else:
                    code, answer = 404, "not found"
                payload = (json.dumps(answer) if isinstance(answer, dict) else answer).encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            @staticmethod
            def pagerduty(body: dict) -> dict:
                errors = [f"'{k}' is missing" for k in ("routing_key", "event_action") if not body.get(k)]
                if body.get("event_action") == "trigger":
                    payload = body.get("payload") or {}
                    errors += [f"'payload.{k}' is missing" for k in ("summary", "source", "severity") if not payload.get(k)]
                if errors:
                    return {"status": "invalid event", "message": "Event object is invalid", "errors": errors}
                return {"status": "success", "message": "Event processed", "dedup_key": body.get("dedup_key", "")}

            def log_message(self, *args):
                pass

        self.server = start_http(Handler)
        return self.server.server_address[1]

    def stop(self):
        stop_http(self.server)
        self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"
