"""The backup alerts on the PBS job exporter's series: the seed's recording rule, one state per job,
the warning, the page and what keeps it honest (stale, flapping, absent metrics)."""

from __future__ import annotations

from contracts import alerts
from contracts.metrics import PBS_JOB_ATTEMPT, PBS_JOB_LAST_RUN, PBS_JOB_LAST_SUCCESS, PBS_JOB_SUCCESS
from model.config import StackConfig, duration_seconds
from model.rules import AlertRule, RecordingRule, alert
from model.rules import recovery as recovery_alerts


def backup_recording_rule() -> RecordingRule:
    """The design seed's rule; dividing by `total > 0` keeps an hour without jobs from recording
    NaN (no sample instead) while an hour in which every job failed still records 0."""
    return {
        "record": "job:backup_success:ratio",
        "expr": f"sum(rate({PBS_JOB_SUCCESS}[1h]))\n  /\n(sum(rate({PBS_JOB_ATTEMPT}[1h])) > 0)",
        "labels": {"slo": "99.5"},
    }


# Per job, 1 while its last finished run failed and no run has succeeded since, else 0. Every
# per-job alert reads it, so each job's state has one definition. Manual runs (job_id="manual",
# one series per job type and datastore) are left out: that series mixes unrelated tasks an
# operator started and watched, so "failed and no success since" says nothing about a job.
LAST_RUN_FAILED = "pbs_job:last_run_failed:bool"
ON_JOB = "on(job_id, job_type, datastore)"
# Failed, succeeded, failed again (three changes of LAST_RUN_FAILED) within a day: flapping.
FLAPPING_WINDOW = "24h"
FLAPPING_CHANGES = 3
LAST_KNOWN = "1d"  # how long a job's last reported state stands in for a missing one
IS_BACKUP, NOT_BACKUP = '{job_type="backup"}', '{job_type!="backup"}'


def last_run_failed_rule() -> RecordingRule:
    return {
        "record": LAST_RUN_FAILED,
        "expr": (f'{PBS_JOB_LAST_RUN}{{job_id!="manual"}}\n  > bool {ON_JOB}\n'
                 f"{PBS_JOB_LAST_SUCCESS}"),
    }


def _flapping(selector: str = "") -> str:
    return f"changes({LAST_RUN_FAILED}{selector}[{FLAPPING_WINDOW}]) >= {FLAPPING_CHANGES}"


def _stale_backups(cfg: StackConfig) -> str:
    age = f"time() - {PBS_JOB_LAST_SUCCESS}"
    overrides = cfg.metrics.backup_max_age_by_job
    parts = [f'{age}{{job_id="{job}"}} > {duration_seconds(max_age)}' for job, max_age in sorted(overrides.items())]
    rest = "|".join([*sorted(overrides), "manual"])
    parts.append(f'{age}{{job_id!~"{rest}"}} > {duration_seconds(cfg.metrics.backup_max_age)}')
    return "\nor\n".join(parts)


