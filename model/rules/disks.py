"""Disks filling up: node filesystems, PBS datastores, NAS volumes, persistent volumes."""

from __future__ import annotations

from contracts import alerts
from contracts.alerts import Alert
from contracts.metrics import PBS_DATASTORE_SIZE, PBS_DATASTORE_USED
from model.config import StackConfig
from model.rules import AlertRule, alert
from model.values.metrics import static_scrape_jobs
from model.values.snmp_modules import HR_STORAGE_DESCR, HR_STORAGE_SIZE, HR_STORAGE_USED


# Filesystems that are not disks, and the PBS datastore (PbsDatastoreUsageHigh covers it).
NODE_FS = 'fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs|fuse.*",mountpoint!~"/mnt/datastore/.*"'
NAS_NOT_A_DISK = '(?i).*(memory|swap|buffer|cache|shared).*'

def _usage_alerts(cfg: StackConfig, spec: Alert, percent_used: str, summary: str, what: str,
                  for_: str = "15m") -> list[AlertRule]:
    m = cfg.metrics
    return [
        alert(spec, f"{percent_used} > {threshold}", severity, summary,
              f"{what} is {{{{ $value | printf \"%.1f\" }}}}% full (threshold {threshold}%).", for_=for_)
        for severity, threshold in (("warning", m.disk_warning_percent), ("critical", m.disk_critical_percent))
    ]


def disk_rules(cfg: StackConfig) -> list[AlertRule]:
    rules = _usage_alerts(
        cfg, alerts.NODE_DISK_USAGE_HIGH,
        f"100 * (1 - node_filesystem_avail_bytes{{{NODE_FS}}} / node_filesystem_size_bytes{{{NODE_FS}}})",
        "A node filesystem is filling up",
        "Filesystem {{ $labels.mountpoint }} on {{ $labels.instance }}")
    rules += _usage_alerts(
        cfg, alerts.PBS_DATASTORE_USAGE_HIGH,
        f"100 * {PBS_DATASTORE_USED} / ({PBS_DATASTORE_SIZE} > 0)",
        "A PBS datastore is filling up",
        "PBS datastore {{ $labels.datastore }} on {{ $labels.instance }}")
    nas_jobs = [job for job in static_scrape_jobs(cfg) if job.has_storage]
    if nas_jobs:
        # The hrStorage module's table (model/preflight.py checks that each such target has it).
        sel = f'job=~"{"|".join(j.name for j in nas_jobs)}",{HR_STORAGE_DESCR}!~"{NAS_NOT_A_DISK}"'
        rules += _usage_alerts(
            cfg, alerts.NAS_STORAGE_USAGE_HIGH,
            f"100 * {HR_STORAGE_USED}{{{sel}}} / ({HR_STORAGE_SIZE}{{{sel}}} > 0)",
            "A NAS volume is filling up",
            f"Volume {{{{ $labels.{HR_STORAGE_DESCR} }}}} of {{{{ $labels.instance }}}}")
    rules += _usage_alerts(
        cfg, alerts.PERSISTENT_VOLUME_USAGE_HIGH,
        "100 * kubelet_volume_stats_used_bytes / (kubelet_volume_stats_capacity_bytes > 0)",
        "A persistent volume (Prometheus TSDB, Loki chunks, ...) is filling up",
        "Volume {{ $labels.persistentvolumeclaim }} in namespace {{ $labels.namespace }}")
    return rules
