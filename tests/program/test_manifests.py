"""What Helm will deploy (tools/manifests.py), checked as the API server and the operator would.

Every release of the homelab stack and of its scale-out variant (Loki simple-scalable, Tempo
distributed) is rendered once per session with the real charts of ../shared/charts and the
real Helm; the objects then go against Kubernetes 1.35's schemas (unknown fields rejected),
their CRDs' schemas, and what the program meant to deploy.
"""

from __future__ import annotations

import base64
import copy
import json
import re

import pytest
import yaml

from model.config import Role
from model.hosts import scheduling_for
from policy.manifests import containers, pod_spec
from tests.kubernetes_schemas import CustomResourceSchemas, crd_json_schema, kubernetes_error
from tests.shared_data import CHARTS
from tools import manifests

# Subcharts kube-prometheus-stack switches on, taken from their own directories of the chart mirror
# (its chart directory carries only `crds`).
KPS_SUBCHARTS = {"grafana", "kube-state-metrics", "prometheus-node-exporter"}
# Where each release's pods must run (the design: Grafana shares the metrics host, Tempo the Loki host).
RELEASE_HOSTS = {"kube-prometheus-stack": Role.PROMETHEUS, "prometheus-snmp-exporter": Role.PROMETHEUS,
                 "prometheus-blackbox-exporter": Role.PROMETHEUS,
                 "grafana": Role.PROMETHEUS, "loki": Role.LOKI, "tempo": Role.LOKI, "otel-collector": None}
# Only the scale-out variant has long-term metrics (metrics.longTerm): VictoriaMetrics beside Prometheus.
SCALE_OUT_ONLY = {"victoria-metrics-cluster": Role.PROMETHEUS}
# Scale-out Loki and Tempo spread over the cluster (model/logs.py): their read/write/backend pods
# carry hard anti-affinity per node, more replicas than there are Loki hosts.
SPREAD_IN_SCALE_OUT = {"loki", "tempo"}
# kube-prometheus-stack's Services for scraping cluster components live beside them.
FOREIGN_NAMESPACES = {"kube-prometheus-stack": {"kube-system"}}
WORKLOAD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob", "Pod", "Prometheus", "Alertmanager"}


def _crds(stack) -> CustomResourceSchemas:
    return CustomResourceSchemas([obj for _, obj in stack.objects("CustomResourceDefinition")])


def _label(release: str, obj: dict) -> str:
    return f"{release}: {obj['kind']} {obj['metadata'].get('name')}"


# --- rendering ------------------------------------------------------------------------------

def test_every_release_renders_with_its_recorded_chart_values_and_namespace(stack_manifests):
    recorded = {r.inputs["name"]: r.inputs for r in stack_manifests.rendered.recording.of_type(manifests.HELM_RELEASE_TYPE)}
    expected = set(RELEASE_HOSTS) | (set(SCALE_OUT_ONLY) if stack_manifests.scale_out else set())
    assert set(stack_manifests.releases) == set(recorded) == expected
    for name, rendered in stack_manifests.releases.items():
        inputs = recorded[name]
        assert (rendered.release.chart, rendered.release.version, rendered.release.namespace) == \
               (inputs["chart"], inputs["version"], inputs["namespace"])
        assert rendered.release.values == inputs["values"]
        assert rendered.manifests, name
        for m in rendered.manifests:
            namespace = m.object["metadata"].get("namespace")
            # Helm puts namespaced objects in the release's namespace; a few charts pin one explicitly.
            assert namespace in {None, inputs["namespace"]} | FOREIGN_NAMESPACES.get(name, set()), m.label
            assert m.source.startswith(f"{inputs['chart']}/"), m.label


