"""The VM inventory, derived from `hosts` in the stack config: what each role needs.

Everything that must agree between the VMs and the workloads scheduled on them (node
labels, taint, where data lives) is decided here once.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.config import CloudImage, Host, Role, StackConfig

# k3s refuses node-role.kubernetes.io/* labels from an agent; a project prefix is allowed.
LABEL_PREFIX = "observability.homelab"
WORKLOAD_LABEL = f"{LABEL_PREFIX}/workload"
DEDICATED_TAINT_KEY = f"{LABEL_PREFIX}/dedicated"
DEDICATED_TAINT_VALUE = "observability"

# virtio-scsi gives each disk a stable by-id path named after its slot.
SYSTEM_DISK_INTERFACE = "scsi0"
DATA_DISK_INTERFACE = "scsi1"
DATA_DISK_DEVICE = f"/dev/disk/by-id/scsi-0QEMU_QEMU_HARDDISK_drive-{DATA_DISK_INTERFACE}"

# k3s' local-path provisioner keeps every PersistentVolume of the node under this directory,
# so mounting the data disk here puts the TSDB and the Loki chunks on it.
K3S_LOCAL_PATH_DIR = "/var/lib/rancher/k3s/storage"
# The storage class of that provisioner: PVCs of this class land on the data disk.
K3S_LOCAL_PATH_STORAGE_CLASS = "local-path"

BASE_TAGS = ("observability", "pulumi")


def cloud_image_file_name(image: CloudImage) -> str:
    """The name the image is stored under on each node: `fileName` with the checksum's first 12 digits.

    Two images never share a name, so a new image is downloaded beside the old one and the old
    one deleted after it (Pulumi's create-before-delete), and no file the stack did not download
    (such as the image under its plain name) is ever overwritten or deleted by this one.
    """
    assert image.checksum, "config validation requires proxmox.cloudImage.checksum"
    stem, extension = image.file_name.rsplit(".", 1)
    return f"{stem}-{image.checksum[:12]}.{extension}"


@dataclass(frozen=True)
class Scheduling:
    """How an observability workload is pinned to its dedicated k3s agent."""

    node_labels: dict[str, str]
    taint: dict[str, str]

    def node_selector(self) -> dict[str, str]:
        return dict(self.node_labels)

    def tolerations(self) -> list[dict[str, str]]:
        return [{"key": self.taint["key"], "operator": "Equal", "value": self.taint["value"], "effect": self.taint["effect"]}]

    def kubelet_args(self) -> tuple[list[str], list[str]]:
        labels = [f"{k}={v}" for k, v in self.node_labels.items()]
        taints = [f"{self.taint['key']}={self.taint['value']}:{self.taint['effect']}"]
        return labels, taints


def scheduling_for(role: Role) -> Scheduling:
    return Scheduling(
        node_labels={WORKLOAD_LABEL: role.value},
        taint={"key": DEDICATED_TAINT_KEY, "value": DEDICATED_TAINT_VALUE, "effect": "NoSchedule"},
    )


@dataclass(frozen=True)
class NodeGroup:
    """The k3s nodes one role's workloads are scheduled on, which must be Ready before they are installed."""

    labels: dict[str, str]
    hosts: dict[str, str]  # VM name (its hostname, which k3s takes as the node name) -> address

    @property
    def selector(self) -> str:
        """The Kubernetes label selector of these nodes."""
        return ",".join(f"{k}={v}" for k, v in sorted(self.labels.items()))


def k3s_node_groups(plans: list["VmPlan"]) -> list[NodeGroup]:
    """One group per role whose VMs join k3s, labelled as the workloads select them (scheduling_for)."""
    roles = sorted({p.role for p in plans if p.joins_k3s}, key=lambda r: r.value)
    return [NodeGroup(scheduling_for(role).node_labels, {p.name: str(p.host.address) for p in plans if p.role == role})
            for role in roles]


@dataclass(frozen=True)
class VmPlan:
    """One VM as the hosts component builds it."""

    name: str
    host: Host
    fqdn: str
    address_cidr: str
    bridge: str
    vlan_id: int | None
    ssh_authorized_keys: list[str]
    tags: list[str]
    data_mount: str
    data_label: str
    holds_data: bool
    back_up_data_disk: bool
    snippet_file_name: str
    joins_k3s: bool

    @property
    def role(self) -> Role:
        return self.host.role


PBS_DATASTORE_DIR = "/mnt/datastore"
# Where the datastores after a pbs host's first live on its data disk: hidden, because the first
# datastore's root is the disk's root and PBS' garbage collection walks it for index files,
# skipping hidden entries (pbs-datastore list_index_files).
MORE_DATASTORES_DIR = ".datastores"


def data_mount_for(host: Host) -> str:
    if host.role == Role.PBS:
        return f"{PBS_DATASTORE_DIR}/{host.datastore_names()[0]}"
    return K3S_LOCAL_PATH_DIR


def datastore_dirs(host: Host) -> dict[str, str]:
    """A pbs host's datastores -> their directory on the data disk. The first is the disk's root,
    mounted at /mnt/datastore/<first>, where a stack with one datastore has always had it: its
    path never moves. Each other one is a directory of the disk that PBS reaches as
    /mnt/datastore/<name> through a symlink (PBS refuses a datastore path inside another's)."""
    first, *more = host.datastore_names()
    root = f"{PBS_DATASTORE_DIR}/{first}"
    return {first: root, **{name: f"{root}/{MORE_DATASTORES_DIR}/{name}" for name in more}}


def plan_vms(cfg: StackConfig) -> list[VmPlan]:
    prefix = cfg.network.cidr.prefixlen
    plans = []
    for name, host in sorted(cfg.hosts.items(), key=lambda kv: kv[1].vm_id):
        plans.append(
            VmPlan(
                name=name,
                host=host,
                fqdn=f"{name}.{cfg.site.domain}",
                address_cidr=f"{host.address}/{prefix}",
                bridge=host.bridge or cfg.network.bridge,
                vlan_id=host.vlan_id if host.vlan_id is not None else cfg.network.vlan_id,
                ssh_authorized_keys=list(dict.fromkeys([*cfg.access.ssh_authorized_keys, *host.ssh_authorized_keys])),
                tags=sorted(set(BASE_TAGS) | {host.role.value, "data"} | set(host.tags)),
                data_mount=data_mount_for(host),
                data_label=f"{host.role.value}-data"[:16],  # ext4 labels hold 16 bytes
                holds_data=True,  # PBS datastore, Prometheus TSDB, Loki chunks
                # vzdump must not copy the PBS datastore into itself; TSDB and chunks are kept.
                back_up_data_disk=host.role != Role.PBS,
                snippet_file_name=f"{cfg.site.name}-{name}.user-data.yaml",
                joins_k3s=host.role != Role.PBS,
            )
        )
    return plans
