"""cloud-config user-data for each VM of the inventory, by role.

Pure: returns plain data and text. Secret values come in through `secrets` (key -> value);
the hosts component passes the real Pulumi secrets, the offline preview passes redacted
placeholders, so what lands in build/ names the file a secret is written to, never its value.
"""

from __future__ import annotations

import base64
import gzip
import io
import zipfile
from pathlib import Path
from typing import Mapping

import yaml

from model import probes, pve, recovery
from model.config import Role, StackConfig
from model.facts.secrets import K3S_TOKEN, PVE_EXPORTER_TOKEN
from model.hosts import DATA_DISK_DEVICE, PBS_DATASTORE_DIR, VmPlan, datastore_dirs, scheduling_for

PBS_SUITE = "bookworm"
PROXMOX_KEY_URL = f"https://enterprise.proxmox.com/debian/proxmox-release-{PBS_SUITE}.gpg"
PROXMOX_KEY_PATH = f"/etc/apt/trusted.gpg.d/proxmox-release-{PBS_SUITE}.gpg"
# Published by Proxmox in "Package Repositories"; apt must not trust a key that differs.
PROXMOX_KEY_SHA512 = (
    "7da6fe34168adc6e479327ba517796d4702fa2f8b4f0a9833f5ea6e6b48f6507"
    "a6da403a274fe201595edc86a84463d50383d07f64bdde2e3658108db7d6dc87"
)
PBS_REPOSITORY = f"deb http://download.proxmox.com/debian/pbs {PBS_SUITE} pbs-no-subscription"

EXPORTER_SOURCE = Path(__file__).resolve().parent.parent / "services" / "pbs_exporter"
EXPORTER_DIR = "/usr/local/lib/pbs-job-exporter"
EXPORTER_ZIPAPP = "pbs-job-exporter.pyz"
EXPORTER_CONTRACTS = ("__init__.py", "metrics.py")  # the names it writes: contracts/metrics.py
EXPORTER_TOKEN_PATH = "/etc/pbs-job-exporter/token"
EXPORTER_AUTH_ID = "pbs-exporter@pbs"
EXPORTER_TOKEN_NAME = "metrics"

RECOVERY_SOURCE = Path(__file__).resolve().parent.parent / "services" / "recovery"
CONTRACTS_SOURCE = Path(__file__).resolve().parent.parent / "contracts"  # the names the service shares

K3S_CONFIG_PATH = "/etc/rancher/k3s/config.yaml"
K3S_TOKEN_PATH = "/etc/rancher/k3s/agent-token"


def _base(cfg: StackConfig, vm: VmPlan) -> dict:
    return {
        "hostname": vm.name,
        "fqdn": vm.fqdn,
        "prefer_fqdn_over_hostname": False,
        "manage_etc_hosts": True,
        "timezone": cfg.site.timezone,
        "users": [
            {
                "name": cfg.access.admin_user,
                "groups": ["sudo"],
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "lock_passwd": True,
                "ssh_authorized_keys": vm.ssh_authorized_keys,
            }
        ],
        "disable_root": True,
        "ssh_pwauth": False,
        "ntp": {"enabled": True, "ntp_client": "chrony", "servers": list(cfg.site.ntp_servers)},
        "package_update": True,
        "packages": ["qemu-guest-agent"],
        # The data disk is formatted only when it carries no filesystem yet: a VM recreated on
        # an existing disk keeps its datastore, TSDB or chunks.
        "fs_setup": [
            {
                "label": vm.data_label,
                "filesystem": "ext4",
                "device": DATA_DISK_DEVICE,
                "partition": "none",
                "overwrite": False,
            }
        ],
        "mounts": [[f"LABEL={vm.data_label}", vm.data_mount, "ext4", "defaults,nofail", "0", "2"]],
        "write_files": [],
        "runcmd": [["systemctl", "enable", "--now", "qemu-guest-agent"]],
    }


def _create_datastore(store: str, path: str, prepare: str = "") -> str:
    """Shell: `prepare`, then the datastore at `path`; an existing one on the data disk (a recreated
    VM) is adopted, never re-initialised."""
    return (
        f"set -eu; {prepare}"
        f"if proxmox-backup-manager datastore list --output-format json | grep -q '\"name\":\"{store}\"'; then exit 0; fi; "
        f"if [ -d {path}/.chunks ]; then reuse='--reuse-datastore true'; else reuse=''; fi; "
        f"proxmox-backup-manager datastore create {store} {path} $reuse"
    )


