"""The report's figures, computed from the samples collect.py read (pure: no I/O, no clock).

Counting rules (docs/reports.md explains them for readers of the report):
- An increment of `pbs_job_attempt_total` between two change points is that many finished runs,
  the success counter's increment how many of them succeeded; the rest failed.
- Runs belong to the quarter in which they *ended*: the `pbs_job_last_run_timestamp_seconds`
  value at the change point, not the scrape time, so a run that ended at 23:59:50 on the last
  day counts in this quarter even though Prometheus saw it after midnight.
- A counter that goes down was reset (the exporter lost its state file). Its new value counts
  from zero, except when its last run is not newer than the last run seen before the reset:
  then the exporter re-read runs from PBS's task log that were already counted.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from fractions import Fraction

from .collect import DatastoreSamples, DrillSamples, JobSamples, Snapshot
from .prometheus import Series


@dataclass(frozen=True)
class Window:
    start: float
    end: float  # exclusive
    tz: tzinfo

    def __contains__(self, t: float) -> bool:
        return self.start <= t < self.end

    def local(self, t: float) -> datetime:
        return datetime.fromtimestamp(t, self.tz)

    def days(self) -> list[date]:
        first, last = self.local(self.start).date(), self.local(self.end - 1).date()
        return [first + timedelta(days=i) for i in range((last - first).days + 1)]

    def months(self) -> list[tuple[float, float]]:
        """The window's calendar months (local), as (start, end) times."""
        out, cursor = [], self.local(self.start)
        while cursor.timestamp() < self.end:
            month = cursor.month % 12 + 1
            nxt = cursor.replace(year=cursor.year + (cursor.month == 12), month=month, day=1,
                                 hour=0, minute=0, second=0, microsecond=0)
            out.append((cursor.timestamp(), min(nxt.timestamp(), self.end)))
            cursor = nxt
        return out


# --- jobs -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Failure:
    time: float  # end of the failed run; of the latest run when several ended between two scrapes
    runs: int
    exact: bool  # one run at this change point: the time is the failed run's own


@dataclass(frozen=True)
class CounterReset:
    time: float
    value: int
    counted: bool  # False: the exporter re-read runs it had counted before (not counted again)


class _Tally:
    """Runs and how many succeeded: the failures and the success ratio follow."""

    runs: int
    successes: int

    @property
    def failures(self) -> int:
        return self.runs - self.successes

    @property
    def ratio(self) -> Fraction | None:
        return Fraction(self.successes, self.runs) if self.runs else None


@dataclass
class JobFigures(_Tally):
    job_id: str
    job_type: str
    datastore: str
    instance: str
    runs: int = 0
    successes: int = 0
    failure_list: list[Failure] = field(default_factory=list)
    durations: list[tuple[float, float]] = field(default_factory=list)  # (end time, seconds)
    success_times: list[float] = field(default_factory=list)
    last_success: float | None = None
    longest_gap: tuple[float, float] | None = None
    resets: list[CounterReset] = field(default_factory=list)
    daily: dict[date, list[int]] = field(default_factory=dict)  # local day -> [successes, failures]

    def duration_quantile(self, q: float) -> float | None:
        return quantile([d for _, d in self.durations], q)


