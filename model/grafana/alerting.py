"""Grafana alerting from the routing table: a contact point per receiver and the notification policy.

Grafana-managed alerts reach the same people as Prometheus' through Alertmanager: the policy
tree is Alertmanager's route tree converted field by field (model/values/routing.py renders it).
"""

from __future__ import annotations

from typing import Any

from model import recovery

from model.facts import secrets
from model.config import StackConfig
from model.facts.matchers import Matcher, parse_matcher
from model.values.routing import PAGERDUTY_SUMMARY, alertmanager_config
from model.facts.secrets import SecretRef


def alert_routing_tree(stack: StackConfig) -> dict[str, Any]:
    """The route tree of the routing table, exactly as Alertmanager gets it (model/values/routing.py)."""
    return alertmanager_config(stack)["route"]


NOTIFICATION_TITLE = '[{{ .Status | toUpper }}] {{ .CommonLabels.alertname }} ({{ .CommonLabels.service }})'
NOTIFICATION_TEXT = (
    "{{ range .Alerts }}{{ .Annotations.summary }}\n"
    "Runbook: {{ .Annotations.runbook_url }}\n"
    "{{ if .Annotations.dashboard_url }}Dashboard: {{ .Annotations.dashboard_url }}\n{{ end }}{{ end }}"
)


def route_receivers(route: dict[str, Any]) -> list[str]:
    names = [route["receiver"]] if route.get("receiver") else []
    for child in route.get("routes", []):
        names += [n for n in route_receivers(child) if n not in names]
    return names


def contact_points(stack: StackConfig) -> list[dict[str, Any]]:
    """One Grafana contact point per receiver of the routing table, in grafana.alerting.ContactPoint's shape."""
    assert stack.alerting is not None
    receivers = {r.name: r for r in stack.alerting.receivers}
    points = []
    for name in route_receivers(alert_routing_tree(stack)):
        if name == recovery.RECEIVER and stack.recovery:
            # Grafana-managed alerts of the trigger table reach the service like Prometheus' do.
            points.append({"name": name, "webhooks": [{
                "url": recovery.webhook_url(stack), "http_method": "POST", "disable_resolve_message": True,
                "authorization_scheme": "Bearer", "authorization_credentials": SecretRef(secrets.RECOVERY_WEBHOOK_TOKEN)}]})
            continue
        r = receivers[name]  # StackConfig.problems() guarantees every routed receiver exists
        if r.pagerduty:
            # The incident's title names every job, as Alertmanager's does (the same Go template).
            integration = {"pagerduties": [{"integration_key": SecretRef(r.pagerduty.routing_key_secret),
                                            "severity": r.pagerduty.severity, "summary": PAGERDUTY_SUMMARY,
                                            "class_": "{{ .CommonLabels.service }}"}]}
        elif r.mattermost:
            # Mattermost's incoming webhooks accept Slack's payload; `recipient` picks the channel.
            integration = {"slacks": [{"url": SecretRef(secrets.MATTERMOST_WEBHOOK_URL), "recipient": r.mattermost.channel,
                                       "username": "grafana", "title": NOTIFICATION_TITLE, "text": NOTIFICATION_TEXT}]}
        else:
            hook: dict[str, Any] = {"url": r.heartbeat.url, "http_method": "POST"}
            if r.heartbeat.bearer_token:
                hook.update(authorization_scheme="Bearer", authorization_credentials=SecretRef(secrets.HEARTBEAT_TOKEN))
            integration = {"webhooks": [hook]}
        points.append({"name": name, **integration})
    return points


# The provider nests policies this deep below the root policy.
MAX_POLICY_DEPTH = 5


def _policy_matcher(matcher: Matcher) -> dict[str, str]:
    return {"label": matcher.label, "match": matcher.op, "value": matcher.value}


def _route_matchers(route: dict[str, Any]) -> list[dict[str, str]]:
    matchers = [_policy_matcher(parse_matcher(m)) for m in route.get("matchers", [])]
    # The deprecated forms are still valid Alertmanager config.
    matchers += [{"label": k, "match": "=", "value": v} for k, v in (route.get("match") or {}).items()]
    matchers += [{"label": k, "match": "=~", "value": v} for k, v in (route.get("match_re") or {}).items()]
    return matchers


TIMINGS = ("group_wait", "group_interval", "repeat_interval")


def _policy(route: dict[str, Any], depth: int) -> dict[str, Any]:
    if depth > MAX_POLICY_DEPTH:
        raise ValueError(f"routing tree deeper than the {MAX_POLICY_DEPTH} levels a Grafana policy tree holds")
    policy: dict[str, Any] = {}
    if route.get("receiver"):
        policy["contact_point"] = route["receiver"]
    if "group_by" in route:
        policy["group_by"] = list(route["group_by"])
    for key in TIMINGS:
        if key in route:
            policy[key] = route[key]
    if depth > 0:
        policy["matchers"] = _route_matchers(route)
        policy["continue"] = bool(route.get("continue", False))
    if route.get("mute_time_intervals"):
        policy["mute_timings"] = list(route["mute_time_intervals"])
    if route.get("routes"):
        policy["policies"] = [_policy(child, depth + 1) for child in route["routes"]]
    return policy


def notification_policy(route: dict[str, Any]) -> dict[str, Any]:
    """Grafana's notification policy tree for an Alertmanager route tree.

    Grafana's policies route with Alertmanager's semantics (first matching child wins unless
    `continue`, unset fields inherit from the parent), so the conversion is field by field.
    The root has no matchers and must name a contact point and its grouping.
    """
    if not route.get("receiver"):
        raise ValueError("the root route needs a receiver (the default contact point)")
    if _route_matchers(route):
        raise ValueError("the root route must not have matchers: it receives every alert")
    policy = _policy(route, 0)
    policy.setdefault("group_by", [])
    return policy
