"""The walls between workloads: NetworkPolicies derived from the stack's own flows.

Every namespace the stack owns denies all ingress; FLOWS then lets through exactly the
traffic the stack needs, one NetworkPolicy per flow, in the namespace of the pods it opens.
The pods and ports come from model/facts/endpoints.py (the same table the clients' URLs come
from), so a flow written once here is the one place that traffic is allowed: adding a flow
adds its policy, moving a release moves its walls.

Pods on the host's network (node-exporter) are out of any NetworkPolicy's reach; the kubelet's
probes come from the node itself, which k3s' policy controller (kube-router) lets through.
Only ingress is walled: where the stack's pods may call out to (the pbs host, PagerDuty) is
routing and firewall business, not the cluster's.
Pure: plain dicts, no Pulumi.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from ipaddress import ip_network

from model import reports, runbook_hub
from model.config import StackConfig
from model.facts.endpoints import (ALERTMANAGER_CLUSTER_PORT, ALERTMANAGER_PORT, BLACKBOX_EXPORTER_PORT,
                                   CONFIG_RELOADER_PORT, GRAFANA_PORT, KUBE_STATE_METRICS_PORTS,
                                   LOKI_GATEWAY_EXPORTER_PORT, LOKI_GATEWAY_PORT, LOKI_HTTP_PORT,
                                   MEMCACHED_EXPORTER_PORT, OTLP_GRPC_PORT, OTLP_HTTP_PORT,
                                   PROMETHEUS_OPERATOR_WEBHOOK_PORT, PROMETHEUS_PORT, SNMP_EXPORTER_PORT,
                                   TEMPO_HTTP_PORT, VMINSERT_PORT, VMSELECT_PORT, VMSTORAGE_HTTP_PORT, Workload,
                                   release_pods)
from model.values.traces import COLLECTOR_METRICS_PORT, SPAN_METRICS_PORT

NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"  # set by the API server on every namespace
DEFAULT_DENY = "default-deny-ingress"

# k3s deploys Traefik, the cluster's ingress controller, in kube-system with this label.
INGRESS_CONTROLLER = Workload("traefik", "kube-system", {"app.kubernetes.io/name": "traefik"})


@dataclass(frozen=True)
class Port:
    number: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class Peer:
    """Who a flow comes from: pods (of a workload, or any pod of the cluster) or addresses."""

    name: str
    workload: Workload | None = None
    cidrs: tuple[str, ...] = ()
    any_pod: bool = False

    def rules(self) -> list[dict]:
        if self.any_pod:
            return [{"namespaceSelector": {}}]
        if self.workload:
            return [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: self.workload.namespace}},
                     "podSelector": {"matchLabels": dict(self.workload.labels)}}]
        return [{"ipBlock": {"cidr": cidr}} for cidr in self.cidrs]


@dataclass(frozen=True)
class Flow:
    """Traffic the stack needs: from a peer to a workload's ports (no ports: every port)."""

    source: Peer
    target: Workload
    ports: tuple[Port, ...] = field(default=())
    why: str = ""

    @property
    def name(self) -> str:
        return f"allow-{self.source.name}-to-{self.target.name}"


def _tcp(*numbers: int) -> tuple[Port, ...]:
    return tuple(Port(n) for n in numbers)


def _pods(workload: Workload) -> Peer:
    return Peer(workload.name, workload=workload)


def _host(name: str, address) -> Peer:
    return Peer(name, cidrs=(str(ip_network(address)),))


def namespaces(cfg: StackConfig) -> list[str]:
    """Every namespace the stack creates (and so walls)."""
    endpoints = cfg.endpoints()
    found = [endpoints.kube_prometheus.namespace]
    if cfg.logs:
        found.append(endpoints.loki.namespace)
    if cfg.traces:
        found.append(endpoints.tempo.namespace)
    if endpoints.grafana:
        found.append(endpoints.grafana.namespace)
    return list(dict.fromkeys(found))


def scrape_ports(cfg: StackConfig) -> dict[str, tuple[int, ...]]:
    """Namespace -> the ports Prometheus scrapes there (the charts' metrics ports), and no other."""
    e = cfg.endpoints()
    ports: dict[str, set[int]] = {ns: set() for ns in namespaces(cfg)}
    ports[e.kube_prometheus.namespace] |= {PROMETHEUS_PORT, ALERTMANAGER_PORT, CONFIG_RELOADER_PORT,
                                           *KUBE_STATE_METRICS_PORTS, PROMETHEUS_OPERATOR_WEBHOOK_PORT,
                                           SNMP_EXPORTER_PORT, BLACKBOX_EXPORTER_PORT}
    if cfg.metrics.long_term:
        ports[e.victoria_metrics.namespace] |= {VMINSERT_PORT, VMSELECT_PORT, VMSTORAGE_HTTP_PORT}
    if cfg.logs:
        ports[e.loki.namespace] |= {LOKI_HTTP_PORT, LOKI_GATEWAY_EXPORTER_PORT, MEMCACHED_EXPORTER_PORT}
    if cfg.traces:
        ports[e.tempo.namespace] |= {TEMPO_HTTP_PORT, MEMCACHED_EXPORTER_PORT, COLLECTOR_METRICS_PORT, SPAN_METRICS_PORT}
    if e.grafana:
        ports[e.grafana.namespace] |= {GRAFANA_PORT}
    return {ns: tuple(sorted(p)) for ns, p in ports.items()}


