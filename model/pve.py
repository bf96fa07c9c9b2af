"""The virtualization layer: prometheus-pve-exporter, its scrape job and the Proxmox VE alerts (config `pveExporter`).

The exporter (PyPI, pinned in services/pve_exporter/pve-exporter-requirements.txt) runs on the pbs host in
its own venv, installed by cloud-init (model/cloud_init.py): that VM already talks to the PVE
API (the recovery service) and is not a k3s workload, so a PVE node down, which also takes k3s
agents with it, does not take the exporter's scheduling with it. Prometheus scrapes it once per
node of `proxmox.nodes` as `/pve?target=<node>&cluster=1&node=1`: every node answers for the
whole cluster (`/cluster/status`, `/cluster/resources`), so the cluster view survives any one
node being down, and for its own replication jobs. The cluster series therefore come once per
scraped node: the alerts aggregate by `id`, and a node counts as down when any member sees it
offline (the node itself, if it is down, answers nothing). Its port is open to Prometheus'
hosts only (`firewall()`): the exporter sends its token to any `target` it is asked about.
"""

from __future__ import annotations

from pathlib import Path

from contracts import alerts, services
from model.config import Role, StackConfig
from model.rules import alert

SERVICE = services.VIRTUALIZATION
JOB = "pve"
# Label the scrape adds: which node of proxmox.nodes answered.
NODE_LABEL = "pve_node"

EXPORTERS = Path(__file__).resolve().parent.parent / "services" / "pve_exporter"
REQUIREMENTS = EXPORTERS / "pve-exporter-requirements.txt"
UNIT = EXPORTERS / "prometheus-pve-exporter.service"
VENV = "/opt/prometheus-pve-exporter"
TOKEN_ENV_PATH = "/etc/prometheus-pve-exporter/token.env"
REQUIREMENTS_PATH = "/etc/prometheus-pve-exporter/requirements.txt"
UNIT_PATH = "/etc/systemd/system/prometheus-pve-exporter.service"
FIREWALL_PATH = "/etc/prometheus-pve-exporter/firewall.nft"
CA_PATH = "/etc/prometheus-pve-exporter/ca.pem"
SYSTEM_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
FIREWALL_TABLE = "prometheus_pve_exporter"

NODE_DOWN_FOR = "5m"  # a node's reboot after updates takes 2-3 minutes
STORAGE_FOR = "5m"
HA_FAILED_STATES = "error|fence|recovery"
# What the HA manager holds a guest in because an operator asked for it: `started`, and `stopped`
# (requested `stopped` or `disabled`). `ignored` has no pve_ha_state series at 1 at all.
HA_REQUESTED_STATES = "started|stopped"
REPLICATION_FOR = "30m"  # two tries of the default */15 schedule
NOT_BACKED_UP_FOR = "1h"


def host_name(cfg: StackConfig) -> str:
    """The pbs host the exporter runs on (the first one: one exporter watches the whole cluster)."""
    return sorted(cfg.hosts_with_role(Role.PBS))[0]


def exporter_address(cfg: StackConfig) -> str:
    assert cfg.pve_exporter is not None
    return f"{cfg.hosts[host_name(cfg)].address}:{cfg.pve_exporter.port}"


def node_targets(cfg: StackConfig) -> list[tuple[str, str]]:
    """(node, address of its API) for every node of proxmox.nodes."""
    assert cfg.pve_exporter is not None
    return [(node, cfg.pve_exporter.node_addresses.get(node, f"{node}.{cfg.site.domain}")) for node in cfg.proxmox.nodes]


def scrape_configs(cfg: StackConfig) -> list[dict]:
    """One job, one target per PVE node, scraped through the exporter as /pve?target=<node>."""
    pve = cfg.pve_exporter
    if pve is None:
        return []
    return [{
        "job_name": JOB,
        "scrape_interval": pve.scrape_interval,
        "scrape_timeout": pve.scrape_timeout,
        "metrics_path": "/pve",
        "params": {"module": ["default"], "cluster": ["1"], "node": ["1"]},
        "static_configs": [{"targets": [address], "labels": {"service": SERVICE, NODE_LABEL: node}}
                           for node, address in node_targets(cfg)],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": [NODE_LABEL], "target_label": "instance"},
            {"target_label": "__address__", "replacement": exporter_address(cfg)},
        ],
    }]


