"""Per-guest backup coverage, independent of jobs: a guest a job dropped still shows (docs/restore-drills.md).

The series are the PBS job exporter's per-guest ones (contracts/metrics.py GUEST_*, one per guest
and datastore) and, for "never backed up", prometheus-pve-exporter's list of every guest. All three
alerts tell the backup room; none pages (BackupJobFailed and BackupsStale page for the jobs).
"""

from __future__ import annotations

from contracts import alerts
from contracts.metrics import PBS_GUEST_LAST_BACKUP, PBS_GUEST_LAST_VERIFIED, PVE_GUEST_INFO
from contracts.recovery import RESTORE_DRILL_RUN
from model.config import StackConfig, duration_seconds
from model.facts.durations import format_seconds, parse_seconds
from model.rules import AlertRule, RuleGroup, alert

# PBS verifies on a weekly verify job by default: a snapshot not verified within 8 days was missed by it.
VERIFY_MAX_AGE = "8d"
NEVER_BACKED_UP_FOR = "1h"
ON_GUEST = "on(guest, datastore)"


def pve_guests() -> str:
    """Every guest PVE has, named as PBS names its backup group (qemu/101 -> vm/101, lxc/105 -> ct/105)."""
    guests = f"max by (id, name) ({PVE_GUEST_INFO})"
    return f'label_replace(label_replace({guests}, "guest", "vm/$1", "id", "qemu/(.+)"), "guest", "ct/$1", "id", "lxc/(.+)")'


def never_backed_up_for(cfg: StackConfig) -> str:
    """Long enough for a restore drill's scratch guest, which exists for at most the drill's maximum duration."""
    drills = cfg.recovery.restore_drills if cfg.recovery and cfg.recovery.mode(RESTORE_DRILL_RUN) != "off" else None
    floor = parse_seconds(NEVER_BACKED_UP_FOR)
    return format_seconds(max(floor, parse_seconds(drills.max_duration) + 600) if drills else floor)


def coverage_rules(cfg: StackConfig) -> list[AlertRule]:
    guest = "guest {{ $labels.guest }} on datastore {{ $labels.datastore }}"
    rules = [
        alert(alerts.GUEST_BACKUP_STALE,
              f"time() - max by (guest, datastore) ({PBS_GUEST_LAST_BACKUP}) > {duration_seconds(cfg.metrics.backup_max_age)}",
              "warning", "A guest's newest backup is older than the backups' maximum age",
              f"The newest snapshot of {guest} is {{{{ $value | humanizeDuration }}}} old (maximum {cfg.metrics.backup_max_age}), "
              "whatever the jobs say: a job that dropped the guest, or one that fails for it alone.", for_="10m"),
        alert(alerts.GUEST_NOT_VERIFIED,
              f"time() - max by (guest, datastore) ({PBS_GUEST_LAST_VERIFIED}) > {duration_seconds(VERIFY_MAX_AGE)}\n"
              f"or {ON_GUEST}\n(max by (guest, datastore) ({PBS_GUEST_LAST_BACKUP}) < time() - {duration_seconds(VERIFY_MAX_AGE)}\n"
              f"  unless {ON_GUEST} {PBS_GUEST_LAST_VERIFIED})",
              "warning", "No snapshot of a guest was verified lately",
              f"No snapshot of {guest} passed a PBS verification within {VERIFY_MAX_AGE}: its chunks may be damaged "
              "unnoticed. A snapshot whose verification failed counts as not verified.", for_="1h"),
    ]
    if cfg.pve_exporter:
        rules.append(alert(
            alerts.GUEST_NEVER_BACKED_UP,
            f"{pve_guests()}\nunless on(guest) {PBS_GUEST_LAST_BACKUP}\nand on() (count({PBS_GUEST_LAST_BACKUP}) > 0)",
            "warning", "A guest has no backup on any datastore",
            "Guest {{ $labels.guest }} ({{ $labels.name }}) has no snapshot on any datastore PBS reports: it has no "
            "restore point at all.", for_=never_backed_up_for(cfg)))
    return rules


def rule_groups(cfg: StackConfig) -> list[RuleGroup]:
    return [{"name": "backup-coverage", "interval": cfg.metrics.evaluation_interval, "rules": coverage_rules(cfg)}]
