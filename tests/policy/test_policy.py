"""The policy pack against the recorded stacks: the real homelab stack and a fixture stack of the
resource kinds the other domains add, both compliant; then each policy against mutations."""

from __future__ import annotations

import base64
import copy
import json
from typing import Any, Callable

import pytest
import yaml

from tests import policy_harness as h

VM = "proxmoxve:index/vmLegacy:VmLegacy"
Mutation = Callable[[list[h.Resource]], list[h.Resource]]


@pytest.fixture(scope="module")
def homelab() -> list[h.Resource]:
    return h.record()


@pytest.fixture(scope="module")
def fixture_stack() -> list[h.Resource]:
    return h.record(h.FIXTURE_PROGRAM)


@pytest.fixture(scope="module")
def runbooks(tmp_path_factory) -> dict[str, Any]:
    root = tmp_path_factory.mktemp("runbooks")
    # The homelab stack's own runbooks, plus those the fixture stack's alerts link to.
    for runbook in (h.ROOT / "runbooks").glob("*.md"):
        (root / runbook.name).write_text(runbook.read_text())
    for name in ("backup-job-failed", "disk-utilization"):
        (root / f"{name}.md").write_text(f"# {name}\n")
    return {"alert-rules-complete": {"runbooksDir": str(root)}}


RELEASE = "kubernetes:helm.sh/v3:Release"


def edit(name: str, change: Callable[[dict[str, Any]], None], kind: str | None = None, **fields: Any) -> Mutation:
    """A mutation of one resource's inputs (and options such as protect); `kind` picks by type too."""
    def mutate(resources: list[h.Resource]) -> list[h.Resource]:
        out = []
        for r in resources:
            if r.name == name and (kind is None or r.type == kind):
                r = r.mutated(**fields)
                change(r.props)
            out.append(r)
        assert any(r.name == name for r in resources), f"no resource {name}"
        return out
    return mutate


def add(resource: h.Resource) -> Mutation:
    return lambda resources: resources + [resource]


def nothing(props: dict[str, Any]) -> None:
    return None


def at(props: dict[str, Any], path: str) -> Any:
    current = props
    for part in path.split("."):
        current = current[int(part)] if isinstance(current, list) else current[part]
    return current


# --- everything compliant passes ------------------------------------------------------------

def test_homelab_stack_passes_every_policy(homelab):
    # Covers whatever the program registers: once the metrics, logs and Grafana branches merge,
    # their releases, rules, routes and dashboards are checked here too.
    assert {r.type for r in homelab} >= {"proxmoxve:index/vmLegacy:VmLegacy"}
    outcome = h.run(homelab)
    assert outcome.violations == []


def test_fixture_stack_passes_every_policy(fixture_stack, runbooks):
    assert len({r.type for r in fixture_stack}) >= 10
    assert h.run(fixture_stack, config=runbooks).violations == []


# --- each policy catches its violations -----------------------------------------------------

def _release_values(name: str, change: Callable[[dict[str, Any]], None], **fields: Any) -> Mutation:
    return edit(name, lambda p: change(p["values"]), kind=RELEASE, **fields)


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        parts = path.split(".")
        target = doc
        for part in parts[:-1]:
            target = target[int(part)] if isinstance(target, list) else target.setdefault(part, {})
        if isinstance(target, list):
            target[int(parts[-1])] = value
        else:
            target[parts[-1]] = value
    return change


def _drop(path: str) -> Callable[[dict[str, Any]], None]:
    def change(doc: dict[str, Any]) -> None:
        parent, _, key = path.rpartition(".")
        container = at(doc, parent) if parent else doc
        del container[key]
    return change


def _configmap(name: str, data: dict[str, str]) -> h.Resource:
    return h.Resource("kubernetes:core/v1:ConfigMap", name, f"urn:pulumi:homelab::x::kubernetes:core/v1:ConfigMap::{name}",
                      {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"namespace": "logging"}, "data": data})


