"""build/<stack>/alerting/paging.{md,json}: who gets paged for what, by amtool's routing."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import yaml

from tests.conftest import run_tool
from tools import paging
from tools.offline_engine import ROOT


@pytest.fixture(scope="module")
def pages(homelab) -> list[dict]:
    return json.loads((homelab.out / "alerting" / "paging.json").read_text())


def _rows(pages, alert, severity, **labels):
    return [p for p in pages if p["alert"] == alert and p["severity"] == severity
            and all(p["labels"].get(k) == v for k, v in labels.items())]


def _receivers(row) -> list[str]:
    return [d["receiver"] for d in row["deliveries"]]


def test_every_alert_of_the_rendered_rules_has_a_row(homelab, pages):
    defined = {(r["alert"], r["labels"]["severity"]) for _, r in paging.alert_rules(homelab.out)}
    assert defined == {(p["alert"], p["severity"]) for p in pages}
    assert all(p["deliveries"] for p in pages), "every alert reaches someone (the root receiver at least)"


@pytest.mark.parametrize("alert,severity,labels,receivers", [
    # The design seed's table: critical pages; backups also go to their room; the recovery service first.
    ("BackupJobFailed", "critical", {}, ["recovery-service", "pagerduty-primary", "mattermost-backup-room"]),
    ("BackupsStale", "critical", {}, ["pagerduty-primary", "mattermost-backup-room"]),
    ("PveNodeDown", "critical", {}, ["pagerduty-primary", "virtualization-oncall"]),
    ("PveGuestNotBackedUp", "warning", {}, ["mattermost-ops-room"]),
    ("Watchdog", "none", {}, ["watchdog-heartbeat"]),
    # A templated service label: a target of the backups service reaches the backup room.
    ("TargetDown", "warning", {"service": "backups"}, ["mattermost-backup-room"]),
    ("TargetDown", "warning", {"service": paging.ANY_OTHER}, ["mattermost-ops-room"]),
])
def test_receivers_are_the_routing_tables(pages, alert, severity, labels, receivers):
    (row,) = _rows(pages, alert, severity, **labels)
    assert _receivers(row) == receivers


def test_receivers_are_what_amtool_answers_on_the_rendered_config(homelab, pages):
    """Naming every route after its place in the tree changes no routing decision."""
    config = homelab.out / "alertmanager" / "alertmanager.yml"
    for row in pages[::7]:
        labels = [f'{k}="{v}"' for k, v in {"alertname": row["alert"], "severity": row["severity"], **row["labels"]}.items()]
        result = run_tool("amtool", "config", "routes", "test", f"--config.file={config}", *labels)
        assert result.stdout.strip().splitlines()[-1].split(",") == _receivers(row), row["alert"]


def test_timing_and_recovery_are_shown(pages):
    (watchdog,) = _rows(pages, "Watchdog", "none")
    (beat,) = watchdog["deliveries"]
    assert (beat["group_wait"], beat["group_interval"], beat["repeat_interval"]) == ("0s", "1m", "1m")
    (failed,) = _rows(pages, "BackupJobFailed", "critical")
    room = failed["deliveries"][2]
    # The backup room's route sets group_interval; the rest comes from the root.
    assert (room["group_wait"], room["group_interval"], room["repeat_interval"], room["group_by"]) == \
        ("30s", "5m", "4h", ["alertname", "service"])
    assert failed["recovery"] == "backup-failure: pbs-job-rerun (enforce), pve-backup-rerun (enforce), backup-fallback (enforce)"
    (volume,) = _rows(pages, "PersistentVolumeUsageHigh", "warning")
    assert volume["recovery"].endswith("(when namespace=logging)"), "only the Loki volume starts the disk playbook"
    assert _rows(pages, "BackupsStale", "critical")[0]["recovery"] is None


def test_inherited_timing_and_time_intervals(tmp_path):
    """A child route inherits receiver and timing, never the time intervals (dispatch/route.go)."""
    build = tmp_path / "lab"
    (build / "prometheus" / "rules").mkdir(parents=True)
    (build / "alertmanager").mkdir()
    (build / "prometheus" / "rules" / "mine.yaml").write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": [
        {"alert": "UpsOnBattery", "expr": "vector(1)", "labels": {"severity": "critical", "service": "power"}}]}]}))
    (build / "alertmanager" / "alertmanager.yml").write_text(yaml.safe_dump({
        "route": {"receiver": "ops", "group_wait": "10s", "repeat_interval": "2h", "routes": [
            {"matchers": ['service="power"'], "receiver": "pager", "group_interval": "1m",
             "mute_time_intervals": ["nights"], "routes": [
                 {"matchers": ['severity="critical"'], "active_time_intervals": ["days"], "continue": True},
                 {"matchers": ['severity=~"critical|warning"'], "receiver": "room", "repeat_interval": "12h"}]}]},
        "time_intervals": [{"name": "nights", "time_intervals": [{"times": [{"start_time": "22:00", "end_time": "24:00"}]}]},
                           {"name": "days", "time_intervals": [{"weekdays": ["monday:friday"]}]}],
        "receivers": [{"name": "ops"}, {"name": "pager"}, {"name": "room"}]}))
    (page,) = paging.paging(build, paging.amtool_path())
    first, second = page.deliveries
    assert (first.receiver, first.route, first.group_wait, first.group_interval, first.repeat_interval) == \
        ("pager", "route.routes[0].routes[0]", "10s", "1m", "2h")
    assert (first.mute_time_intervals, first.active_time_intervals) == ([], ["days"])
    assert (second.receiver, second.repeat_interval, second.mute_time_intervals) == ("room", "12h", [])
    assert "| UpsOnBattery | critical | service=power | **pager** (wait 10s, every 1m, repeat 2h; grouped by nothing; only days)" \
        in paging.markdown([page], "lab")


def test_preview_without_amtool_says_so_and_ci_refuses(tmp_path):
    env = {**os.environ, "HOMELAB_UPSTREAM_CACHE": str(tmp_path / "empty-cache")}
    args = [sys.executable, "-m", "tools.preview", "--stack-file", str(ROOT / "Pulumi.homelab.yaml"),
            "--out", str(tmp_path / "build"), "--quiet"]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "warning: who gets paged for what (alerting/paging.md) not rendered: amtool " in done.stderr
    assert " is not built (upstream/alertmanager pins github.com/prometheus/alertmanager v" in done.stderr
    assert "): run `make upstream`" in done.stderr
    assert not (tmp_path / "build" / "homelab" / "alerting" / "paging.json").exists()
    done = subprocess.run(args + ["--require-paging"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "error: who gets paged for what" in done.stderr