def backup_rules(cfg: StackConfig) -> list[AlertRule]:
    """One incident per failed backup job, told once (see docs/metrics-slo.md): the warning from the
    failure on, the page once the retry did not fix it; both stay until a run of the job succeeds."""
    grace = cfg.metrics.backup_retry_grace
    failed_now = f"{LAST_RUN_FAILED}{{types}} == 1"
    # The last state the exporter reported: an exporter outage does not pass for a recovery
    # (TargetDown and BackupMetricsAbsent tell of the outage itself).
    failed = f"last_over_time({LAST_RUN_FAILED}{{types}}[{LAST_KNOWN}]) == 1"
    paged = f'ALERTS{{alertname="{alerts.BACKUP_JOB_FAILED.name}",alertstate="firing",severity="critical"}}'
    # Opens the page: no run succeeded within the grace, or the retry failed too (two runs ended
    # within the grace and none succeeded). Not for a flapping job: BackupJobFlapping tells of it.
    # With the recovery service, also the moment it gives up on the job's current failure (not an
    # earlier one a run has fixed since): the page waits for the automation, and only for it
    # (model/rules/recovery.py).
    automation = f"    or\n    {recovery_alerts.gave_up(IS_BACKUP)}\n" if cfg.recovery else ""
    # Failed throughout the grace: Prometheus 3's range is left-open, (t - window, t], so the window
    # reaches one scrape further back to hold the sample taken when the grace began (2.x's [t - grace, t]).
    throughout = f"{duration_seconds(grace) + duration_seconds(cfg.metrics.scrape_interval):g}s"
    opens = (
        f"(\n  {failed_now.format(types=IS_BACKUP)}\n  and {ON_JOB}\n  (\n"
        f"    min_over_time({LAST_RUN_FAILED}{IS_BACKUP}[{throughout}]) == 1\n"
        f"    or\n"
        f"    (changes({PBS_JOB_LAST_RUN}{IS_BACKUP}[{grace}]) >= 2\n"
        f"      unless {ON_JOB} changes({PBS_JOB_LAST_SUCCESS}{IS_BACKUP}[{grace}]) > 0)\n"
        f"{automation}"
        f"  )\n  unless {ON_JOB}\n  {_flapping(IS_BACKUP)}\n)"
    )
    # Holds it: once firing (this rule's own ALERTS at the previous evaluation) it stays until the
    # job's last run is a success; a retry that merely starts, or a window emptying, changes nothing.
    holds = f"(\n  {failed.format(types=IS_BACKUP)}\n  and {ON_JOB}\n  {paged}\n)"
    job = "{{ $labels.job_type }} job {{ $labels.job_id }} on datastore {{ $labels.datastore }}"
    return [
        last_run_failed_rule(),
        alert(alerts.BACKUP_JOB_FAILED, f"{opens}\nor {ON_JOB}\n{holds}", "critical", "A PBS backup job failed and its retry did not fix it",
              f"The last run of {job} failed, and its retry failed too"
              + (", the recovery service gave up on it," if cfg.recovery else "") + f" or no run succeeded within {grace}: "
              "the guests it covers have no fresh restore point. This resolves when a run of the job succeeds."),
        # The backup room hears of every failure at once. The warning stays beside the page until the
        # job recovers: a notification group only grows while the incident lasts, so a restarted
        # Alertmanager, which starts without alerts, can never announce part of it as resolved.
        alert(alerts.BACKUP_JOB_FAILED, f"{failed.format(types=IS_BACKUP)}\nunless {ON_JOB}\n{_flapping(IS_BACKUP)}",
              "warning", "A PBS backup job failed",
              f"The last run of {job} failed. It pages if the retry fails too or no run succeeds within {grace}; "
              "this resolves when a run succeeds."),
        alert(alerts.BACKUP_JOB_FLAPPING, _flapping(), "warning", "A PBS job keeps alternating between failed and succeeded",
              f"{job} changed between failed and succeeded {{{{ $value }}}} times in the last {FLAPPING_WINDOW}. "
              "While it flaps it pages no one again (at most one incident a day); this resolves once it has "
              f"changed fewer than {FLAPPING_CHANGES} times in {FLAPPING_WINDOW}."),
        alert(alerts.BACKUP_MAINTENANCE_JOB_FAILED,
              f"{failed.format(types=NOT_BACKUP)}\nunless {ON_JOB}\n{_flapping(NOT_BACKUP)}",
              "warning", "A PBS sync, verify, prune or gc job failed",
              f"The last run of {job} failed and no run succeeded within {grace}; this resolves when a run succeeds.",
              for_=grace),
        alert(alerts.BACKUPS_STALE, _stale_backups(cfg), "critical", "A PBS job has not succeeded within its expected window",
              f"The last success of {job} was {{{{ $value | humanizeDuration }}}} ago.",
              for_="10m"),
        alert(alerts.BACKUP_METRICS_ABSENT, f'absent({PBS_JOB_LAST_SUCCESS}{{job_type="backup"}})', "critical",
              "No backup job metrics reach Prometheus",
              f"Prometheus has no {PBS_JOB_LAST_SUCCESS} for any {{{{ $labels.job_type }}}} job: the PBS job exporter is down, "
              "not scraped or sees no jobs, so failed and stale backups would go unnoticed.",
              for_="1h"),
    ]
