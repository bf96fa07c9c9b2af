"""Grafana's dashboard JSON schema and its panel/query schemas (../shared/grafana-schema/).

The schemas are self-contained draft-07 documents, each with its own `definitions`; a panel's
options, field config and targets are validated against the schema of its plugin, since the
dashboard schema leaves them open.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from jsonschema import Draft7Validator

from model.grafana.dashboards import iter_panels
from tests.shared_data import GRAFANA_SCHEMA

SCHEMA_DIR = GRAFANA_SCHEMA

# Panel plugin id -> schema file stem (where the two differ).
PANEL_SCHEMA = {"dashlist": "dashboardlist", "state-timeline": "statetimeline"}
# Data-source plugin id -> (schema file stem, definition of its query).
QUERY_SCHEMA = {"prometheus": ("prometheus", "Dataquery"), "loki": ("loki", "dataquery"), "tempo": ("tempo", "Dataquery")}
# The custom field config definition of a panel plugin, where it has one.
FIELD_CONFIG = {"timeseries": "FieldConfig", "table": "FieldConfig"}


@cache
def _schema(stem: str) -> dict[str, Any]:
    schema = json.loads((SCHEMA_DIR / f"{stem}.jsonschema.json").read_text())
    if stem == "dashboard":
        # Grafana's CUE kind types an override's matcher options and property value as `_`
        # (any: `"byName"` takes a field name, `"unit"` a string); the JSON export rendered
        # `_` as an object, which rejects every real override. Those two become "any"; each
        # property value is checked against its own field-config schema instead (below).
        defs = schema["definitions"]
        defs["MatcherConfig"]["properties"]["options"] = {}
        defs["DynamicConfigValue"]["properties"]["value"] = {}
    return schema


def _validator(stem: str, definition: str) -> Draft7Validator:
    schema = _schema(stem)
    return Draft7Validator({"$ref": f"#/definitions/{definition}", "definitions": schema["definitions"]})


def _errors(validator: Draft7Validator, instance: Any, where: str) -> list[str]:
    return [f"{where}{'/' + '/'.join(map(str, e.absolute_path)) if e.absolute_path else ''}: {e.message}"
            for e in validator.iter_errors(instance)]


def _property_schema(stem: str, definition: str, name: str) -> dict[str, Any] | None:
    """The schema of one property of a definition (following $refs), None if it has none."""
    defs = _schema(stem)["definitions"]
    node = defs[definition]
    while "$ref" in node:
        node = defs[node["$ref"].rsplit("/", 1)[-1]]
    prop = node.get("properties", {}).get(name)
    return None if prop is None else {**prop, "definitions": defs}


def _override_property_schema(stem: str, prop_id: str) -> dict[str, Any] | None:
    if prop_id.startswith("custom."):
        if stem not in FIELD_CONFIG:
            return None
        return _property_schema(stem, FIELD_CONFIG[stem], prop_id.removeprefix("custom."))
    return _property_schema("dashboard", "FieldConfig", prop_id)


def dashboard_errors(model: dict[str, Any]) -> list[str]:
    """Every schema violation of a dashboard, its panels' options and field config, and its queries."""
    dashboard_schema = _schema("dashboard")
    errors = _errors(Draft7Validator(dashboard_schema), model, "dashboard")
    for panel in iter_panels(model):
        kind = panel.get("type")
        if kind == "row":
            continue
        where = f"panel {panel.get('id')} {panel.get('title')!r} ({kind})"
        stem = PANEL_SCHEMA.get(kind, kind)
        if not (SCHEMA_DIR / f"{stem}.jsonschema.json").is_file():
            errors.append(f"{where}: no schema for panel type {kind!r} in {SCHEMA_DIR}")
            continue
        errors += _errors(_validator(stem, "Options"), panel.get("options", {}), f"{where} options")
        field_config = panel.get("fieldConfig", {"defaults": {}, "overrides": []})
        custom = field_config.get("defaults", {}).get("custom")
        if custom is not None:
            if stem in FIELD_CONFIG:
                errors += _errors(_validator(stem, FIELD_CONFIG[stem]), custom, f"{where} fieldConfig.defaults.custom")
            else:
                errors.append(f"{where}: panel type {kind!r} has no custom field config")
        for override in field_config.get("overrides", []):
            for prop in override.get("properties", []):
                sub = _override_property_schema(stem, prop.get("id", ""))
                if sub is None:
                    errors.append(f"{where} override {prop.get('id')}: not a field option of {kind!r}")
                else:
                    errors += _errors(Draft7Validator(sub), prop.get("value"), f"{where} override {prop['id']}")
        panel_ds = panel.get("datasource") or {}
        for target in panel.get("targets", []):
            ds_type = (target.get("datasource") or panel_ds).get("type")
            if ds_type not in QUERY_SCHEMA:
                errors.append(f"{where} target {target.get('refId')}: no query schema for data source type {ds_type!r}")
                continue
            errors += _errors(_validator(*QUERY_SCHEMA[ds_type]), target, f"{where} target {target.get('refId')}")
    return errors
