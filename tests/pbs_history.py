"""A generated history of PBS job runs, and the series the PBS job exporter would have exposed for it.

The runs are the truth the tests count against. `exporter_series` plays the exporter
(services/pbs_exporter, README "Metrics"): a run is counted at the first poll after it
ended; counters, last-run values and durations persist across restarts, except after a lost
state file, when the exporter starts again from zero and re-reads the tasks of its initial
look-back window (default 7 days) from PBS. Configured sync, verify and prune jobs have series
from the start (at 0); a backup group appears with its first counted run. Prometheus scrapes
every `scrape_interval`; while the exporter is down there are no samples.

`write_openmetrics` writes what `promtool tsdb create-blocks-from openmetrics` reads, `backfill`
turns it into TSDB blocks and `start_prometheus` starts Prometheus (`make upstream`) on them.
"""

from __future__ import annotations

import bisect
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from tools.drill.processes import ManagedProcess, free_port, wait_ready

TARGET_LABELS = {"instance": "pbs.home.arpa", "job": "pbs-exporter", "service": "backups"}
CONFIGURED_TYPES = {"sync", "verify", "prune"}
INITIAL_LOOKBACK = 7 * 86400
POLL_LAG = 30  # the exporter's poll interval: a run is counted at most this long after it ended


@dataclass(frozen=True)
class Run:
    job_id: str
    job_type: str
    datastore: str
    end: float
    duration: float
    ok: bool

    @property
    def job(self) -> tuple[str, str, str]:
        return (self.job_id, self.job_type, self.datastore)


@dataclass(frozen=True)
class ExporterRestart:
    back_at: float  # first poll after the restart
    down_for: float
    lost_state: bool


@dataclass(frozen=True)
class Alert:
    name: str
    severity: str
    labels: dict
    start: float
    end: float  # last evaluation that found it firing is before this


