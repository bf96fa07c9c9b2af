"""Grafana's notification policy routes every label set to the same receivers as Alertmanager.

Both trees are evaluated by the real matcher implementation: `amtool config routes test`
on the Alertmanager config, and on the Grafana policy tree turned back into an Alertmanager
route (Grafana's notification policies use Alertmanager's routing semantics).
"""

from __future__ import annotations

import itertools
import json
import subprocess
from dataclasses import astuple
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from model.facts import secrets
from model.grafana import alerting
from model.config import ConfigError, load_stack_config
from tests.stacks import homelab_sections
from model.grafana.alerting import contact_points, notification_policy, route_receivers
from model.facts.matchers import parse_matcher
from model.values.routing import alertmanager_config


STACK = load_stack_config(homelab_sections())


def alertmanager_route() -> dict[str, Any]:
    """The route tree rendered into alertmanager.yml from the homelab stack's routing table."""
    return alerting.alert_routing_tree(STACK)


def policy_as_alertmanager_route(policy: dict[str, Any]) -> dict[str, Any]:
    """A Grafana policy tree written back as an Alertmanager route, for amtool to evaluate."""
    route: dict[str, Any] = {}
    if "contact_point" in policy:
        route["receiver"] = policy["contact_point"]
    for key in ("group_wait", "group_interval", "repeat_interval"):
        if key in policy:
            route[key] = policy[key]
    if policy.get("group_by"):
        route["group_by"] = policy["group_by"]
    if policy.get("matchers"):
        route["matchers"] = [f"{m['label']}{m['match']}{json.dumps(m['value'])}" for m in policy["matchers"]]
    if policy.get("continue"):
        route["continue"] = True
    if policy.get("policies"):
        route["routes"] = [policy_as_alertmanager_route(p) for p in policy["policies"]]
    return route


