"""The identifiers the parts of the stack link each other by, fixed once.

Alerts link a dashboard and a runbook, dashboards name their data sources, the config may
rename folders: all of them by the UIDs and URLs below, so `<grafana url>/d/<uid>` and
`<hub>/runbooks/<AlertName>.md` stay stable links. Imports nothing of the model.
"""

from __future__ import annotations

import json
import re
from typing import Collection
from urllib.parse import quote, urlencode

# Data-source UIDs: dashboards refer to nothing else.
PROMETHEUS_UID = "prometheus"
ALERTMANAGER_UID = "alertmanager"
TEMPO_UID = "tempo"
# metrics.longTerm: VictoriaMetrics' vmselect, the same PromQL over the long retention.
LONG_TERM_METRICS_UID = "metrics-long-term"


def loki_uid(tenant: str) -> str:
    return f"loki-{tenant}"


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
    "virtualization": "platform",
}
RUNBOOK_HUB_UID = "runbook-hub"
# Dashboard uid -> the config section whose part it shows: without that section (an empty list
# of slos included) it is not deployed, and no alert links it.
DASHBOARD_SECTIONS: dict[str, str] = {"logs": "logs", "virtualization": "pveExporter", "latency-budget": "slos"}

# The `service` label of an alert -> the dashboard that answers "what is going on". Every key
# is the service of some alert (tested); a service without one deployed gets the runbook hub.
SERVICE_DASHBOARDS: dict[str, str] = {
    "backups": "backups",
    "api-gateway": "latency-budget",
    "nodes": "node-disk",
    # The playbook reads interface saturation beside the burn rates.
    "network": "latency-budget",
    "logs": "logs",
    "virtualization": "virtualization",
}


def dashboard_url(grafana_url: str, service: str, deployed: Collection[str]) -> str:
    """The stable link an alert carries as `dashboard_url` for its `service` label: its dashboard
    if the stack deploys it (`deployed`: their uids), else the runbook hub's."""
    uid = SERVICE_DASHBOARDS.get(service, RUNBOOK_HUB_UID)
    return f"{grafana_url.rstrip('/')}/d/{uid if uid in deployed else RUNBOOK_HUB_UID}"


def linked_services(deployed: Collection[str]) -> list[str]:
    """The services whose own dashboard the stack deploys."""
    return [service for service, uid in SERVICE_DASHBOARDS.items() if uid in deployed]


def dashboard_url_template(grafana_url: str, service_template: str, deployed: Collection[str]) -> str:
    """`dashboard_url` for a service known only when the alert fires (`{{ $labels.service }}`)."""
    hub = dashboard_url(grafana_url, "", deployed)
    template = "".join(
        f'{{{{ {"if" if i == 0 else "else if"} eq {service_template} "{service}" }}}}{dashboard_url(grafana_url, service, deployed)}'
        for i, service in enumerate(linked_services(deployed)))
    return f"{template}{{{{ else }}}}{hub}{{{{ end }}}}" if template else hub


def runbook_url(hub_url: str, alert: str) -> str:
    """Every alert's runbook: runbooks/<AlertName>.md, published under site.runbookHubUrl."""
    return f"{hub_url.rstrip('/')}/runbooks/{alert}.md"


_TEMPLATE = re.compile(r"^\{\{\s*(.+?)\s*\}\}$")


def alert_links(alert: str, service: str, runbook_hub_url: str, grafana_url: str | None,
                deployed: Collection[str] = ()) -> dict[str, str]:
    """The annotations that link an alert to its runbook and, with Grafana, to its dashboard
    (`deployed`: the uids of the dashboards the stack deploys)."""
    links = {"runbook_url": runbook_url(runbook_hub_url, alert)}
    if grafana_url:
        templated = _TEMPLATE.match(service)
        links["dashboard_url"] = (dashboard_url_template(grafana_url, templated.group(1), deployed) if templated
                                  else dashboard_url(grafana_url, service, deployed))
    return links


def explore_url(grafana_url: str, expr: str, datasource_uid: str = PROMETHEUS_UID) -> str:
    """Grafana Explore (schemaVersion 1 panes, Grafana 10+) running `expr` on a data source."""
    pane = {"datasource": datasource_uid,
            "queries": [{"refId": "A", "expr": expr, "datasource": {"type": "prometheus", "uid": datasource_uid}}],
            "range": {"from": "now-6h", "to": "now"}}
    # %20 rather than '+' for spaces, as Grafana writes them (and no long '+' runs that read as a token).
    query = urlencode({"schemaVersion": 1, "orgId": 1, "panes": json.dumps({"a": pane}, separators=(",", ":"))},
                      quote_via=quote)
    return f"{grafana_url.rstrip('/')}/explore?{query}"

# Dashboards whose ranges outgrow Prometheus' own retention (the SLO's 30-day budget, backups by
# the quarter): with metrics.longTerm they read the long-term data source instead of Prometheus.
LONG_RANGE_DASHBOARDS = ("latency-budget", "backups")
