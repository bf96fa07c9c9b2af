"""The routing table (config `alerting`) rendered as an Alertmanager configuration.

The typed table stays in model/config/alerting.py (Alerting, Route, Receiver, Matcher) so that a
second renderer (Grafana's notification policy) reads the same source; this module is
only the Alertmanager rendering. Secrets appear as file paths under the mounted Kubernetes
Secret, never as values. Only fields that both Alertmanager 0.25 (Debian, tests, drill) and
0.34 (the chart) accept are used.
"""

from __future__ import annotations

from contracts.alerts import WATCHDOG
from model import recovery
from model.facts import secrets
from model.config import Alerting, Receiver, Route, StackConfig
from model.values.metrics import ALERTMANAGER_SECRET_DIR

# Key of each secret inside the Kubernetes Secret mounted into Alertmanager.
SECRET_FILES = {
    secrets.PAGERDUTY_ROUTING_KEY: "pagerduty-routing-key",
    secrets.MATTERMOST_WEBHOOK_URL: "mattermost-webhook-url",
    secrets.HEARTBEAT_TOKEN: "heartbeat-token",
    secrets.VIRTUALIZATION_PAGERDUTY_ROUTING_KEY: "virtualization-pagerduty-routing-key",
    secrets.RECOVERY_WEBHOOK_TOKEN: "recovery-webhook-token",
}


def secret_path(secret_key: str) -> str:
    return f"{ALERTMANAGER_SECRET_DIR}/{SECRET_FILES[secret_key]}"


# The incident's title names every alert of the group with its job (or instance): PagerDuty keeps
# the first trigger's summary as the title and appends later triggers of the same dedup_key.
PAGERDUTY_SUMMARY = (
    '{{ if eq .Status "firing" }}[FIRING:{{ .Alerts.Firing | len }}]{{ else }}[RESOLVED]{{ end }} '
    '{{ .CommonLabels.service }}:{{ range (or .Alerts.Firing .Alerts.Resolved) }} {{ .Labels.alertname }}'
    '{{ with .Labels.job_id }} {{ . }}{{ else }}{{ with .Labels.instance }} {{ . }}{{ end }}{{ end }};{{ end }}'
)
# One block per alert, with its own status: a message may carry a firing and a resolved alert.
CHAT_TEXT = ('{{ range .Alerts }}*{{ .Labels.severity }}* {{ .Status }}: {{ .Annotations.summary }}\n'
             '{{ .Annotations.description }}\nRunbook: {{ .Annotations.runbook_url }}\n'
             '{{ if .Annotations.dashboard_url }}Dashboard: {{ .Annotations.dashboard_url }}\n{{ end }}{{ end }}')


def _receiver(receiver: Receiver) -> dict:
    out: dict = {"name": receiver.name}
    if receiver.pagerduty:
        out["pagerduty_configs"] = [{
            "routing_key_file": secret_path(receiver.pagerduty.routing_key_secret),
            "severity": receiver.pagerduty.severity,
            "description": PAGERDUTY_SUMMARY,
            "send_resolved": True,
        }]
    elif receiver.mattermost:
        # Mattermost's incoming webhooks take Slack's payload.
        slack: dict = {
            "api_url_file": secret_path(secrets.MATTERMOST_WEBHOOK_URL),
            "username": receiver.mattermost.username,
            "send_resolved": True,
            "title": '{{ if eq .Status "firing" }}[FIRING:{{ .Alerts.Firing | len }}]{{ else }}[RESOLVED]{{ end }} {{ .CommonLabels.alertname }} ({{ .CommonLabels.service }})',
            "text": CHAT_TEXT,
        }
        if receiver.mattermost.channel:
            slack["channel"] = receiver.mattermost.channel
        out["slack_configs"] = [slack]
    elif receiver.heartbeat:
        hook: dict = {"url": receiver.heartbeat.url, "send_resolved": False}
        if receiver.heartbeat.bearer_token:
            hook["http_config"] = {"authorization": {"type": "Bearer",
                                                     "credentials_file": secret_path(secrets.HEARTBEAT_TOKEN)}}
        out["webhook_configs"] = [hook]
    return out


def _route(route: Route) -> dict:
    out: dict = {"matchers": [str(m) for m in route.matchers], "receiver": route.receiver}
    if route.continue_:
        out["continue"] = True
    for key, value in (("group_by", route.group_by), ("group_wait", route.group_wait),
                       ("group_interval", route.group_interval), ("repeat_interval", route.repeat_interval)):
        if value is not None:
            out[key] = value
    return out


def watchdog_routes(alerting: Alerting) -> list[dict]:
    # First and final: the always-firing Watchdog reaches only the heartbeat, never a pager.
    # Without a heartbeat receiver the stack defines no Watchdog (model/rules/stack.py): no route.
    if not alerting.watchdog_receiver:
        return []
    return [{
        "matchers": [f'alertname = "{WATCHDOG.name}"'],
        "receiver": alerting.watchdog_receiver,
        "group_wait": "0s",
        "group_interval": alerting.watchdog_interval,
        "repeat_interval": alerting.watchdog_interval,
    }]


def recovery_receiver(cfg: StackConfig) -> dict:
    """The recovery service's webhook (docs/recovery.md): it never acts on a resolved alert."""
    return {"name": recovery.RECEIVER, "webhook_configs": [{
        "url": recovery.webhook_url(cfg), "send_resolved": False,
        "http_config": {"authorization": {"type": "Bearer",
                                          "credentials_file": secret_path(secrets.RECOVERY_WEBHOOK_TOKEN)}}}]}


def alertmanager_config(cfg: StackConfig) -> dict:
    a = cfg.alerting
    routes = [_route(r) for r in a.routes]
    receivers = [_receiver(r) for r in a.receivers]
    if cfg.recovery:
        # The recovery service's route comes from its trigger table and matches first, with `continue`.
        # An alert matched by any route no longer falls back to the root's receiver, so the seed's
        # routes move, unchanged, below one matching everything with that receiver: whatever they do
        # not claim still reaches it.
        routes = [recovery.route(cfg), {"receiver": a.receiver, "routes": routes}]
        receivers.append(recovery_receiver(cfg))
    return {
        "global": {"resolve_timeout": "5m"},
        "route": {
            "receiver": a.receiver,
            "group_by": list(a.group_by),
            "group_wait": a.group_wait,
            "group_interval": a.group_interval,
            "repeat_interval": a.repeat_interval,
            "routes": watchdog_routes(a) + routes,
        },
        # No inhibition: a warning and its critical are told side by side. A restarted Alertmanager
        # holds no alerts, so it would rebuild the inhibition from whatever Prometheus resends
        # first, and a held-back warning could reach its room before its critical is back.
        "inhibit_rules": [],
        "receivers": receivers,
        # The chart's default would load *.tmpl files we do not ship.
        "templates": [],
    }