def test_every_subchart_a_release_switches_on_is_rendered(stack_manifests):
    assert {name: [s.name for s in r.not_rendered] for name, r in stack_manifests.releases.items() if r.not_rendered} == {}
    index = json.loads((stack_manifests.rendered.out / "manifests" / "index.json").read_text())
    assert set(index["kube-prometheus-stack"]["vendored"]) == KPS_SUBCHARTS
    sources = {m.source.split("/templates/")[0] for m in stack_manifests.releases["kube-prometheus-stack"].manifests}
    # Grafana is its own release (grafana.enabled: false here); the other two run inside this one.
    assert {f"kube-prometheus-stack/charts/{sub}" for sub in KPS_SUBCHARTS} & sources == \
           {"kube-prometheus-stack/charts/kube-state-metrics", "kube-prometheus-stack/charts/prometheus-node-exporter"}
    # Switched off by our values: dropping them renders exactly what Helm renders.
    assert index["loki"]["droppedDisabled"] == ["minio", "rollout-operator"]


def test_a_subchart_missing_from_the_mirror_is_named_not_dropped(stack_manifests, tmp_path):
    mirror = tmp_path / "charts"
    mirror.mkdir()
    for chart in CHARTS.iterdir():
        if chart.name != "prometheus-node-exporter-4.56.1":
            (mirror / chart.name).symlink_to(chart)
    rendered = manifests.render(stack_manifests.releases["kube-prometheus-stack"].release, mirror)
    assert [(s.name, s.condition) for s in rendered.not_rendered] == [("prometheus-node-exporter", "nodeExporter.enabled")]
    assert "# NOT RENDERED: subchart prometheus-node-exporter 4.56.1 (switched on by nodeExporter.enabled)" \
        in manifests._header(rendered)
    assert manifests.index_of([rendered])["kube-prometheus-stack"]["notRendered"] == [
        {"subchart": "prometheus-node-exporter", "version": "4.56.1", "condition": "nodeExporter.enabled"}]
    assert not [m for m in rendered.manifests if "/charts/prometheus-node-exporter/" in m.source]
    assert [m for m in rendered.manifests if "/charts/kube-state-metrics/" in m.source]


def test_manifest_files_are_the_rendered_objects_with_a_header(stack_manifests):
    out = stack_manifests.rendered.out / "manifests"
    for name, rendered in stack_manifests.releases.items():
        text = (out / f"{name}.yaml").read_text()
        assert text.startswith(f"# Release {name}: chart {rendered.release.chart} {rendered.release.version}")
        # The CRDs are the chart's files verbatim; parsing megabytes of them again proves nothing.
        documents = [d for d in re.split(r"(?m)^---[ \t]*\n", text) if "\nkind: CustomResourceDefinition\n" not in d]
        docs = [d for d in (yaml.load(doc, Loader=manifests._Loader) for doc in documents) if d]
        assert docs == [o for o in rendered.objects if o["kind"] != "CustomResourceDefinition"]
        counts = json.loads((out / "index.json").read_text())[name]["objects"]
        assert sum(counts.values()) == len(rendered.objects) == len(docs) + counts.get("CustomResourceDefinition", 0)


def test_a_helm_failure_is_an_error_naming_the_release(tmp_path):
    broken = manifests.Release.of("loki", "loki", "18.11.0", None, "logging",
                                  {"deploymentMode": "Monolithic", "singleBinary": {"replicas": 1}})
    with pytest.raises(manifests.RenderError, match=r"release loki \(loki 18.11.0\) failed:\nError: "):
        manifests.render(broken)
    with pytest.raises(manifests.RenderError, match="no chart directory .*fetching .* is off"):
        manifests.render(manifests.Release.of("x", "no-such-chart", "1.0.0", "https://charts.example", "x", {}))


def test_condition_of_a_dependency_follows_helm():
    assert manifests.condition_holds("a.enabled", {"a": {"enabled": False}}) is False
    assert manifests.condition_holds("a.enabled,b.enabled", {"b": {"enabled": False}}) is False
    assert manifests.condition_holds("a.enabled", {}) is True
    assert manifests.condition_holds(None, {}) is True


# --- Kubernetes and CRD schemas -------------------------------------------------------------

