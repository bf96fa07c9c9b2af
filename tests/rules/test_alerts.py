"""The rendered rule files under promtool: syntax, conventions and unit tests per alert."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_tool
from tools.drill import scenarios
from tools.drill.timeline import value_at

RUNBOOKS = Path(__file__).resolve().parents[2] / "runbooks"
HUB = "https://runbooks.home.arpa/observability"  # site.runbookHubUrl of Pulumi.homelab.yaml
GRAFANA = "https://grafana.home.arpa"  # grafana.url of Pulumi.homelab.yaml


def _alerts(homelab):
    for path in homelab.rule_files:
        for group in yaml.safe_load(path.read_text())["groups"]:
            for rule in group["rules"]:
                if "alert" in rule:
                    yield rule


def test_promtool_accepts_every_rule_file(homelab):
    assert {p.stem for p in homelab.rule_files} >= {"backups", "disks", "slos", "stack", "network"}
    for path in homelab.rule_files:
        result = run_tool("promtool", "check", "rules", path)
        assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_labels_annotations_and_a_written_runbook(homelab):
    alerts = list(_alerts(homelab))
    assert len(alerts) > 10
    for rule in alerts:
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "none"}, name
        assert rule["labels"]["service"], name
        notes = rule["annotations"]
        assert "{{" not in notes["summary"], f"{name}: summary is static"
        assert "{{" in notes["description"], f"{name}: description is templated"
        assert notes["runbook_url"] == f"{HUB}/runbooks/{name}.md"
        runbook = (RUNBOOKS / f"{name}.md").read_text()
        for section in ("## Meaning", "## Impact", "## Diagnosis", "## Mitigation"):
            assert section in runbook, f"runbooks/{name}.md lacks {section}"


def test_the_seed_recording_rule_is_there_as_written(homelab):
    rules = [r for g in homelab.yaml("prometheus/rules/backups.yaml")["groups"] for r in g["rules"]]
    seed = next(r for r in rules if r.get("record") == "job:backup_success:ratio")
    assert seed["labels"] == {"slo": "99.5"}
    assert "sum(rate(pbs_job_success_total[1h]))" in seed["expr"]
    assert "sum(rate(pbs_job_attempt_total[1h]))" in seed["expr"]


def _unit_test(homelab, tmp_path, tests: list[dict], files=("backups", "disks", "stack")) -> None:
    doc = {
        "rule_files": [str(homelab.out / "prometheus" / "rules" / f"{f}.yaml") for f in files],
        "evaluation_interval": "1m",
        "tests": tests,
    }
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = run_tool("promtool", "test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def _firing(alertname: str, at: str, samples: list[str]) -> dict:
    """ALERTS carries an alert's labels (not its annotations): what fires, exactly, at `at`."""
    return {"expr": f'ALERTS{{alertname="{alertname}",alertstate="firing"}}', "eval_time": at,
            "exp_samples": [{"labels": s, "value": 1} for s in samples]}


JOB = 'datastore="homelab",job_id="vm-nightly",job_type="backup"'


# --- the backup incident: one warning, one page, resolved when a run succeeds --------------------
# The runs are the drill's (tools/drill/scenarios.py): the same timelines are played against real
# Prometheus and Alertmanager by `make drill`, and here, minute by minute, under promtool.

def _job_series(runs, minutes: int, job_id: str = "vm-nightly", history=None) -> list[dict]:
    """The PBS exporter's series of one job for `runs`, one sample a minute (scenario seconds = promtool's)."""
    labels = scenarios.pbs_labels(job_id)
    played = scenarios.backup_job(runs, labels) if history is None else scenarios.backup_job(runs, labels, history)
    selector = ",".join(f'{k}="{v}"' for k, v in labels)
    return [{"series": f"{s.metric}{{{selector},instance=\"pbs.home.arpa\",job=\"pbs-exporter\"}}",
             "values": " ".join(f"{value_at(s.model, minute * 60.0):g}" for minute in range(minutes + 1))}
            for s in played]


