"""The report as the stack schedules it: the `reports` config, the CronJob and ConfigMap it renders."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest

from model import reports
from model.cloud_init import user_data
from model.config import Role
from model.hosts import plan_vms
from tests.conftest import FAKE_SECRETS
from tests.configs import homelab_config, problems_of
from tools.provider_schemas import read_schema_file
from services.report.settings import ReportSettings

CRONJOB = "kubernetes:batch/v1:CronJob"
CONFIGMAP = "kubernetes:core/v1:ConfigMap"


# --- config ---------------------------------------------------------------------------------

def _without_reports(s):
    s.pop("reports")


@pytest.mark.parametrize("change, path, message", [
    (lambda s: s["metrics"]["prometheus"].update(retention="90d"), "metrics.prometheus.retention",
     "must be at least 93d with reports"),
    (lambda s: s["reports"].update(announceTo="pagerduty-primary"), "reports.announceTo",
     "'pagerduty-primary' is not a mattermost receiver"),
    (lambda s: s["alerting"]["routes"].pop(1), "reports.announceTo", 'no route sends service = "backups"'),
    (lambda s: s["site"].update(timezone="Europe/Berln"), "site.timezone", "unknown time zone 'Europe/Berln'"),
    (lambda s: s["reports"].update(runAt="6:00"), "reports.runAt", "must match"),
    (lambda s: s["reports"]["archive"].update(retentionYears=0), "reports.archive.retentionYears", "must be >= 1"),
    (lambda s: s["reports"]["archive"]["nfs"].update(path="volume1/pbs-reports"), "reports.archive.nfs.path",
     "must match"),
    (lambda s: s["reports"]["archive"].update(volumeGb=0), "reports.archive.volumeGb", "must be >= 1"),
    (lambda s: s["reports"]["archive"].update(storageClass="local-path"), "reports.archive.storageClass",
     "with archive.nfs the reports are kept on the share"),
    (lambda s: s["reports"].update(schedule="@daily"), "reports.schedule", "unknown key (expected one of: runAt, archive, announceTo)"),
])
def test_bad_reports_config_is_reported_by_key_path(change, path, message):
    problems = problems_of(change)
    assert path in problems and message in problems[path], problems


def test_without_reports_nothing_needs_a_long_retention():
    def change(s):
        _without_reports(s)
        s["metrics"]["prometheus"]["retention"] = "30d"

    assert homelab_config(change).reports is None


def test_the_backup_room_is_the_routing_tables_unless_named():
    assert homelab_config().backup_room().name == "mattermost-backup-room"
    named = homelab_config(lambda s: s["reports"].update(announceTo="mattermost-ops-room"))
    assert named.backup_room().mattermost.channel == "ops"


# --- settings -------------------------------------------------------------------------------

def test_settings_derive_from_the_stack():
    cfg = homelab_config()
    settings = ReportSettings.from_dict(reports.report_settings(cfg, "homelab", scheduled=True))
    assert settings.timezone == "Europe/Berlin"
    assert settings.slo_objective_percent == 99.5  # the backup-success SLO of the stack
    assert settings.prometheus_url == "http://kube-prometheus-stack-prometheus.monitoring.svc.cluster.local:9090"
    assert settings.incident_selector == 'ALERTS{alertstate="firing",service="backups"}'
    # The server is the recovery NAS's NFS server (the host of recovery.nas.url): the stack file names only the path.
    assert settings.archive.location == "nas.home.arpa:/mnt/tank/pbs-reports" and settings.archive.retention_years == 7
    assert settings.announce.channel == "backups"
    other = homelab_config(lambda s: s["metrics"].update(namespace="observability"))
    assert reports.prometheus_url(other) == "http://kube-prometheus-stack-prometheus.observability.svc.cluster.local:9090"
    unscheduled = reports.report_settings(cfg, "homelab")
    assert "archive" not in unscheduled and "announce" not in unscheduled


def test_without_a_backup_slo_the_design_objective_applies():
    cfg = homelab_config(lambda s: s.update(slos=[x for x in s["slos"] if x["service"] != "backups"]))
    assert reports.slo_objective_percent(cfg) == 99.5
    cfg = homelab_config(lambda s: s["slos"][0].update(objective=99.9))
    assert reports.slo_objective_percent(cfg) == 99.9


# --- rendered resources ---------------------------------------------------------------------

def test_the_cronjob_runs_quarterly_in_the_sites_time_zone(homelab):
    job = homelab.recording.named(CRONJOB, "pbs-report").inputs
    spec = job["spec"]
    assert spec["schedule"] == "0 6 1 1,4,7,10 *" and spec["timeZone"] == "Europe/Berlin"
    assert spec["concurrencyPolicy"] == "Forbid"
    assert job["metadata"]["namespace"] == "monitoring"
    pod = spec["jobTemplate"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"observability.homelab/workload": "prometheus"}
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["archive"]["nfs"] == {"server": "nas.home.arpa", "path": "/mnt/tank/pbs-reports"}
    # The webhook URL: one key of the Alertmanager receivers' Secret, mounted as a file.
    assert volumes["backup-room"]["secret"] == {"secretName": "alertmanager-receivers", "items": [
        {"key": "mattermost-webhook-url", "path": "mattermost-webhook-url"}]}
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "report", "--settings", "/opt/pbs-report/settings.json",
                                    "--publish"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert all(c["securityContext"]["readOnlyRootFilesystem"] for c in pod["containers"] + pod["initContainers"])


def test_no_secret_reaches_the_report_objects(homelab):
    for type_ in (CRONJOB, CONFIGMAP):
        text = json.dumps(homelab.recording.raw_inputs[homelab.recording.named(type_, "pbs-report").urn])
        for value in FAKE_SECRETS.values():
            assert value not in text


def test_the_configmap_ships_services_report_and_its_contracts_as_they_are(homelab):
    data = homelab.recording.named(CONFIGMAP, "pbs-report").inputs["data"]
    root = Path(reports.__file__).resolve().parent.parent
    modules = {f"report/{p.name}": p.read_text() for p in (root / "services" / "report").glob("*.py")}
    modules |= {f"contracts/{name}": (root / "contracts" / name).read_text() for name in ("__init__.py", "metrics.py")}
    settings = ReportSettings.from_dict(json.loads(data["settings.json"]))
    assert settings.archive.directory == "/archive"
    assert settings.announce.webhook_url_file == "/etc/pbs-report/secrets/mattermost-webhook-url"
    # Every key the pod mounts exists, and every module is mounted at its path in its package.
    job = homelab.recording.named(CRONJOB, "pbs-report").inputs
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    items = next(v for v in pod["volumes"] if v["name"] == "code")["configMap"]["items"]
    assert {i["key"] for i in items} == set(data)
    assert {i["path"]: data[i["key"]] for i in items if i["key"].endswith(".py")} == modules


def test_the_job_installs_reportlab_pinned_by_hash_at_the_tested_version():
    lock = (reports.SERVICE_DIR / "requirements.txt").read_text()
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\\n\s+--hash=sha256:[0-9a-f]{64}$", lock, re.M)
    assert {name for name, _ in pins} == {"reportlab", "pillow", "charset-normalizer"}
    dev = (reports.ROOT / "requirements-dev.txt").read_text()
    assert f"reportlab=={dict(pins)['reportlab']}" in dev.splitlines()
    command = reports.install_command()
    assert {"--require-hashes", "--no-deps", "--only-binary=:all:"} <= set(command)


def _strict(node):
    """Kubernetes' OpenAPI with unknown fields refused, as the API server refuses them."""
    if isinstance(node, dict):
        node = {k: _strict(v) for k, v in node.items()}
        if node.get("type") == "object" and "properties" in node:
            node.setdefault("additionalProperties", False)
        return node
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


