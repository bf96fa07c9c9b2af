"""Alert -> runbook links: every alert's runbook_url is a file in runbooks/, every runbook names its alert."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from model.config import load_stack_config
from model.grafana.runbooks import RUNBOOKS_DIR, list_runbooks, runbook_problems
from tools.offline_engine import ROOT, run_program
from tools.preview import render

STACK_FILE = ROOT / "Pulumi.homelab.yaml"
HUB = "https://git.home.arpa/homelab/observability/src/branch/main"


def rendered_rule_files(build: Path) -> list[dict]:
    """The Prometheus rule files the offline preview renders (build/<stack>/prometheus/rules/)."""
    return [yaml.safe_load(p.read_text()) for p in sorted((build / "prometheus" / "rules").glob("*.y*ml"))]


def _hub_url() -> str:
    raw = yaml.safe_load(STACK_FILE.read_text())["config"]
    cfg = load_stack_config({k.split(":", 1)[1]: v for k, v in raw.items() if k.startswith("homelab-observability:")})
    return cfg.site.runbook_hub_url


def test_rendered_alerts_link_to_runbooks(tmp_path):
    build = render(run_program(STACK_FILE), tmp_path)
    assert runbook_problems(rendered_rule_files(build), RUNBOOKS_DIR, _hub_url()) == []
    # The hub dashboard as sent lists the runbook of every alert the stack defines, and no other
    # (the homelab has no metrics.longTerm: no remote-write alerts, nor their runbooks).
    hub = (build / "grafana" / "dashboards" / "runbook-hub.json").read_text()
    defined = {r["alert"] for doc in rendered_rule_files(build) for g in doc["groups"] for r in g["rules"] if "alert" in r}
    listed = {book.alert for book in list_runbooks() if f"/runbooks/{book.alert}.md" in hub}
    assert listed == defined and "PrometheusRemoteWriteBehind" not in listed


def _rules(*alerts: tuple[str, str | None]) -> list[dict]:
    rules = []
    for name, url in alerts:
        rule = {"alert": name, "expr": "vector(1)", "annotations": {"summary": name}}
        if url is not None:
            rule["annotations"]["runbook_url"] = url
        rules.append(rule)
    return [{"groups": [{"name": "backups", "rules": rules + [{"record": "job:x:ratio", "expr": "vector(1)"}]}]}]


@pytest.fixture
def runbooks(tmp_path) -> Path:
    (tmp_path / "BackupJobFailed.md").write_text("# Backup job failed\n\nAlert: BackupJobFailed fires when...\n")
    (tmp_path / "DiskUsageHigh.md").write_text("# Disk usage high\n\nFires above 85%.\n")  # does not name its alert
    (tmp_path / "README.md").write_text("# Runbooks\n")
    return tmp_path


def test_a_good_link_passes(runbooks):
    problems = runbook_problems(_rules(("BackupJobFailed", f"{HUB}/runbooks/BackupJobFailed.md")), runbooks, HUB)
    assert problems == ["DiskUsageHigh.md: does not name its alert DiskUsageHigh"]


def test_broken_links_are_reported(runbooks):
    problems = runbook_problems(_rules(
        ("NoAnnotation", None),
        ("WrongUrl", "https://wiki.example/WrongUrl"),
        ("MissingRunbook", f"{HUB}/runbooks/MissingRunbook.md"),
    ), runbooks, HUB + "/")
    assert problems == [
        "backups/NoAnnotation: no runbook_url annotation",
        f"backups/WrongUrl: runbook_url https://wiki.example/WrongUrl is not {HUB}/runbooks/WrongUrl.md",
        f"backups/MissingRunbook: runbook_url points to missing {runbooks.name}/MissingRunbook.md",
        "DiskUsageHigh.md: does not name its alert DiskUsageHigh",
    ]


def test_runbook_titles_come_from_their_heading(runbooks):
    assert [(b.alert, b.title) for b in list_runbooks(runbooks)] == [
        ("BackupJobFailed", "Backup job failed"), ("DiskUsageHigh", "Disk usage high")]
