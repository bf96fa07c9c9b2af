"""The rendered alertmanager.yml under amtool: it loads, and the routing table routes as written."""

from __future__ import annotations

import pytest
import yaml

from model.config import ConfigError, load_stack_config
from tests.conftest import run_tool
from tools.offline_engine import ROOT


@pytest.fixture(scope="module")
def am_config(homelab):
    return homelab.out / "alertmanager" / "alertmanager.yml"


def test_amtool_accepts_the_config(am_config):
    result = run_tool("amtool", "check-config", am_config)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 receivers" in result.stdout


@pytest.mark.parametrize("labels,receivers", [
    # The seed's table: critical pages and continues; backups also go to their room.
    (["alertname=BackupJobFailed", "severity=critical", "service=backups"], "pagerduty-primary,mattermost-backup-room"),
    (["alertname=BackupsStale", "severity=warning", "service=backups"], "mattermost-backup-room"),
    (["alertname=ApiGatewayLatencyBudgetBurn", "severity=critical", "service=api-gateway"], "pagerduty-primary"),
    # The availability SLO from the probes routes as the latency SLO does: pages, tickets to the ops room.
    (["alertname=ApiGatewayAvailabilityBudgetBurn", "severity=critical", "service=api-gateway",
      "slo=api-gateway-availability"], "pagerduty-primary"),
    (["alertname=ApiGatewayAvailabilityBudgetBurn", "severity=warning", "service=api-gateway",
      "slo=api-gateway-availability"], "mattermost-ops-room"),
    (["alertname=ApiGatewayLatencyBudgetBurn", "severity=warning", "service=api-gateway",
      "slo=api-gateway-latency"], "mattermost-ops-room"),
    (["alertname=NodeDiskUsageHigh", "severity=warning", "service=nodes"], "mattermost-ops-room"),
    # Proxmox VE pages reach the virtualization on-call as well as the seed's page; its tickets stay in the ops room.
    (["alertname=PveNodeDown", "severity=critical", "service=virtualization"], "pagerduty-primary,virtualization-oncall"),
    (["alertname=PveGuestNotBackedUp", "severity=warning", "service=virtualization"], "mattermost-ops-room"),
    # The Watchdog never pages, whatever labels it carries.
    (["alertname=Watchdog", "severity=critical", "service=backups"], "watchdog-heartbeat"),
])
def test_routes(am_config, labels, receivers):
    result = run_tool("amtool", "config", "routes", "test", f"--config.file={am_config}", *labels)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == receivers


def test_seed_route_shape_and_timers(homelab):
    route = homelab.yaml("alertmanager/alertmanager.yml")["route"]
    critical, backups = route["routes"][1], route["routes"][2]
    # The seed's page route, grouped by service: one PagerDuty incident (dedup_key = group key) per service.
    assert critical == {"matchers": ['severity = "critical"'], "receiver": "pagerduty-primary", "continue": True,
                        "group_by": ["service"]}
    assert backups == {"matchers": ['service = "backups"'], "receiver": "mattermost-backup-room", "group_interval": "5m"}
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("30s", "5m", "4h")


def test_nothing_is_inhibited(homelab):
    """A warning and its critical are told side by side: a restarted Alertmanager, which has no alerts
    and so no inhibition state, has nothing held back to let through."""
    assert homelab.yaml("alertmanager/alertmanager.yml")["inhibit_rules"] == []


def test_receivers_read_secrets_from_the_mounted_secret_only(homelab):
    text = (homelab.out / "alertmanager" / "alertmanager.yml").read_text()
    receivers = {r["name"]: r for r in yaml.safe_load(text)["receivers"]}
    secrets_dir = "/etc/alertmanager/secrets/alertmanager-receivers"
    assert receivers["pagerduty-primary"]["pagerduty_configs"][0]["routing_key_file"] == f"{secrets_dir}/pagerduty-routing-key"
    assert receivers["mattermost-backup-room"]["slack_configs"][0]["api_url_file"] == f"{secrets_dir}/mattermost-webhook-url"
    hook = receivers["watchdog-heartbeat"]["webhook_configs"][0]
    assert hook["http_config"]["authorization"]["credentials_file"] == f"{secrets_dir}/heartbeat-token"
    for value in homelab.recording.secret_values.values():
        assert value not in text


def _homelab_raw() -> dict:
    doc = yaml.safe_load((ROOT / "Pulumi.homelab.yaml").read_text())["config"]
    return {k.split(":", 1)[1]: v for k, v in doc.items() if k.startswith("homelab-observability:")}


def test_routing_table_mistakes_are_reported_by_key_path():
    raw = _homelab_raw()
    raw["alerting"] = {**raw["alerting"], "watchdogReceiver": "pagerduty-primary",
                       "routes": [{"matchers": ['severity = "critical"'], "receiver": "pagerduty-secondary"},
                                  {"matchers": ["service backups"], "receiver": "mattermost-backup-room"}]}
    with pytest.raises(ConfigError) as err:
        load_stack_config(raw)
    assert [str(p) for p in err.value.problems] == [
        'alerting.routes[1].matchers: matcher \'service backups\' must look like: label = "value" (=, !=, =~, !~)',
    ]
    raw["alerting"]["routes"] = raw["alerting"]["routes"][:1]
    with pytest.raises(ConfigError) as err:
        load_stack_config(raw)
    # Without the backup route the quarterly report has no room to announce itself in either.
    assert {p.path for p in err.value.problems} == {"alerting.routes[0].receiver", "alerting.watchdogReceiver",
                                                    "reports.announceTo"}
