"""The charts' own defaults and values schemas (../shared/charts), and Helm's way of merging values."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import yaml

from model.values.helm import HelmChart
from tools.manifests import coalesce

from tests.shared_data import CHARTS


def chart_dir(chart: HelmChart) -> Path:
    return CHARTS / f"{chart.name}-{chart.version}"


def default_values(chart: HelmChart) -> dict:
    return yaml.safe_load((chart_dir(chart) / "values.yaml").read_text())


def effective_values(chart: HelmChart, values: dict) -> dict:
    """What the chart's templates see: its defaults with our values over them."""
    return coalesce(default_values(chart), values)


def schema_errors(chart: HelmChart, values: dict) -> list[str]:
    """Errors of the merged values against the chart's values.schema.json, as `helm install` checks them."""
    schema = json.loads((chart_dir(chart) / "values.schema.json").read_text())
    # The schema's own $schema picks the draft; an unversioned URI means the latest one.
    validator = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    validator.check_schema(schema)
    return [f"{e.json_path}: {e.message}" for e in validator(schema).iter_errors(effective_values(chart, values))]
