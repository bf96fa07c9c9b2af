"""The limits Loki enforces, as series for the "Logs" dashboard: recorded from the same overrides Loki gets.

Loki publishes its runtime overrides as `loki_overrides` only from the `overrides-exporter`
target, and the Loki chart (18.11.0) renders that target only in its distributed mode
(`loki.deployment.isDistributed`); the stack runs single-binary or simple-scalable. So the
limit lines are recorded here from `model.logs.tenant_overrides`, the very overrides the chart
puts into Loki's runtime config, and from the default retention of `limits_config`: what Loki
enforces and what the dashboard draws cannot drift apart.
"""

from __future__ import annotations

from model.rules import RecordingRule, RuleGroup
from model.config import StackConfig, duration_seconds
from model.values.logs import tenant_overrides

INGESTION_RATE = "tenant:loki_ingestion_rate_limit:bytes"
MAX_STREAMS = "tenant:loki_max_streams_limit:count"
RETENTION = "tenant:loki_retention_period:seconds"
DEFAULT_RETENTION = "loki:default_retention_period:seconds"


def recording_rules(cfg: StackConfig) -> list[RecordingRule]:
    assert cfg.logs is not None
    rules = []
    for tenant, limits in tenant_overrides(cfg.logs).items():
        for record, value in ((INGESTION_RATE, round(limits["ingestion_rate_mb"] * 2**20)),
                              (MAX_STREAMS, limits["max_global_streams_per_user"]),
                              (RETENTION, duration_seconds(limits["retention_period"]))):
            rules.append({"record": record, "expr": f"vector({value})", "labels": {"tenant": tenant}})
    rules.append({"record": DEFAULT_RETENTION, "expr": f"vector({duration_seconds(cfg.logs.default_retention)})"})
    return rules


def rule_groups(cfg: StackConfig) -> list[RuleGroup]:
    if not cfg.logs:
        return []
    return [{"name": "loki-limits", "interval": cfg.metrics.evaluation_interval, "rules": recording_rules(cfg)}]
