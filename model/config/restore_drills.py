"""Section `recovery.restoreDrills`: the recovery service's restore drills (docs/restore-drills.md)."""

from __future__ import annotations

from pydantic import Field

from model.config.base import ConfigModel, Problem
from model.config.fields import PromDuration
from model.config.inventory import PROXMOX_TAG
from model.facts.durations import parse_seconds

STORAGE_ID = r"^[a-z][a-z0-9\-_.]*[a-z0-9]$"  # pve-common pve-storage-id


class RestoreDrills(ConfigModel):
    """Which guests are drilled, how often, and the scratch VMIDs, storage and pool a drill may use (the
    drill token's privileges end there)."""

    guests: list[int] = Field(default_factory=list)  # VMIDs
    tags: list[str] = Field(default_factory=list)  # or every guest with one of these PVE tags
    # How often a guest is drilled: by the first of its tags named here (its tier), else `default`.
    intervals: dict[str, PromDuration] = Field(default_factory=lambda: {"tier-1": "7d", "default": "30d"})
    window: str = Field(default="10:00-16:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]-(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$")
    vmid_first: int = Field(ge=100, le=999_999_999)
    vmid_last: int = Field(ge=100, le=999_999_999)
    node: str | None = None  # where drills restore; default: the guest's own node
    live_restore: list[int] = Field(default_factory=list)  # VMs restored live (started while the data streams in)
    storage: str = Field(pattern=STORAGE_ID)  # scratch storage
    pbs_storage: str = Field(pattern=STORAGE_ID)  # PVE's storage of the PBS datastore
    pool: str = Field(default="restore-drills", pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    max_duration: PromDuration = "2h"
    agent_timeout: PromDuration = "10m"
    rto_target: PromDuration = "30m"  # RestoreTimeAboveTarget

    def problems(self, host_vm_ids: dict[str, int], nodes: list[str]) -> list[Problem]:
        """`host_vm_ids`: the stack's hosts and their VMIDs, none of which may lie in the scratch range."""
        at, found = "recovery.restoreDrills", []
        if not self.guests and not self.tags:
            found.append(Problem(at, "give guests, tags or both: which guests to drill"))
        if "default" not in self.intervals:
            found.append(Problem(f"{at}.intervals", "needs 'default': the interval of guests without a tier tag"))
        for tier in self.intervals:
            if not PROXMOX_TAG.match(tier):
                found.append(Problem(f"{at}.intervals.{tier}", "is not a PVE tag (lower case letters, digits, _ . -)"))
        if self.vmid_first > self.vmid_last:
            found.append(Problem(f"{at}.vmidFirst", f"{self.vmid_first} is above vmidLast {self.vmid_last}"))
        scratch = range(self.vmid_first, self.vmid_last + 1)
        for vmid in self.guests:
            if vmid in scratch:
                found.append(Problem(f"{at}.guests", f"{vmid} lies in the scratch range {self.vmid_first}-{self.vmid_last}"))
        for name, vm_id in sorted(host_vm_ids.items()):
            if vm_id in scratch:
                found.append(Problem(f"{at}.vmidFirst", f"the scratch range holds hosts.{name}.vmId {vm_id}: "
                                                        "a drill's VMIDs must be free for drills alone"))
        if self.node and self.node not in nodes:
            found.append(Problem(f"{at}.node", f"unknown Proxmox node {self.node!r} (proxmox.nodes: {', '.join(nodes)})"))
        if parse_seconds(self.rto_target) >= parse_seconds(self.max_duration):
            found.append(Problem(f"{at}.rtoTarget", f"must be below maxDuration {self.max_duration}: a drill is torn down then"))
        return found
