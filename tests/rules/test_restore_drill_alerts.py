"""Restore-drill and per-guest coverage alerts (model/rules/recovery.py drill_rules, model/rules/coverage.py)
reach the backup room and page nobody, as rendered; their promtool tests are tests/rules/recovery.test.yaml
and coverage.test.yaml."""

from __future__ import annotations

import yaml

from tests.conftest import run_tool


def test_the_rendered_drill_and_coverage_alerts_reach_the_backup_room_and_page_nobody(homelab):
    names = {"RestoreDrillFailed", "RestoreDrillStale", "RestoreTimeAboveTarget", "GuestBackupStale", "GuestNeverBackedUp",
             "GuestNotVerified"}
    rules = [r for f in ("recovery", "coverage")
             for g in yaml.safe_load((homelab.out / "prometheus" / "rules" / f"{f}.yaml").read_text())["groups"]
             for r in g["rules"] if r.get("alert") in names]
    assert {r["alert"] for r in rules} == names
    for rule in rules:
        labels = [f"alertname={rule['alert']}", *(f"{k}={v}" for k, v in rule["labels"].items()), "guest=vm/101"]
        done = run_tool("amtool", "config", "routes", "test", f"--config.file={homelab.out / 'alertmanager' / 'alertmanager.yml'}",
                        *labels)
        assert (rule["alert"], done.stdout.strip()) == (rule["alert"], "mattermost-backup-room"), done.stderr
