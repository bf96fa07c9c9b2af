"""The metrics component on the mock engine: releases, their values, scrape configs, secrets."""

from __future__ import annotations


import pytest

from tests.stacks import homelab_sections
import yaml

from model.config import Role
from model.hosts import scheduling_for
from tests.conftest import run_tool
from tests.shared_data import CHARTS

RELEASE = "kubernetes:helm.sh/v3:Release"


def _release(homelab, name):
    return next(r for r in homelab.recording.of_type(RELEASE) if r.inputs["name"] == name)


# Subcharts whose own values.yaml is not in shared/charts: their keys cannot be checked here.
SUBCHARTS = {"kube-state-metrics", "prometheus-node-exporter", "grafana"}


# Values that are Kubernetes objects the chart copies as they are: their keys are the API's, not the chart's.
KUBERNETES_OBJECTS = {"securityContext", "containerSecurityContext", "podSecurityContext"}


def _unknown_keys(values, defaults, path=""):
    """Keys of `values` the chart's own values.yaml does not have (typos, renamed options)."""
    found = []
    for key, value in values.items():
        here = f"{path}.{key}" if path else key
        if not path and key in SUBCHARTS:
            continue
        if key not in defaults:
            found.append(here)
        elif isinstance(value, dict) and isinstance(defaults[key], dict) and defaults[key] and key not in KUBERNETES_OBJECTS:
            found += _unknown_keys(value, defaults[key], here)
    return found


@pytest.mark.parametrize("release,chart,version", [
    ("kube-prometheus-stack", "kube-prometheus-stack", "88.5.3"),
    ("prometheus-snmp-exporter", "prometheus-snmp-exporter", "9.17.1"),
])
def test_releases_pin_their_chart_and_use_only_its_options(homelab, release, chart, version):
    r = _release(homelab, release)
    assert (r.inputs["chart"], r.inputs["version"], r.inputs["namespace"]) == (chart, version, "monitoring")
    assert r.inputs["repositoryOpts"]["repo"] == "https://prometheus-community.github.io/helm-charts"
    written = homelab.yaml(f"helm/{release}.values.yaml")
    assert written == r.inputs["values"]
    defaults = yaml.safe_load((CHARTS / f"{chart}-{version}" / "values.yaml").read_text())
    # Free-form maps (rules, alertmanager config, node selectors) have no defaults to compare with.
    assert _unknown_keys(written, defaults) == []


def test_prometheus_and_alertmanager_are_pinned_to_the_observability_node(homelab):
    values = homelab.yaml("helm/kube-prometheus-stack.values.yaml")
    s = scheduling_for(Role.PROMETHEUS)
    for spec in (values["prometheus"]["prometheusSpec"], values["alertmanager"]["alertmanagerSpec"],
                 values["prometheusOperator"], values["kube-state-metrics"], values["crds"]["upgradeJob"],
                 homelab.yaml("helm/prometheus-snmp-exporter.values.yaml")):
        assert spec["nodeSelector"] == s.node_selector()
        assert spec["tolerations"] == s.tolerations()
    # node-exporter belongs on every node, tainted or not.
    assert values["prometheus-node-exporter"]["tolerations"] == [{"operator": "Exists"}]


def test_tsdb_is_persistent_sized_from_config_and_the_release_protected(homelab):
    release = _release(homelab, "kube-prometheus-stack")
    assert release.options["protect"] is True
    spec = release.inputs["values"]["prometheus"]["prometheusSpec"]
    claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
    assert claim["resources"]["requests"]["storage"] == "180Gi"
    assert claim["storageClassName"] == "local-path"
    assert (spec["retention"], spec["retentionSize"]) == ("100d", "160GB")
    # Rules and monitors of other releases (snmp-exporter, loki, ...) are picked up too.
    assert spec["ruleSelectorNilUsesHelmValues"] is False
    assert spec["serviceMonitorSelectorNilUsesHelmValues"] is False


def test_k3s_control_plane_targets_are_not_scraped(homelab):
    values = homelab.yaml("helm/kube-prometheus-stack.values.yaml")
    for component in ("kubeControllerManager", "kubeScheduler", "kubeProxy", "kubeEtcd"):
        assert values[component]["enabled"] is False