def test_every_builtin_object_is_valid_kubernetes_1_35_without_unknown_fields(stack_manifests):
    crds = _crds(stack_manifests)
    problems = [f"{_label(release, obj)}: {error}" for release, obj in stack_manifests.objects()
                if (obj["apiVersion"], obj["kind"]) not in crds.validators
                and (error := kubernetes_error(obj))]
    assert problems == [], "\n".join(problems)


def test_every_custom_resource_matches_its_crd_from_the_charts(stack_manifests):
    crds = _crds(stack_manifests)
    custom = [(release, obj) for release, obj in stack_manifests.objects() if "." in obj["apiVersion"].split("/")[0]
              and obj["kind"] != "CustomResourceDefinition" and (obj["apiVersion"], obj["kind"]) in crds.validators]
    assert {obj["kind"] for _, obj in custom} >= {"Prometheus", "Alertmanager", "PrometheusRule", "ServiceMonitor"}
    problems = [f"{_label(release, obj)}: {error}" for release, obj in custom for error in crds.errors(obj)]
    assert problems == [], "\n".join(problems)


def test_strict_kubernetes_schema_rejects_an_unknown_field(stack_manifests):
    _, deployment = stack_manifests.objects("Deployment")[0]
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["resource"] = {}
    assert "'resource' was unexpected" in kubernetes_error(typo)
    assert "Unknown" in kubernetes_error({"apiVersion": "example.com/v1", "kind": "Unknown", "metadata": {}})


def test_crd_schema_rejects_unknown_fields_and_keeps_what_the_server_keeps(stack_manifests):
    crds = _crds(stack_manifests)
    _, prometheus = stack_manifests.objects("Prometheus")[0]
    assert crds.errors(prometheus) == []
    typo = copy.deepcopy(prometheus)
    typo["spec"]["retentionn"] = "1d"
    assert any("'retentionn' was unexpected" in e for e in crds.errors(typo))
    typo = copy.deepcopy(prometheus)
    typo["metadata"]["labelz"] = {}
    assert any("'labelz' was unexpected" in e for e in crds.errors(typo))
    _, monitor = stack_manifests.objects("ServiceMonitor")[0]
    wrong = copy.deepcopy(monitor)
    wrong["spec"]["endpoints"][0]["port"] = 8080
    assert any("8080 is not of type 'string'" in e for e in crds.errors(wrong))


CRD_SCHEMA = {
    "type": "object",
    "properties": {
        "spec": {"type": "object", "properties": {
            "port": {"x-kubernetes-int-or-string": True, "anyOf": [{"type": "integer"}, {"type": "string"}]},
            "note": {"type": "string", "nullable": True},
            "extra": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"],
                      "items": {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}},
            "template": {"type": "object", "x-kubernetes-embedded-resource": True,
                         "x-kubernetes-preserve-unknown-fields": True},
        }},
    },
}


