"""The walls between workloads, asked of Cyclonus (a NetworkPolicy engine, built from the Go module
proxy by `make upstream`, pinned in upstream/cyclonus/) on the NetworkPolicies the program registers.

The flows below are written from the design, not read from model/network_policies.py: the pods are
the rendered charts' and the program's own, the scrape targets the rendered ServiceMonitors'.
Every needed flow must be allowed; every other pod must be denied Alertmanager, Prometheus,
Loki and Tempo.
"""

from __future__ import annotations

import json
import re
import subprocess
from functools import cache
from pathlib import Path

import pytest
import yaml

from model import network_policies
from tests.cluster_objects import Pod, chart_objects, own_objects, pods
from tests.configs import homelab_config
from tools import upstream

POLICY_TYPE = "kubernetes:networking.k8s.io/v1:NetworkPolicy"

# The operator's pods, with the labels prometheus-operator sets on them (its StatefulSets' templates).
OPERATOR_PODS = [
    Pod("prometheus", "monitoring", {
        "app.kubernetes.io/instance": "kube-prometheus-stack-prometheus", "app.kubernetes.io/managed-by": "prometheus-operator",
        "app.kubernetes.io/name": "prometheus", "operator.prometheus.io/name": "kube-prometheus-stack-prometheus",
        "operator.prometheus.io/shard": "0", "prometheus": "kube-prometheus-stack-prometheus"},
        {"http-web": (9090, "TCP"), "reloader-web": (8080, "TCP")}),
    Pod("alertmanager", "monitoring", {
        "app.kubernetes.io/instance": "kube-prometheus-stack-alertmanager", "app.kubernetes.io/managed-by": "prometheus-operator",
        "app.kubernetes.io/name": "alertmanager", "alertmanager": "kube-prometheus-stack-alertmanager"},
        {"http-web": (9093, "TCP"), "mesh-tcp": (9094, "TCP"), "mesh-udp": (9094, "UDP"), "reloader-web": (8080, "TCP")}),
]
# Pods the stack does not own: k3s' ingress controller, a tenant's workload, a stranger's.
TRAEFIK = Pod("traefik", "kube-system", {"app.kubernetes.io/name": "traefik", "app.kubernetes.io/instance": "traefik-kube-system"})
API_GATEWAY = Pod("api-gateway", "api-gateway", {"app": "api-gateway"})
STRANGER = Pod("jellyfin", "media", {"app.kubernetes.io/name": "jellyfin"})
PBS_HOST = "192.168.30.20"
NAS = "192.168.30.5"
CONTROL_PLANE = "192.168.30.10"
OUTSIDE_HOST = "192.168.30.99"


@cache
def cyclonus() -> str:
    upstream.put_on_path("walls")  # built by `make upstream`, like the other upstream tools
    return "cyclonus"


def _peer(source: Pod | str) -> dict:
    if isinstance(source, str):
        return {"IP": source}
    return {"Internal": {"PodLabels": source.labels, "Namespace": source.namespace,
                         "NamespaceLabels": {"kubernetes.io/metadata.name": source.namespace}}, "IP": "10.42.9.9"}


