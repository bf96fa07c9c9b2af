"""alerts/*.yaml: your own rules, no code. Rendered, linked, routed and in the paging table like the
stack's own; their mistakes stop the preview by file and rule, before any resource is registered."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pulumi
import pytest
import yaml

from model.rules import user
from tests.conftest import FAKE_SECRETS, run_tool
from tools.offline_engine import ROOT, Recording, run_program
from tools.preview import render

UPS = {"groups": [{"name": "ups", "rules": [
    {"alert": "UpsOnBattery", "expr": 'upsBasicOutputStatus{job="snmp-ups"} == 3', "for": "1m",
     "labels": {"severity": "critical", "service": "power"},
     "annotations": {"summary": "The UPS runs on battery", "description": "{{ $labels.instance }} lost mains power."}},
    {"record": "ups:battery_remaining:min", "expr": "min(upsEstimatedMinutesRemaining)"},
]}]}


@pytest.fixture
def alerts_dir(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "alerts"
    directory.mkdir()
    monkeypatch.setattr(user, "USER_RULES_DIR", directory)
    return directory


def _write(directory: Path, name: str, doc) -> None:
    (directory / name).write_text(doc if isinstance(doc, str) else yaml.safe_dump(doc, sort_keys=False))


def test_your_rules_are_rendered_linked_checked_and_paged(alerts_dir, tmp_path):
    _write(alerts_dir, "ups.yaml", UPS)
    recording = run_program(ROOT / "Pulumi.homelab.yaml", FAKE_SECRETS)
    out = render(recording, tmp_path / "build")
    rendered = out / "prometheus" / "rules" / "alerts-ups.yaml"
    result = run_tool("promtool", "check", "rules", rendered)
    assert result.returncode == 0 and "SUCCESS: 2 rules found" in result.stdout, result.stdout + result.stderr
    rule = yaml.safe_load(rendered.read_text())["groups"][0]["rules"][0]
    assert rule["annotations"]["runbook_url"] == "https://runbooks.home.arpa/observability/runbooks/UpsOnBattery.md"
    assert rule["annotations"]["dashboard_url"].endswith("/d/runbook-hub"), "a service without a dashboard: the hub"
    pages = json.loads((out / "alerting" / "paging.json").read_text())
    (row,) = [p for p in pages if p["alert"] == "UpsOnBattery"]
    assert [d["receiver"] for d in row["deliveries"]] == ["pagerduty-primary"], "critical pages, as the seed's table says"
    # No runbook yet: a warning that names the file to write, not a silent gap.
    assert ("alerts/ups.yaml: groups[0].rules[0] (UpsOnBattery): alert UpsOnBattery has no runbook: write "
            "runbooks/UpsOnBattery.md (the policy pack refuses `pulumi up` of an alert without one; its runbook_url "
            "already points there)") in recording.warnings()


def test_mistakes_are_named_by_file_and_rule(alerts_dir):
    _write(alerts_dir, "ups.yaml", {"groups": [{"name": "backup-alerts", "rules": [
        {"alert": "UpsOnBattery", "expr": "up == 0", "labels": {"severity": "critcal"},
         "annotations": {"summary": "s", "runbook_url": "https://wiki/ups"}},
        {"alert": "BackupJobFailed", "expresion": "up == 0", "labels": {"severity": "warning", "service": "backups"},
         "annotations": {"summary": "s", "description": "d"}},
    ]}]})
    _write(alerts_dir, "broken.yaml", "groups:\n  - name: x\n    rules: [\n")
    recording = Recording("homelab-observability", "homelab")
    with pytest.raises(pulumi.RunError) as err:
        run_program(ROOT / "Pulumi.homelab.yaml", FAKE_SECRETS, recording=recording)
    lines = str(err.value).splitlines()
    assert lines[0] == "stack 'homelab' (Pulumi.homelab.yaml) has 9 problem(s):"
    assert sorted(lines[1:]) == sorted([
        "  - alerts/broken.yaml: is not YAML (line 4): expected the node content, but found '<stream end>'",
        "  - alerts/ups.yaml: groups[0].name: group 'backup-alerts' is already defined (by the stack)",
        "  - alerts/ups.yaml: groups[0].rules[0] (UpsOnBattery).labels.severity: must be one of critical, warning, "
        "info (got 'critcal') (did you mean 'critical'?)",
        "  - alerts/ups.yaml: groups[0].rules[0] (UpsOnBattery).labels.service: is required: the routing table matches on it",
        "  - alerts/ups.yaml: groups[0].rules[0] (UpsOnBattery).annotations.description: is required: every page says "
        "what and why",
        "  - alerts/ups.yaml: groups[0].rules[0] (UpsOnBattery).annotations.runbook_url: is set by the stack: write "
        "runbooks/UpsOnBattery.md, published under site.runbookHubUrl",
        "  - alerts/ups.yaml: groups[0].rules[1] (BackupJobFailed).expresion: unknown key (did you mean 'expr'?)",
        "  - alerts/ups.yaml: groups[0].rules[1] (BackupJobFailed).expr: is required (PromQL)",
        "  - alerts/ups.yaml: groups[0].rules[1] (BackupJobFailed).alert: 'BackupJobFailed' is an alert of the stack "
        "already: name yours differently",
    ])
    assert recording.resources == [], "nothing is registered"


def test_preview_runs_promtool_on_your_rules(tmp_path):
    """The PromQL is promtool's to judge (the Prometheus the chart deploys), before anything renders."""
    directory = tmp_path / "alerts"
    directory.mkdir()
    bad = {"groups": [{"name": "ups", "rules": [{**UPS["groups"][0]["rules"][0], "expr": "upsBatteryRemaining < < 10"}]}]}
    _write(directory, "ups.yaml", bad)
    script = ("import sys; from pathlib import Path; from model.rules import user; "
              f"user.USER_RULES_DIR = Path({str(directory)!r}); from tools import preview; sys.exit(preview.main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", script, "--stack-file", str(ROOT / "Pulumi.homelab.yaml"),
                           "--out", str(tmp_path / "build"), "--quiet"], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 2
    assert done.stderr.startswith("error: promtool refuses alerts/:\n")
    assert f'{directory / "ups.yaml"}: 5:' in done.stderr and "parse error: unexpected <op:<>" in done.stderr
    assert not (tmp_path / "build").exists()
