"""Long-term metrics for real: Prometheus remote-writes with the stack's rendered
remote-write config to single-node VictoriaMetrics (tests/long_term_world.py); the store goes away and
comes back, the WAL catches up without a gap, and the rendered remote-write alert fires meanwhile.
The alerts' thresholds are also unit-tested with promtool on the rendered rule file."""

from __future__ import annotations

import time

import pytest
import yaml

from model import long_term
from tests.conftest import FAKE_SECRETS, Rendered, run_tool
from tests.long_term_world import APP_METRIC, SCRAPE_INTERVAL, LongTermWorld
from tests.stacks import write_stack
from tests.rules.test_alerts import _unit_test
from tools.offline_engine import run_program

# Rendered with a lag threshold the compressed test can reach: 10s (the default is 10m).
MAX_LAG_S = 10
OUTAGE_S = 40.0


def _with_long_term(sections):
    sections["metrics"]["longTerm"] = {"storage": {"sizeGb": 100}, "maxLag": f"{MAX_LAG_S}s"}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Rendered:
    from tools.preview import render

    directory = tmp_path_factory.mktemp("long-term")
    recording = run_program(write_stack(directory, _with_long_term, stack="longterm"), FAKE_SECRETS)
    return Rendered(recording, render(recording, directory / "build"))


def test_the_rendered_remote_write_is_the_one_the_release_gets(rendered):
    values = yaml.safe_load((rendered.out / "helm" / "kube-prometheus-stack.values.yaml").read_text())
    spec = values["prometheus"]["prometheusSpec"]["remoteWrite"]
    doc = rendered.yaml("prometheus/remote-write.yaml")
    assert doc["remote_write"] == long_term.prometheus_remote_write(spec)
    [entry] = doc["remote_write"]
    assert entry["url"].endswith("/insert/0/prometheus/api/v1/write")
    assert entry["queue_config"]["max_samples_per_send"] <= entry["queue_config"]["capacity"]
    # promtool accepts it as prometheus.yml's remote_write
    path = rendered.out / "check.yml"
    path.write_text(yaml.safe_dump({"remote_write": doc["remote_write"]}))
    result = run_tool("promtool", "check", "config", path)
    assert result.returncode == 0, result.stdout + result.stderr


def test_series_arrive_survive_an_outage_of_the_store_without_a_gap_and_the_alert_fires(rendered, tmp_path):
    with LongTermWorld(rendered.out, tmp_path) as world:
        # The series arrive, answer PromQL, and carry the external site label but not the replica label.
        found = world.wait(lambda: world.vm_query(f"rate({APP_METRIC}[10s])"), 30)
        assert found, (tmp_path / "prometheus.log").read_text()[-2000:]
        [series] = found
        assert series["metric"]["site"] == "homelab" and "prometheus_replica" not in series["metric"]
        assert 0.9 < float(series["value"][1]) < 1.1  # the counter grows 1 per second
        assert world.alert_state("PrometheusRemoteWriteBehind") == "inactive"
        before = time.time() - 5
        outage = world.outage(OUTAGE_S, during=lambda: world.alert_state("PrometheusRemoteWriteBehind"))
        assert "firing" in outage["seen"], outage["seen"]
        assert outage["lag_at_restart"] > OUTAGE_S - 5
        assert outage["catch_up_s"] is not None, "remote-write did not catch up within 300 s"
        after = time.time() - 2
        # No gap: the store comes to hold every sample Prometheus scraped over the outage. The newest
        # may still be in a batch that waits up to batch_send_deadline (5s) to be sent.
        scraped = world.prom_timestamps(before, after)

        def stored_all():
            return [round(t, 3) for t in world.vm_timestamps(before, after)] == [round(t, 3) for t in scraped]

        world.wait(stored_all, 15)
        stored = world.vm_timestamps(before, after)
        assert len(scraped) > OUTAGE_S / SCRAPE_INTERVAL
        gaps = [b - a for a, b in zip(stored, stored[1:])]
        assert max(gaps) < 2.5 * SCRAPE_INTERVAL, f"largest gap {max(gaps):.1f}s"
        assert [round(t, 3) for t in stored] == [round(t, 3) for t in scraped]
        # Caught up: the lag falls back and the alert resolves.
        assert world.wait(lambda: world.alert_state("PrometheusRemoteWriteBehind") == "inactive", 60)
    print(f"remote-write catch-up after a {OUTAGE_S:g}s outage: {outage['catch_up_s']:.1f}s")


