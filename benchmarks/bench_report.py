"""Benchmark of the quarterly PBS job report: a quarter of 50 jobs, scraped every 30 s.

Not a test: it prints figures. It generates what the PBS job exporter would have exposed for
2026 Q3 (50 jobs: 40 daily backups, 4 weekly syncs, 3 weekly verifies, 2 daily prunes, one GC;
about 1% of the runs fail) at the stack's 30 s scrape interval and Prometheus' default 5 min
look-back, backfills Prometheus with it (promtool, one file per block), then times the
whole report (`python -m services.report`, a fresh process: queries, figures, PDF, JSON, CSV) three
times and prints the median. The set-up takes a few minutes and 2 GB of temporary disk at a time.

    python -m benchmarks.bench_report [--runs 3] [--jobs 50] [--keep DIR] [--out DIR]

`make report-demo` runs it small (8 jobs, one run) with --out: the sample report of a generated
quarter, no cluster needed.
"""

from __future__ import annotations

import argparse
import bisect
import json
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tools import upstream  # noqa: E402
from tests.pbs_history import BLOCK_SECONDS, POLL_LAG, TARGET_LABELS, backfill, start_prometheus  # noqa: E402

SCRAPE = 30
START = datetime(2026, 6, 28, tzinfo=timezone.utc).timestamp()
END = datetime(2026, 10, 3, tzinfo=timezone.utc).timestamp()
DAY = 86400


