"""Every PromQL query of every dashboard parses and runs in a real Prometheus (the chart's version, from `make upstream`)."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import pytest

from model.grafana.dashboards import load_dashboards, prometheus_queries
from model.facts.links import PROMETHEUS_UID

# Grafana's built-in interval variables, as Grafana would fill them for a 6h range.
BUILTINS = {"__rate_interval": "2m", "__interval": "30s", "__interval_ms": "30000", "__range": "6h", "__range_s": "21600", "__range_ms": "21600000"}
VARIABLE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def variable_values(model: dict[str, Any]) -> dict[str, str]:
    """What each dashboard variable stands for in a query: its 'All' regex, current or first value."""
    values = dict(BUILTINS)
    for var in model.get("templating", {}).get("list", []):
        current = (var.get("current") or {}).get("value")
        options = [o["value"] for o in var.get("options", [])]
        if var.get("includeAll") and var.get("allValue"):
            value = var["allValue"]
        elif current:
            value = current if isinstance(current, str) else "|".join(current)
        elif options:
            value = options[0]
        else:
            value = "homelab"  # a query variable's value: any label value
        values[var["name"]] = value
    return values


def substitute(expr: str, values: dict[str, str]) -> str:
    def replace(m: re.Match) -> str:
        name = next(g for g in m.groups() if g)
        if name not in values:
            raise KeyError(f"undefined dashboard variable ${name} in {expr!r}")
        return values[name]

    return VARIABLE.sub(replace, expr)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:  # a bad query answers 400 with a JSON error body
        return exc.code, json.loads(exc.read())


@pytest.fixture(scope="module")
def prometheus(tmp_path_factory) -> str:
    binary = "prometheus"  # the chart's version, first on PATH (tests/conftest.py)
    work = tmp_path_factory.mktemp("prometheus")
    (work / "prometheus.yml").write_text("global:\n  scrape_interval: 30s\nscrape_configs: []\n")
    port = _free_port()
    log = (work / "prometheus.log").open("w")
    proc = subprocess.Popen(
        [binary, f"--config.file={work / 'prometheus.yml'}", f"--storage.tsdb.path={work / 'data'}",
         f"--web.listen-address=127.0.0.1:{port}", "--web.enable-lifecycle"],
        stdout=log, stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"prometheus exited: {(work / 'prometheus.log').read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{base}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("prometheus did not become ready within 30 s")
            time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        log.close()


def run_query(base: str, expr: str) -> tuple[int, dict[str, Any]]:
    return _get(f"{base}/api/v1/query?{urllib.parse.urlencode({'query': expr})}")


DASHBOARDS = load_dashboards()
QUERIES = [(d, q) for d in DASHBOARDS for q in prometheus_queries(d.model)]


def test_every_dashboard_has_prometheus_queries():
    # Guards the collection below: a dashboard whose queries are not found is not tested.
    for dashboard in DASHBOARDS:
        if dashboard.uid != "runbook-hub":
            assert len(prometheus_queries(dashboard.model)) >= 3, dashboard.uid
    assert len(QUERIES) >= 40


@pytest.mark.parametrize("dashboard,query", QUERIES, ids=[q.where for _, q in QUERIES])
def test_query_runs_in_prometheus(prometheus, dashboard, query):
    assert query.data_source_uid == PROMETHEUS_UID
    expr = substitute(query.expr, variable_values(dashboard.model))
    assert "$" not in expr, f"unsubstituted variable in {expr}"
    status, body = run_query(prometheus, expr)
    assert (status, body.get("status")) == (200, "success"), f"{query.where}: {expr}\n{body.get('error')}"


def test_a_broken_query_fails(prometheus):
    # The check above can fail: Prometheus rejects what does not parse or type-check.
    assert run_query(prometheus, "sum(rate(up[5m])")[1]["status"] == "error"
    assert run_query(prometheus, 'rate(sum(up))')[1]["status"] == "error"
    assert run_query(prometheus, "histogram_quantile(0.9, up)")[1]["status"] == "success"


def test_variables_are_substituted_like_grafana():
    model = {"templating": {"list": [
        {"type": "query", "name": "tenant", "includeAll": True, "allValue": ".+"},
        {"type": "custom", "name": "slo", "options": [{"text": "api", "value": "api-latency"}]},
    ]}}
    values = variable_values(model)
    assert substitute('x{tenant=~"$tenant", slo="${slo}"}[$__rate_interval]', values) == 'x{tenant=~".+", slo="api-latency"}[2m]'
    with pytest.raises(KeyError):
        substitute("x[$undefined]", values)
