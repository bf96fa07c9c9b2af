"""The recovery service's catalog: its playbooks, the alerts that start them, and its actions.

One entry per action and per playbook. Adding a playbook is: its entries here, its steps in
services/recovery/playbooks.py, its runbook, its test. The Pulumi program renders the service's
config from this catalog (model/recovery.py, model/config/recovery.py) and the service checks that config
against it (services/recovery/config.py), so neither can name an action the other does not know.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts import alerts

MODES = ("off", "dry-run", "enforce")


@dataclass(frozen=True)
class Playbook:
    name: str
    alerts: tuple[str, ...]  # the alerts that start it (the stack may narrow one by its labels)
    needs: tuple[str, ...]  # the sections of the service's config it cannot run without
    room: str  # who hears of it in chat: "backup" (the backup room) or "ops" (the root receiver's room)


@dataclass(frozen=True)
class Secret:
    """A stack secret an action acts with: the service reads it from the file `credential`."""

    key: str  # the Pulumi config key
    credential: str
    purpose: str
    example: str


@dataclass(frozen=True)
class Action:
    name: str
    playbook: str
    summary: str  # what it does
    step: str  # what `python -m recovery plan` says it would do
    section: str  # the section of the service's config it needs unless off
    stack_needs: str | None = None  # the stack config's key path it needs unless off
    secret: Secret | None = None
    enforce_needs: str | None = None  # the key path of the service's config it needs to enforce (its write token)


BACKUP_FAILURE = "backup-failure"
DISK_USAGE = "disk-usage"
CUSTOMER_IMPACT = "customer-impact"
RESTORE_DRILL = "restore-drill"

PLAYBOOKS: dict[str, Playbook] = {p.name: p for p in [
    Playbook(BACKUP_FAILURE, (alerts.BACKUP_JOB_FAILED.name, alerts.BACKUP_MAINTENANCE_JOB_FAILED.name), ("pbs", "pve"), "backup"),
    Playbook(DISK_USAGE, (alerts.PERSISTENT_VOLUME_USAGE_HIGH.name, alerts.NAS_STORAGE_USAGE_HIGH.name), (), "ops"),
    # Started by the page of every SLO whose service has probes (model/recovery.py), none fixed here.
    Playbook(CUSTOMER_IMPACT, (), ("probes",), "ops"),
    # Started by the service's own schedule (services/recovery/drills.py), never by an alert.
    Playbook(RESTORE_DRILL, (), ("pve", "pbs", "restoreDrills"), "backup"),
]}

PBS_JOB_RERUN = "pbs-job-rerun"
PVE_BACKUP_RERUN = "pve-backup-rerun"
BACKUP_FALLBACK = "backup-fallback"
LOKI_COMPACTOR_REPORT = "loki-compactor-report"
NAS_SNAPSHOT_PRUNE = "nas-snapshot-prune"
CUSTOMER_IMPACT_PROBE = "customer-impact-probe"
RESTORE_DRILL_RUN = "restore-drill-run"

# In the order a playbook runs them.
ACTIONS: dict[str, Action] = {a.name: a for a in [
    Action(PBS_JOB_RERUN, BACKUP_FAILURE, "re-run a failed PBS sync, verify or prune job, or a datastore's GC",
           "sync/verify/prune/gc: read the failed task's log, post it; POST the job's run endpoint; verify its exitstatus",
           "pbs", enforce_needs="pbs.tokenFiles"),
    Action(PVE_BACKUP_RERUN, BACKUP_FAILURE, "re-run a failed vzdump backup job as PVE's 'Run now' does",
           "backup: read the PBS and vzdump logs, post them; 'Run now' of the PVE job on the guests' nodes; verify",
           "pve", enforce_needs="pve.backupTokenFile", secret=Secret("recoveryPveBackupToken", "pve-backup-token",
                                "PVE API token that re-runs backup jobs (VM.Backup, Datastore.AllocateSpace)",
                                "recovery@pve!backup=<uuid>")),
    Action(BACKUP_FALLBACK, BACKUP_FAILURE, "back the failed job's guests up to the NAS with ansible-playbook",
           "if the re-run failed: ansible-playbook backup-fallback.yml to the NAS, report the restore point",
           "fallback", "recovery.nas", Secret("recoveryPveFallbackToken", "pve-fallback-token",
                                              "PVE API token of the NAS fallback playbook (VM.Backup, Datastore.Allocate(Space))",
                                              "recovery@pve!fallback=<uuid>")),
    Action(LOKI_COMPACTOR_REPORT, DISK_USAGE, "post Loki's compactor health from Prometheus",
           "query Loki's compactor health from Prometheus and post it", "prometheus", "recovery.prometheusUrl"),
    Action(NAS_SNAPSHOT_PRUNE, DISK_USAGE, "delete NAS snapshots older than the retention",
           "delete NAS snapshots older than the retention (not held, not needed by replication, not the newest N)",
           "truenas", "recovery.nas", Secret("recoveryTrueNasApiKey", "truenas-api-key",
                                             "TrueNAS API key of a user with SNAPSHOT_READ, SNAPSHOT_DELETE, REPLICATION_TASK_READ",
                                             "7-xxxxxxxx")),
    Action(CUSTOMER_IMPACT_PROBE, CUSTOMER_IMPACT, "run the burning service's configured blackbox probes now and report",
           "run the burning service's configured blackbox probes now; post the answer to the room and the incident",
           "probes", "probes"),
    Action(RESTORE_DRILL_RUN, RESTORE_DRILL, "restore a guest's newest PBS snapshot into a scratch VMID, boot it isolated, "
           "time it (RTO), destroy it",
           "on schedule: newest snapshot on PBS; POST /nodes/{node}/qemu (archive, unique=1) or /lxc (restore=1) into a free "
           "scratch VMID; every NIC link_down=1; start; agent ping or running; stop; DELETE (purge, destroy-unreferenced-disks)",
           "restoreDrills", "recovery.restoreDrills", Secret("recoveryPveDrillToken", "pve-drill-token",
                                                             "PVE API token limited to the restore-drill pool and scratch storage "
                                                             "(docs/restore-drills.md lists its privileges)",
                                                             "recovery@pve!drill=<uuid>"),
           enforce_needs="pve.drillTokenFile"),
]}


def steps(playbook: str) -> list[Action]:
    return [a for a in ACTIONS.values() if a.playbook == playbook]


# The guard of an action the config names without one; an action it does not name is off.
ACTION_DEFAULTS = {"mode": "dry-run", "cooldownSeconds": 3600, "maxAttempts": 2, "windowSeconds": 86400}

# The service's settings and sections where its config file leaves them out.
DEFAULTS = {
    "enabled": True, "workers": 2, "requestTimeoutSeconds": 10, "pollSeconds": 10, "verifyTimeoutSeconds": 6 * 3600,
    "deferSeconds": 60, "logLines": 20, "killSwitchFile": "/etc/recovery/disabled",
}
SECTION_DEFAULTS = {
    "pbs": {"node": "localhost", "verifyTls": True, "tokenFiles": {}},
    "pve": {"verifyTls": True},
    "fallback": {"ansiblePlaybook": "ansible-playbook", "timeoutSeconds": 4 * 3600, "resultDir": "/var/lib/recovery/fallback"},
    "truenas": {"verifyTls": True, "keepNewest": 3},
    "prometheus": {"verifyTls": True},
    "probes": {"timeoutSeconds": 15},
    "mattermost": {"username": "recovery", "channels": {}, "verifyTls": True},
    "pagerduty": {"url": "https://events.pagerduty.com/v2/enqueue", "matchers": {}},
    "restoreDrills": {"tag": "restore-drill", "checkSeconds": 60, "maxDurationSeconds": 2 * 3600, "agentTimeoutSeconds": 600,
                      "storageHeadroom": 1.2, "window": {"start": "00:00", "end": "24:00"}},
}
