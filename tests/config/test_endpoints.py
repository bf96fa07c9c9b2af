"""Service addresses follow the namespaces and releases that create them (model/endpoints.py).

The homelab stack is rendered with every configurable location moved: metrics.namespace,
grafana.namespace, grafana.url and site.runbookHubUrl. Every in-cluster address anywhere in
what the program registers must then name a Service of a release in the namespace that
release is installed in, and every consumer (Grafana's data sources, the scrape configs, the
collector's exporters, the Grafana provider, the alerts' links) must use the new places.
"""

from __future__ import annotations

import json
import re
from urllib.parse import urlparse

import pytest

from tests.stacks import write_stack
from tools.offline_engine import run_program

RELEASE = "kubernetes:helm.sh/v3:Release"
NAMESPACE = "kubernetes:core/v1:Namespace"
DATA_SOURCE = "grafana:oss/dataSource:DataSource"
GRAFANA_PROVIDER = "pulumi:providers:grafana"

METRICS_NS, GRAFANA_NS = "obs-metrics", "obs-dashboards"
GRAFANA_URL, HUB = "https://dash.lab.example", "https://git.lab.example/ops/runbooks-repo"
# <service>.<namespace>.svc[.cluster.local][:port]
IN_CLUSTER = re.compile(r"\b([a-z0-9]([a-z0-9-]*[a-z0-9])?)\.([a-z0-9-]+)\.svc(\.cluster\.local)?\b")


def _move(cfg: dict) -> None:
    cfg["metrics"]["namespace"] = METRICS_NS
    cfg["grafana"]["namespace"] = GRAFANA_NS
    cfg["grafana"]["url"] = GRAFANA_URL
    cfg["site"]["runbookHubUrl"] = HUB


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    return run_program(write_stack(tmp_path_factory.mktemp("stack"), _move))


def _text(recording) -> str:
    """Everything the program hands the engine: every resource's inputs and the stack's outputs."""
    return json.dumps([[recording.raw_inputs[r.urn] for r in recording.resources], recording.outputs])


def _releases(recording) -> dict[str, str]:
    return {r.inputs["name"]: r.inputs["namespace"] for r in recording.of_type(RELEASE)}


def test_every_in_cluster_address_names_a_release_in_its_namespace(moved):
    releases = _releases(moved)
    assert releases["kube-prometheus-stack"] == METRICS_NS and releases["grafana"] == GRAFANA_NS
    namespaces = {r.inputs["metadata"]["name"] for r in moved.of_type(NAMESPACE)}
    assert set(releases.values()) <= namespaces, "every release's namespace is created by the stack"
    hosts = {(m.group(1), m.group(3)) for m in IN_CLUSTER.finditer(_text(moved))}
    assert len(hosts) >= 6
    for service, namespace in hosts:
        owners = [r for r in releases if service == r or service.startswith(f"{r}-")]
        assert owners, f"{service}.{namespace}: no release creates this Service"
        owner = max(owners, key=len)
        assert releases[owner] == namespace, f"{service} is in {releases[owner]}, not {namespace}"
    assert "monitoring.svc" not in _text(moved), "an address still points at the default namespace"


def test_grafana_reads_the_moved_prometheus_and_alertmanager(moved):
    urls = {r.inputs["uid"]: r.inputs["url"] for r in moved.of_type(DATA_SOURCE)}
    assert urlparse(urls["prometheus"]).hostname.startswith(f"kube-prometheus-stack-prometheus.{METRICS_NS}.svc")
    assert urlparse(urls["alertmanager"]).hostname.startswith(f"kube-prometheus-stack-alertmanager.{METRICS_NS}.svc")
    assert {urlparse(u).hostname.split(".")[1] for u in urls.values()} == {METRICS_NS, "logging", "observability"}


def test_scrape_configs_and_collector_exporters_follow(moved):
    values = {r.inputs["name"]: r.inputs["values"] for r in moved.of_type(RELEASE)}
    scrape = values["kube-prometheus-stack"]["prometheus"]["prometheusSpec"]["additionalScrapeConfigs"]
    exporters_scraped = {(job["job_name"].split("-")[0], r["replacement"]) for job in scrape
                         for r in job.get("relabel_configs", []) if r.get("target_label") == "__address__"}
    assert {kind for kind, _ in exporters_scraped} == {"snmp", "probe", "pve"}
    # The PVE exporter runs on the pbs host, outside the cluster: no namespace to follow.
    assert ("pve", "192.168.30.20:9221") in exporters_scraped
    for kind, address in exporters_scraped - {("pve", "192.168.30.20:9221")}:
        release = {"snmp": "prometheus-snmp-exporter", "probe": "prometheus-blackbox-exporter"}[kind]
        assert address.startswith(f"{release}.{METRICS_NS}.svc"), address
    exporters = values["otel-collector"]["config"]["exporters"]
    releases = _releases(moved)
    targets = [e["endpoint"] for name, e in exporters.items() if name.startswith(("otlp/", "otlphttp/"))]
    assert len(targets) >= 3
    for target in targets:
        service, namespace = IN_CLUSTER.search(target).group(1, 3)
        assert releases[service.split("-")[0]] == namespace, target


def test_grafana_provider_and_alert_links_follow(moved):
    provider = next(r for r in moved.of_type(GRAFANA_PROVIDER))
    assert moved.raw_inputs[provider.urn]["url"] == GRAFANA_URL
    grafana = next(r for r in moved.of_type(RELEASE) if r.inputs["name"] == "grafana")
    assert grafana.inputs["values"]["ingress"]["hosts"] == [urlparse(GRAFANA_URL).hostname]
    rules = next(r for r in moved.of_type(RELEASE) if r.inputs["name"] == "kube-prometheus-stack")
    alerts = [rule for doc in rules.inputs["values"]["additionalPrometheusRulesMap"].values()
              for group in doc["groups"] for rule in group["rules"] if "alert" in rule]
    assert alerts
    for rule in alerts:
        assert rule["annotations"]["runbook_url"] == f"{HUB}/runbooks/{rule['alert']}.md"
        assert f"{GRAFANA_URL}/d/" in rule["annotations"]["dashboard_url"], rule["alert"]
