"""The recovery service in the stack: its config section, the files the pbs host gets, and the
preview's build/<stack>/recovery/ (the same files), checked by the service's own config check."""

from __future__ import annotations

import base64
import gzip
import json
import os
import subprocess
import sys

import pytest
import yaml

from contracts import recovery as catalog
from model.config import ConfigError, load_stack_config
from services.recovery.config import Config
from tests.conftest import FAKE_SECRETS, ROOT


def test_the_rendered_config_passes_the_services_own_check(homelab):
    doc = yaml.safe_load((homelab.out / "recovery" / "recovery.yml").read_text())
    cfg = Config(doc, "build/homelab/recovery/recovery.yml")
    assert cfg.action("pbs-job-rerun")["mode"] == "enforce"
    assert cfg.action("nas-snapshot-prune")["mode"] == "dry-run"
    assert cfg["pagerduty"]["routeKey"] == '{}/{}/{severity="critical"}'  # below the route holding the table's
    # Each playbook of the catalog posts to its room: the homelab's backup room, or the root receiver's.
    rooms = {"backup": "backups", "ops": "ops"}
    assert cfg["mattermost"]["channels"] == {name: rooms[p.room] for name, p in catalog.PLAYBOOKS.items()}
    assert cfg["mattermost"]["channels"]["backup-failure"] == "backups"
    assert {t.alertname for t in cfg.triggers} == {a for p in catalog.PLAYBOOKS.values() for a in p.alerts} | {
        "ApiGatewayLatencyBudgetBurn"}  # not the probes' own SLO
    assert {"BackupJobFailed", "BackupMaintenanceJobFailed", "PersistentVolumeUsageHigh", "NasStorageUsageHigh"} <= {
        t.alertname for t in cfg.triggers}
    # Only the configured probes, through the exporter beside the service on the pbs host.
    assert cfg["probes"]["exporterUrl"] == "http://127.0.0.1:9115"
    assert [(t["name"], t["url"]) for t in cfg["probes"]["targets"]] == [
        ("api-gateway-health", "https://api.home.arpa/healthz"), ("api-gateway-openapi", "https://api.home.arpa/v1/openapi.json")]


def test_secrets_are_files_never_values(homelab):
    rendered = "".join(p.read_text() for p in (homelab.out / "recovery").iterdir())
    for value in FAKE_SECRETS.values():
        assert value not in rendered
    doc = yaml.safe_load((homelab.out / "recovery" / "recovery.yml").read_text())
    paths = [v for section in doc.values() if isinstance(section, dict) for k, v in section.items() if k.endswith("File")]
    assert paths and all(p.startswith("/run/credentials/recovery.service/") for p in paths)


def test_the_pbs_host_installs_the_service_with_debian_packages(homelab):
    user_data = yaml.safe_load((homelab.out / "hosts" / "pbs" / "user-data.yaml").read_text())
    assert {"python3-websocket", "python3-yaml", "python3-jsonschema", "ansible-core", "python3-prometheus-client"} <= set(
        user_data["packages"])
    paths = {f["path"]: f for f in user_data["write_files"]}
    assert "/usr/local/lib/recovery/recovery/engine.py" in paths
    assert "/usr/local/lib/recovery/playbooks/backup-fallback.yml" in paths
    secret = paths["/etc/recovery/secrets/pve-backup-token"]
    assert secret["permissions"] == "0600" and secret["owner"] == "root:root"
    script = next(c[2] for c in user_data["runcmd"] if isinstance(c, list) and "recovery@pbs" in c[-1])
    assert "acl update /datastore/homelab DatastoreReader --auth-id 'recovery@pbs!verify'" in script
    assert ["systemctl", "enable", "--now", "recovery.service"] in user_data["runcmd"]
    # The probes it runs on demand: Debian's blackbox exporter with the stack's modules, on localhost.
    assert "prometheus-blackbox-exporter" in user_data["packages"]
    modules = yaml.safe_load(paths["/etc/prometheus/blackbox.yml"]["content"])["modules"]
    assert modules == yaml.safe_load((homelab.out / "helm" / "prometheus-blackbox-exporter.values.yaml").read_text())["config"]["modules"]
    assert "--web.listen-address 127.0.0.1:9115" in paths["/etc/default/prometheus-blackbox-exporter"]["content"]
    # Only the pbs host runs it.
    assert "/etc/recovery/recovery.yml" not in (homelab.out / "hosts" / "prom" / "user-data.yaml").read_text()


