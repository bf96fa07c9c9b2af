"""Grafana's folders and the dashboards of dashboards/, with the PromQL they run.

The files are the truth; the folder and dashboard UIDs they are filed and linked under live in
model/facts/links.py, so alerts, runbooks and the config name them without reading a dashboard.
A dashboard of your own needs no code: any dashboards/*.json, a dashboard model as Grafana exports
it or its API's shape (`{"dashboard": {...}, "folderUid": ...}` as POSTed, or with `meta.folderUid`
and `meta.folderTitle` as GET answers), goes to the folder it names (created when new) or to
DEFAULT_FOLDER; dashboard_problems() checks it before any resource is registered.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from model.config import Grafana, Problem, StackConfig
from model.grafana.runbooks import Runbook, runbook_index_markdown, RUNBOOK_INDEX_MARKER
from model.facts.links import DASHBOARD_FOLDERS, DASHBOARD_SECTIONS, FOLDERS, LONG_RANGE_DASHBOARDS, LONG_TERM_METRICS_UID, PROMETHEUS_UID

DASHBOARDS_DIR = Path(__file__).resolve().parents[2] / "dashboards"
# Where a dashboard of your own goes when its file names no folder.
DEFAULT_FOLDER = "platform"
# Grafana's own pseudo data sources, which every instance has.
GRAFANA_BUILT_IN_SOURCES = frozenset({"-- Mixed --", "-- Dashboard --"})
# Grafana's rule for a dashboard's or folder's uid.
UID = re.compile(r"^[A-Za-z0-9_-]{1,40}$")


@dataclass(frozen=True)
class Dashboard:
    file: Path
    uid: str
    title: str
    folder: str
    model: dict[str, Any]
    folder_title: str | None = None  # a folder the file names that the stack does not have: its title


def folders(cfg: Grafana, dashboards: list[Dashboard] | None = None) -> list[dict[str, str]]:
    """The stack's folders, and each new one a dashboard file names."""
    found = {uid: cfg.folder_titles.get(uid, title) for uid, title in FOLDERS.items()}
    for d in dashboards or []:
        found.setdefault(d.folder, cfg.folder_titles.get(d.folder, d.folder_title or d.folder))
    return [{"uid": uid, "title": title} for uid, title in found.items()]


def _read(path: Path) -> tuple[Dashboard | None, list[Problem]]:
    where = f"{path.parent.name}/{path.name}"
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        return None, [Problem(where, f"is not JSON: {exc}")]
    if not isinstance(doc, dict):
        return None, [Problem(where, "must be a dashboard (a JSON object)")]
    model, folder, title = doc, None, None
    if isinstance(doc.get("dashboard"), dict):  # Grafana's API shape
        model = doc["dashboard"]
        meta = doc.get("meta") or {}
        folder = doc.get("folderUid") or meta.get("folderUid") or None
        title = meta.get("folderTitle") or None
    uid = str(model.get("uid") or "")
    problems = []
    if not UID.match(uid):
        problems.append(Problem(f"{where}: uid", f"must be 1 to 40 letters, digits, '-' or '_' (got {uid!r}): "
                                                 "Grafana links the dashboard by it"))
    if not model.get("title"):
        problems.append(Problem(f"{where}: title", "is required"))
    if folder is not None and not UID.match(str(folder)):
        problems.append(Problem(f"{where}: folderUid", f"must be 1 to 40 letters, digits, '-' or '_' (got {folder!r})"))
    folder = DASHBOARD_FOLDERS.get(uid) or str(folder or DEFAULT_FOLDER)
    dashboard = Dashboard(path, uid, str(model.get("title") or ""), folder, model,
                          None if folder in FOLDERS else title)
    return dashboard, problems


def read_dashboards(directory: Path | None = None) -> tuple[list[Dashboard], list[Problem]]:
    """Every dashboards/*.json, and what is wrong with any of them."""
    found, problems = [], []
    for path in sorted((directory or DASHBOARDS_DIR).glob("*.json")):
        dashboard, wrong = _read(path)
        problems += wrong
        if dashboard is not None:
            found.append(dashboard)
    for key in ("uid", "title"):
        seen: dict[str, str] = {}
        for d in found:
            value = getattr(d, key)
            if value and value in seen:
                problems.append(Problem(f"{d.file.parent.name}/{d.file.name}: {key}",
                                        f"{value!r} is the {key} of {seen[value]} already"))
            seen.setdefault(value, d.file.name)
    return found, problems


def load_dashboards(directory: Path | None = None) -> list[Dashboard]:
    return read_dashboards(directory)[0]


def deploys(stack: StackConfig, uid: str) -> bool:
    """Whether the stack deploys the dashboard: not without Grafana, nor one of a part it lacks (the
    Logs dashboard without `logs`, the Latency Budget without SLOs): it would have nothing to show."""
    section = DASHBOARD_SECTIONS.get(uid)
    if stack.grafana is None or section is None:
        return stack.grafana is not None
    return bool(stack.slos) if section == "slos" else stack.has(section)


def deployed_uids(stack: StackConfig) -> frozenset[str]:
    """The uids of the stack's own dashboards it deploys: the ones alerts and runbooks may link."""
    return frozenset(uid for uid in DASHBOARD_FOLDERS if deploys(stack, uid))


def stack_dashboards(stack: StackConfig, dashboards: list[Dashboard]) -> list[Dashboard]:
    """The dashboards the stack deploys: all but those of a part it lacks."""
    return [d for d in dashboards if deploys(stack, d.uid)]


def dashboard_problems(stack: StackConfig, directory: Path | None = None) -> list[Problem]:
    """What stops dashboards/ from being deployed: unreadable files, a missing or shared uid, and
    data sources the stack does not provision (with the closest one). Grafana's schema is checked
    by the tests (tests/grafana/test_grafana_dashboards.py), for every file of the folder."""
    from model.grafana.data_sources import data_source_uids

    if stack.grafana is None:
        return []
    dashboards, problems = read_dashboards(directory)
    known = data_source_uids(stack)
    for d in dashboards:
        for uid in sorted(referenced_data_source_uids(d.model) - known):
            if uid.startswith("${") or uid in GRAFANA_BUILT_IN_SOURCES:
                continue  # a data-source variable, chosen in Grafana, or one of Grafana's own
            close = difflib.get_close_matches(uid, sorted(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            problems.append(Problem(f"{d.file.parent.name}/{d.file.name}: datasource",
                                    f"{uid!r} is no data source of this stack (it has: {', '.join(sorted(known))}){hint}"))
    return problems


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
