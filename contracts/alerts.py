"""Every alert the stack defines under a fixed name, with the `service` label it carries.

The rule generators (model/), the recovery catalog (contracts/recovery.py), the drill's scenarios
and the runbooks (runbooks/<name>.md) refer to an alert by these names. An SLO's alerts are named
after the SLO (model/rules/slo.py); an alert whose service is None takes it from the target's labels.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts import services


@dataclass(frozen=True)
class Alert:
    name: str
    service: str | None


# backups
BACKUP_JOB_FAILED = Alert("BackupJobFailed", services.BACKUPS)
BACKUP_JOB_FLAPPING = Alert("BackupJobFlapping", services.BACKUPS)
BACKUP_MAINTENANCE_JOB_FAILED = Alert("BackupMaintenanceJobFailed", services.BACKUPS)
BACKUPS_STALE = Alert("BackupsStale", services.BACKUPS)
BACKUP_METRICS_ABSENT = Alert("BackupMetricsAbsent", services.BACKUPS)
# restore drills and per-guest backup coverage (the backup room, none pages)
RESTORE_DRILL_FAILED = Alert("RestoreDrillFailed", services.BACKUPS)
RESTORE_DRILL_STALE = Alert("RestoreDrillStale", services.BACKUPS)
RESTORE_TIME_ABOVE_TARGET = Alert("RestoreTimeAboveTarget", services.BACKUPS)
GUEST_BACKUP_STALE = Alert("GuestBackupStale", services.BACKUPS)
GUEST_NEVER_BACKED_UP = Alert("GuestNeverBackedUp", services.BACKUPS)
GUEST_NOT_VERIFIED = Alert("GuestNotVerified", services.BACKUPS)
# disks
NODE_DISK_USAGE_HIGH = Alert("NodeDiskUsageHigh", services.NODES)
PBS_DATASTORE_USAGE_HIGH = Alert("PbsDatastoreUsageHigh", services.BACKUPS)
NAS_STORAGE_USAGE_HIGH = Alert("NasStorageUsageHigh", services.STORAGE)
PERSISTENT_VOLUME_USAGE_HIGH = Alert("PersistentVolumeUsageHigh", services.OBSERVABILITY)
# Loki
LOKI_COMPACTION_STALLED = Alert("LokiCompactionStalled", services.LOGS)
LOKI_RETENTION_STALLED = Alert("LokiRetentionStalled", services.LOGS)
LOKI_DELETE_REQUESTS_BACKLOG = Alert("LokiDeleteRequestsBacklog", services.LOGS)
LOKI_INGESTION_REFUSED = Alert("LokiIngestionRefused", services.LOGS)
# network
NETWORK_INTERFACE_SATURATED = Alert("NetworkInterfaceSaturated", services.NETWORK)
# synthetic probes
SYNTHETIC_PROBE_FAILING = Alert("SyntheticProbeFailing", None)
PROBE_CERTIFICATE_EXPIRING = Alert("ProbeCertificateExpiring", None)
# the recovery service
RECOVERY_SERVICE_DOWN = Alert("RecoveryServiceDown", services.BACKUPS)
RECOVERY_ACTIONS_FAILING = Alert("RecoveryActionsFailing", services.BACKUPS)
RECOVERY_REMEDIATION_LOOP = Alert("RecoveryRemediationLoop", services.BACKUPS)
# the stack itself
WATCHDOG = Alert("Watchdog", services.OBSERVABILITY)
TARGET_DOWN = Alert("TargetDown", None)
SCRAPE_JOB_ABSENT = Alert("ScrapeJobAbsent", None)
PROMETHEUS_NOT_CONNECTED_TO_ALERTMANAGERS = Alert("PrometheusNotConnectedToAlertmanagers", services.OBSERVABILITY)
PROMETHEUS_ALERT_DELIVERY_FAILING = Alert("PrometheusAlertDeliveryFailing", services.OBSERVABILITY)
ALERTMANAGER_NOTIFICATIONS_FAILING = Alert("AlertmanagerNotificationsFailing", services.OBSERVABILITY)
PROMETHEUS_REMOTE_WRITE_BEHIND = Alert("PrometheusRemoteWriteBehind", services.OBSERVABILITY)
PROMETHEUS_REMOTE_WRITE_FAILING = Alert("PrometheusRemoteWriteFailing", services.OBSERVABILITY)
# virtualization
PVE_NODE_DOWN = Alert("PveNodeDown", services.VIRTUALIZATION)
PVE_QUORUM_LOST = Alert("PveQuorumLost", services.VIRTUALIZATION)
PVE_STORAGE_UNAVAILABLE = Alert("PveStorageUnavailable", services.VIRTUALIZATION)
PVE_HA_RESOURCE_NOT_STARTED = Alert("PveHaResourceNotStarted", services.VIRTUALIZATION)
PVE_REPLICATION_FAILING = Alert("PveReplicationFailing", services.VIRTUALIZATION)
PVE_GUEST_NOT_BACKED_UP = Alert("PveGuestNotBackedUp", services.VIRTUALIZATION)

ALL: dict[str, Alert] = {a.name: a for a in globals().values() if isinstance(a, Alert)}
