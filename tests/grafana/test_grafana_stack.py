"""The Grafana component on the offline engine, its config section and the preview's grafana/ files."""

from __future__ import annotations

import json

import pytest
import yaml

from model.config import ConfigError, load_stack_config, required_secrets
from model.grafana.dashboards import load_dashboards
from model.grafana.data_sources import data_source_uids
from tools.offline_engine import ROOT, run_program
from tools.preview import render
from tests.shared_data import CHARTS as SHARED_CHARTS
from tests.stacks import homelab_sections

STACK = load_stack_config(homelab_sections())

STACK_FILE = ROOT / "Pulumi.homelab.yaml"
SECRETS = {
    "k3sToken": "K10-test-join-token::server:abc",
    "pagerdutyRoutingKey": "R0TESTPAGERDUTYKEY000000000000001",
    "mattermostWebhookUrl": "https://chat.internal/hooks/test-webhook-secret",
    "alertingHeartbeatToken": "hb-test-heartbeat-token-1111",
}
CHART_VALUES = SHARED_CHARTS / "grafana-12.11.1" / "values.yaml"


@pytest.fixture(scope="module")
def recording():
    return run_program(STACK_FILE, SECRETS)


@pytest.fixture(scope="module")
def build(recording, tmp_path_factory):
    return render(recording, tmp_path_factory.mktemp("build"))


def _one(recording, type_):
    """The one resource of `type_` that the Grafana component (or its provider) created."""
    found = [r for r in recording.of_type(type_) if r.parent.endswith("::grafana") or r.type.startswith("grafana:")
             or r.type == "pulumi:providers:grafana"]
    assert len(found) == 1, type_
    return found[0]


def test_release_reads_the_generated_admin_secret_and_keeps_data(recording):
    release = _one(recording, "kubernetes:helm.sh/v3:Release")
    values = release.inputs["values"]
    assert (release.inputs["chart"], release.inputs["version"]) == ("grafana", "12.11.1")
    assert release.inputs["name"] == "grafana"
    secret = _one(recording, "kubernetes:core/v1:Secret")
    assert values["admin"]["existingSecret"] == secret.inputs["metadata"]["name"]
    # The password is only known at `pulumi up`; offline the whole map is an unknown secret.
    assert secret.inputs["stringData"] == "[secret]"
    assert secret.urn in release.options["dependsOn"]
    claim = _one(recording, "kubernetes:core/v1:PersistentVolumeClaim")
    assert values["persistence"] == {"enabled": True, "type": "pvc", "existingClaim": claim.inputs["metadata"]["name"]}
    assert claim.options["protect"] and claim.options["retainOnDelete"]
    assert claim.inputs["spec"]["resources"]["requests"]["storage"] == "10Gi"
    assert values["grafana.ini"]["server"]["root_url"] == "https://grafana.home.arpa/"
    assert values["ingress"]["hosts"] == ["grafana.home.arpa"]
    assert values["nodeSelector"] == {"observability.homelab/workload": "prometheus"}
    assert recording.named("random:index/randomPassword:RandomPassword", "grafana-admin-password").inputs["length"] >= 32


def test_chart_values_exist_in_the_chart(recording):
    # A misspelt key is silently ignored by Helm: every key set must be one the chart reads.
    defaults = yaml.safe_load(CHART_VALUES.read_text())
    free_form = {"nodeSelector", "tolerations", "grafana.ini", "resources", "securityContext", "deploymentStrategy"}
    values = _one(recording, "kubernetes:helm.sh/v3:Release").inputs["values"]

    def walk(ours, theirs, path):
        for key, value in ours.items():
            where = f"{path}.{key}".lstrip(".")
            assert isinstance(theirs, dict) and (key in theirs or key in {"existingClaim", "ingressClassName"}), where
            if isinstance(value, dict) and where not in free_form:
                walk(value, theirs.get(key) or {}, where)

    walk(values, defaults, "")


def test_provider_uses_the_admin_credentials_as_a_secret(recording):
    provider = _one(recording, "pulumi:providers:grafana")
    assert provider.inputs["url"] == "https://grafana.home.arpa"
    assert provider.inputs["auth"] == "[secret]"
    release = _one(recording, "kubernetes:helm.sh/v3:Release")
    assert release.urn in provider.options["dependsOn"], "the API is configured only once Grafana runs"


