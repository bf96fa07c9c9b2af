"""Stack files for tests: the real homelab stack, or a copy of it with a change applied."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable

import yaml

ROOT = Path(__file__).resolve().parent.parent
HOMELAB = ROOT / "Pulumi.homelab.yaml"
PROJECT = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["name"]


def homelab_sections() -> dict[str, Any]:
    """The project's config sections of the homelab stack (key without namespace -> value)."""
    doc = yaml.safe_load(HOMELAB.read_text())["config"]
    prefix = f"{PROJECT}:"
    return {k[len(prefix):]: v for k, v in doc.items() if k.startswith(prefix)}


def write_stack(directory: Path, change: Callable[[dict[str, Any]], None] | None = None,
                stack: str = "test") -> Path:
    """Write Pulumi.<stack>.yaml: the homelab stack with `change` applied to its sections."""
    doc = yaml.safe_load(HOMELAB.read_text())
    prefix = f"{PROJECT}:"
    sections = copy.deepcopy(homelab_sections())
    if change:
        change(sections)
    doc["config"] = {k: v for k, v in doc["config"].items() if not k.startswith(prefix)}
    doc["config"].update({prefix + k: v for k, v in sections.items()})
    path = directory / f"Pulumi.{stack}.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path
