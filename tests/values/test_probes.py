"""Synthetic API checks: config by key path, the chart's values, the real blackbox exporter, the alerts."""

from __future__ import annotations

import http.server
import socket
import subprocess
import threading
import time
import urllib.request

import pytest
import yaml

from model import probes
from model.values import probes as probe_values
from model.config import ConfigError, load_stack_config
from model.values.helm import BLACKBOX_EXPORTER_CHART
from tests.charts import chart_dir, default_values, effective_values, schema_errors
from tests.conftest import run_tool
from tests.stacks import homelab_sections
from tools import manifests

CFG = load_stack_config(homelab_sections())


def _config(change) -> None:
    sections = homelab_sections()
    change(sections["probes"])
    load_stack_config(sections)


def _problems(change) -> dict[str, str]:
    with pytest.raises(ConfigError) as err:
        _config(change)
    return {p.path: p.message for p in err.value.problems}


def test_bad_probe_values_are_reported_by_key_path():
    def bad(p):
        p["targets"][0]["expectedStatus"] = [200, 700]
        p["targets"][0]["bodyMatch"] = "(unclosed"
        p["targets"][1]["url"] = "api.home.arpa/v1"

    problems = _problems(bad)
    assert set(problems) == {"probes.targets[0].expectedStatus", "probes.targets[0].bodyMatch", "probes.targets[1].url"}
    assert "[700]" in problems["probes.targets[0].expectedStatus"]
    assert problems["probes.targets[0].bodyMatch"].startswith("not a regular expression")


def test_probe_settings_that_contradict_each_other_are_reported_by_key_path():
    def bad(p):
        p["targets"].append(dict(p["targets"][0]))  # the same name twice
        p["targets"][1]["timeout"] = "5m"  # as long as its interval
        p["certificateCriticalDays"] = 30

    problems = _problems(bad)
    assert set(problems) == {"probes.targets[2].name", "probes.targets[1].timeout", "probes.certificateCriticalDays"}
    assert "used twice" in problems["probes.targets[2].name"]


def test_every_module_asks_for_ipv4_and_carries_its_target_checks():
    modules = probes.blackbox_config(CFG)["modules"]
    assert set(modules) == {"http_api_gateway_health", "http_api_gateway_openapi"}
    for module in modules.values():
        # The exporter's default is ip6 (with a fallback that hides the first failure).
        assert module["http"]["preferred_ip_protocol"] == "ip4"
    health = modules["http_api_gateway_health"]["http"]
    assert health["valid_status_codes"] == [200]
    assert health["fail_if_body_not_matches_regexp"] == ['"status":\\s*"ok"']


def test_chart_values_are_ones_the_chart_knows():
    values = probe_values.blackbox_exporter_values(CFG)
    schema = chart_dir(BLACKBOX_EXPORTER_CHART) / "values.schema.json"
    if schema.exists():
        assert schema_errors(BLACKBOX_EXPORTER_CHART, values) == []
    # 11.17.2 ships no values.schema.json: every key we set must at least be one of its defaults.
    defaults = default_values(BLACKBOX_EXPORTER_CHART)
    for key, value in values.items():
        assert key in defaults, key
        # config is free-form; the security contexts are Kubernetes objects the chart copies as they are.
        if isinstance(value, dict) and defaults[key] and key not in ("config", "securityContext", "podSecurityContext"):
            assert set(value) <= set(defaults[key]), key
    # Helm merges maps: the chart's http_2xx stays beside ours (Pulumi drops the null that would remove it).
    modules = effective_values(BLACKBOX_EXPORTER_CHART, values)["config"]["modules"]
    assert set(modules) == {"http_2xx", *probes.blackbox_config(CFG)["modules"]}


def test_only_configured_probes_can_be_run_on_demand():
    names = [p.name for p in probes.probe_targets(CFG)]
    assert names == ["api-gateway-health", "api-gateway-openapi"]
    # each with the module rendered for it (tests/services/test_recovery_probes.py: the service refuses any other)
    modules = [p.module for p in probes.probe_targets(CFG)]
    assert len(set(modules)) == 2 and set(modules) <= set(probes.blackbox_config(CFG)["modules"])


