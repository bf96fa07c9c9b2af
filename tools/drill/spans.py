"""Real spans in the drill: the stack's Collector turns a synthetic API gateway's spans into the
span metrics the latency SLO reads, and the page comes from those.

A scenario with `spans` runs the Collector built at the chart's version (otelcol-homelab, `make
upstream`) on the configuration the chart renders, changed only as tools/logs_traces_local.py
lists, and here:
  - the span-metrics flush interval is scaled like every other duration;
  - spans go on to a closed local port in Tempo's place (Tempo cannot be built here): the
    exporter's persistent queue holds them, the span-metrics connector is not held up by it;
  - the logs exporters point at a closed local port too: no logs flow in the drill.
The span-metrics scrape job is re-pointed at the Collector's Prometheus exporter, `instance`
unchanged, as probes.py re-points the probe jobs.

The synthetic gateway posts OTLP/HTTP JSON server spans at the scenario's requests per second
of scenario time (so `factor` times that per wall second), from t = 0 on; the share slower than the
objective follows the scenario's burn profile, counted exactly (a running remainder, not dice).
Before t = 0 the history is the synthetic series of the same profile, as for other scenarios.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

from tools import logs_traces_local as local
from tools import manifests, upstream
from tools.drill.deployed_config import DeployedConfig, DrillConfigError, TimeScale
from tools.drill.processes import ManagedProcess, ProcessSupervisor, free_port, wait_ready
from tools.drill.scenarios import (JOB_SPANS, LATENCY_ERROR_BUDGET, LATENCY_OBJECTIVE_LE, SPAN_BATCH_TIMEOUT,
                                   SPAN_METRICS_FLUSH, SpanTraffic)
from tools.drill.servers import ScenarioClock

COLLECTOR_BINARY = "otelcol-homelab"
FAST_MS, SLOW_MS = 40.0, 2.0 * float(LATENCY_OBJECTIVE_LE)
ROUTES = (("GET", "/orders", 200), ("POST", "/orders", 201), ("GET", "/orders/{id}", 200))
SEND_EVERY = 0.2  # wall seconds between two posts of the generator


def _attributes(values: dict) -> list[dict]:
    def value(v: Any) -> dict:
        return {"intValue": str(v)} if isinstance(v, int) else {"stringValue": str(v)}
    return [{"key": k, "value": value(v)} for k, v in values.items()]


def gateway_spans(durations_ms: list[float], routes=ROUTES, end_ns: int | None = None) -> dict:
    """One SERVER span of service api-gateway per duration, cycling through (method, route, status),
    as OTLP/HTTP JSON."""
    end = end_ns or time.time_ns()
    spans = []
    for i, duration in enumerate(durations_ms):
        method, route, status = routes[i % len(routes)]
        spans.append({
            "traceId": f"{random.getrandbits(128):032x}", "spanId": f"{random.getrandbits(64):016x}",
            "name": f"{method} {route}", "kind": 2,
            "startTimeUnixNano": str(end - int(duration * 1e6)), "endTimeUnixNano": str(end),
            "attributes": _attributes({"http.request.method": method, "http.route": route,
                                       "http.response.status_code": status}),
            "status": {"code": 2 if status >= 500 else 0},
        })
    return {"resourceSpans": [{"resource": {"attributes": _attributes({"service.name": "api-gateway"})},
                               "scopeSpans": [{"scope": {"name": "synthetic-gateway"}, "spans": spans}]}]}


def _collector_binary() -> str:
    for tool in upstream.TOOLS:
        for binary in tool.binaries:
            if binary.name == COLLECTOR_BINARY:
                if not tool.built():
                    raise DrillConfigError(f"{COLLECTOR_BINARY} {tool.version()} is not built: run `make upstream`")
                return str(tool.bin_dir() / COLLECTOR_BINARY)
    raise DrillConfigError(f"tools/upstream.py builds no {COLLECTOR_BINARY}")


def _local_address(endpoint: str) -> str:
    if not re.fullmatch(r"127\.0\.0\.1:\d+", endpoint or ""):
        raise DrillConfigError(f"expected a local host:port in the Collector's config, found {endpoint!r}")
    return endpoint


class SpanGenerator:
    """The API gateway's traffic: posts spans on a thread, the slow share from the burn profile."""

    def __init__(self, traffic: SpanTraffic, clock: ScenarioClock, otlp_http: str):
        self.traffic, self.clock, self.url = traffic, clock, f"http://{otlp_http}/v1/traces"
        self.sent = self.slow = self.refused = 0
        self._due = self._slow_due = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="span-generator", daemon=True)

    def burn_at(self, t: float) -> float:
        return [burn for start, burn in self.traffic.burns if start <= t][-1]

    def batch(self, since: float, until: float) -> list[float]:
        """Durations (ms) of the spans due between two scenario times."""
        self._due += self.traffic.requests_per_second * (until - since)
        count = int(self._due)
        self._due -= count
        self._slow_due += count * min(1.0, self.burn_at(since) * LATENCY_ERROR_BUDGET)
        slow = min(count, int(self._slow_due))
        self._slow_due -= slow
        return [SLOW_MS] * slow + [FAST_MS] * (count - slow)

    def _run(self) -> None:
        # From t = 0 on: before it the backfilled history counts the requests, and both at once
        # would count the lead-in twice in every window that spans it.
        last = 0.0
        while not self._stop.wait(SEND_EVERY):
            now = self.clock.now()
            if now <= last:
                continue
            spans = self.batch(last, now)
            last = now
            if not spans:
                continue
            request = urllib.request.Request(self.url, json.dumps(gateway_spans(spans)).encode(),
                                             {"Content-Type": "application/json"}, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=5) as answer:
                    answer.read()
                self.sent += len(spans)
                self.slow += spans.count(SLOW_MS)
            except OSError:
                self.refused += len(spans)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)


