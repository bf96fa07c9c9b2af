"""The OpenTelemetry Collector distribution the stack needs: exactly the components its rendered
Collector config names, as a builder (ocb) config.

    python -m tools.collector_distribution build/homelab/helm/otel-collector.values.yaml

writes upstream/otelcol/builder-config.yaml from the Collector config the stack renders (the
release's values over the chart's defaults, merged as Helm merges them).
tests/test_upstream.py fails when the rendered config names a component the distribution lacks.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from model import helm
from tools.manifests import CHARTS, coalesce
from tools.offline_engine import ROOT

BUILDER_CONFIG = ROOT / "upstream" / "otelcol" / "builder-config.yaml"
KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")
CORE = "go.opentelemetry.io/collector"
CONTRIB = "github.com/open-telemetry/opentelemetry-collector-contrib"
# Component type -> its Go module, per kind (the contrib distribution's, which the chart's image runs).
MODULES: dict[str, dict[str, str]] = {
    "receivers": {"otlp": f"{CORE}/receiver/otlpreceiver", "file_log": f"{CONTRIB}/receiver/filelogreceiver",
                  "syslog": f"{CONTRIB}/receiver/syslogreceiver", "jaeger": f"{CONTRIB}/receiver/jaegerreceiver",
                  "zipkin": f"{CONTRIB}/receiver/zipkinreceiver",
                  "prometheus": f"{CONTRIB}/receiver/prometheusreceiver"},
    "processors": {"batch": f"{CORE}/processor/batchprocessor",
                   "memory_limiter": f"{CORE}/processor/memorylimiterprocessor",
                   "resource": f"{CONTRIB}/processor/resourceprocessor",
                   "k8sattributes": f"{CONTRIB}/processor/k8sattributesprocessor"},
    "exporters": {"otlp": f"{CORE}/exporter/otlpexporter", "otlphttp": f"{CORE}/exporter/otlphttpexporter",
                  "debug": f"{CORE}/exporter/debugexporter",
                  "prometheus": f"{CONTRIB}/exporter/prometheusexporter"},
    "connectors": {"spanmetrics": f"{CONTRIB}/connector/spanmetricsconnector"},
    "extensions": {"file_storage": f"{CONTRIB}/extension/storage/filestorage",
                   "health_check": f"{CONTRIB}/extension/healthcheckextension"},
}


class UnknownComponent(Exception):
    pass


def rendered_config(values_file: Path) -> dict:
    """The Collector config of the release: its values' `config` over the chart's default one."""
    chart = CHARTS / f"{helm.COLLECTOR_CHART.name}-{helm.COLLECTOR_CHART.version}" / "values.yaml"
    return coalesce(yaml.safe_load(chart.read_text()), yaml.safe_load(values_file.read_text()))["config"]


def components(config: dict) -> dict[str, set[str]]:
    """Component types per kind that a Collector config names (`otlp/tempo` is of type otlp): every
    one configured, used or not, since the Collector refuses a config naming an unknown type."""
    return {kind: {name.split("/", 1)[0] for name in (config.get(kind) or {})} for kind in KINDS}


def builder_components(builder: dict) -> dict[str, set[str]]:
    """Component types per kind the distribution holds, by its modules."""
    types = {kind: {module: name for name, module in MODULES[kind].items()} for kind in KINDS}
    return {kind: {types[kind][entry["gomod"].split()[0]] for entry in builder.get(kind) or []} for kind in KINDS}


def missing(config: dict, builder: dict) -> list[str]:
    have = builder_components(builder)
    return [f"{kind[:-1]} {name}" for kind, names in components(config).items() for name in sorted(names - have[kind])]


def builder_config(config: dict, version: str) -> dict:
    unknown = [f"{kind[:-1]} {name}" for kind, names in components(config).items()
               for name in sorted(names) if name not in MODULES[kind]]
    if unknown:
        raise UnknownComponent(f"no Go module known for {', '.join(unknown)}: add it to MODULES in {__name__}")
    doc: dict = {"dist": {"name": "otelcol-homelab", "description": "The Collector components the stack's config names",
                          "version": version, "output_path": "./dist"}}
    for kind, names in components(config).items():
        if names:
            doc[kind] = [{"gomod": f"{MODULES[kind][name]} v{version}"} for name in sorted(names)]
    return doc


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.collector_distribution", description=__doc__.split("\n\n")[0])
    parser.add_argument("values", type=Path, help="the rendered values of the Collector release")
    args = parser.parse_args(argv)
    version = str(yaml.safe_load((CHARTS / f"{helm.COLLECTOR_CHART.name}-{helm.COLLECTOR_CHART.version}"
                                  / "Chart.yaml").read_text())["appVersion"])
    try:
        doc = builder_config(rendered_config(args.values), version)
    except UnknownComponent as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    BUILDER_CONFIG.write_text("# Generated by `python -m tools.collector_distribution` from the rendered Collector config.\n"
                              + yaml.safe_dump(doc, sort_keys=False, width=200))
    print(BUILDER_CONFIG)
    return 0


if __name__ == "__main__":
    sys.exit(main())
