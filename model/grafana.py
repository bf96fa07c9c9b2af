"""Grafana as data: data sources, folders, dashboards, contact points, notification policy.

Pure generators (no Pulumi): components/grafana.py turns what they return into resources,
the offline preview writes it under build/<stack>/grafana/, the tests check it with real
tools. Every identifier another part of the stack links to is fixed here once: data-source
UIDs (dashboards refer to nothing else), folder UIDs and dashboard UIDs, so
`<grafana url>/d/<uid>` is a stable link for alerts and runbooks.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import urlparse

from model import logs as logs_model
from model import traces as traces_model
from model.config import Grafana, Role, StackConfig
from model.hosts import scheduling_for
from model.matchers import Matcher, parse_matcher

ROOT = Path(__file__).resolve().parent.parent
DASHBOARDS_DIR = ROOT / "dashboards"
RUNBOOKS_DIR = ROOT / "runbooks"

# --- the Grafana release ---------------------------------------------------------------------

RELEASE_NAME = "grafana"
ADMIN_SECRET = "grafana-admin"
DATA_CLAIM = "grafana-data"
ADMIN_USER_KEY = "admin-user"
ADMIN_PASSWORD_KEY = "admin-password"


def grafana_values(cfg: Grafana) -> dict[str, Any]:
    """The chart's values: credentials from our Secret, data on our protected claim."""
    scheduling = scheduling_for(Role.PROMETHEUS)  # Grafana shares the metrics host
    host = urlparse(cfg.url).hostname
    ingress: dict[str, Any] = {"enabled": True, "ingressClassName": cfg.ingress_class, "hosts": [host], "path": "/", "pathType": "Prefix"}
    if cfg.tls_secret_name:
        ingress["tls"] = [{"secretName": cfg.tls_secret_name, "hosts": [host]}]
    return {
        "admin": {"existingSecret": ADMIN_SECRET, "userKey": ADMIN_USER_KEY, "passwordKey": ADMIN_PASSWORD_KEY},
        # The claim is ours (protected, kept on delete), not the chart's.
        "persistence": {"enabled": True, "type": "pvc", "existingClaim": DATA_CLAIM},
        # A ReadWriteOnce volume cannot be mounted by old and new pod at once.
        "deploymentStrategy": {"type": "Recreate"},
        "nodeSelector": scheduling.node_selector(),
        "tolerations": scheduling.tolerations(),
        "ingress": ingress,
        "grafana.ini": {
            "server": {"root_url": cfg.url.rstrip("/") + "/", "domain": host},
            "analytics": {"check_for_updates": False, "reporting_enabled": False},
            "users": {"allow_sign_up": False},
            "unified_alerting": {"enabled": True},
        },
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        # The init container that chowns the volume on first start.
        "initChownData": {"resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "64Mi"}}},
    }


# --- data sources ---------------------------------------------------------------------------

PROMETHEUS_UID = "prometheus"
ALERTMANAGER_UID = "alertmanager"
TEMPO_UID = "tempo"
LOKI_TENANT_HEADER = logs_model.TENANT_HEADER
DEFAULT_PROMETHEUS_URL = "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"
DEFAULT_ALERTMANAGER_URL = "http://kube-prometheus-stack-alertmanager.monitoring.svc:9093"


def loki_uid(tenant: str) -> str:
    return f"loki-{tenant}"


def loki_tenants(stack: StackConfig) -> list[str]:
    """The Loki tenants Grafana gets a data source for: every tenant of `logs`, none without Loki."""
    return [t.org_id for t in logs_model.tenants(stack.logs)] if stack.logs else []


def data_source_urls(stack: StackConfig) -> dict[str, str]:
    """Where Grafana reaches each backend: the stack's own services unless grafana.dataSources overrides."""
    override = stack.grafana.data_sources if stack.grafana else None
    urls = {
        "prometheus": override.prometheus if override and override.prometheus else DEFAULT_PROMETHEUS_URL,
        "alertmanager": override.alertmanager if override and override.alertmanager else DEFAULT_ALERTMANAGER_URL,
    }
    if stack.logs or (override and override.loki):
        urls["loki"] = override.loki if override and override.loki else logs_model.GATEWAY_URL
    if stack.traces or (override and override.tempo):
        urls["tempo"] = override.tempo if override and override.tempo else traces_model.tempo_query_url(stack.traces)
    return urls


def data_sources(stack: StackConfig) -> list[dict[str, Any]]:
    """One entry per Grafana data source, shaped like grafana.oss.DataSource's inputs."""
    urls = data_source_urls(stack)
    tenants = loki_tenants(stack)
    sources: list[dict[str, Any]] = [
        {
            "uid": PROMETHEUS_UID, "name": "Prometheus", "type": "prometheus", "url": urls["prometheus"],
            "is_default": True,
            "json_data": {
                "httpMethod": "POST",
                "timeInterval": "30s",  # the scrape interval: $__rate_interval builds on it
                "manageAlerts": False,  # rules are code, not edited in Grafana
                "exemplarTraceIdDestinations": [{"name": "trace_id", "datasourceUid": TEMPO_UID}],
            },
        },
        {
            "uid": ALERTMANAGER_UID, "name": "Alertmanager", "type": "alertmanager", "url": urls["alertmanager"],
            "json_data": {"implementation": "prometheus", "handleGrafanaManagedAlerts": False},
        },
    ]
    for tenant in tenants:
        sources.append({
            "uid": loki_uid(tenant), "name": f"Loki ({tenant})", "type": "loki", "url": urls["loki"],
            "json_data": {
                "maxLines": 1000,
                "derivedFields": [{
                    "name": "TraceID", "matcherType": "label", "matcherRegex": "trace_id",
                    "url": "${__value.raw}", "datasourceUid": TEMPO_UID,
                }],
            },
            # Loki is multi-tenant: the header picks the tenant every query reads.
            "http_headers": {LOKI_TENANT_HEADER: tenant},
        })
    if "tempo" not in urls:
        return sources
    logs_uid = loki_uid(tenants[0]) if tenants else None
    sources.append({
        "uid": TEMPO_UID, "name": "Tempo", "type": "tempo", "url": urls["tempo"],
        "json_data": {
            "tracesToLogsV2": {
                "datasourceUid": logs_uid,
                "spanStartTimeShift": "-5m", "spanEndTimeShift": "5m",
                "filterByTraceID": True, "filterBySpanID": False,
                "tags": [{"key": "service.name", "value": "service_name"}],
            },
            "tracesToMetrics": {
                "datasourceUid": PROMETHEUS_UID,
                "spanStartTimeShift": "-5m", "spanEndTimeShift": "5m",
                "tags": [{"key": "service.name", "value": "service_name"}],
                "queries": [
                    {"name": "Request rate", "query": "sum(rate(traces_span_metrics_calls_total{$__tags}[5m]))"},
                    {"name": "p95 latency", "query": "histogram_quantile(0.95, sum by (le) (rate(traces_span_metrics_duration_milliseconds_bucket{$__tags}[5m])))"},
                ],
            },
            "serviceMap": {"datasourceUid": PROMETHEUS_UID},
            "nodeGraph": {"enabled": True},
            "lokiSearch": {"datasourceUid": logs_uid},
        },
    })
    return sources


def data_source_uids(stack: StackConfig) -> set[str]:
    return {source["uid"] for source in data_sources(stack)}


# --- folders and dashboards -------------------------------------------------------------------

# Folder uid -> default title (grafana.folderTitles may rename, never re-key).
FOLDERS: dict[str, str] = {
    "service-levels": "Service Levels",
    "backups": "Backups",
    "platform": "Platform",
    "runbooks": "Runbooks",
}

# Dashboard uid -> folder uid. Every file in dashboards/ needs an entry (tested).
DASHBOARD_FOLDERS: dict[str, str] = {
    "latency-budget": "service-levels",
    "backups": "backups",
    "logs": "platform",
    "node-disk": "platform",
    "runbook-hub": "runbooks",
}

# The `service` label of an alert -> the dashboard that answers "what is going on".
SERVICE_DASHBOARDS: dict[str, str] = {
    "api-gateway": "latency-budget",
    "latency": "latency-budget",
    "backups": "backups",
    "logs": "logs",
    "loki": "logs",
    "node": "node-disk",
    "disk": "node-disk",
}
RUNBOOK_HUB_UID = "runbook-hub"


def dashboard_url(grafana_url: str, service: str) -> str:
    """The stable link an alert carries as `dashboard_url` for its `service` label."""
    uid = SERVICE_DASHBOARDS.get(service, RUNBOOK_HUB_UID)
    return f"{grafana_url.rstrip('/')}/d/{uid}"


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


# --- runbooks and the hub ------------------------------------------------------------------------

RUNBOOK_INDEX_MARKER = "<!-- runbook-index -->"


@dataclass(frozen=True)
class Runbook:
    alert: str
    path: Path
    title: str


def list_runbooks(directory: Path = RUNBOOKS_DIR) -> list[Runbook]:
    """runbooks/<AlertName>.md, one per alert; its first heading is its title."""
    found = []
    for path in sorted(directory.glob("*.md")) if directory.is_dir() else []:
        if path.stem.upper() == "README":
            continue
        heading = next((line.lstrip("#").strip() for line in path.read_text().splitlines() if line.startswith("#")), path.stem)
        found.append(Runbook(path.stem, path, heading))
    return found


def runbook_url(hub_url: str, alert: str) -> str:
    return f"{hub_url.rstrip('/')}/runbooks/{alert}.md"


def runbook_index_markdown(runbooks: Iterable[Runbook], hub_url: str) -> str:
    rows = [f"| [{r.alert}]({runbook_url(hub_url, r.alert)}) | {r.title} |" for r in runbooks]
    if not rows:
        return f"{RUNBOOK_INDEX_MARKER}\nNo runbooks in `runbooks/` yet."
    return "\n".join([RUNBOOK_INDEX_MARKER, "| Alert | Runbook |", "| --- | --- |", *rows])


def render_dashboard(dashboard: Dashboard, runbooks: list[Runbook], hub_url: str) -> dict[str, Any]:
    """The dashboard as sent to Grafana: the file, with the runbook index filled in."""
    model = json.loads(json.dumps(dashboard.model))
    for panel in iter_panels(model):
        options = panel.get("options") or {}
        if panel.get("type") == "text" and RUNBOOK_INDEX_MARKER in options.get("content", ""):
            options["content"] = options["content"].replace(RUNBOOK_INDEX_MARKER, runbook_index_markdown(runbooks, hub_url), 1)
    return model


def runbook_problems(rules: Iterable[dict[str, Any]], runbooks_dir: Path, hub_url: str) -> list[str]:
    """What breaks the alert -> runbook link: `rules` are parsed Prometheus rule files.

    Every alerting rule needs annotations.runbook_url == <hub>/runbooks/<alert>.md with that
    file in runbooks_dir, and every runbook must name its alert (so a search finds it).
    """
    problems = []
    alerts = []
    for doc in rules:
        for group in doc.get("groups", []):
            for rule in group.get("rules", []):
                if "alert" in rule:
                    alerts.append((group.get("name", "?"), rule))
    for group, rule in alerts:
        name = rule["alert"]
        url = (rule.get("annotations") or {}).get("runbook_url")
        expected = runbook_url(hub_url, name)
        if not url:
            problems.append(f"{group}/{name}: no runbook_url annotation")
        elif url != expected:
            problems.append(f"{group}/{name}: runbook_url {url} is not {expected}")
        elif not (runbooks_dir / f"{name}.md").is_file():
            problems.append(f"{group}/{name}: runbook_url points to missing {runbooks_dir.name}/{name}.md")
    for book in list_runbooks(runbooks_dir):
        if not re.search(rf"\b{re.escape(book.alert)}\b", book.path.read_text()):
            problems.append(f"{book.path.name}: does not name its alert {book.alert}")
    return problems


# --- alert routing: contact points and notification policy ----------------------------------------

def alert_routing_tree(stack: StackConfig) -> dict[str, Any]:
    """The route tree of the routing table, exactly as Alertmanager gets it (model/routing.py)."""
    from model.routing import alertmanager_config

    return alertmanager_config(stack)["route"]


@dataclass(frozen=True)
class SecretRef:
    """A Pulumi secret by its config key; the component puts the secret Output in its place."""

    key: str


NOTIFICATION_TITLE = '[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} ({{ .CommonLabels.service }})'
NOTIFICATION_TEXT = (
    "{{ range .Alerts }}{{ .Annotations.summary }}\n"
    "Runbook: {{ .Annotations.runbook_url }}\n"
    "{{ if .Annotations.dashboard_url }}Dashboard: {{ .Annotations.dashboard_url }}\n{{ end }}{{ end }}"
)


def route_receivers(route: dict[str, Any]) -> list[str]:
    names = [route["receiver"]] if route.get("receiver") else []
    for child in route.get("routes", []):
        names += [n for n in route_receivers(child) if n not in names]
    return names


def contact_points(stack: StackConfig) -> list[dict[str, Any]]:
    """One Grafana contact point per receiver of the routing table, in grafana.alerting.ContactPoint's shape."""
    assert stack.alerting is not None
    receivers = {r.name: r for r in stack.alerting.receivers}
    points = []
    for name in route_receivers(alert_routing_tree(stack)):
        r = receivers[name]  # StackConfig.problems() guarantees every routed receiver exists
        if r.pagerduty:
            integration = {"pagerduties": [{"integration_key": SecretRef("pagerdutyRoutingKey"),
                                            "severity": r.pagerduty.severity, "summary": NOTIFICATION_TITLE,
                                            "class_": "{{ .CommonLabels.service }}"}]}
        elif r.mattermost:
            # Mattermost's incoming webhooks accept Slack's payload; `recipient` picks the channel.
            integration = {"slacks": [{"url": SecretRef("mattermostWebhookUrl"), "recipient": r.mattermost.channel,
                                       "username": "grafana", "title": NOTIFICATION_TITLE, "text": NOTIFICATION_TEXT}]}
        else:
            hook: dict[str, Any] = {"url": r.heartbeat.url, "http_method": "POST"}
            if r.heartbeat.bearer_token:
                hook.update(authorization_scheme="Bearer", authorization_credentials=SecretRef("alertingHeartbeatToken"))
            integration = {"webhooks": [hook]}
        points.append({"name": name, **integration})
    return points


# The provider nests policies this deep below the root policy.
MAX_POLICY_DEPTH = 5


def _policy_matcher(matcher: Matcher) -> dict[str, str]:
    return {"label": matcher.label, "match": matcher.op, "value": matcher.value}


def _route_matchers(route: dict[str, Any]) -> list[dict[str, str]]:
    matchers = [_policy_matcher(parse_matcher(m)) for m in route.get("matchers", [])]
    # The deprecated forms are still valid Alertmanager config.
    matchers += [{"label": k, "match": "=", "value": v} for k, v in (route.get("match") or {}).items()]
    matchers += [{"label": k, "match": "=~", "value": v} for k, v in (route.get("match_re") or {}).items()]
    return matchers


TIMINGS = ("group_wait", "group_interval", "repeat_interval")


def _policy(route: dict[str, Any], depth: int) -> dict[str, Any]:
    if depth > MAX_POLICY_DEPTH:
        raise ValueError(f"routing tree deeper than the {MAX_POLICY_DEPTH} levels a Grafana policy tree holds")
    policy: dict[str, Any] = {}
    if route.get("receiver"):
        policy["contact_point"] = route["receiver"]
    if "group_by" in route:
        policy["group_by"] = list(route["group_by"])
    for key in TIMINGS:
        if key in route:
            policy[key] = route[key]
    if depth > 0:
        policy["matchers"] = _route_matchers(route)
        policy["continue"] = bool(route.get("continue", False))
    if route.get("mute_time_intervals"):
        policy["mute_timings"] = list(route["mute_time_intervals"])
    if route.get("routes"):
        policy["policies"] = [_policy(child, depth + 1) for child in route["routes"]]
    return policy


def notification_policy(route: dict[str, Any]) -> dict[str, Any]:
    """Grafana's notification policy tree for an Alertmanager route tree.

    Grafana's policies route with Alertmanager's semantics (first matching child wins unless
    `continue`, unset fields inherit from the parent), so the conversion is field by field.
    The root has no matchers and must name a contact point and its grouping.
    """
    if not route.get("receiver"):
        raise ValueError("the root route needs a receiver (the default contact point)")
    if _route_matchers(route):
        raise ValueError("the root route must not have matchers: it receives every alert")
    policy = _policy(route, 0)
    policy.setdefault("group_by", [])
    return policy