@pytest.fixture(scope="module")
def cronjob_schema():
    definitions = _strict(json.loads(read_schema_file("k8s-swagger.json"))["definitions"])
    return {"$ref": "#/definitions/io.k8s.api.batch.v1.CronJob", "definitions": definitions}


def test_the_cronjob_is_valid_kubernetes(homelab, cronjob_schema):
    job = homelab.recording.named(CRONJOB, "pbs-report").inputs
    jsonschema.validate(job, cronjob_schema)


def test_the_schema_check_refuses_a_misspelt_field(homelab, cronjob_schema):
    job = copy.deepcopy(homelab.recording.named(CRONJOB, "pbs-report").inputs)
    job["spec"]["timezone"] = job["spec"].pop("timeZone")
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(job, cronjob_schema)


def test_without_reports_no_report_objects(tmp_path):
    from tests.stacks import write_stack
    from tools.offline_engine import run_program

    recording = run_program(write_stack(tmp_path, _without_reports), FAKE_SECRETS)
    # (The runbook hub has a ConfigMap of its own.)
    assert not recording.of_type(CRONJOB) and not [r for r in recording.of_type(CONFIGMAP) if r.name == "pbs-report"]


def test_the_prometheus_host_can_mount_the_archive():
    for cfg, wanted in ((homelab_config(), True), (homelab_config(_without_reports), False)):
        vm = next(v for v in plan_vms(cfg) if v.role == Role.PROMETHEUS)
        assert ("nfs-common" in user_data(cfg, vm, FAKE_SECRETS)["packages"]) is wanted


def _archive_on_a_volume(s):
    s["reports"]["archive"] = {"retentionYears": 3, "storageClass": "local-path"}


def test_without_an_nfs_share_the_reports_are_kept_on_a_protected_claim(tmp_path, cronjob_schema):
    from tests.stacks import write_stack
    from tools.offline_engine import run_program

    recording = run_program(write_stack(tmp_path, _archive_on_a_volume), FAKE_SECRETS)
    claim = recording.named("kubernetes:core/v1:PersistentVolumeClaim", "pbs-report")
    assert claim.options["protect"] is True
    assert claim.inputs["spec"] == {"accessModes": ["ReadWriteOnce"], "storageClassName": "local-path",
                                    "resources": {"requests": {"storage": "1Gi"}}}
    job = recording.named(CRONJOB, "pbs-report").inputs
    jsonschema.validate(job, cronjob_schema)
    pod = job["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    assert {"name": "archive", "persistentVolumeClaim": {"claimName": "pbs-report"}} in pod["volumes"]
    assert pod["securityContext"]["fsGroup"] == pod["securityContext"]["runAsGroup"]
    settings = ReportSettings.from_dict(json.loads(
        recording.named(CONFIGMAP, "pbs-report").inputs["data"][reports.SETTINGS_FILE]))
    assert settings.archive.location == "PersistentVolumeClaim monitoring/pbs-report"
    assert settings.archive.retention_years == 3
    assert recording.outputs["pbsReportArchive"] == settings.archive.location


def test_the_prometheus_host_mounts_nfs_only_for_an_nfs_archive():
    cfg = homelab_config(_archive_on_a_volume)
    vm = next(v for v in plan_vms(cfg) if v.role == Role.PROMETHEUS)
    assert "nfs-common" not in user_data(cfg, vm, FAKE_SECRETS)["packages"]