def _link_datastore(store: str, directory: str, root: str) -> str:
    """Shell: the directory of a further datastore on the data disk, and its link /mnt/datastore/<store>.
    Only on the mounted disk: never a datastore on the system disk."""
    link = f"{PBS_DATASTORE_DIR}/{store}"
    return (f"mountpoint -q {root} || {{ echo '{root} is not mounted: no datastore {store} without the data disk' >&2; exit 1; }}; "
            f"mkdir -p {directory}; [ -L {link} ] || ln -sT {directory} {link}; ")


def _pbs(cfg: StackConfig, vm: VmPlan, doc: dict) -> None:
    doc["packages"] += ["curl", "ca-certificates", "prometheus-node-exporter"]
    doc["write_files"].append(
        {"path": "/etc/apt/sources.list.d/pbs-no-subscription.list", "content": PBS_REPOSITORY + "\n", "permissions": "0644"}
    )
    install_pbs = (
        "set -eu; "
        f"curl -fsSL {PROXMOX_KEY_URL} -o {PROXMOX_KEY_PATH}; "
        f"echo '{PROXMOX_KEY_SHA512}  {PROXMOX_KEY_PATH}' | sha512sum --check --strict; "
        "apt-get update; "
        "DEBIAN_FRONTEND=noninteractive apt-get install -y proxmox-backup-server"
    )
    # The first datastore at the disk's root, before any other's directory lands there.
    (first, root), *more = datastore_dirs(vm.host).items()
    doc["runcmd"] += [
        ["sh", "-c", install_pbs],
        ["sh", "-c", _create_datastore(first, root)],
        *(["sh", "-c", _create_datastore(store, f"{PBS_DATASTORE_DIR}/{store}", _link_datastore(store, directory, root))]
          for store, directory in more),
        ["systemctl", "enable", "--now", "prometheus-node-exporter"],
    ]
    _pbs_job_exporter(cfg, doc)


def exporter_zipapp() -> bytes:
    """services/pbs_exporter as the zipapp the pbs host runs (``python3 pbs-job-exporter.pyz``), with
    the contracts it reads.

    The same bytes from the same sources on every render: files in a fixed order, each with the
    same date and mode (zipapp.create_archive would stamp each file's local-time mtime). Stored,
    not deflated: the user-data's gzip compresses the whole archive better."""
    files = sorted((f"pbs_exporter/{source.relative_to(EXPORTER_SOURCE).as_posix()}", source)
                   for source in EXPORTER_SOURCE.rglob("*.py"))
    files += [(f"contracts/{name}", CONTRACTS_SOURCE / name) for name in EXPORTER_CONTRACTS]
    buffer = io.BytesIO()
    buffer.write(b"#!/usr/bin/python3\n")
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:
        # The archive's own entry: the package's __main__ imports relatively, so it cannot be it.
        entries = [("__main__.py", b"import sys\n\nfrom pbs_exporter.cli import main\n\nsys.exit(main())\n")]
        entries += [(name, source.read_bytes()) for name, source in files]
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            info.external_attr = 0o100644 << 16
            archive.writestr(info, data)
    return buffer.getvalue()


