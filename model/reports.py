"""The quarterly PBS job report as the stack runs it: a Kubernetes CronJob beside Prometheus.

Why a CronJob and not a systemd timer on a VM: the report reads Prometheus, which is a ClusterIP
Service of the cluster (no VM of the stack can reach it without exposing it, unauthenticated,
on the LAN); inside the cluster its name resolves, the Mattermost webhook arrives as a mounted
Secret like Alertmanager's, the NAS share is a plain `nfs` volume, CronJob's `timeZone` runs it
at local time, and a failed run raises kube-prometheus-stack's KubeJobFailed alert.

The price is an image: there is no public one with reportlab, so the job runs the official
python image, and an init container installs reportlab and the two libraries it imports, pinned
by hash (services/report/requirements.txt), into an emptyDir. The report's code, the contracts it
reads and its settings come from a ConfigMap rendered here, so the job runs exactly the
services/report of this commit.

Pure: plain data only; components/reports.py turns it into resources.
"""

from __future__ import annotations

import json
from pathlib import Path

from contracts import services
from contracts.metrics import PBS_JOB_ATTEMPT
from model.facts import secrets
from model.rules.backups import backup_recording_rule
from model.config import Role, StackConfig, duration_seconds
from model.hosts import scheduling_for
from model.pod_security import container_security_context
from model.values.metrics import ALERTMANAGER_SECRET
from model.values.routing import SECRET_FILES

NAME = "pbs-report"
# The CPython the pinned wheels are built for; by digest, so IfNotPresent never meets another image.
IMAGE = "python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d"
ROOT = Path(__file__).resolve().parent.parent
SERVICE_DIR = ROOT / "services" / "report"
# The packages the job imports, as the pod lays them out under MOUNT: the service, and the
# contracts module of the metric names it reads.
SHIPPED = {"report": sorted(SERVICE_DIR.glob("*.py")),
           "contracts": [ROOT / "contracts" / "__init__.py", ROOT / "contracts" / "metrics.py"]}
MOUNT = "/opt/pbs-report"
DEPENDENCIES = "/opt/pbs-report-deps"
ARCHIVE_MOUNT = "/archive"
SECRET_MOUNT = "/etc/pbs-report/secrets"
SETTINGS_FILE = "settings.json"
REQUIREMENTS_FILE = "requirements.txt"
ANNOUNCER = "pbs-report"
# The cluster may be down at the scheduled minute: the job still starts within this time.
STARTING_DEADLINE_SECONDS = 12 * 3600


def prometheus_url(cfg: StackConfig) -> str:
    """The stack's Prometheus as seen from inside the cluster (model/facts/endpoints.py); with
    metrics.longTerm the long-term store's query API, which keeps a whole quarter whatever
    Prometheus' own retention, and deduplicates an HA pair's samples."""
    if cfg.metrics.long_term:
        return cfg.endpoints().long_term_query_url
    return cfg.endpoints().prometheus_url


def slo_objective_percent(cfg: StackConfig) -> float:
    """The objective of the SLO on the PBS job counters; without one, the design's recording rule's."""
    for slo in cfg.slos:
        if slo.service == services.BACKUPS and (slo.sli.total_events or "").startswith(PBS_JOB_ATTEMPT):
            return slo.objective
    return float(backup_recording_rule()["labels"]["slo"])


def archive_location(cfg: StackConfig) -> str:
    """Where the reports are kept, as the announcement and the stack's output name it."""
    assert cfg.reports is not None
    nfs = cfg.reports.archive.nfs
    return f"{nfs.server}:{nfs.path}" if nfs else f"PersistentVolumeClaim {cfg.metrics.namespace}/{NAME}"


def archive_claim_spec(cfg: StackConfig) -> dict | None:
    """The claim the reports are kept on when reports.archive names no NFS share, else None."""
    assert cfg.reports is not None
    archive = cfg.reports.archive
    if archive.nfs:
        return None
    return {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": f"{archive.volume_gb}Gi"}},
            **({"storageClassName": archive.storage_class} if archive.storage_class else {})}


def report_settings(cfg: StackConfig, stack: str, scheduled: bool = False) -> dict:
    """services/report's settings (ReportSettings); `scheduled` adds the job's archive and chat."""
    settings: dict = {
        "stack": stack,
        "site": cfg.site.name,
        "timezone": cfg.site.timezone,
        "prometheus_url": prometheus_url(cfg),
        "slo_objective_percent": slo_objective_percent(cfg),
        "evaluation_interval_seconds": duration_seconds(cfg.metrics.evaluation_interval),
        "incident_selector": f'ALERTS{{alertstate="firing",service="{services.BACKUPS}"}}',
    }
    if scheduled and cfg.reports:
        room = cfg.backup_room()
        settings["archive"] = {"directory": ARCHIVE_MOUNT, "location": archive_location(cfg),
                               "retention_years": cfg.reports.archive.retention_years}
        settings["announce"] = {
            "webhook_url_file": f"{SECRET_MOUNT}/{SECRET_FILES[secrets.MATTERMOST_WEBHOOK_URL]}",
            "channel": room.mattermost.channel if room and room.mattermost else None,
            "username": ANNOUNCER,
        }
    return settings


