"""Grafana's data sources: one per backend, one per Loki tenant, with fixed UIDs (model/facts/links.py)."""

from __future__ import annotations

from typing import Any

from model.values import logs as logs_model
from model.config import StackConfig
from model.facts.links import ALERTMANAGER_UID, LONG_TERM_METRICS_UID, PROMETHEUS_UID, TEMPO_UID, loki_uid


def loki_tenants(stack: StackConfig) -> list[str]:
    """The Loki tenants Grafana gets a data source for: every tenant of `logs`, none without Loki."""
    return [t.org_id for t in logs_model.tenants(stack.logs)] if stack.logs else []


def data_source_urls(stack: StackConfig) -> dict[str, str]:
    """Where Grafana reaches each backend: the stack's own services unless grafana.dataSources overrides."""
    override = stack.grafana.data_sources if stack.grafana else None
    own = stack.endpoints()
    urls = {
        "prometheus": override.prometheus if override and override.prometheus else own.prometheus_url,
        "alertmanager": override.alertmanager if override and override.alertmanager else own.alertmanager_url,
    }
    if stack.metrics.long_term:
        urls["long_term"] = own.long_term_query_url
    if stack.logs or (override and override.loki):
        urls["loki"] = override.loki if override and override.loki else own.loki_gateway_url
    if stack.traces or (override and override.tempo):
        urls["tempo"] = override.tempo if override and override.tempo else own.tempo_query_url
    return urls


def data_sources(stack: StackConfig) -> list[dict[str, Any]]:
    """One entry per Grafana data source, shaped like grafana.oss.DataSource's inputs."""
    urls = data_source_urls(stack)
    tenants = loki_tenants(stack)
    own_loki = urls.get("loki") == stack.endpoints().loki_gateway_url
    sources: list[dict[str, Any]] = [
        {
            "uid": PROMETHEUS_UID, "name": "Prometheus", "type": "prometheus", "url": urls["prometheus"],
            "is_default": True,
            "json_data": {
                "httpMethod": "POST",
                "timeInterval": stack.metrics.scrape_interval,  # $__rate_interval builds on it
                "manageAlerts": False,  # rules are code, not edited in Grafana
                # exemplars link to their trace only where there is a Tempo to open it in
                **({"exemplarTraceIdDestinations": [{"name": "trace_id", "datasourceUid": TEMPO_UID}]}
                   if "tempo" in urls else {}),
            },
        },
        {
            "uid": ALERTMANAGER_UID, "name": "Alertmanager", "type": "alertmanager", "url": urls["alertmanager"],
            "json_data": {"implementation": "prometheus", "handleGrafanaManagedAlerts": False},
        },
    ]
    if "long_term" in urls:
        sources.append({
            "uid": LONG_TERM_METRICS_UID, "name": "Long-term metrics", "type": "prometheus", "url": urls["long_term"],
            "json_data": {"httpMethod": "POST", "timeInterval": stack.metrics.scrape_interval, "manageAlerts": False},
        })
    for tenant in tenants:
        sources.append({
            "uid": loki_uid(tenant), "name": f"Loki ({tenant})", "type": "loki", "url": urls["loki"],
            "json_data": {
                "maxLines": 1000,
                **({"derivedFields": [{
                    "name": "TraceID", "matcherType": "label", "matcherRegex": "trace_id",
                    "url": "${__value.raw}", "datasourceUid": TEMPO_UID,
                }]} if "tempo" in urls else {}),
            },
            # The stack's own gateway picks the tenant from the credential Grafana signs in with
            # (model/values/logs.py); another Loki (grafana.dataSources.loki) from the header.
            **({"basic_auth_user": tenant} if own_loki else {"http_headers": {logs_model.TENANT_HEADER: tenant}}),
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