class RealSpans:
    """The Collector process, the synthetic gateway feeding it, and the span-metrics job's re-pointing."""

    def __init__(self, config: DeployedConfig, scale: TimeScale, clock: ScenarioClock, traffic: SpanTraffic,
                 work: Path):
        resources = config.root / "resources.json"
        releases = [r for r in manifests.releases_of(json.loads(resources.read_text()))
                    if r.name == local.COLLECTOR_RELEASE]
        if not releases:
            raise DrillConfigError(f"{resources}: the stack renders no {local.COLLECTOR_RELEASE} release (traces)")
        rendered = manifests.render(releases[0])
        relay = local.rendered_collector_config(rendered)
        rendered_delays = (relay["processors"]["batch"]["timeout"], relay["connectors"]["spanmetrics"]["metrics_flush_interval"])
        if rendered_delays != (SPAN_BATCH_TIMEOUT, SPAN_METRICS_FLUSH):
            raise DrillConfigError(f"the Collector batches spans for {rendered_delays[0]} and flushes span metrics every "
                                   f"{rendered_delays[1]}, the drill assumes {SPAN_BATCH_TIMEOUT} and {SPAN_METRICS_FLUSH}: "
                                   "update them in tools/drill/scenarios.py")
        flush = scale.interval(SPAN_METRICS_FLUSH)
        closed = f"127.0.0.1:{free_port()}"  # Tempo's and the Loki gateway's place: nothing listens
        configured = local.local_collector(rendered, work / "otelcol", free_port, f"http://{closed}",
                                           {tenant: "unsent" for tenant in local.collector_tenants(rendered)}, closed,
                                           span_metrics_flush=flush)
        self.config = configured
        self.metrics_address = _local_address(configured.config["exporters"]["prometheus"]["endpoint"])
        self.health_url = f"http://{_local_address(configured.config['extensions']['health_check']['endpoint'])}/"
        otlp_http = _local_address(configured.config["receivers"]["otlp"]["protocols"]["http"]["endpoint"])
        self.generator = SpanGenerator(traffic, clock, otlp_http)
        configured.config["processors"]["batch"]["timeout"] = batch = scale.interval(SPAN_BATCH_TIMEOUT)
        args = configured.write()
        variables = [f"{k}={v}" for k, v in configured.env.items()]
        self.process = ManagedProcess("otelcol", ["env", *variables, _collector_binary(), *args],
                                      work / "otelcol.log")
        self.notes = [f"the real Collector's span metrics (spans batched for {batch}, metrics flushed every {flush}: "
                      f"{SPAN_BATCH_TIMEOUT} and {SPAN_METRICS_FLUSH} scaled) replace the synthetic {JOB_SPANS} series from t = 0; "
                      f"spans to Tempo and logs to Loki go to a closed port (neither runs in the drill)"]

    def repoint(self, prom_doc: dict[str, Any]) -> list[str]:
        (job,) = [j for j in prom_doc["scrape_configs"] if j["job_name"] == JOB_SPANS]
        (static,) = job["static_configs"]
        job["relabel_configs"] = [*(job.get("relabel_configs") or []),
                                  {"target_label": "__address__", "replacement": self.metrics_address}]
        return [f"scrape job {JOB_SPANS}: scraped from the real Collector at {self.metrics_address} "
                f"(instance {static['labels']['instance']} unchanged)", *self.notes]

    def start(self, supervisor: ProcessSupervisor) -> None:
        wait_ready(supervisor.start(self.process), self.health_url, 60)
        self.generator.start()

    def stop(self) -> None:
        self.generator.stop()

    def summary(self) -> str:
        g = self.generator
        return (f"the synthetic gateway sent {g.sent} spans through the real Collector, {g.slow} slower than "
                f"{LATENCY_OBJECTIVE_LE} ms" + (f"; {g.refused} refused" if g.refused else ""))
