"""build/<stack>/drill/timeline.png: for each scenario, the signal against its thresholds, the
alert states Prometheus recorded (pending, firing) and every notification that arrived."""

from __future__ import annotations

import os
from pathlib import Path

from contracts.alerts import WATCHDOG
from tools.drill.run import ScenarioRun
from tools.drill.scenarios import RECEIVER_PAGE, Window

PAGE_COLOUR = "#d62728"
RECEIVER_COLOURS = ["#1f77b4", "#2ca02c", "#9467bd", "#8c564b", "#e377c2"]
STATE_COLOURS = {"pending": "#f5c26b", "firing": "#d62728"}


def _intervals(samples: list[tuple[float, str]], state: str, gap: float) -> list[tuple[float, float]]:
    """Contiguous [start, width) spans where the alert was in `state` (samples `gap` apart at most)."""
    times = sorted(t for t, s in samples if s == state)
    spans: list[tuple[float, float]] = []
    for t in times:
        if spans and t - (spans[-1][0] + spans[-1][1]) <= gap:
            spans[-1] = (spans[-1][0], t - spans[-1][0])
        else:
            spans.append((t, 0.0))
    return [(start, max(width, gap)) for start, width in spans]


def _unit(duration: float) -> tuple[float, str]:
    return (3600.0, "hours") if duration > 3 * 3600 else (60.0, "minutes")


def write_timeline(runs: list[ScenarioRun], path: Path) -> Path:
    os.environ.setdefault("MPLBACKEND", "Agg")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    receivers = sorted({n.receiver for run in runs for n in run.notifications} |
                       {r.expect.receiver for run in runs for r in run.verdict.results})
    chat = [r for r in receivers if r != RECEIVER_PAGE]
    colour = {name: RECEIVER_COLOURS[i % len(RECEIVER_COLOURS)] for i, name in enumerate(chat)} | {RECEIVER_PAGE: PAGE_COLOUR}
    fig = plt.figure(figsize=(13, 4.2 * len(runs)), layout="constrained")
    rows = fig.subfigures(len(runs), 1, squeeze=False)[:, 0]
    for row, run in zip(rows, runs):
        scale_unit, unit_name = _unit(run.scenario.duration)
        signal_ax, state_ax = row.subplots(2, 1, sharex=True, height_ratios=[2.2, 1.4])
        verdict = "PASS" if run.passed else "FAIL"
        row.suptitle(f"{run.scenario.name}: {verdict}  (×{run.scale.factor:g}: {run.scenario.duration / scale_unit:g} "
                     f"{unit_name} in {run.scenario.duration / run.scale.factor:.0f}s)", fontsize=11, fontweight="bold")
        for series in run.plot:
            if series.points:
                xs = [t / scale_unit for t, _ in series.points]
                signal_ax.plot(xs, [v for _, v in series.points], label=series.label, linewidth=1.6)
        for threshold in sorted({th for series in run.plot for th in series.thresholds}):
            signal_ax.axhline(threshold, color="grey", linestyle="--", linewidth=0.9)
            signal_ax.annotate(f"{threshold:g}", (1.0, threshold), xycoords=("axes fraction", "data"),
                               fontsize=8, color="grey", va="bottom", ha="right")
        downs = [(w, "Alertmanager down") for w in run.scenario.alertmanager_down]
        downs += [(w, "one Alertmanager peer down") for w in run.scenario.peer_outages]
        if run.scenario.prometheus_lost_at is not None:
            downs.append((Window(run.scenario.prometheus_lost_at, run.scenario.duration), "one Prometheus replica lost"))
        for window, what in downs:
            for ax in (signal_ax, state_ax):
                ax.axvspan(window.start / scale_unit, window.end / scale_unit, color="#cccccc", alpha=0.5)
            signal_ax.annotate(what, (window.start / scale_unit, 1.0), xycoords=("data", "axes fraction"),
                               fontsize=8, va="top")
        for outage in [*run.scenario.receiver_outages, *run.scenario.exporter_outages]:
            what = getattr(outage, "receiver", "") or f"{getattr(outage, 'job', '')} exporter"
            for ax in (signal_ax, state_ax):
                ax.axvspan(outage.start / scale_unit, outage.end / scale_unit, color="#fde0dd", alpha=0.6)
            signal_ax.annotate(f"{what} unavailable", (outage.start / scale_unit, 1.0),
                               xycoords=("data", "axes fraction"), fontsize=8, va="top")
        signal_ax.set_ylabel("signal")
        if run.plot:
            signal_ax.legend(loc="upper left", fontsize=8)

        alerts = sorted(a for a in run.alert_states if a != WATCHDOG.name)
        # Receivers that matter here: expected or reached by something other than the heartbeat.
        lane_receivers = [r for r in receivers
                          if any(n.receiver == r and WATCHDOG.name not in n.alerts for n in run.notifications)
                          or any(x.expect.receiver == r and not x.expect.repeating for x in run.verdict.results)]
        lanes = alerts + [f"→ {r}" for r in lane_receivers]
        actions = run.recovery.actions if run.recovery else []
        if run.recovery:
            lanes.append("recovery service")
        gap = run.scale.real(max(run.scale.evaluation_interval_s, 0.5)) * 2
        for i, alert in enumerate(alerts):
            for state, fill in STATE_COLOURS.items():
                spans = [(s / scale_unit, w / scale_unit) for s, w in _intervals(run.alert_states[alert], state, gap)]
                state_ax.broken_barh(spans, (i - 0.35, 0.7), color=fill)
        for n in run.notifications:
            if n.receiver not in lane_receivers or WATCHDOG.name in n.alerts:
                continue
            lane = len(alerts) + lane_receivers.index(n.receiver)
            marker = "^" if n.status == "firing" else "v"
            state_ax.scatter([run.scale.real(n.wall) / scale_unit], [lane], marker=marker, s=60,
                             color=colour[n.receiver], edgecolors="black", linewidths=0.5, zorder=3)
        for r in run.verdict.results:
            if r.expect.repeating:
                continue
            lane = len(alerts) + lane_receivers.index(r.expect.receiver)
            state_ax.scatter([r.expect.at / scale_unit], [lane], marker="|", s=120, color="black", zorder=2)
        for action in actions:  # what the recovery service did: ● ok, ✕ failed, ○ skipped / dry-run
            marker = {"ok": "o", "failed": "X"}.get(action["result"], "o")
            face = {"ok": "#2ca02c", "failed": PAGE_COLOUR}.get(action["result"], "white")
            state_ax.scatter([action["at_s"] / scale_unit], [len(lanes) - 1], marker=marker, s=70, color=face,
                             edgecolors="black", linewidths=0.6, zorder=3)
            state_ax.annotate(f"{action['action']}: {action['result']}", (action["at_s"] / scale_unit, len(lanes) - 1),
                              xytext=(4, 6), textcoords="offset points", fontsize=7)
        state_ax.set_yticks(range(len(lanes)), lanes, fontsize=8)
        state_ax.set_ylim(-0.7, len(lanes) - 0.3)
        state_ax.set_xlim(0, run.scenario.duration / scale_unit)
        state_ax.set_xlabel(f"scenario time ({unit_name}); ▲ firing / ▼ resolved notification, | condition onset, "
                            "orange pending, red firing", fontsize=8)
        state_ax.grid(axis="x", alpha=0.3)
        signal_ax.grid(alpha=0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
