"""Helm charts the stack installs: where each comes from, at which exact version."""

from __future__ import annotations

from dataclasses import dataclass

from model.facts.endpoints import KUBE_PROMETHEUS_RELEASE


@dataclass(frozen=True)
class HelmChart:
    name: str
    version: str
    repository: str


# Since 2026 the open-source Loki and Tempo charts live in the community repository; the
# chart left in Grafana's own repository is for the enterprise edition only.
GRAFANA_COMMUNITY = "https://grafana-community.github.io/helm-charts"
OPEN_TELEMETRY = "https://open-telemetry.github.io/opentelemetry-helm-charts"
PROMETHEUS_COMMUNITY = "https://prometheus-community.github.io/helm-charts"

KUBE_PROMETHEUS_STACK_CHART = HelmChart("kube-prometheus-stack", "88.5.3", PROMETHEUS_COMMUNITY)
SNMP_EXPORTER_CHART = HelmChart("prometheus-snmp-exporter", "9.17.1", PROMETHEUS_COMMUNITY)
BLACKBOX_EXPORTER_CHART = HelmChart("prometheus-blackbox-exporter", "11.17.2", PROMETHEUS_COMMUNITY)

LOKI_CHART = HelmChart("loki", "18.11.0", GRAFANA_COMMUNITY)
TEMPO_CHART = HelmChart("tempo", "2.2.4", GRAFANA_COMMUNITY)
TEMPO_DISTRIBUTED_CHART = HelmChart("tempo-distributed", "2.26.2", GRAFANA_COMMUNITY)
GRAFANA_CHART = HelmChart("grafana", "12.11.1", GRAFANA_COMMUNITY)
COLLECTOR_CHART = HelmChart("opentelemetry-collector", "0.170.0", OPEN_TELEMETRY)
VICTORIA_METRICS_CLUSTER_CHART = HelmChart("victoria-metrics-cluster", "0.49.0",
                                           "https://victoriametrics.github.io/helm-charts")

# kube-prometheus-stack's Prometheus selects ServiceMonitors carrying this label.
PROMETHEUS_SELECTOR_LABELS = {"release": KUBE_PROMETHEUS_RELEASE}


def resources(cpu: str, memory: str, memory_limit: str | None = None) -> dict:
    """Requests and a memory limit; no CPU limit, which only throttles a pod on an idle node."""
    return {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory_limit or memory}}