def _state(alertname: str, severity: str, at: str, jobs: list[str]) -> dict:
    """Which jobs `alertname` fires for at `at` with that severity (ALERTS keeps an alert's labels)."""
    return {"expr": f'ALERTS{{alertname="{alertname}",alertstate="firing",severity="{severity}"}}', "eval_time": at,
            "exp_samples": [{"labels": f'ALERTS{{alertname="{alertname}",alertstate="firing",datastore="homelab",'
                                       f'job_id="{job}",job_type="backup",service="backups",severity="{severity}"}}',
                             "value": 1} for job in jobs]}


def _minutes_firing(alertname: str, severity: str, at: str, window: str, minutes: int) -> dict:
    """`alertname` fired at `minutes` of the evaluations in `window` before `at` (one a minute)."""
    return {"expr": f'sum(count_over_time(ALERTS{{alertname="{alertname}",alertstate="firing",severity="{severity}"}}'
                    f"[{window}:1m]))", "eval_time": at,
            "exp_samples": [{"labels": "{}", "value": minutes}] if minutes else []}


def test_a_retry_that_fixes_the_job_leaves_a_warning_and_no_page(homelab, tmp_path):
    runs = scenarios.RETRY_SUCCEEDS  # fails at 10m, the retry 20-25m succeeds
    _unit_test(homelab, tmp_path, [{
        "interval": "1m", "input_series": _job_series(runs, 60),
        "promql_expr_test": [
            _state("BackupJobFailed", "warning", "10m", ["vm-nightly"]),
            _state("BackupJobFailed", "warning", "24m", ["vm-nightly"]),
            _state("BackupJobFailed", "warning", "25m", []),
            _minutes_firing("BackupJobFailed", "critical", "60m", "60m", 0),
            _state("BackupJobFlapping", "warning", "60m", []),
        ],
    }], files=("backups",))


def test_the_page_opens_when_the_retry_fails_and_resolves_only_when_a_run_succeeds(homelab, tmp_path):
    # Fails at 5m, the retry fails at 10m, the operator's resume runs 45-47m and succeeds.
    runs = scenarios.FAILS_TWICE
    _unit_test(homelab, tmp_path, [{
        "interval": "1m", "input_series": _job_series(runs, 90),
        "promql_expr_test": [
            _state("BackupJobFailed", "warning", "5m", ["vm-nightly"]),
            _state("BackupJobFailed", "critical", "9m", []),
            # the retry failed too: the page, with the warning kept beside it
            _state("BackupJobFailed", "critical", "10m", ["vm-nightly"]),
            _state("BackupJobFailed", "warning", "10m", ["vm-nightly"]),
            # the retry window has emptied; the resume is running: still the one page
            _state("BackupJobFailed", "critical", "41m", ["vm-nightly"]),
            _state("BackupJobFailed", "critical", "46m", ["vm-nightly"]),
            # the resume succeeded: both resolve together
            _state("BackupJobFailed", "critical", "47m", []),
            _state("BackupJobFailed", "warning", "47m", []),
            # one stretch of 37 minutes (10m to 46m): the page never dropped out in between
            _minutes_firing("BackupJobFailed", "critical", "90m", "90m", 37),
        ],
        "alert_rule_test": [{"eval_time": "30m", "alertname": "BackupJobFailed", "exp_alerts": [
            {"exp_labels": {"severity": "critical", "service": "backups", "datastore": "homelab",
                            "job_id": "vm-nightly", "job_type": "backup"},
             "exp_annotations": {
                 "summary": "A PBS backup job failed and its retry did not fix it",
                 "description": "The last run of backup job vm-nightly on datastore homelab failed, and its retry failed "
                                "too, the recovery service gave up on it, or no run succeeded within 30m: the guests it "
                                "covers have no fresh restore point. "
                                "This resolves when a run of the job succeeds.",
                 "runbook_url": f"{HUB}/runbooks/BackupJobFailed.md",
                 "dashboard_url": f"{GRAFANA}/d/backups"}},
            {"exp_labels": {"severity": "warning", "service": "backups", "datastore": "homelab",
                            "job_id": "vm-nightly", "job_type": "backup"},
             "exp_annotations": {
                 "summary": "A PBS backup job failed",
                 "description": "The last run of backup job vm-nightly on datastore homelab failed. It pages if the retry "
                                "fails too or no run succeeds within 30m; this resolves when a run succeeds.",
                 "runbook_url": f"{HUB}/runbooks/BackupJobFailed.md",
                 "dashboard_url": f"{GRAFANA}/d/backups"}},
        ]}],
    }], files=("backups",))


