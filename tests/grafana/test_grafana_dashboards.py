"""dashboards/*.json: Grafana's schema, unique identity, only provisioned data sources, in a folder."""

from __future__ import annotations

import copy
import json
import re

import pytest

from model.config import Grafana
from model.grafana.dashboards import folders, iter_panels, load_dashboards, referenced_data_source_uids, render_dashboard
from model.grafana.data_sources import data_source_uids, data_sources
from model.grafana.runbooks import RUNBOOK_INDEX_MARKER, Runbook
from model.facts.links import DASHBOARD_FOLDERS, FOLDERS, SERVICE_DASHBOARDS, dashboard_url
from tests.grafana_schema import dashboard_errors
from model.config import load_stack_config
from tests.stacks import homelab_sections

STACK = load_stack_config(homelab_sections())

DASHBOARDS = load_dashboards()
IDS = [d.file.name for d in DASHBOARDS]
CFG = Grafana.model_validate({"url": "http://grafana.home.arpa"})


def test_the_required_dashboards_exist():
    titles = {d.title for d in DASHBOARDS}
    assert {"Latency Budget", "Backups", "Logs", "Node & Disk", "Runbook Hub"} <= titles


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=IDS)
def test_dashboard_matches_grafana_schema(dashboard):
    assert dashboard_errors(dashboard.model) == []


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=IDS)
def test_dashboard_uses_only_provisioned_data_sources(dashboard):
    used = referenced_data_source_uids(dashboard.model)
    assert used <= data_source_uids(STACK), f"unknown data sources: {used - data_source_uids(STACK)}"
    # Every query names its data source: none falls back to whatever the default is.
    for panel in iter_panels(dashboard.model):
        for target in panel.get("targets", []):
            assert (target.get("datasource") or panel.get("datasource") or {}).get("uid"), (panel["title"], target)


@pytest.mark.parametrize("dashboard", DASHBOARDS, ids=IDS)
def test_dashboard_is_placed_and_laid_out(dashboard):
    if dashboard.uid in DASHBOARD_FOLDERS:  # the stack's own; yours may be named as you like
        assert dashboard.file.stem == dashboard.uid, "the file is named after the uid it is linked by"
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,40}", dashboard.uid), "Grafana's uid rule: 40 URL-safe characters"
    assert dashboard.folder in {f["uid"] for f in folders(CFG, DASHBOARDS)}
    panel_ids = [p["id"] for p in iter_panels(dashboard.model)]
    assert len(panel_ids) == len(set(panel_ids)), "panel ids must be unique within a dashboard"
    cells = set()
    for panel in iter_panels(dashboard.model):
        g = panel["gridPos"]
        for x in range(g["x"], g["x"] + g["w"]):
            for y in range(g["y"], g["y"] + g["h"]):
                assert (x, y) not in cells, f"{panel['title']} overlaps another panel"
                cells.add((x, y))


def test_uids_and_titles_are_unique():
    uids = [d.uid for d in DASHBOARDS]
    titles = [d.title for d in DASHBOARDS]
    assert len(set(uids)) == len(uids) and all(uids)
    assert len(set(titles)) == len(titles) and all(titles)
    assert set(DASHBOARD_FOLDERS) <= set(uids), "a dashboard DASHBOARD_FOLDERS files is missing from dashboards/"


def test_alert_dashboard_links_open_existing_dashboards():
    uids = {d.uid for d in DASHBOARDS}
    assert set(SERVICE_DASHBOARDS.values()) <= uids
    every = set(DASHBOARD_FOLDERS)
    assert dashboard_url("https://grafana.home.arpa/", "backups", every) == "https://grafana.home.arpa/d/backups"
    assert dashboard_url("https://grafana.home.arpa", "unknown-service", every).endswith("/d/runbook-hub")
    # A dashboard the stack does not deploy is never linked: the hub instead.
    assert dashboard_url("https://grafana.home.arpa", "logs", every - {"logs"}).endswith("/d/runbook-hub")


