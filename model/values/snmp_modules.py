"""The module and auth names the SNMP exporter knows: its built-in snmp.yml at the deployed version
(vendor/snmp-exporter/modules.json, written by tools/snmp_modules.py)."""

from __future__ import annotations

import difflib
import json
from functools import cache
from pathlib import Path

from model.config import Problem, StackConfig

MODULES_FILE = Path(__file__).resolve().parents[2] / "vendor" / "snmp-exporter" / "modules.json"
# HOST-RESOURCES-MIB's storage table, which the NAS disk alert reads (model/rules/disks.py) from a
# target with hasStorage; its volume is the hrStorageDescr label (a TrueNAS dataset's mount point).
HR_STORAGE_SIZE = "hrStorageSize"
HR_STORAGE_USED = "hrStorageUsed"
HR_STORAGE_DESCR = "hrStorageDescr"
# The metrics of snmp.yml the stack's rules read: modules.json names the modules that yield each.
READ_METRICS = (HR_STORAGE_SIZE, HR_STORAGE_USED)


@cache
def shipped() -> dict:
    return json.loads(MODULES_FILE.read_text())


def storage_modules() -> list[str]:
    """The modules of the shipped snmp.yml that yield both of the storage table's metrics the NAS
    disk alert reads, with the hrStorageDescr label it names the volume by."""
    producers = shipped()["producers"]
    return sorted(set(producers[HR_STORAGE_SIZE]) & set(producers[HR_STORAGE_USED]))


def _unknown(at: str, kind: str, name: str, known: list[str], version: str) -> Problem:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)  # truenas is not readynas
    hint = f"; did you mean {close[0]!r}?" if close else f" (it has: {', '.join(known)})"
    return Problem(at, f"{name!r} is no {kind} of the snmp.yml the SNMP exporter {version} ships{hint}")


def snmp_problems(cfg: StackConfig) -> list[Problem]:
    facts = shipped()
    found = []
    yielding = storage_modules()
    for i, target in enumerate(cfg.metrics.snmp.targets):
        at = f"metrics.snmp.targets[{i}]"
        for j, module in enumerate(target.modules):
            if module not in facts["modules"]:
                found.append(_unknown(f"{at}.modules[{j}]", "module", module, facts["modules"], facts["version"]))
        if target.has_storage and not set(target.modules) & set(yielding):
            found.append(Problem(f"{at}.hasStorage", f"needs a module that yields {HR_STORAGE_USED} and "
                                 f"{HR_STORAGE_SIZE} (the NAS disk alert reads them; modules: {', '.join(target.modules)}): "
                                 f"add {' or '.join(repr(m) for m in yielding)} to modules"))
        if target.auth not in facts["auths"]:
            found.append(_unknown(f"{at}.auth", "auth", target.auth, facts["auths"], facts["version"]))
    return found