def test_a_job_nobody_retries_pages_after_the_grace_even_while_a_late_retry_runs(homelab, tmp_path):
    # Fails at 10m; the retry starts at 35m and runs until 60m, when it succeeds.
    runs = (scenarios.Run(scenarios.m(5), scenarios.m(10), False), scenarios.Run(scenarios.m(35), scenarios.m(60), True))
    _unit_test(homelab, tmp_path, [{
        "interval": "1m", "input_series": _job_series(runs, 80),
        "promql_expr_test": [
            _state("BackupJobFailed", "critical", "39m", []),
            _state("BackupJobFailed", "critical", "40m", ["vm-nightly"]),
            _state("BackupJobFailed", "critical", "59m", ["vm-nightly"]),
            _state("BackupJobFailed", "critical", "60m", []),
        ],
    }], files=("backups",))


# --- the page waits for the recovery service, and only for it (model/recovery_alerts.py) ---------------

def _gave_up(values: str, job_id: str = "vm-nightly") -> dict:
    """The recovery service's give-up series for one job, as Prometheus scrapes it: the start (the alert's
    startsAt, promtool seconds) of the latest failure it gave up on; absent before its first give-up."""
    return {"series": f'recovery_backup_job_gave_up_failure_timestamp_seconds{{datastore="homelab",job_id="{job_id}",'
                      f'job_type="backup",instance="pbs.home.arpa",job="recovery",service="backups"}}', "values": values}


# Yesterday the job failed at -30h, the service gave up on that failure and a run succeeded at -25h.
YESTERDAY = (scenarios.Run(-scenarios.h(30) - scenarios.m(5), -scenarios.h(30), False),
             scenarios.Run(-scenarios.h(25) - scenarios.m(5), -scenarios.h(25), True))
YESTERDAYS_GIVE_UP = f"{-scenarios.h(30):g}"


def test_the_page_comes_at_once_when_the_recovery_service_gives_up(homelab, tmp_path):
    # Fails at 10m (the warning starts then); the service finds nothing to re-run (or its attempts are
    # exhausted) and gives up at 12m: no second run ends, yet the page comes then, not at 40m; it holds until
    # the manual run succeeds at 50m, whatever the series does meanwhile (the service restarted and lost its
    # scrape at 20m).
    runs = (scenarios.Run(scenarios.m(5), scenarios.m(10), False), scenarios.Run(scenarios.m(45), scenarios.m(50), True))
    _unit_test(homelab, tmp_path, [{
        "interval": "1m", "input_series": _job_series(runs, 60) + [_gave_up(f"_x12 {scenarios.m(10):g}x8 stale")],
        "promql_expr_test": [
            _state("BackupJobFailed", "critical", "11m", []),
            _state("BackupJobFailed", "critical", "12m", ["vm-nightly"]),
            _state("BackupJobFailed", "critical", "30m", ["vm-nightly"]),
            _state("BackupJobFailed", "critical", "49m", ["vm-nightly"]),
            _state("BackupJobFailed", "critical", "50m", []),
            _minutes_firing("BackupJobFailed", "critical", "60m", "60m", 38),
        ],
    }], files=("backups",))