def quantile(values: list[float], q: float) -> float | None:
    """Linear interpolation between the closest ranks (as numpy's default)."""
    if not values:
        return None
    ordered = sorted(values)
    pos = q * (len(ordered) - 1)
    low = int(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def _count(samples: JobSamples, window: Window) -> JobFigures:
    labels = samples.labels
    job = JobFigures(labels.get("job_id", ""), labels.get("job_type", ""), labels.get("datastore", ""),
                     labels.get("instance", ""))
    base = samples.baseline or Snapshot(t=window.start)
    prev_attempts, prev_successes = base.attempts or 0.0, base.successes or 0.0
    last_run_seen = base.last_run
    for point in samples.changes:
        if point.attempts is None:
            continue
        attempts = point.attempts
        successes = point.successes if point.successes is not None else prev_successes
        if attempts < prev_attempts:
            reread = point.last_run is not None and last_run_seen is not None and point.last_run <= last_run_seen
            if point.t < window.end:
                job.resets.append(CounterReset(point.t, int(attempts), counted=not reread))
            new_runs, new_ok = (0.0, 0.0) if reread else (attempts, successes)
        else:
            new_runs, new_ok = attempts - prev_attempts, max(successes - prev_successes, 0.0)
        prev_attempts, prev_successes = attempts, successes
        ended = point.last_run if point.last_run is not None else point.t
        if point.last_run is not None:
            last_run_seen = max(last_run_seen or point.last_run, point.last_run)
        runs, ok = int(round(new_runs)), int(round(min(new_ok, new_runs)))
        if runs <= 0 or ended not in window:
            continue
        job.runs += runs
        job.successes += ok
        day = job.daily.setdefault(window.local(ended).date(), [0, 0])
        day[0] += ok
        day[1] += runs - ok
        if runs > ok:
            job.failure_list.append(Failure(ended, runs - ok, exact=runs == 1))
        if ok:
            job.success_times.append(point.last_success if point.last_success is not None else ended)
        if point.last_duration is not None:
            job.durations.append((ended, point.last_duration))
    in_quarter = [t for t in job.success_times if t in window]
    before = base.last_success if base.last_success is not None and base.last_success < window.start else None
    job.last_success = max(in_quarter) if in_quarter else before
    job.longest_gap = _longest_gap(before, in_quarter, job, window)
    return job


def _longest_gap(before: float | None, successes: list[float], job: JobFigures, window: Window):
    """Longest time without a success: from the last one before the quarter (or the job's first
    run in it) through each success to the quarter's end."""
    first_run = min([f.time for f in job.failure_list] + successes, default=None)
    anchor = before if before is not None else first_run
    if anchor is None:
        return None
    points = [anchor] + sorted(successes) + [window.end]
    gaps = [(a, b) for a, b in zip(points, points[1:]) if b > a]
    return max(gaps, key=lambda g: g[1] - g[0], default=None)


def job_figures(samples: dict[tuple, JobSamples], window: Window) -> list[JobFigures]:
    jobs = []
    for series in samples.values():
        job = _count(series, window)
        # A series that appears only after the quarter is not one of its jobs.
        present = series.baseline is not None or any(p.t < window.end for p in series.changes)
        if job.runs or job.resets or present:
            jobs.append(job)
    return sorted(jobs, key=lambda j: (j.job_type != "backup", j.job_type, j.job_id, j.datastore, j.instance))


def duration_trend(job: JobFigures, window: Window) -> float | None:
    """Relative change of the median duration from the quarter's first month to its last."""
    months = window.months()
    if len(months) < 2:
        return None
    first = [d for t, d in job.durations if months[0][0] <= t < months[0][1]]
    last = [d for t, d in job.durations if months[-1][0] <= t < months[-1][1]]
    if not first or not last or statistics.median(first) <= 0:
        return None
    return statistics.median(last) / statistics.median(first) - 1


# --- datastores -----------------------------------------------------------------------------

@dataclass
class DatastoreFigures:
    datastore: str
    instance: str
    size: float | None
    used_start: float | None
    used_end: float | None
    available: float | None
    span_days: float
    used_series: list[tuple[float, float]]

    @property
    def growth(self) -> float | None:
        if self.used_start is None or self.used_end is None:
            return None
        return self.used_end - self.used_start

    @property
    def growth_per_day(self) -> float | None:
        return self.growth / self.span_days if self.growth is not None and self.span_days > 0 else None

    @property
    def days_until_full(self) -> float | None:
        rate = self.growth_per_day
        if rate is None or rate <= 0 or self.available is None:
            return None
        return self.available / rate

    @property
    def used_percent(self) -> float | None:
        if not self.size or self.used_end is None:
            return None
        return 100 * self.used_end / self.size


def datastore_figures(stores: dict[tuple, DatastoreSamples], window: Window) -> list[DatastoreFigures]:
    out = []
    for store in stores.values():
        used = [(t, v) for t, v in store.used if t in window]
        size = [v for t, v in store.size if t in window]
        avail = [v for t, v in store.available if t in window]
        span = (used[-1][0] - used[0][0]) / 86400 if len(used) > 1 else 0.0
        out.append(DatastoreFigures(
            store.labels.get("datastore", ""), store.labels.get("instance", ""),
            size[-1] if size else None, used[0][1] if used else None, used[-1][1] if used else None,
            avail[-1] if avail else None, span, used))
    return sorted(out, key=lambda d: (d.datastore, d.instance))


# --- incidents ------------------------------------------------------------------------------

@dataclass
class Incident:
    start: float
    end: float
    alerts: set[tuple[str, str]]  # (alertname, severity)
    jobs: set[str]
    began_before: bool = False
    ongoing: bool = False

    @property
    def duration(self) -> float:
        return self.end - self.start


def _job_label(labels: dict[str, str]) -> str | None:
    if labels.get("job_id"):
        return f"{labels.get('job_type', 'job')} {labels['job_id']}"
    if labels.get("datastore"):
        return f"datastore {labels['datastore']}"
    return None


def incidents(alerts: list[Series], window: Window, evaluation_interval: float) -> list[Incident]:
    """Firing periods of the backup alerts, overlapping ones merged into one incident each.

    A firing alert has one ALERTS sample per rule evaluation; a pause longer than two
    evaluations ends its firing period, which lasts until the evaluation after its last sample.
    """
    periods: list[tuple[float, float, dict[str, str]]] = []
    for series in alerts:
        times = [t for t, _ in series.samples]
        if not times:
            continue
        begin = prev = times[0]
        for t in times[1:] + [None]:
            if t is None or t - prev > 2 * evaluation_interval:
                periods.append((begin, prev + evaluation_interval, series.labels))
                if t is not None:
                    begin = t
            if t is not None:
                prev = t
    merged: list[Incident] = []
    for begin, finish, labels in sorted(periods, key=lambda p: p[0]):
        if finish <= window.start or begin >= window.end:
            continue
        job = _job_label(labels)
        if merged and begin <= merged[-1].end:
            last = merged[-1]
            last.end = max(last.end, finish)
        else:
            last = Incident(begin, finish, set(), set())
            merged.append(last)
        last.alerts.add((labels.get("alertname", "?"), labels.get("severity", "")))
        if job:
            last.jobs.add(job)
    for incident in merged:
        incident.began_before = incident.start < window.start
        incident.ongoing = incident.end > window.end
        incident.start, incident.end = max(incident.start, window.start), min(incident.end, window.end)
    return merged


# --- the whole report -----------------------------------------------------------------------

@dataclass
class Summary(_Tally):
    runs: int
    successes: int
    objective: Fraction  # e.g. 995/1000

    @property
    def slo_met(self) -> bool | None:
        return None if self.ratio is None else self.ratio >= self.objective


def budget_used(runs: int, failures: int, objective: Fraction) -> Fraction | None:
    """Failures as a share of those the SLO allows over these runs (1 = the whole budget)."""
    allowed = (1 - objective) * runs
    return Fraction(failures) / allowed if allowed else None


def percent_value(value: Fraction | None) -> Decimal | None:
    """Two decimals, rounded half up; never 100.00 with a failure, nor 0.00 with a success."""
    if value is None:
        return None
    scaled = (Decimal(value.numerator) * 100 / Decimal(value.denominator)).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP)
    if value < 1 and scaled >= 100 and value.denominator != 1:
        return Decimal("99.99")
    if 0 < value and scaled <= 0:
        return Decimal("0.01")
    return scaled


