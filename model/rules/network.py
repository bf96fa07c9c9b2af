"""Network saturation: interface utilisation from SNMP and node-exporter, one series for both.

The latency playbook asks "is an interface saturating?". Switches and the NAS answer through
SNMP's IF-MIB (octet counters against `ifHighSpeed` in Mbit/s), Linux hosts through
node-exporter (byte counters against `node_network_speed_bytes`). Both are recorded as
`interface:network_utilisation:ratio` (0..1) with `direction` and `interface` labels, so the
alert and the Latency Budget panel read one series whatever the source. Interfaces without a
known speed (virtual, bonds, speed -1) are left out rather than divided by zero.
"""

from __future__ import annotations

from contracts import alerts
from model.config import StackConfig, duration_seconds
from model.rules import AlertRule, RecordingRule, RuleGroup, alert

UTILISATION = "interface:network_utilisation:ratio"
# The line: above 80% for 15 minutes is a ticket; a page is the latency SLO's business.
SATURATION_RATIO = 0.8
SATURATION_FOR = "15m"


def _rate_window(cfg: StackConfig) -> str:
    # rate() needs several samples: four SNMP scrapes at least, never under 5m.
    seconds = max(300, 4 * duration_seconds(cfg.metrics.snmp.scrape_interval))
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def recording_rules(cfg: StackConfig) -> list[RecordingRule]:
    window = _rate_window(cfg)
    rules = []
    for direction, octets in (("receive", "ifHCInOctets"), ("transmit", "ifHCOutOctets")):
        rules.append({
            "record": UTILISATION,
            "expr": (f'label_replace(rate({octets}[{window}]) * 8 / (ifHighSpeed * 1000000 > 0), '
                     '"interface", "$1", "ifName", "(.+)")'),
            "labels": {"direction": direction, "source": "snmp"},
        })
    for direction in ("receive", "transmit"):
        rules.append({
            "record": UTILISATION,
            "expr": (f'label_replace(rate(node_network_{direction}_bytes_total[{window}]) '
                     '/ (node_network_speed_bytes > 0), "interface", "$1", "device", "(.+)")'),
            "labels": {"direction": direction, "source": "node"},
        })
    return rules


def saturation_alert() -> AlertRule:
    return alert(
        alerts.NETWORK_INTERFACE_SATURATED, f"{UTILISATION} > {SATURATION_RATIO}", "warning", "A network interface is saturated",
        "Interface {{ $labels.interface }} of {{ $labels.instance }} runs at {{ $value | humanizePercentage }} "
        f"of its link speed ({{{{ $labels.direction }}}}) for {SATURATION_FOR}: requests through it queue and slow down.",
        for_=SATURATION_FOR)


def rule_groups(cfg: StackConfig) -> list[RuleGroup]:
    interval = cfg.metrics.evaluation_interval
    return [
        {"name": "network-utilisation", "interval": interval, "rules": recording_rules(cfg)},
        {"name": "network-saturation", "interval": interval, "rules": [saturation_alert()]},
    ]
