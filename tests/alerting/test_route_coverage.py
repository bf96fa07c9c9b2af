"""A route of alerting.routes that no alert of the stack can take is an error, by key path, with the
closest label value an alert carries (model/rules/route_coverage.py)."""

from __future__ import annotations

import pulumi
import pytest
import yaml

from model.config import load_stack_config
from model.preflight import preflight
from model.rules import user
from tests.conftest import FAKE_SECRETS
from tests.stacks import homelab_sections, write_stack
from tools.offline_engine import Recording, run_program


def _problems(*routes: dict) -> list[str]:
    sections = homelab_sections()
    sections["alerting"]["routes"] += list(routes)
    problems, _ = preflight(load_stack_config(sections))
    return [str(p) for p in problems]


def _route(*matchers: str, receiver: str = "pagerduty-primary") -> dict:
    return {"matchers": list(matchers), "receiver": receiver}


def test_the_homelab_routes_all_take_alerts():
    assert _problems() == []


def test_a_value_no_alert_carries_names_the_closest():
    assert _problems(_route('service = "backup"')) == [
        "alerting.routes[3].matchers[0]: 'service = \"backup\"' (route to 'pagerduty-primary'): no alert this stack "
        "defines carries it; did you mean 'service = \"backups\"'?"]
    assert _problems(_route('alertname = "BackupJobFaild"', 'severity = "critical"')) == [
        "alerting.routes[3].matchers[0]: 'alertname = \"BackupJobFaild\"' (route to 'pagerduty-primary'): no alert "
        "this stack defines carries it; did you mean 'alertname = \"BackupJobFailed\"'?"]
    (regex,) = _problems(_route('severity =~ "page|urgent"'))
    assert regex.endswith("no alert this stack defines carries it (severity is one of: critical, none, warning)")


def test_matchers_that_no_alert_satisfies_together():
    # Node alerts are warnings and criticals; only the Watchdog has severity none.
    assert _problems(_route('service = "nodes"', 'severity = "none"')) == [
        "alerting.routes[3].matchers: no alert this stack defines carries 'service = \"nodes\"' and "
        "'severity = \"none\"' together, so the route to 'pagerduty-primary' never takes one"]


def test_labels_only_the_series_carry_are_not_judged():
    # The persistent volume's namespace comes from kubelet's series, not from a rule.
    assert _problems(_route('alertname = "PersistentVolumeUsageHigh"', 'namespace = "logging"')) == []
    # A templated service takes the scrape jobs' values: the UPS's SNMP job is service "power".
    assert _problems(_route('service = "power"', 'severity = "warning"')) == []


def test_your_own_rules_count(tmp_path, monkeypatch):
    monkeypatch.setattr(user, "USER_RULES_DIR", tmp_path)
    route = _route('service = "ups"')
    assert len(_problems(route)) == 1
    (tmp_path / "ups.yaml").write_text(yaml.safe_dump({"groups": [{"name": "ups", "rules": [
        {"alert": "UpsOnBattery", "expr": "vector(1)", "labels": {"severity": "critical", "service": "ups"},
         "annotations": {"summary": "s", "description": "d"}}]}]}))
    assert _problems(route) == []


def test_the_preview_stops_before_any_resource(tmp_path):
    def typo(sections):
        backups = next(r for r in sections["alerting"]["routes"] if r["receiver"] == "mattermost-backup-room")
        backups["matchers"] = ['service = "backup"']
        sections["reports"]["announceTo"] = "mattermost-backup-room"

    recording = Recording("homelab-observability", "test")
    with pytest.raises(pulumi.RunError) as err:
        run_program(write_stack(tmp_path, typo), FAKE_SECRETS, recording=recording)
    assert str(err.value).splitlines() == [
        "stack 'test' (Pulumi.test.yaml) has 1 problem(s):",
        "  - alerting.routes[1].matchers[0]: 'service = \"backup\"' (route to 'mattermost-backup-room'): no alert "
        "this stack defines carries it; did you mean 'service = \"backups\"'?"]
    assert recording.resources == []
