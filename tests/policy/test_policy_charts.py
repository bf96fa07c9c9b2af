"""policy/charts.py against the default values.yaml of the chart versions the stack targets."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import pytest
import yaml

from policy import charts, credentials
from policy.charts import CHARTS, MISSING, TARGET_VERSIONS, AnyOf, lookup
from tests.shared_data import CHARTS as SHARED_CHARTS



@lru_cache(maxsize=None)
def defaults(chart: str) -> dict[str, Any]:
    return yaml.safe_load((SHARED_CHARTS / f"{chart}-{TARGET_VERSIONS[chart]}" / "values.yaml").read_text())


def _flags(conditions) -> list[Any]:
    out = []
    for c in conditions:
        out += _flags(c.conditions) if isinstance(c, AnyOf) else [c]
    return out


@pytest.mark.parametrize("chart", sorted(CHARTS))
def test_chart_version_is_the_one_in_shared(chart):
    meta = yaml.safe_load((SHARED_CHARTS / f"{chart}-{TARGET_VERSIONS[chart]}" / "Chart.yaml").read_text())
    assert meta["name"] == chart and meta["version"] == TARGET_VERSIONS[chart]


@pytest.mark.parametrize("chart", sorted(CHARTS))
def test_workload_paths_are_resources_blocks_of_the_chart(chart):
    values = defaults(chart)
    for workload in CHARTS[chart].workloads:
        if workload.subchart:
            continue
        block = lookup(values, workload.resources)
        assert block is not MISSING and (block is None or isinstance(block, dict)), workload.resources


@pytest.mark.parametrize("chart", sorted(CHARTS))
def test_every_resources_block_of_the_chart_is_in_the_table(chart):
    known = {w.resources for w in CHARTS[chart].workloads}
    # Pods `helm test` starts are not part of an installed release.
    not_workloads = {"testFramework.resources"}
    found = set()

    def walk(value, path):
        if isinstance(value, dict):
            for key, child in value.items():
                here = f"{path}.{key}" if path else key
                if key == "resources" and (child is None or isinstance(child, dict)):
                    found.add(here)
                else:
                    walk(child, here)
    walk(defaults(chart), "")
    assert found - known - not_workloads == set()


@pytest.mark.parametrize("chart", sorted(CHARTS))
def test_condition_defaults_match_the_chart(chart):
    facts = CHARTS[chart]
    conditions = [c for w in facts.workloads for c in w.when] + list(facts.persistence)
    conditions += [c for _, _, when in facts.latest_by_default for c in when]
    for condition in _flags(conditions):
        actual = lookup(defaults(chart), condition.path)
        if actual is MISSING:  # a subchart's switch, not in the parent's values
            assert condition.path.split(".")[0] in {w.subchart for w in facts.workloads if w.subchart}, condition.path
            continue
        assert actual == condition.default, condition.path


def test_latest_by_default_matches_the_chart():
    for chart, facts in CHARTS.items():
        for path, tag, _ in facts.latest_by_default:
            assert lookup(defaults(chart), path) == tag


def test_kube_prometheus_stack_default_alertmanager_routing():
    config = defaults("kube-prometheus-stack")["alertmanager"]["config"]
    shipped = charts.KUBE_PROMETHEUS_STACK.extra["alertmanager_default_config"]
    assert config["route"]["receiver"] == shipped["route"]["receiver"]
    assert config["route"]["routes"] == shipped["route"]["routes"]
    assert config["receivers"] == shipped["receivers"]


@pytest.mark.parametrize("chart", ["kube-prometheus-stack", "grafana", "opentelemetry-collector",
                                   "prometheus-snmp-exporter", "tempo"])
def test_chart_defaults_hold_no_secret_looking_values(chart):
    assert credentials.scan(defaults(chart), "values") == []


def test_loki_chart_default_minio_credentials_are_flagged():
    # The chart ships example MinIO credentials; copying them into a release must not pass.
    paths = {f.path for f in credentials.scan(defaults("loki"), "values")}
    assert {"values.minio.rootPassword", "values.minio.users[0].secretKey"} <= paths
