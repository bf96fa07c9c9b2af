"""Metrics beyond one node: an Alertmanager cluster, an HA Prometheus pair, long-term metrics on a
VictoriaMetrics cluster. The config refuses what cannot work, by key path; the values are checked
against what the real charts render (`helm template`, the session's stack_manifests: the homelab
stack keeps its single Prometheus and Alertmanager, the scale-out variant of tests/conftest.py
runs three Alertmanagers, two Prometheus and the long-term store)."""

from __future__ import annotations

import pytest

from model import long_term
from model.rules import long_term as long_term_rules
from model.config import Role
from model.facts.endpoints import VMINSERT_PORT, VMSELECT_PORT
from model.hosts import scheduling_for
from tests.configs import homelab_config, problems_of

LONG_TERM = {"storage": {"sizeGb": 100}}


def _metrics(**values):
    def change(sections):
        sections["metrics"].update(values)
    return change


def _scaled_out(sections):
    sections["logs"]["mode"] = "scalable"
    sections["logs"]["objectStorage"] = {"endpoint": "minio.home.arpa:9000",
                                         "buckets": {"chunks": "loki-chunks", "ruler": "loki-ruler"}}


@pytest.mark.parametrize("change, path, words", [
    (lambda s: s["metrics"]["alertmanager"].update(replicas=0), "metrics.alertmanager.replicas", "must be >= 1"),
    (lambda s: s["metrics"]["prometheus"].update(replicas=0), "metrics.prometheus.replicas", "must be >= 1"),
    (_metrics(longTerm={}), "metrics.longTerm.storage", "is required"),
    (_metrics(longTerm={"storage": {}}), "metrics.longTerm.storage.sizeGb", "is required"),
    (_metrics(longTerm={**LONG_TERM, "retention": "12m"}), "metrics.longTerm.retention", "must match"),
    (_metrics(longTerm={**LONG_TERM, "retention": "14w"}), "metrics.longTerm.retention",
     "not longer than metrics.prometheus.retention (100d)"),
    (_metrics(longTerm={**LONG_TERM, "replicationFactor": 3}), "metrics.longTerm.replicationFactor",
     "more than metrics.longTerm.vmstorageReplicas (2)"),
    (_metrics(longTerm={**LONG_TERM, "queue": {"capacity": 500}}), "metrics.longTerm.queue.maxSamplesPerSend",
     "<= metrics.longTerm.queue.capacity (500)"),
    (_metrics(longTerm={**LONG_TERM, "queue": {"minShards": 20}}), "metrics.longTerm.queue.minShards",
     "<= metrics.longTerm.queue.maxShards (10)"),
    (_scaled_out, "metrics.alertmanager.replicas", "must be >= 2 when the stack scales out (logs.mode scalable)"),
])
def test_bad_metrics_scale_out_config_names_the_key(change, path, words):
    problems = problems_of(change)
    assert path in problems, problems
    assert words in problems[path]


def test_the_homelab_default_is_one_of_each_and_no_long_term_store():
    cfg = homelab_config()
    assert (cfg.metrics.alertmanager.replicas, cfg.metrics.prometheus.replicas, cfg.metrics.long_term) == (1, 1, None)
    assert long_term.remote_write(cfg) == [] and long_term_rules.rule_groups(cfg) == []


def test_a_production_like_stack_with_an_alertmanager_cluster_is_valid():
    def change(sections):
        _scaled_out(sections)
        sections["metrics"]["alertmanager"]["replicas"] = 2
    assert homelab_config(change).metrics.alertmanager.replicas == 2


def test_remote_write_spec_is_the_prometheus_remote_write_in_the_operator_s_keys():
    cfg = homelab_config(_metrics(longTerm={**LONG_TERM, "queue": {"maxShards": 30, "batchSendDeadline": "10s"}}))
    [spec] = long_term.remote_write_spec(cfg)
    assert spec["queueConfig"] == {"capacity": 10000, "minShards": 1, "maxShards": 30, "maxSamplesPerSend": 2000,
                                   "batchSendDeadline": "10s"}
    assert spec["writeRelabelConfigs"] == [{"action": "labeldrop", "regex": "prometheus_replica"}]
    assert long_term.prometheus_remote_write([spec]) == long_term.remote_write(cfg)


# --- what the charts render ---------------------------------------------------------------

