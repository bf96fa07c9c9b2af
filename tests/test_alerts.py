"""The rendered rule files under promtool: syntax, conventions and unit tests per alert."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_tool

RUNBOOKS = Path(__file__).resolve().parent.parent / "runbooks"
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


def test_backup_success_ratio_and_zero_traffic(homelab, tmp_path):
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        # 2 jobs a minute for an hour, one of which fails once; then no jobs at all.
        "input_series": [
            {"series": f"pbs_job_attempt_total{{{JOB}}}", "values": "0+2x60 120x120"},
            {"series": f"pbs_job_success_total{{{JOB}}}", "values": "0+2x30 61+2x29 119x120"},
        ],
        "promql_expr_test": [
            # 119 of 120 jobs succeeded (rounded: promtool 2.42 compares floats exactly).
            {"expr": "round(job:backup_success:ratio, 0.0001)", "eval_time": "60m",
             "exp_samples": [{"labels": '{slo="99.5"}', "value": 0.9917}]},
            # An hour without jobs: no sample rather than NaN.
            {"expr": "job:backup_success:ratio", "eval_time": "170m", "exp_samples": []},
        ],
    }])


def test_a_failed_backup_that_a_retry_fixes_stays_silent_one_that_stays_failed_pages(homelab, tmp_path):
    other = 'datastore="homelab",job_id="ct-nightly",job_type="backup"'
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        "input_series": [
            # vm-nightly runs at 10m and fails; the retry at 20m succeeds.
            {"series": f"pbs_job_last_run_timestamp_seconds{{{JOB}}}", "values": "60x9 600x10 1200x100"},
            {"series": f"pbs_job_last_success_timestamp_seconds{{{JOB}}}", "values": "60x19 1200x100"},
            {"series": f"pbs_job_running{{{JOB}}}", "values": "0x120"},
            # ct-nightly runs at 10m, fails and is not retried.
            {"series": f"pbs_job_last_run_timestamp_seconds{{{other}}}", "values": "60x9 600x110"},
            {"series": f"pbs_job_last_success_timestamp_seconds{{{other}}}", "values": "60x120"},
            {"series": f"pbs_job_running{{{other}}}", "values": "0x120"},
        ],
        "promql_expr_test": [
            _firing("BackupJobFailed", "39m", []),
            _firing("BackupJobFailed", "40m", [
                f'ALERTS{{alertname="BackupJobFailed",alertstate="firing",{other},service="backups",severity="critical"}}']),
        ],
        "alert_rule_test": [
            {"eval_time": "45m", "alertname": "BackupJobFailed", "exp_alerts": [{
                "exp_labels": {"severity": "critical", "service": "backups", "datastore": "homelab",
                               "job_id": "ct-nightly", "job_type": "backup"},
                "exp_annotations": {
                    "summary": "A PBS backup job failed and no retry has succeeded",
                    "description": "The last run of backup job ct-nightly on datastore homelab failed and no run "
                                   "succeeded within 30m; the guests it covers have no fresh restore point.",
                    "runbook_url": f"{HUB}/runbooks/BackupJobFailed.md",
                    "dashboard_url": f"{GRAFANA}/d/backups",
                },
            }]},
        ],
    }])


def test_a_long_running_backup_is_not_a_failure(homelab, tmp_path):
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        "input_series": [
            {"series": f"pbs_job_last_run_timestamp_seconds{{{JOB}}}", "values": "60x9 600x100"},
            {"series": f"pbs_job_last_success_timestamp_seconds{{{JOB}}}", "values": "60x110"},
            {"series": f"pbs_job_running{{{JOB}}}", "values": "0x9 1x100"},
        ],
        "promql_expr_test": [_firing("BackupJobFailed", "100m", [])],
    }])


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
     'hrStorageDescr="/volume1",instance="nas",job="snmp-nas"',
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
                ("probe-api-gateway-health", "api-gateway"), ("probe-api-gateway-openapi", "api-gateway"))]
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        "input_series": [{"series": s, "values": "1x30"} for s in present],
        "promql_expr_test": [_firing("ScrapeJobAbsent", "20m", [
            'ALERTS{alertname="ScrapeJobAbsent",alertstate="firing",job="pbs-node",service="backups",severity="warning"}'])],
    }])


def test_every_alert_links_the_dashboard_of_its_service(homelab):
    from model.grafana.dashboards import load_dashboards
    from model.links import SERVICE_DASHBOARDS
    from model.metrics import static_scrape_jobs
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