def percent(value: Fraction | None) -> str:
    shown = percent_value(value)
    return "–" if shown is None else f"{shown}%"


# --- restore drills ------------------------------------------------------------------------

@dataclass(frozen=True)
class DrillFigures:
    guest: str
    passed: int
    failed: int
    failed_steps: tuple[str, ...]  # the step of each failed drill, in order
    rtos: tuple[float, ...]  # seconds, one per passed drill

    @property
    def runs(self) -> int:
        return self.passed + self.failed

    def rto(self, which: str) -> float | None:
        if not self.rtos:
            return None
        return {"min": min, "median": statistics.median, "max": max}[which](self.rtos)


def drill_figures(samples: dict[str, DrillSamples], window: Window) -> list[DrillFigures]:
    """Per guest the service drills (or drilled this quarter): each new value of its last-run time (a drill's
    start) that lies in the quarter is one drill. It passed when the last success at that step is not older
    than its start (then the RTO beside it is its own), else it failed at the step its failed result names
    (a result series the service replaced may still show for a lookback: only the failed one is read).
    A guest selected and never drilled this quarter has a row of zeros."""
    out = []
    for name, g in sorted(samples.items()):
        passed, failed, steps, rtos = 0, 0, [], []
        seen = set()
        success, duration = dict(g.last_success), dict(g.duration)
        for t, run in g.last_run:
            if run in seen or run not in window:
                continue
            seen.add(run)
            if success.get(t, float("-inf")) >= run:
                passed += 1
                rtos += [duration[t]] if t in duration else []
            else:
                failed += 1
                steps.append(next((step for rt, v, step in g.result if rt == t and v < 1), "unknown"))
        if g.selected or passed or failed:
            out.append(DrillFigures(name, passed, failed, tuple(steps), tuple(rtos)))
    return out


@dataclass
class Report:
    quarter: str
    title: str
    span: str
    site: str
    timezone: str
    window: Window
    read_until: float
    generated_at: float
    prometheus_url: str
    objective: Fraction
    jobs: list[JobFigures]
    datastores: list[DatastoreFigures]
    incidents: list[Incident]
    drills: list[DrillFigures] = field(default_factory=list)

    @property
    def summary(self) -> Summary:
        return Summary(sum(j.runs for j in self.jobs), sum(j.successes for j in self.jobs), self.objective)

    @property
    def has_data(self) -> bool:
        return bool(self.jobs or self.datastores or self.incidents)

    def daily(self) -> list[tuple[date, int, int]]:
        totals: dict[date, list[int]] = defaultdict(lambda: [0, 0])
        for job in self.jobs:
            for day, (ok, failed) in job.daily.items():
                totals[day][0] += ok
                totals[day][1] += failed
        return [(d, *totals.get(d, [0, 0])) for d in self.window.days()]

    @property
    def resets(self) -> list[tuple[JobFigures, CounterReset]]:
        return [(j, r) for j in self.jobs for r in j.resets]