def jobs(count: int) -> list[tuple[str, str, str, float, float]]:
    """(job_id, job_type, datastore, first end, period) of each job."""
    out = []
    kinds = [("backup", DAY)] * 40 + [("sync", 7 * DAY)] * 4 + [("verify", 7 * DAY)] * 3 + [("prune", DAY)] * 2 + [
        ("gc", DAY)]
    for i, (kind, period) in enumerate((kinds * (count // len(kinds) + 1))[:count]):
        job_id = {"backup": f"vm/{101 + i}", "gc": "store1"}.get(kind, f"{kind[0]}-{i}")
        out.append((job_id, kind, "store1" if i % 3 else "store2", START + 3600 + (i * 1373) % DAY, period))
    return out


def runs_of(job, rng: random.Random):
    job_id, kind, store, first, period = job
    t, out = first, []
    while t < END:
        duration = {"backup": 600, "sync": 3 * 3600, "verify": 2 * 3600, "prune": 60, "gc": 1800}[kind]
        out.append((t, duration * rng.uniform(0.8, 1.3), rng.random() > 0.01))
        t += period
    return out


def _samples(prefix: str, grid: list[str], segments: list[tuple[int, str]]) -> str:
    """Lines of one series: segments are (first grid index, value) of each constant stretch."""
    parts = []
    for (i, value), nxt in zip(segments, segments[1:] + [(len(grid), None)]):
        if nxt[0] > i:
            head = f"{prefix}{value} "
            parts.append(head + ("\n" + head).join(grid[i:nxt[0]]) + "\n")
    return "".join(parts)


def write_blocks(directory: Path, job_list, rng):
    """Yields one OpenMetrics file per TSDB block range (about 20 days, 2 GB each)."""
    directory.mkdir(parents=True, exist_ok=True)
    first_block, last_block = int(START // BLOCK_SECONDS), int(END // BLOCK_SECONDS)
    histories = [(job, runs_of(job, rng)) for job in job_list]
    for block in range(first_block, last_block + 1):
        lo, hi = max(START, block * BLOCK_SECONDS), min(END, (block + 1) * BLOCK_SECONDS)
        times = [t for t in range(int(lo - lo % SCRAPE), int(hi), SCRAPE) if lo <= t < hi]
        if not times:
            continue
        grid = [str(t) for t in times]
        path = directory / f"block-{block}.om"
        with open(path, "w") as f:
            for name in ("pbs_job_attempt_total", "pbs_job_success_total", "pbs_job_last_run_timestamp_seconds",
                         "pbs_job_last_success_timestamp_seconds", "pbs_job_last_duration_seconds"):
                f.write(f"# TYPE {name} unknown\n")
                for (job_id, kind, store, _, _), runs in histories:
                    labels = {"job_id": job_id, "job_type": kind, "datastore": store, **TARGET_LABELS}
                    prefix = name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "} "
                    seen = [end + POLL_LAG for end, _, _ in runs]
                    segments, attempts, ok, last_ok = [], 0, 0, None
                    k = bisect.bisect_right(seen, times[0])
                    attempts = k
                    ok = sum(1 for _, _, good in runs[:k] if good)
                    last_ok = next((runs[j][0] for j in range(k - 1, -1, -1) if runs[j][2]), None)

                    def value():
                        if name == "pbs_job_attempt_total":
                            return attempts
                        if name == "pbs_job_success_total":
                            return ok
                        if attempts == 0:
                            return None
                        if name == "pbs_job_last_run_timestamp_seconds":
                            return runs[attempts - 1][0]
                        if name == "pbs_job_last_duration_seconds":
                            return round(runs[attempts - 1][1], 1)
                        return last_ok

                    segments.append((0, value()))
                    while k < len(runs) and seen[k] < times[-1]:
                        attempts, ok = k + 1, ok + runs[k][2]
                        last_ok = runs[k][0] if runs[k][2] else last_ok
                        segments.append((bisect.bisect_left(times, seen[k]), value()))
                        k += 1
                    segments = [(i, v) for i, v in segments if v is not None]
                    f.write(_samples(prefix, grid, [(i, f"{v}") for i, v in segments]))
            target = ",".join(f'{k}="{v}"' for k, v in sorted(TARGET_LABELS.items()))
            for name, value in (("size", lambda base, t: 8e12), ("used", lambda base, t: base + 2e9 * (t - START) / DAY),
                                ("available", lambda base, t: 8e12 - base - 2e9 * (t - START) / DAY)):
                f.write(f"# TYPE pbs_datastore_{name}_bytes unknown\n")
                for store, base in (("store1", 3e12), ("store2", 1e12)):
                    prefix = f'pbs_datastore_{name}_bytes{{datastore="{store}",{target}}} '
                    hourly = [(i, f"{value(base, times[i]):.0f}") for i in range(0, len(times), 120)]
                    f.write(_samples(prefix, grid, hourly))
            f.write("# TYPE ALERTS unknown\n")
            for (job_id, kind, store, _, _), runs in histories:
                labels = {"alertname": "BackupJobFailed", "alertstate": "firing", "severity": "critical",
                          "job_id": job_id, "job_type": kind, "datastore": store, **TARGET_LABELS}
                prefix = "ALERTS{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "} 1 "
                for end, _, good in runs:
                    if not good and kind == "backup":
                        firing = range(int(end + 1800 - (end + 1800) % 60), int(end + DAY), 60)
                        f.writelines(f"{prefix}{t}\n" for t in firing if lo <= t < hi)
            f.write("# EOF\n")
        yield path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--keep", type=Path, help="keep the TSDB here (and reuse it if it exists)")
    parser.add_argument("--out", type=Path, help="keep the report's PDF, JSON and CSV here")
    args = parser.parse_args()
    upstream.put_on_path()  # Prometheus, promtool, VictoriaMetrics at the charts' versions
    work = Path(tempfile.mkdtemp(prefix="bench-report-"))
    tsdb = args.keep or work / "tsdb"
    out = (args.out or work / "out").resolve()
    try:
        started = time.perf_counter()
        if not (tsdb / "meta.json").exists() and not any(tsdb.glob("*/meta.json")):
            size = 0
            for path in write_blocks(work / "openmetrics", jobs(args.jobs), random.Random(14)):
                size += path.stat().st_size
                backfill([path], tsdb)
                path.unlink()
            print(f"set-up: {size / 1e9:.1f} GB of OpenMetrics backfilled in {time.perf_counter() - started:.0f} s")
        process, url = start_prometheus(tsdb, work)
        try:
            from model.reports import report_settings
            from tests.configs import homelab_config

            settings = work / "settings.json"
            settings.write_text(json.dumps(report_settings(homelab_config(), "homelab")))
            times = []
            for _ in range(args.runs):
                began = time.perf_counter()
                result = subprocess.run([sys.executable, "-m", "services.report", "--settings", str(settings),
                                         "--quarter", "2026Q3", "--prometheus-url", url, "--out", str(out)],
                                        cwd=ROOT, capture_output=True, text=True)
                times.append(time.perf_counter() - began)
                if result.returncode:
                    raise SystemExit(result.stderr)
            print(result.stdout.strip())
            pages = subprocess.run(["pdfinfo", str(out / "pbs-2026Q3.pdf")], capture_output=True,
                                   text=True).stdout
            print(next((line for line in pages.splitlines() if line.startswith("Pages:")), "Pages: ?"))
            print(f"report of {args.jobs} jobs, 2026 Q3 at {SCRAPE} s scrapes: median {statistics.median(times):.2f} s "
                  f"over {args.runs} runs ({', '.join(f'{t:.2f}' for t in times)}); budget 30 s")
        finally:
            process.stop()
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
