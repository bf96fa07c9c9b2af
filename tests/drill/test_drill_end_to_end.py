"""The drill end to end: real Prometheus, Alertmanager, promtool and amtool on 127.0.0.1."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tools import upstream
from tools.drill import scenarios

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def rendered(homelab):
    """The real configuration, rendered offline from Pulumi.homelab.yaml (the session fixture)."""
    return homelab.out


def _drill(*args, **kwargs):
    return subprocess.run([sys.executable, "-m", "tools.drill", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, **kwargs)


def test_short_drill_passes_and_reports(tmp_path, rendered):
    keep = tmp_path / "keep"
    result = _drill("--input", str(rendered), "--short", "--out", str(tmp_path), "--quiet", "--keep", str(keep))
    assert result.returncode == 0, result.stdout + result.stderr
    report = (tmp_path / "report.md").read_text()
    assert report.startswith("# Alert drill: homelab\n\n**PASS**")
    for name in scenarios.SHORT_DRILL:
        assert f"| {name} | ✅ pass |" in report
    assert "❌" not in report
    # the backup job paged before Alertmanager restarted: after the restart it is still heard once
    restart = report.split("## alertmanager-restart")[1]
    for alert in ("BackupJobFailed", "ApiGatewayLatencyBudgetBurn"):
        row = f"| pagerduty-primary | {alert} | critical | firing |"
        page_row = next(line for line in restart.splitlines() if row in line)
        assert page_row.startswith("| ✅ |") and page_row.split("|")[8].strip() == "1"
    assert (tmp_path / "timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # results.json, in the shape later drill work and CI read
    results = json.loads((tmp_path / "results.json").read_text())
    assert [s["name"] for s in results["scenarios"]] == list(scenarios.SHORT_DRILL)
    # the binaries it ran, at the versions the charts deploy
    versions = upstream.versions()
    for name in ("prometheus", "promtool", "alertmanager", "amtool", "blackbox_exporter"):
        assert f"version {versions[name]} " in results["binaries"][name], results["binaries"]
        assert f"`{name}`: {results['binaries'][name]}" in report
    for scenario in results["scenarios"]:
        assert set(scenario) == {"name", "verdict", "attempts", "starved", "notifications", "incidents_expected",
                                 "incidents_opened", "recovery_actions"}
        assert scenario["starved"] == []
        assert scenario["recovery_actions"] == []  # the recovery service is in the loop of its own scenarios only
        assert scenario["verdict"] == "pass"
        assert scenario["incidents_opened"] == scenario["incidents_expected"]
        for n in scenario["notifications"]:
            assert set(n) == {"receiver", "alertname", "severity", "status", "at_s"} and n["status"] in ("firing", "resolved")
    fails_twice = results["scenarios"][0]
    assert fails_twice["incidents_expected"] == 1
    pages = [n for n in fails_twice["notifications"] if n["receiver"] == scenarios.RECEIVER_PAGE]
    assert [(n["alertname"], n["status"]) for n in pages] == [("BackupJobFailed", "firing"), ("BackupJobFailed", "resolved")]
    # the incident, as Alertmanager rendered it for PagerDuty, names the job
    sent = [json.loads(line) for line in (keep / "backup-fails-twice" / "notifications.jsonl").read_text().splitlines()]
    triggers = [c["body"] for c in sent if c["receiver"] == scenarios.RECEIVER_PAGE and c["body"]["event_action"] == "trigger"]
    assert [t["payload"]["summary"] for t in triggers] == ["[FIRING:1] backups: BackupJobFailed vm-nightly;"]


def test_a_broken_route_fails_the_drill(tmp_path, rendered):
    """Without `continue: true` the backup room never hears of a critical backup failure."""
    broken = tmp_path / "rendered"
    shutil.copytree(rendered, broken)
    am_file = broken / "alertmanager" / "alertmanager.yml"
    doc = yaml.safe_load(am_file.read_text())
    def walk(route):
        yield route
        for child in route.get("routes") or []:
            yield from walk(child)

    critical = next(r for r in walk(doc["route"]) if r.get("receiver") == scenarios.RECEIVER_PAGE)
    critical.pop("continue")
    am_file.write_text(yaml.safe_dump(doc))
    result = _drill("--input", str(broken), "--scenario", "backup-fails-twice", "--time-scale", "240",
                    "--out", str(tmp_path / "out"), "--quiet")
    assert result.returncode == 1, result.stdout + result.stderr
    assert "missed: mattermost-backup-room BackupJobFailed firing" in result.stderr
    assert "**FAIL**" in (tmp_path / "out" / "report.md").read_text()


def _children(pid):
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _alive(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_sigterm_stops_every_process_the_drill_started(tmp_path, rendered):
    drill = subprocess.Popen([sys.executable, "-m", "tools.drill", "--input", str(rendered), "--scenario",
                              "backup-retry-succeeds", "--out", str(tmp_path)], cwd=ROOT,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = drill.stderr.readline()
        assert "warming up" in line, line
        deadline = time.monotonic() + 20
        while len(_children(drill.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        children = _children(drill.pid)
        assert len(children) == 2  # prometheus and alertmanager
        drill.send_signal(signal.SIGTERM)
        assert drill.wait(timeout=30) == 130
        assert "every process it started has been stopped" in drill.stderr.read()
        assert not [pid for pid in children if _alive(pid)]
        assert not (tmp_path / "report.md").exists()
    finally:
        if drill.poll() is None:
            drill.kill()