def _pbs_job_exporter(cfg: StackConfig, doc: dict) -> None:
    """Installs services/pbs_exporter (as a zipapp) with its systemd unit and a read-only API token.

    PBS generates a token's secret itself, and only once PBS runs: so the token is created
    on the host at first boot and written straight to a root-only file. Its value never
    leaves the VM, and no Pulumi secret can be stale or leak through the snippet.
    """
    unit = (EXPORTER_SOURCE / "pbs-job-exporter.service").read_text()
    unit = unit.replace("@LISTEN@", f"0.0.0.0:{cfg.pbs_exporter.port}")
    unit = unit.replace("--state-file", f"--interval {cfg.pbs_exporter.poll_interval_seconds} \\\n    --state-file")
    token_id = f"{EXPORTER_AUTH_ID}!{EXPORTER_TOKEN_NAME}"
    create_token = (
        "set -eu; umask 077; mkdir -p /etc/pbs-job-exporter; "
        f"if [ -s {EXPORTER_TOKEN_PATH} ]; then exit 0; fi; "
        f"proxmox-backup-manager user list --output-format json | grep -q '\"userid\":\"{EXPORTER_AUTH_ID}\"' || "
        f"proxmox-backup-manager user create {EXPORTER_AUTH_ID} --comment 'Prometheus PBS job exporter (read-only)'; "
        f"secret=$(proxmox-backup-manager user generate-token {EXPORTER_AUTH_ID} {EXPORTER_TOKEN_NAME} --output-format json"
        " | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"value\"])'); "
        # A token's rights are the intersection of the user's and its own: both get Audit, and
        # RemoteAudit on /remote, without which PBS hides sync jobs that have a remote.
        f"proxmox-backup-manager acl update / Audit --auth-id {EXPORTER_AUTH_ID}; "
        f"proxmox-backup-manager acl update / Audit --auth-id '{token_id}'; "
        f"proxmox-backup-manager acl update /remote RemoteAudit --auth-id {EXPORTER_AUTH_ID}; "
        f"proxmox-backup-manager acl update /remote RemoteAudit --auth-id '{token_id}'; "
        f"printf '%s:%s\\n' '{token_id}' \"$secret\" > {EXPORTER_TOKEN_PATH}"
    )
    doc["packages"].append("python3-prometheus-client")
    doc["write_files"] += [
        _embedded(f"{EXPORTER_DIR}/{EXPORTER_ZIPAPP}", exporter_zipapp(), "0755"),
        {"path": "/etc/systemd/system/pbs-job-exporter.service", "content": unit, "permissions": "0644"},
    ]
    doc["runcmd"] += [
        ["sh", "-c", create_token],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "pbs-job-exporter.service"],
    ]


def _k3s_agent(cfg: StackConfig, vm: VmPlan, doc: dict, secrets: Mapping[str, str]) -> None:
    assert cfg.k3s is not None  # guaranteed by StackConfig.problems()
    labels, taints = scheduling_for(vm.role).kubelet_args()
    agent_config = {
        "server": cfg.k3s.server_url,
        "token-file": K3S_TOKEN_PATH,
        "node-ip": str(vm.host.address),
        "node-label": labels,
        "node-taint": taints,
    }
    doc["packages"] += ["curl", "ca-certificates"]
    doc["write_files"] += [
        {"path": K3S_CONFIG_PATH, "content": yaml.safe_dump(agent_config, sort_keys=False), "permissions": "0644"},
        {"path": K3S_TOKEN_PATH, "content": secrets[K3S_TOKEN] + "\n", "permissions": "0600", "owner": "root:root"},
    ]
    doc["runcmd"].append(
        [
            "sh",
            "-c",
            f"curl -sfL https://get.k3s.io | INSTALL_K3S_VERSION='{cfg.k3s.version}' INSTALL_K3S_EXEC=agent sh -",
        ]
    )


def _embedded(path: str, data: bytes, permissions: str) -> dict:
    # Compressed: reviewers read the code in the repository, not inside the user-data.
    return {"path": path, "encoding": "gz+b64", "permissions": permissions,
            "content": base64.b64encode(gzip.compress(data, mtime=0)).decode()}


