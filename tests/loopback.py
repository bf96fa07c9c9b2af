"""A threaded HTTP server on 127.0.0.1 for the fakes: started in a daemon thread, stopped cleanly."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request, client_address):
        pass  # a client that gave up (a timeout under test) is expected, not a traceback


def start_http(handler: type[BaseHTTPRequestHandler], port: int = 0) -> QuietServer:
    server = QuietServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return server


def stop_http(server: QuietServer | None) -> None:
    if server is not None:
        server.shutdown()
        server.server_close()
