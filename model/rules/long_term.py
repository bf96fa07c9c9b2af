"""Alerts on the remote-write to the long-term store (metrics.longTerm, model/long_term.py)."""

from __future__ import annotations

from contracts import alerts
from model.config import StackConfig, duration_seconds
from model.rules import RuleGroup, alert

# More than this share of samples refused by the store (the mixin's PrometheusRemoteStorageFailures: 1%).
REMOTE_WRITE_FAILED_RATIO = 0.01


def rule_groups(cfg: StackConfig) -> list[RuleGroup]:
    """Alerts on the remote-write to the long-term store, after the Prometheus mixin's ([] without it)."""
    lt = cfg.metrics.long_term
    if lt is None:
        return []
    return [{"name": "long-term-metrics", "interval": cfg.metrics.evaluation_interval, "rules": [
        alert(alerts.PROMETHEUS_REMOTE_WRITE_BEHIND,
              # The mixin's: how far the newest sample sent lags the newest sample appended.
              "(max_over_time(prometheus_remote_storage_highest_timestamp_in_seconds[5m])\n"
              "  - ignoring(remote_name, url) group_right\n"
              "max_over_time(prometheus_remote_storage_queue_highest_sent_timestamp_seconds[5m]))\n"
              f"> {duration_seconds(lt.max_lag)}",
              "warning", "Remote-write to the long-term store falls behind",
              "Prometheus {{ $labels.instance }} is {{ $value | humanizeDuration }} behind in writing to "
              "{{ $labels.remote_name }} ({{ $labels.url }}). Its WAL keeps the samples (about 2 hours) until "
              "the store takes them again; beyond that they are missing from long-range dashboards and the "
              "quarterly report.", for_="15m"),
        alert(alerts.PROMETHEUS_REMOTE_WRITE_FAILING,
              "rate(prometheus_remote_storage_samples_failed_total[5m])\n"
              "  / (rate(prometheus_remote_storage_samples_failed_total[5m]) + rate(prometheus_remote_storage_samples_total[5m]))\n"
              f"> {REMOTE_WRITE_FAILED_RATIO:g}",
              "warning", "Remote-write to the long-term store drops samples",
              "Prometheus {{ $labels.instance }} gives up on {{ $value | humanizePercentage }} of the samples for "
              "{{ $labels.remote_name }} ({{ $labels.url }}): the store refuses them, so retrying would not help; "
              "they are missing from the long-term data for good.", for_="15m"),
    ]}]
