"""metrics.snmp.targets: module and auth names the deployed SNMP exporter's snmp.yml knows."""

from __future__ import annotations

from model.config import load_stack_config
from model.preflight import preflight
from model.values.snmp_modules import shipped, storage_modules
from tests.stacks import homelab_sections
from tools import snmp_modules, upstream


def test_the_vendored_names_are_the_pinned_exporters():
    """From the snmp.yml of the snmp_exporter release the chart deploys (the module tools/upstream.py pins)."""
    assert shipped() == snmp_modules.pinned()
    tool = next(t for t in upstream.TOOLS if t.name == "snmp_exporter")
    assert shipped()["version"] == tool.version(), "the chart moved: python -m tools.snmp_modules"


def _problems(change) -> list[str]:
    sections = homelab_sections()
    change(sections["metrics"]["snmp"]["targets"])
    return [str(p) for p in preflight(load_stack_config(sections))[0]]


def test_the_homelab_targets_use_shipped_modules():
    assert _problems(lambda targets: None) == []


def test_an_unknown_module_or_auth_is_named_with_the_closest():
    def typos(targets):
        targets[1]["modules"] = ["if_mib", "truenas", "synlogy", "hrStorage"]
        targets[2]["auth"] = "public_v3"

    problems = _problems(typos)
    assert "metrics.snmp.targets[1].modules[2]: 'synlogy' is no module of the snmp.yml the SNMP exporter 0.30.1 " \
           "ships; did you mean 'synology'?" in problems
    assert "metrics.snmp.targets[2].auth: 'public_v3' is no auth of the snmp.yml the SNMP exporter 0.30.1 ships; " \
           "did you mean 'public_v2'?" in problems
    (truenas,) = [p for p in problems if "'truenas'" in p]
    assert truenas.startswith("metrics.snmp.targets[1].modules[1]: 'truenas' is no module of the snmp.yml the SNMP "
                              "exporter 0.30.1 ships (it has: apcups, arista_sw,")
    assert len(problems) == 3


def test_a_target_with_storage_needs_the_module_that_yields_the_storage_table():
    """The NAS disk alert reads hrStorageUsed / hrStorageSize: only the hrStorage module of the shipped
    snmp.yml yields them (synology, say, does not), so a NAS without it would never alert."""
    assert storage_modules() == ["hrStorage"]
    problems = _problems(lambda targets: targets[1].update(modules=["if_mib", "synology"]))
    assert problems == ["metrics.snmp.targets[1].hasStorage: needs a module that yields hrStorageUsed and hrStorageSize "
                        "(the NAS disk alert reads them; modules: if_mib, synology): add 'hrStorage' to modules"]
    assert _problems(lambda targets: targets[1].pop("hasStorage")) == []
