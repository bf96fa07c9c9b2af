"""What arrived against what was expected: decoding captured notifications and judging them.

A captured request is decoded into a Notification (receiver, status, alert names, severity).
Alert names are read from the payload as Alertmanager's default templates write them (group
labels in the title; PagerDuty details list every label); a custom template that hides the
alert name would make the drill report misses, never false passes.

Verdicts, per scenario:
  missed     an expected notification never arrived
  duplicate  it arrived more than once within the route's repeat_interval
  late       time-to-notify exceeded RATIO_LIMIT times its theoretical bound
  unexpected a notification no expectation accounts for (a wrong route, a page nobody wanted)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from tools.drill.deployed_config import AlertRule, TimeScale, MIN_INTERVAL
from tools.drill.routes import Route, delivery_to
from tools.drill.scenarios import Expect, Scenario

# A notification may take this many times its theoretical bound before the drill fails it:
# generous, because a 2-core CI machine schedules three servers and the drill itself.
RATIO_LIMIT = 3.0
# Alertmanager needs a moment to start again and receive Prometheus's next resend.
ALERTMANAGER_START_ALLOWANCE = 1.0
_TITLE_STATUS_RE = re.compile(r"\[(FIRING|RESOLVED)\b")


@dataclass(frozen=True)
class Captured:
    """One request the capture server received."""

    wall: float  # seconds since the scenario's start
    receiver: str
    integration: str
    body: Any
    answered: int


@dataclass(frozen=True)
class Notification:
    wall: float
    receiver: str
    integration: str
    status: str
    alerts: frozenset[str]
    severity: str | None
    content: str


def _mentions(text: str, name: str) -> bool:
    return re.search(rf"(?<![A-Za-z0-9_]){re.escape(name)}(?![A-Za-z0-9_])", text) is not None


RuleSet = Mapping[str, "AlertRule | list[AlertRule]"]


def _variants(rules: RuleSet, name: str) -> list[AlertRule]:
    found = rules.get(name)
    return [] if found is None else list(found) if isinstance(found, list) else [found]


def rule_for(rules: RuleSet, name: str, severity: str | None) -> AlertRule | None:
    """The rule of that name with that severity (one alert name often has a warning and a critical rule)."""
    variants = _variants(rules, name)
    return next((r for r in variants if r.labels.get("severity") == severity), variants[0] if variants else None)


def decode(captured: Captured, rules: RuleSet) -> Notification:
    body = captured.body if isinstance(captured.body, dict) else {}
    content = json.dumps(captured.body, sort_keys=True)
    severity: str | None = None
    if captured.integration == "webhook":
        status = body.get("status", "unknown")
        alerts = frozenset(a.get("labels", {}).get("alertname", "") for a in body.get("alerts", []))
        severities = {a.get("labels", {}).get("severity") for a in body.get("alerts", [])}
        severity = severities.pop() if len(severities) == 1 else None
    else:
        alerts = frozenset(name for name in rules if _mentions(content, name))
        if captured.integration == "pagerduty":
            status = {"trigger": "firing", "resolve": "resolved"}.get(body.get("event_action"), "unknown")
            severity = (body.get("payload") or {}).get("severity")
        else:
            attachments = body.get("attachments") or [{}]
            title = " ".join(str(attachments[0].get(k, "")) for k in ("title", "fallback")) + str(body.get("text", ""))
            found = _TITLE_STATUS_RE.search(title)
            if found:
                status = found.group(1).lower()
            else:
                status = {"danger": "firing", "good": "resolved"}.get(attachments[0].get("color"), "unknown")
        if severity is None:
            candidates = {r.labels.get("severity") for a in alerts for r in _variants(rules, a)}
            # The chat template writes each alert's severity as *critical*; a message that lists
            # several (a resolved critical beside a firing warning) has no single severity.
            shown = {word for word in re.findall(r"\*([A-Za-z]+)\*", content) if word in candidates}
            severities = shown or candidates
            severity = severities.pop() if len(severities) == 1 else None
    return Notification(captured.wall, captured.receiver, captured.integration, status, alerts, severity, content)


@dataclass(frozen=True)
class Bound:
    """Theoretical time-to-notify in wall seconds, and how it was made up."""

    wall: float
    terms: str


def bound_for(expect: Expect, rule: AlertRule | None, tree: Route, scale: TimeScale, scenario: Scenario) -> Bound | None:
    if expect.repeating or rule is None:
        return None
    delivery = delivery_to(tree, {"alertname": rule.name, **rule.labels}, expect.receiver)
    if delivery is None:
        return None
    detect = scale.scrape_interval_s + scale.evaluation_interval_s
    group_wait = delivery.group_wait / scale.factor
    group_interval = max(delivery.group_interval / scale.factor, MIN_INTERVAL)
    if expect.status == "firing":
        wall = detect + rule.for_seconds / scale.factor + group_wait
        terms = "scrape + evaluation + for + group_wait"
        wait_after_outage = group_wait
    else:
        wall = detect + group_interval
        terms = "scrape + evaluation + group_interval"
        wait_after_outage = group_interval
    onset = scale.wall(expect.at)
    for outage in scenario.receiver_outages:
        if outage.receiver == expect.receiver and scale.wall(outage.start) <= onset + wall < scale.wall(outage.end):
            wall = scale.wall(outage.end) - onset + group_interval
            terms = f"{expect.receiver} answering {outage.status} until {outage.end / 60:g}m + group_interval"
    # Prometheus sends the alert (or its resolution) to Alertmanager this long after the onset.
    sent = onset + detect + (rule.for_seconds / scale.factor if expect.status == "firing" else 0.0)
    for down in scenario.alertmanager_down:
        if scale.wall(down.start) <= sent < scale.wall(down.end):
            wall = (scale.wall(down.end) - onset + ALERTMANAGER_START_ALLOWANCE + scale.resend_delay_s
                    + scale.evaluation_interval_s + wait_after_outage)
            terms = (f"Alertmanager down until {down.end / 60:g}m + start + resend delay + evaluation + "
                     + ("group_wait" if expect.status == "firing" else "group_interval"))
    return Bound(wall, terms)


def repeat_interval_for(expect: Expect, rule: AlertRule | None, tree: Route, scale: TimeScale) -> float:
    labels = {"alertname": expect.alert, **(rule.labels if rule else {})}
    delivery = delivery_to(tree, labels, expect.receiver)
    seconds = delivery.repeat_interval if delivery else 4 * 3600.0
    return max(seconds / scale.factor, MIN_INTERVAL)


@dataclass
class ExpectResult:
    expect: Expect
    arrivals: list[Notification]
    bound: Bound | None
    repeat_interval: float
    verdict: str = "ok"
    detail: str = ""

    @property
    def first(self) -> Notification | None:
        return self.arrivals[0] if self.arrivals else None

    def time_to_notify(self, scale: TimeScale) -> float | None:
        return None if self.first is None else self.first.wall - scale.wall(self.expect.at)

    def ratio(self, scale: TimeScale) -> float | None:
        elapsed = self.time_to_notify(scale)
        if elapsed is None or self.bound is None or self.bound.wall <= 0:
            return None
        return elapsed / self.bound.wall


@dataclass
class ScenarioVerdict:
    results: list[ExpectResult]
    unexpected: list[Notification]
    repeats: list[Notification] = field(default_factory=list)
    failed_deliveries: int = 0

    @property
    def failures(self) -> list[str]:
        out = [f"{r.verdict}: {r.expect.receiver} {r.expect.alert} {r.expect.status}" + (f" ({r.detail})" if r.detail else "")
               for r in self.results if r.verdict != "ok"]
        out += [f"unexpected: {n.receiver} {', '.join(sorted(n.alerts)) or '(no known alert)'} {n.status}"
                for n in self.unexpected]
        return out

    @property
    def passed(self) -> bool:
        return not self.failures


def matches(expect: Expect, notification: Notification) -> bool:
    return (notification.receiver == expect.receiver and notification.status == expect.status
            and expect.alert in notification.alerts
            and (not expect.severity or notification.severity in (None, expect.severity)))


def _assign(expected: Iterable[Expect], notifications: list[Notification], scale: TimeScale) -> dict[int, list[Notification]]:
    """Each notification counts for one expectation: the one whose severity it shows, else (a message
    without a single severity) a matching expectation that has nothing yet, else the one whose
    condition began last before the notification."""
    expected = list(expected)
    arrivals: dict[int, list[Notification]] = {i: [] for i in range(len(expected))}
    for n in notifications:
        candidates = [i for i, e in enumerate(expected) if matches(e, n)]
        exact = [i for i in candidates if n.severity is not None or not expected[i].severity]
        if exact:
            chosen = exact
        else:
            earlier = sorted((i for i in candidates if expected[i].at <= scale.real(n.wall)), key=lambda i: expected[i].at)
            chosen = [i for i in candidates if not arrivals[i]] or earlier[-1:] or candidates[:1]
        for i in chosen if exact else chosen[:1]:
            arrivals[i].append(n)
    return arrivals


def judge(scenario: Scenario, notifications: Iterable[Notification], rules: RuleSet, tree: Route,
          scale: TimeScale, failed_deliveries: int = 0) -> ScenarioVerdict:
    notifications = sorted(notifications, key=lambda n: n.wall)
    results: list[ExpectResult] = []
    accounted: set[int] = set()
    repeats: list[Notification] = []
    assigned = _assign(scenario.expected, notifications, scale)
    for index, expect in enumerate(scenario.expected):
        rule = rule_for(rules, expect.alert, expect.severity)
        arrivals = assigned[index]
        accounted.update(id(n) for n in arrivals)
        result = ExpectResult(expect, arrivals, bound_for(expect, rule, tree, scale, scenario),
                              repeat_interval_for(expect, rule, tree, scale))
        if rule is None:
            result.verdict, result.detail = "missed", "no such alert in the rendered rules"
        elif not arrivals:
            result.verdict = "missed"
        elif expect.severity and arrivals[0].severity not in (None, expect.severity):
            result.verdict = "wrong-severity"
            result.detail = f"got {arrivals[0].severity}, expected {expect.severity}"
        elif not expect.repeating:
            too_soon = [b for a, b in zip(arrivals, arrivals[1:]) if b.wall - a.wall < result.repeat_interval * 0.9]
            repeats += [b for a, b in zip(arrivals, arrivals[1:]) if b not in too_soon]
            if too_soon:
                result.verdict = "duplicate"
                result.detail = (f"{len(arrivals)} notifications, {len(too_soon)} within repeat_interval "
                                 f"{result.repeat_interval:.1f}s")
        ratio = result.ratio(scale)
        if result.verdict == "ok" and ratio is not None and ratio > RATIO_LIMIT:
            result.verdict, result.detail = "late", f"{ratio:.2f} x bound (limit {RATIO_LIMIT:g})"
        results.append(result)
    unexpected = [n for n in notifications if id(n) not in accounted]
    return ScenarioVerdict(results, unexpected, repeats, failed_deliveries)