def _one(stack_manifests, kind, name=None):
    found = [obj for _, obj in stack_manifests.objects(kind) if name is None or obj["metadata"]["name"] == name]
    assert len(found) == 1, (kind, name, [o["metadata"]["name"] for o in found])
    return found[0]


def _matches(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    return all(labels.get(e["key"]) in e["values"] for e in selector.get("matchExpressions") or [] if e["operator"] == "In")


def test_alertmanager_runs_as_many_peers_as_configured_spread_over_the_metrics_hosts(stack_manifests):
    am = _one(stack_manifests, "Alertmanager")
    prom = _one(stack_manifests, "Prometheus")
    service = _one(stack_manifests, "Service", am["metadata"]["name"])
    # Prometheus sends to the Alertmanager Service's endpoints: every pod of the StatefulSet the operator peers.
    [target] = prom["spec"]["alerting"]["alertmanagers"]
    assert (target["name"], target["namespace"]) == (service["metadata"]["name"], service["metadata"]["namespace"])
    assert service["spec"]["selector"]["alertmanager"] == am["metadata"]["name"]
    if not stack_manifests.scale_out:
        assert am["spec"].get("replicas", 1) == 1 and prom["spec"].get("replicas", 1) == 1
        assert "remoteWrite" not in prom["spec"]
        return
    assert am["spec"]["replicas"] == 3
    # One metrics host: spread as far as it goes (preferred), never unschedulable (required).
    spread = am["spec"]["affinity"]["podAntiAffinity"]
    assert "requiredDuringSchedulingIgnoredDuringExecution" not in spread
    term = spread["preferredDuringSchedulingIgnoredDuringExecution"][0]["podAffinityTerm"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    assert _matches(term["labelSelector"], {"app.kubernetes.io/name": "alertmanager", "alertmanager": am["metadata"]["name"]})


def test_the_prometheus_pair_carries_a_replica_label_the_operator_drops_from_alerts(stack_manifests):
    prom = _one(stack_manifests, "Prometheus")
    if not stack_manifests.scale_out:
        assert "replicaExternalLabelName" not in prom["spec"]  # the operator's default, unused with one replica
        return
    assert prom["spec"]["replicas"] == 2
    assert prom["spec"]["replicaExternalLabelName"] == long_term.REPLICA_LABEL
    # Readers of the Service stick to one replica of the pair (failing over when it goes).
    [service] = [obj for _, obj in stack_manifests.objects("Service")
                 if obj["spec"].get("selector", {}).get("operator.prometheus.io/name") == prom["metadata"]["name"]]
    assert service["spec"]["sessionAffinity"] == "ClientIP"
    # The same label is dropped before the long-term store, so the pair writes one series.
    assert prom["spec"]["remoteWrite"][0]["writeRelabelConfigs"] == [{"action": "labeldrop", "regex": long_term.REPLICA_LABEL}]


def test_the_long_term_store_is_what_prometheus_writes_to_and_keeps_its_data_on_volumes(stack_manifests):
    releases = stack_manifests.releases
    if not stack_manifests.scale_out:
        assert "victoria-metrics-cluster" not in releases
        return
    prom = _one(stack_manifests, "Prometheus")
    [write] = prom["spec"]["remoteWrite"]
    ns = releases["victoria-metrics-cluster"].release.namespace
    vminsert = _one(stack_manifests, "Service", "victoria-metrics-cluster-vminsert")
    vmselect = _one(stack_manifests, "Service", "victoria-metrics-cluster-vmselect")
    assert write["url"].startswith(f"http://{vminsert['metadata']['name']}.{ns}.svc.cluster.local:{VMINSERT_PORT}/insert/0/")
    assert [p["port"] for p in vminsert["spec"]["ports"]] == [VMINSERT_PORT]
    assert [p["port"] for p in vmselect["spec"]["ports"]] == [VMSELECT_PORT]
    storage = _one(stack_manifests, "StatefulSet", "victoria-metrics-cluster-vmstorage")
    args = storage["spec"]["template"]["spec"]["containers"][0]["args"]
    assert "--retentionPeriod=2y" in args and "--dedup.minScrapeInterval=30s" in args
    [claim] = storage["spec"]["volumeClaimTemplates"]
    assert claim["metadata"]["name"] == long_term.VMSTORAGE_VOLUME
    assert claim["spec"]["resources"]["requests"]["storage"] == "100Gi" and claim["spec"]["storageClassName"] == "local-path"
    # Retain: the claims outlive the StatefulSet (and the release is protected in components/metrics.py).
    policy = storage["spec"].get("persistentVolumeClaimRetentionPolicy") or {}
    assert policy.get("whenDeleted", "Retain") == "Retain"
    nodes = [a for a in _one(stack_manifests, "Deployment", "victoria-metrics-cluster-vminsert")
             ["spec"]["template"]["spec"]["containers"][0]["args"] if a.startswith("--storageNode=")]
    assert len(nodes) == storage["spec"]["replicas"] == 2
    for name in ("vminsert", "vmselect", "vmstorage"):
        kind = "StatefulSet" if name == "vmstorage" else "Deployment"
        pod = _one(stack_manifests, kind, f"victoria-metrics-cluster-{name}")["spec"]["template"]
        assert pod["spec"]["nodeSelector"] == scheduling_for(Role.PROMETHEUS).node_selector()
        term = pod["spec"]["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]
        assert _matches(term["podAffinityTerm"]["labelSelector"], pod["metadata"]["labels"])
        assert not _matches(term["podAffinityTerm"]["labelSelector"],
                            {**pod["metadata"]["labels"], "app.kubernetes.io/component": "other"})
    pdb = _one(stack_manifests, "PodDisruptionBudget", "victoria-metrics-cluster-vmstorage")
    assert pdb["spec"]["maxUnavailable"] == 1
    assert _matches(pdb["spec"]["selector"], storage["spec"]["template"]["metadata"]["labels"])


# --- who reads the long-term store ------------------------------------------------------------

def test_grafana_gets_a_long_term_data_source_and_the_long_range_dashboards_read_it():
    from model.grafana.dashboards import load_dashboards, referenced_data_source_uids, render_dashboard
    from model.grafana.data_sources import data_sources
    from model.facts.links import LONG_RANGE_DASHBOARDS, LONG_TERM_METRICS_UID, PROMETHEUS_UID

    plain, with_store = homelab_config(), homelab_config(_metrics(longTerm=LONG_TERM))
    assert LONG_TERM_METRICS_UID not in {s["uid"] for s in data_sources(plain)}
    [source] = [s for s in data_sources(with_store) if s["uid"] == LONG_TERM_METRICS_UID]
    assert source["type"] == "prometheus"
    assert source["url"] == "http://victoria-metrics-cluster-vmselect.monitoring.svc.cluster.local:8481/select/0/prometheus"
    assert [s["uid"] for s in data_sources(with_store) if s.get("is_default")] == [PROMETHEUS_UID]
    dashboards = {d.uid: d for d in load_dashboards()}
    assert set(LONG_RANGE_DASHBOARDS) <= set(dashboards)
    for uid, dashboard in dashboards.items():
        before = referenced_data_source_uids(render_dashboard(dashboard, [], "https://hub"))
        after = referenced_data_source_uids(render_dashboard(dashboard, [], "https://hub", long_term=True))
        if uid in LONG_RANGE_DASHBOARDS:
            assert PROMETHEUS_UID in before and PROMETHEUS_UID not in after, uid
            assert after == (before - {PROMETHEUS_UID}) | {LONG_TERM_METRICS_UID}, uid
        else:
            assert after == before, uid


def test_the_quarterly_report_reads_the_long_term_store_when_there_is_one():
    from model.reports import report_settings

    assert report_settings(homelab_config(), "homelab")["prometheus_url"] == \
        "http://kube-prometheus-stack-prometheus.monitoring.svc.cluster.local:9090"
    assert report_settings(homelab_config(_metrics(longTerm=LONG_TERM)), "homelab")["prometheus_url"] == \
        "http://victoria-metrics-cluster-vmselect.monitoring.svc.cluster.local:8481/select/0/prometheus"


def test_with_a_long_term_store_the_report_needs_its_retention_not_prometheus():
    # A short local retention is fine once the report reads the store...
    cfg = homelab_config(_metrics(prometheus={"retention": "15d", "retentionSizeGb": 40, "storageGb": 50},
                                  longTerm={**LONG_TERM, "retention": "1y"}))
    assert cfg.metrics.long_term.retention == "1y"
    # ...whose own retention must then hold a quarter.
    problems = problems_of(_metrics(prometheus={"retention": "15d", "retentionSizeGb": 40, "storageGb": 50},
                                    longTerm={**LONG_TERM, "retention": "60d"}))
    assert problems == {"metrics.longTerm.retention": "must be at least 93d with reports: the quarterly report "
                                                      "reads a whole quarter from the long-term store"}
