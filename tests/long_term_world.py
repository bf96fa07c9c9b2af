"""Prometheus remote-writing to single-node VictoriaMetrics (both from `make upstream`) on 127.0.0.1, with the
stack's rendered remote-write (build/<stack>/prometheus/remote-write.yaml) and its rendered
long-term alerts (prometheus/rules/long-term.yaml, durations compressed by `factor` as the drill
compresses them). Single-node VictoriaMetrics speaks the same remote-write and Prometheus query
API as the cluster's vminsert and vmselect; only the URL differs (no /insert/0/prometheus, no
/select/0/prometheus), and that is the one change made to the rendered remote-write.

Used by tests/values/test_long_term_metrics.py, tests/services/test_report.py (the report read from the store) and
benchmarks/bench_remote_write_catch_up.py.
"""

from __future__ import annotations

import json
import time
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import yaml

from tests.loopback import start_http, stop_http
from tools.drill import durations
from tools.drill.processes import ManagedProcess, ProcessSupervisor, free_port, wait_ready

SCRAPE_INTERVAL = 1.0  # seconds: the played target, Prometheus itself
APP_METRIC = "app_requests_total"
REPLICA = "prometheus-0"


class _Counter(BaseHTTPRequestHandler):
    started = time.time()

    def do_GET(self):  # noqa: N802 (http.server's name)
        body = f"# TYPE {APP_METRIC} counter\n{APP_METRIC}{{path=\"/\"}} {time.time() - self.started:.3f}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain; version=0.0.4")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def start_victoria_metrics(supervisor: ProcessSupervisor, data: Path, port: int, log: Path) -> ManagedProcess:
    """Single-node VictoriaMetrics on 127.0.0.1:`port`, ready."""
    # latencyOffset: make just-written samples visible to /api/v1/query at once (default 30s).
    process = supervisor.start(ManagedProcess("victoria-metrics", [
        "victoria-metrics", f"-storageDataPath={data}", f"-httpListenAddr=127.0.0.1:{port}",
        "-retentionPeriod=10y", "-search.latencyOffset=1s", "-loggerLevel=WARN"], log))
    wait_ready(process, f"http://127.0.0.1:{port}/health")
    return process


def import_openmetrics(url: str, files: list[Path]) -> int:
    """Samples of OpenMetrics files (seconds) into VictoriaMetrics' Prometheus-text import (milliseconds)."""
    count = 0
    for path in files:
        lines = []
        for line in path.read_text().splitlines():
            if line.startswith("#"):
                continue
            head, value, seconds = line.rsplit(" ", 2)
            lines.append(f"{head} {value} {round(float(seconds) * 1000)}\n")
        request = urllib.request.Request(f"{url}/api/v1/import/prometheus", data="".join(lines).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=60):
            count += len(lines)
    # Imported samples become searchable once flushed from memory.
    with urllib.request.urlopen(f"{url}/internal/force_flush", timeout=60):
        pass
    return count


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


