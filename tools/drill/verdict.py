"""What arrived against what was expected: decoding captured notifications and judging them.

A captured request is decoded into a Notification: receiver, status, and one Entry per alert it
carries (alert name, severity, its own status, its PBS job). Entries are read as Alertmanager
writes them: PagerDuty's details list every alert's labels (default templates), the webhook its
alerts, the chat text one block per alert (model/routing.py's template). A template that hides
the alert name would make the drill report misses, never false passes.

A notification group tells of each alert again whenever the group changes, so what a receiver
*hears* is the changes: an alert firing there for the first time, or resolved after it fired.
Expectations are matched against these changes. PagerDuty incidents are counted as the Events
API counts them: a trigger whose dedup_key (Alertmanager's group key) has no open incident opens
one, a resolve closes it; a trigger to an open incident only updates it.

Verdicts, per scenario:
  missed     an expected change never reached the receiver
  duplicate  it reached it again (fired, resolved, fired), or a notification was re-sent without
             any change within the route's repeat_interval
  late       time-to-notify exceeded RATIO_LIMIT times its theoretical bound
  unexpected a change no expectation accounts for (a wrong route, a page nobody wanted)
  incidents  more or fewer PagerDuty incidents opened than the scenario expects
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from tools.drill import durations
from tools.drill.cluster import PeerTiming
from tools.drill.deployed_config import AlertRule, TimeScale, MIN_INTERVAL
from tools.drill.routes import Route, delivery_to
from tools.drill.scenarios import SPAN_BATCH_TIMEOUT, SPAN_METRICS_FLUSH, Expect, Scenario

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
class Entry:
    """One alert in a notification, with its own status."""

    alert: str
    severity: str | None
    status: str  # firing | resolved
    job: str | None = None  # job_id, when the alert is about one PBS job
    # What else tells two alerts of one name apart (their labels, or the chat block's description):
    # two targets down are two alerts.
    identity: str = ""

    @property
    def key(self) -> tuple[str, str | None, str | None, str]:
        return (self.alert, self.severity, self.job, self.identity)


def _identity(labels: Mapping[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()) if k not in ("alertname", "severity"))


@dataclass(frozen=True)
class Notification:
    wall: float
    receiver: str
    integration: str
    status: str
    alerts: frozenset[str]
    severity: str | None
    content: str
    entries: tuple[Entry, ...] = ()
    dedup_key: str | None = None

    def __post_init__(self) -> None:
        if not self.entries:  # no per-alert detail: every alert it names, with the message's status
            entries = tuple(Entry(a, self.severity, self.status) for a in sorted(self.alerts))
            object.__setattr__(self, "entries", entries)


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


_CHAT_BLOCK_RE = re.compile(r"^\*([A-Za-z]+)\* (firing|resolved): ", re.MULTILINE)
_RUNBOOK_RE = re.compile(r"/runbooks/([A-Za-z0-9_]+)\.md")
_NUMBER_RE = re.compile(r"\d+(?:\.\d+)?")


def _pagerduty_labels(listed: Any) -> list[dict]:
    """The label sets of one of Alertmanager's default details, `firing` or `resolved`: Alertmanager
    0.34 lists the alerts as objects (0.25 wrote a text of 'Labels: - name = value' blocks)."""
    if not isinstance(listed, list):
        return []
    return [a["labels"] for a in listed if isinstance(a, dict) and isinstance(a.get("labels"), dict)]


def _pagerduty_entries(details: Any, status: str) -> list[Entry]:
    """Alertmanager's default details: the alerts of the group under `firing` and `resolved`."""
    entries = []
    for status_key in ("firing", "resolved"):
        for labels in _pagerduty_labels(details.get(status_key) if isinstance(details, dict) else None):
            if "alertname" in labels:
                entries.append(Entry(labels["alertname"], labels.get("severity"), status_key, labels.get("job_id"),
                                     _identity(labels)))
    return entries


