"""Loki's own health, after the Loki mixin: a compactor that stopped, deletes that pile up, limits that refuse logs.

Loki's metrics reach Prometheus through the chart's ServiceMonitor. The compactor compacts the
index and, with retention on, applies retention and processes delete requests every
compaction interval (model/values/logs.py); the mixin's "has not run in 3h" becomes three of our
intervals, so a stuck compactor is seen before its disk fills (the disk runbook reads these
first). Refused ingestion is per tenant, by the reason Loki gives.
"""

from __future__ import annotations

from contracts import alerts
from contracts.alerts import Alert
from model.config import StackConfig, duration_seconds
from model.values.logs import COMPACTION_INTERVAL
from model.rules import AlertRule, RuleGroup, alert

# Reasons of loki_discarded_samples_total that mean a limit of the tenant refused the lines.
LIMIT_REASONS = "rate_limited|per_stream_rate_limit|stream_limit|line_too_long"
DELETE_BACKLOG_AGE = "24h"


def _stall_seconds() -> int:
    return 3 * duration_seconds(COMPACTION_INTERVAL)


def _stalled(spec: Alert, metric: str, what: str) -> list[AlertRule]:
    limit = _stall_seconds()
    minutes = limit // 60
    return [
        alert(spec, f"min by (namespace) (time() - ({metric} > 0)) > {limit}", "critical",
              f"Loki's compactor has not {what} recently",
              f"The compactor in namespace {{{{ $labels.namespace }}}} last {what} {{{{ $value | humanizeDuration }}}} ago "
              f"(it runs every {COMPACTION_INTERVAL}; alert after {minutes}m): the index grows and expired logs stay on disk.",
              for_=f"{minutes}m", labels={"reason": "stopped"}),
        # Never since it started: the timestamp stays 0. `reason` keeps the two alerts apart.
        alert(spec, f"max by (namespace) (max_over_time({metric}[{minutes * 2}m])) == 0", "critical",
              f"Loki's compactor has not {what} recently",
              f"The compactor in namespace {{{{ $labels.namespace }}}} has not {what} once since it started "
              f"({minutes * 2}m ago or more): the index grows and expired logs stay on disk.",
              for_=f"{minutes}m", labels={"reason": "never-since-start"}),
    ]


def alert_rules() -> list[AlertRule]:
    rules = _stalled(alerts.LOKI_COMPACTION_STALLED,
                     "loki_boltdb_shipper_compact_tables_operation_last_successful_run_timestamp_seconds", "compacted")
    rules += _stalled(alerts.LOKI_RETENTION_STALLED,
                      "loki_compactor_apply_retention_last_successful_run_timestamp_seconds", "applied retention")
    rules.append(alert(
        alerts.LOKI_DELETE_REQUESTS_BACKLOG,
        f"max by (namespace) (loki_compactor_oldest_pending_delete_request_age_seconds) > {duration_seconds(DELETE_BACKLOG_AGE)}",
        "warning", "Loki's log delete requests are not being processed",
        "The oldest pending delete request in namespace {{ $labels.namespace }} waits for {{ $value | humanizeDuration }}"
        f" (more than {DELETE_BACKLOG_AGE} after its cancel period): deletions someone asked for have not happened.",
        for_="1h"))
    rules.append(alert(
        alerts.LOKI_INGESTION_REFUSED,
        f'sum by (tenant, reason) (rate(loki_discarded_samples_total{{reason=~"{LIMIT_REASONS}"}}[5m])) > 0',
        "warning", "Loki refuses log lines of a tenant at its limits",
        "Tenant {{ $labels.tenant }} loses {{ $value | humanize }} lines/s to limit {{ $labels.reason }}: "
        "those logs are gone, not delayed.",
        for_="15m"))
    return rules


def rule_groups(cfg: StackConfig) -> list[RuleGroup]:
    if not cfg.logs:
        return []
    return [{"name": "loki-health", "interval": cfg.metrics.evaluation_interval, "rules": alert_rules()}]
