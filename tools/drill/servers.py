"""The drill's in-process HTTP servers: synthetic exporters and the notification capture server.

Both listen on 127.0.0.1 on a port the kernel picks, and both read the scenario clock, so that
what they do (serve a metric value, answer 500, vanish) follows the scenario's timeline.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Iterable

from tools.drill.deployed_config import Endpoint
from tools.drill.scenarios import ExporterOutage, ReceiverOutage
from tools.drill.timeline import Series, exposition
from tools.drill.verdict import Captured


class ScenarioClock:
    """Scenario time: real (uncompressed) seconds since t = 0, running `factor` times faster than the wall."""

    def __init__(self, factor: float):
        self.factor = factor
        self.origin_epoch = time.time()
        self._origin_monotonic = time.monotonic()

    def start_now(self, lead_in: float = 0.0) -> None:
        """Put t = 0 `lead_in` wall seconds from now (until then, time is negative)."""
        self.origin_epoch = time.time() + lead_in
        self._origin_monotonic = time.monotonic() + lead_in

    def wall_elapsed(self) -> float:
        return time.monotonic() - self._origin_monotonic

    def now(self) -> float:
        return self.wall_elapsed() * self.factor

    def epoch_of(self, scenario_seconds: float) -> float:
        """Unix time at which the scenario reaches `scenario_seconds` (negative: history)."""
        return self.origin_epoch + scenario_seconds / self.factor


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: object, client_address: object) -> None:
        # A scrape or notification abandoned mid-answer (timeout, shutdown, a played outage)
        # is part of the drill, not an error worth a traceback.
        pass


class _Served:
    """A ThreadingHTTPServer on 127.0.0.1:<free port> in a daemon thread."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]):
        self.server = _QuietServer(("127.0.0.1", 0), handler)
        self.server.owner = self  # type: ignore[attr-defined]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host}:{port}"

    def start(self) -> "_Served":
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(BaseHTTPRequestHandler):
    def reply(self, status: int, body: bytes, content_type: str = "text/plain") -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


class _ExporterHandler(_QuietHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        exporter: SyntheticExporter = self.server.owner  # type: ignore[attr-defined]
        t = exporter.clock.now()
        if any(o.contains(t) for o in exporter.outages):
            # The exporter is gone: drop the connection without an answer.
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.reply(200, exposition(exporter.series, t, exporter.clock.epoch_of).encode(), "text/plain; version=0.0.4")


class SyntheticExporter(_Served):
    """Serves one scrape target's series at any path, valued at the current scenario time."""

    def __init__(self, job: str, target: str, series: Iterable[Series], clock: ScenarioClock,
                 outages: Iterable[ExporterOutage]):
        self.job, self.target = job, target
        self.series = list(series)
        self.clock = clock
        self.outages = [o for o in outages if o.job == job]
        super().__init__(_ExporterHandler)


class _CaptureHandler(_QuietHandler):
    def do_POST(self) -> None:  # noqa: N802
        capture: CaptureServer = self.server.owner  # type: ignore[attr-defined]
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = raw.decode(errors="replace")
        endpoint = capture.endpoints.get(self.path)
        t = capture.clock.now()
        status = 404
        if endpoint is not None:
            outage = next((o for o in capture.outages if o.receiver == endpoint.receiver and o.contains(t)), None)
            status = outage.status if outage else (202 if endpoint.integration == "pagerduty" else 200)
            capture.record(Captured(capture.clock.wall_elapsed(), endpoint.receiver, endpoint.integration, body, status))
        if status == 202:  # PagerDuty Events API v2's answer to an accepted event
            reply = {"status": "success", "message": "Event processed",
                     "dedup_key": body.get("dedup_key") if isinstance(body, dict) else None}
            self.reply(status, json.dumps(reply).encode(), "application/json")
        else:
            self.reply(status, b"ok" if status == 200 else b"drill: receiver unavailable")


class CaptureServer(_Served):
    """Stands in for PagerDuty's Events API v2 and Mattermost's (Slack-compatible) webhooks."""

    def __init__(self, clock: ScenarioClock, outages: Iterable[ReceiverOutage]):
        self.clock = clock
        self.outages = list(outages)
        self.endpoints: dict[str, Endpoint] = {}
        self._lock = threading.Lock()
        self._captured: list[Captured] = []
        super().__init__(_CaptureHandler)

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    def record(self, captured: Captured) -> None:
        with self._lock:
            self._captured.append(captured)

    def captured(self) -> list[Captured]:
        with self._lock:
            return list(self._captured)
