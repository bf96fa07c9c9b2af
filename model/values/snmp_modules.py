"""The module and auth names the SNMP exporter knows: its built-in snmp.yml at the deployed version
(vendor/snmp-exporter/modules.json, written by tools/snmp_modules.py)."""

from __future__ import annotations

import difflib
import json
from functools import cache
from pathlib import Path

from model.config import Problem, StackConfig

MODULES_FILE = Path(__file__).resolve().parents[2] / "vendor" / "snmp-exporter" / "modules.json"


@cache
def shipped() -> dict:
    return json.loads(MODULES_FILE.read_text())


def _unknown(at: str, kind: str, name: str, known: list[str], version: str) -> Problem:
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.8)  # truenas is not readynas
    hint = f"; did you mean {close[0]!r}?" if close else f" (it has: {', '.join(known)})"
    return Problem(at, f"{name!r} is no {kind} of the snmp.yml the SNMP exporter {version} ships{hint}")


def snmp_problems(cfg: StackConfig) -> list[Problem]:
    facts = shipped()
    found = []
    for i, target in enumerate(cfg.metrics.snmp.targets):
        at = f"metrics.snmp.targets[{i}]"
        for j, module in enumerate(target.modules):
            if module not in facts["modules"]:
                found.append(_unknown(f"{at}.modules[{j}]", "module", module, facts["modules"], facts["version"]))
        if target.auth not in facts["auths"]:
            found.append(_unknown(f"{at}.auth", "auth", target.auth, facts["auths"], facts["version"]))
    return found