RULER_FILE = yaml.safe_dump({"groups": [{"name": "nas-logs", "rules": [
    {"alert": "NasSmartErrors", "expr": 'sum(count_over_time({job="nas"} |= "SMART" [5m])) > 0',
     "labels": {"severity": "warning"}, "annotations": {"summary": "SMART errors in NAS logs"}}]}]})

AM_SECRET = yaml.safe_dump({"route": {"receiver": "mattermost", "routes": [{"receiver": "pagerduty-secondary"}]},
                            "receivers": [{"name": "mattermost"}]})

# (policy, mutation, resource named in the message, text the message must contain)
CASES: list[tuple[str, str, Mutation, str, str]] = [
    # helm-chart-pinned
    ("helm-chart-pinned", "version range", edit("logs-loki", _set("version", "^18.0.0"), kind=RELEASE), "logs-loki", "exact chart version"),
    ("helm-chart-pinned", "no version", edit("traces-tempo", _drop("version")), "traces-tempo", "no version"),
    ("helm-chart-pinned", "foreign repository",
     edit("grafana", _set("repositoryOpts.repo", "https://charts.example.com/")), "grafana", "allowedRepositories"),
    ("helm-chart-pinned", "local chart", edit("snmp-exporter", _drop("repositoryOpts")), "snmp-exporter",
     "repository_opts.repo"),
    # image-tags-pinned
    ("image-tags-pinned", "latest tag", _release_values("snmp-exporter", _set("image.tag", "latest")),
     "snmp-exporter", "values.image.tag"),
    ("image-tags-pinned", "untagged image string",
     _release_values("traces-otel-collector", _set("extraContainers", [{"name": "debug", "image": "docker.io/library/busybox"}])),
     "traces-otel-collector", "extraContainers[0].image"),
    ("image-tags-pinned", "chart default is latest", _release_values("grafana", _set("imageRenderer.enabled", True)),
     "grafana", "imageRenderer.image.tag"),
    # no-plaintext-secrets
    ("no-plaintext-secrets", "PagerDuty routing key in Alertmanager values",
     _release_values("metrics-kube-prometheus-stack", _set("alertmanager.config.receivers.1.pagerduty_configs.0.routing_key",
                                                   "c0ffee0123456789abcdef0123456789")),
     "metrics-kube-prometheus-stack", "routing_key"),
    ("no-plaintext-secrets", "S3 secret in Loki values",
     _release_values("logs-loki", _set("loki.storage.s3", {"secretAccessKey": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"})),
     "logs-loki", "loki.storage.s3.secretAccessKey"),
    ("no-plaintext-secrets", "password in grafana.ini",
     _release_values("grafana", _set("grafana.ini.smtp.password", "hunter2-homelab")), "grafana", "smtp.password"),
    ("no-plaintext-secrets", "env file in a ConfigMap",
     add(_configmap("grafana-env", {"grafana.env": "GF_SERVER_DOMAIN=grafana.home.arpa\nGF_SECURITY_ADMIN_PASSWORD=Tr0ub4dor&3\n"})),
     "grafana-env", "GF_SECURITY_ADMIN_PASSWORD"),
    ("no-plaintext-secrets", "Slack token in dashboard JSON",
     edit("backups", lambda p: p.__setitem__("configJson", p["configJson"].replace(
         '"title": "Backups"', '"title": "Backups", "links": [{"url": "https://slack.com/api?t=xoxb-1234567890-abcdefghijkl"}]'))),
     "backups", "Slack token"),
    ("no-plaintext-secrets", "random token in a ConfigMap dashboard",
     edit("dashboard-backups", lambda p: p["data"].__setitem__("backups.json", json.dumps(
         {"uid": "x", "annotations": {"note": "api=Zx9Qm2Lr8Tv4Wn6Yp1Ks3Hd5Jf7Bg0C"}}))),
     "dashboard-backups", "high-entropy"),
    # data-protected
    ("data-protected", "VM with data disk unprotected", edit("hosts-pbs", nothing, protect=False), "hosts-pbs", "protect=True"),
    ("data-protected", "Proxmox protection off", edit("hosts-prom", _set("protection", False)), "hosts-prom", "protection=True"),
    ("data-protected", "PVC unprotected", edit("pbs-exports", nothing, protect=False), "pbs-exports", "protect=True"),
    ("data-protected", "Loki unprotected", edit("logs-loki", nothing, kind=RELEASE, protect=False), "logs-loki", "persistent volumes"),
    ("data-protected", "Tempo unprotected", edit("traces-tempo", nothing, kind=RELEASE, protect=False),
     "traces-tempo", "persistent volumes"),
    # alert-rules-complete
    ("alert-rules-complete", "no severity",
     _release_values("metrics-kube-prometheus-stack", _drop("additionalPrometheusRulesMap.backups.groups.1.rules.1.labels.severity")),
     "metrics-kube-prometheus-stack", "severity"),
    ("alert-rules-complete", "no description",
     edit("nas-rules", _drop("spec.groups.0.rules.0.annotations.description")), "nas-rules", "`description`"),
    ("alert-rules-complete", "runbook missing",
     edit("nas-rules", _set("spec.groups.0.rules.0.annotations.runbook_url", "https://runbooks.home.arpa/nas-on-fire")),
     "nas-rules", "nas-on-fire"),
    ("alert-rules-complete", "unknown severity", edit("backup-freshness", _set("rules.0.labels.severity", "page")),
     "backup-freshness", "'page'"),
    ("alert-rules-complete", "ruler file in a ConfigMap", add(_configmap("loki-rules", {"nas.yaml": RULER_FILE})),
     "loki-rules", "runbook_url"),
    # alert-routes-resolve
    ("alert-routes-resolve", "route to an undefined receiver",
     _release_values("metrics-kube-prometheus-stack", _set("alertmanager.config.route.routes.0.receiver", "pagerduty-secondary")),
     "metrics-kube-prometheus-stack", "pagerduty-secondary"),
    ("alert-routes-resolve", "chart's default route to 'null' without a 'null' receiver",
     _release_values("metrics-kube-prometheus-stack", lambda v: (v["alertmanager"]["config"]["route"].pop("routes"),
                                                         v["alertmanager"]["config"]["receivers"].pop(0))),
     "metrics-kube-prometheus-stack", "'null'"),
    ("alert-routes-resolve", "Alertmanager config in a Secret",
     edit("metrics-alertmanager-receivers", _set("stringData", {"alertmanager.yaml": AM_SECRET})),
     "metrics-alertmanager-receivers", "pagerduty-secondary"),
    ("alert-routes-resolve", "base64 Alertmanager config in a Secret",
     edit("metrics-alertmanager-receivers", _set("data", {"alertmanager.yml": base64.b64encode(AM_SECRET.encode()).decode()})),
     "metrics-alertmanager-receivers", "pagerduty-secondary"),
    ("alert-routes-resolve", "Grafana policy to an undefined contact point",
     edit("policy", _set("policies.1.contactPoint", "mattermost-ops")), "policy", "mattermost-ops"),
    ("alert-routes-resolve", "Grafana root policy without contact point", edit("policy", _drop("contactPoint")),
     "policy", "root policy"),
    ("alert-routes-resolve", "Grafana rule to an undefined contact point",
     edit("backup-freshness", _set("rules.0.notificationSettings.contactPoint", "email-ops")),
     "backup-freshness", "email-ops"),
    # loki-retention
    ("loki-retention", "retention too short", _release_values("logs-loki", _set("loki.limits_config.retention_period", "12h")),
     "logs-loki", "shorter than 24h"),
    ("loki-retention", "retention unset", _release_values("logs-loki", _drop("loki.limits_config.retention_period")),
     "logs-loki", "not set"),
    ("loki-retention", "retention disabled", _release_values("logs-loki", _set("loki.limits_config.retention_period", "0s")),
     "logs-loki", "disables"),
    ("loki-retention", "structuredConfig overrides", _release_values(
        "logs-loki", _set("loki.structuredConfig", {"limits_config": {"retention_period": "1h"}})), "logs-loki", "'1h'"),
    ("loki-retention", "short stream retention",
     _release_values("logs-loki", _set("loki.limits_config.retention_stream.0.period", "6h")), "logs-loki", "retention_stream[0]"),
    ("loki-retention", "short tenant retention",
     _release_values("logs-loki", _set("loki.runtimeConfig.overrides.homelab.retention_period", "3h")), "logs-loki", "overrides.homelab"),
    ("loki-retention", "compactor does not apply retention",
     _release_values("logs-loki", _set("loki.compactor.retention_enabled", False)), "logs-loki", "retention_enabled"),
    ("loki-retention", "no delete request store",
     _release_values("logs-loki", _drop("loki.compactor.delete_request_store")), "logs-loki", "delete_request_store"),
    # workload-resources
    ("workload-resources", "Prometheus without resources",
     _release_values("metrics-kube-prometheus-stack", _drop("prometheus.prometheusSpec.resources")),
     "metrics-kube-prometheus-stack", "prometheus.prometheusSpec.resources"),
    ("workload-resources", "no memory limit", _release_values("logs-loki", _set("singleBinary.resources.limits", {})),
     "logs-loki", "limits.memory"),
    ("workload-resources", "component switched on without resources",
     _release_values("metrics-kube-prometheus-stack", _set("thanosRuler.enabled", True)), "metrics-kube-prometheus-stack",
     "thanosRuler.thanosRulerSpec.resources"),
    ("workload-resources", "subchart switched on without resources",
     _release_values("metrics-kube-prometheus-stack", _set("grafana.enabled", True)), "metrics-kube-prometheus-stack", "grafana.resources"),
    ("workload-resources", "chart the pack does not know", edit("traces-tempo", _set("chart", "tempo-distributed")),
     "traces-tempo", "policy/charts.py"),
    # vm-required-tags
    ("vm-required-tags", "VM without the pulumi tag", edit("hosts-loki", lambda p: p["tags"].remove("pulumi"), kind=VM),
     "hosts-loki", "pulumi"),
]


def _what(r: h.Resource) -> tuple[str, str]:
    """What a resource is, whatever its Pulumi name: a release, object or VM by the name it gets."""
    props = r.props if isinstance(r.props, dict) else {}
    metadata = props.get("metadata") if isinstance(props.get("metadata"), dict) else {}
    name = props.get("name") if isinstance(props.get("name"), str) else metadata.get("name")
    return r.type, name or r.name


@pytest.mark.parametrize("policy,case,mutate,resource,text", CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_mutation_is_caught(homelab, fixture_stack, runbooks, policy, case, mutate, resource, text):
    # The fixture stands in only for what the homelab stack does not have itself.
    own = {_what(r) for r in homelab}
    stack = homelab + [r for r in fixture_stack if _what(r) not in own]
    if policy == "vm-required-tags" or case.startswith(("VM", "Proxmox")):
        stack = homelab
    outcome = h.run(mutate(stack), only=policy, config=runbooks)
    found = outcome.of(policy)
    assert found, f"{policy} missed: {case}"
    assert all(v.resource == resource for v in found), [v.resource for v in found]
    assert any(text in v.message and f"'{resource}'" in v.message and "Fix:" in v.message for v in found), \
        [v.message for v in found]


def test_secret_values_never_appear_in_messages(fixture_stack):
    secret = "c0ffee0123456789abcdef0123456789"
    mutate = _release_values("kube-prometheus-stack", _set("alertmanager.alertmanagerSpec.podMetadata",
                                                           {"annotations": {"api_token": secret}}))
    found = h.run(mutate(fixture_stack), only="no-plaintext-secrets").violations
    assert found and all(secret not in v.message and secret[4:] not in v.message for v in found)


def test_ignore_config_silences_a_reviewed_finding(fixture_stack):
    mutate = _release_values("grafana", _set("grafana.ini.smtp.password", "hunter2-homelab"))
    config = {"no-plaintext-secrets": {"ignore": ["grafana:values.grafana.ini.smtp.password"]}}
    assert h.run(mutate(fixture_stack), only="no-plaintext-secrets", config=config).violations == []


def test_required_tags_come_from_config(homelab):
    found = h.run(homelab, only="vm-required-tags", config={"vm-required-tags": {"requiredTags": ["tier-1"]}}).violations
    assert sorted(v.resource for v in found) == ["hosts-loki", "hosts-pbs", "hosts-prom"]


def test_allowed_repositories_come_from_config(fixture_stack):
    config = {"helm-chart-pinned": {"allowedRepositories": ["https://grafana-community.github.io/helm-charts"]}}
    found = h.run(fixture_stack, only="helm-chart-pinned", config=config).violations
    assert sorted(v.resource for v in found) == ["kube-prometheus-stack", "otel-collector", "snmp-exporter"]


def test_external_contact_points_come_from_config(fixture_stack):
    mutate = edit("policy", _set("policies.1.contactPoint", "email-ops"))
    config = {"alert-routes-resolve": {"externalContactPoints": ["email-ops"]}}
    assert h.run(mutate(fixture_stack), only="alert-routes-resolve", config=config).violations == []


def test_unprotected_release_without_volumes_is_fine(fixture_stack):
    tempo = next(r for r in fixture_stack if r.name == "tempo")
    assert tempo.protect is False
    assert h.run([tempo], only="data-protected").violations == []


# --- robustness: resources the policies do not understand ------------------------------------

ODD_PROPS = [
    {},
    {"values": "not a map", "chart": 42, "version": None, "repositoryOpts": "x"},
    {"values": {"image": ["odd"], "alertmanager": {"config": {"route": "x", "receivers": None}},
                "loki": {"limits_config": None, "compactor": "on"}, "groups": "none"}, "chart": "loki"},
    {"values": {"deep": {"image": "04da6b54-80e4-46f7-96ec-b56ff0331ba9"}}, "chart": "grafana", "version": "1.2.3",
     "repositoryOpts": {"repo": "04da6b54-80e4-46f7-96ec-b56ff0331ba9"}},
    {"data": {"x": None}, "spec": {"groups": [{"rules": [None, 1, {"alert": None}]}]}, "configJson": "{not json",
     "tags": None, "disks": "none", "rules": [None], "policies": [None], "contactPoint": 3},
]
ODD_TYPES = ["kubernetes:helm.sh/v3:Release", "kubernetes:helm.sh/v4:Chart", "kubernetes:core/v1:ConfigMap",
             "kubernetes:core/v1:Secret", "kubernetes:monitoring.coreos.com/v1:PrometheusRule",
             "grafana:oss/dashboard:Dashboard", "grafana:alerting/notificationPolicy:NotificationPolicy",
             "grafana:alerting/ruleGroup:RuleGroup", "proxmoxve:index/vmLegacy:VmLegacy", "random:index/randomId:RandomId"]


@pytest.mark.parametrize("props", ODD_PROPS)
def test_policies_do_not_crash_on_odd_shapes(props):
    resources = [h.Resource(t, f"odd-{i}", f"urn:odd:{i}", copy.deepcopy(props)) for i, t in enumerate(ODD_TYPES)]
    outcome = h.run(resources)  # raises on a crash
    assert all("Fix:" in v.message for v in outcome.violations)
