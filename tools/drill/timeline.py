"""Synthetic metric values as functions of scenario time (real, uncompressed seconds).

A scenario's t = 0 is the moment Prometheus starts; negative times are the history that is
backfilled before it starts, so that a 1h or 3d window is full from the first evaluation
(without it, a ratio over "the last 1h" would be a ratio over the few seconds Prometheus has
been up, and burn-rate alerts would fire far too early).

Counters grow by their real-time rate in scenario time, so `increase()` and ratios of rates are
exactly as in production; a bare `rate()` compared with an absolute number is `factor` times
larger in the drill (per wall second), which the docs say.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Iterable, Mapping, Protocol, Union

# Counters start this far back, so that their values look like a long-running process.
COUNTER_ORIGIN = -30 * 86400.0


class Model(Protocol):
    def at(self, t: float) -> float: ...


@dataclass(frozen=True)
class Steps:
    """A gauge that holds each value from its time on: ((t, value), ...), sorted by t."""

    points: tuple[tuple[float, float], ...]

    def at(self, t: float) -> float:
        times = [p[0] for p in self.points]
        i = bisect.bisect_right(times, t) - 1
        return self.points[max(i, 0)][1]


@dataclass(frozen=True)
class Ramp:
    """A gauge interpolated linearly between its points and flat outside them."""

    points: tuple[tuple[float, float], ...]

    def at(self, t: float) -> float:
        pts = self.points
        if t <= pts[0][0]:
            return pts[0][1]
        for (t0, v0), (t1, v1) in zip(pts, pts[1:]):
            if t <= t1:
                return v0 + (v1 - v0) * (t - t0) / (t1 - t0)
        return pts[-1][1]


@dataclass(frozen=True)
class Counter:
    """A counter: piecewise-constant rate per real second ((t, rate), ...) plus jumps ((t, n), ...)."""

    rates: tuple[tuple[float, float], ...] = ((COUNTER_ORIGIN, 0.0),)
    jumps: tuple[tuple[float, float], ...] = ()

    def at(self, t: float) -> float:
        total = 0.0
        pieces = list(self.rates) + [(max(t, self.rates[-1][0]), 0.0)]
        for (t0, rate), (t1, _) in zip(pieces, pieces[1:]):
            start = max(t0, COUNTER_ORIGIN)
            end = min(t1, t)
            if end > start:
                total += rate * (end - start)
        return total + sum(n for when, n in self.jumps if when <= t)


@dataclass(frozen=True)
class Timestamp(Steps):
    """A gauge holding a moment of scenario time, served as the Unix time the drill reaches it.

    The PBS exporter's `*_timestamp_seconds` gauges are Unix times; the drill serves the wall-clock
    time at which the (compressed) scenario reached that moment, so comparisons between them are
    exact and `time() - x` reads in wall seconds (`factor` times smaller than in production).
    """


SeriesModel = Union[Steps, Ramp, Counter, Timestamp]


def value_at(model: SeriesModel, t: float, epoch_of: "WallClock | None" = None) -> float:
    value = model.at(t)
    return epoch_of(value) if epoch_of is not None and isinstance(model, Timestamp) else value


@dataclass(frozen=True)
class Series:
    """One time series an exporter serves: the scrape job and target, its name and labels, its model."""

    job: str
    metric: str
    labels: tuple[tuple[str, str], ...]
    model: SeriesModel
    target: str | None = None  # None: the job's first target

    @property
    def key(self) -> tuple[str, str | None, str, tuple[tuple[str, str], ...]]:
        return (self.job, self.target, self.metric, self.labels)

    def exposition_name(self) -> str:
        if not self.labels:
            return self.metric
        inner = ",".join(f'{k}="{_escape(v)}"' for k, v in self.labels)
        return f"{self.metric}{{{inner}}}"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def series_for_target(series: Iterable[Series], job: str, target: str, first_target_of_job: Mapping[str, str]) -> list[Series]:
    return [s for s in series if s.job == job and (s.target or first_target_of_job.get(job)) == target]


def exposition(series: Iterable[Series], t: float, epoch_of: "WallClock | None" = None) -> str:
    """Prometheus text format (0.0.4) of `series` at scenario time t, untyped."""
    return "".join(f"{s.exposition_name()} {value_at(s.model, t, epoch_of):.17g}\n" for s in series)


def backfill_openmetrics(series: Iterable[Series], start: float, end: float, step: float, wall_at: "WallClock",
                         target_labels: Mapping[tuple[str, str | None], Mapping[str, str]]) -> str:
    """OpenMetrics text with the history of `series` on [start, end) every `step` (scenario seconds),
    each sample stamped with its wall-clock time, for `promtool tsdb create-blocks-from openmetrics`.

    `target_labels` gives the labels Prometheus itself adds at scrape time (job, instance and the
    static labels) for each (job, target), so the history joins the live series seamlessly.
    """
    by_family: dict[str, list[Series]] = {}
    for s in series:
        by_family.setdefault(s.metric, []).append(s)
    lines: list[str] = []
    count = max(int((end - start) / step), 0)
    for metric, members in by_family.items():
        lines.append(f"# TYPE {metric} unknown")
        for s in members:
            labels = dict(target_labels[(s.job, s.target)])
            labels.update(s.labels)
            inner = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
            for i in range(count):
                t = start + i * step
                lines.append(f"{metric}{{{inner}}} {value_at(s.model, t, wall_at):.17g} {wall_at(t):.3f}")
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


class WallClock(Protocol):
    def __call__(self, scenario_seconds: float) -> float: ...


def merge(baseline: Iterable[Series], overrides: Iterable[Series]) -> list[Series]:
    """The baseline with each series replaced by the override of the same key."""
    chosen = {s.key: s for s in baseline}
    for s in overrides:
        chosen[s.key] = s
    return list(chosen.values())