def _recovery_service(cfg: StackConfig, vm: VmPlan, doc: dict, secrets: Mapping[str, str]) -> None:
    """Installs recovery/ (docs/recovery.md) with its config, secret files, PBS tokens and unit.

    Debian packages only; the PBS tokens are made on the host like the exporter's, the other
    secrets come from the stack and are written to root-only files that systemd hands over."""
    doc["packages"] += ["python3-websocket", "python3-yaml", "python3-jsonschema", "ansible-core"]
    root = RECOVERY_SOURCE.parent.parent
    # On the host the package is `recovery` (python3 -m recovery), beside the playbook and the docs.
    files = [(f"recovery/{source.name}", source) for source in sorted(RECOVERY_SOURCE.glob("*.py"))]
    files += [(f"contracts/{source.name}", source) for source in sorted(CONTRACTS_SOURCE.glob("*.py"))]
    files += [(str(source.relative_to(root)), source) for source in (root / "playbooks" / "backup-fallback.yml", root / "docs" / "recovery.md")]
    for relative, source in files:
        doc["write_files"].append(_embedded(f"{recovery.INSTALL_DIR}/{relative}", source.read_bytes(), "0644"))
    credentials = recovery.credentials(cfg)
    unit = (RECOVERY_SOURCE / "recovery.service").read_text().replace(
        "@CREDENTIALS@", "\n".join(f"LoadCredential={c.name}:{c.host_path}" for c in credentials))
    doc["write_files"] += [
        {"path": recovery.CONFIG_PATH, "content": yaml.safe_dump(recovery.service_config(cfg), sort_keys=False), "permissions": "0644"},
        {"path": "/etc/systemd/system/recovery.service", "content": unit, "permissions": "0644"},
    ]
    inventory = recovery.fallback_inventory(cfg)
    if inventory:
        doc["write_files"].append({"path": recovery.INVENTORY_PATH, "content": yaml.safe_dump(inventory, sort_keys=False),
                                   "permissions": "0644"})
    doc["write_files"] += [{"path": c.host_path, "content": secrets[c.secret_key] + "\n", "permissions": "0600",
                            "owner": "root:root"} for c in credentials if c.secret_key]
    doc["runcmd"] += [
        ["sh", "-c", recovery.pbs_token_script(vm.host.datastore_names())],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "recovery.service"],
    ]
    if recovery.probing(cfg):
        # The probes it runs on demand: Debian's exporter with the stack's modules, on localhost only.
        doc["packages"].append("prometheus-blackbox-exporter")
        doc["write_files"] += [
            {"path": recovery.BLACKBOX_CONFIG_PATH, "content": yaml.safe_dump(probes.blackbox_config(cfg), sort_keys=False),
             "permissions": "0644"},
            {"path": "/etc/default/prometheus-blackbox-exporter", "permissions": "0644",
             "content": f'ARGS="--config.file {recovery.BLACKBOX_CONFIG_PATH} --web.listen-address {recovery.BLACKBOX_LISTEN}"\n'},
        ]
        doc["runcmd"].append(["systemctl", "restart", "prometheus-blackbox-exporter.service"])


def _pve_exporter(cfg: StackConfig, doc: dict, secrets: Mapping[str, str]) -> None:
    """Installs prometheus-pve-exporter (model/pve.py) into its venv, with its unit and token.

    The token's secret comes from the stack (PVE makes it when `pveum user token add` runs, on a
    node, not here) and lands in a root-only environment file; the unit names only its path."""
    assert cfg.pve_exporter is not None
    doc["packages"] += ["python3-venv", "ca-certificates", "nftables"]
    if cfg.pve_exporter.ca_certificate:
        # The exporter's own bundle, not the system store: see pve.ca_bundle().
        doc["write_files"].append({"path": pve.CA_PATH, "content": cfg.pve_exporter.ca_certificate + "\n", "permissions": "0644"})
    doc["write_files"] += [
        {"path": pve.REQUIREMENTS_PATH, "content": pve.REQUIREMENTS.read_text(), "permissions": "0644"},
        {"path": pve.FIREWALL_PATH, "content": pve.firewall(cfg), "permissions": "0644"},
        {"path": pve.UNIT_PATH, "content": pve.unit(cfg), "permissions": "0644"},
        {"path": pve.TOKEN_ENV_PATH, "content": f"PVE_TOKEN_VALUE={secrets[PVE_EXPORTER_TOKEN]}\n", "permissions": "0600",
         "owner": "root:root"},
    ]
    doc["runcmd"] += [
        ["sh", "-c", pve.install_script()],
        ["systemctl", "daemon-reload"],
        ["systemctl", "enable", "--now", "prometheus-pve-exporter.service"],
    ]


def user_data(cfg: StackConfig, vm: VmPlan, secrets: Mapping[str, str]) -> dict:
    doc = _base(cfg, vm)
    if vm.role == Role.PBS:
        _pbs(cfg, vm, doc)
        if cfg.recovery and vm.name == cfg.placement("recovery"):
            _recovery_service(cfg, vm, doc, secrets)
        if cfg.pve_exporter and vm.name == cfg.placement("pveExporter"):
            _pve_exporter(cfg, doc, secrets)
    else:
        _k3s_agent(cfg, vm, doc, secrets)
        if cfg.reports and cfg.reports.archive.nfs and vm.role == Role.PROMETHEUS:
            # The kubelet mounts the report archive's NFS share for the CronJob pinned to this host.
            doc["packages"].append("nfs-common")
    return doc


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # libyaml: 5x faster
    """Writes multi-line strings (embedded files) as literal blocks, as a person would."""


_Dumper.add_representer(
    str,
    lambda dumper, value: dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value.rstrip("\n") else None),
)


def render(doc: dict) -> str:
    return "#cloud-config\n" + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=200)