def test_data_sources_dashboards_and_folders(recording):
    sources = {r.inputs["uid"]: r for r in recording.of_type("grafana:oss/dataSource:DataSource")}
    assert set(sources) == data_source_uids(STACK)
    # The gateway takes the tenant from the credential; the password stays a secret.
    nas = sources["loki-nas"].inputs
    assert (nas["basicAuthEnabled"], nas["basicAuthUsername"], nas["secureJsonDataEncoded"]) == (True, "nas", "[secret]")
    assert "httpHeaders" not in nas
    folders = {r.inputs["uid"] for r in recording.of_type("grafana:oss/folder:Folder")}
    dashboards = recording.of_type("grafana:oss/dashboard:Dashboard")
    assert {json.loads(d.inputs["configJson"])["uid"] for d in dashboards} == {d.uid for d in load_dashboards()}
    for d in dashboards:
        assert d.inputs["folder"] in folders


def test_contact_points_carry_the_secrets_and_policy_names_them(recording):
    points = {r.inputs["name"]: r for r in recording.of_type("grafana:alerting/contactPoint:ContactPoint")}
    pagerduty = recording.raw_inputs[points["pagerduty-primary"].urn]["pagerduties"][0]
    assert pagerduty["integrationKey"] == SECRETS["pagerdutyRoutingKey"]
    assert points["pagerduty-primary"].inputs["pagerduties"] == "[secret]"
    slack = recording.raw_inputs[points["mattermost-backup-room"].urn]["slacks"][0]
    assert slack["url"] == SECRETS["mattermostWebhookUrl"]
    policy = _one(recording, "grafana:alerting/notificationPolicy:NotificationPolicy")

    def named(p):
        yield p["contactPoint"]
        for child in p.get("policies", []):
            if "contactPoint" in child:
                yield from named(child)

    assert set(named(policy.inputs)) <= set(points)
    assert set(policy.options["dependsOn"]) == {r.urn for r in points.values()}


def test_preview_writes_grafana_files_without_secrets(build):
    grafana = build / "grafana"
    sent = {p.stem for p in (grafana / "dashboards").glob("*.json")}
    assert sent == {d.uid for d in load_dashboards()}
    assert {s["uid"] for s in json.loads((grafana / "datasources.json").read_text())} == data_source_uids(STACK)
    points = (grafana / "contact-points.json").read_text()
    assert "<secret pagerdutyRoutingKey>" in points and "<secret mattermostWebhookUrl>" in points
    policy = json.loads((grafana / "notification-policy.json").read_text())
    assert policy["contactPoint"] and policy["policies"]
    for path in build.rglob("*"):
        if path.is_file():
            text = path.read_text()
            for value in SECRETS.values():
                assert value not in text, f"{path} leaks a secret"


HOMELAB = yaml.safe_load(STACK_FILE.read_text())["config"]


def _config(**grafana_overrides):
    raw = {k.split(":", 1)[1]: v for k, v in HOMELAB.items() if k.startswith("homelab-observability:")}
    raw["grafana"] = {**raw["grafana"], **grafana_overrides}
    return raw


def test_receiver_secrets_follow_the_routing_table():
    cfg = load_stack_config(_config())
    assert {"pagerdutyRoutingKey", "mattermostWebhookUrl", "alertingHeartbeatToken"} <= set(required_secrets(cfg))
    without_pager = _config()
    alerting = without_pager["alerting"]
    alerting["receivers"] = [r for r in alerting["receivers"] if "pagerduty" not in r]
    kept = {r["name"] for r in alerting["receivers"]}
    alerting["routes"] = [r for r in alerting["routes"] if r["receiver"] in kept]
    needed = required_secrets(load_stack_config(without_pager))
    assert "pagerdutyRoutingKey" not in needed and "virtualizationPagerdutyRoutingKey" not in needed


def test_grafana_config_problems_are_reported_by_path():
    with pytest.raises(ConfigError) as exc:
        load_stack_config(_config(url="https://grafana.home.arpa/grafana", tlsSecretName=None,
                                  folderTitles={"nope": "X", "backups": "Platform"}, persistenceSizeGi=0))
    messages = {str(p) for p in exc.value.problems}
    assert "grafana.persistenceSizeGi: must be >= 1" in messages
    with pytest.raises(ConfigError) as exc:
        load_stack_config(_config(url="https://grafana.home.arpa/grafana", tlsSecretName=None,
                                  folderTitles={"nope": "X", "backups": "Platform"}))
    paths = {p.path for p in exc.value.problems}
    assert paths == {"grafana.url", "grafana.tlsSecretName", "grafana.folderTitles.nope", "grafana.folderTitles"}
    with pytest.raises(ConfigError) as exc:
        load_stack_config(_config(dataSources={"prometheus": "kube-prometheus:9090", "graphite": "http://x"}))
    assert {p.path for p in exc.value.problems} == {"grafana.dataSources.prometheus", "grafana.dataSources.graphite"}


# --- TLS: the certificate of grafana.url and what the provider trusts ------------------------

CERTIFICATE = "kubernetes:cert-manager.io/v1:Certificate"


