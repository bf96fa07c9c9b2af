import subprocess

import pytest

from tools.drill import scenarios
from tools.drill.timeline import Counter, Ramp, Series, Steps, backfill_openmetrics, exposition, merge


def test_counter_integrates_rates_and_jumps():
    counter = Counter(rates=((0.0, 2.0), (10.0, 5.0)), jumps=((4.0, 100.0),))
    assert counter.at(-1) == 0
    assert counter.at(5) == 2 * 5 + 100
    assert counter.at(12) == 2 * 10 + 5 * 2 + 100


def test_gauges():
    assert Steps(((0.0, 1.0), (10.0, 2.0))).at(-5) == 1.0
    assert Steps(((0.0, 1.0), (10.0, 2.0))).at(10) == 2.0
    assert Ramp(((0.0, 80.0), (40.0, 90.0))).at(20) == 85.0
    assert Ramp(((0.0, 80.0), (40.0, 90.0))).at(99) == 90.0


def _burn_over_window(series, t, window):
    count = next(s for s in series if s.metric == scenarios.LATENCY_COUNT)
    good = next(s for s in series if s.metric == scenarios.LATENCY_BUCKET and dict(s.labels)["le"] != "+Inf")
    total = count.model.at(t) - count.model.at(t - window)
    bad = total - (good.model.at(t) - good.model.at(t - window))
    return bad / total / scenarios.LATENCY_ERROR_BUDGET


@pytest.mark.parametrize("window,threshold", [(3600, 14.4), (300, 14.4), (86400, 3)])
def test_burn_onset_is_where_the_synthetic_window_crosses(window, threshold):
    start, burn = 600.0, 50.0
    series = scenarios.latency_series(((-86400 * 30, scenarios.BASELINE_BURN), (start, burn)))
    onset = scenarios.burn_onset(start, burn, threshold, window)
    assert _burn_over_window(series, onset - 1, window) < threshold < _burn_over_window(series, onset + 1, window)


def test_burn_clear_is_where_the_window_falls_back():
    start, stop, burn = 0.0, 3600.0, 50.0
    series = scenarios.latency_series(((-86400 * 30, scenarios.BASELINE_BURN), (start, burn), (stop, scenarios.BASELINE_BURN)))
    clear = scenarios.burn_clear(stop, burn, 14.4, 300)
    assert _burn_over_window(series, clear - 1, 300) > 14.4 > _burn_over_window(series, clear + 1, 300)


def test_backup_job_plays_the_exporter_s_timestamps_counters_and_running_gauge():
    Run = scenarios.Run
    attempts, successes, last_run, last_success, running = scenarios.backup_job(
        (Run(90.0, 100.0, False), Run(190.0, 200.0, False), Run(290.0, 300.0, True)))
    assert [running.model.at(t) for t in (50, 95, 150, 195, 350)] == [0, 1, 0, 1, 0]
    assert attempts.model.at(350) - attempts.model.at(50) == 3
    assert successes.model.at(350) - successes.model.at(50) == 1
    # BackupJobFailed's condition, last run after last success, holds from the first failure to the success
    failed = [last_run.model.at(t) > last_success.model.at(t) for t in (50, 150, 250, 350)]
    assert failed == [False, True, True, False]
    # timestamps are served as the wall-clock time the scenario reaches them
    assert exposition([last_run], 150, epoch_of=lambda s: 1e9 + s / 120) == (
        'pbs_job_last_run_timestamp_seconds{datastore="homelab",job_id="vm-nightly",job_type="backup"} '
        f"{1e9 + 100 / 120:.17g}\n")


def test_exposition_and_overrides():
    base = [Series("j", "m", (("a", "x"),), Steps(((0.0, 1.0),))), Series("j", "n", (), Steps(((0.0, 7.0),)))]
    merged = merge(base, [Series("j", "m", (("a", "x"),), Steps(((0.0, 3.0),)))])
    assert exposition(merged, 0) == 'm{a="x"} 3\nn 7\n'


def test_backfill_is_accepted_by_promtool(tmp_path):
    series = [Series("pbs", "pbs_job_attempt_total", (("job_id", 'vm "1"'),), Counter(rates=((-1e6, 1.0),)), "t:1")]
    text = backfill_openmetrics(series, -3600, 0, 60, lambda t: 1_700_000_000 + t,
                                {("pbs", "t:1"): {"job": "pbs", "instance": "t:1"}})
    assert text.count("\n") == 60 + 2 and text.endswith("# EOF\n")
    (tmp_path / "in.om").write_text(text)
    result = subprocess.run(["promtool", "tsdb", "create-blocks-from", "openmetrics", str(tmp_path / "in.om"),
                             str(tmp_path / "data")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    blocks = [line.split() for line in result.stdout.splitlines()[1:]]
    assert sum(int(block[4]) for block in blocks) == 60  # NUM SAMPLES over the 2h-aligned blocks
