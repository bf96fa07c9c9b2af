"""The HTTP side: ``POST /webhook`` (Alertmanager, bearer token), ``GET /metrics``, ``GET /healthz``.

A webhook is answered as soon as its alerts are in the database, before any playbook runs:
Alertmanager never waits on an action, and an alert that got a 2xx survives a crash.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import ssl
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from .engine import Engine
from .errors import PayloadError

log = logging.getLogger("recovery")
MAX_WEBHOOK = 2**20


def split_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


def make_server(engine: Engine, listen: str, token: str, cert: str | None = None, key: str | None = None) -> ThreadingHTTPServer:
    metrics = engine.metrics
    expected = f"Bearer {token}".encode()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "recovery"

        def _send(self, code: int, body: bytes, content_type: str = "application/json") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _reply(self, code: int, document: dict) -> None:
            metrics.webhooks.labels(str(code)).inc()
            self._send(code, json.dumps(document).encode())

        def do_GET(self):
            if self.path == "/metrics":
                self._send(200, generate_latest(metrics.registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                self._send(200, b'{"status": "ok"}')
            else:
                self._send(404, b'{"error": "not found"}')

        def do_POST(self):
            if self.path != "/webhook":
                return self._reply(404, {"error": "not found"})
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                return self._reply(411, {"error": "Content-Length required"})
            if int(length) > MAX_WEBHOOK:
                self.close_connection = True
                return self._reply(413, {"error": f"body over {MAX_WEBHOOK} bytes"})
            body = self.rfile.read(int(length))
            given = (self.headers.get("Authorization") or "").encode()
            if not hmac.compare_digest(given, expected):
                log.warning("webhook from %s refused: %s", self.client_address[0],
                            "no bearer token" if not given else "wrong bearer token")
                return self._reply(401, {"error": "bearer token required"})
            try:
                document = json.loads(body)
                counts = engine.intake(document)
            except (ValueError, PayloadError) as exc:
                log.warning("webhook from %s refused: %s", self.client_address[0], exc)
                return self._reply(400, {"error": str(exc)})
            return self._reply(200, counts)

        def log_message(self, fmt, *args):
            log.debug("http %s " + fmt, self.client_address[0], *args)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

        def handle_error(self, request, client_address):
            log.warning("http: connection from %s failed", client_address[0], exc_info=True)

    host, port = split_listen(listen)
    if ":" in host:
        Server.address_family = socket.AF_INET6
    server = Server((host, port), Handler)
    if cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        server.socket = context.wrap_socket(server.socket, server_side=True)
    return server
