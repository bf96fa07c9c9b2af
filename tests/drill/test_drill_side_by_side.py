"""Side by side: a scenario starved of CPU is never counted: run_drill runs it again alone, and a second starved run
fails as the machine's fault. The scenario runs themselves are stood in for here (the real ones are
the short drill in test_drill_end_to_end.py); what is tested is what run_drill does with their outcome."""

from __future__ import annotations

import io

from tools.drill import run as drill_run
from tools.drill.deployed_config import TimeScale
from tools.drill.scenarios import by_name
from tools.drill.verdict import ScenarioVerdict

SCALE = TimeScale(120, 0.25, 0.25, 0.1, 0.5, 2.5)


class _Config:
    def with_scrape_jobs(self, jobs):
        return self


def _drill(monkeypatch, starved_attempts: dict[str, int]):
    calls = []

    def fake_run_scenario(scenario, config, work, index, progress, factor=None):
        calls.append((scenario.name, work.name))
        starved = ["Prometheus skipped 9 rule evaluation(s)"] if starved_attempts.get(scenario.name, 0) >= \
            sum(1 for name, _ in calls if name == scenario.name) else []
        return drill_run.ScenarioRun(scenario, SCALE, ScenarioVerdict([], []), [], [], {}, 1.0, starved=starved)

    monkeypatch.setattr(drill_run, "run_scenario", fake_run_scenario)
    chosen = by_name(["backup-retry-succeeds", "backup-fails-twice"])
    runs = drill_run.run_drill(_Config(), chosen, progress=drill_run.Progress(chosen, quiet=True), jobs=1)
    return runs, calls


def test_a_starved_scenario_runs_again_alone_and_passes_on_its_second_attempt(monkeypatch):
    runs, calls = _drill(monkeypatch, {"backup-fails-twice": 1})
    assert calls == [("backup-retry-succeeds", "backup-retry-succeeds"), ("backup-fails-twice", "backup-fails-twice"),
                     ("backup-fails-twice", "backup-fails-twice-again")]
    retried = {r.scenario.name: r for r in runs}["backup-fails-twice"]
    assert retried.passed and retried.attempts == 2
    assert retried.notes[0].startswith("attempt 1 was starved of CPU (Prometheus skipped 9 rule evaluation(s))")


def test_starved_twice_fails_as_the_machines_fault(monkeypatch):
    runs, calls = _drill(monkeypatch, {"backup-retry-succeeds": 2})
    assert len(calls) == 3
    starved = {r.scenario.name: r for r in runs}["backup-retry-succeeds"]
    assert not starved.passed and starved.attempts == 2
    assert starved.failures[0].startswith("starved of CPU (Prometheus skipped 9 rule evaluation(s)): the machine's fault")
    assert {r.scenario.name: r for r in runs}["backup-fails-twice"].passed


def test_side_by_side_progress_shares_what_is_left_over_the_workers():
    chosen = by_name(["latency-fast-burn", "backup-retry-succeeds", "backup-fails-twice", "two-jobs-fail"])
    out = io.StringIO()
    progress = drill_run.Progress(chosen, out=out)
    progress._last = -1e9
    progress.side_by_side(0, 4, jobs=2)
    walls = [s.duration / s.factor + drill_run.SCENARIO_OVERHEAD_ESTIMATE for s in chosen]
    assert sum(walls) / 2 > max(walls)  # so the shared-out figure is the one shown
    assert out.getvalue().startswith("0 of 4 scenarios done | drill ")
    assert out.getvalue().rstrip().endswith(f"~{drill_run.durations.human(sum(walls) / 2)} left")