def test_scrape_configs_and_rules_load_in_prometheus(homelab, tmp_path):
    scrape = homelab.yaml("prometheus/scrape-configs.yaml")["scrape_configs"]
    config = {"global": {"scrape_interval": "30s", "evaluation_interval": "1m"},
              "rule_files": [str(p) for p in homelab.rule_files], "scrape_configs": scrape}
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(config))
    result = run_tool("promtool", "check", "config", path)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {j["job_name"]: j for j in scrape}
    assert set(jobs) == {"pbs-exporter", "pbs-node", "recovery", "snmp-core-switch", "snmp-nas", "snmp-ups",
                         "federate-homelab-cluster", "probe-api-gateway-health", "probe-api-gateway-openapi", "pve"}
    assert jobs["recovery"]["static_configs"][0]["targets"] == ["192.168.30.20:9847"]
    port = homelab_sections().get("pbsExporter", {}).get("port", 9797)
    assert jobs["pbs-exporter"]["static_configs"][0]["targets"] == [f"192.168.30.20:{port}"]
    assert jobs["pbs-node"]["static_configs"][0]["targets"] == ["192.168.30.20:9100"]
    federate = jobs["federate-homelab-cluster"]
    assert federate["metrics_path"] == "/federate" and federate["honor_labels"] is True
    assert federate["static_configs"][0]["targets"] == ["prometheus.k3s.home.arpa:9090"]
    assert jobs["snmp-nas"]["params"] == {"module": ["if_mib,hrStorage"], "auth": ["public_v2"]}
    # No address in the stack file: the exporter polls the NAS by its name under site.domain.
    assert jobs["snmp-nas"]["static_configs"][0]["targets"] == ["nas.home.arpa"]


def test_receiver_secrets_live_only_in_the_kubernetes_secret(homelab):
    rec = homelab.recording
    secret = rec.named("kubernetes:core/v1:Secret", "metrics-alertmanager-receivers")
    raw = rec.raw_inputs[secret.urn]["stringData"]
    assert raw == {"pagerduty-routing-key": rec.secret_values["pagerdutyRoutingKey"],
                   "mattermost-webhook-url": rec.secret_values["mattermostWebhookUrl"],
                   "heartbeat-token": rec.secret_values["alertingHeartbeatToken"],
                   "virtualization-pagerduty-routing-key": rec.secret_values["virtualizationPagerdutyRoutingKey"],
                   # the bearer token Alertmanager sends to the recovery service
                   "recovery-webhook-token": rec.secret_values["recoveryWebhookToken"]}
    release = _release(homelab, "kube-prometheus-stack")
    assert release.inputs["values"]["alertmanager"]["alertmanagerSpec"]["secrets"] == ["alertmanager-receivers"]
    assert secret.urn in release.options["dependsOn"]
    for path in homelab.out.rglob("*"):
        if path.is_file():
            text = path.read_text()
            for key in ("pagerdutyRoutingKey", "mattermostWebhookUrl", "alertingHeartbeatToken"):
                assert rec.secret_values[key] not in text, f"{key} leaked into {path}"


def test_federation_selects_recording_rule_series_and_nothing_raw(homelab, tmp_path):
    federate = next(j for j in homelab.yaml("prometheus/scrape-configs.yaml")["scrape_configs"]
                    if j["job_name"] == "federate-homelab-cluster")
    selectors = federate["params"]["match[]"]
    series = ['job:backup_success:ratio{slo="99.5"}', 'slo:burn_rate:1h{slo="x"}',
              'pbs_job_attempt_total{job_id="a"}', 'node_cpu_seconds_total{cpu="0"}']
    test = {"rule_files": [], "evaluation_interval": "1m", "tests": [{
        "interval": "1m",
        "input_series": [{"series": s, "values": "1x5"} for s in series],
        "promql_expr_test": [{"expr": " or ".join(selectors), "eval_time": "2m",
                              "exp_samples": [{"labels": s, "value": 1} for s in series[:2]]}],
    }]}
    path = tmp_path / "federate.test.yaml"
    path.write_text(yaml.safe_dump(test))
    result = run_tool("promtool", "test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