def amtool_receivers(route: dict[str, Any], labels: dict[str, str], work: Path) -> list[str]:
    config = {"route": route, "receivers": [{"name": n} for n in route_receivers(route)]}
    path = work / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    result = subprocess.run(
        ["amtool", "config", "routes", "test", f"--config.file={path}", *(f"{k}={v}" for k, v in labels.items())],
        capture_output=True, text=True, timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(",")


LABEL_SETS = [
    {k: v for k, v in zip(("alertname", "severity", "service"), combo) if v is not None}
    for combo in itertools.product(
        ["Watchdog", "BackupJobFailed", "LatencyBudgetBurn"],
        ["critical", "warning", "Critical", None],
        ["backups", "api-gateway", "backups-offsite", "virtualization", None],
    )
]

# A tree with every feature the conversion handles: regex and negative matchers, nesting,
# `continue` below the root, the deprecated match/match_re forms, inherited receivers.
RICH_ROUTE = {
    "receiver": "default",
    "group_by": ["alertname"],
    "routes": [
        {"receiver": "watchdog", "matchers": ["alertname = Watchdog"]},
        {"receiver": "pager", "matchers": ['severity=~"critical|page"', 'service!="backups-offsite"'], "continue": True},
        {"match_re": {"service": "backups.*"}, "receiver": "backups", "routes": [
            {"receiver": "backups-pager", "match": {"severity": "critical"}, "continue": True},
            {"matchers": ['alertname!~"Latency.*"'], "group_by": ["job_id"]},
        ]},
        {"receiver": "api", "matchers": ['service="api-gateway"', 'alertname=~"Latency.+"']},
    ],
}


@pytest.mark.parametrize("tree", [alertmanager_route, lambda: RICH_ROUTE], ids=["routing-table", "rich-fixture"])
def test_grafana_policy_routes_like_alertmanager(tree: Callable[[], dict], tmp_path):
    route = tree()
    policy_route = policy_as_alertmanager_route(notification_policy(route))
    receivers_seen = set()
    for labels in LABEL_SETS:
        expected = amtool_receivers(route, labels, tmp_path)
        assert amtool_receivers(policy_route, labels, tmp_path) == expected, labels
        receivers_seen.update(expected)
    # The label sets reach every receiver, so every branch of the tree was compared.
    assert receivers_seen == set(route_receivers(route))


def test_the_equivalence_check_catches_a_lost_continue(tmp_path):
    broken = notification_policy(alertmanager_route())
    seed = broken["policies"][2]  # the stack config's routes, below the recovery service's
    for child in seed["policies"]:
        child["continue"] = False
    labels = {"alertname": "BackupJobFailed", "severity": "critical", "service": "backups"}
    assert amtool_receivers(alertmanager_route(), labels, tmp_path) == [
        "recovery-service", "pagerduty-primary", "mattermost-backup-room"]
    assert amtool_receivers(policy_as_alertmanager_route(broken), labels, tmp_path) == [
        "recovery-service", "pagerduty-primary"]
    broken["policies"][1]["continue"] = False
    assert amtool_receivers(policy_as_alertmanager_route(broken), labels, tmp_path) == ["recovery-service"]


def test_seed_routes_become_grafana_policies():
    policy = notification_policy(alertmanager_route())
    assert policy["contact_point"] == alertmanager_route()["receiver"]
    top = {p["contact_point"]: p for p in policy["policies"]}
    # The recovery service's policy first (with continue), the stack config's below one without matchers.
    assert [p["contact_point"] for p in policy["policies"]] == [
        STACK.alerting.watchdog_receiver, "recovery-service", STACK.alerting.receiver]
    assert top["recovery-service"]["continue"] is True
    assert top[STACK.alerting.receiver]["matchers"] == []
    by_receiver = {**top, **{p["contact_point"]: p for p in top[STACK.alerting.receiver]["policies"]}}
    assert by_receiver["pagerduty-primary"]["matchers"] == [{"label": "severity", "match": "=", "value": "critical"}]
    assert by_receiver["pagerduty-primary"]["continue"] is True
    assert by_receiver["mattermost-backup-room"]["matchers"] == [{"label": "service", "match": "=", "value": "backups"}]
    assert by_receiver["mattermost-backup-room"]["group_interval"] == "5m"
    assert by_receiver["mattermost-backup-room"]["continue"] is False
    assert by_receiver[STACK.alerting.watchdog_receiver]["matchers"] == [{"label": "alertname", "match": "=", "value": "Watchdog"}]


def test_every_receiver_has_a_contact_point_with_its_integration():
    points = {p["name"]: p for p in contact_points(STACK)}
    assert set(points) == set(route_receivers(alertmanager_route()))
    assert points["pagerduty-primary"]["pagerduties"][0]["integration_key"] == secrets.SecretRef("pagerdutyRoutingKey")
    # Grafana's incidents read like Alertmanager's: the title names every job of the group.
    am_receivers = {r["name"]: r for r in alertmanager_config(STACK)["receivers"]}
    for name in ("pagerduty-primary", "virtualization-oncall"):
        assert points[name]["pagerduties"][0]["summary"] == am_receivers[name]["pagerduty_configs"][0]["description"]
    slack = points["mattermost-backup-room"]["slacks"][0]
    channel = next(r["mattermost"]["channel"] for r in homelab_sections()["alerting"]["receivers"]
                   if r["name"] == "mattermost-backup-room")
    assert slack["url"] == secrets.SecretRef("mattermostWebhookUrl") and slack["recipient"] == channel
    heartbeat = points[STACK.alerting.watchdog_receiver]["webhooks"][0]
    assert heartbeat["authorization_credentials"] == secrets.SecretRef("alertingHeartbeatToken")
    (recovery_hook,) = points["recovery-service"]["webhooks"]
    assert recovery_hook["url"] == "http://192.168.30.20:9847/webhook"
    assert recovery_hook["authorization_credentials"] == secrets.SecretRef("recoveryWebhookToken")


def test_route_to_unknown_receiver_is_a_config_error():
    sections = homelab_sections()
    sections["alerting"]["routes"][0]["receiver"] = "nobody"
    with pytest.raises(ConfigError) as caught:
        load_stack_config(sections)
    assert any(p.path == "alerting.routes[0].receiver" for p in caught.value.problems), caught.value


@pytest.mark.parametrize("text,expected", [
    ('severity="critical"', ("severity", "=", "critical")),
    ('severity = "critical"', ("severity", "=", "critical")),
    ("service=~backups.*", ("service", "=~", "backups.*")),
    ('alertname!~"Latency.*"', ("alertname", "!~", "Latency.*")),
    (r'summary!="say \"hi\""', ("summary", "!=", 'say "hi"')),
])
def test_parse_matcher(text, expected):
    assert astuple(parse_matcher(text)) == expected


@pytest.mark.parametrize("bad", ['severity', '="x"', 'severity=="x"x', 'sev erity="x"', 'severity="x'])
def test_parse_matcher_rejects_garbage(bad):
    with pytest.raises(ValueError):
        parse_matcher(bad)


def test_policy_tree_limits():
    with pytest.raises(ValueError, match="receiver"):
        notification_policy({"routes": []})
    with pytest.raises(ValueError, match="matchers"):
        notification_policy({"receiver": "a", "matchers": ['x="1"']})
    deep: dict[str, Any] = {"receiver": "a"}
    node = deep
    for _ in range(6):
        node["routes"] = [{"matchers": ['x="1"']}]
        node = node["routes"][0]
    with pytest.raises(ValueError, match="deeper"):
        notification_policy(deep)