def ca_bundle(cfg: StackConfig) -> str:
    """What requests verifies the nodes against: the cluster's CA alone when one is set, so a
    publicly trusted certificate of some other host is refused; else the system store."""
    assert cfg.pve_exporter is not None
    return CA_PATH if cfg.pve_exporter.ca_certificate else SYSTEM_CA_BUNDLE


def unit(cfg: StackConfig) -> str:
    pve = cfg.pve_exporter
    assert pve is not None
    user, token_name = pve.token_id.split("!", 1)
    return (UNIT.read_text().replace("@LISTEN@", f"0.0.0.0:{pve.port}").replace("@USER@", user)
            .replace("@TOKEN_NAME@", token_name).replace("@VERIFY_SSL@", "true" if pve.verify_tls else "false")
            .replace("@CA_BUNDLE@", ca_bundle(cfg)).replace("@FIREWALL@", FIREWALL_PATH))


def scraper_addresses(cfg: StackConfig) -> list[str]:
    """Who may ask the exporter: the hosts of the prometheus role. Prometheus' pods run only there
    (nodeSelector and toleration of model/metrics.py), and k3s' flannel masquerades pod traffic to
    an address outside the cluster network (the pbs VM) as the node's own address."""
    return sorted(str(h.address) for h in cfg.hosts_with_role(Role.PROMETHEUS).values())


def firewall(cfg: StackConfig) -> str:
    """nftables ruleset for the exporter's port: Prometheus' hosts and loopback, nothing else.

    The exporter has no authentication and sends its token to whatever host `?target=` names:
    anyone else reaching the port could have it sent to a host of theirs. Its own table, so
    PBS and SSH are untouched; deleted and re-created in one transaction, so a restart of the
    exporter reloads it without a window. Loopback by source address (the kernel drops 127/8
    and ::1 from any other interface)."""
    assert cfg.pve_exporter is not None
    port = cfg.pve_exporter.port
    allowed = ", ".join(["127.0.0.0/8", *scraper_addresses(cfg)])
    return (f"#!/usr/sbin/nft -f\n# prometheus-pve-exporter (model/pve.py): tcp/{port} for Prometheus' hosts only.\n"
            f"table inet {FIREWALL_TABLE}\ndelete table inet {FIREWALL_TABLE}\n"
            f"table inet {FIREWALL_TABLE} {{\n"
            "\tchain input {\n"
            "\t\ttype filter hook input priority filter; policy accept;\n"
            f"\t\ttcp dport {port} ip saddr {{ {allowed} }} accept\n"
            f"\t\ttcp dport {port} ip6 saddr ::1 accept\n"
            f"\t\ttcp dport {port} drop\n"
            "\t}\n}\n")


def install_script() -> str:
    """The venv with the pinned exporter; a second run (cloud-init re-run) leaves it as it is."""
    return (f"set -eu; if [ -x {VENV}/bin/pve_exporter ]; then exit 0; fi; python3 -m venv {VENV}; "
            f"{VENV}/bin/pip install --no-cache-dir --disable-pip-version-check -r {REQUIREMENTS_PATH}")


# --- alerts ---------------------------------------------------------------------------------

NODES, CLUSTERS, STORAGES = 'id=~"node/.*"', 'id=~"cluster/.*"', 'id=~"storage/.*"'


def _by_id(selector: str) -> str:
    # Every scraped node reports the cluster: one series per id, down if any member says so.
    return f"min by (id) (pve_up{{{selector}}})"


def _node_label(expr: str, prefix: str) -> str:
    return f'label_replace({expr}, "node", "$1", "id", "{prefix}/([^/]+).*")'


def alert_rules() -> list[dict]:
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


def rule_groups(cfg: StackConfig) -> list[dict]:
    if not cfg.pve_exporter:
        return []
    return [{"name": "virtualization", "interval": cfg.metrics.evaluation_interval, "rules": alert_rules()}]
