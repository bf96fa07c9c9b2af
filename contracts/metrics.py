"""Metric names one part exposes and another reads: the rules (model/), the report and the drill.

The PBS job exporter (services/pbs_exporter, shipped to the host as a zipapp that carries this
module) writes every one of its names from here; tests/contracts/test_contracts.py holds its
exposition to them.
"""

# The PBS job exporter's (services/pbs_exporter/README.md "Metrics").
PBS_JOB_SUCCESS = "pbs_job_success_total"
PBS_JOB_ATTEMPT = "pbs_job_attempt_total"
PBS_JOB_LAST_RUN = "pbs_job_last_run_timestamp_seconds"
PBS_JOB_LAST_SUCCESS = "pbs_job_last_success_timestamp_seconds"
PBS_JOB_LAST_DURATION = "pbs_job_last_duration_seconds"
PBS_JOB_RUNNING = "pbs_job_running"
PBS_JOB_LABELS = ("job_type", "job_id", "datastore")
PBS_DATASTORE_SIZE = "pbs_datastore_size_bytes"
PBS_DATASTORE_USED = "pbs_datastore_used_bytes"
PBS_DATASTORE_AVAILABLE = "pbs_datastore_available_bytes"
# Written by the exporter, read by no rule (dashboards/backups.json shows some).
PBS_JOB_WARNING = "pbs_job_warning_total"
PBS_JOB_DURATION = "pbs_job_duration_seconds"  # a histogram
PBS_JOB_NEXT_RUN = "pbs_job_next_run_timestamp_seconds"
PBS_DATASTORE_SNAPSHOTS = "pbs_datastore_snapshots"
# The exporter's own health; its polls of PBS were called scrapes when the names were chosen.
PBS_UP = "pbs_up"
PBS_EXPORTER_POLLS = "pbs_exporter_scrapes_total"
PBS_EXPORTER_POLL_ERRORS = "pbs_exporter_scrape_errors_total"
PBS_EXPORTER_POLL_DURATION = "pbs_exporter_scrape_duration_seconds"
PBS_EXPORTER_LAST_POLL = "pbs_exporter_last_scrape_timestamp_seconds"
PBS_EXPORTER_TASKS_IGNORED = "pbs_exporter_tasks_ignored_total"

# Per-guest coverage, one series per guest and datastore (`guest` as PBS names the group: vm/101, ct/105), from
# the snapshots of every namespace; the coverage rules (model/rules/coverage.py) and the Backups dashboard read them.
PBS_GUEST_LABELS = ("guest", "datastore")
PBS_GUEST_LAST_BACKUP = "pbs_guest_last_backup_timestamp_seconds"  # the group's last-backup
PBS_GUEST_LAST_VERIFIED = "pbs_guest_last_verified_timestamp_seconds"  # its newest snapshot with verification.state ok
PBS_GUEST_SNAPSHOTS = "pbs_guest_snapshots"  # backup-count
PBS_GUEST_SYNC_JOBS = "pbs_guest_sync_jobs"  # sync jobs that copy the group to another datastore or remote
# prometheus-pve-exporter's, one per guest: id="qemu/101", name, node, type, template.
PVE_GUEST_INFO = "pve_guest_info"

# The recovery service's, read by its alert rules (model/rules/recovery.py).
# The start (alert startsAt) of the latest failure of the job the service gave up on; BackupJobFailed
# pages at once on it while it is newer than the job's last success (model/rules/recovery.py).
GAVE_UP_METRIC = "recovery_backup_job_gave_up_failure_timestamp_seconds"
GAVE_UP_LABELS = PBS_JOB_LABELS
ACTIONS_METRIC = "recovery_actions_total"
EXHAUSTED_METRIC = "recovery_exhausted_targets"
LIMIT_REACHED_METRIC = "recovery_attempt_limit_reached_total"  # the attempt guard refused to act again
SCRAPE_JOB = "recovery"
# Its restore drills, one series per guest (`guest` as PBS names the backup group: vm/101, ct/105).
RESTORE_DRILL_LABELS = ("guest", "tier")
RESTORE_DRILL_LAST_RUN = "recovery_restore_drill_last_run_timestamp_seconds"
RESTORE_DRILL_LAST_SUCCESS = "recovery_restore_drill_last_success_timestamp_seconds"
RESTORE_DRILL_LAST_DURATION = "recovery_restore_drill_last_duration_seconds"  # the guest's RTO: restore start to up
RESTORE_DRILL_LAST_RESULT = "recovery_restore_drill_last_result"  # 1 passed, 0 failed; label `step`: where it failed
RESTORE_DRILL_INTERVAL = "recovery_restore_drill_interval_seconds"  # the guest's drill interval (its tier's)  # the scrape job of the service's /metrics (model/values/metrics.py)
