"""The pack's wiring: PulumiPolicy.yaml, its requirements, __main__.py, helpers the policies share."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest
import yaml
from pulumi_policy import EnforcementLevel

from policy import credentials, policies
from policy.policies import duration_seconds, runbook_path

ROOT = Path(__file__).resolve().parents[2]


def _pins(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


def test_pulumi_policy_yaml_runs_python_in_the_repository_venv():
    doc = yaml.safe_load((ROOT / "policy" / "PulumiPolicy.yaml").read_text())
    assert doc["runtime"]["name"] == "python"
    venv = (ROOT / "policy" / doc["runtime"]["options"]["virtualenv"]).resolve()
    project = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())
    assert venv == (ROOT / project["runtime"]["options"]["virtualenv"]).resolve()


def test_pack_requirements_are_the_programs_pins():
    pack, program = _pins(ROOT / "policy" / "requirements.txt"), _pins(ROOT / "requirements.txt")
    assert pack and all(program.get(name) == version for name, version in pack.items()), (pack, program)


def test_main_builds_one_mandatory_pack_of_all_policies(monkeypatch):
    built = []
    import pulumi_policy
    monkeypatch.setattr(pulumi_policy, "PolicyPack", lambda **kwargs: built.append(kwargs))
    runpy.run_path(str(ROOT / "policy" / "__main__.py"), run_name="__main__")
    assert len(built) == 1
    pack = built[0]
    assert pack["enforcement_level"] == EnforcementLevel.MANDATORY
    names = [p.name for p in pack["policies"]]
    assert len(names) == len(set(names)) == 10
    assert all(p.enforcement_level is None for p in pack["policies"])  # none overrides the pack


@pytest.mark.parametrize("text,seconds", [("744h", 744 * 3600), ("31d", 31 * 86400), ("1w2d", 9 * 86400),
                                          ("24h0m0s", 86400), ("0s", 0), (0, 0)])
def test_durations(text, seconds):
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("text", ["", "12", "forever", "h", None, True, 30])
def test_not_durations(text):
    assert duration_seconds(text) is None


def test_runbook_urls_resolve_to_files(tmp_path):
    (tmp_path / "logs").mkdir()
    (tmp_path / "backup-job-failed.md").write_text("x")
    (tmp_path / "logs" / "loki-down.md").write_text("x")
    assert runbook_path("https://runbooks.home.arpa/backup-job-failed", tmp_path) == tmp_path / "backup-job-failed.md"
    assert runbook_path("https://git.home.arpa/ops/stack/blob/main/runbooks/logs/loki-down.md#triage", tmp_path) \
        == tmp_path / "logs" / "loki-down.md"
    assert runbook_path("https://runbooks.home.arpa/logs/loki-down", tmp_path) == tmp_path / "logs" / "loki-down.md"
    for url in ["https://runbooks.home.arpa/nope", "https://runbooks.home.arpa/../etc/passwd",
                "https://runbooks.home.arpa/{{ $labels.alertname }}", ""]:
        assert runbook_path(url, tmp_path) is None, url


@pytest.mark.parametrize("key,value", [("password", "hunter2"), ("routing_key", "0123456789abcdef0123456789abcdef"),
                                       ("apiKey", "k"), ("webhook_url", "https://chat.internal/hooks/pbs"),
                                       ("secretKey", "minio123"), ("client_secret", "abc")])
def test_credential_named_literals_are_found(key, value):
    assert credentials.scan({key: value}) != []


@pytest.mark.parametrize("key,value", [("password", "${GRAFANA_PASSWORD}"), ("password", "$__file{/run/secrets/pw}"),
                                       ("routing_key_file", "/etc/alertmanager/secrets/pd"), ("existingSecret", "grafana"),
                                       ("passwordKey", "admin-password"), ("token", ""), ("secretName", "loki-s3"),
                                       ("password", "<set with pulumi config set --secret>"), ("enabled", "true")])
def test_references_and_placeholders_pass(key, value):
    assert credentials.scan({key: value}) == []


@pytest.mark.parametrize("text", ["ghp_" + "a1B2" * 9, "AKIAIOSFODNN7EXAMPLE", "https://ops:s3cr3t@nas.home.arpa/",
                                  "-----BEGIN OPENSSH PRIVATE KEY-----", "glsa_" + "aB3d" * 8 + "_0a1b2c3d"])
def test_known_token_formats_are_found_anywhere(text):
    assert credentials.scan({"description": f"see {text}"}) != []


@pytest.mark.parametrize("text", ["sum(rate(pbs_job_success_total[1h])) / sum(rate(pbs_job_attempt_total[1h]))",
                                  "quay.io/prometheus/prometheus@sha256:" + "ab12" * 16,
                                  "PrometheusOperatorAdmissionWebhookPatch", "/var/lib/rancher/k3s/storage"])
def test_ordinary_config_is_not_a_secret(text):
    assert credentials.scan({"expr": text}) == []


def test_plain_turns_unknowns_into_a_marker_instead_of_raising():
    from pulumi_policy.proxy import UNKNOWN_STRING_VALUE, unknown_checking_proxy
    props = unknown_checking_proxy({"values": {"a": [UNKNOWN_STRING_VALUE]}})
    assert policies.plain(props) == {"values": {"a": [policies.UNKNOWN]}}
