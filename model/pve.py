"""The virtualization layer: prometheus-pve-exporter and its scrape job (config `pveExporter`); its alerts: model/rules/pve.py.

The exporter (PyPI, pinned in services/pve_exporter/pve-exporter-requirements.txt) runs on a pbs host in
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

from contracts import services
from model.config import Role, StackConfig

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

def exporter_address(cfg: StackConfig) -> str:
    """The exporter on pveExporter.host (StackConfig.placement): one exporter watches the whole cluster."""
    assert cfg.pve_exporter is not None
    return f"{cfg.hosts[cfg.placement('pveExporter')].address}:{cfg.pve_exporter.port}"


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
    (nodeSelector and toleration of model/values/metrics.py), and k3s' flannel masquerades pod traffic to
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