def test_a_failure_one_automated_rerun_fixes_pages_nobody(homelab, tmp_path):
    # Fails at 5m; the service's re-run runs 6-8m and succeeds; its series still holds yesterday's give-up.
    runs = (scenarios.Run(scenarios.m(2), scenarios.m(5), False), scenarios.Run(scenarios.m(6), scenarios.m(8), True))
    _unit_test(homelab, tmp_path, [{
        "interval": "1m", "input_series": _job_series(runs, 60, history=YESTERDAY) + [_gave_up(f"{YESTERDAYS_GIVE_UP}x60")],
        "promql_expr_test": [
            _state("BackupJobFailed", "warning", "5m", ["vm-nightly"]),
            _state("BackupJobFailed", "warning", "8m", []),
            _minutes_firing("BackupJobFailed", "critical", "60m", "60m", 0),
        ],
    }], files=("backups",))


@pytest.mark.parametrize("gauge", [f"{YESTERDAYS_GIVE_UP}x60", None], ids=["still-trying", "down"])
def test_a_slow_or_absent_recovery_service_delays_no_page_beyond_the_grace(homelab, tmp_path, gauge):
    # Fails at 10m; the service is still busy (its series holds only yesterday's give-up) or is not scraped
    # at all: the grace pages at 40m.
    runs = (scenarios.Run(scenarios.m(5), scenarios.m(10), False),)
    _unit_test(homelab, tmp_path, [{
        "interval": "1m", "input_series": _job_series(runs, 60, history=YESTERDAY) + ([_gave_up(gauge)] if gauge else []),
        "promql_expr_test": [
            _state("BackupJobFailed", "critical", "39m", []),
            _state("BackupJobFailed", "critical", "40m", ["vm-nightly"]),
        ],
    }], files=("backups",))


@pytest.mark.parametrize("service", ["gives-up-again", "still-trying", "rerun-fixes-it"])
def test_yesterdays_give_up_does_not_page_for_todays_failure(homelab, tmp_path, service):
    # The service gave up on yesterday's failure, a run succeeded since; it still exports that give-up
    # (it never hears of the recovery). Today the job fails at 10m: the page waits for the automation
    # again. It comes when the service gives up on today's failure (at 13m, the series now 10m, the start
    # of today's failure), after the grace (40m) while it is still trying, never when its re-run works.
    fails = scenarios.Run(scenarios.m(5), scenarios.m(10), False)
    runs = (fails, scenarios.Run(scenarios.m(11), scenarios.m(15), True)) if service == "rerun-fixes-it" else (fails,)
    gauge = f"{YESTERDAYS_GIVE_UP}x12 {scenarios.m(10):g}x47" if service == "gives-up-again" else f"{YESTERDAYS_GIVE_UP}x60"
    first_page = {"gives-up-again": "13m", "still-trying": "40m", "rerun-fixes-it": None}[service]
    checks = [_state("BackupJobFailed", "warning", "10m", ["vm-nightly"]),
              _state("BackupJobFailed", "critical", "12m", [])]
    if first_page:
        before = f"{int(first_page[:-1]) - 1}m"
        checks += [_state("BackupJobFailed", "critical", before, []),
                   _state("BackupJobFailed", "critical", first_page, ["vm-nightly"]),
                   _state("BackupJobFailed", "critical", "60m", ["vm-nightly"])]
    else:
        checks.append(_minutes_firing("BackupJobFailed", "critical", "60m", "60m", 0))
    _unit_test(homelab, tmp_path, [{
        "interval": "1m", "input_series": _job_series(runs, 60, history=YESTERDAY) + [_gave_up(gauge)],
        "promql_expr_test": checks,
    }], files=("backups",))


def test_a_wrong_recovery_service_cannot_page_for_a_healthy_job(homelab, tmp_path):
    # The gauge says 1 for a job whose last run succeeded, and for a job that does not exist.
    _unit_test(homelab, tmp_path, [{
        "interval": "1m", "input_series": _job_series((), 60) + [_gave_up("1x60"), _gave_up("1x60", "vm/999")],
        "promql_expr_test": [{"expr": 'ALERTS{service="backups"}', "eval_time": "60m", "exp_samples": []}],
    }], files=("backups",))


