"""The HTTP side: ``POST /webhook`` (Alertmanager, bearer token), ``GET /metrics``, ``GET /healthz``.

A webhook is answered as soon as its alerts are in the database, before any playbook runs:
Alertmanager never waits on an action, and an alert that got a 2xx survives a crash.
Whatever else arrives (another content type, a body shorter than its Content-Length, JSON nested
too deep, an object that is no Alertmanager v4 payload) gets a 4xx and a log line, never a
dropped connection; a client that drops its own connection is one line in the log.
"""

from __future__ import annotations

import hmac
import json
import logging
import socket
import ssl
import sys
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
        timeout = 30  # a client that stops sending mid-request is let go

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
                self.close_connection = True  # a body of unknown length may follow
                return self._refuse(411, "Content-Length required")
            if int(length) > MAX_WEBHOOK:
                self.close_connection = True
                return self._refuse(413, f"body over {MAX_WEBHOOK} bytes")
            try:
                body = self.rfile.read(int(length))
            except TimeoutError:
                body = b""
            if len(body) < int(length):
                self.close_connection = True
                return self._refuse(400, f"body ends after {len(body)} of {length} bytes")
            given = (self.headers.get("Authorization") or "").encode()
            if not hmac.compare_digest(given, expected):
                log.warning("webhook from %s refused: %s", self.client_address[0],
                            "no bearer token" if not given else "wrong bearer token")
                return self._reply(401, {"error": "bearer token required"})
            content_type = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
            if content_type != "application/json":
                return self._refuse(415, f"content type {content_type or 'none'!r}, expected 'application/json'")
            try:
                document = json.loads(body)
            except RecursionError:
                return self._refuse(400, "body is JSON nested too deep")
            except ValueError as exc:
                return self._refuse(400, f"body is not JSON: {exc}")
            try:
                counts = engine.intake(document)
            except PayloadError as exc:
                return self._refuse(400, str(exc))
            return self._reply(200, counts)

        def _refuse(self, code: int, why: str) -> None:
            log.warning("webhook from %s refused: %s", self.client_address[0], why)
            self._reply(code, {"error": why})

        def log_message(self, fmt, *args):
            log.debug("http %s " + fmt, self.client_address[0], *args)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        allow_reuse_address = True

        def handle_error(self, request, client_address):
            error = sys.exc_info()[1]
            if isinstance(error, (ConnectionError, TimeoutError, ssl.SSLError)):  # the client's doing: no traceback
                log.info("http: connection from %s ended: %s", client_address[0], error.__class__.__name__)
            else:
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
