"""Metric names one part exposes and another reads: the rules (model/), the report and the drill.

The PBS job exporter (services/pbs_exporter, shipped to the host as one file that stands alone)
writes its own names; tests/contracts/test_contracts.py holds its exposition to the names below.
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

# The recovery service's, read by its alert rules (model/rules/recovery.py).
# The start (alert startsAt) of the latest failure of the job the service gave up on; BackupJobFailed
# pages at once on it while it is newer than the job's last success (model/rules/recovery.py).
GAVE_UP_METRIC = "recovery_backup_job_gave_up_failure_timestamp_seconds"
GAVE_UP_LABELS = PBS_JOB_LABELS
ACTIONS_METRIC = "recovery_actions_total"
EXHAUSTED_METRIC = "recovery_exhausted_targets"
LIMIT_REACHED_METRIC = "recovery_attempt_limit_reached_total"  # the attempt guard refused to act again
SCRAPE_JOB = "recovery"  # the scrape job of the service's /metrics (model/values/metrics.py)