def test_each_target_is_scraped_through_the_exporter_at_its_interval(homelab):
    jobs = {j["job_name"]: j for j in homelab.yaml("prometheus/scrape-configs.yaml")["scrape_configs"]}
    job = jobs["probe-api-gateway-openapi"]
    assert job["metrics_path"] == "/probe" and job["params"] == {"module": ["http_api_gateway_openapi"]}
    assert job["scrape_interval"] == "5m"
    assert job["static_configs"][0]["targets"] == ["https://api.home.arpa/v1/openapi.json"]
    assert job["relabel_configs"][-1]["replacement"] == CFG.endpoints().blackbox_exporter_address


# --- the real exporter ------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _Gateway(http.server.BaseHTTPRequestHandler):
    """A stand-in API gateway: /healthz answers what `answers` says."""

    answers: dict[str, tuple[int, bytes]] = {}
    # The modules accept HTTP/1.1 and 2 only, like the real gateway speaks; http.server says 1.0.
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (http.server's name)
        status, body = self.answers.get(self.path, (404, b"not found"))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def gateway():
    _Gateway.answers = {
        "/healthz": (200, b'{"status": "ok"}'),
        "/degraded": (200, b'{"status": "degraded"}'),
        "/broken": (503, b'{"status": "ok"}'),
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Gateway)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"localhost:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def _rendered_blackbox_config(homelab) -> str:
    """blackbox.yaml as the chart's ConfigMap carries it, from `helm template` of the recorded release."""
    recorded = next(r for r in homelab.recording.of_type(manifests.HELM_RELEASE_TYPE)
                    if r.inputs["name"] == "prometheus-blackbox-exporter")
    i = recorded.inputs
    rendered = manifests.render(manifests.Release.of(i["name"], i["chart"], i["version"],
                                                     (i.get("repositoryOpts") or {}).get("repo"), i["namespace"], i["values"]))
    configmap = next(m.object for m in rendered.manifests if m.kind == "ConfigMap")
    return configmap["data"]["blackbox.yaml"]


@pytest.fixture(scope="module")
def exporter(homelab, tmp_path_factory):
    work = tmp_path_factory.mktemp("blackbox")
    config = work / "blackbox.yaml"
    rendered = _rendered_blackbox_config(homelab)
    modules = yaml.safe_load(rendered)["modules"]
    assert {k: v for k, v in modules.items() if k != "http_2xx"} == probes.blackbox_config(CFG)["modules"]
    config.write_text(rendered)
    check = run_tool("blackbox_exporter", f"--config.file={config}", "--config.check")
    assert check.returncode == 0, check.stdout + check.stderr
    port = _free_port()
    log = (work / "exporter.log").open("w")
    proc = subprocess.Popen(["blackbox_exporter", f"--config.file={config}",
                             f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, (work / "exporter.log").read_text()
            try:
                urllib.request.urlopen(f"{base}/-/healthy", timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "blackbox exporter not ready in 20 s"
                time.sleep(0.1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def _probe(exporter: str, target: str, module: str) -> dict[str, float]:
    from urllib.parse import urlencode

    with urllib.request.urlopen(f"{exporter}/probe?{urlencode({'target': target, 'module': module})}", timeout=30) as r:
        text = r.read().decode()
    return {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
            if line and not line.startswith("#") and "{" not in line.split()[0]}


def test_the_rendered_modules_probe_a_local_gateway(exporter, gateway):
    healthy = _probe(exporter, f"http://{gateway}/healthz", "http_api_gateway_health")
    assert healthy["probe_success"] == 1 and healthy["probe_http_status_code"] == 200
    # localhost resolved over IPv4, as the module asks.
    assert healthy["probe_ip_protocol"] == 4
    # The right status with the wrong body, and the right body with the wrong status, both fail.
    assert _probe(exporter, f"http://{gateway}/degraded", "http_api_gateway_health")["probe_success"] == 0
    broken = _probe(exporter, f"http://{gateway}/broken", "http_api_gateway_health")
    assert broken["probe_success"] == 0 and broken["probe_http_status_code"] == 503
    # The openapi module has no body match: any 200 passes.
    assert _probe(exporter, f"http://{gateway}/degraded", "http_api_gateway_openapi")["probe_success"] == 1
