"""The "Logs" dashboard's limit panels read series that what is deployed really produces.

Loki's own metrics come from its pods through the chart's ServiceMonitor; the limits are recorded
from the overrides the chart hands Loki, because the chart runs no overrides-exporter in the
stack's modes (checked on `helm template` of the real chart, both modes).
"""

from __future__ import annotations

import json
import re

import yaml

from model.grafana.dashboards import iter_panels, load_dashboards
from model.rules.loki_limits import DEFAULT_RETENTION, INGESTION_RATE, MAX_STREAMS, RETENTION
from model.config import duration_seconds
from tests.rules.test_alerts import _unit_test

OVERRIDES_EXPORTER_METRICS = ("loki_overrides", "loki_overrides_defaults")


def _logs_queries() -> list[str]:
    logs = next(d for d in load_dashboards() if d.uid == "logs")
    return [t["expr"] for p in iter_panels(logs.model) for t in p.get("targets", []) if "expr" in t]


def _targets(stack_manifests) -> set[str]:
    found = set()
    for _, obj in stack_manifests.objects():
        spec = (obj.get("spec") or {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []):
            for arg in container.get("args") or []:
                if arg.startswith("-target="):
                    found.update(arg.removeprefix("-target=").split(","))
    return found


def test_no_panel_reads_the_overrides_exporter_that_is_not_deployed(stack_manifests):
    loki_targets = _targets(stack_manifests)
    assert loki_targets & {"all", "read", "write", "backend"}, loki_targets
    assert "overrides-exporter" not in loki_targets
    assert not [name for name, obj in stack_manifests.objects() if "overrides-exporter" in obj["metadata"]["name"]]
    for expr in _logs_queries():
        used = set(re.findall(r"\b[a-z_:]+\b", expr))
        assert not used & set(OVERRIDES_EXPORTER_METRICS), f"{expr} reads a series no deployed Loki exports"


def test_lokis_own_metrics_are_scraped_from_its_pods(stack_manifests):
    monitors = [obj for name, obj in stack_manifests.objects("ServiceMonitor") if name == "loki"]
    assert monitors, "the Loki release renders a ServiceMonitor"
    services = [obj for name, obj in stack_manifests.objects("Service") if name == "loki"]
    for monitor in monitors:
        selector = monitor["spec"]["selector"]["matchLabels"]
        ports = {e["port"] for e in monitor["spec"]["endpoints"]}
        selected = [s for s in services if selector.items() <= (s["metadata"].get("labels") or {}).items()]
        assert selected, selector
        assert any(ports & {p.get("name") for p in s["spec"]["ports"]} for s in selected), ports


def test_the_limit_panels_read_what_loki_is_configured_with(homelab, tmp_path):
    """promtool evaluates the recorded limits; the expectation comes from Loki's rendered Helm values."""
    values = yaml.safe_load((homelab.out / "helm" / "loki.values.yaml").read_text())["loki"]
    overrides = values["runtimeConfig"]["overrides"]
    expected = []
    for record, key, convert in ((INGESTION_RATE, "ingestion_rate_mb", lambda v: v * 2**20),
                                 (MAX_STREAMS, "max_global_streams_per_user", lambda v: v),
                                 (RETENTION, "retention_period", duration_seconds)):
        expected.append({"expr": record, "eval_time": "5m", "exp_samples": [
            {"labels": f'{record}{{tenant="{tenant}"}}', "value": convert(limits[key])} for tenant, limits in sorted(overrides.items())]})
    expected.append({"expr": DEFAULT_RETENTION, "eval_time": "5m", "exp_samples": [
        {"labels": DEFAULT_RETENTION, "value": duration_seconds(values["limits_config"]["retention_period"])}]})
    assert len(overrides) == 2
    _unit_test(homelab, tmp_path, [{"interval": "1m", "input_series": [], "promql_expr_test": expected}], files=("loki-limits",))
    text = json.dumps(_logs_queries())
    for record in (INGESTION_RATE, MAX_STREAMS, RETENTION, DEFAULT_RETENTION):
        assert record in text, f"the Logs dashboard draws {record}"
