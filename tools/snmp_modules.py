"""vendor/snmp-exporter/modules.json: the module and auth names of the snmp.yml the stack's SNMP exporter runs.

    python -m tools.snmp_modules          # rewrite it from the pinned snmp_exporter module (upstream/snmp_exporter)

The chart deploys the exporter's image with its built-in snmp.yml (model/values/metrics.py sets no
config), the one in the release's source at the version tools/upstream.py pins. The preview checks
`metrics.snmp.targets[].modules` and `.auth` against these names (model/preflight.py), offline;
tests/values/test_snmp_modules.py fails when the pin moves and this file does not follow.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from model.values.snmp_modules import HR_STORAGE_DESCR, MODULES_FILE, READ_METRICS


def from_snmp_yml(path: Path, version: str) -> dict:
    doc = yaml.load(path.read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    modules = doc["modules"]
    # Which modules yield each metric the rules read (labelled by the storage table's description).
    producers = {metric: sorted(name for name, module in modules.items()
                                if any(m["name"] == metric and any(lookup["labelname"] == HR_STORAGE_DESCR
                                                                   for lookup in m.get("lookups", []))
                                       for m in module.get("metrics", [])))
                 for metric in READ_METRICS}
    return {"version": version, "source": f"github.com/prometheus/snmp_exporter@v{version}/snmp.yml",
            "auths": sorted(doc["auths"]), "modules": sorted(modules), "producers": producers}


def pinned() -> dict:
    """From the snmp.yml of the module version upstream/snmp_exporter pins (Go's module cache)."""
    from tools import upstream

    tool = next(t for t in upstream.TOOLS if t.name == "snmp_exporter")
    info = upstream._module_info(tool)
    return from_snmp_yml(Path(info["Dir"]) / "snmp.yml", tool.pinned_module_version().removeprefix("v"))


def main() -> int:
    facts = pinned()
    MODULES_FILE.write_text(json.dumps(facts, indent=2) + "\n")
    print(f"{MODULES_FILE}: {len(facts['modules'])} modules, {len(facts['auths'])} auths of snmp_exporter {facts['version']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