# --- the thresholds, under promtool ----------------------------------------------------------

def _promtool(rendered, tmp_path, tests: list[dict]) -> None:
    _unit_test(rendered, tmp_path, tests, files=("long-term",))


LABELS = 'instance="prometheus-0",job="prometheus"'
QUEUE = f'{LABELS},remote_name="long-term",url="http://vminsert/insert/0/prometheus/api/v1/write"'
QUEUE_LABELS = {"instance": "prometheus-0", "job": "prometheus", "remote_name": "long-term",
                "url": "http://vminsert/insert/0/prometheus/api/v1/write"}


def _annotations(alert: str, summary: str, description: str) -> dict:
    return {"summary": summary, "description": description,
            "runbook_url": f"https://runbooks.home.arpa/observability/runbooks/{alert}.md",
            "dashboard_url": "https://grafana.home.arpa/d/runbook-hub"}


def test_remote_write_behind_fires_after_the_lag_outlasts_its_for(rendered, tmp_path):
    # Appended samples advance 60 s a minute; the store stops taking them at minute 10.
    _promtool(rendered, tmp_path, [{
        "interval": "1m",
        "input_series": [
            {"series": f"prometheus_remote_storage_highest_timestamp_in_seconds{{{LABELS}}}", "values": "0+60x60"},
            {"series": f"prometheus_remote_storage_queue_highest_sent_timestamp_seconds{{{QUEUE}}}",
             "values": "0+60x10 600x50"},
        ],
        "alert_rule_test": [
            # lag passes 10s at minute 11; for: 15m
            {"eval_time": "25m", "alertname": "PrometheusRemoteWriteBehind", "exp_alerts": []},
            {"eval_time": "27m", "alertname": "PrometheusRemoteWriteBehind", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "service": "observability", **QUEUE_LABELS},
                # 27m of samples appended, sent up to 10m: 17 minutes behind.
                "exp_annotations": _annotations("PrometheusRemoteWriteBehind", "Remote-write to the long-term store falls behind", (
                    "Prometheus prometheus-0 is 17m 0s behind in writing to long-term (http://vminsert/insert/0/prometheus/"
                    "api/v1/write). Its WAL keeps the samples (about 2 hours) until the store takes them again; beyond "
                    "that they are missing from long-range dashboards and the quarterly report.")),
            }]},
        ],
    }])


def test_remote_write_failing_fires_on_refused_samples_not_on_a_few(rendered, tmp_path):
    _promtool(rendered, tmp_path, [{
        "interval": "1m",
        "input_series": [
            # 1000 samples a minute; 5 of them refused (0.5%), then 50 (5%) from minute 30 on.
            {"series": f"prometheus_remote_storage_samples_total{{{QUEUE}}}", "values": "0+1000x60"},
            {"series": f"prometheus_remote_storage_samples_failed_total{{{QUEUE}}}", "values": "0+5x30 150+50x30"},
        ],
        "alert_rule_test": [
            {"eval_time": "29m", "alertname": "PrometheusRemoteWriteFailing", "exp_alerts": []},
            {"eval_time": "50m", "alertname": "PrometheusRemoteWriteFailing", "exp_alerts": [{
                "exp_labels": {"severity": "warning", "service": "observability", **QUEUE_LABELS},
                # 50 of 1050 samples a minute
                "exp_annotations": _annotations("PrometheusRemoteWriteFailing", "Remote-write to the long-term store drops samples", (
                    "Prometheus prometheus-0 gives up on 4.762% of the samples for long-term (http://vminsert/insert/0/"
                    "prometheus/api/v1/write): the store refuses them, so retrying would not help; they are missing from "
                    "the long-term data for good.")),
            }]},
        ],
    }])
