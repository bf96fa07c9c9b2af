"""Benchmark of Loki 3.7.6 and the Collector 0.158.0 on the configuration the charts render.

Not a test: it prints figures, the median of --runs runs (the machine is shared; each run starts
fresh processes). Needs `make upstream` and the rendered stack (it renders it itself).

- spans/s through the Collector: OTLP/HTTP JSON batches of gateway spans (encoded before the
  clock starts), until the span metrics' Prometheus endpoint counts them all (flushed every 1 s
  here) and until the traces backend in Tempo's place (a second Collector) accepted them all;
- log lines/s Loki accepts per tenant through its push API (100-byte lines, 1000 a request,
  below the tenant's burst so no limit interferes);
(Where the NAS tenant's 429 comes is pinned by tests/services/test_logs_traces_live.py: a push of
exactly its burst passes, 1 KiB more is refused.)

    python -m benchmarks.bench_logs_traces [--runs 3] [--spans 20000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests import logs_traces_world as world  # noqa: E402
from tests.logs_traces_world import COLLECTOR_HEALTH_PORT, OTLP_HTTP_PORT, SPAN_METRICS_PORT  # noqa: E402
from tools import logs_traces_local as local  # noqa: E402
from tools.offline_engine import run_program  # noqa: E402
from tools.preview import render  # noqa: E402

ROUTES = [("GET", "/orders", 200), ("POST", "/orders", 201), ("GET", "/orders/{id}", 500)]


class Rendered:
    def __init__(self, out: Path):
        self.out = out


def spans_per_second(collector_release, gateway_url: str, directory: Path, count: int) -> tuple[float, float]:
    backend = world.TracesBackend(directory / "backend").start()
    process, configured = world.stack_collector(collector_release, directory / "otelcol", gateway_url, backend.endpoint,
                                                span_metrics_flush="1s")
    process.start(f"http://127.0.0.1:{configured.port(COLLECTOR_HEALTH_PORT)}/")
    try:
        payloads = [json.dumps(world.gateway_spans([100.0] * 500, ROUTES)).encode() for _ in range(count // 500)]
        sent = 500 * len(payloads)
        metrics_url = f"http://127.0.0.1:{configured.port(SPAN_METRICS_PORT)}/metrics"
        started = time.monotonic()
        for body in payloads:
            reply = world.http("POST", f"http://127.0.0.1:{configured.port(OTLP_HTTP_PORT)}/v1/traces", body,
                               {"Content-Type": "application/json"})
            assert reply.status == 200, reply.body
        into_metrics = into_backend = None
        while into_metrics is None or into_backend is None:
            now = time.monotonic() - started
            if into_metrics is None and world.metric_value(world.http("GET", metrics_url).body.decode(),
                                                           "traces_span_metrics_calls_total") >= sent:
                into_metrics = now
            if into_backend is None and backend.accepted_spans() >= sent:
                into_backend = now
            if now > 300:
                raise RuntimeError("spans not all through after 300 s")
            time.sleep(0.05)
        return sent / into_metrics, sent / into_backend
    finally:
        process.stop()
        backend.stop()


def lines_per_second(loki: world.Loki, tenant: str, lines: int) -> float:
    bodies = [json.dumps({"streams": [world.stream({"service_name": "bench", "batch": str(i % 8)},
                                                   [f"{tenant} {i:06d} {j:04d} " + "x" * 84 for j in range(1000)])]})
              .encode() for i in range(lines // 1000)]
    started = time.monotonic()
    for body in bodies:
        reply = world.http("POST", f"{loki.url}/loki/api/v1/push", body,
                           {"Content-Type": "application/json", "X-Scope-OrgID": tenant})
        assert reply.status == 204, reply.body
    return 1000 * len(bodies) / (time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--spans", type=int, default=20000)
    parser.add_argument("--logs-only", action="store_true", help="Loki's figures only (no Collector)")
    args = parser.parse_args(argv)
    secrets = {"k3sToken": "bench", "pagerdutyRoutingKey": "bench", "mattermostWebhookUrl": "https://chat/bench",
               "alertingHeartbeatToken": "bench", "recoveryWebhookToken": "bench",
               "recoveryPveReadToken": "bench@pve!r=x", "recoveryPveBackupToken": "bench@pve!b=x",
               "recoveryPveFallbackToken": "bench@pve!f=x", "recoveryTrueNasApiKey": "1-bench",
               "pveExporterToken": "bench", "virtualizationPagerdutyRoutingKey": "bench"}
    figures: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-logs-traces-") as tmp:
        out = render(run_program(ROOT / "Pulumi.homelab.yaml", secrets), Path(tmp) / "build")
        loki_release = world.rendered_release(Rendered(out), local.LOKI_RELEASE)
        collector_release = world.rendered_release(Rendered(out), local.COLLECTOR_RELEASE)
        for run in range(args.runs):
            directory = Path(tmp) / f"run{run}"
            loki = world.Loki(loki_release, directory / "loki").start()
            gateway = world.Gateway(loki_release, directory / "gateway", loki).start()
            try:
                if not args.logs_only:
                    to_metrics, to_backend = spans_per_second(collector_release, gateway.url, directory, args.spans)
                    figures.setdefault("spans/s into span metrics", []).append(to_metrics)
                    figures.setdefault("spans/s into the traces backend (Tempo's stand-in)", []).append(to_backend)
                for tenant in ("homelab", "nas"):
                    figures.setdefault(f"lines/s accepted, tenant {tenant}", []).append(
                        lines_per_second(loki, tenant, 50000))
            finally:
                gateway.stop()
                loki.stop()
    for name, values in figures.items():
        print(f"{name:55} median {statistics.median(values):10.1f}   runs {', '.join(f'{v:.1f}' for v in values)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
