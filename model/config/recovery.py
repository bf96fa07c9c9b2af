"""Section `recovery`: the recovery service on the pbs host; its actions come from contracts/recovery.py."""

from __future__ import annotations

from typing import Any, Callable, Mapping

from urllib.parse import urlsplit

from pydantic import Field, model_validator

from contracts import recovery as recovery_catalog
from model.config.alerting import Alerting
from model.config.base import ConfigModel, Problem
from model.config.fields import PromDuration
from model.config.restore_drills import RestoreDrills
from model.facts.durations import format_seconds


class RecoveryAction(ConfigModel):
    """One action of the recovery service (contracts/recovery.py ACTIONS): its mode and its guard."""

    mode: str = Field(default=recovery_catalog.ACTION_DEFAULTS["mode"], pattern=f"^({'|'.join(recovery_catalog.MODES)})$")
    cooldown: PromDuration = format_seconds(recovery_catalog.ACTION_DEFAULTS["cooldownSeconds"])
    max_attempts: int = Field(default=recovery_catalog.ACTION_DEFAULTS["maxAttempts"], ge=1, le=20)
    window: PromDuration = format_seconds(recovery_catalog.ACTION_DEFAULTS["windowSeconds"])


class RecoveryPve(ConfigModel):
    """The Proxmox VE API the service re-runs backup jobs through (from the PBS VM)."""

    # Default: https://<first node of proxmox.nodes>.<site.domain>:8006 (StackConfig.pve_api_url).
    url: str | None = Field(default=None, pattern=r"^https://[^/\s]+(:\d+)?/?$")
    verify_tls: bool = recovery_catalog.SECTION_DEFAULTS["pve"]["verifyTls"]
    # The PBS server as PVE's PBS storages name it, when several servers have a datastore of that name.
    pbs_server: str | None = None


class RecoveryNas(ConfigModel):
    """The TrueNAS the disk playbook prunes snapshots on and the backup fallback writes to."""

    url: str = Field(pattern=r"^wss?://[^/\s]+/api/(current|v\d+(\.\d+)*)$")
    verify_tls: bool = recovery_catalog.SECTION_DEFAULTS["truenas"]["verifyTls"]
    dataset: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*[A-Za-z0-9_.:-]$")
    retention: PromDuration = "21d"
    keep_newest: int = Field(default=recovery_catalog.SECTION_DEFAULTS["truenas"]["keepNewest"], ge=1)
    # The export PVE mounts as an NFS storage for the fallback backups; server default: the host of url.
    nfs_server: str = Field(pattern=r"^[A-Za-z0-9.:-]+$")
    fallback_export: str = Field(default="/mnt/tank/pve-fallback", pattern=r"^/[^\s]*$")
    fallback_storage: str = Field(default="nas-fallback", pattern=r"^[a-z][a-z0-9_-]*$")

    @model_validator(mode="before")
    @classmethod
    def _derived(cls, data):
        if isinstance(data, dict) and "nfsServer" not in data and "nfs_server" not in data:
            server = nas_nfs_server(data)
            if server:
                data = {**data, "nfsServer": server}
        return data


def nas_nfs_server(nas: Mapping[str, Any]) -> str | None:
    """The NAS's NFS server as the stack file gives it: `nfsServer`, else the host of `url`
    (reports.archive.nfs.server defaults to it too: model/config/loading.py)."""
    if isinstance(nas.get("nfsServer"), str):
        return nas["nfsServer"]
    return urlsplit(nas["url"]).hostname if isinstance(nas.get("url"), str) else None


# The routing table's receiver for the recovery service, added beside alerting.receivers (model/values/routing.py).
RECOVERY_RECEIVER = "recovery-service"


class Recovery(ConfigModel):
    """The recovery service (services/recovery/, docs/recovery.md) on one pbs host."""

    # The pbs host it runs on; default: the only pbs host (required with several: StackConfig.placement).
    host: str | None = None
    port: int = Field(default=9847, ge=1024, le=65535)
    enabled: bool = recovery_catalog.DEFAULTS["enabled"]  # the global kill switch, off when false
    actions: dict[str, RecoveryAction] = Field(default_factory=dict)
    pve: RecoveryPve = Field(default_factory=RecoveryPve)
    nas: RecoveryNas | None = None
    # How the pbs host reaches Prometheus' HTTP API (an ingress or NodePort): Loki's compactor health.
    prometheus_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+[^/\s]$")
    restore_drills: RestoreDrills | None = None

    def mode(self, action: str) -> str:
        return self.actions[action].mode if action in self.actions else "off"

    def problems(self, is_set: Callable[[str], bool], has_pbs_host: bool, alerting: Alerting | None) -> list[Problem]:
        """`is_set(path)`: whether the stack config sets the value at that key path (an action's stack_needs)."""
        known = recovery_catalog.ACTIONS
        found = []
        for name in self.actions:
            if name not in known:
                found.append(Problem(f"recovery.actions.{name}", f"unknown action (known: {', '.join(sorted(known))})"))
        for action in known.values():
            if action.stack_needs and self.mode(action.name) != "off" and not is_set(action.stack_needs):
                found.append(Problem(action.stack_needs, f"is required while recovery.actions.{action.name} is not off"))
        if not has_pbs_host:
            found.append(Problem("recovery", "needs a pbs host: the service runs there"))
        if alerting is None:
            found.append(Problem("recovery", "needs alerting: Alertmanager notifies the service"))
        else:
            for i, receiver in enumerate(alerting.receivers):
                if receiver.name == RECOVERY_RECEIVER:
                    found.append(Problem(f"alerting.receivers[{i}].name", f"{RECOVERY_RECEIVER!r} is the recovery service's receiver "
                                         "(added to the routing table with recovery): pick another name"))
        return found