class LongTermWorld:
    """Start with `with LongTermWorld(rendered_dir, tmp) as world:`; every process stops on exit."""

    def __init__(self, rendered: Path, work: Path, factor: float = 60.0):
        self.rendered, self.work, self.factor = rendered, work, factor
        self.vm_port, self.prom_port = free_port(), free_port()
        self.vm_url = f"http://127.0.0.1:{self.vm_port}"
        self.prom_url = f"http://127.0.0.1:{self.prom_port}"
        self.supervisor = ProcessSupervisor()
        self.vm: ManagedProcess | None = None
        self.prometheus: ManagedProcess | None = None
        self.target = None

    # --- configuration -------------------------------------------------------------------

    def remote_write(self) -> list[dict]:
        doc = yaml.safe_load((self.rendered / "prometheus" / "remote-write.yaml").read_text())
        for entry in doc["remote_write"]:
            entry["url"] = f"{self.vm_url}/api/v1/write"
        return doc["remote_write"]

    def rules_file(self) -> Path:
        doc = yaml.safe_load((self.rendered / "prometheus" / "rules" / "long-term.yaml").read_text())
        for group in doc["groups"]:
            group["interval"] = durations.format_seconds(SCRAPE_INTERVAL)
            for rule in group["rules"]:
                rule["expr"] = durations.scale_promql(rule["expr"], self.factor)
                if "for" in rule:
                    rule["for"] = durations.scale(rule["for"], self.factor)
        path = self.work / "long-term.yaml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    def prometheus_config(self) -> Path:
        interval = durations.format_seconds(SCRAPE_INTERVAL)
        doc = {
            "global": {"scrape_interval": interval, "evaluation_interval": interval,
                       "external_labels": {"site": "homelab", "prometheus_replica": REPLICA}},
            "rule_files": [str(self.rules_file())],
            "scrape_configs": [
                {"job_name": "app", "static_configs": [{"targets": [f"127.0.0.1:{self.target.server_port}"]}]},
                {"job_name": "prometheus", "static_configs": [{"targets": [f"127.0.0.1:{self.prom_port}"]}]},
            ],
            "remote_write": self.remote_write(),
        }
        path = self.work / "prometheus.yml"
        path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    # --- processes -----------------------------------------------------------------------

    def start_store(self) -> None:
        self.vm = start_victoria_metrics(self.supervisor, self.work / "vm-data", self.vm_port,
                                         self.work / "victoria-metrics.log")

    def stop_store(self) -> None:
        assert self.vm is not None
        self.vm.stop()

    def __enter__(self) -> "LongTermWorld":
        self.supervisor.__enter__()
        self.target = start_http(_Counter)
        self.start_store()
        config = self.prometheus_config()
        self.prometheus = prometheus = self.supervisor.start(ManagedProcess("prometheus", [
            "prometheus", f"--config.file={config}", f"--storage.tsdb.path={self.work / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{self.prom_port}", "--log.level=info"], self.work / "prometheus.log"))
        wait_ready(prometheus, f"{self.prom_url}/-/ready")
        return self

    def __exit__(self, *exc) -> None:
        try:
            # Prometheus first: with the store gone it would wait for its remote-write to flush.
            if self.prometheus is not None:
                self.prometheus.stop()
            self.supervisor.__exit__(*exc)
        finally:
            stop_http(self.target)

    # --- reading back --------------------------------------------------------------------

    def prom_query(self, query: str) -> list[dict]:
        return _get(f"{self.prom_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}")["data"]["result"]

    def vm_query(self, query: str) -> list[dict]:
        return _get(f"{self.vm_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}")["data"]["result"]

    def vm_timestamps(self, start: float, end: float) -> list[float]:
        """Raw sample times of the played series in the store (/api/v1/export: no query-time filling)."""
        params = urllib.parse.urlencode({"match[]": APP_METRIC, "start": f"{start:.3f}", "end": f"{end:.3f}"})
        with urllib.request.urlopen(f"{self.vm_url}/api/v1/export?{params}", timeout=10) as response:
            lines = [json.loads(line) for line in response.read().decode().splitlines() if line.strip()]
        return sorted(ts / 1000 for line in lines for ts in line["timestamps"])

    def prom_timestamps(self, start: float, end: float) -> list[float]:
        window = max(int(end - start) + 1, 1)
        result = _get(f"{self.prom_url}/api/v1/query?" + urllib.parse.urlencode(
            {"query": f"{APP_METRIC}[{window}s]", "time": f"{end:.3f}"}))["data"]["result"]
        return sorted(float(ts) for r in result for ts, _ in r["values"] if float(ts) >= start)

    def lag(self) -> float | None:
        """Seconds the newest sample sent to the store lags the newest appended (Prometheus' own gauges)."""
        with urllib.request.urlopen(f"{self.prom_url}/metrics", timeout=5) as response:
            text = response.read().decode()
        values = {}
        for line in text.splitlines():
            for name in ("prometheus_remote_storage_highest_timestamp_in_seconds",
                         "prometheus_remote_storage_queue_highest_sent_timestamp_seconds"):
                if line.startswith(name + " ") or line.startswith(name + "{"):
                    values[name] = float(line.rsplit(" ", 1)[1])
        if len(values) < 2:
            return None
        return values["prometheus_remote_storage_highest_timestamp_in_seconds"] - \
            values["prometheus_remote_storage_queue_highest_sent_timestamp_seconds"]

    def alert_state(self, name: str) -> str:
        alerts = _get(f"{self.prom_url}/api/v1/alerts")["data"]["alerts"]
        return next((a["state"] for a in alerts if a["labels"]["alertname"] == name), "inactive")

    def wait(self, what, timeout: float, step: float = 0.25):
        """Poll `what()` until it returns something truthy; that value, or None after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = what()
            if value:
                return value
            time.sleep(step)
        return None

    def outage(self, seconds: float, during=None) -> dict:
        """Stop the store for `seconds` (calling `during()` meanwhile), start it again; wall seconds from
        its restart until Prometheus has sent everything it had appended (lag under one scrape)."""
        started = time.time()
        self.stop_store()
        seen = []
        while time.time() - started < seconds:
            if during:
                seen.append(during())
            time.sleep(0.25)
        lag_at_restart = self.lag()
        self.start_store()
        back = time.monotonic()
        caught = self.wait(lambda: (lag := self.lag()) is not None and lag <= SCRAPE_INTERVAL, 300)
        return {"down_from": started, "down_until": started + seconds, "lag_at_restart": lag_at_restart,
                "catch_up_s": time.monotonic() - back if caught else None, "seen": seen}
