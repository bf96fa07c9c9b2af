"""Where each service of the stack runs, and the address its clients reach it at.

A Kubernetes Service's name follows from the Helm release that creates it, its DNS name from
the namespace the release is installed in. Every in-cluster address of the stack is derived
here from those two, so that moving a release (metrics.namespace, grafana.namespace) moves
every client with it: Grafana's data sources, the scrape configs, the collector's exporters.
Imports nothing of the model: the config builds an Endpoints from its namespaces.
"""

from __future__ import annotations

from dataclasses import dataclass, field

CLUSTER_DOMAIN = "cluster.local"

# Release names are fixed (no random suffix), so Service and PVC names stay stable.
KUBE_PROMETHEUS_RELEASE = "kube-prometheus-stack"
# Named like the chart, so its resources (and the Service the scrape jobs use) get exactly this name.
SNMP_EXPORTER_RELEASE = "prometheus-snmp-exporter"
BLACKBOX_EXPORTER_RELEASE = "prometheus-blackbox-exporter"
LOKI_RELEASE = "loki"
TEMPO_RELEASE = "tempo"
COLLECTOR_RELEASE = "otel-collector"
GRAFANA_RELEASE = "grafana"
# Named like the chart: its Services are <release>-vminsert, -vmselect, -vmstorage.
VICTORIA_METRICS_RELEASE = "victoria-metrics-cluster"

LOGS_NAMESPACE = "logging"
TRACES_NAMESPACE = "observability"

PROMETHEUS_PORT = 9090
ALERTMANAGER_PORT = 9093
ALERTMANAGER_CLUSTER_PORT = 9094  # the peers' gossip, TCP and UDP
# The operator's admission webhook (it validates PrometheusRules), called by the API server.
PROMETHEUS_OPERATOR_WEBHOOK_PORT = 10250
GRAFANA_PORT = 3000
# The gateway's nginx listens here; its Service maps port 80 to it. Policies see the pod's port.
LOKI_GATEWAY_PORT = 8080
SNMP_EXPORTER_PORT = 9116
BLACKBOX_EXPORTER_PORT = 9115
OTLP_GRPC_PORT = 4317
OTLP_HTTP_PORT = 4318
TEMPO_HTTP_PORT = 3200
VMINSERT_PORT = 8480
VMSELECT_PORT = 8481
VMSTORAGE_HTTP_PORT = 8482
# Where the charts' pods serve metrics, besides the ports above (their ServiceMonitors name them).
CONFIG_RELOADER_PORT = 8080  # the operator's reloader sidecar beside Prometheus and Alertmanager
KUBE_STATE_METRICS_PORTS = (8080, 8081)
LOKI_HTTP_PORT = 3100
LOKI_GATEWAY_EXPORTER_PORT = 4040
MEMCACHED_EXPORTER_PORT = 9150
# VictoriaMetrics cluster tenant (accountID) the stack writes to and reads from.
VM_TENANT = 0


@dataclass(frozen=True)
class Release:
    """A Helm release where it is installed."""

    name: str
    namespace: str

    def host(self, component: str = "") -> str:
        """DNS name of the release's Service `<release>[-<component>]`."""
        service = f"{self.name}-{component}" if component else self.name
        return f"{service}.{self.namespace}.svc.{CLUSTER_DOMAIN}"


INSTANCE_LABEL = "app.kubernetes.io/instance"


@dataclass(frozen=True)
class Workload:
    """Pods of the stack as a NetworkPolicy selects them: their namespace and labels."""

    name: str
    namespace: str
    labels: dict[str, str] = field(hash=False)


def release_pods(release: Release) -> Workload:
    """Every pod of a Helm release: the charts label them with the release's name."""
    return Workload(release.name, release.namespace, {INSTANCE_LABEL: release.name})


