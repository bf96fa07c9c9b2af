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
    # the stack config's five, and the recovery service's (model/recovery.py)
    assert "6 receivers" in result.stdout
    # Alertmanager 0.27+ reads every matcher with its UTF-8 parser, no fallback to the classic one
    assert "classic matchers parser" not in result.stdout + result.stderr


@pytest.mark.parametrize("labels,receivers", [
    # The seed's table: critical pages and continues; backups also go to their room.
    # The recovery service sees every alert of its trigger table as well, before the seed's routes.
    (["alertname=BackupJobFailed", "severity=critical", "service=backups", "job_type=backup"],
     "recovery-service,pagerduty-primary,mattermost-backup-room"),
    (["alertname=BackupJobFailed", "severity=warning", "service=backups", "job_type=backup"],
     "recovery-service,mattermost-backup-room"),
    (["alertname=BackupMaintenanceJobFailed", "severity=warning", "service=backups", "job_type=sync"],
     "recovery-service,mattermost-backup-room"),
    (["alertname=NasStorageUsageHigh", "severity=critical", "service=storage"], "recovery-service,pagerduty-primary"),
    (["alertname=PersistentVolumeUsageHigh", "severity=warning", "service=observability", "namespace=logging"],
     "recovery-service,mattermost-ops-room"),
    # Nothing outside the table reaches it.
    (["alertname=ApiGatewayLatencyBudgetBurn", "severity=critical", "service=api-gateway"], "recovery-service,pagerduty-primary"),
    (["alertname=BackupsStale", "severity=warning", "service=backups"], "mattermost-backup-room"),
    # The availability SLO from the probes routes as the latency SLO does: pages, tickets to the ops room.
    (["alertname=ApiGatewayAvailabilityBudgetBurn", "severity=critical", "service=api-gateway",
      "slo=api-gateway-availability"], "pagerduty-primary"),
    (["alertname=ApiGatewayAvailabilityBudgetBurn", "severity=warning", "service=api-gateway",
      "slo=api-gateway-availability"], "mattermost-ops-room"),
    (["alertname=ApiGatewayLatencyBudgetBurn", "severity=warning", "service=api-gateway",
      "slo=api-gateway-latency"], "recovery-service,mattermost-ops-room"),
    (["alertname=BackupJobFlapping", "severity=warning", "service=backups"], "mattermost-backup-room"),
    # Restore drills and per-guest coverage: the backup room, never a page, never the recovery service.
    *((["alertname=" + name, "severity=warning", "service=backups", "guest=vm/101"], "mattermost-backup-room")
      for name in ("RestoreDrillFailed", "RestoreDrillStale", "RestoreTimeAboveTarget", "GuestBackupStale",
                   "GuestNeverBackedUp", "GuestNotVerified")),
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
    # The stack config's routes, unchanged, below one that matches everything (beside the recovery route).
    seed = route["routes"][2]
    assert seed == {"receiver": "mattermost-ops-room", "routes": seed["routes"]}
    critical, backups, virtualization = seed["routes"]
    # The seed's page route, grouped by service: one PagerDuty incident (dedup_key = group key) per service.
    assert critical == {"matchers": ['severity = "critical"'], "receiver": "pagerduty-primary", "continue": True,
                        "group_by": ["service"]}
    assert backups == {"matchers": ['service = "backups"'], "receiver": "mattermost-backup-room", "group_interval": "5m"}
    assert virtualization["receiver"] == "virtualization-oncall"
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("30s", "5m", "4h")


def test_the_recovery_route_comes_from_the_trigger_table_with_its_bearer_token(homelab):
    from model import recovery

    doc = homelab.yaml("alertmanager/alertmanager.yml")
    hook_route = doc["route"]["routes"][1]
    assert hook_route["receiver"] == "recovery-service" and hook_route["continue"] is True
    # Every alert the service's rendered table names, and only those, pass the route's matcher.
    service_cfg = homelab.yaml("recovery/recovery.yml")
    names = {t["alertname"] for t in service_cfg["triggers"]}
    # the fixed table, and the latency SLO's page while the service runs the gateway's probes on demand
    assert names == {name for name, _, _ in recovery.TRIGGERS} | {"ApiGatewayLatencyBudgetBurn"}
    (matcher,) = hook_route["matchers"]
    assert matcher.startswith("alertname =~ ") and set(matcher.split('"')[1].split("|")) == names
    receiver = next(r for r in doc["receivers"] if r["name"] == "recovery-service")
    (hook,) = receiver["webhook_configs"]
    # The address Prometheus scrapes the service at, and the port it listens on.
    scrape = next(j for j in homelab.yaml("prometheus/scrape-configs.yaml")["scrape_configs"] if j["job_name"] == "recovery")
    assert hook["url"] == f"http://{scrape['static_configs'][0]['targets'][0]}/webhook"
    assert service_cfg["listen"].endswith(":" + hook["url"].rsplit(":", 1)[1].split("/")[0])
    assert hook["http_config"]["authorization"] == {
        "type": "Bearer", "credentials_file": "/etc/alertmanager/secrets/alertmanager-receivers/recovery-webhook-token"}
    assert hook["send_resolved"] is False


def test_without_recovery_the_routing_table_is_the_seed_s_alone():
    raw = _homelab_raw()
    del raw["recovery"]
    raw["reports"]["archive"]["nfs"]["server"] = "nas.home.arpa"  # no recovery NAS to take it from
    from model.values.routing import alertmanager_config

    doc = alertmanager_config(load_stack_config(raw))
    assert [r["receiver"] for r in doc["route"]["routes"]] == ["watchdog-heartbeat", "pagerduty-primary", "mattermost-backup-room",
                                                             "virtualization-oncall"]
    assert all("routes" not in r for r in doc["route"]["routes"])
    assert "recovery-service" not in {r["name"] for r in doc["receivers"]}


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


def test_a_receiver_named_like_the_recovery_service_s_is_refused():
    raw = _homelab_raw()
    raw["alerting"] = {**raw["alerting"], "receivers": [*raw["alerting"]["receivers"],
                                                        {"name": "recovery-service", "mattermost": {"channel": "x"}}]}
    with pytest.raises(ConfigError) as err:
        load_stack_config(raw)
    assert [str(p) for p in err.value.problems] == [
        "alerting.receivers[5].name: 'recovery-service' is the recovery service's receiver (added to the routing table "
        "with recovery): pick another name"]
