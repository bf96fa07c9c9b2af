"""A stack links and serves only what it deploys: alerts' dashboard_url names a deployed dashboard,
a dashboard is deployed only when it has something to show, the runbook hub serves exactly the
runbooks of the alerts the stack defines."""

from __future__ import annotations

import re
import shutil

import pytest

from model import runbook_hub
from model.config import ConfigError
from model.grafana import runbooks as runbooks_module
from model.grafana.dashboards import deployed_uids, load_dashboards, stack_dashboards
from model.preflight import preflight
from model.rules.registry import all_rules, rule_files
from tests.configs import homelab_config

LINK = re.compile(r"https://grafana\.home\.arpa/d/([A-Za-z0-9_-]+)")


def _small(sections):
    """The homelab without logs, traces, SLOs and the PVE exporter (and what needs them)."""
    for key in ("logs", "traces", "slos", "pveExporter"):
        sections.pop(key)
    del sections["hosts"]["loki"]
    sections["recovery"]["actions"] = {k: v for k, v in sections["recovery"]["actions"].items()
                                       if k not in ("loki-compactor-report", "customer-impact-probe")}


@pytest.fixture(scope="module")
def small():
    try:
        return homelab_config(_small)
    except ConfigError as exc:  # pragma: no cover - says what the recipe misses
        pytest.fail(str(exc))


def test_only_dashboards_with_something_to_show_are_deployed(small):
    assert {d.uid for d in stack_dashboards(small, load_dashboards())} == {"backups", "node-disk", "runbook-hub"}
    assert deployed_uids(small) == {"backups", "node-disk", "runbook-hub"}
    # The Latency Budget reads the SLOs' burn rates: deployed with any SLO, none without.
    assert "latency-budget" in deployed_uids(homelab_config())
    assert "latency-budget" in deployed_uids(homelab_config(lambda s: s.update(slos=s["slos"][:1])))
    assert "latency-budget" not in deployed_uids(homelab_config(lambda s: s.update(slos=[])))


def test_alerts_link_only_deployed_dashboards(small):
    deployed = deployed_uids(small)
    linked = set()
    for rule in all_rules(rule_files(small)):
        if "alert" in rule:
            found = set(LINK.findall(rule["annotations"]["dashboard_url"]))
            assert found and found <= deployed, (rule["alert"], rule["annotations"]["dashboard_url"])
            linked |= found
    assert linked == deployed
    # A probe of the API gateway fires with service="api-gateway": without SLOs no Latency Budget to pick.
    probe = next(r for r in all_rules(rule_files(small)) if r.get("alert") == "SyntheticProbeFailing")
    assert '"api-gateway"' not in probe["annotations"]["dashboard_url"]
    assert '"api-gateway" }}https://grafana.home.arpa/d/latency-budget' in next(
        r for r in all_rules(rule_files(homelab_config())) if r.get("alert") == "SyntheticProbeFailing")["annotations"]["dashboard_url"]


def test_the_hub_serves_exactly_the_runbooks_of_the_alerts_the_stack_defines(small):
    files = runbook_hub.build_site(small)
    defined = {r["alert"] for r in all_rules(rule_files(small)) if "alert" in r}
    assert {p.removeprefix("runbooks/").removesuffix(".html") for p in files if p.startswith("runbooks/")} == defined
    assert not [p for p in files if "Loki" in p or "Pve" in p or "BudgetBurn" in p]
    assert not [name for name in LINK.findall("".join(files.values())) if name not in deployed_uids(small)]
    index = files["index.html"]
    assert "LokiCompactionStalled" not in index and "BackupJobFailed" in index
    # The Runbook Hub dashboard's index lists the same runbooks.
    assert {b.alert for b in runbook_hub.stack_runbook_list(small)} == defined


def test_a_built_in_alert_without_its_runbook_stops_the_preview(tmp_path, monkeypatch):
    copied = tmp_path / "runbooks"
    shutil.copytree(runbooks_module.RUNBOOKS_DIR, copied)
    (copied / "NasStorageUsageHigh.md").unlink()
    monkeypatch.setattr(runbooks_module, "RUNBOOKS_DIR", copied)
    problems, _ = preflight(homelab_config())
    assert [str(p) for p in problems] == [
        "runbooks/NasStorageUsageHigh.md: is missing: the stack defines alert NasStorageUsageHigh, whose runbook_url links it"]
    # A stack without that alert (no NAS with storage) does not need it.
    no_nas = homelab_config(lambda s: [t.pop("hasStorage", None) for t in s["metrics"]["snmp"]["targets"]])
    assert preflight(no_nas)[0] == []


def test_an_alert_of_your_own_without_a_runbook_gets_a_stub_page_not_a_404():
    cfg = homelab_config()
    files = rule_files(cfg)
    files["alerts-ups"] = {"groups": [{"name": "ups", "rules": [{
        "alert": "UpsOnBattery", "expr": "upsBasicOutputStatus == 3",
        "labels": {"severity": "critical", "service": "power"},
        "annotations": {"summary": "The UPS runs on battery", "description": "Mains power is out."}}]}]}
    site = runbook_hub.site_files(cfg, files, {})
    page = site["runbooks/UpsOnBattery.html"]
    assert "<h1>UpsOnBattery</h1>" in page and "The UPS runs on battery" in page
    assert "No runbook yet: write <code>runbooks/UpsOnBattery.md</code>" in page
    assert "The UPS runs on battery (no runbook yet)" in site["index.html"]
