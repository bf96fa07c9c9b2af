"""The Proxmox VE alerts, on prometheus-pve-exporter's series (model/pve.py scrapes it once per node).

Every scraped node reports the whole cluster: the alerts aggregate by `id`, and a node counts as
down when any member sees it offline.
"""

from __future__ import annotations

from contracts import alerts
from model.config import StackConfig
from model.rules import AlertRule, RuleGroup, alert

NODE_DOWN_FOR = "5m"  # a node's reboot after updates takes 2-3 minutes
STORAGE_FOR = "5m"
HA_FAILED_STATES = "error|fence|recovery"
# What the HA manager holds a guest in because an operator asked for it: `started`, and `stopped`
# (requested `stopped` or `disabled`). `ignored` has no pve_ha_state series at 1 at all.
HA_REQUESTED_STATES = "started|stopped"
REPLICATION_FOR = "30m"  # two tries of the default */15 schedule
NOT_BACKED_UP_FOR = "1h"
NODES, CLUSTERS, STORAGES = 'id=~"node/.*"', 'id=~"cluster/.*"', 'id=~"storage/.*"'


def _by_id(selector: str) -> str:
    # Every scraped node reports the cluster: one series per id, down if any member says so.
    return f"min by (id) (pve_up{{{selector}}})"


def _node_label(expr: str, prefix: str) -> str:
    return f'label_replace({expr}, "node", "$1", "id", "{prefix}/([^/]+).*")'


def alert_rules() -> list[AlertRule]:
    nodes_down = _node_label(f'{_by_id(NODES)} == 0', "node")
    storage = _node_label(_by_id(STORAGES), "storage")
    ha = 'max by (id, state) (pve_ha_state{id=~"(qemu|lxc)/.*"'
    guest_name = "topk by (id) (1, max by (id, name) (pve_guest_info))"
    return [
        alert(alerts.PVE_NODE_DOWN, nodes_down, "critical", "A Proxmox VE node is offline",
              "Node {{ $labels.node }} has been offline in the cluster's view for " + NODE_DOWN_FOR
              + ": its guests are down or being recovered by HA, and the cluster runs without its capacity.",
              for_=NODE_DOWN_FOR),
        alert(alerts.PVE_QUORUM_LOST, f"{_by_id(CLUSTERS)} == 0", "critical", "The Proxmox VE cluster has lost quorum",
              "Cluster {{ $labels.id }} is not quorate: /etc/pve is read-only, no guest can be started, "
              "migrated or changed, and HA cannot recover anything.",
              for_="2m"),
        # A storage of a node that is down is no news beyond PveNodeDown.
        alert(alerts.PVE_STORAGE_UNAVAILABLE,
              f"{storage} == 0\nunless on (node)\n{nodes_down}", "critical", "A Proxmox VE storage is unavailable",
              "Storage {{ $labels.id }} is not available on its online node {{ $labels.node }} for " + STORAGE_FOR
              + ": guests with disks on it stall, backups to it fail.",
              for_=STORAGE_FOR),
        # A guest not managed by HA has every pve_ha_state at 0; one managed has exactly one at 1.
        alert(alerts.PVE_HA_RESOURCE_NOT_STARTED, f'{ha},state=~"{HA_FAILED_STATES}"}}) == 1', "critical", "An HA resource failed",
              "HA resource {{ $labels.id }} is in state {{ $labels.state }}: HA could not keep it running "
              "(error: it gave up; fence/recovery: its node is being fenced).",
              for_="5m"),
        alert(alerts.PVE_HA_RESOURCE_NOT_STARTED, f'{ha},state!~"{HA_REQUESTED_STATES}|{HA_FAILED_STATES}"}}) == 1', "warning", "An HA resource is not started",
              "HA resource {{ $labels.id }} has been in state {{ $labels.state }} for 15m instead of the "
              "state it was asked for (started or stopped).",
              for_="15m"),
        alert(alerts.PVE_REPLICATION_FAILING,
              "(max by (id) (pve_replication_failed_syncs) > 0)\n"
              "* on (id) group_left (guest, source, target)\nmax by (id, guest, source, target) (pve_replication_info)",
              "warning", "A Proxmox VE storage replication job keeps failing",
              "Replication job {{ $labels.id }} of {{ $labels.guest }} ({{ $labels.source }} to {{ $labels.target }}) "
              "has failed its last {{ $value }} syncs: a failover would lose everything since the last good one.",
              for_=REPLICATION_FOR),
        alert(alerts.PVE_GUEST_NOT_BACKED_UP,
              f"(max by (id) (pve_not_backed_up_info) == 1)\n* on (id) group_left (name)\n{guest_name}",
              "warning", "A guest is covered by no backup job",
              "Guest {{ $labels.id }} ({{ $labels.name }}) is in no PVE backup job: it has no restore point, "
              "and BackupJobFailed or BackupsStale will never speak for it.",
              for_=NOT_BACKED_UP_FOR),
    ]


def rule_groups(cfg: StackConfig) -> list[RuleGroup]:
    if not cfg.pve_exporter:
        return []
    return [{"name": "virtualization", "interval": cfg.metrics.evaluation_interval, "rules": alert_rules()}]
