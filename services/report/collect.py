"""What the report reads from Prometheus: the PBS job exporter's series and the backup ALERTS.

Counting needs every increment of the run counters, not an extrapolated rate: `increase()`
over a quarter guesses the counter's value at the quarter's edges, and a run that ended at
23:59 is scraped after midnight, in the next quarter. So the report reads the counters' change
points: range queries that return the five job series only at the steps where the attempt or
success counter changed, or appeared. Between two change points the counters are constant, so
consecutive change points give each increment exactly; the value of
`pbs_job_last_run_timestamp_seconds` at a change point says when the counted run *ended*, which
decides its quarter. The answers hold a few values per run, not one per scrape.

Evaluating a quarter at one-minute steps costs Prometheus 130,000 steps per series, so the
change points are read hourly (COARSE_STEP), and only the hours in which a job's attempt
counter rose by more than one, or went down, are read again by the minute (FINE_STEP): a daily
job costs 2,200 steps instead of 130,000, and every run still gets its own change point. The
success counter moves only with the attempt counter (the exporter counts both in one poll).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.metrics import (PBS_DATASTORE_AVAILABLE, PBS_DATASTORE_SIZE, PBS_DATASTORE_USED, PBS_JOB_ATTEMPT,
                               PBS_JOB_LAST_DURATION, PBS_JOB_LAST_RUN, PBS_JOB_LAST_SUCCESS, PBS_JOB_SUCCESS,
                               RESTORE_DRILL_INTERVAL, RESTORE_DRILL_LAST_DURATION, RESTORE_DRILL_LAST_RESULT,
                               RESTORE_DRILL_LAST_RUN, RESTORE_DRILL_LAST_SUCCESS)

from .prometheus import Prometheus, Series

DATASTORE_FIELDS = {PBS_DATASTORE_SIZE: "size", PBS_DATASTORE_USED: "used", PBS_DATASTORE_AVAILABLE: "available"}

COARSE_STEP = 3600
# Runs of one job that end within the same minute are seen as one change point (docs/reports.md).
FINE_STEP = 60
# The counters' values before the quarter: the last sample of this window, even across an outage.
BASELINE_LOOKBACK = 2 * 86400
# Runs that end just before the quarter's end are scraped after it: read this much further.
READ_AFTER_END = 3600
DATASTORE_STEP = 3600
# An alert that fired before the quarter began: how far back its start is looked for.
ALERT_LOOKBACK = 86400


@dataclass(frozen=True)
class Snapshot:
    """The job's series at one time (a change point, or the quarter's start)."""

    t: float
    attempts: float | None = None
    successes: float | None = None
    last_run: float | None = None
    last_success: float | None = None
    last_duration: float | None = None


# The five job series, each with the Snapshot field it fills.
FIELD_OF = {PBS_JOB_ATTEMPT: "attempts", PBS_JOB_SUCCESS: "successes", PBS_JOB_LAST_RUN: "last_run",
            PBS_JOB_LAST_SUCCESS: "last_success", PBS_JOB_LAST_DURATION: "last_duration"}

Labels = tuple[tuple[str, str], ...]


def series_key(labels: dict[str, str]) -> Labels:
    return tuple(sorted((k, v) for k, v in labels.items() if k != "__name__"))


@dataclass
class JobSamples:
    labels: dict[str, str]
    baseline: Snapshot | None = None
    changes: list[Snapshot] = field(default_factory=list)


def change_points_query(step: int) -> str:
    """The job series at the steps where the attempt counter differs from one step before, or appeared."""
    a, off = PBS_JOB_ATTEMPT, f"offset {step}s"
    return f'{{__name__=~"{"|".join(FIELD_OF)}"}} and ({a} != {a} {off} or {a} unless {a} {off})'


def _snapshots(series: list[Series]) -> dict[Labels, dict[float, dict[str, float]]]:
    out: dict[Labels, dict[float, dict[str, float]]] = {}
    for s in series:
        fieldname = FIELD_OF.get(s.labels.get("__name__", ""))
        if fieldname is None:
            continue
        by_time = out.setdefault(series_key(s.labels), {})
        for t, v in s.samples:
            by_time.setdefault(t, {})[fieldname] = v
    return out


def _windows(ends: list[float], step: float) -> list[tuple[float, float]]:
    """Adjacent (end - step, end] windows joined into as few spans as possible."""
    spans: list[tuple[float, float]] = []
    for end in sorted(set(ends)):
        if spans and spans[-1][1] >= end - step:
            spans[-1] = (spans[-1][0], end)
        else:
            spans.append((end - step, end))
    return spans


def job_samples(prom: Prometheus, start: float, read_until: float) -> dict[Labels, JobSamples]:
    """Per job series: its values at `start` and at every change point in (start, read_until]."""
    jobs: dict[Labels, JobSamples] = {}
    for metric in FIELD_OF:
        for s in prom.instant(f"last_over_time({metric}[{BASELINE_LOOKBACK}s])", start):
            job = jobs.setdefault(series_key(s.labels), JobSamples(dict(series_key(s.labels))))
            values = dict(job.baseline.__dict__) if job.baseline else {"t": start}
            values[FIELD_OF[metric]] = s.samples[-1][1]
            job.baseline = Snapshot(**values)
    points: dict[Labels, dict[float, dict[str, float]]] = {}
    busy: dict[Labels, set[float]] = {}
    last_hour = start + (read_until - start) // COARSE_STEP * COARSE_STEP
    if last_hour > start:
        points = _snapshots(prom.range(change_points_query(COARSE_STEP), start + COARSE_STEP, last_hour,
                                       COARSE_STEP))
        # Hours with more than one run, or a reset, of a job are read again by the minute.
        for key, by_time in points.items():
            base = jobs.get(key)
            previous = base.baseline.attempts if base and base.baseline else 0.0
            for t, values in sorted(by_time.items()):
                attempts = values.get("attempts")
                if attempts is None:
                    continue
                if not 0 <= attempts - previous <= 1:
                    busy.setdefault(key, set()).add(t)
                previous = attempts
    fine = _windows([t for times in busy.values() for t in times], COARSE_STEP)
    if read_until > last_hour:  # the hour the report runs in, when it runs within one
        fine.append((last_hour, read_until))
    for begin, end in fine:
        for key, by_time in _snapshots(prom.range(change_points_query(FINE_STEP), begin + FINE_STEP, end,
                                                  FINE_STEP)).items():
            hours = busy.get(key, set())
            mine = {t: v for t, v in by_time.items()
                    if t > last_hour or any(h - COARSE_STEP < t <= h for h in hours)}
            if mine:
                coarse = points.setdefault(key, {})
                for h in hours:
                    if begin < h <= end:
                        coarse.pop(h, None)
                coarse.update(mine)
    for key, by_time in points.items():
        job = jobs.setdefault(key, JobSamples(dict(key)))
        job.changes = [Snapshot(t=t, **values) for t, values in sorted(by_time.items())]
    return jobs


@dataclass
class DatastoreSamples:
    labels: dict[str, str]
    size: list[tuple[float, float]] = field(default_factory=list)
    used: list[tuple[float, float]] = field(default_factory=list)
    available: list[tuple[float, float]] = field(default_factory=list)


def datastore_samples(prom: Prometheus, start: float, end: float) -> dict[Labels, DatastoreSamples]:
    stores: dict[Labels, DatastoreSamples] = {}
    for metric, name in DATASTORE_FIELDS.items():
        for s in prom.range(metric, start, end - 1, DATASTORE_STEP):
            key = series_key(s.labels)
            store = stores.setdefault(key, DatastoreSamples(dict(key)))
            setattr(store, name, s.samples)
    return stores


def alert_samples(prom: Prometheus, selector: str, start: float, end: float) -> list[Series]:
    """Raw samples of the firing backup alerts: one per rule evaluation while an alert fires."""
    window = int(end - start + ALERT_LOOKBACK)
    return prom.instant(f"{selector}[{window}s]", end)


# The recovery service's restore drills: a guest is drilled at most once an interval (hours to weeks), so the
# drill series read hourly show each drill: a new last-run value is one drill, the result and RTO beside it.
DRILL_STEP = 3600


@dataclass
class DrillSamples:
    guest: str
    last_run: list[tuple[float, float]] = field(default_factory=list)
    last_success: list[tuple[float, float]] = field(default_factory=list)
    result: list[tuple[float, float, str]] = field(default_factory=list)  # (t, 1 passed / 0 failed, step)
    duration: list[tuple[float, float]] = field(default_factory=list)
    selected: bool = False  # the service drills it (its interval series exists)


def drill_samples(prom: Prometheus, start: float, end: float) -> dict[str, DrillSamples]:
    guests: dict[str, DrillSamples] = {}

    def guest(s: Series) -> DrillSamples:
        name = s.labels.get("guest", "")
        return guests.setdefault(name, DrillSamples(name))
    for s in prom.range(f"max by (guest) ({RESTORE_DRILL_INTERVAL})", start, end - 1, DRILL_STEP):
        guest(s).selected = True
    for s in prom.range(f"max by (guest) ({RESTORE_DRILL_LAST_RUN})", start, end - 1, DRILL_STEP):
        guest(s).last_run = s.samples
    for s in prom.range(f"max by (guest) ({RESTORE_DRILL_LAST_SUCCESS})", start, end - 1, DRILL_STEP):
        guest(s).last_success = s.samples
    for s in prom.range(f"max by (guest) ({RESTORE_DRILL_LAST_DURATION})", start, end - 1, DRILL_STEP):
        guest(s).duration = s.samples
    for s in prom.range(f"min by (guest, step) ({RESTORE_DRILL_LAST_RESULT})", start, end - 1, DRILL_STEP):
        guest(s).result += [(t, v, s.labels.get("step", "")) for t, v in s.samples]
    for g in guests.values():
        g.result.sort()
    return guests