def _chat_entries(text: str, title_alerts: frozenset[str], jobs: Iterable[str]) -> list[Entry]:
    """One block per alert: '*severity* status: summary', description, 'Runbook: <hub>/runbooks/<Alert>.md'."""
    heads = list(_CHAT_BLOCK_RE.finditer(text))
    entries = []
    for head, following in zip(heads, [*heads[1:], None]):
        block = text[head.start():following.start() if following else len(text)]
        runbook = _RUNBOOK_RE.search(block)
        alert = runbook.group(1) if runbook else next(iter(title_alerts), "") if len(title_alerts) == 1 else ""
        job = next((j for j in jobs if _mentions(block, j)), None)
        # Without a job, the description tells two alerts of one name apart (it names the target);
        # its numbers ({{ $value }}: a percentage, a count) change from message to message.
        description = block.splitlines()[1] if block.count("\n") >= 1 else ""
        identity = "" if job else _NUMBER_RE.sub("#", description)
        entries.append(Entry(alert, head.group(1), head.group(2), job, identity))
    return entries


def decode(captured: Captured, rules: RuleSet, jobs: Iterable[str] = ()) -> Notification:
    """`jobs`: the PBS job ids the scenario plays, to tell which job a chat block is about."""
    jobs = tuple(jobs)
    body = captured.body if isinstance(captured.body, dict) else {}
    content = json.dumps(captured.body, sort_keys=True)
    severity: str | None = None
    entries: list[Entry] = []
    dedup_key = None
    if captured.integration == "webhook":
        status = body.get("status", "unknown")
        alerts = frozenset(a.get("labels", {}).get("alertname", "") for a in body.get("alerts", []))
        severities = {a.get("labels", {}).get("severity") for a in body.get("alerts", [])}
        severity = severities.pop() if len(severities) == 1 else None
        entries = [Entry(a.get("labels", {}).get("alertname", ""), a.get("labels", {}).get("severity"),
                         a.get("status", status), a.get("labels", {}).get("job_id"), _identity(a.get("labels", {})))
                   for a in body.get("alerts", [])]
    else:
        alerts = frozenset(name for name in rules if _mentions(content, name))
        if captured.integration == "pagerduty":
            status = {"trigger": "firing", "resolve": "resolved"}.get(body.get("event_action"), "unknown")
            severity = (body.get("payload") or {}).get("severity")
            dedup_key = body.get("dedup_key")
            entries = _pagerduty_entries((body.get("payload") or {}).get("custom_details"), status)
        else:
            attachments = body.get("attachments") or [{}]
            title = " ".join(str(attachments[0].get(k, "")) for k in ("title", "fallback")) + str(body.get("text", ""))
            found = _TITLE_STATUS_RE.search(title)
            if found:
                status = found.group(1).lower()
            else:
                status = {"danger": "firing", "good": "resolved"}.get(attachments[0].get("color"), "unknown")
            text = str(attachments[0].get("text") or body.get("text") or "")
            entries = _chat_entries(text, alerts, jobs)
        if severity is None:
            candidates = {r.labels.get("severity") for a in alerts for r in _variants(rules, a)}
            # The chat template writes each alert's severity as *critical*; a message that lists
            # several (a resolved critical beside a firing warning) has no single severity.
            shown = {word for word in re.findall(r"\*([A-Za-z]+)\*", content) if word in candidates}
            severities = shown or candidates
            severity = severities.pop() if len(severities) == 1 else None
    if not entries:  # no per-alert detail: the alerts it names, with the message's status
        entries = [Entry(a, severity, status, next((j for j in jobs if _mentions(content, j)), None)) for a in sorted(alerts)]
    return Notification(captured.wall, captured.receiver, captured.integration, status, alerts, severity, content,
                        tuple(entries), dedup_key)


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
    if scenario.spans:  # spans wait in the Collector's batch, its span metrics change once per flush
        detect += sum(durations.parse(scale.interval(d)) for d in (SPAN_BATCH_TIMEOUT, SPAN_METRICS_FLUSH))
    group_wait = delivery.group_wait / scale.factor
    group_interval = max(delivery.group_interval / scale.factor, MIN_INTERVAL)
    if expect.status == "firing" and expect.joins:
        wall = detect + rule.for_seconds / scale.factor + group_interval
        terms = "scrape + evaluation + for + group_interval (joining an open group)"
        wait_after_outage = group_interval
    elif expect.status == "firing":
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
    if scenario.alertmanager_peers > 1:
        # A peer after a lost one at position 0 waits its turn before it notifies (tools/drill/cluster.py).
        wall += PeerTiming.for_factor(scale.factor).peer_timeout_s
        terms += " + peer timeout"
    return Bound(wall, terms)