def test_schema_check_can_fail():
    model = copy.deepcopy(next(d for d in DASHBOARDS if d.uid == "backups").model)
    panel = next(p for p in model["panels"] if p["type"] == "timeseries")
    panel["options"]["legend"]["placement"] = "middle"                 # not a legend placement
    panel["targets"][0]["legendFormat"] = 42                           # query schema: a string
    panel["fieldConfig"]["defaults"]["custom"]["lineWidthPx"] = 2      # no such field option
    panel["fieldConfig"]["overrides"].append(
        {"matcher": {"id": "byName", "options": "x"}, "properties": [{"id": "custom.drawStyle", "value": "zigzag"}]})
    model["panels"].append({"type": "piechart", "id": 99, "title": "no schema", "gridPos": {"x": 0, "y": 99, "w": 1, "h": 1}})
    del model["schemaVersion"]
    errors = "\n".join(dashboard_errors(model))
    for expected in ["legend/placement", "legendFormat", "lineWidthPx", "zigzag", "piechart", "schemaVersion"]:
        assert expected in errors


def test_data_sources_have_fixed_uids_and_tenant_credentials():
    sources = {s["uid"]: s for s in data_sources(STACK)}
    assert set(sources) == data_source_uids(STACK)
    loki = {uid for uid, s in sources.items() if s["type"] == "loki"}
    assert loki == {f"loki-{tenant}" for tenant in homelab_sections()["logs"]["tenants"]}, "one per Loki tenant"
    for uid, source in sources.items():
        if source["type"] == "loki":
            tenant = uid.removeprefix("loki-")
            # The stack's gateway sets X-Scope-OrgID from the credential (model/values/logs.py).
            assert source["basic_auth_user"] == tenant and "http_headers" not in source
    tempo = sources["tempo"]["json_data"]
    # Trace to logs / metrics links point at provisioned data sources.
    assert tempo["tracesToLogsV2"]["datasourceUid"] in sources
    assert tempo["tracesToMetrics"]["datasourceUid"] == "prometheus"
    json.dumps(sources)  # plain data only


def test_folder_titles_can_be_renamed():
    cfg = CFG.model_copy(update={"folder_titles": {"platform": "Homelab platform"}})
    assert {"uid": "platform", "title": "Homelab platform"} in folders(cfg)
    assert len(folders(cfg)) == len(FOLDERS)


def test_runbook_hub_lists_every_runbook(tmp_path):
    hub = next(d for d in DASHBOARDS if d.uid == "runbook-hub")
    books = [Runbook("BackupJobFailed", tmp_path / "BackupJobFailed.md", "Backup job failed"),
             Runbook("DiskUsageHigh", tmp_path / "DiskUsageHigh.md", "Disk above 85%")]
    sent = render_dashboard(hub, books, "https://git.home.arpa/obs/")
    text = next(p for p in iter_panels(sent) if p["type"] == "text")["options"]["content"]
    assert "[BackupJobFailed](https://git.home.arpa/obs/runbooks/BackupJobFailed.md) | Backup job failed" in text
    assert "[DiskUsageHigh](https://git.home.arpa/obs/runbooks/DiskUsageHigh.md)" in text
    assert RUNBOOK_INDEX_MARKER in hub.model["panels"][0]["options"]["content"], "the file keeps its placeholder"
    assert dashboard_errors(sent) == []
    empty = render_dashboard(hub, [], "https://git.home.arpa/obs")
    assert "No runbooks" in next(p for p in iter_panels(empty) if p["type"] == "text")["options"]["content"]


def test_recorded_series_the_dashboards_read_are_recorded():
    """A dashboard reading a recording rule that does not exist shows an empty panel, not an error."""
    from model.rules.registry import all_rules, rule_files

    recorded = {r["record"] for r in all_rules(rule_files(STACK)) if "record" in r}
    for dashboard in load_dashboards():
        text = json.dumps(dashboard.model)
        used = set(re.findall(r"\b([a-z_]+:[a-z0-9_]+:[a-z0-9_]+)\b", text))
        assert used <= recorded, f"{dashboard.uid} reads {sorted(used - recorded)}, which no rule records"