def _check(spec: dict) -> list[str]:
    crd = {"spec": {"group": "example.com", "names": {"kind": "Thing"},
                    "versions": [{"name": "v1", "served": True, "schema": {"openAPIV3Schema": CRD_SCHEMA}}]}}
    return CustomResourceSchemas([crd]).errors(
        {"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "a"}, "spec": spec})


def test_crd_keywords_mean_what_they_mean_to_the_api_server():
    assert _check({"port": 8080, "note": None, "extra": {"anything": [1]}, "labels": {"a": "b"},
                   "tags": ["a", "b"], "ports": [{"name": "http"}],
                   "template": {"apiVersion": "v1", "kind": "Pod", "metadata": {}, "spec": {}}}) == []
    assert _check({"port": "http", "tags": None}) == []  # the server prunes a null it does not allow
    assert any("not valid under any" in e for e in _check({"port": 1.5}))
    assert any("'other' was unexpected" in e for e in _check({"other": 1}))
    assert any("not of type 'string'" in e for e in _check({"labels": {"a": 1}}))
    assert any("non-unique" in e for e in _check({"tags": ["a", "a"]}))
    assert any("duplicate entry for {'name': 'http'}" in e for e in _check({"ports": [{"name": "http"}] * 2}))
    with pytest.raises(ValueError, match="x-kubernetes-something"):
        crd_json_schema({"type": "object", "x-kubernetes-something": True})


# --- what the program meant -----------------------------------------------------------------

def test_alertmanager_gets_exactly_the_rendered_alertmanager_yml(stack_manifests):
    [secret] = [obj for release, obj in stack_manifests.objects("Secret")
                if release == "kube-prometheus-stack" and "alertmanager.yaml" in (obj.get("data") or {})]
    deployed = yaml.safe_load(base64.b64decode(secret["data"]["alertmanager.yaml"]))
    assert deployed == stack_manifests.rendered.yaml("alertmanager/alertmanager.yml")
    [alertmanager] = [obj for _, obj in stack_manifests.objects("Alertmanager")]
    assert alertmanager["spec"].get("configSecret") in (None, secret["metadata"]["name"])


def test_prometheus_rules_carry_our_rule_files_untemplated_and_no_alert_twice(stack_manifests):
    rules = {obj["metadata"]["name"]: obj for release, obj in stack_manifests.objects("PrometheusRule")}
    ours = stack_manifests.rendered.rule_files
    assert ours
    for path in ours:
        rule = rules[f"kube-prometheus-stack-{path.stem}"]
        # Helm must not have evaluated our {{ $labels }} / {{ $value }} annotations.
        assert rule["spec"] == yaml.safe_load(path.read_text()), path.name
    assert any("{{ $value" in path.read_text() or "{{ $labels" in path.read_text() for path in ours)
    # An alert is its name and static labels: severity tiers of one name are distinct alerts.
    alerts = [(r["alert"], json.dumps(r.get("labels") or {}, sort_keys=True), name)
              for name, obj in rules.items() for g in obj["spec"]["groups"] for r in g.get("rules") or []
              if "alert" in r]
    assert len(alerts) > 20
    identities = [(a, labels) for a, labels, _ in alerts]
    assert sorted({i for i in identities if identities.count(i) > 1}) == []
    # No alert name both from the chart's defaults and from our rule files (REPLACED_CHART_RULES).
    ours = {f"kube-prometheus-stack-{p.stem}" for p in stack_manifests.rendered.rule_files}
    from_chart = {a for a, _, name in alerts if name not in ours}
    assert sorted(from_chart & {a for a, _, name in alerts if name in ours}) == []
    assert all(g.get("rules") for obj in rules.values() for g in obj["spec"]["groups"]), "empty rule group"


def _tolerates(tolerations: list[dict], taint: dict) -> bool:
    for t in tolerations or []:
        if t.get("operator") == "Exists" and t.get("key") in (None, taint["key"]):
            return True
        if t.get("key") == taint["key"] and t.get("value") == taint["value"] and t.get("effect") in (None, taint["effect"]):
            return True
    return False


def test_every_workload_has_requests_limits_and_runs_on_its_observability_host(stack_manifests):
    taint = scheduling_for(Role.PROMETHEUS).taint
    problems = []
    workloads = [(release, obj) for release, obj in stack_manifests.objects() if obj["kind"] in WORKLOAD_KINDS]
    assert {obj["kind"] for _, obj in workloads} >= {"Deployment", "StatefulSet", "DaemonSet", "Job", "Prometheus"}
    for release, obj in workloads:
        spec = pod_spec(obj) if pod_spec(obj) is not None else obj["spec"]
        where = _label(release, obj)
        if obj["kind"] in ("Prometheus", "Alertmanager"):
            resources = [("spec", obj["spec"].get("resources") or {})]
        else:
            resources = [(path, c.get("resources") or {}) for path, c in containers(obj)]
        for path, r in resources:
            missing = [k for k in ("cpu", "memory") if not (r.get("requests") or {}).get(k)]
            missing += [] if (r.get("limits") or {}).get("memory") else ["limits.memory"]
            if missing:
                problems.append(f"{where} {path}: no {', '.join(missing)}")
        role = {**RELEASE_HOSTS, **SCALE_OUT_ONLY}[release]
        if stack_manifests.scale_out and release in SPREAD_IN_SCALE_OUT:
            role = None
            if spec.get("nodeSelector") and not _tolerates(spec.get("tolerations"), taint):
                problems.append(f"{where}: selects nodes {spec['nodeSelector']} it cannot land on (taint)")
            continue
        if not _tolerates(spec.get("tolerations"), taint):
            problems.append(f"{where}: does not tolerate the observability taint")
        if obj["kind"] == "DaemonSet" or role is None:
            continue  # runs on every node it tolerates
        if spec.get("nodeSelector") != scheduling_for(role).node_selector():
            problems.append(f"{where}: nodeSelector {spec.get('nodeSelector')}, not the {role.value} host's")
    assert problems == [], "\n".join(problems)


def _selects(selector: dict | None, labels: dict) -> bool:
    """A Kubernetes label selector (matchLabels and matchExpressions) applied to labels."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:
        value, present = labels.get(e["key"]), e["key"] in labels
        if {"In": not (present and value in e.get("values", [])),
            "NotIn": present and value in e.get("values", []),
            "Exists": not present, "DoesNotExist": present}[e["operator"]]:
            return False
    return True


def test_prometheus_selects_every_service_monitor_and_rule_and_each_monitor_finds_its_service(stack_manifests):
    [(_, prometheus)] = stack_manifests.objects("Prometheus")
    spec, home = prometheus["spec"], prometheus["metadata"]["namespace"]
    namespaces = {r.inputs["metadata"]["name"]: r.inputs["metadata"].get("labels") or {}
                  for r in stack_manifests.rendered.recording.of_type("kubernetes:core/v1:Namespace")}

    def selected(obj: dict, selector_key: str, namespace_key: str) -> bool:
        namespace = obj["metadata"]["namespace"]
        ns_selector = spec.get(namespace_key)
        in_namespace = namespace == home if ns_selector is None else \
            _selects(ns_selector, {"kubernetes.io/metadata.name": namespace, **namespaces.get(namespace, {})})
        return in_namespace and _selects(spec.get(selector_key), obj["metadata"].get("labels") or {})

    monitors = stack_manifests.objects("ServiceMonitor")
    assert {release for release, _ in monitors} >= {"kube-prometheus-stack", "loki", "tempo", "otel-collector"}
    services = [obj for _, obj in stack_manifests.objects("Service")]
    problems = []
    for release, monitor in monitors:
        where = _label(release, monitor)
        if not selected(monitor, "serviceMonitorSelector", "serviceMonitorNamespaceSelector"):
            problems.append(f"{where}: not selected by Prometheus")
        ns_selector = monitor["spec"].get("namespaceSelector") or {}
        targets = ns_selector.get("matchNames") or [monitor["metadata"]["namespace"]]
        if not set(targets) <= set(namespaces) | {"monitoring"}:
            continue  # cluster services (kubelet, apiserver, CoreDNS) that no release renders
        found = [s for s in services if s["metadata"].get("namespace") in targets
                 and _selects(monitor["spec"]["selector"], s["metadata"].get("labels") or {})]
        ports = {p.get("name") for s in found for p in s["spec"].get("ports", [])}
        wanted = {e.get("port") for e in monitor["spec"]["endpoints"] if e.get("port")}
        if not found or not wanted <= ports:
            problems.append(f"{where}: selects no Service with port(s) {sorted(wanted)}")
    for release, rule in stack_manifests.objects("PrometheusRule"):
        if not selected(rule, "ruleSelector", "ruleNamespaceSelector"):
            problems.append(f"{_label(release, rule)}: not selected by Prometheus")
    assert problems == [], "\n".join(problems)
