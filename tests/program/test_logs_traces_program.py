"""The logs and traces components on the mock engine, and what the preview renders of them."""

from __future__ import annotations

import pytest
import yaml

from tests.stacks import ROOT, write_stack
from tools import preview
from tools.offline_engine import run_program

RELEASE = "kubernetes:helm.sh/v3:Release"
SECRET = "kubernetes:core/v1:Secret"
NAMESPACE = "kubernetes:core/v1:Namespace"
S3_SECRET = "s3-secret-value-that-must-not-leak"


@pytest.fixture(scope="module")
def homelab(tmp_path_factory):
    recording = run_program(ROOT / "Pulumi.homelab.yaml")
    out = preview.render(recording, tmp_path_factory.mktemp("build"))
    return recording, out


def test_releases_pin_chart_version_and_repository(homelab):
    recording, _ = homelab
    releases = {r.inputs["name"]: r.inputs for r in recording.of_type(RELEASE)}
    expected = {
        "loki": ("loki", "18.11.0", "https://grafana-community.github.io/helm-charts", "logging"),
        "tempo": ("tempo", "2.2.4", "https://grafana-community.github.io/helm-charts", "observability"),
        "otel-collector": ("opentelemetry-collector", "0.170.0",
                           "https://open-telemetry.github.io/opentelemetry-helm-charts", "observability"),
    }
    for name, (chart, version, repo, namespace) in expected.items():
        inputs = releases[name]
        assert (inputs["chart"], inputs["version"], inputs["repositoryOpts"]["repo"], inputs["namespace"]) == \
               (chart, version, repo, namespace)


def test_data_holding_releases_and_their_namespaces_are_protected(homelab):
    recording, _ = homelab
    protected = {r.name for r in recording.resources if r.options["protect"]}
    assert {"logs-loki", "traces-tempo", "logs-namespace", "traces-namespace"} <= protected
    by_urn = {r.urn: r for r in recording.resources}
    releases = [r for r in recording.of_type(RELEASE)
                if by_urn[r.parent].type in ("homelab:logs:Loki", "homelab:traces:Tracing")]
    assert {r.inputs["name"] for r in releases} >= {"loki", "tempo"}
    for release in releases:
        namespace = next(r for r in recording.of_type(NAMESPACE) if r.inputs["metadata"]["name"] == release.inputs["namespace"])
        assert namespace.urn in release.options["dependsOn"]


def test_preview_writes_each_releases_values(homelab):
    recording, out = homelab
    for release in recording.of_type(RELEASE):
        written = yaml.safe_load((out / "helm" / f"{release.inputs['name']}.values.yaml").read_text())
        assert written == release.inputs["values"]
    assert "&id" not in (out / "helm" / "loki.values.yaml").read_text()


def test_outputs_tell_clients_where_to_send(homelab):
    recording, _ = homelab
    assert recording.outputs["syslogEndpoint"] == "192.168.30.22:1514"
    assert recording.outputs["lokiTenants"] == ["homelab", "nas"]
    assert recording.outputs["otlpEndpoints"]["grpc"] == "http://otel-collector.observability.svc.cluster.local:4317"


def test_object_storage_credentials_go_only_into_a_kubernetes_secret(tmp_path):
    def scale_out(sections):
        sections["logs"]["mode"] = "scalable"
        sections["logs"]["objectStorage"] = {"endpoint": "minio.home.arpa:9000",
                                             "buckets": {"chunks": "loki-chunks", "ruler": "loki-ruler"}}
        sections["traces"]["mode"] = "distributed"
        sections["traces"]["objectStorage"] = {"endpoint": "minio.home.arpa:9000", "bucket": "tempo-traces"}
        sections["metrics"]["alertmanager"]["replicas"] = 2  # a production-like stack (metrics.alertmanager.replicas)

    stack = write_stack(tmp_path, scale_out)
    secrets = {"lokiS3AccessKeyId": "loki-key", "lokiS3SecretAccessKey": S3_SECRET,
               "tempoS3AccessKeyId": "tempo-key", "tempoS3SecretAccessKey": S3_SECRET + "-tempo"}
    recording = run_program(stack, secrets)
    out = preview.render(recording, tmp_path / "build")

    loki_secret = recording.named(SECRET, "logs-loki-object-storage")
    raw = recording.raw_inputs[loki_secret.urn]["stringData"]
    assert raw == {"LOKI_S3_ACCESS_KEY_ID": "loki-key", "LOKI_S3_SECRET_ACCESS_KEY": S3_SECRET}
    loki_values = recording.named(RELEASE, "logs-loki").inputs["values"]
    # The env names Loki's config references are exactly the Secret's keys.
    s3 = loki_values["loki"]["storage"]["s3"]
    assert {s3["accessKeyId"], s3["secretAccessKey"]} == {f"${{{k}}}" for k in raw}
    assert loki_values["defaults"]["extraEnvFrom"][0]["secretRef"]["name"] == loki_secret.inputs["metadata"]["name"]
    assert recording.named(SECRET, "traces-tempo-object-storage")
    assert recording.named(RELEASE, "traces-tempo").inputs["chart"] == "tempo-distributed"
    for path in out.rglob("*"):
        if path.is_file():
            assert S3_SECRET not in path.read_text(), path


def test_releases_and_namespaces_keep_the_state_of_their_former_names(homelab):
    """Before children were named after their component, a release was named like the release."""
    recording, _ = homelab
    for release in recording.of_type(RELEASE):
        if release.name != release.inputs["name"]:
            assert release.options["aliases"] == [release.inputs["name"]], release.name
    for namespace in recording.of_type(NAMESPACE):
        if namespace.name in ("logs-namespace", "traces-namespace", "metrics-namespace"):
            assert namespace.options["aliases"] == [namespace.inputs["metadata"]["name"]]