def test_a_job_still_running_its_first_run_is_not_a_failure(homelab, tmp_path):
    runs = (scenarios.Run(scenarios.m(10), scenarios.m(200), True),)
    _unit_test(homelab, tmp_path, [{
        "interval": "1m", "input_series": _job_series(runs, 150),
        "promql_expr_test": [{"expr": 'ALERTS{service="backups"}', "eval_time": "150m", "exp_samples": []}],
    }], files=("backups",))


def test_a_second_job_failing_joins_as_its_own_alert_and_recovers_on_its_own(homelab, tmp_path):
    # The drill's two-jobs-fail: vm-nightly's retry fails (page at 10m); ct-nightly fails at 15m, nothing
    # fixes it within the grace (page at 45m); its retry fixes it at 53m; vm-nightly's resume at 62m.
    series = _job_series(scenarios.TWO_JOBS_FIRST, 80) + _job_series(scenarios.TWO_JOBS_SECOND, 80, "ct-nightly")
    _unit_test(homelab, tmp_path, [{
        "interval": "1m", "input_series": series,
        "promql_expr_test": [
            _state("BackupJobFailed", "critical", "10m", ["vm-nightly"]),
            _state("BackupJobFailed", "warning", "15m", ["ct-nightly", "vm-nightly"]),
            _state("BackupJobFailed", "critical", "44m", ["vm-nightly"]),
            _state("BackupJobFailed", "critical", "45m", ["ct-nightly", "vm-nightly"]),
            _state("BackupJobFailed", "critical", "53m", ["vm-nightly"]),
            _state("BackupJobFailed", "critical", "62m", []),
        ],
    }], files=("backups",))


def test_an_exporter_outage_is_no_recovery(homelab, tmp_path):
    # Paged at 10m (FAILS_TWICE); the exporter is gone from 20m to 40m; the resume succeeds at 47m.
    series = _job_series(scenarios.FAILS_TWICE, 60)
    for s in series:
        values = s["values"].split()
        s["values"] = " ".join(values[:20] + ["_"] * 20 + values[40:])
    _unit_test(homelab, tmp_path, [{
        "interval": "1m", "input_series": series,
        "promql_expr_test": [
            _state("BackupJobFailed", "critical", "35m", ["vm-nightly"]),
            _state("BackupJobFailed", "warning", "35m", ["vm-nightly"]),
            _state("BackupJobFailed", "critical", "47m", []),
            _minutes_firing("BackupJobFailed", "critical", "60m", "60m", 37),
        ],
    }], files=("backups",))


def test_a_flapping_job_opens_one_incident_a_day_and_says_it_flaps(homelab, tmp_path):
    # The drill's backup-flapping: a run every 2h from 1h on, failed, good, failed, ... for a day.
    runs = scenarios.FLAPPING_RUNS
    _unit_test(homelab, tmp_path, [{
        "interval": "1m", "input_series": _job_series(runs, 26 * 60),
        "promql_expr_test": [
            # the first failure pages after the grace (nothing shows yet that it flaps) until the good run
            _state("BackupJobFailed", "critical", "95m", ["vm-nightly"]),
            _state("BackupJobFailed", "critical", "185m", []),
            # failed, good, failed: flapping from the second failure on, and no warning or page for it
            _state("BackupJobFlapping", "warning", "304m", []),
            _state("BackupJobFlapping", "warning", "305m", ["vm-nightly"]),
            _state("BackupJobFailed", "warning", "306m", []),
            _state("BackupJobFlapping", "warning", "25h", ["vm-nightly"]),
            # 90 minutes of page and 120 of warning in 26 hours: the first failure, and no other
            _minutes_firing("BackupJobFailed", "critical", "26h", "26h", 90),
            _minutes_firing("BackupJobFailed", "warning", "26h", "26h", 120),
        ],
    }], files=("backups",))


