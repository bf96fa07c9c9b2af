"""``python -m recovery plan`` (touches nothing) and the config check (every problem by key path)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from tests.recovery_world import ROOT, World, alert, notification


def run(*args):
    return subprocess.run([sys.executable, "-m", "services.recovery", *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    w.start_fakes()
    yield w
    w.stop()


def test_plan_prints_the_decisions_and_touches_nothing(world, tmp_path):
    config = world.write_config(actions={**world.config()["actions"], "pve-backup-rerun": {"mode": "dry-run"}})
    sync = alert("BackupMaintenanceJobFailed", {"job_type": "sync", "job_id": "s1", "datastore": "homelab", "service": "backups"})
    backup = alert("BackupJobFailed", {"job_type": "backup", "job_id": "vm/101", "datastore": "homelab", "service": "backups"})
    resolved = alert("BackupJobFailed", {"job_type": "backup", "job_id": "vm/102"}, status="resolved")
    other = alert("Watchdog", {"severity": "none"})
    webhook = tmp_path / "webhook.json"
    webhook.write_text(json.dumps(notification(sync, backup, resolved, other)))
    done = run("plan", "--config", config, "--alert", webhook)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "kill switch: off" in out
    assert "BackupMaintenanceJobFailed" in out and "pbs-job-rerun [enforce]" in out
    assert "pve-backup-rerun [dry-run]" in out and "backup-fallback [off]" in out
    assert "ignored (status resolved: never act on a resolved alert)" in out
    assert "Watchdog" in out and "ignored (not in the trigger table)" in out
    assert world.pbs.requests == [] and world.pve.requests == [] and world.capture.posts == []
    assert not (tmp_path / "state.sqlite3").exists() and not world.audit_path.exists()
    world.kill_switch.write_text("")
    assert "ENGAGED" in run("plan", "--config", config, "--alert", webhook).stdout


def test_a_bad_config_names_every_problem_by_key_path(world, tmp_path):
    doc = world.config()
    doc["actions"]["pbs-job-rerun"]["mode"] = "on"
    doc["actions"]["reboot-everything"] = {"mode": "enforce"}
    doc["triggers"][0]["playbook"] = "fix-it"
    doc["pbs"]["url"] = "pbs.home.arpa"
    del doc["stateFile"]
    doc["pagerduty"]["routeKey"] = "severity=critical"
    path = tmp_path / "bad.yml"
    path.write_text(yaml.safe_dump(doc))
    done = run("serve", "--config", path)
    assert done.returncode == 2
    err = done.stderr
    assert err.startswith(f"recovery: error: {path} has 6 problem(s):")
    for expected in ("(top level): 'stateFile' is a required property", "actions.pbs-job-rerun.mode: 'on' is not one of",
                     "actions: 'reboot-everything' is not one of", "triggers.0.playbook: 'fix-it' is not one of",
                     "pbs.url: 'pbs.home.arpa' does not match", "pagerduty.routeKey: 'severity=critical' does not match"):
        assert expected in err


def test_cross_checks_and_start_up_mistakes_exit_2(world, tmp_path):
    doc = world.config()
    del doc["pve"]["backupTokenFile"]
    doc["actions"]["nas-snapshot-prune"] = {"mode": "enforce"}
    path = tmp_path / "cross.yml"
    path.write_text(yaml.safe_dump(doc))
    err = run("serve", "--config", path).stderr
    assert "pve.backupTokenFile: required when actions.pve-backup-rerun.mode is enforce" in err
    assert "actions.nas-snapshot-prune: mode enforce needs the 'truenas' section" in err
    doc = world.config(webhookTokenFile=str(tmp_path / "missing"))
    path.write_text(yaml.safe_dump(doc))
    done = run("serve", "--config", path)
    assert done.returncode == 2 and f"cannot read secret file {tmp_path / 'missing'}: No such file or directory" in done.stderr