def scrape_times(start: float, end: float, interval: float, offset: float) -> list[float]:
    first = start - (start % interval) + offset
    return [t for t in (first + i * interval for i in range(int((end - first) // interval) + 1)) if start <= t <= end]


def _labels(job: tuple[str, str, str]) -> dict:
    job_id, job_type, datastore = job
    return {"job_id": job_id, "job_type": job_type, "datastore": datastore, **TARGET_LABELS}


def exporter_series(runs: list[Run], restarts: list[ExporterRestart], times: list[float]
                    ) -> dict[tuple[str, tuple], list[tuple[float, float]]]:
    """(metric, labels) -> samples, for the five job series of the exporter."""
    out: dict[tuple[str, tuple], list[tuple[float, float]]] = {}
    losses = sorted(r.back_at for r in restarts if r.lost_state)
    down = [(r.back_at - r.down_for, r.back_at) for r in restarts]
    by_job: dict[tuple, list[Run]] = {}
    for run in sorted(runs, key=lambda r: r.end):
        by_job.setdefault(run.job, []).append(run)
    for job, job_runs in by_job.items():
        seen = [r.end + POLL_LAG for r in job_runs]
        ends = [r.end for r in job_runs]
        ok_before = [0]  # ok_before[k]: successful runs among the first k
        last_ok = []  # last_ok[k]: index of the last successful run among the first k+1, or -1
        for k, run in enumerate(job_runs):
            ok_before.append(ok_before[-1] + run.ok)
            last_ok.append(k if run.ok else (last_ok[-1] if last_ok else -1))
        labels = tuple(sorted(_labels(job).items()))
        series = {name: out.setdefault((name, labels), []) for name in (
            "pbs_job_attempt_total", "pbs_job_success_total", "pbs_job_last_run_timestamp_seconds",
            "pbs_job_last_success_timestamp_seconds", "pbs_job_last_duration_seconds")}
        for t in times:
            if any(a <= t < b for a, b in down):
                continue
            i = bisect.bisect_right(losses, t)
            lo = bisect.bisect_left(ends, losses[i - 1] - INITIAL_LOOKBACK) if i else 0
            hi = bisect.bisect_right(seen, t)
            if hi <= lo and job[1] not in CONFIGURED_TYPES:
                continue
            runs_counted = max(hi - lo, 0)
            series["pbs_job_attempt_total"].append((t, runs_counted))
            series["pbs_job_success_total"].append((t, ok_before[hi] - ok_before[lo] if runs_counted else 0))
            if runs_counted:
                last = job_runs[hi - 1]
                series["pbs_job_last_run_timestamp_seconds"].append((t, last.end))
                series["pbs_job_last_duration_seconds"].append((t, last.duration))
                if last_ok[hi - 1] >= lo:
                    series["pbs_job_last_success_timestamp_seconds"].append((t, job_runs[last_ok[hi - 1]].end))
    return {k: v for k, v in out.items() if v}


def datastore_series(store: str, times: list[float], size: float, used_at) -> dict[tuple[str, tuple], list]:
    labels = tuple(sorted({"datastore": store, **TARGET_LABELS}.items()))
    return {
        ("pbs_datastore_size_bytes", labels): [(t, size) for t in times],
        ("pbs_datastore_used_bytes", labels): [(t, used_at(t)) for t in times],
        ("pbs_datastore_available_bytes", labels): [(t, size - used_at(t)) for t in times],
    }


def alert_series(alerts: list[Alert], evaluation_interval: float) -> dict[tuple[str, tuple], list]:
    out: dict[tuple[str, tuple], list] = {}
    for alert in alerts:
        labels = tuple(sorted({"alertname": alert.name, "alertstate": "firing", "severity": alert.severity,
                               **alert.labels}.items()))
        times = scrape_times(alert.start, alert.end - 1, evaluation_interval, 0)
        out.setdefault(("ALERTS", labels), []).extend((t, 1) for t in times)
    return out


@dataclass(frozen=True)
class Drill:
    """One restore drill of the recovery service: started at ``start``, over ``DRILL_TAKES`` seconds later;
    passed with its RTO, or failed (``rto`` None) at ``step``."""

    guest: str
    start: float
    rto: float | None
    step: str = "none"


DRILL_TAKES = 900
RECOVERY_TARGET = {"instance": "pbs.home.arpa:9847", "job": "recovery", "service": "backups"}


def drill_series(drills: list[Drill], tiers: dict[str, tuple[str, float]], times: list[float]
                 ) -> dict[tuple[str, tuple], list]:
    """The recovery service's drill gauges as it exports them (services/recovery/drills.py update_metrics) for
    the guests it drills (``tiers``: guest -> (tier, interval)), at each scrape."""
    out: dict[tuple[str, tuple], list] = {}
    for guest, (tier, interval) in tiers.items():
        labels = {"guest": guest, "tier": tier, **RECOVERY_TARGET}
        key = tuple(sorted(labels.items()))
        mine = sorted((d for d in drills if d.guest == guest), key=lambda d: d.start)
        for t in times:
            out.setdefault(("recovery_restore_drill_interval_seconds", key), []).append((t, interval))
            done = [d for d in mine if d.start + DRILL_TAKES <= t]
            if not done:
                continue
            newest, passed = done[-1], [d for d in done if d.rto is not None]
            out.setdefault(("recovery_restore_drill_last_run_timestamp_seconds", key), []).append((t, newest.start))
            step = "none" if newest.rto is not None else newest.step
            result = tuple(sorted({**labels, "step": step}.items()))
            out.setdefault(("recovery_restore_drill_last_result", result), []).append((t, 1 if newest.rto is not None else 0))
            if passed:
                out.setdefault(("recovery_restore_drill_last_success_timestamp_seconds", key), []).append(
                    (t, passed[-1].start + DRILL_TAKES))
                out.setdefault(("recovery_restore_drill_last_duration_seconds", key), []).append((t, passed[-1].rto))
    return out


# promtool's block range for --max-block-duration=744h (the largest of 2h * 3^n below it).
BLOCK_SECONDS = 486 * 3600


def write_openmetrics(directory: Path, *parts: dict) -> list[Path]:
    """One OpenMetrics file per TSDB block range. promtool re-reads its whole input once per block
    it writes: a quarter in one file would be read eight times, in its own file each once."""
    merged: dict = {}
    for part in parts:
        for key, samples in part.items():
            merged.setdefault(key, []).extend(samples)
    by_block: dict[int, dict[str, list[str]]] = {}
    for (name, labels), samples in sorted(merged.items()):
        prefix = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels) + "} "
        for t, v in sorted(samples):
            by_block.setdefault(int(t // BLOCK_SECONDS), {}).setdefault(name, []).append(f"{prefix}{v:.17g} {t:.3f}\n")
    directory.mkdir(parents=True, exist_ok=True)
    files = []
    for block, families in sorted(by_block.items()):
        path = directory / f"block-{block}.om"
        with open(path, "w") as f:
            for name, lines in families.items():
                f.write(f"# TYPE {name} unknown\n")
                f.writelines(lines)
            f.write("# EOF\n")
        files.append(path)
    return files


def backfill(files: list[Path], tsdb: Path, parallel: int = 2) -> None:
    """Each file becomes its own block (each promtool writes under a fresh block id)."""
    tsdb.mkdir(parents=True, exist_ok=True)
    pending = list(files)
    while pending:
        batch, pending = pending[:parallel], pending[parallel:]
        running = [subprocess.Popen(["promtool", "tsdb", "create-blocks-from", "openmetrics",
                                     "--max-block-duration=744h", "--quiet", str(path), str(tsdb)],
                                    stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for path in batch]
        for path, process in zip(batch, running):
            output, _ = process.communicate(timeout=600)
            if process.returncode:
                raise RuntimeError(f"promtool could not backfill {path.name}: {output.strip()}")


def start_prometheus(tsdb: Path, workdir: Path, extra_flags: Iterable[str] = ()) -> tuple[ManagedProcess, str]:
    """Prometheus on `tsdb`, with a retention long enough that it keeps the old blocks."""
    config = workdir / "prometheus.yml"
    config.write_text("global:\n  scrape_interval: 1m\n")
    port = free_port()
    process = ManagedProcess("prometheus", [
        "prometheus", f"--config.file={config}", f"--storage.tsdb.path={tsdb}",
        "--storage.tsdb.retention.time=10y", f"--web.listen-address=127.0.0.1:{port}", *extra_flags,
    ], workdir / f"prometheus-{port}.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(process, f"{url}/-/ready")
    except Exception:
        process.stop()
        raise
    return process, url