@dataclass(frozen=True)
class Endpoints:
    """The stack's releases in the namespaces the config gives them, and their addresses."""

    metrics_namespace: str
    grafana_namespace: str | None = None
    tempo_distributed: bool = False

    @property
    def kube_prometheus(self) -> Release:
        return Release(KUBE_PROMETHEUS_RELEASE, self.metrics_namespace)

    @property
    def snmp_exporter(self) -> Release:
        return Release(SNMP_EXPORTER_RELEASE, self.metrics_namespace)

    @property
    def blackbox_exporter(self) -> Release:
        return Release(BLACKBOX_EXPORTER_RELEASE, self.metrics_namespace)

    @property
    def loki(self) -> Release:
        return Release(LOKI_RELEASE, LOGS_NAMESPACE)

    @property
    def tempo(self) -> Release:
        return Release(TEMPO_RELEASE, TRACES_NAMESPACE)

    @property
    def collector(self) -> Release:
        return Release(COLLECTOR_RELEASE, TRACES_NAMESPACE)

    @property
    def victoria_metrics(self) -> Release:
        """The long-term store, beside Prometheus (metrics.longTerm)."""
        return Release(VICTORIA_METRICS_RELEASE, self.metrics_namespace)

    @property
    def grafana(self) -> Release | None:
        return Release(GRAFANA_RELEASE, self.grafana_namespace) if self.grafana_namespace else None

    # --- pods, as the walls between workloads select them (model/network_policies.py) ------

    @property
    def prometheus_pods(self) -> Workload:
        # The operator's pods carry no release label; these are the labels its Service selects on.
        return Workload("prometheus", self.metrics_namespace, {
            "app.kubernetes.io/name": "prometheus", "operator.prometheus.io/name": f"{KUBE_PROMETHEUS_RELEASE}-prometheus"})

    @property
    def alertmanager_pods(self) -> Workload:
        return Workload("alertmanager", self.metrics_namespace, {
            "app.kubernetes.io/name": "alertmanager", "alertmanager": f"{KUBE_PROMETHEUS_RELEASE}-alertmanager"})

    @property
    def prometheus_operator_pods(self) -> Workload:
        return Workload("prometheus-operator", self.metrics_namespace, {
            "app": f"{KUBE_PROMETHEUS_RELEASE}-operator", "release": KUBE_PROMETHEUS_RELEASE})

    @property
    def loki_gateway_pods(self) -> Workload:
        return Workload("loki-gateway", LOGS_NAMESPACE, {INSTANCE_LABEL: LOKI_RELEASE, "app.kubernetes.io/component": "gateway"})

    # --- addresses ------------------------------------------------------------------------

    @property
    def prometheus_url(self) -> str:
        return f"http://{self.kube_prometheus.host('prometheus')}:{PROMETHEUS_PORT}"

    @property
    def alertmanager_url(self) -> str:
        return f"http://{self.kube_prometheus.host('alertmanager')}:{ALERTMANAGER_PORT}"

    @property
    def long_term_write_url(self) -> str:
        """Prometheus' remote-write endpoint of vminsert."""
        return f"http://{self.victoria_metrics.host('vminsert')}:{VMINSERT_PORT}/insert/{VM_TENANT}/prometheus/api/v1/write"

    @property
    def long_term_query_url(self) -> str:
        """vmselect's Prometheus query API: Grafana's long-range data source, the quarterly report."""
        return f"http://{self.victoria_metrics.host('vmselect')}:{VMSELECT_PORT}/select/{VM_TENANT}/prometheus"

    @property
    def snmp_exporter_address(self) -> str:
        return f"{self.snmp_exporter.host()}:{SNMP_EXPORTER_PORT}"

    @property
    def blackbox_exporter_address(self) -> str:
        return f"{self.blackbox_exporter.host()}:{BLACKBOX_EXPORTER_PORT}"

    @property
    def loki_gateway_url(self) -> str:
        # The chart's nginx gateway routes pushes and queries to the right targets in every
        # mode, so writers (the collector) and readers (Grafana) need only this one address.
        return f"http://{self.loki.host('gateway')}"

    @property
    def loki_otlp_push_url(self) -> str:
        return f"{self.loki_gateway_url}/otlp"

    @property
    def tempo_otlp_endpoint(self) -> str:
        return f"{self.tempo.host('distributor' if self.tempo_distributed else '')}:{OTLP_GRPC_PORT}"

    @property
    def tempo_query_url(self) -> str:
        """Where Grafana's Tempo data source points."""
        return f"http://{self.tempo.host('query-frontend' if self.tempo_distributed else '')}:{TEMPO_HTTP_PORT}"

    @property
    def collector_otlp_endpoints(self) -> dict[str, str]:
        """What the API gateway sets as OTEL_EXPORTER_OTLP_ENDPOINT (the node-local hostPort also works)."""
        return {"grpc": f"http://{self.collector.host()}:{OTLP_GRPC_PORT}",
                "http": f"http://{self.collector.host()}:{OTLP_HTTP_PORT}"}
