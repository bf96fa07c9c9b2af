"""The stack watching itself: the dead man's switch, targets and scrape jobs, alert delivery."""

from __future__ import annotations

from contracts import alerts
from model.config import StackConfig
from model.rules import AlertRule, alert
from model.rules import recovery as recovery_alerts
from model.values.metrics import SCRAPED_JOBS_SERVICE, static_scrape_jobs


def stack_rules(cfg: StackConfig) -> list[AlertRule]:
    jobs = static_scrape_jobs(cfg)
    absent = "\nor\n".join(f'absent(up{{job="{j.name}",{SCRAPED_JOBS_SERVICE}="{j.service}"}})' for j in jobs)
    rules = []
    if cfg.alerting and cfg.alerting.watchdog_receiver:
        # Only with a heartbeat to reach: unrouted, the always-firing alert would land in the root's room.
        rules.append(alert(
            alerts.WATCHDOG, "vector(1)", "none", "Dead man's switch: always firing while alerting works",
            "This alert always fires while the Prometheus of site {{ $externalLabels.site }} evaluates rules. The heartbeat monitor pages when its notifications stop: "
            "then Prometheus, Alertmanager or the path between them is down."))
    rules += [
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
