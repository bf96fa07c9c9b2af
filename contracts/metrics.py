"""Names the stack's alert rules read from the service's /metrics (model/recovery_alerts.py).

Here, and nowhere else, so that the rules and the service cannot drift apart; this module
imports nothing, so the Pulumi program can read it without the service's dependencies.
"""

# The start (alert startsAt) of the latest failure of the job the service gave up on; BackupJobFailed
# pages at once on it while it is newer than the job's last success (model/recovery_alerts.py).
GAVE_UP_METRIC = "recovery_backup_job_gave_up_failure_timestamp_seconds"
GAVE_UP_LABELS = ("job_type", "job_id", "datastore")  # the PBS job exporter's job labels
ACTIONS_METRIC = "recovery_actions_total"
EXHAUSTED_METRIC = "recovery_exhausted_targets"
LIMIT_REACHED_METRIC = "recovery_attempt_limit_reached_total"  # the attempt guard refused to act again
SCRAPE_JOB = "recovery"  # the scrape job of the service's /metrics (model/metrics.py)