def ask(policies: list[dict], traffic: list[tuple[Pod | str, Pod, int, str]], tmp: Path) -> list[bool]:
    """Cyclonus' answer, per (source, destination pod, port, protocol): is the traffic allowed?"""
    (tmp / "policies").mkdir(exist_ok=True)
    (tmp / "policies" / "all.yaml").write_text(yaml.safe_dump(
        {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicyList", "items": policies}))
    (tmp / "traffic.json").write_text(json.dumps([
        {"Source": _peer(src), "Destination": _peer(dst), "ResolvedPort": port, "ResolvedPortName": "",
         "Protocol": protocol} for src, dst, port, protocol in traffic]))
    done = subprocess.run([cyclonus(), "analyze", "--mode", "query-traffic", "--policy-path", str(tmp / "policies"),
                           "--traffic-path", str(tmp / "traffic.json")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    answers = re.findall(r"IS ALLOWED\?\s*\|\s*(TRUE|FALSE)", done.stdout, re.IGNORECASE)
    assert len(answers) == len(traffic), done.stdout[-3000:]
    return [a.lower() == "true" for a in answers]


@pytest.fixture(scope="module")
def walls(stack_manifests):
    recording = stack_manifests.rendered.recording
    policies = [dict(r.inputs) for r in recording.of_type(POLICY_TYPE)]
    objects = chart_objects(stack_manifests) + own_objects(recording)
    cluster = pods(objects) | {p.name: p for p in OPERATOR_PODS}
    return policies, objects, cluster, stack_manifests.scale_out


def _scrape_targets(objects: list[dict], cluster: dict[str, Pod]) -> set[tuple[str, int, str]]:
    """(pod, port, protocol) of every target the rendered ServiceMonitors and PodMonitors name, among
    the pods policies can wall (not on the host's network)."""
    def selects(selector: dict, labels: dict) -> bool:
        return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())

    def namespaces(monitor: dict) -> set[str] | None:
        chosen = monitor["spec"].get("namespaceSelector") or {}
        return None if chosen.get("any") else set(chosen.get("matchNames") or [monitor["metadata"]["namespace"]])

    targets = set()
    services = [o for o in objects if o.get("kind") == "Service" and o["spec"].get("selector")]
    for monitor in (o for o in objects if o.get("kind") in ("ServiceMonitor", "PodMonitor")):
        where = namespaces(monitor)
        if monitor["kind"] == "PodMonitor":
            for pod in cluster.values():
                if (where is None or pod.namespace in where) and selects(monitor["spec"]["selector"], pod.labels):
                    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
                        targets.add((pod.name, *pod.ports[endpoint["port"]]))
            continue
        for service in services:
            if (where is not None and service["metadata"]["namespace"] not in where) or \
                    not selects(monitor["spec"]["selector"], service["metadata"].get("labels", {})):
                continue
            for pod in cluster.values():
                if pod.namespace != service["metadata"]["namespace"] or \
                        not all(pod.labels.get(k) == v for k, v in service["spec"]["selector"].items()):
                    continue
                for endpoint in monitor["spec"]["endpoints"]:
                    for port in service["spec"]["ports"]:
                        if endpoint.get("port") not in (port.get("name"), None) and endpoint.get("targetPort") != port.get("targetPort"):
                            continue
                        target = port.get("targetPort", port["port"])
                        number, protocol = pod.ports[target] if isinstance(target, str) else (target, "TCP")
                        targets.add((pod.name, number, protocol))
    return {(name, port, protocol) for name, port, protocol in targets if not cluster[name].host_network}


def needed_flows(cluster: dict[str, Pod], objects: list[dict], scale_out: bool) -> list[tuple[Pod | str, Pod, int, str]]:
    """Every flow the stack needs, from the design."""
    p = cluster
    loki_target = "loki-backend" if scale_out else "loki"
    tempo_query, tempo_push = ("tempo-query-frontend", "tempo-distributor") if scale_out else ("tempo", "tempo")
    flows = [
        (p["grafana"], p["prometheus"], 9090, "TCP"), (p["grafana"], p["alertmanager"], 9093, "TCP"),
        (p["grafana"], p["loki-gateway"], 8080, "TCP"), (p["grafana"], p[tempo_query], 3200, "TCP"),
        (p["prometheus"], p["alertmanager"], 9093, "TCP"),
        (p["alertmanager"], p["alertmanager"], 9094, "TCP"), (p["alertmanager"], p["alertmanager"], 9094, "UDP"),
        (p["otel-collector-agent"], p["loki-gateway"], 8080, "TCP"), (p["otel-collector-agent"], p[tempo_push], 4317, "TCP"),
        (p["loki-gateway"], p[loki_target], 3100, "TCP"),
        (TRAEFIK, p["grafana"], 3000, "TCP"), (TRAEFIK, p["runbook-hub"], 8080, "TCP"),
        (API_GATEWAY, p["otel-collector-agent"], 4317, "TCP"), (API_GATEWAY, p["otel-collector-agent"], 4318, "TCP"),
        (NAS, p["otel-collector-agent"], 1514, "UDP"), (NAS, p["otel-collector-agent"], 1514, "TCP"),
        (CONTROL_PLANE, p["kube-prometheus-stack-operator"], 10250, "TCP"),
        # The recovery service on the pbs host reads Prometheus (recovery.prometheusUrl is set).
        (PBS_HOST, p["prometheus"], 9090, "TCP"),
    ]
    if scale_out:
        flows += [(p["prometheus"], p["victoria-metrics-cluster-vminsert"], 8480, "TCP"),
                  (p["grafana"], p["victoria-metrics-cluster-vmselect"], 8481, "TCP"),
                  (p["pbs-report"], p["victoria-metrics-cluster-vmselect"], 8481, "TCP"),
                  (p["victoria-metrics-cluster-vminsert"], p["victoria-metrics-cluster-vmstorage"], 8400, "TCP"),
                  (p["victoria-metrics-cluster-vmselect"], p["victoria-metrics-cluster-vmstorage"], 8401, "TCP")]
    else:
        flows.append((p["pbs-report"], p["prometheus"], 9090, "TCP"))
    flows += [(p["prometheus"], p[name], port, protocol) for name, port, protocol in sorted(_scrape_targets(objects, cluster))]
    return flows


# The pods behind Alertmanager, Prometheus, Loki and Tempo, in either mode, and the ports they serve.
GUARDED = {"alertmanager": [(9093, "TCP"), (9094, "TCP"), (9094, "UDP")], "prometheus": [(9090, "TCP")],
           "loki-gateway": [(8080, "TCP")], "loki": [(3100, "TCP")], "tempo": [(3200, "TCP"), (4317, "TCP")],
           **{f"loki-{target}": [(3100, "TCP"), (9095, "TCP")] for target in ("read", "write", "backend")},
           "tempo-distributor": [(4317, "TCP")], "tempo-query-frontend": [(3200, "TCP")]}


def _same_release(source: Pod | str, target: Pod) -> bool:
    """Loki's and Tempo's components (gateway, caches, targets) talk among themselves by design."""
    instance = target.labels.get("app.kubernetes.io/instance")
    return isinstance(source, Pod) and instance is not None and source.labels.get("app.kubernetes.io/instance") == instance


def unwanted_flows(cluster: dict[str, Pod], needed: list) -> list[tuple[Pod | str, Pod, int, str]]:
    """Every other pod (and a host that is not the pbs host) to Alertmanager, Prometheus, Loki and Tempo."""
    wanted = {(s if isinstance(s, str) else s.name, d.name, port, proto) for s, d, port, proto in needed}
    sources = [STRANGER, API_GATEWAY, TRAEFIK, OUTSIDE_HOST, *cluster.values()]
    return [(s, cluster[target], port, proto) for target, ports in GUARDED.items() if target in cluster
            for port, proto in ports for s in sources
            if (s if isinstance(s, str) else s.name, target, port, proto) not in wanted
            and not (isinstance(s, Pod) and s.host_network) and not _same_release(s, cluster[target])]


def _describe(flow) -> str:
    source, target, port, protocol = flow
    return f"{source if isinstance(source, str) else source.namespace + '/' + source.name} -> " \
           f"{target.namespace}/{target.name}:{port}/{protocol}"


def test_every_flow_the_stack_needs_is_allowed(walls, tmp_path):
    policies, objects, cluster, scale_out = walls
    needed = needed_flows(cluster, objects, scale_out)
    answers = ask(policies, needed, tmp_path)
    assert [_describe(f) for f, allowed in zip(needed, answers) if not allowed] == []
    # The scrape targets are many, and every one of them is walled: they are asked, not assumed.
    assert len(_scrape_targets(objects, cluster)) >= 10


def test_every_other_pod_is_denied_alertmanager_prometheus_loki_and_tempo(walls, tmp_path):
    policies, objects, cluster, scale_out = walls
    unwanted = unwanted_flows(cluster, needed_flows(cluster, objects, scale_out))
    answers = ask(policies, unwanted, tmp_path)
    allowed_but_unwanted = [_describe(f) for f, allowed in zip(unwanted, answers) if allowed]
    assert allowed_but_unwanted == [], "\n".join(allowed_but_unwanted)
    # Grafana reads Loki through the authenticating gateway only, never Loki itself.
    loki = "loki-read" if scale_out else "loki"
    assert any(s is cluster["grafana"] and t.name == loki for s, t, _, _ in unwanted)


def test_without_the_policies_cyclonus_allows_everything(walls, tmp_path):
    """The engine is not denying by itself: the same question with no policy is answered yes."""
    _, _, cluster, _ = walls
    assert ask([], [(STRANGER, cluster["alertmanager"], 9093, "TCP")], tmp_path) == [True]


def test_every_namespace_the_stack_owns_denies_ingress_by_default(walls):
    policies, objects, cluster, _ = walls
    denies = {p["metadata"]["namespace"] for p in policies
              if p["metadata"]["name"] == network_policies.DEFAULT_DENY and p["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}}
    owned = {o["metadata"]["name"] for o in objects if o.get("kind") == "Namespace"}
    assert denies == owned and owned >= {"monitoring", "logging", "observability", "grafana"}


def _names(config) -> set[tuple[str, str]]:
    return {(m["metadata"]["namespace"], m["metadata"]["name"]) for m in network_policies.manifests(config)}


def test_each_flow_of_the_table_is_one_policy_and_goes_with_what_needs_it():
    config = homelab_config()
    assert len(_names(config)) == len(network_policies.namespaces(config)) + len(network_policies.flows(config))
    assert _names(config) - _names(homelab_config(lambda s: s.pop("reports"))) == {("monitoring", "allow-pbs-report-to-prometheus")}
    assert _names(config) - _names(homelab_config(lambda s: s.pop("traces"))) >= {
        ("observability", "default-deny-ingress"), ("logging", "allow-otel-collector-to-loki-gateway")}
