"""The second example stack, Pulumi.minimal.yaml: a homelab without logs, traces, recovery, reports,
SNMP devices, probes, SLOs or the PVE exporter previews, leaves those parts out entirely, says so one
line each, and what it renders passes the same real validators as the homelab's rendering."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.conftest import run_tool
from tests.stacks import ROOT

MINIMAL = ROOT / "Pulumi.minimal.yaml"
CLOUD_INIT = shutil.which("cloud-init") or "/usr/bin/cloud-init"


def _sections() -> dict:
    config = yaml.safe_load(MINIMAL.read_text())["config"]
    return {k.split(":", 1)[1]: v for k, v in config.items() if k.startswith("homelab-observability:")}


def test_it_is_the_small_homelab_it_claims_to_be():
    sections = _sections()
    assert len(sections["proxmox"]["nodes"]) == 1
    assert sorted(h["role"] for h in sections["hosts"].values()) == ["pbs", "prometheus"]
    assert not {"logs", "traces", "recovery", "reports", "pveExporter", "probes", "slos"} & set(sections)


def test_no_part_of_logs_or_traces_is_registered(minimal):
    names = [f"{r.type} {r.name}" for r in minimal.recording.resources]
    assert names, "the stack registers resources"
    for word in ("loki", "tempo", "otel", "logs", "traces", "snmp", "recovery", "report"):
        assert [n for n in names if word in n.lower()] == [], word


def test_grafana_has_no_loki_or_tempo_and_links_no_traces(minimal):
    sources = json.loads((minimal.out / "grafana" / "datasources.json").read_text())
    assert sorted(s["type"] for s in sources) == ["alertmanager", "prometheus"]
    assert "tempo" not in json.dumps(sources)
    dashboards = {p.stem for p in (minimal.out / "grafana" / "dashboards").glob("*.json")}
    # No SLOs: the Latency Budget would show nothing.
    assert dashboards == {"backups", "node-disk", "runbook-hub"}


def test_alerts_and_runbooks_link_only_what_the_stack_deploys(minimal):
    dashboards = {p.stem for p in (minimal.out / "grafana" / "dashboards").glob("*.json")}
    rules = [yaml.safe_load(p.read_text()) for p in minimal.rule_files]
    alerts = {r["alert"]: r for doc in rules for g in doc["groups"] for r in g["rules"] if "alert" in r}
    for name, rule in alerts.items():
        linked = set(re.findall(r"https://grafana\.lan\.example/d/([A-Za-z0-9_-]+)", rule["annotations"]["dashboard_url"]))
        assert linked and linked <= dashboards, (name, rule["annotations"]["dashboard_url"])
        assert rule["annotations"]["runbook_url"] == f"https://runbooks.lan.example/runbooks/{name}.md"  # derived
    pages = {p.stem for p in (minimal.out / "runbook-hub" / "runbooks").glob("*.html")}
    assert pages == set(alerts), "the hub serves the runbooks of the stack's alerts, no Loki or PVE ones"


def test_no_rule_alerts_on_a_part_the_stack_lacks(minimal):
    text = "\n".join(p.read_text() for p in minimal.rule_files)
    for alert in ("LokiIngestionRefused", "LokiCompactionStalled", "RecoveryActionsFailing", "PveNodeDown"):
        assert alert not in text
    assert "BackupJobFailed" in text


def test_promtool_accepts_the_rules(minimal):
    assert minimal.rule_files
    result = run_tool("promtool", "check", "rules", *minimal.rule_files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_amtool_accepts_the_routing(minimal):
    result = run_tool("amtool", "check-config", minimal.out / "alertmanager" / "alertmanager.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "classic matchers parser" not in result.stdout + result.stderr


@pytest.mark.parametrize("vm", sorted(_sections()["hosts"]))
def test_cloud_init_schema_accepts(minimal, vm):
    result = subprocess.run([CLOUD_INIT, "schema", "--config-file", str(minimal.out / "hosts" / vm / "user-data.yaml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_preview_says_what_is_off_and_why_one_line_each(tmp_path):
    result = subprocess.run([sys.executable, "-m", "tools.preview", "--stack-file", str(MINIMAL),
                             "--out", str(tmp_path), "--quiet"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    off = [line for line in result.stderr.splitlines() if line.startswith("info: ") and ": off (" in line]
    parts = [line.removeprefix("info: ").split(":", 1)[0] for line in off]
    assert parts == ["logs", "traces", "recovery", "reports", "pveExporter", "probes", "slos",
                     "metrics.snmp", "metrics.longTerm"]
    logs = off[0]
    assert "no `logs` section" in logs and "Loki host" in logs and "Logs dashboard" in logs
    assert "Latency Budget dashboard" in off[parts.index("slos")]
