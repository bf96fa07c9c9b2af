"""When a latency SLO pages, the recovery service runs the configured probes now, through Debian's
real blackbox exporter (with the stack's own module shape) against a local HTTP server, and posts
the answer, customer impact confirmed or not, to the room and the incident."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler

import pytest
import yaml

from model.config import ProbeTarget
from model.probes import blackbox_module, module_name
from services.recovery.notify import dedup_key
from tests.loopback import start_http, stop_http
from tests.recovery_world import PD_ROUTE_KEY, World, alert, free_port, notification, wait_for
from tools.drill.processes import ManagedProcess, wait_ready

BURN = {"service": "api-gateway", "slo": "api-gateway-latency", "severity": "critical"}


class Gateway:
    """The API gateway's endpoints: what they answer, and every path requested."""

    def __init__(self):
        self.status, self.body = 200, b'{"status": "ok"}'
        self.paths: list[str] = []
        self.lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # the modules accept HTTP/1.1 and 2 only, as a real gateway speaks

            def do_GET(self):
                with gateway.lock:
                    gateway.paths.append(self.path)
                self.send_response(gateway.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(gateway.body)))
                self.end_headers()
                self.wfile.write(gateway.body)

            def log_message(self, *args):
                pass

        self.server = start_http(Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def world(tmp_path):
    gateway = Gateway()
    targets = [ProbeTarget(name="api-gateway-health", url=f"{gateway.url}/healthz", body_match='"status":\\s*"ok"', timeout="2s"),
               ProbeTarget(name="api-gateway-openapi", url=f"{gateway.url}/v1/openapi.json", timeout="2s")]
    config = tmp_path / "blackbox.yml"
    config.write_text(yaml.safe_dump({"modules": {module_name(t): blackbox_module(t) for t in targets}}))
    port = free_port()
    exporter = ManagedProcess("blackbox", ["prometheus-blackbox-exporter", f"--config.file={config}",
                                           f"--web.listen-address=127.0.0.1:{port}"], tmp_path / "blackbox.log").start()
    w = World(tmp_path)
    w.start_fakes()
    try:
        wait_ready(exporter, f"http://127.0.0.1:{port}/-/healthy")
        probes = {"exporterUrl": f"http://127.0.0.1:{port}", "timeoutSeconds": 5,
                  "targets": [{"name": t.name, "service": t.service, "url": t.url, "module": module_name(t)} for t in targets]}
        doc = w.config()
        w.start(probes=probes, actions={**doc["actions"], "customer-impact-probe": {"mode": "enforce", "cooldownSeconds": 0}},
                triggers=[*doc["triggers"], {"alertname": "ApiGatewayLatencyBudgetBurn", "matchers": {"severity": "critical"},
                                             "playbook": "customer-impact"}],
                mattermost={**doc["mattermost"], "channels": {**doc["mattermost"]["channels"], "customer-impact": "ops"}})
        w.gateway = gateway
        yield w
    finally:
        w.stop()
        exporter.stop()
        stop_http(gateway.server)


def burn(starts_at="2026-12-01T10:00:00Z", **labels):
    return alert("ApiGatewayLatencyBudgetBurn", {**BURN, **labels}, starts_at=starts_at)


def test_a_failing_gateway_confirms_customer_impact_on_the_incident_and_in_the_room(world):
    world.gateway.status, world.gateway.body = 503, b'{"status": "overloaded"}'
    world.send(notification(burn()))
    wait_for(lambda: world.capture.pages(), what="the note on the incident")
    note = world.capture.pages()[0]
    assert note["dedup_key"] == dedup_key(PD_ROUTE_KEY, ["service"], {**BURN, "alertname": "ApiGatewayLatencyBudgetBurn"})
    assert note["payload"]["summary"].startswith("api-gateway: customer impact confirmed: 2 of 2 probe(s) fail now")
    details = note["payload"]["custom_details"]
    assert details["customer impact"] == "confirmed" and details["probe api-gateway-health"].startswith("FAILS: HTTP 503")
    room = wait_for(lambda: [t for t in world.chat_texts() if "customer impact" in t], what="the room")
    assert "ApiGatewayLatencyBudgetBurn" in room[0] and "api-gateway-openapi: FAILS (HTTP 503" in room[0]
    # Each configured endpoint was requested once, by the exporter: nothing else.
    assert sorted(world.gateway.paths) == ["/healthz", "/v1/openapi.json"]
    assert world.metric("recovery_actions_total", action="customer-impact-probe", result="ok") == 1


def test_a_healthy_gateway_does_not_confirm_impact(world):
    world.send(notification(burn()))
    wait_for(lambda: [t for t in world.chat_texts() if "customer impact" in t], what="the room")
    assert "customer impact not confirmed: every probe passes now" in world.chat_texts()[0]
    assert "api-gateway-health: OK (HTTP 200" in world.chat_texts()[0]


def test_a_body_that_does_not_match_is_impact(world):
    world.gateway.body = b'{"status": "degraded"}'  # 200, but not what the health check promises
    world.send(notification(burn()))
    wait_for(lambda: [t for t in world.chat_texts() if "customer impact" in t], what="the room")
    text = world.chat_texts()[0]
    assert "customer impact confirmed: 1 of 2" in text and "api-gateway-health: FAILS (HTTP 200" in text


def test_only_configured_probes_run_whatever_the_alert_says(world):
    # Labels naming another URL or service change nothing: the alert chooses a service, never a target.
    world.send(notification(burn(instance="http://127.0.0.1:1/steal", target="http://169.254.169.254/")))
    wait_for(lambda: [t for t in world.chat_texts() if "customer impact" in t], what="the room")
    world.send(notification(burn(starts_at="2026-12-01T11:00:00Z", service="payments")))
    wait_for(lambda: world.decisions("skip", action="customer-impact-probe"), what="the refusal")
    assert "no probe is configured for service 'payments'" in world.decisions("skip", action="customer-impact-probe")[0]["why"]
    assert sorted(world.gateway.paths) == ["/healthz", "/v1/openapi.json"]
    # A warning (the ticket) is not in the table.
    status, counts = world.send(notification(burn(starts_at="2026-12-01T12:00:00Z", severity="warning")))
    assert counts["not_in_table"] == 1


def test_an_exporter_that_does_not_answer_is_unknown_not_fine(world):
    doc = yaml.safe_load(world.config_path.read_text())
    doc["probes"]["exporterUrl"] = f"http://127.0.0.1:{free_port()}"
    world.config_path.write_text(yaml.safe_dump(doc))
    world.proc.terminate()
    world.proc.wait(10)
    world.start()
    world.send(notification(burn()))
    wait_for(lambda: [t for t in world.chat_texts() if "customer impact" in t], what="the room")
    assert "customer impact unknown: 2 of 2 probe(s) could not run" in world.chat_texts()[0]
    assert world.healthy()
