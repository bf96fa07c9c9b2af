"""Names the stack's alert rules read from the service's /metrics (model/recovery_alerts.py).

Here, and nowhere else, so that the rules and the service cannot drift apart; this module
imports nothing, so the Pulumi program can read it without the service's dependencies.
"""

# 1 while the service has given up on the job's latest failure; BackupJobFailed pages on it at once.
GAVE_UP_METRIC = "recovery_backup_job_gave_up"
GAVE_UP_LABELS = ("job_type", "job_id", "datastore")  # the PBS job exporter's job labels
ACTIONS_METRIC = "recovery_actions_total"
EXHAUSTED_METRIC = "recovery_exhausted_targets"
LIMIT_REACHED_METRIC = "recovery_attempt_limit_reached_total"  # the attempt guard refused to act again
SCRAPE_JOB = "recovery"  # the scrape job of the service's /metrics (model/metrics.py)
