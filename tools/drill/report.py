"""build/<stack>/drill/report.md (what each scenario expected, what arrived, how fast) and
results.json (the same verdicts as data, for later drill work and CI)."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

from tools.drill import durations, recovery_loop
from tools.drill.run import ScenarioRun
from tools.drill.scenarios import RECEIVER_PAGE
from tools.drill.verdict import RATIO_LIMIT, ExpectResult


def _real(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    sign = "-" if seconds < 0 else ""
    return sign + durations.human(abs(seconds))


def _clock(seconds: float) -> str:
    """Scenario time as T+hh:mm:ss."""
    total = int(round(abs(seconds)))
    return f"T{'-' if seconds < 0 else '+'}{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


def _ratio(result: ExpectResult, run: ScenarioRun) -> str:
    ratio = result.ratio(run.scale)
    return "-" if ratio is None else f"{ratio:.2f}"


def _expect_row(result: ExpectResult, run: ScenarioRun) -> str:
    e, scale = result.expect, run.scale
    arrived = result.first
    ttn = result.time_to_notify(scale)
    count = f"{len(result.arrivals)}" + (" (repeating)" if e.repeating else "")
    bound = result.bound
    return "| " + " | ".join([
        "✅" if result.verdict == "ok" else f"❌ {result.verdict}",
        e.receiver, e.alert, e.severity, e.status,
        "-" if e.repeating else _clock(e.at),
        "-" if arrived is None else f"{_clock(scale.real(arrived.wall))} ({arrived.wall:.1f}s)",
        count,
        "-" if ttn is None or e.repeating else f"{_real(scale.real(ttn))} ({ttn:.2f}s)",
        "-" if bound is None else f"{_real(scale.real(bound.wall))} ({bound.wall:.2f}s)",
        _ratio(result, run) if not e.repeating else "-",
    ]) + " |"


def write_report(runs: list[ScenarioRun], path: Path, input_dir: Path, stack: str, drill_wall: float,
                 picture: str | None, binaries: dict[str, str]) -> Path:
    passed = all(r.passed for r in runs)
    lines = [
        f"# Alert drill: {stack}",
        "",
        f"**{'PASS' if passed else 'FAIL'}**: {sum(r.passed for r in runs)} of {len(runs)} scenarios passed "
        f"in {durations.human(drill_wall)} of wall time.",
        "",
        f"Configuration: the rendered rules, scrape configs and alertmanager.yml from `{input_dir}`, with only "
        "the durations compressed by each scenario's time-scale factor, the scrape targets re-pointed at synthetic "
        "exporters and the PagerDuty / Mattermost / webhook endpoints re-pointed at a local capture server.",
        "Times are given as scenario (real, uncompressed) time and, in parentheses, wall seconds of the drill.",
        "",
        "Binaries (built by `make upstream` at the versions the charts deploy): "
        + "; ".join(f"`{name}`: {line}" for name, line in binaries.items()) + ".",
        "",
    ]
    if picture:
        lines += [f"![Burn rates and signals against thresholds, alert states and notifications]({picture})", ""]
    lines += ["## Summary", "",
              "| Scenario | Result | Factor | Scenario time | Wall time | PagerDuty incidents expected | opened "
              "| Page triggers received | Worst time-to-page / bound |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in runs:
        pages = [r for r in run.verdict.results if r.expect.receiver == RECEIVER_PAGE and r.expect.status == "firing"]
        received = [n for n in run.notifications if n.receiver == RECEIVER_PAGE and n.status == "firing"]
        ratios = [x for r in pages if (x := r.ratio(run.scale)) is not None]
        worst = f"{max(ratios):.2f}" if ratios else "-"
        result = "✅ pass" if run.passed else "❌ fail"
        lines.append(f"| {run.scenario.name} | {result} | ×{run.scale.factor:g} | {durations.human(run.scenario.duration)} | "
                     f"{run.wall_seconds:.0f}s | {run.verdict.incidents_expected} | {run.verdict.incidents_opened} | "
                     f"{len(received)} | {worst} |")
    lines += ["", "A PagerDuty incident is opened by a trigger whose dedup_key (Alertmanager's group key) has no open "
                  "incident and closed by a resolve; further triggers with that key update it (a job joining the incident)."]
    all_ratios = [x for run in runs for r in run.verdict.results if (x := r.ratio(run.scale)) is not None]
    if all_ratios:
        lines += ["", f"Time-to-notify against its bound over all notifications: median {statistics.median(all_ratios):.2f}, "
                      f"worst {max(all_ratios):.2f} (a notification fails as late above {RATIO_LIMIT:g})."]
    failures = [(run.scenario.name, f) for run in runs for f in run.failures]
    if failures:
        lines += ["", "## Failures", ""] + [f"- **{name}**: {f}" for name, f in failures]
    for run in runs:
        s, scale = run.scenario, run.scale
        lines += ["", f"## {s.name}", "", s.story, "",
                  f"Time scale ×{scale.factor:g}: scrape every {durations.human(scale.scrape_interval_s)}, evaluate every "
                  f"{durations.human(scale.evaluation_interval_s)}, resend to Alertmanager every "
                  f"{durations.human(scale.resend_delay_s)} (wall). {durations.human(s.duration)} of scenario time ran in "
                  f"{run.wall_seconds:.0f}s including start-up.", ""]
        if s.receiver_outages:
            lines += [f"- {o.receiver} answers {o.status} from {_clock(o.start)} to {_clock(o.end)}." for o in s.receiver_outages]
        if s.exporter_outages:
            lines += [f"- the `{o.job}` exporter is gone from {_clock(o.start)} to {_clock(o.end)}." for o in s.exporter_outages]
        if s.alertmanager_down:
            lines += [f"- Alertmanager is stopped at {_clock(w.start)} and started again at {_clock(w.end)} with the "
                      "same storage." for w in s.alertmanager_down]
        if s.alertmanager_peers > 1:
            lines.append(f"- Alertmanager runs as a cluster of {s.alertmanager_peers} peers; Prometheus sends to every one.")
            lines += [f"- the peer that notifies is {'killed' if o.killed else 'stopped'} at {_clock(o.start)} and started "
                      f"again at {_clock(o.end)} with {'an empty' if o.fresh_storage else 'the same'} storage."
                      for o in s.peer_outages]
        if s.prometheus_replicas > 1:
            lines.append(f"- Prometheus runs as {s.prometheus_replicas} replicas with the same rules"
                         + (f"; replica 0 is killed at {_clock(s.prometheus_lost_at)}, for good." if s.prometheus_lost_at is not None else "."))
        if (s.receiver_outages or s.exporter_outages or s.alertmanager_down or s.alertmanager_peers > 1
                or s.prometheus_replicas > 1):
            lines.append("")
        lines += ["| | Receiver | Alert | Severity | Status | Condition at | First arrival | Count | Time to notify | Bound | Ratio |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
        lines += [_expect_row(r, run) for r in run.verdict.results]
        bounds = sorted({r.bound.terms for r in run.verdict.results if r.bound})
        if bounds:
            lines += ["", "Bounds: " + "; ".join(bounds) + "."]
        if run.verdict.unexpected:
            lines += ["", "Unexpected notifications:", ""]
            lines += [f"- {_clock(scale.real(h.wall))}: {h.notification.receiver} {h.entry.alert or '(no known alert name)'} "
                      f"{h.entry.severity or ''} {h.entry.status}" + (f" ({h.entry.job})" if h.entry.job else "")
                      for h in run.verdict.unexpected]
        if run.recovery:
            lines += ["", *recovery_loop.describe(run.recovery, s)]
        if run.verdict.repeats:
            lines += ["", f"{len(run.verdict.repeats)} repeat(s) after repeat_interval, as configured."]
        for note in [*s.notes, *run.notes]:
            lines.append(f"\n_Note: {note}_")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


def results_document(runs: list[ScenarioRun], binaries: dict[str, str]) -> dict:
    """The binaries' versions; each scenario's verdict, every alert of every delivered notification
    (at_s in scenario seconds) and its PagerDuty incidents, expected and opened."""
    return {"binaries": binaries, "scenarios": [{
        "name": run.scenario.name,
        "verdict": "pass" if run.passed else "fail",
        "attempts": run.attempts,
        "starved": run.starved,  # not empty: the machine's fault, the verdict says nothing of the stack
        "notifications": [{"receiver": n.receiver, "alertname": e.alert, "severity": e.severity, "status": e.status,
                           "at_s": round(run.scale.real(n.wall), 1)}
                          for n in sorted(run.notifications, key=lambda n: n.wall) for e in n.entries],
        "incidents_expected": run.verdict.incidents_expected,
        "incidents_opened": run.verdict.incidents_opened,
        # What the recovery service did (scenarios with it in the loop; else none).
        "recovery_actions": [{k: a[k] for k in ("action", "target", "result", "at_s")}
                             for a in (run.recovery.actions if run.recovery else [])],
    } for run in runs]}


def write_results(runs: list[ScenarioRun], path: Path, binaries: dict[str, str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results_document(runs, binaries), indent=1) + "\n")
    return path
