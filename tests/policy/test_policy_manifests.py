"""The rendered-manifests policy (policy/manifests.py): what a release deploys, not its values."""

from __future__ import annotations

import copy

import pytest

from policy.manifests import manifest_problems, object_problems
from tests import policy_harness as h

RELEASE = "kubernetes:helm.sh/v3:Release"


@pytest.fixture(scope="module")
def homelab():
    return h.record()


def _release(resources, name):
    """The Release resource that installs Helm release `name` (its Pulumi name carries the component's)."""
    return next(r for r in resources if r.type == RELEASE and r.props.get("name") == name)


def _deployment(**container) -> dict:
    base = {"name": "app", "image": "quay.io/app:v1.2.3",
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}, "limits": {"memory": "32Mi"}}}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "app"},
            "spec": {"template": {"spec": {"containers": [{**base, **container}]}}}}


def test_the_homelab_releases_deploy_nothing_the_pack_forbids(homelab):
    assert h.run(homelab, only="rendered-manifests").violations == []


def test_a_chart_default_latest_image_is_caught_in_what_the_release_renders(homelab):
    # Without our pin, kube-prometheus-stack's CRD upgrade job pulls busybox:latest; the values
    # never mention it, so only the rendered Job shows it.
    kps = _release(homelab, "kube-prometheus-stack")
    values = copy.deepcopy(kps.props["values"])
    del values["crds"]["upgradeJob"]["image"]
    outcome = h.run([kps.mutated(props={**kps.props, "values": values})], only="rendered-manifests")
    assert [v.message for v in outcome.violations] == [
        "Helm release 'kube-prometheus-stack' (chart kube-prometheus-stack 88.5.3) deploys Job "
        "kube-prometheus-stack-crds-upgrade: spec.template.spec.initContainers[0].image: 'docker.io/busybox:latest' "
        "uses the 'latest' tag. Fix: pin the image's tag in the release's values."]
    assert h.run([kps.mutated(props={**kps.props, "values": values})], only="image-tags-pinned").violations == []


def test_a_workload_without_resources_is_caught(homelab):
    snmp = _release(homelab, "prometheus-snmp-exporter")
    values = {k: v for k, v in snmp.props["values"].items() if k != "resources"}
    [violation] = h.run([snmp.mutated(props={**snmp.props, "values": values})], only="rendered-manifests").violations
    assert "Deployment prometheus-snmp-exporter: spec.template.spec.containers[0].resources has no resources" \
           in violation.message


def test_a_release_that_helm_refuses_is_a_violation(homelab):
    loki = _release(homelab, "loki")
    values = {**loki.props["values"], "read": {"replicas": 2}}  # and the single binary: refused by the chart
    [violation] = h.run([loki.mutated(props={**loki.props, "values": values})], only="rendered-manifests").violations
    assert "cannot be rendered" in violation.message and "replicas configured for both" in violation.message


def test_offline_a_chart_that_is_not_local_is_a_violation_and_never_fetched(homelab):
    grafana = _release(homelab, "grafana")
    moved = grafana.mutated(props={**grafana.props, "version": "12.11.0"})
    [violation] = h.run([moved], only="rendered-manifests").violations
    assert "no chart directory" in violation.message and "fetching from the repository is off" in violation.message


@pytest.mark.parametrize("container, problem", [
    ({"image": "quay.io/app"}, "has no tag"),
    ({"image": "quay.io/app:latest"}, "uses the 'latest' tag"),
    ({"image": "registry:5000/app"}, "has no tag"),
    ({"resources": {"requests": {"cpu": "10m"}}}, "lacks requests.memory, limits.memory"),
    ({"env": [{"name": "API_TOKEN", "value": "9f8e7d6c5b4a39281706f5e4d3c2b1a0"}]}, "credential-named key"),
])
def test_object_problems_name_the_path(container, problem):
    [found] = list(object_problems(_deployment(**container)))
    assert found.startswith("spec.template.spec.containers[0]") and problem in found


def test_pinned_images_digests_and_secret_references_pass():
    assert list(object_problems(_deployment(image="quay.io/app@sha256:" + "a" * 64))) == []
    assert list(object_problems(_deployment(image="registry:5000/app:1.0"))) == []
    secret_ref = [{"name": "API_TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}]
    assert list(object_problems(_deployment(env=secret_ref))) == []


def test_operator_workloads_and_config_maps_are_checked():
    prometheus = {"apiVersion": "monitoring.coreos.com/v1", "kind": "Prometheus", "metadata": {"name": "p"},
                  "spec": {"image": "quay.io/prometheus/prometheus"}}
    assert list(manifest_problems([prometheus])) == [
        ("Prometheus p", "spec.image: 'quay.io/prometheus/prometheus' has no tag (Kubernetes pulls 'latest'). "
                         "Fix: pin the image's tag in the release's values."),
        ("Prometheus p", "spec.resources has no resources. Fix: set them in the release's values.")]
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"},
                  "data": {"app.ini": "[db]\npassword = hunter2hunter2\n"}}
    [(what, problem)] = manifest_problems([config_map])
    assert what == "ConfigMap c" and problem.startswith("data.app.ini")
