"""What /metrics serves, and the HTTP server that serves it."""

import gzip
import http.server
import socket
import sys
import threading
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.process_collector import ProcessCollector

from .problems import ConfigError, log


class _Families:
    """A collector of fixed families, so the encoders can render them."""

    def __init__(self, families):
        self.families = families

    def collect(self):
        return iter(self.families)


class Exposition:
    """What /metrics serves: the last poll's families, rendered once per
    format (and gzipped once), then the exporter's own process metrics,
    rendered per scrape.  Rendering ~50 jobs' series on every scrape cost
    ~10 ms of CPU, more on a busy host."""

    def __init__(self, exporter):
        self.exporter = exporter
        self.process = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.process)
        self.lock = threading.Lock()
        self.rendered_for = None
        self.cache = {}

    def _jobs(self, encoder, gzipped):
        families = self.exporter.families
        with self.lock:
            if self.rendered_for is not families:
                self.rendered_for, self.cache = families, {}
            key = (encoder, gzipped)
            if key not in self.cache:
                # OpenMetrics ends with one "# EOF": the process part's.
                body = encoder(_Families(families)).removesuffix(b"# EOF\n")
                self.cache[key] = gzip.compress(body) if gzipped else body
            return self.cache[key]

    def render(self, accept, accept_encoding):
        """(body, content type, gzipped) for a scrape's Accept headers."""
        encoder, content_type = choose_encoder(accept)
        gzipped = gzip_accepted(accept_encoding)
        process = encoder(self.process)
        # Two gzip members make one valid gzip stream (RFC 1952 2.2).
        return (self._jobs(encoder, gzipped)
                + (gzip.compress(process) if gzipped else process),
                content_type, gzipped)


class _Handler(http.server.BaseHTTPRequestHandler):
    exposition = None  # set per server

    def do_GET(self):
        path = urlsplit(self.path).path
        encoding = None
        if path == "/metrics":
            status = 200
            body, content_type, gzipped = self.exposition.render(
                self.headers.get("Accept"),
                self.headers.get("Accept-Encoding"))
            encoding = "gzip" if gzipped else None
        elif path == "/":
            status, content_type = 200, "text/html"
            body = (b"<html><body><h1>PBS job exporter</h1>"
                    b'<a href="/metrics">/metrics</a></body></html>\n')
        else:
            status, content_type, body = 404, "text/plain", b"not found\n"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def start_server(address, exposition):
    host, port = address
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise ConfigError(f"--listen {host}:{port}: {exc.strerror}") from None

    class Server(http.server.ThreadingHTTPServer):
        address_family = family
        daemon_threads = True

        def handle_error(self, request, client_address):
            # A scraper that hangs up mid-answer is not worth a traceback.
            log.debug("serving %s: %s", client_address, sys.exc_info()[1])

    handler = type("Handler", (_Handler,), {"exposition": exposition})
    try:
        server = Server((host, port), handler)
    except OSError as exc:
        raise ConfigError(f"--listen {host}:{port}: cannot listen: "
                          f"{exc.strerror}") from None
    threading.Thread(target=server.serve_forever, name="http",
                     daemon=True).start()
    return server

