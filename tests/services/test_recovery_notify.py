"""The service's PagerDuty dedup_key is the one a real Alertmanager sends for the same alert group,
so its notes and pages land on the incident Alertmanager opened: one incident, one page."""

from __future__ import annotations

import json
import time
import urllib.request

import yaml

from services.recovery.notify import dedup_key, group_key, label_set
from tests.capture_server import Capture
from tests.recovery_world import wait_for
from tools.drill.processes import ManagedProcess, free_port, wait_ready


def test_label_set_is_prometheus_label_set_string():
    assert label_set({"service": "backups", "alertname": "X"}) == '{alertname="X", service="backups"}'
    assert group_key('{}/{severity="critical"}', ["service", "missing"], {"service": "backups"}) == \
        '{}/{severity="critical"}:{service="backups"}'


def test_dedup_key_matches_a_real_alertmanager(tmp_path):
    capture = Capture()
    capture.start()
    port = free_port()
    config = {
        "route": {"receiver": "chat", "group_by": ["alertname"], "group_wait": "0s",
                  "routes": [{"matchers": ['severity="critical"'], "receiver": "pager", "group_by": ["service"],
                              "group_wait": "0s", "continue": True},
                             {"matchers": ['service="backups"'], "receiver": "chat"}]},
        "receivers": [{"name": "chat", "webhook_configs": [{"url": f"{capture.url}/hooks/chat"}]},
                      {"name": "pager", "pagerduty_configs": [{"routing_key": "k", "url": f"{capture.url}/v2/enqueue"}]}],
    }
    (tmp_path / "am.yml").write_text(yaml.safe_dump(config))
    am = ManagedProcess("alertmanager", ["alertmanager", f"--config.file={tmp_path / 'am.yml'}",
                                         f"--storage.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                                         "--cluster.listen-address="], tmp_path / "am.log").start()
    try:
        wait_ready(am, f"http://127.0.0.1:{port}/-/ready")
        labels = {"alertname": "BackupJobFailed", "severity": "critical", "service": "backups", "job_id": "vm/101"}
        body = json.dumps([{"labels": labels, "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v2/alerts", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=5).read()
        event = wait_for(lambda: capture.pages(), 20, "Alertmanager's PagerDuty event")[0]
        assert event["dedup_key"] == dedup_key('{}/{severity="critical"}', ["service"], labels)
    finally:
        am.stop()
        capture.stop()


def test_the_rendered_route_key_gives_the_dedup_key_of_the_rendered_alertmanager(homelab, tmp_path):
    """The stack's own alertmanager.yml (receivers re-pointed by the drill's code) and the routeKey the
    stack renders for the service: the service's incident notes land on Alertmanager's incident."""
    from tools.drill.deployed_config import DeployedConfig, TimeScale, drill_alertmanager_config

    capture = Capture()
    capture.start()
    config = DeployedConfig.load(homelab.out)
    drill = drill_alertmanager_config(config, TimeScale.for_config(config, 60), capture.url, tmp_path / "secrets")
    for path, content in drill.secret_files.items():
        path.parent.mkdir(exist_ok=True)
        path.write_text(content)
    for receiver in drill.doc["receivers"]:  # the capture server takes PagerDuty's events at /v2/enqueue
        for pd in receiver.get("pagerduty_configs", []):
            pd["url"] = f"{capture.url}/v2/enqueue"
    (tmp_path / "am.yml").write_text(yaml.safe_dump(drill.doc))
    service = yaml.safe_load((homelab.out / "recovery" / "recovery.yml").read_text())["pagerduty"]
    port = free_port()
    am = ManagedProcess("alertmanager", ["alertmanager", f"--config.file={tmp_path / 'am.yml'}",
                                         f"--storage.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
                                         "--cluster.listen-address="], tmp_path / "am.log").start()
    try:
        wait_ready(am, f"http://127.0.0.1:{port}/-/ready")
        labels = {"alertname": "BackupJobFailed", "severity": "critical", "service": "backups", "job_id": "vm/101",
                  "job_type": "backup", "datastore": "homelab"}
        body = json.dumps([{"labels": labels, "startsAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}]).encode()
        request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v2/alerts", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        urllib.request.urlopen(request, timeout=5).read()
        event = wait_for(lambda: capture.pages(), 30, "Alertmanager's PagerDuty event")[0]
        assert event["dedup_key"] == dedup_key(service["routeKey"], service["groupBy"], labels)
    finally:
        am.stop()
        capture.stop()