def schedule(cfg: StackConfig) -> str:
    """Cron schedule, in the site's time zone: the first day of each quarter at reports.runAt."""
    assert cfg.reports is not None
    hour, minute = (int(part) for part in cfg.reports.run_at.split(":"))
    return f"{minute} {hour} 1 1,4,7,10 *"


def code_files() -> dict[str, str]:
    """ConfigMap key -> content of every module the job runs; the key is its path with '.' for '/'
    (a key cannot hold a '/'), e.g. report.collect.py for report/collect.py."""
    return {f"{package}.{path.name}": path.read_text() for package, paths in SHIPPED.items() for path in paths}


def config_map_data(cfg: StackConfig, stack: str) -> dict[str, str]:
    return {
        **code_files(),
        REQUIREMENTS_FILE: (SERVICE_DIR / REQUIREMENTS_FILE).read_text(),
        SETTINGS_FILE: json.dumps(report_settings(cfg, stack, scheduled=True), indent=2) + "\n",
    }


def _config_map_items() -> list[dict]:
    items = [{"key": key, "path": key.replace(".", "/", 1)} for key in code_files()]
    return items + [{"key": REQUIREMENTS_FILE, "path": REQUIREMENTS_FILE}, {"key": SETTINGS_FILE, "path": SETTINGS_FILE}]


def install_command() -> list[str]:
    return ["python", "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check", "--no-deps",
            "--only-binary=:all:", "--require-hashes", "--target", DEPENDENCIES,
            "-r", f"{MOUNT}/{REQUIREMENTS_FILE}"]


def report_command() -> list[str]:
    return ["python", "-m", "report", "--settings", f"{MOUNT}/{SETTINGS_FILE}", "--publish"]


def cron_job_spec(cfg: StackConfig) -> dict:
    assert cfg.reports is not None
    nfs = cfg.reports.archive.nfs
    archive = ({"nfs": {"server": nfs.server, "path": nfs.path}} if nfs
               else {"persistentVolumeClaim": {"claimName": NAME}})
    pinned = scheduling_for(Role.PROMETHEUS)
    env = [{"name": "HOME", "value": "/tmp"}, {"name": "PYTHONDONTWRITEBYTECODE", "value": "1"}]
    code = {"name": "code", "mountPath": MOUNT, "readOnly": True}
    deps = {"name": "dependencies", "mountPath": DEPENDENCIES}
    tmp = {"name": "tmp", "mountPath": "/tmp"}
    webhook_key = SECRET_FILES[secrets.MATTERMOST_WEBHOOK_URL]
    return {
        "schedule": schedule(cfg),
        "timeZone": cfg.site.timezone,
        "concurrencyPolicy": "Forbid",
        "startingDeadlineSeconds": STARTING_DEADLINE_SECONDS,
        "successfulJobsHistoryLimit": 4,
        "failedJobsHistoryLimit": 4,
        "jobTemplate": {"spec": {
            "backoffLimit": 3,
            "activeDeadlineSeconds": 3600,
            "template": {
                "metadata": {"labels": {"app.kubernetes.io/name": NAME}},
                "spec": {
                    "restartPolicy": "Never",
                    "automountServiceAccountToken": False,
                    "nodeSelector": pinned.node_selector(),
                    "tolerations": pinned.tolerations(),
                    "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "runAsGroup": 65534,
                                        "seccompProfile": {"type": "RuntimeDefault"},
                                        # a fresh claim's root is root's: the kubelet hands it to the job's group
                                        **({} if nfs else {"fsGroup": 65534})},
                    "initContainers": [{
                        "name": "install-reportlab",
                        "image": IMAGE,
                        "command": install_command(),
                        "env": env,
                        "volumeMounts": [code, deps, tmp],
                        "securityContext": container_security_context(),
                        "resources": {"requests": {"cpu": "50m", "memory": "128Mi"}, "limits": {"cpu": "1", "memory": "256Mi"}},
                    }],
                    "containers": [{
                        "name": "report",
                        "image": IMAGE,
                        "command": report_command(),
                        "workingDir": MOUNT,
                        "env": env + [{"name": "PYTHONPATH", "value": f"{MOUNT}:{DEPENDENCIES}"}],
                        "volumeMounts": [code, {**deps, "readOnly": True}, tmp,
                                         {"name": "archive", "mountPath": ARCHIVE_MOUNT},
                                         {"name": "backup-room", "mountPath": SECRET_MOUNT, "readOnly": True}],
                        "securityContext": container_security_context(),
                        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
                    }],
                    "volumes": [
                        {"name": "code", "configMap": {"name": NAME, "items": _config_map_items()}},
                        {"name": "dependencies", "emptyDir": {"sizeLimit": "200Mi"}},
                        {"name": "tmp", "emptyDir": {"sizeLimit": "100Mi"}},
                        {"name": "archive", **archive},
                        # Only the webhook key of the Alertmanager receivers' Secret: one secret, one Secret.
                        {"name": "backup-room", "secret": {"secretName": ALERTMANAGER_SECRET,
                                                           "items": [{"key": webhook_key, "path": webhook_key}]}},
                    ],
                },
            },
        }},
    }
