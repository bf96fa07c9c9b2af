"""Grafana's folders and the dashboards of dashboards/, with the PromQL they run.

The files are the truth; the folder and dashboard UIDs they are filed and linked under live in
model/facts/links.py, so alerts, runbooks and the config name them without reading a dashboard.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from model.config import Grafana
from model.grafana.runbooks import Runbook, runbook_index_markdown, RUNBOOK_INDEX_MARKER
from model.facts.links import DASHBOARD_FOLDERS, FOLDERS, LONG_RANGE_DASHBOARDS, LONG_TERM_METRICS_UID, PROMETHEUS_UID

DASHBOARDS_DIR = Path(__file__).resolve().parents[2] / "dashboards"


def folders(cfg: Grafana) -> list[dict[str, str]]:
    return [{"uid": uid, "title": cfg.folder_titles.get(uid, title)} for uid, title in FOLDERS.items()]


@dataclass(frozen=True)
class Dashboard:
    file: Path
    uid: str
    title: str
    folder: str | None
    model: dict[str, Any]


def load_dashboards(directory: Path = DASHBOARDS_DIR) -> list[Dashboard]:
    found = []
    for path in sorted(directory.glob("*.json")):
        model = json.loads(path.read_text())
        uid = model.get("uid", "")
        found.append(Dashboard(path, uid, model.get("title", ""), DASHBOARD_FOLDERS.get(uid), model))
    return found


def iter_panels(model: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in model.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # panels inside a collapsed row


def referenced_data_source_uids(model: dict[str, Any]) -> set[str]:
    """Every data-source uid the dashboard names (panels, targets, variables, annotations)."""
    found: set[str] = set()

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            if key == "datasource" and "uid" in value:
                found.add(value["uid"])
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif key == "datasource" and isinstance(value, str):
            found.add(value)  # a legacy name reference: never valid here

    walk(model)
    return found - {"-- Grafana --", "grafana"}  # Grafana's built-in annotation source


@dataclass(frozen=True)
class Query:
    where: str
    data_source_uid: str
    expr: str


LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<selector>.+),\s*)?(?P<label>[A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$")
QUERY_RESULT = re.compile(r"^\s*query_result\((?P<query>.+)\)\s*$")


def prometheus_queries(model: dict[str, Any]) -> list[Query]:
    """Every PromQL expression of a dashboard: panel targets and Prometheus query variables.

    Grafana's variable functions are unwrapped to the PromQL inside them
    (`label_values(sel, label)` -> `sel`, `query_result(q)` -> `q`).
    """
    found = []
    title = model.get("title", "")
    for panel in iter_panels(model):
        panel_ds = (panel.get("datasource") or {}).get("uid")
        for target in panel.get("targets", []):
            uid = (target.get("datasource") or {}).get("uid", panel_ds)
            if uid == PROMETHEUS_UID and target.get("expr"):
                found.append(Query(f"{title} / {panel.get('title')} / {target.get('refId')}", uid, target["expr"]))
    for var in model.get("templating", {}).get("list", []):
        if var.get("type") != "query" or (var.get("datasource") or {}).get("uid") != PROMETHEUS_UID:
            continue
        query = var.get("query")
        text = query.get("query", "") if isinstance(query, dict) else query or ""
        if m := LABEL_VALUES.match(text):
            text = m.group("selector") or ""
        elif m := QUERY_RESULT.match(text):
            text = m.group("query")
        if text:
            found.append(Query(f"{title} / variable {var['name']}", PROMETHEUS_UID, text))
    return found


def _read_from(node: Any, old: str, new: str) -> Any:
    """Every `datasource` reference to `old` (an object with its uid, or a plain uid) pointed at `new`."""
    if isinstance(node, list):
        return [_read_from(v, old, new) for v in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for key, value in node.items():
        if key == "datasource" and value == old:
            value = new
        elif key == "datasource" and isinstance(value, dict) and value.get("uid") == old:
            value = {**value, "uid": new}
        out[key] = _read_from(value, old, new)
    return out


def render_dashboard(dashboard: Dashboard, runbooks: list[Runbook], hub_url: str,
                     long_term: bool = False) -> dict[str, Any]:
    """The dashboard as sent to Grafana: the file, with the runbook index filled in; with `long_term`
    (metrics.longTerm) a long-range dashboard reads the long-term data source instead of Prometheus."""
    model = json.loads(json.dumps(dashboard.model))
    if long_term and dashboard.uid in LONG_RANGE_DASHBOARDS:
        model = _read_from(model, PROMETHEUS_UID, LONG_TERM_METRICS_UID)
    for panel in iter_panels(model):
        options = panel.get("options") or {}
        if panel.get("type") == "text" and RUNBOOK_INDEX_MARKER in options.get("content", ""):
            options["content"] = options["content"].replace(RUNBOOK_INDEX_MARKER, runbook_index_markdown(runbooks, hub_url), 1)
    return model
