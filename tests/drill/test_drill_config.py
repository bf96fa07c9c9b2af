import re
import subprocess
from pathlib import Path

import pytest
import yaml

from contracts import alerts, metrics
from model.config import load_stack_config
from tests.stacks import homelab_sections
from tools.drill.deployed_config import (DeployedConfig, DrillConfigError, TimeScale, drill_alertmanager_config,
                                        drill_prometheus_config, scaled_rule_files)

FIXTURE = Path(__file__).parent.parent / "fixtures" / "drill"


@pytest.fixture(scope="module")
def config():
    return DeployedConfig.load(FIXTURE)


def test_the_fixture_names_only_alerts_and_metrics_that_exist(config):
    """Hand-written as it is, it speaks the stack's names: the fixed alerts of contracts/alerts.py, the
    alerts of the homelab stack's SLOs, the PBS job exporter's metrics of contracts/metrics.py."""
    slo_alerts = {slo.alert_name for slo in load_stack_config(homelab_sections()).slos}
    assert set(config.alert_rules()) - set(alerts.ALL) - slo_alerts == set()
    exporter_metrics = {v for k, v in vars(metrics).items() if k.startswith("PBS_") and isinstance(v, str)}
    read = {name for _, expr in config.all_expressions() for name in re.findall(r"\bpbs_[a-z_]+", expr)}
    assert read and read <= exporter_metrics, read - exporter_metrics


def test_missing_rendered_config_says_what_to_run(tmp_path):
    with pytest.raises(DrillConfigError, match="make preview"):
        DeployedConfig.load(tmp_path)


def test_intervals_default_to_kube_prometheus_stack(config):
    assert (config.scrape_interval, config.evaluation_interval) == (30, 30)
    assert config.longest_window() == 3 * 86400 and config.shortest_window() == 300


def test_time_scale_refuses_a_factor_that_starves_the_shortest_window(config):
    assert TimeScale.for_config(config, 720).scrape_interval_s == 0.1
    with pytest.raises(DrillConfigError, match="too large"):
        TimeScale.for_config(config, 1440)


def test_scaled_rules_are_valid_and_compressed(config, tmp_path):
    texts, notes = scaled_rule_files(config, TimeScale.for_config(config, 120))
    assert notes == []
    for name, text in texts.items():
        (tmp_path / name).write_text(text)
    subprocess.run(["promtool", "check", "rules", *map(str, tmp_path.iterdir())], check=True, capture_output=True)
    slo = yaml.safe_load(texts["latency-slo.yaml"])["groups"][0]["rules"]
    assert "[30s]" in next(r for r in slo if r.get("record") == "slo:api_latency:error_ratio_rate1h")["expr"]
    assert next(r for r in slo if r.get("alert") == "ApiGatewayLatencyBudgetBurn")["for"] == "1s"  # the page: 2m
    # the seed's recording rule keeps its name and labels
    backups = yaml.safe_load(texts["backups.yaml"])["groups"][0]["rules"][0]
    assert backups["record"] == "job:backup_success:ratio" and backups["labels"] == {"slo": "99.5"}


def test_prometheus_config_repoints_targets_only(config, tmp_path):
    scale = TimeScale.for_config(config, 120)
    addresses = {key: f"127.0.0.1:{9000 + i}" for i, key in enumerate(config.targets())}
    rule = tmp_path / "r.yaml"
    rule.write_text("groups: []\n")
    doc, notes = drill_prometheus_config(config, scale, addresses, [rule], "127.0.0.1:9093")
    jobs = {j["job_name"]: j for j in doc["scrape_configs"]}
    pbs = jobs["pbs"]["static_configs"][0]
    assert pbs["targets"] == [addresses[("pbs", "pbs.lab.internal:9101")]]
    assert pbs["labels"] == {"host": "pbs", "instance": "pbs.lab.internal:9101"}
    assert jobs["pbs"]["scrape_interval"] == "250ms"
    assert jobs["api-gateway"]["scheme"] == "http" and "tls_config" not in jobs["api-gateway"]
    assert any("api-gateway" in n for n in notes)
    assert doc["global"]["evaluation_interval"] == "250ms"
    path = tmp_path / "prometheus.yml"
    path.write_text(yaml.safe_dump(doc))
    subprocess.run(["promtool", "check", "config", str(path)], check=True, capture_output=True)


def test_alertmanager_config_keeps_routes_and_points_every_receiver_here(config, tmp_path):
    scale = TimeScale.for_config(config, 120)
    drill = drill_alertmanager_config(config, scale, "http://127.0.0.1:5001", tmp_path / "secrets")
    assert {(e.receiver, e.integration) for e in drill.endpoints} == {
        ("pagerduty-primary", "pagerduty"), ("mattermost-backup-room", "slack"),
        ("mattermost-ops", "slack"), ("heartbeat", "webhook")}
    receivers = {r["name"]: r for r in drill.doc["receivers"]}
    pagerduty = receivers["pagerduty-primary"]["pagerduty_configs"][0]
    assert pagerduty["url"] == "http://127.0.0.1:5001/pagerduty-primary/pagerduty/0"
    assert Path(pagerduty["routing_key_file"]).parent == tmp_path / "secrets"
    slack_file = Path(receivers["mattermost-backup-room"]["slack_configs"][0]["api_url_file"])
    assert drill.secret_files[slack_file] == "http://127.0.0.1:5001/mattermost-backup-room/slack/0"
    route = drill.doc["route"]
    assert (route["group_wait"], route["group_interval"], route["repeat_interval"]) == ("250ms", "2s500ms", "2m")
    assert route["routes"][1] == {"matchers": ['severity = "critical"'], "receiver": "pagerduty-primary", "continue": True}
    for path, content in drill.secret_files.items():
        path.parent.mkdir(exist_ok=True)
        path.write_text(content)
    am_file = tmp_path / "alertmanager.yml"
    am_file.write_text(yaml.safe_dump(drill.doc))
    subprocess.run(["amtool", "check-config", str(am_file)], check=True, capture_output=True)


def test_an_integration_the_drill_cannot_capture_is_refused(config):
    config.alertmanager["receivers"].append({"name": "mail", "email_configs": [{"to": "ops@example.org"}]})
    try:
        with pytest.raises(DrillConfigError, match="email_configs"):
            drill_alertmanager_config(config, TimeScale.for_config(config, 120), "http://127.0.0.1:1", Path("/tmp"))
    finally:
        config.alertmanager["receivers"].pop()


def test_routing_tree_gives_the_seed_routes_and_their_timers(config):
    tree = config.routing()
    critical_backups = tree.deliveries({"alertname": "BackupJobFailed", "severity": "critical", "service": "backups"})
    assert [d.receiver for d in critical_backups] == ["pagerduty-primary", "mattermost-backup-room"]
    assert critical_backups[1].group_interval == 300 and critical_backups[0].group_wait == 30
    assert [d.receiver for d in tree.deliveries({"alertname": "Watchdog", "severity": "none"})] == ["heartbeat"]
    assert [d.receiver for d in tree.deliveries({"alertname": "NodeDiskUsageHigh", "severity": "warning",
                                                  "service": "nodes"})] == ["mattermost-ops"]
