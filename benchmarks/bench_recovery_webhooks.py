"""Benchmark of the recovery service's webhook intake: bursts of Alertmanager notifications.

Not a test: it prints figures. Each run starts the service as a real process among the tests'
fake PBS and PVE (tests/recovery_world.py), then sends ``--webhooks`` notifications of
``--alerts`` firing BackupMaintenanceJobFailed alerts each (new occurrences, so every one is
validated, written to sqlite and queued; the re-runs are dry-runs against the fake PBS while the
burst goes on) from ``--clients`` threads at once, and times each answer. It prints the median
over the runs of the per-run p50, p99 and max answer times and the burst's wall time.

    python -m benchmarks.bench_recovery_webhooks [--runs 5] [--webhooks 200] [--alerts 5] [--clients 8]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.recovery_world import WEBHOOK_TOKEN, World, alert, notification  # noqa: E402


def burst(world: World, webhooks: int, alerts: int, clients: int) -> dict[str, float]:
    bodies = [json.dumps(notification(*(alert("BackupMaintenanceJobFailed", {
        "job_type": "sync", "job_id": f"s-{w}-{a}", "datastore": "homelab", "service": "backups", "severity": "warning"})
        for a in range(alerts)))).encode() for w in range(webhooks)]

    def send(body: bytes) -> float:
        request = urllib.request.Request(f"http://127.0.0.1:{world.port}/webhook", data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {WEBHOOK_TOKEN}"})
        began = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as answer:
            answer.read()
            if answer.status != 200:
                raise RuntimeError(f"HTTP {answer.status}")
        return (time.perf_counter() - began) * 1000

    began = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        times = sorted(pool.map(send, bodies))
    wall = time.perf_counter() - began
    return {"p50_ms": statistics.median(times), "p99_ms": times[max(0, int(len(times) * 0.99) - 1)],
            "max_ms": times[-1], "burst_s": wall}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--webhooks", type=int, default=200)
    parser.add_argument("--alerts", type=int, default=5)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    results = []
    for run in range(1, args.runs + 1):
        with tempfile.TemporaryDirectory() as tmp:
            world = World(Path(tmp))
            world.start_fakes()
            try:
                world.pbs.add_datastore("homelab", 8 * 2**40, 2**40)
                world.start(actions={**world.config()["actions"], "pbs-job-rerun": {"mode": "dry-run"}})
                figures = burst(world, args.webhooks, args.alerts, args.clients)
            finally:
                world.stop()
        results.append(figures)
        print(f"run {run}: " + ", ".join(f"{k} {v:.1f}" for k, v in figures.items()), flush=True)
    print(f"\n{args.webhooks} webhooks of {args.alerts} alerts from {args.clients} clients, median of {args.runs} runs:")
    for key in results[0]:
        print(f"  {key:10} {statistics.median(r[key] for r in results):8.1f}")


if __name__ == "__main__":
    main()