def flows(cfg: StackConfig) -> list[Flow]:
    """The one table of the traffic the stack needs inside the cluster."""
    e = cfg.endpoints()
    prometheus = _pods(e.prometheus_pods)
    grafana = _pods(release_pods(e.grafana)) if e.grafana else None
    collector = _pods(release_pods(e.collector)) if cfg.traces else None
    traefik = _pods(INGRESS_CONTROLLER)
    found: list[Flow] = []

    def add(source: Peer | None, target: Workload, ports: tuple[Port, ...] = (), why: str = "") -> None:
        if source is not None:
            found.append(Flow(source, target, ports, why))

    # Prometheus scrapes the stack's pods on their metrics ports; which pod, the ServiceMonitors say.
    for namespace, ports in scrape_ports(cfg).items():
        add(prometheus, Workload(f"{namespace}-pods", namespace, {}), _tcp(*ports), "scrapes the stack's own targets")
    add(prometheus, e.alertmanager_pods, _tcp(ALERTMANAGER_PORT), "sends alerts")
    add(Peer("alertmanager-peers", workload=e.alertmanager_pods), e.alertmanager_pods,
        (Port(ALERTMANAGER_CLUSTER_PORT), Port(ALERTMANAGER_CLUSTER_PORT, "UDP")), "gossip silences and notifications")
    add(Peer("kube-apiserver", cidrs=("0.0.0.0/0",)), e.prometheus_operator_pods, _tcp(PROMETHEUS_OPERATOR_WEBHOOK_PORT),
        "the API server calls the operator's admission webhook from a control-plane address the stack does not know")
    add(grafana, e.prometheus_pods, _tcp(PROMETHEUS_PORT), "Prometheus data source")
    add(grafana, e.alertmanager_pods, _tcp(ALERTMANAGER_PORT), "Alertmanager data source")
    if cfg.reports:
        report = Workload(reports.NAME, e.kube_prometheus.namespace, {"app.kubernetes.io/name": reports.NAME})
        # The report reads the long-term store when there is one (model/reports.py prometheus_url).
        if cfg.metrics.long_term:
            add(_pods(report), release_pods(e.victoria_metrics), _tcp(VMSELECT_PORT), "the quarterly report's queries")
        else:
            add(_pods(report), e.prometheus_pods, _tcp(PROMETHEUS_PORT), "the quarterly report's queries")
    if cfg.recovery and cfg.recovery.prometheus_url:
        name = cfg.placement("recovery")
        add(_host(name, cfg.hosts[name].address), e.prometheus_pods, _tcp(PROMETHEUS_PORT),
            "the recovery service reads Loki's compactor health")
    if cfg.metrics.long_term:
        vm = release_pods(e.victoria_metrics)
        add(prometheus, vm, _tcp(VMINSERT_PORT), "remote write")
        add(grafana, vm, _tcp(VMSELECT_PORT), "long-term data source")
        add(_pods(vm), vm, why="vminsert and vmselect reach vmstorage")
    if cfg.logs:
        loki = release_pods(e.loki)
        add(_pods(loki), loki, why="the gateway, Loki's targets and caches talk among themselves")
        add(collector, e.loki_gateway_pods, _tcp(LOKI_GATEWAY_PORT), "pushes logs (OTLP)")
        add(grafana, e.loki_gateway_pods, _tcp(LOKI_GATEWAY_PORT), "Loki data sources")
    if cfg.traces:
        tempo = release_pods(e.tempo)
        add(_pods(tempo), tempo, why="Tempo's components talk among themselves")
        add(collector, tempo, _tcp(OTLP_GRPC_PORT), "pushes spans")
        add(grafana, tempo, _tcp(TEMPO_HTTP_PORT), "Tempo data source")
        # The collector is the cluster's entry point for telemetry: every workload may push to it.
        add(Peer("any-pod", any_pod=True), release_pods(e.collector), _tcp(OTLP_GRPC_PORT, OTLP_HTTP_PORT),
            "workloads push spans and logs")
        syslog = cfg.logs.sources.syslog if cfg.logs else None
        if syslog:
            add(Peer("site-network", cidrs=(str(cfg.network.cidr),)), release_pods(e.collector),
                tuple(Port(syslog.port, t.upper()) for t in syslog.transports), "the NAS' syslog on the hostPort")
    if grafana:
        add(traefik, release_pods(e.grafana), _tcp(GRAFANA_PORT), "Grafana's ingress")
    if cfg.site.runbook_hub.serve:
        hub = Workload(runbook_hub.NAME, e.kube_prometheus.namespace, runbook_hub.labels())
        add(traefik, hub, _tcp(runbook_hub.PORT), "the runbook hub's ingress")
    return found


def _metadata(name: str, namespace: str) -> dict:
    return {"name": name, "namespace": namespace, "labels": {"app.kubernetes.io/managed-by": "homelab-observability"}}


def policy(flow: Flow) -> dict:
    rule: dict = {"from": flow.source.rules()}
    if flow.ports:
        rule["ports"] = [{"port": p.number, "protocol": p.protocol} for p in flow.ports]
    return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": _metadata(flow.name, flow.target.namespace),
            "spec": {"podSelector": {"matchLabels": dict(flow.target.labels)}, "policyTypes": ["Ingress"],
                     "ingress": [rule]}}


def manifests(cfg: StackConfig) -> list[dict]:
    """Every NetworkPolicy of the stack: a default deny per namespace, then one per flow."""
    deny = [{"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy", "metadata": _metadata(DEFAULT_DENY, ns),
             "spec": {"podSelector": {}, "policyTypes": ["Ingress"]}} for ns in namespaces(cfg)]
    allow = [policy(flow) for flow in flows(cfg)]
    names = [(m["metadata"]["namespace"], m["metadata"]["name"]) for m in deny + allow]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise ValueError(f"two flows would write the same NetworkPolicy: {duplicated}")
    return deny + allow


def in_namespace(cfg: StackConfig, namespace: str) -> list[dict]:
    return [m for m in manifests(cfg) if m["metadata"]["namespace"] == namespace]