def repeat_interval_for(expect: Expect, rule: AlertRule | None, tree: Route, scale: TimeScale) -> float:
    labels = {"alertname": expect.alert, **(rule.labels if rule else {})}
    delivery = delivery_to(tree, labels, expect.receiver)
    seconds = delivery.repeat_interval if delivery else 4 * 3600.0
    return max(seconds / scale.factor, MIN_INTERVAL)


@dataclass(frozen=True)
class Heard:
    """A change a receiver heard: an alert firing there, or resolved after it fired."""

    notification: Notification
    entry: Entry

    @property
    def wall(self) -> float:
        return self.notification.wall


@dataclass
class ExpectResult:
    expect: Expect
    arrivals: list[Heard]
    bound: Bound | None
    repeat_interval: float
    verdict: str = "ok"
    detail: str = ""

    @property
    def first(self) -> Heard | None:
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
    unexpected: list[Heard]
    repeats: list[Notification] = field(default_factory=list)
    failed_deliveries: int = 0
    incidents_expected: int = 0
    incidents_opened: int = 0
    duplicates: list[Notification] = field(default_factory=list)

    @property
    def failures(self) -> list[str]:
        out = [f"{r.verdict}: {r.expect.receiver} {r.expect.alert} {r.expect.status}" + (f" ({r.detail})" if r.detail else "")
               for r in self.results if r.verdict != "ok"]
        out += [f"unexpected: {h.notification.receiver} {h.entry.alert or '(no known alert)'} {h.entry.status}"
                + (f" ({h.entry.job})" if h.entry.job else "") for h in self.unexpected]
        out += [f"duplicate: {n.receiver} re-sent {', '.join(sorted(n.alerts)) or '(no known alert)'} {n.status} "
                "without a change within its repeat_interval" for n in self.duplicates]
        if self.incidents_opened != self.incidents_expected:
            out.append(f"incidents: {self.incidents_opened} PagerDuty incident(s) opened, {self.incidents_expected} expected")
        return out

    @property
    def passed(self) -> bool:
        return not self.failures


def matches(expect: Expect, heard: Heard) -> bool:
    entry = heard.entry
    return (heard.notification.receiver == expect.receiver and entry.status == expect.status
            and entry.alert == expect.alert
            and (not expect.severity or entry.severity in (None, expect.severity))
            and (expect.job is None or entry.job == expect.job))


def changes_heard(notifications: list[Notification]) -> tuple[list[Heard], list[Notification]]:
    """(every change each receiver heard, the notifications that carried no change at all)."""
    state: dict[tuple[str, tuple], str] = {}
    heard: list[Heard] = []
    unchanged: list[Notification] = []
    for n in notifications:
        changed = False
        for entry in n.entries:
            key = (n.receiver, entry.key)
            if state.get(key) != entry.status:
                state[key] = entry.status
                heard.append(Heard(n, entry))
                changed = True
        if not changed:
            unchanged.append(n)
    return heard, unchanged


def incidents_opened(notifications: Iterable[Notification]) -> int:
    """PagerDuty's count: a trigger opens an incident unless its dedup_key has one open; a resolve closes it."""
    open_keys: set[str | None] = set()
    opened = 0
    for n in notifications:
        if n.integration != "pagerduty":
            continue
        if n.status == "firing" and n.dedup_key not in open_keys:
            opened += 1
            open_keys.add(n.dedup_key)
        elif n.status == "resolved":
            open_keys.discard(n.dedup_key)
    return opened