def test_a_day_without_runs_pages_nobody_and_records_no_nan(homelab, tmp_path):
    # The drill's no-jobs-scheduled: last night's run succeeded an hour ago, then nothing for a day.
    series = _job_series((), 24 * 60, history=scenarios.JUST_RAN)
    _unit_test(homelab, tmp_path, [{
        "interval": "1m", "input_series": series,
        "promql_expr_test": [
            {"expr": 'ALERTS{service="backups"}', "eval_time": "24h", "exp_samples": []},
            {"expr": "job:backup_success:ratio", "eval_time": "24h", "exp_samples": []},
            {"expr": "pbs_job:last_run_failed:bool", "eval_time": "24h",
             "exp_samples": [{"labels": "pbs_job:last_run_failed:bool{" + JOB + "}", "value": 0}]},
            # every recorded sample of the day is a number: NaN != NaN would keep it
            {"expr": "count_over_time((job:backup_success:ratio != job:backup_success:ratio)[24h:1m])",
             "eval_time": "24h", "exp_samples": []},
        ],
    }], files=("backups",))


def test_manual_runs_raise_no_job_alert(homelab, tmp_path):
    # An operator's verify runs (job_id="manual") fail twice; their one series is never a job's state.
    manual = 'datastore="homelab",job_id="manual",job_type="verify",instance="pbs.home.arpa",job="pbs-exporter"'
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        "input_series": [
            {"series": f"pbs_job_last_run_timestamp_seconds{{{manual}}}", "values": "0x9 600x10 1200x1600"},
            {"series": f"pbs_job_last_success_timestamp_seconds{{{manual}}}", "values": "0x1620"},
        ],
        # (no backup job here, so BackupMetricsAbsent pages: that one is right)
        "promql_expr_test": [{"expr": 'ALERTS{alertname!="BackupMetricsAbsent",service="backups"}', "eval_time": t,
                              "exp_samples": []} for t in ("30m", "2h", "27h")],
    }], files=("backups",))


def test_backups_go_stale_after_their_window_per_job(homelab, tmp_path):
    weekly = 'datastore="homelab",job_id="sync-offsite",job_type="sync"'
    # Last successes at t=0; the daily job is stale after 26h, the weekly sync only after 8d.
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        "input_series": [
            {"series": f"pbs_job_last_success_timestamp_seconds{{{JOB}}}", "values": "0x1800"},
            {"series": f"pbs_job_last_success_timestamp_seconds{{{weekly}}}", "values": "0x1800"},
        ],
        "promql_expr_test": [
            _firing("BackupsStale", "26h", []),
            _firing("BackupsStale", "26h20m", [
                f'ALERTS{{alertname="BackupsStale",alertstate="firing",{JOB},service="backups",severity="critical"}}']),
            _firing("BackupMetricsAbsent", "30h", []),
        ],
    }])


def test_missing_backup_metrics_page_after_an_hour(homelab, tmp_path):
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        "input_series": [{"series": 'up{job="pbs-exporter",service="backups",instance="pbs.home.arpa"}', "values": "0x90"}],
        "promql_expr_test": [
            _firing("BackupMetricsAbsent", "59m", []),
            _firing("BackupMetricsAbsent", "60m", [
                'ALERTS{alertname="BackupMetricsAbsent",alertstate="firing",job_type="backup",service="backups",severity="critical"}']),
            _firing("TargetDown", "4m", []),
            _firing("TargetDown", "5m", [
                'ALERTS{alertname="TargetDown",alertstate="firing",instance="pbs.home.arpa",job="pbs-exporter",service="backups",severity="warning"}']),
        ],
    }])