def _ca_pem(directory) -> str:
    import subprocess

    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                    "-days", "2", "-subj", "/CN=homelab-ca", "-keyout", str(directory / "ca.key"),
                    "-out", str(directory / "ca.crt")], check=True, capture_output=True, timeout=60)
    return (directory / "ca.crt").read_text()


def test_cert_manager_issues_the_certificate_before_the_provider_connects(recording):
    section = homelab_sections()["grafana"]
    certificate = _one(recording, CERTIFICATE)
    assert certificate.inputs["metadata"]["namespace"] == section["namespace"]
    spec = certificate.inputs["spec"]
    assert spec["dnsNames"] == ["grafana.home.arpa"], "the host of grafana.url"
    assert spec["secretName"] == section["tlsSecretName"]
    release = _one(recording, "kubernetes:helm.sh/v3:Release")
    assert release.inputs["values"]["ingress"]["tls"] == [{"secretName": spec["secretName"], "hosts": spec["dnsNames"]}]
    issuer = section["tls"]["certManager"]
    assert spec["issuerRef"] == {"group": "cert-manager.io", "kind": issuer["issuerKind"], "name": issuer["issuer"]}
    # The provider's first request must meet this certificate, not Traefik's default one.
    assert certificate.inputs["metadata"]["annotations"]["pulumi.com/waitFor"] == "condition=Ready"
    provider = _one(recording, "pulumi:providers:grafana")
    assert {certificate.urn, release.urn} <= set(provider.options["dependsOn"])
    assert "caCert" not in provider.inputs, "no caCertificate configured: the system's trust store"


def test_a_private_ca_is_what_the_provider_trusts(tmp_path):
    from tests.stacks import write_stack

    pem = _ca_pem(tmp_path)
    stack = write_stack(tmp_path, lambda c: c["grafana"]["tls"].update(caCertificate=pem))
    provider = _one(run_program(stack, SECRETS), "pulumi:providers:grafana")
    assert provider.inputs["caCert"] == pem.strip()


def test_a_certificate_from_the_stack_secrets_becomes_the_tls_secret(tmp_path):
    from tests.stacks import write_stack

    stack = write_stack(tmp_path, lambda c: c["grafana"].update(tls={"fromSecrets": True}))
    tls = {"grafanaTlsCertificate": "-----BEGIN CERTIFICATE-----\ntest-cert\n-----END CERTIFICATE-----\n",
           "grafanaTlsPrivateKey": "-----BEGIN PRIVATE KEY-----\ntest-key\n-----END PRIVATE KEY-----\n"}
    recording = run_program(stack, {**SECRETS, **tls})
    assert recording.of_type(CERTIFICATE) == []
    (secret,) = [r for r in recording.of_type("kubernetes:core/v1:Secret") if r.inputs.get("type") == "kubernetes.io/tls"]
    assert secret.inputs["metadata"]["name"] == homelab_sections()["grafana"]["tlsSecretName"]
    assert secret.inputs["stringData"] == "[secret]"
    assert recording.raw_inputs[secret.urn]["stringData"] == {"tls.crt": tls["grafanaTlsCertificate"],
                                                               "tls.key": tls["grafanaTlsPrivateKey"]}
    provider = _one(recording, "pulumi:providers:grafana")
    assert secret.urn in provider.options["dependsOn"]
    out = render(recording, tmp_path / "build")
    for path in (p for p in out.rglob("*") if p.is_file()):
        assert "test-key" not in path.read_text(), path
    assert set(required_secrets(load_stack_config(_config(tls={"fromSecrets": True})))) >= set(tls)


@pytest.mark.parametrize("grafana, path, words", [
    ({"tls": None}, "grafana.tls", "is required for an https url: nothing else creates the certificate"),
    ({"tls": {"fromSecrets": True, "certManager": {"issuer": "homelab-ca"}}}, "grafana.tls",
     "needs exactly one of certManager, fromSecrets: true"),
    ({"tls": {}}, "grafana.tls", "needs exactly one of"),
    ({"tls": {"certManager": {"issuer": "homelab-ca", "issuerKind": "Vault"}}}, "grafana.tls.certManager.issuerKind",
     "must be one of"),
    ({"tls": {"certManager": {"issuer": "homelab-ca"}, "caCertificate": "homelab-ca.crt"}},
     "grafana.tls.caCertificate", "must be one or more PEM certificates"),
    ({"url": "http://grafana.home.arpa"}, "grafana.tls", "is only used with an https grafana.url"),
])
def test_tls_config_problems_are_named_by_path(grafana, path, words):
    with pytest.raises(ConfigError) as caught:
        load_stack_config(_config(**grafana))
    assert any(str(p).startswith(f"{path}: ") and words in str(p) for p in caught.value.problems), caught.value.problems
