"""The upstream binaries the tests run are the versions the charts deploy (tools/upstream.py)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from model.values import helm
from tools import collector_distribution, manifests, upstream
from tools.upstream import TOOLS
from tests.conftest import run_tool


def test_every_pin_matches_its_chart():
    assert upstream.version_problems(list(TOOLS)) == []


@pytest.mark.parametrize("tool", [t for t in TOOLS if t.chart is not None], ids=lambda t: t.name)
def test_a_chart_that_moves_without_its_binary_is_caught(tool):
    major, minor, patch = tool.version().split(".")
    moved = dataclasses.replace(tool, chart_version=lambda: f"{major}.{int(minor) + 1}.{patch}")
    problems = upstream.version_problems([moved])
    assert len(problems) == 1 and tool.chart.name in problems[0] and tool.name in problems[0], problems


# The logs and traces binaries build in the background after these; their tests come with them (issue 25).
@pytest.mark.parametrize("tool", upstream.tools("metrics") + upstream.tools("walls"), ids=lambda t: t.name)
def test_each_binary_reports_the_charts_version(tool):
    for binary in tool.binaries:
        output = upstream.reported_version(tool.bin_dir(), binary)
        assert upstream.version_reported(tool, output), (binary.name, output)


def test_a_tool_no_chart_deploys_is_pinned_by_its_module_alone():
    (cyclonus,) = upstream.tools("walls")
    assert cyclonus.chart is None and cyclonus.module_version(cyclonus.version()) == cyclonus.pinned_module_version()
    assert upstream.version_problems([cyclonus]) == []


def test_tests_run_the_cache_not_the_system():
    """conftest put the cache first on PATH: `promtool` is the one built at the chart's version."""
    for name in ("prometheus", "promtool", "alertmanager", "amtool", "blackbox_exporter", "victoria-metrics"):
        found = run_tool("sh", "-c", f"command -v {name}").stdout.strip()
        assert Path(found).parent in upstream.bin_dirs(), (name, found)


def test_the_stack_deploys_the_chart_default_images(homelab):
    """The versions are the charts' defaults only while the stack's values leave the images alone."""
    kps = homelab.yaml("helm/kube-prometheus-stack.values.yaml")
    assert "image" not in kps.get("prometheus", {}).get("prometheusSpec", {})
    assert "image" not in kps.get("alertmanager", {}).get("alertmanagerSpec", {})
    for release in ("prometheus-blackbox-exporter", "prometheus-snmp-exporter"):
        path = homelab.out / "helm" / f"{release}.values.yaml"
        assert "tag" not in (yaml.safe_load(path.read_text()).get("image") or {}), release


def _snmp_default_config() -> Path:
    """The stack ships no SNMP config of its own: the image's snmp.yml is the module's."""
    tool = next(t for t in TOOLS if t.name == "snmp_exporter")
    return Path(upstream._module_info(tool)["Dir"]) / "snmp.yml"


def test_snmp_exporter_accepts_the_config_the_stack_ships(homelab):
    config = _snmp_default_config()
    check = run_tool("snmp_exporter", f"--config.file={config}", "--dry-run")  # its --config.check
    assert check.returncode == 0, check.stdout + check.stderr
    shipped = yaml.safe_load(config.read_text())
    jobs = [j for j in homelab.yaml("prometheus/scrape-configs.yaml")["scrape_configs"] if j.get("metrics_path") == "/snmp"]
    assert jobs, "the homelab stack scrapes SNMP devices"
    for job in jobs:
        for module in job["params"]["module"][0].split(","):
            assert module in shipped["modules"], (job["job_name"], module)
        assert job["params"]["auth"][0] in shipped["auths"], job["job_name"]


def _collector_config(homelab) -> dict:
    """The Collector's config as the chart's ConfigMap carries it, from `helm template` of the recorded release."""
    recorded = next(r for r in homelab.recording.of_type(manifests.HELM_RELEASE_TYPE)
                    if r.inputs["chart"] == helm.COLLECTOR_CHART.name)
    i = recorded.inputs
    rendered = manifests.render(manifests.Release.of(i["name"], i["chart"], i["version"],
                                                     (i.get("repositoryOpts") or {}).get("repo"), i["namespace"], i["values"]))
    [configmap] = [m.object for m in rendered.manifests if m.kind == "ConfigMap"]
    return yaml.safe_load(configmap["data"]["relay"])


def test_the_collector_distribution_is_the_rendered_configs_components(homelab):
    builder = yaml.safe_load(collector_distribution.BUILDER_CONFIG.read_text())
    config = _collector_config(homelab)
    assert collector_distribution.missing(config, builder) == []
    # generated from the config, not written by hand: nothing more either
    assert collector_distribution.builder_components(builder) == collector_distribution.components(config)
    values = homelab.out / "helm" / "otel-collector.values.yaml"
    assert collector_distribution.builder_config(collector_distribution.rendered_config(values), "0.158.0") == builder


def test_a_component_the_distribution_lacks_is_caught(homelab):
    builder = yaml.safe_load(collector_distribution.BUILDER_CONFIG.read_text())
    config = _collector_config(homelab)
    config["receivers"]["kafka/nas"] = {}
    config["extensions"]["pprof"] = {}
    assert collector_distribution.missing(config, builder) == ["receiver kafka", "extension pprof"]
    with pytest.raises(collector_distribution.UnknownComponent, match="receiver kafka"):
        collector_distribution.builder_config(config, "0.158.0")
