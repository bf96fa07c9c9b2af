"""The drill's synthetic API checks: the probe jobs re-pointed at the real blackbox exporter, which
probes a local API server that fails when the scenario says so (tools/drill/probes.py)."""

from __future__ import annotations

import re
import urllib.parse
import urllib.request

import pytest

from tools.drill import scenarios
from tools.drill.deployed_config import DeployedConfig, DrillConfigError, TimeScale, drill_prometheus_config
from tools.drill.probes import RealProbes, blackbox_config, probe_jobs
from tools.drill.processes import ProcessSupervisor
from tools.drill.scenarios import EndpointOutage
from tools.drill.servers import ScenarioClock

SCENARIO = scenarios.by_name(["api-probe-failing"])[0]


@pytest.fixture(scope="module")
def config(homelab):
    return DeployedConfig.load(homelab.out).with_scrape_jobs(scenarios.SERVICE_MONITOR_JOBS)


@pytest.fixture()
def scale(config):
    return TimeScale.for_config(config, SCENARIO.factor)


def _prometheus_doc(config, scale, tmp_path):
    addresses = {key: f"127.0.0.1:{10000 + i}" for i, key in enumerate(config.targets())}
    doc, _ = drill_prometheus_config(config, scale, addresses, [], "127.0.0.1:9093")
    return doc


def test_the_rendered_probe_jobs_are_found(config):
    assert [j["job_name"] for j in probe_jobs(config.scrape_configs)] == [scenarios.JOB_PROBE_HEALTH,
                                                                          scenarios.JOB_PROBE_OPENAPI]


def test_modules_are_the_rendered_ones_with_scaled_timeouts(config, scale, homelab):
    rendered = homelab.yaml("helm/prometheus-blackbox-exporter.values.yaml")["config"]["modules"]
    drilled = blackbox_config(config, scale)["modules"]
    assert drilled.keys() == rendered.keys()
    for name, module in drilled.items():
        assert module["timeout"] == "100ms"  # 10s / 120, at the drill's 100 ms floor
        assert {k: v for k, v in module.items() if k != "timeout"} == {
            k: v for k, v in rendered[name].items() if k != "timeout"}


def test_probe_jobs_go_through_the_local_exporter_and_keep_their_instance(config, scale, tmp_path):
    doc = _prometheus_doc(config, scale, tmp_path)
    probes = RealProbes(config, scale, ScenarioClock(SCENARIO.factor), SCENARIO.endpoint_outages, tmp_path)
    notes = probes.repoint(doc)
    jobs = {j["job_name"]: j for j in probe_jobs(doc["scrape_configs"])}
    assert len(notes) == len(jobs) == 2
    health = jobs[scenarios.JOB_PROBE_HEALTH]
    relabels = {r["target_label"]: r["replacement"] for r in health["relabel_configs"]}
    assert relabels["__address__"] == probes.address
    assert relabels["instance"] == "https://api.home.arpa/healthz"
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+/probe-api-gateway-health/healthz", relabels["__param_target"])
    assert health["params"] == {"module": ["http_api_gateway_health"]} and health["metrics_path"] == "/probe"
    # Every other job is untouched.
    others = [j for j in doc["scrape_configs"] if j["job_name"] not in jobs]
    assert others == [j for j in _prometheus_doc(config, scale, tmp_path)["scrape_configs"] if j["job_name"] not in jobs]


def test_an_outage_of_a_job_that_is_no_probe_is_refused(config, scale, tmp_path):
    with pytest.raises(DrillConfigError, match="probe-api-gateway-helth: not a probe job"):
        RealProbes(config, scale, ScenarioClock(120), (EndpointOutage(0, 60, job="probe-api-gateway-helth"),), tmp_path)


def test_history_has_one_sample_per_probe_interval(config, scale, tmp_path):
    doc = _prometheus_doc(config, scale, tmp_path)
    probes = RealProbes(config, scale, ScenarioClock(SCENARIO.factor), SCENARIO.endpoint_outages, tmp_path)
    labels = {(job, target): {"job": job, "instance": target} for job, target in config.targets()}
    text = probes.history(doc, -3600.0, ScenarioClock(SCENARIO.factor), labels)
    assert text.count("# TYPE probe_success") == 1
    assert text.count('job="probe-api-gateway-health"') == 60  # 1m interval
    assert text.count('job="probe-api-gateway-openapi"') == 12  # 5m interval
    assert all(line.split()[1] == "1" for line in text.splitlines() if not line.startswith("#"))


def _probe(address: str, target: str, module: str) -> dict[str, float]:
    query = urllib.parse.urlencode({"target": target, "module": module})
    # The scrape timeout Prometheus sends in the drill (11s scaled to the 100 ms floor).
    request = urllib.request.Request(f"http://{address}/probe?{query}", headers={"X-Prometheus-Scrape-Timeout-Seconds": "0.1"})
    with urllib.request.urlopen(request, timeout=5) as response:
        text = response.read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(probe_\w+) (\S+)$", text, re.M)}


def test_the_real_exporter_probes_the_api_server_and_sees_its_outage(config, scale, tmp_path):
    clock = ScenarioClock(SCENARIO.factor)
    # The health endpoint is down from now on; the OpenAPI document stays served.
    outage = EndpointOutage(-1.0, 1e9, job=scenarios.JOB_PROBE_HEALTH, status=503)
    probes = RealProbes(config, scale, clock, (outage,), tmp_path)
    with ProcessSupervisor() as supervisor:
        probes.start(supervisor)
        try:
            health = _probe(probes.address, probes.api.url_for(scenarios.JOB_PROBE_HEALTH, "https://api.home.arpa/healthz"),
                            "http_api_gateway_health")
            openapi = _probe(probes.address, probes.api.url_for(scenarios.JOB_PROBE_OPENAPI,
                                                                "https://api.home.arpa/v1/openapi.json"),
                             "http_api_gateway_openapi")
        finally:
            probes.stop()
    assert (health["probe_success"], health["probe_http_status_code"]) == (0, 503)
    assert (openapi["probe_success"], openapi["probe_http_status_code"]) == (1, 200)
    assert "probe-api-gateway-health 1" in probes.summary()
