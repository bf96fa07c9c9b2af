"""Prometheus rule files: the seed's recording rule, the playbooks' alerts and the SLO engine's.

Every alert carries `severity` and `service` labels (the routing table matches on them) and
`summary`, `description`, `runbook_url` and (with Grafana) `dashboard_url` annotations; both
links are added in rule_files, once, from model/links.py, so runbooks/<AlertName>.md must
exist for every alert name.
"""

from __future__ import annotations

from model import loki_health, loki_limits, long_term, network, probes, pve, recovery_alerts
from model import slo as slo_engine
from model.config import StackConfig, duration_seconds
from model.links import BACKUP_SERVICE, alert_links
from model.metrics import SCRAPED_JOBS_SERVICE, static_scrape_jobs
from model.rules import alert

STACK_SERVICE = "observability"

# Filesystems that are not disks, and the PBS datastore (PbsDatastoreUsageHigh covers it).
NODE_FS = 'fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs|fuse.*",mountpoint!~"/mnt/datastore/.*"'
NAS_NOT_A_DISK = '(?i).*(memory|swap|buffer|cache|shared).*'

def backup_recording_rule() -> dict:
    """The design seed's rule; dividing by `total > 0` keeps an hour without jobs from recording
    NaN (no sample instead) while an hour in which every job failed still records 0."""
    return {
        "record": "job:backup_success:ratio",
        "expr": "sum(rate(pbs_job_success_total[1h]))\n  /\n(sum(rate(pbs_job_attempt_total[1h])) > 0)",
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


def last_run_failed_rule() -> dict:
    return {
        "record": LAST_RUN_FAILED,
        "expr": (f'pbs_job_last_run_timestamp_seconds{{job_id!="manual"}}\n  > bool {ON_JOB}\n'
                 "pbs_job_last_success_timestamp_seconds"),
    }


def _flapping(selector: str = "") -> str:
    return f"changes({LAST_RUN_FAILED}{selector}[{FLAPPING_WINDOW}]) >= {FLAPPING_CHANGES}"


def _stale_backups(cfg: StackConfig) -> str:
    age = "time() - pbs_job_last_success_timestamp_seconds"
    overrides = cfg.metrics.backup_max_age_by_job
    parts = [f'{age}{{job_id="{job}"}} > {duration_seconds(max_age)}' for job, max_age in sorted(overrides.items())]
    rest = "|".join([*sorted(overrides), "manual"])
    parts.append(f'{age}{{job_id!~"{rest}"}} > {duration_seconds(cfg.metrics.backup_max_age)}')
    return "\nor\n".join(parts)


def backup_rules(cfg: StackConfig) -> list[dict]:
    """One incident per failed backup job, told once (see docs/metrics-slo.md): the warning from the
    failure on, the page once the retry did not fix it; both stay until a run of the job succeeds."""
    grace = cfg.metrics.backup_retry_grace
    failed_now = f"{LAST_RUN_FAILED}{{types}} == 1"
    # The last state the exporter reported: an exporter outage does not pass for a recovery
    # (TargetDown and BackupMetricsAbsent tell of the outage itself).
    failed = f"last_over_time({LAST_RUN_FAILED}{{types}}[{LAST_KNOWN}]) == 1"
    paged = 'ALERTS{alertname="BackupJobFailed",alertstate="firing",severity="critical"}'
    # Opens the page: no run succeeded within the grace, or the retry failed too (two runs ended
    # within the grace and none succeeded). Not for a flapping job: BackupJobFlapping tells of it.
    # With the recovery service, also the moment it gives up on the job's current failure (not an
    # earlier one a run has fixed since): the page waits for the automation, and only for it
    # (model/recovery_alerts.py).
    automation = f"    or\n    {recovery_alerts.gave_up(IS_BACKUP)}\n" if cfg.recovery else ""
    # Failed throughout the grace: Prometheus 3's range is left-open, (t - window, t], so the window
    # reaches one scrape further back to hold the sample taken when the grace began (2.x's [t - grace, t]).
    throughout = f"{duration_seconds(grace) + duration_seconds(cfg.metrics.scrape_interval):g}s"
    opens = (
        f"(\n  {failed_now.format(types=IS_BACKUP)}\n  and {ON_JOB}\n  (\n"
        f"    min_over_time({LAST_RUN_FAILED}{IS_BACKUP}[{throughout}]) == 1\n"
        f"    or\n"
        f"    (changes(pbs_job_last_run_timestamp_seconds{IS_BACKUP}[{grace}]) >= 2\n"
        f"      unless {ON_JOB} changes(pbs_job_last_success_timestamp_seconds{IS_BACKUP}[{grace}]) > 0)\n"
        f"{automation}"
        f"  )\n  unless {ON_JOB}\n  {_flapping(IS_BACKUP)}\n)"
    )
    # Holds it: once firing (this rule's own ALERTS at the previous evaluation) it stays until the
    # job's last run is a success; a retry that merely starts, or a window emptying, changes nothing.
    holds = f"(\n  {failed.format(types=IS_BACKUP)}\n  and {ON_JOB}\n  {paged}\n)"
    job = "{{ $labels.job_type }} job {{ $labels.job_id }} on datastore {{ $labels.datastore }}"
    return [
        last_run_failed_rule(),
        alert("BackupJobFailed", f"{opens}\nor {ON_JOB}\n{holds}", "critical", BACKUP_SERVICE,
              "A PBS backup job failed and its retry did not fix it",
              f"The last run of {job} failed, and its retry failed too"
              + (", the recovery service gave up on it," if cfg.recovery else "") + f" or no run succeeded within {grace}: "
              "the guests it covers have no fresh restore point. This resolves when a run of the job succeeds."),
        # The backup room hears of every failure at once. The warning stays beside the page until the
        # job recovers: a notification group only grows while the incident lasts, so a restarted
        # Alertmanager, which starts without alerts, can never announce part of it as resolved.
        alert("BackupJobFailed", f"{failed.format(types=IS_BACKUP)}\nunless {ON_JOB}\n{_flapping(IS_BACKUP)}",
              "warning", BACKUP_SERVICE,
              "A PBS backup job failed",
              f"The last run of {job} failed. It pages if the retry fails too or no run succeeds within {grace}; "
              "this resolves when a run succeeds."),
        alert("BackupJobFlapping", _flapping(), "warning", BACKUP_SERVICE,
              "A PBS job keeps alternating between failed and succeeded",
              f"{job} changed between failed and succeeded {{{{ $value }}}} times in the last {FLAPPING_WINDOW}. "
              "While it flaps it pages no one again (at most one incident a day); this resolves once it has "
              f"changed fewer than {FLAPPING_CHANGES} times in {FLAPPING_WINDOW}."),
        alert("BackupMaintenanceJobFailed",
              f"{failed.format(types=NOT_BACKUP)}\nunless {ON_JOB}\n{_flapping(NOT_BACKUP)}",
              "warning", BACKUP_SERVICE,
              "A PBS sync, verify, prune or gc job failed",
              f"The last run of {job} failed and no run succeeded within {grace}; this resolves when a run succeeds.",
              for_=grace),
        alert("BackupsStale", _stale_backups(cfg), "critical", BACKUP_SERVICE,
              "A PBS job has not succeeded within its expected window",
              f"The last success of {job} was {{{{ $value | humanizeDuration }}}} ago.",
              for_="10m"),
        alert("BackupMetricsAbsent", 'absent(pbs_job_last_success_timestamp_seconds{job_type="backup"})', "critical",
              BACKUP_SERVICE, "No backup job metrics reach Prometheus",
              "Prometheus has no pbs_job_last_success_timestamp_seconds for any {{ $labels.job_type }} job: the PBS job exporter is down, "
              "not scraped or sees no jobs, so failed and stale backups would go unnoticed.",
              for_="1h"),
    ]


def _usage_alerts(cfg: StackConfig, name: str, percent_used: str, service: str, summary: str, what: str,
                  for_: str = "15m") -> list[dict]:
    m = cfg.metrics
    return [
        alert(name, f"{percent_used} > {threshold}", severity, service, summary,
              f"{what} is {{{{ $value | printf \"%.1f\" }}}}% full (threshold {threshold}%).", for_=for_)
        for severity, threshold in (("warning", m.disk_warning_percent), ("critical", m.disk_critical_percent))
    ]


def disk_rules(cfg: StackConfig) -> list[dict]:
    rules = _usage_alerts(
        cfg, "NodeDiskUsageHigh",
        f"100 * (1 - node_filesystem_avail_bytes{{{NODE_FS}}} / node_filesystem_size_bytes{{{NODE_FS}}})",
        "nodes", "A node filesystem is filling up",
        "Filesystem {{ $labels.mountpoint }} on {{ $labels.instance }}")
    rules += _usage_alerts(
        cfg, "PbsDatastoreUsageHigh",
        "100 * pbs_datastore_used_bytes / (pbs_datastore_size_bytes > 0)",
        BACKUP_SERVICE, "A PBS datastore is filling up",
        "PBS datastore {{ $labels.datastore }} on {{ $labels.instance }}")
    nas_jobs = [job for job in static_scrape_jobs(cfg) if job.has_storage]
    if nas_jobs:
        sel = f'job=~"{"|".join(j.name for j in nas_jobs)}",hrStorageDescr!~"{NAS_NOT_A_DISK}"'
        rules += _usage_alerts(
            cfg, "NasStorageUsageHigh",
            f"100 * hrStorageUsed{{{sel}}} / (hrStorageSize{{{sel}}} > 0)",
            "storage", "A NAS volume is filling up",
            "Volume {{ $labels.hrStorageDescr }} of {{ $labels.instance }}")
    rules += _usage_alerts(
        cfg, "PersistentVolumeUsageHigh",
        "100 * kubelet_volume_stats_used_bytes / (kubelet_volume_stats_capacity_bytes > 0)",
        STACK_SERVICE, "A persistent volume (Prometheus TSDB, Loki chunks, ...) is filling up",
        "Volume {{ $labels.persistentvolumeclaim }} in namespace {{ $labels.namespace }}")
    return rules


def stack_rules(cfg: StackConfig) -> list[dict]:
    jobs = static_scrape_jobs(cfg)
    absent = "\nor\n".join(f'absent(up{{job="{j.name}",{SCRAPED_JOBS_SERVICE}="{j.service}"}})' for j in jobs)
    rules = [
        alert("Watchdog", "vector(1)", "none", STACK_SERVICE,
              "Dead man's switch: always firing while alerting works",
              "This alert always fires while the Prometheus of site {{ $externalLabels.site }} evaluates rules. The heartbeat monitor pages when its notifications stop: "
              "then Prometheus, Alertmanager or the path between them is down."),
        alert("TargetDown", f"up{{{recovery_alerts.OTHER_TARGETS}}} == 0" if cfg.recovery else "up == 0",
              "warning", "{{ $labels.service }}",
              "A scrape target is down",
              "Prometheus cannot scrape {{ $labels.instance }} of job {{ $labels.job }}: its metrics and alerts are blind.",
              for_="5m"),
    ]
    if jobs:
        rules.append(alert("ScrapeJobAbsent", absent, "warning", "{{ $labels.service }}",
                           "A configured scrape job has no targets",
                           "Prometheus has no `up` series for job {{ $labels.job }}: the scrape configuration was not loaded.",
                           for_="15m"))
    rules += [
        alert("PrometheusNotConnectedToAlertmanagers", "prometheus_notifications_alertmanagers_discovered < 1",
              "critical", STACK_SERVICE, "Prometheus knows no Alertmanager",
              "Prometheus {{ $labels.instance }} has discovered no Alertmanager: no alert reaches anyone.", for_="10m"),
        alert("PrometheusAlertDeliveryFailing",
              "100 * rate(prometheus_notifications_errors_total[5m])\n  / (rate(prometheus_notifications_sent_total[5m]) > 0) > 1",
              "critical", STACK_SERVICE, "Prometheus fails to send alerts to Alertmanager",
              "{{ $value | printf \"%.1f\" }}% of alerts from {{ $labels.instance }} to Alertmanager {{ $labels.alertmanager }} fail.",
              for_="15m"),
        # Each failure is announced on the other channel: PagerDuty's via Mattermost and back.
        alert("AlertmanagerNotificationsFailing",
              'rate(alertmanager_notifications_failed_total{integration="pagerduty"}[5m]) > 0',
              "warning", STACK_SERVICE, "Alertmanager fails to deliver notifications",
              "Alertmanager {{ $labels.instance }} fails to deliver to {{ $labels.integration }}.", for_="10m"),
        alert("AlertmanagerNotificationsFailing",
              'rate(alertmanager_notifications_failed_total{integration!="pagerduty"}[5m]) > 0',
              "critical", STACK_SERVICE, "Alertmanager fails to deliver notifications",
              "Alertmanager {{ $labels.instance }} fails to deliver to {{ $labels.integration }}.", for_="10m"),
    ]
    return rules


def rule_files(cfg: StackConfig) -> dict[str, dict]:
    """File stem -> Prometheus rule file, each loadable as it is by promtool and Prometheus."""
    interval = cfg.metrics.evaluation_interval
    files = {
        "backups": {"groups": [
            {"name": "backup-recording", "interval": interval, "rules": [backup_recording_rule()]},
            {"name": "backup-alerts", "interval": interval, "rules": backup_rules(cfg)},
        ]},
        "disks": {"groups": [{"name": "disk-usage", "interval": interval, "rules": disk_rules(cfg)}]},
        "stack": {"groups": [{"name": "stack-health", "interval": interval, "rules": stack_rules(cfg)}]},
    }
    if cfg.slos:
        files["slos"] = {"groups": slo_engine.rule_groups(cfg)}
    # What the playbooks diagnose, one rule module per domain.
    for stem, groups in (("network", network.rule_groups(cfg)), ("probes", probes.rule_groups(cfg)),
                          ("loki", loki_health.rule_groups(cfg)), ("virtualization", pve.rule_groups(cfg)),
                          ("loki-limits", loki_limits.rule_groups(cfg)), ("recovery", recovery_alerts.rule_groups(cfg)),
                          ("long-term", long_term.rule_groups(cfg, STACK_SERVICE))):
        if groups:
            files[stem] = {"groups": groups}
    grafana_url = cfg.grafana.url if cfg.grafana else None
    for rule in all_rules(files):
        if "alert" in rule:
            rule["annotations"].update(alert_links(rule["alert"], rule["labels"]["service"],
                                                   cfg.site.runbook_hub_url, grafana_url))
    return files


def all_rules(files: dict[str, dict]) -> list[dict]:
    return [rule for doc in files.values() for group in doc["groups"] for rule in group["rules"]]