@pytest.mark.parametrize("alertname,series,service,labels", [
    ("PbsDatastoreUsageHigh", 'pbs_datastore_{kind}_bytes{{datastore="homelab",instance="pbs.home.arpa"}}', "backups",
     'datastore="homelab",instance="pbs.home.arpa"'),
    ("PersistentVolumeUsageHigh", 'kubelet_volume_stats_{kind}_bytes{{namespace="monitoring",persistentvolumeclaim="prometheus-db"}}',
     "observability", 'namespace="monitoring",persistentvolumeclaim="prometheus-db"'),
])
def test_disk_usage_warns_above_85_and_escalates_above_95(homelab, tmp_path, alertname, series, service, labels):
    total = {"size": "capacity", "used": "used"} if "kubelet" in series else {"size": "size", "used": "used"}
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        # 80% for 30m, 90% for 30m, 97% for 30m.
        "input_series": [
            {"series": series.format(kind=total["size"]), "values": "100x90"},
            {"series": series.format(kind=total["used"]), "values": "80x30 90x30 97x30"},
        ],
        "promql_expr_test": [
            _firing(alertname, "29m", []),
            _firing(alertname, "50m", [f'ALERTS{{alertname="{alertname}",alertstate="firing",{labels},service="{service}",severity="warning"}}']),
            _firing(alertname, "80m", [
                f'ALERTS{{alertname="{alertname}",alertstate="firing",{labels},service="{service}",severity="critical"}}',
                f'ALERTS{{alertname="{alertname}",alertstate="firing",{labels},service="{service}",severity="warning"}}']),
        ],
    }])


@pytest.mark.parametrize("alertname,service,size,fill,counted,ignored", [
    # The NAS: volumes count, its memory (also in hrStorageTable) does not. `fill` is used space.
    ("NasStorageUsageHigh", "storage", "hrStorageSize", ("hrStorageUsed", "900", "990"),
     'hrStorageDescr="/mnt/tank",instance="nas",job="snmp-nas"',
     'hrStorageDescr="Physical memory",instance="nas",job="snmp-nas"'),
    # A node: its root counts, the PBS datastore mount (PbsDatastoreUsageHigh's) does not. `fill` is free space.
    ("NodeDiskUsageHigh", "nodes", "node_filesystem_size_bytes", ("node_filesystem_avail_bytes", "100", "10"),
     'device="/dev/sda1",fstype="ext4",instance="pbs.home.arpa",mountpoint="/"',
     'device="/dev/sdb",fstype="ext4",instance="pbs.home.arpa",mountpoint="/mnt/datastore/homelab"'),
])
def test_disk_alerts_count_disks_only(homelab, tmp_path, alertname, service, size, fill, counted, ignored):
    fill_metric, counted_fill, ignored_fill = fill
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        "input_series": [
            {"series": f"{size}{{{counted}}}", "values": "1000x30"},
            {"series": f"{fill_metric}{{{counted}}}", "values": f"{counted_fill}x30"},
            {"series": f"{size}{{{ignored}}}", "values": "1000x30"},
            {"series": f"{fill_metric}{{{ignored}}}", "values": f"{ignored_fill}x30"},
        ],
        "promql_expr_test": [_firing(alertname, "20m", [
            f'ALERTS{{alertname="{alertname}",alertstate="firing",{counted},service="{service}",severity="warning"}}'])],
    }])


