"""The SLO engine: each SLO of the config becomes multi-window, multi-burn-rate rules.

The alerting policy is the Google SRE Workbook's (chapter "Alerting on SLOs"): a page when
the budget burns 14.4x over 1h and 5m or 6x over 6h and 30m, a ticket at 3x over 1d and 2h
or 1x over 3d and 6h. The short window makes an alert reset within minutes after a fix.

Per SLO this records one burn-rate series per window (7) and the error budget remaining over
the SLO period (1), and defines one alert with a page and a ticket rule (2): 10 rules where
Sloth needs 17. A burn rate is the error ratio divided by the error budget (1 - objective),
so every threshold reads as "times the sustainable rate" and dashboards need no objective.
An SLO with `alerts: false` keeps its 8 recording rules and defines no alert.

Zero traffic is an error ratio of 0: no NaN, no page and an untouched budget. A missing
total counter yields no series at all (the absent alerts catch that).

A probe SLI (availability from the blackbox exporter) has no counters: `probe_success` is a
0/1 gauge, one sample per probe. Each sample is an event, so the total is `count_over_time`
and the good events `sum_over_time` over the window; the rest of the engine is the same.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.rules import AlertRule, RecordingRule, RuleGroup
from model.config import Slo, StackConfig
from model.probes import PROBE_LABEL

PROBE_SUCCESS = "probe_success"


@dataclass(frozen=True)
class BurnCondition:
    factor: float
    long_window: str
    short_window: str


PAGE = (BurnCondition(14.4, "1h", "5m"), BurnCondition(6, "6h", "30m"))
TICKET = (BurnCondition(3, "1d", "2h"), BurnCondition(1, "3d", "6h"))
WINDOWS = ("5m", "30m", "1h", "2h", "6h", "1d", "3d")

BURN_RATE = "slo:burn_rate:{window}"
BUDGET_REMAINING = "slo:error_budget_remaining:ratio"


def error_budget(slo: Slo) -> float:
    return round(1 - slo.objective / 100, 10)


def _number(value: float) -> str:
    return f"{value:g}"


def _le_matcher(threshold: float) -> str:
    # Prometheus 3 normalises bucket bounds on ingestion ("500" becomes "500.0"); 2.x keeps
    # what the exporter wrote. The regex matches both spellings.
    bound = f"{threshold:f}".rstrip("0").rstrip(".")
    escaped_dot = "\\\\."  # PromQL string "\\." is the regex \.
    pattern = bound.replace(".", escaped_dot) if "." in bound else f"{bound}({escaped_dot}0)?"
    return f'le=~"{pattern}"'


def _with_labels(metric: str, labels: dict[str, str], extra: str = "") -> str:
    parts = [f'{k}="{v}"' for k, v in sorted(labels.items())] + ([extra] if extra else [])
    return f"{metric}{{{','.join(parts)}}}" if parts else metric


@dataclass(frozen=True)
class EventQueries:
    """PromQL for the SLO's events over one window."""

    total: str
    bad: str


def event_queries(slo: Slo, window: str, fn: str = "rate") -> EventQueries:
    sli = slo.sli

    def agg(selector: str) -> str:
        return f"sum({fn}({selector}[{window}]))"

    if sli.probe:
        # Samples, not rates: `fn` (rate or increase) has no meaning for a gauge of probe results.
        selector = _with_labels(PROBE_SUCCESS, {PROBE_LABEL: sli.probe})
        total = f"sum(count_over_time({selector}[{window}]))"
        good = f"sum(sum_over_time({selector}[{window}]))"
    elif sli.latency:
        lat = sli.latency
        total = agg(_with_labels(f"{lat.histogram}_count", lat.selector))
        good = agg(_with_labels(f"{lat.histogram}_bucket", lat.selector, _le_matcher(lat.threshold)))
    else:
        total = agg(sli.total_events)
        good = agg(sli.good_events) if sli.good_events else None
    if good is not None:
        # A good-events counter that does not exist yet counts as zero good events.
        bad = f"clamp_min({total} - ({good} or vector(0)), 0)"
    else:
        bad = f"({agg(sli.bad_events)} or vector(0))"
    return EventQueries(total=total, bad=bad)


def error_ratio(slo: Slo, window: str) -> str:
    q = event_queries(slo, window)
    # No events: the division yields nothing and the `or` branch a clean 0.
    return f"(\n  {q.bad}\n    / ({q.total} > 0)\n  or\n  {q.total} * 0\n)"


def _labels(slo: Slo) -> dict[str, str]:
    return {"slo": slo.name, "service": slo.service}


def _selector(slo: Slo) -> str:
    return f'{{slo="{slo.name}"}}'


def recording_rules(slo: Slo) -> list[RecordingRule]:
    budget = _number(error_budget(slo))
    rules = [
        {"record": BURN_RATE.format(window=w), "expr": f"{error_ratio(slo, w)} / {budget}", "labels": _labels(slo)}
        for w in WINDOWS
    ]
    rules.append({
        "record": BUDGET_REMAINING,
        "expr": f"1 - {error_ratio(slo, slo.period)} / {budget}",
        "labels": _labels(slo),
    })
    return rules


def _condition(slo: Slo, c: BurnCondition) -> str:
    sel = _selector(slo)
    long = f"{BURN_RATE.format(window=c.long_window)}{sel} > {_number(c.factor)}"
    short = f"{BURN_RATE.format(window=c.short_window)}{sel} > {_number(c.factor)}"
    expr = f"{long}\n  and\n  {short}"
    if slo.min_bad_events > 1:
        bad_events = event_queries(slo, c.long_window, fn="increase").bad
        expr += f"\n  and on()\n  {bad_events} >= {slo.min_bad_events}"
    return f"(\n  {expr}\n)"


def _alert(slo: Slo, severity: str, conditions: tuple[BurnCondition, ...], for_: str) -> AlertRule:
    windows = " or ".join(f"{_number(c.factor)}x over {c.long_window} and {c.short_window}" for c in conditions)
    kind = "fast" if severity == "critical" else "slowly but steadily"
    return {
        "alert": slo.alert_name,
        "expr": "\nor\n".join(_condition(slo, c) for c in conditions),
        "for": for_,
        "labels": {"severity": severity, **_labels(slo)},
        "annotations": {
            "summary": f"SLO {slo.name} burns its error budget {kind}",
            "description": (
                f"{slo.description} (objective {_number(slo.objective)}% over {slo.period}): "
                f"the error budget burns at {{{{ $value | humanize }}}}x the sustainable rate "
                f"(threshold: {windows})."
            ),
        },
    }


def alert_rules(slo: Slo) -> list[AlertRule]:
    """The page and the ticket; none for an SLO with `alerts: false` (other alerts page for it)."""
    if not slo.alerts:
        return []
    return [_alert(slo, "critical", PAGE, slo.page_for), _alert(slo, "warning", TICKET, slo.ticket_for)]


def rule_groups(cfg: StackConfig) -> list[RuleGroup]:
    """One group per SLO: recording rules first, so its alerts read this evaluation's values."""
    return [
        {"name": f"slo-{slo.name}", "interval": cfg.metrics.evaluation_interval,
         "rules": recording_rules(slo) + alert_rules(slo)}
        for slo in cfg.slos
    ]
