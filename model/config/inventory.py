"""Sections `proxmox`, `network`, `access`, `k3s` and `hosts`: the VMs, where they run and how they are reached."""

from __future__ import annotations

import ipaddress
import re
from enum import Enum
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator, model_validator

from model.config.base import ConfigModel, Problem

PROXMOX_TAG = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
HOSTNAME = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")

CHECKSUM_HEX_DIGITS = {"sha256": 64, "sha512": 128}


class CloudImage(ConfigModel):
    """The cloud image every VM boots from; read only when a VM is created."""

    url: str = Field(pattern=r"^https://")
    file_name: str = Field(pattern=r"^[A-Za-z0-9._-]+\.(img|iso)$")
    # Required (see problems); optional here only so that its absence gets a helpful message.
    checksum: str | None = Field(default=None, pattern=r"^[0-9a-f]{64,128}$")
    checksum_algorithm: str = Field(default="sha512", pattern=r"^(sha256|sha512)$")
    # How long Proxmox may take to download it (a few hundred MB over the homelab's uplink).
    download_timeout_seconds: int = Field(default=1800, ge=60, le=14_400)

    def problems(self, at: str = "proxmox.cloudImage") -> list[Problem]:
        found: list[Problem] = []
        if self.checksum is None:
            found.append(Problem(f"{at}.checksum", f"is required: Proxmox verifies the download against it "
                                                   f"(the {self.checksum_algorithm} line of the image's "
                                                   f"{self.checksum_algorithm.upper()}SUMS)"))
        elif len(self.checksum) != CHECKSUM_HEX_DIGITS[self.checksum_algorithm]:
            found.append(Problem(f"{at}.checksum", f"has {len(self.checksum)} hex digits; a {self.checksum_algorithm} "
                                                   f"has {CHECKSUM_HEX_DIGITS[self.checksum_algorithm]} "
                                                   f"(checksumAlgorithm: sha256 or sha512)"))
        if re.search(r"/(latest|current)/", self.url):
            found.append(Problem(f"{at}.url", "names a moving image: each new build replaces it, so its checksum stops "
                                              "matching and nodes added later boot another system; use the build's "
                                              "dated directory (e.g. .../bookworm/20250210-2019/...)"))
        return found


class Proxmox(ConfigModel):
    nodes: list[str] = Field(min_length=1)
    vm_datastore: str = "local-lvm"
    snippet_datastore: str = "local"
    image_datastore: str = "local"
    cloud_image: CloudImage


class Network(ConfigModel):
    bridge: str = "vmbr0"
    vlan_id: int | None = Field(default=None, ge=1, le=4094)
    cidr: ipaddress.IPv4Network
    # Default: the first address of cidr (192.168.30.1 for 192.168.30.0/24).
    gateway: ipaddress.IPv4Address
    # Default: [gateway], the router that most homelabs also resolve names with.
    dns_servers: list[ipaddress.IPv4Address] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data):
        """gateway and dnsServers where the stack file leaves them out; a cidr that does not parse
        is left to the field's own error."""
        if not isinstance(data, dict) or not isinstance(data.get("cidr"), str):
            return data
        try:
            first = next(ipaddress.IPv4Network(data["cidr"]).hosts())
        except (ValueError, StopIteration):
            return data
        data = dict(data)
        if "gateway" not in data:
            data["gateway"] = str(first)
        if "dnsServers" not in data and "dns_servers" not in data:
            data["dnsServers"] = [data["gateway"]]
        return data

    def problems(self) -> list[Problem]:
        if self.gateway not in self.cidr:
            return [Problem("network.gateway", f"{self.gateway} is outside network.cidr {self.cidr}")]
        return []


def _public_keys(keys: list[str]) -> list[str]:
    for key in keys:
        if not re.match(r"^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-\S+) [A-Za-z0-9+/=]+( .*)?$", key):
            raise ValueError(f"not an OpenSSH public key: {key[:24]!r}...")
    return keys


PublicKeys = Annotated[list[str], AfterValidator(_public_keys)]


class Access(ConfigModel):
    admin_user: str = Field(default="ops", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    ssh_authorized_keys: PublicKeys = Field(min_length=1)


class K3s(ConfigModel):
    """The homelab k3s cluster that the Prometheus and Loki hosts join as agents."""

    server_url: str = Field(pattern=r"^https://[^/]+:\d+$")
    version: str = Field(pattern=r"^v\d+\.\d+\.\d+\+k3s\d+$")
    # First boot of an agent VM (cloud-init, the k3s install, the join) until its node is Ready:
    # every Helm release waits for that, then Helm waits this long for the release's workloads
    # (first image pulls included).
    node_ready_timeout_seconds: int = Field(default=1200, ge=60, le=7200)
    release_timeout_seconds: int = Field(default=900, ge=60, le=7200)


DatastoreName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{2,31}$")]


class Role(str, Enum):
    PBS = "pbs"
    PROMETHEUS = "prometheus"
    LOKI = "loki"


class Host(ConfigModel):
    """One Proxmox VM of the inventory. The map key is the VM's hostname."""

    role: Role
    node: str
    vm_id: int = Field(ge=100, le=999_999_999)
    cores: int = Field(ge=1, le=64)
    memory_mb: int = Field(ge=2048, le=262_144)
    system_disk_gb: int = Field(default=32, ge=16, le=1024)
    data_disk_gb: int = Field(ge=20, le=65_536)
    address: ipaddress.IPv4Address
    # Per-VM network and access, when a host differs from the `network` / `access` defaults.
    bridge: str | None = None
    vlan_id: int | None = Field(default=None, ge=1, le=4094)
    ssh_authorized_keys: PublicKeys = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    # PBS only: its datastores on the data disk, the first at the disk's root (model/hosts.py
    # datastore_dirs). `datastore: <name>` is the same as `datastores: [<name>]`.
    datastores: list[DatastoreName] = Field(default_factory=list)
    datastore: DatastoreName | None = None

    def datastore_names(self) -> list[str]:
        return list(self.datastores) or ([self.datastore] if self.datastore else [])

    @field_validator("tags")
    @classmethod
    def _proxmox_tags(cls, tags: list[str]) -> list[str]:
        for tag in tags:
            if not PROXMOX_TAG.match(tag):
                raise ValueError(f"tag {tag!r} must be lowercase letters, digits, '-', '_' or '.'")
        return tags
