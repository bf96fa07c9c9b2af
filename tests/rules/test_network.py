"""Network saturation rules under promtool: SNMP and node-exporter interfaces, one alert."""

from __future__ import annotations

import json

from model.grafana.dashboards import DASHBOARDS_DIR
from model.rules.network import SATURATION_RATIO, UTILISATION
from tests.rules.test_alerts import GRAFANA, HUB, _firing, _unit_test

SWITCH = 'job="snmp-core-switch",instance="core-switch",service="network",ifIndex="3",ifName="ge-0/0/3",ifDescr="ge-0/0/3"'
HOST = 'job="node-exporter",instance="prom",device="eth0"'
# 1 Gbit/s = 125,000,000 bytes per second, 7.5e9 per minute.
GBIT_PER_MINUTE = 125_000_000 * 60


def _octets(fraction: float, minutes: int) -> str:
    return f"0+{int(GBIT_PER_MINUTE * fraction)}x{minutes}"


def test_a_saturated_switch_port_opens_a_ticket_after_15_minutes(homelab, tmp_path):
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        "input_series": [
            {"series": f"ifHighSpeed{{{SWITCH}}}", "values": "1000x60"},
            # 90% inbound, 10% outbound.
            {"series": f"ifHCInOctets{{{SWITCH}}}", "values": _octets(0.9, 60)},
            {"series": f"ifHCOutOctets{{{SWITCH}}}", "values": _octets(0.1, 60)},
        ],
        "promql_expr_test": [
            {"expr": f'round({UTILISATION}{{source="snmp"}}, 0.01)', "eval_time": "10m", "exp_samples": [
                {"labels": f'{{{SWITCH},direction="receive",interface="ge-0/0/3",source="snmp"}}', "value": 0.9},
                {"labels": f'{{{SWITCH},direction="transmit",interface="ge-0/0/3",source="snmp"}}', "value": 0.1}]},
            # The rate needs its window: pending from ~5m, firing 15m later, not before.
            _firing("NetworkInterfaceSaturated", "18m", []),
        ],
        "alert_rule_test": [{"eval_time": "25m", "alertname": "NetworkInterfaceSaturated", "exp_alerts": [{
            "exp_labels": {"severity": "warning", "service": "network", "job": "snmp-core-switch",
                           "instance": "core-switch", "ifIndex": "3", "ifName": "ge-0/0/3", "ifDescr": "ge-0/0/3",
                           "interface": "ge-0/0/3", "direction": "receive", "source": "snmp"},
            "exp_annotations": {
                "summary": "A network interface is saturated",
                "description": "Interface ge-0/0/3 of core-switch runs at 90% of its link speed (receive) for 15m: "
                               "requests through it queue and slow down.",
                "runbook_url": f"{HUB}/runbooks/NetworkInterfaceSaturated.md",
                "dashboard_url": f"{GRAFANA}/d/latency-budget"},
        }]}],
    }], files=("network",))


def test_a_host_link_at_70_percent_and_one_without_a_speed_stay_silent(homelab, tmp_path):
    virtual = 'job="node-exporter",instance="prom",device="cni0"'
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        "input_series": [
            {"series": f"node_network_speed_bytes{{{HOST}}}", "values": "125000000x60"},
            {"series": f"node_network_transmit_bytes_total{{{HOST}}}", "values": _octets(0.7, 60)},
            {"series": f"node_network_receive_bytes_total{{{HOST}}}", "values": _octets(0.85, 60)},
            # A bridge reports speed -1: no utilisation rather than a division by a negative.
            {"series": f"node_network_speed_bytes{{{virtual}}}", "values": "-1x60"},
            {"series": f"node_network_transmit_bytes_total{{{virtual}}}", "values": _octets(5, 60)},
        ],
        "promql_expr_test": [
            {"expr": f'round({UTILISATION}{{source="node"}}, 0.01)', "eval_time": "30m", "exp_samples": [
                {"labels": f'{{{HOST},direction="receive",interface="eth0",source="node"}}', "value": 0.85},
                {"labels": f'{{{HOST},direction="transmit",interface="eth0",source="node"}}', "value": 0.7}]},
            _firing("NetworkInterfaceSaturated", "30m", [
                f'ALERTS{{alertname="NetworkInterfaceSaturated",alertstate="firing",{HOST},direction="receive",'
                'interface="eth0",service="network",severity="warning",source="node"}']),
        ],
    }], files=("network",))


def test_a_short_burst_does_not_open_a_ticket(homelab, tmp_path):
    # 95% for 10 minutes, then 20%.
    burst = f"0+{int(GBIT_PER_MINUTE * 0.95)}x10 {int(GBIT_PER_MINUTE * 0.95 * 10)}+{int(GBIT_PER_MINUTE * 0.2)}x50"
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        "input_series": [
            {"series": f"ifHighSpeed{{{SWITCH}}}", "values": "1000x60"},
            {"series": f"ifHCInOctets{{{SWITCH}}}", "values": burst},
        ],
        "promql_expr_test": [_firing("NetworkInterfaceSaturated", f"{m}m", []) for m in (10, 15, 20, 30, 45)],
    }], files=("network",))


def test_the_latency_budget_panel_draws_the_alert_threshold():
    model = json.loads((DASHBOARDS_DIR / "latency-budget.json").read_text())
    panels = [p for p in model["panels"] if any(UTILISATION in t.get("expr", "") for t in p.get("targets", []))]
    assert len(panels) == 1
    steps = panels[0]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == SATURATION_RATIO
    # Beside the burn rates: directly below their row, above the error budget.
    burn_row = next(p for p in model["panels"] if p["title"].startswith("Burn rate per window"))
    budget_row = next(p for p in model["panels"] if p["type"] == "row" and p["title"] == "Error budget")
    assert burn_row["gridPos"]["y"] < panels[0]["gridPos"]["y"] < budget_row["gridPos"]["y"]