def test_the_shipped_files_run_as_the_host_runs_them(homelab, tmp_path):
    """The service as cloud-init lays it out (/usr/local/lib/recovery: recovery/, contracts/), run as the
    unit runs it (`python3 -m recovery` with only that directory on the path), plans a backup failure."""
    user_data = yaml.safe_load((homelab.out / "hosts" / "pbs" / "user-data.yaml").read_text())
    install = tmp_path / "lib"
    for f in user_data["write_files"]:
        if f["path"].startswith("/usr/local/lib/recovery/"):
            target = install / f["path"].removeprefix("/usr/local/lib/recovery/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(gzip.decompress(base64.b64decode(f["content"])))
    config = tmp_path / "recovery.yml"
    config.write_text((homelab.out / "recovery" / "recovery.yml").read_text().replace(
        "/var/lib/recovery/state.sqlite3", str(tmp_path / "state.sqlite3")))
    alert = tmp_path / "alert.json"
    alert.write_text(json.dumps({"version": "4", "status": "firing", "truncatedAlerts": 0, "alerts": [{
        "status": "firing", "startsAt": "2026-12-07T01:00:00Z", "fingerprint": "f1",
        "labels": {"alertname": "BackupJobFailed", "job_type": "backup", "job_id": "vm/101", "datastore": "homelab"}}]}))
    done = subprocess.run([sys.executable, "-m", "recovery", "plan", "--config", str(config), "--alert", str(alert)],
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(install)}, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "playbook backup-failure" in done.stdout and "pve-backup-rerun [enforce]" in done.stdout


def test_systemd_accepts_the_unit(homelab, tmp_path):
    unit = tmp_path / "recovery.service"
    unit.write_text((homelab.out / "recovery" / "recovery.service").read_text())
    done = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "LoadCredential=webhook-token:/etc/recovery/secrets/webhook-token" in unit.read_text()


def stack_with(recovery: dict) -> dict:
    doc = yaml.safe_load((ROOT / "Pulumi.homelab.yaml").read_text())["config"]
    values = {k.split(":", 1)[1]: v for k, v in doc.items() if k.startswith("homelab-observability:")}
    values["recovery"] = recovery
    return values


def problems(recovery: dict) -> str:
    with pytest.raises(ConfigError) as caught:
        load_stack_config(stack_with(recovery), "homelab")
    return str(caught.value)


def test_config_problems_are_reported_by_key_path():
    assert "recovery.actions.pbs-job-rerun.mode: must match ^(off|dry-run|enforce)$ (got 'always')" in problems(
        {"pve": {"url": "https://pve1:8006"}, "actions": {"pbs-job-rerun": {"mode": "always"}}})
    text = problems({"pve": {"url": "https://pve1:8006"}, "actions": {"reboot": {"mode": "enforce"},
                                                                     "nas-snapshot-prune": {"mode": "enforce"}}})
    assert "recovery.actions.reboot: unknown action" in text
    assert "recovery.nas: is required while recovery.actions.nas-snapshot-prune is not off" in text


def test_the_restore_drills_reach_the_service_with_their_token_as_a_credential(homelab):
    doc = yaml.safe_load((homelab.out / "recovery" / "recovery.yml").read_text())
    drills = Config(doc)["restoreDrills"]
    assert drills["intervals"] == {"default": 30 * 86400, "tier-1": 7 * 86400}
    assert drills["vmidRange"] == {"first": 9900, "last": 9909} and drills["window"] == {"start": "10:00", "end": "16:00"}
    assert drills["tag"] == "restore-drill" and drills["storageHeadroom"] == 1.2  # the service's own defaults
    assert doc["pve"]["drillTokenFile"] == "/run/credentials/recovery.service/pve-drill-token"
    assert Config(doc).action("restore-drill-run")["mode"] == "enforce"


def test_restore_drill_problems_are_reported_by_key_path():
    drills = {"intervals": {"Tier 1": "7d"}, "vmidFirst": 212, "vmidLast": 200, "storage": "local-lvm", "pbsStorage": "pbs-homelab",
              "node": "pve9", "rtoTarget": "3h"}
    text = problems({"pve": {"url": "https://pve1:8006"}, "actions": {"restore-drill-run": {"mode": "enforce"}},
                     "restoreDrills": drills})
    for expected in ("recovery.restoreDrills: give guests, tags or both", "recovery.restoreDrills.intervals: needs 'default'",
                     "recovery.restoreDrills.intervals.Tier 1: is not a PVE tag", "recovery.restoreDrills.vmidFirst: 212 is above",
                     "recovery.restoreDrills.node: unknown Proxmox node 'pve9'",
                     "recovery.restoreDrills.rtoTarget: must be below maxDuration 2h"):
        assert expected in text, text
    text = problems({"pve": {"url": "https://pve1:8006"}, "actions": {"restore-drill-run": {"mode": "dry-run"}}})
    assert "recovery.restoreDrills: is required while recovery.actions.restore-drill-run is not off" in text
    text = problems({"pve": {"url": "https://pve1:8006"}, "restoreDrills": {**drills, "vmidFirst": 200, "vmidLast": 215,
                                                                           "guests": [201]}})
    assert "recovery.restoreDrills.guests: 201 lies in the scratch range" in text
    assert "the scratch range holds hosts." in text