def test_watchdog_always_fires_and_alert_delivery_failures_are_caught(homelab, tmp_path):
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        "input_series": [
            {"series": 'prometheus_notifications_alertmanagers_discovered{instance="prom"}', "values": "1x10 0x20"},
            {"series": 'prometheus_notifications_sent_total{instance="prom",alertmanager="am"}', "values": "0+10x30"},
            {"series": 'prometheus_notifications_errors_total{instance="prom",alertmanager="am"}', "values": "0+0x5 0+5x25"},
            {"series": 'alertmanager_notifications_failed_total{instance="am",integration="pagerduty"}', "values": "0+1x30"},
        ],
        "promql_expr_test": [
            _firing("Watchdog", "1m", ['ALERTS{alertname="Watchdog",alertstate="firing",service="observability",severity="none"}']),
            _firing("PrometheusNotConnectedToAlertmanagers", "19m", []),
            _firing("PrometheusNotConnectedToAlertmanagers", "21m", [
                'ALERTS{alertname="PrometheusNotConnectedToAlertmanagers",alertstate="firing",instance="prom",service="observability",severity="critical"}']),
            _firing("PrometheusAlertDeliveryFailing", "25m", [
                'ALERTS{alertname="PrometheusAlertDeliveryFailing",alertstate="firing",alertmanager="am",instance="prom",service="observability",severity="critical"}']),
            # PagerDuty failing is announced as a warning: it goes to Mattermost, not to PagerDuty.
            _firing("AlertmanagerNotificationsFailing", "15m", [
                'ALERTS{alertname="AlertmanagerNotificationsFailing",alertstate="firing",instance="am",integration="pagerduty",service="observability",severity="warning"}']),
        ],
    }])


def test_a_scrape_job_that_vanished_is_reported(homelab, tmp_path):
    present = [f'up{{job="{j}",service="{s}",instance="x"}}' for j, s in
               (("pbs-exporter", "backups"), ("recovery", "backups"), ("snmp-core-switch", "network"), ("snmp-nas", "storage"),
                ("snmp-ups", "power"), ("federate-homelab-cluster", "metrics"),
                ("probe-api-gateway-health", "api-gateway"), ("probe-api-gateway-openapi", "api-gateway"),
                ("pve", "virtualization"))]
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        "input_series": [{"series": s, "values": "1x30"} for s in present],
        "promql_expr_test": [_firing("ScrapeJobAbsent", "20m", [
            'ALERTS{alertname="ScrapeJobAbsent",alertstate="firing",job="pbs-node",service="backups",severity="warning"}'])],
    }])


def test_every_alert_links_the_dashboard_of_its_service(homelab):
    from model.grafana.dashboards import load_dashboards
    from model.facts.links import SERVICE_DASHBOARDS
    from model.values.metrics import static_scrape_jobs
    from tests.configs import homelab_config

    uids = {d.uid for d in load_dashboards()}
    services = set()
    for rule in _alerts(homelab):
        service, url = rule["labels"]["service"], rule["annotations"]["dashboard_url"]
        linked = re.findall(rf"{re.escape(GRAFANA)}/d/([A-Za-z0-9_-]+)", url)
        assert linked and set(linked) <= uids, f"{rule['alert']}: {url}"
        if "{{" not in service:
            services.add(service)
            assert linked == [SERVICE_DASHBOARDS.get(service, "runbook-hub")], rule["alert"]
    # A service that no alert carries would be a link nobody follows (node/disk vs nodes).
    services |= {job.service for job in static_scrape_jobs(homelab_config())}
    assert set(SERVICE_DASHBOARDS) <= services


def test_a_templated_service_links_its_dashboard_when_the_alert_fires(homelab, tmp_path):
    def target_down(job: str, service: str, dashboard: str) -> dict:
        return {"exp_labels": {"severity": "warning", "service": service, "job": job, "instance": "x"},
                "exp_annotations": {
                    "summary": "A scrape target is down",
                    "description": f"Prometheus cannot scrape x of job {job}: its metrics and alerts are blind.",
                    "runbook_url": f"{HUB}/runbooks/TargetDown.md",
                    "dashboard_url": f"{GRAFANA}/d/{dashboard}"}}

    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        "input_series": [{"series": 'up{job="pbs-exporter",service="backups",instance="x"}', "values": "0x10"},
                         {"series": 'up{job="snmp-ups",service="power",instance="x"}', "values": "0x10"}],
        "alert_rule_test": [{"eval_time": "6m", "alertname": "TargetDown", "exp_alerts": [
            target_down("pbs-exporter", "backups", "backups"), target_down("snmp-ups", "power", "runbook-hub")]}],
    }])
