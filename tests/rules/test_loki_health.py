"""Loki's health rules under promtool: a compactor stuck or never run, a delete backlog, refused ingestion."""

from __future__ import annotations

from tests.rules.test_alerts import GRAFANA, HUB, _firing, _unit_test

COMPACTED = "loki_boltdb_shipper_compact_tables_operation_last_successful_run_timestamp_seconds"
RETAINED = "loki_compactor_apply_retention_last_successful_run_timestamp_seconds"
LOKI = 'job="logging/loki",namespace="logging",pod="loki-0"'


def _runs_every_10m_until(minute: int, total: int) -> str:
    """A last-success timestamp (s) that follows 10m runs until `minute`, then stays put."""
    values = [str((m // 10) * 600 if m <= minute else (minute // 10) * 600) for m in range(total + 1)]
    return " ".join(values)


def test_a_compactor_that_stops_is_critical_after_three_intervals_and_30m(homelab, tmp_path):
    # Compacts every 10m, the last time at 60m; retention keeps running.
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        "input_series": [
            {"series": f"{COMPACTED}{{{LOKI}}}", "values": _runs_every_10m_until(60, 180)},
            {"series": f"{RETAINED}{{{LOKI}}}", "values": _runs_every_10m_until(180, 180)},
        ],
        "promql_expr_test": [
            _firing("LokiCompactionStalled", "60m", []),
            # Stale from 90m (30m after the last run), firing 30m later.
            _firing("LokiCompactionStalled", "115m", []),
            _firing("LokiCompactionStalled", "125m", [
                'ALERTS{alertname="LokiCompactionStalled",alertstate="firing",namespace="logging",reason="stopped",service="logs",severity="critical"}']),
            _firing("LokiRetentionStalled", "170m", []),
        ],
        "alert_rule_test": [{"eval_time": "130m", "alertname": "LokiCompactionStalled", "exp_alerts": [{
            "exp_labels": {"severity": "critical", "service": "logs", "namespace": "logging", "reason": "stopped"},
            "exp_annotations": {
                "summary": "Loki's compactor has not compacted recently",
                "description": "The compactor in namespace logging last compacted 1h 10m 0s ago (it runs every 10m; "
                               "alert after 30m): the index grows and expired logs stay on disk.",
                "runbook_url": f"{HUB}/runbooks/LokiCompactionStalled.md",
                "dashboard_url": f"{GRAFANA}/d/logs"}}]}],
    }], files=("loki",))


def test_a_compactor_that_never_applied_retention_is_critical(homelab, tmp_path):
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        "input_series": [{"series": f"{RETAINED}{{{LOKI}}}", "values": "0x150"}],
        "promql_expr_test": [
            _firing("LokiRetentionStalled", "25m", []),
            _firing("LokiRetentionStalled", "40m", [
                'ALERTS{alertname="LokiRetentionStalled",alertstate="firing",namespace="logging",reason="never-since-start",service="logs",severity="critical"}']),
        ],
    }], files=("loki",))


def test_an_old_delete_request_warns_after_an_hour(homelab, tmp_path):
    hour = 3600
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        "input_series": [{"series": f"loki_compactor_oldest_pending_delete_request_age_seconds{{{LOKI}}}",
                          "values": f"{23 * hour}+60x180"}],
        "promql_expr_test": [
            _firing("LokiDeleteRequestsBacklog", "110m", []),
            _firing("LokiDeleteRequestsBacklog", "125m", [
                'ALERTS{alertname="LokiDeleteRequestsBacklog",alertstate="firing",namespace="logging",service="logs",severity="warning"}']),
        ],
    }], files=("loki",))


def test_ingestion_refused_by_a_limit_is_reported_per_tenant(homelab, tmp_path):
    nas = 'tenant="nas",reason="rate_limited"'
    other = 'tenant="homelab",reason="greater_than_max_sample_age"'
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        "input_series": [
            {"series": f"loki_discarded_samples_total{{{LOKI},{nas}}}", "values": "0+600x40"},
            # Old lines refused by age are not a limit of the tenant.
            {"series": f"loki_discarded_samples_total{{{LOKI},{other}}}", "values": "0+600x40"},
        ],
        "promql_expr_test": [_firing("LokiIngestionRefused", "25m", [
            f'ALERTS{{alertname="LokiIngestionRefused",alertstate="firing",{nas},service="logs",severity="warning"}}'])],
    }], files=("loki",))