def _assign(expected: list[Expect], heard: list[Heard], scale: TimeScale) -> dict[int, list[Heard]]:
    """Each change counts for one expectation: one that has nothing yet, else the one whose condition
    began last before it."""
    arrivals: dict[int, list[Heard]] = {i: [] for i in range(len(expected))}
    for h in heard:
        candidates = [i for i, e in enumerate(expected) if matches(e, h)]
        if not candidates:
            continue
        earlier = sorted((i for i in candidates if expected[i].at <= scale.real(h.wall)), key=lambda i: expected[i].at)
        chosen = [i for i in candidates if not arrivals[i]][:1] or earlier[-1:] or candidates[:1]
        arrivals[chosen[0]].append(h)
    return arrivals


def judge(scenario: Scenario, notifications: Iterable[Notification], rules: RuleSet, tree: Route,
          scale: TimeScale, failed_deliveries: int = 0) -> ScenarioVerdict:
    notifications = sorted(notifications, key=lambda n: n.wall)
    heard, unchanged = changes_heard(notifications)
    results: list[ExpectResult] = []
    assigned = _assign(list(scenario.expected), heard, scale)
    accounted: set[int] = set()
    for index, expect in enumerate(scenario.expected):
        rule = rule_for(rules, expect.alert, expect.severity)
        arrivals = assigned[index]
        accounted.update(id(h) for h in arrivals)
        result = ExpectResult(expect, arrivals, bound_for(expect, rule, tree, scale, scenario),
                              repeat_interval_for(expect, rule, tree, scale))
        if rule is None:
            result.verdict, result.detail = "missed", "no such alert in the rendered rules"
        elif not arrivals:
            result.verdict = "missed"
        elif expect.severity and arrivals[0].entry.severity not in (None, expect.severity):
            result.verdict = "wrong-severity"
            result.detail = f"got {arrivals[0].entry.severity}, expected {expect.severity}"
        elif not expect.repeating and len(arrivals) > 1:
            result.verdict = "duplicate"
            result.detail = f"heard {len(arrivals)} times"
        ratio = result.ratio(scale)
        if result.verdict == "ok" and ratio is not None and ratio > RATIO_LIMIT:
            result.verdict, result.detail = "late", f"{ratio:.2f} x bound (limit {RATIO_LIMIT:g})"
        results.append(result)
    # A notification that changed nothing is a repeat after repeat_interval, else a duplicate.
    repeats, duplicates = [], []
    last_sent: dict[tuple[str, frozenset], float] = {}
    repeating = {(e.receiver, e.alert) for e in scenario.expected if e.repeating}
    for n in notifications:
        key = (n.receiver, frozenset((e.key, e.status) for e in n.entries))
        previous = last_sent.get(key)
        last_sent[key] = n.wall
        if n not in unchanged or previous is None or all((n.receiver, e.alert) in repeating for e in n.entries):
            continue
        interval = min(_repeat_interval(n, e, rules, tree, scale) for e in n.entries) if n.entries else 0.0
        (repeats if n.wall - previous >= interval * 0.9 else duplicates).append(n)
    return ScenarioVerdict(results, [h for h in heard if id(h) not in accounted], repeats, failed_deliveries,
                           scenario.incidents_expected, incidents_opened(notifications), duplicates)


def _repeat_interval(n: Notification, entry: Entry, rules: RuleSet, tree: Route, scale: TimeScale) -> float:
    rule = rule_for(rules, entry.alert, entry.severity)
    labels = {"alertname": entry.alert, **(rule.labels if rule else {})}
    delivery = delivery_to(tree, labels, n.receiver)
    return max((delivery.repeat_interval if delivery else 4 * 3600.0) / scale.factor, MIN_INTERVAL)
