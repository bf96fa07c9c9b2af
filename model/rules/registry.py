"""Prometheus rule files: the seed's recording rule, the playbooks' alerts and the SLO engine's.

Every alert carries `severity` and `service` labels (the routing table matches on them) and
`summary`, `description`, `runbook_url` and (with Grafana) `dashboard_url` annotations; both
links are added in rule_files, once, from model/links.py, so runbooks/<AlertName>.md must
exist for every alert name.
"""

from __future__ import annotations

from contracts import alerts
from contracts.alerts import Alert
from contracts.metrics import (PBS_DATASTORE_SIZE, PBS_DATASTORE_USED, PBS_JOB_ATTEMPT, PBS_JOB_LAST_RUN,
                               PBS_JOB_LAST_SUCCESS, PBS_JOB_SUCCESS)
from model import long_term, probes, pve
from model.rules import loki_health, loki_limits, network
from model.rules import recovery as recovery_alerts
from model.rules import slo as slo_engine
from model.config import StackConfig, duration_seconds
from model.facts.links import alert_links
from model.values.metrics import SCRAPED_JOBS_SERVICE, static_scrape_jobs
from model.rules import alert

# Filesystems that are not disks, and the PBS datastore (PbsDatastoreUsageHigh covers it).
NODE_FS = 'fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs|fuse.*",mountpoint!~"/mnt/datastore/.*"'
NAS_NOT_A_DISK = '(?i).*(memory|swap|buffer|cache|shared).*'

def backup_recording_rule() -> dict:
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


def last_run_failed_rule() -> dict:
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


def backup_rules(cfg: StackConfig) -> list[dict]:
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
    # (model/recovery_alerts.py).
    automation = f"    or\n    {recovery_alerts.gave_up(IS_BACKUP)}\n" if cfg.recovery else ""
    opens = (
        f"(\n  {failed_now.format(types=IS_BACKUP)}\n  and {ON_JOB}\n  (\n"
        f"    min_over_time({LAST_RUN_FAILED}{IS_BACKUP}[{grace}]) == 1\n"
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


def _usage_alerts(cfg: StackConfig, spec: Alert, percent_used: str, summary: str, what: str,
                  for_: str = "15m") -> list[dict]:
    m = cfg.metrics
    return [
        alert(spec, f"{percent_used} > {threshold}", severity, summary,
              f"{what} is {{{{ $value | printf \"%.1f\" }}}}% full (threshold {threshold}%).", for_=for_)
        for severity, threshold in (("warning", m.disk_warning_percent), ("critical", m.disk_critical_percent))
    ]


def disk_rules(cfg: StackConfig) -> list[dict]:
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
        sel = f'job=~"{"|".join(j.name for j in nas_jobs)}",hrStorageDescr!~"{NAS_NOT_A_DISK}"'
        rules += _usage_alerts(
            cfg, alerts.NAS_STORAGE_USAGE_HIGH,
            f"100 * hrStorageUsed{{{sel}}} / (hrStorageSize{{{sel}}} > 0)",
            "A NAS volume is filling up",
            "Volume {{ $labels.hrStorageDescr }} of {{ $labels.instance }}")
    rules += _usage_alerts(
        cfg, alerts.PERSISTENT_VOLUME_USAGE_HIGH,
        "100 * kubelet_volume_stats_used_bytes / (kubelet_volume_stats_capacity_bytes > 0)",
        "A persistent volume (Prometheus TSDB, Loki chunks, ...) is filling up",
        "Volume {{ $labels.persistentvolumeclaim }} in namespace {{ $labels.namespace }}")
    return rules


def stack_rules(cfg: StackConfig) -> list[dict]:
    jobs = static_scrape_jobs(cfg)
    absent = "\nor\n".join(f'absent(up{{job="{j.name}",{SCRAPED_JOBS_SERVICE}="{j.service}"}})' for j in jobs)
    rules = [
        alert(alerts.WATCHDOG, "vector(1)", "none", "Dead man's switch: always firing while alerting works",
              "This alert always fires while the Prometheus of site {{ $externalLabels.site }} evaluates rules. The heartbeat monitor pages when its notifications stop: "
              "then Prometheus, Alertmanager or the path between them is down."),
        alert(alerts.TARGET_DOWN, f"up{{{recovery_alerts.OTHER_TARGETS}}} == 0" if cfg.recovery else "up == 0",
              "warning", "A scrape target is down",
              "Prometheus cannot scrape {{ $labels.instance }} of job {{ $labels.job }}: its metrics and alerts are blind.",
              for_="5m", service="{{ $labels.service }}"),
    ]
    if jobs:
        rules.append(alert(alerts.SCRAPE_JOB_ABSENT, absent, "warning", "A configured scrape job has no targets",
                           "Prometheus has no `up` series for job {{ $labels.job }}: the scrape configuration was not loaded.",
                           for_="15m", service="{{ $labels.service }}"))
    rules += [
        alert(alerts.PROMETHEUS_NOT_CONNECTED_TO_ALERTMANAGERS, "prometheus_notifications_alertmanagers_discovered < 1",
              "critical", "Prometheus knows no Alertmanager",
              "Prometheus {{ $labels.instance }} has discovered no Alertmanager: no alert reaches anyone.", for_="10m"),
        alert(alerts.PROMETHEUS_ALERT_DELIVERY_FAILING,
              "100 * rate(prometheus_notifications_errors_total[5m])\n  / (rate(prometheus_notifications_sent_total[5m]) > 0) > 1",
              "critical", "Prometheus fails to send alerts to Alertmanager",
              "{{ $value | printf \"%.1f\" }}% of alerts from {{ $labels.instance }} to Alertmanager {{ $labels.alertmanager }} fail.",
              for_="15m"),
        # Each failure is announced on the other channel: PagerDuty's via Mattermost and back.
        alert(alerts.ALERTMANAGER_NOTIFICATIONS_FAILING,
              'rate(alertmanager_notifications_failed_total{integration="pagerduty"}[5m]) > 0',
              "warning", "Alertmanager fails to deliver notifications",
              "Alertmanager {{ $labels.instance }} fails to deliver to {{ $labels.integration }}.", for_="10m"),
        alert(alerts.ALERTMANAGER_NOTIFICATIONS_FAILING,
              'rate(alertmanager_notifications_failed_total{integration!="pagerduty"}[5m]) > 0',
              "critical", "Alertmanager fails to deliver notifications",
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
                          ("long-term", long_term.rule_groups(cfg))):
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
