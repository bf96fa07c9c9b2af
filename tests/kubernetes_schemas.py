"""Rendered objects as the API server would judge them: Kubernetes' own schemas, and CRDs.

Built-in kinds go to kubernetes-validate (the Kubernetes OpenAPI documents as JSON Schema, in
its strict flavour that rejects unknown fields). A custom resource goes against the
openAPIV3Schema of its CRD, taken from the rendered charts themselves. Those are structural
OpenAPI v3 schemas with Kubernetes' own keywords; `crd_json_schema` gives them the meaning
the API server gives them (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/
custom-resource-definitions/#specifying-a-structural-schema):
- fields not in `properties` are unknown (the server prunes them; strict field validation,
  kubectl's default, rejects them), unless `x-kubernetes-preserve-unknown-fields` is true or
  `additionalProperties` declares a map;
- `nullable: true` admits null; `x-kubernetes-int-or-string` admits an integer or a string;
- `x-kubernetes-embedded-resource` objects carry apiVersion, kind and metadata;
- `x-kubernetes-list-type: set` items are unique, `map` items are unique by their
  `x-kubernetes-list-map-keys`;
- the root's `metadata` is an ObjectMeta (the server validates it as such, not by the CRD);
- a null in a field that is not `nullable` is dropped before validation, as the server does.
`x-kubernetes-validations` (CEL rules) are not evaluated: there is no CEL here.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import referencing
from referencing.jsonschema import DRAFT202012

from tools.manifests import KUBERNETES_VERSION

# kubernetes-validate re-reads its megabyte of definitions for every object; read each file once.
kubernetes_validate.utils.schema_contents = functools.lru_cache(maxsize=None)(
    kubernetes_validate.utils.schema_contents)

OBJECT_META = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# Keywords that mean in OpenAPI v3 (as Kubernetes allows it) what they mean in JSON Schema.
_SAME_MEANING = {"type", "enum", "pattern", "format", "minimum", "maximum", "minLength", "maxLength", "minItems",
                 "maxItems", "minProperties", "maxProperties", "required", "multipleOf", "uniqueItems",
                 "description", "default", "example", "title"}
_NOT_CHECKED = {"x-kubernetes-validations", "x-kubernetes-map-type", "x-kubernetes-list-type",
                "x-kubernetes-list-map-keys", "x-kubernetes-preserve-unknown-fields",
                "x-kubernetes-int-or-string", "x-kubernetes-embedded-resource", "nullable"}


def kubernetes_error(obj: dict) -> str | None:
    """The first error of a built-in object against Kubernetes' strict schema, None when it is valid."""
    try:
        kubernetes_validate.validate(obj, KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as error:
        return f"{'.'.join(str(p) for p in error.path) or '(root)'}: {error.message[:300]}"
    except kubernetes_validate.SchemaNotFoundError as error:
        return error.message  # neither Kubernetes nor a rendered CRD defines the kind
    return None


def crd_json_schema(schema: dict, root: bool = True) -> dict:
    """A CRD's structural openAPIV3Schema as a JSON Schema (draft 2020-12) with the server's meaning."""
    unknown = set(schema) - _SAME_MEANING - _NOT_CHECKED - {"properties", "items", "additionalProperties",
                                                             "anyOf", "allOf", "oneOf", "not"}
    if unknown:
        raise ValueError(f"keywords this converter does not know: {sorted(unknown)}")
    out: dict[str, Any] = {k: v for k, v in schema.items() if k in _SAME_MEANING}
    if "properties" in schema:
        out["properties"] = {name: crd_json_schema(prop, root=False) for name, prop in schema["properties"].items()}
    if isinstance(schema.get("items"), dict):
        out["items"] = crd_json_schema(schema["items"], root=False)
    if isinstance(schema.get("additionalProperties"), dict):
        out["additionalProperties"] = crd_json_schema(schema["additionalProperties"], root=False)
    elif "additionalProperties" in schema:
        out["additionalProperties"] = schema["additionalProperties"]
    for key in ("anyOf", "allOf", "oneOf"):
        if key in schema:
            out[key] = [crd_json_schema(s, root=False) for s in schema[key]]
    if "not" in schema:
        out["not"] = crd_json_schema(schema["not"], root=False)

    if schema.get("x-kubernetes-embedded-resource"):
        properties = out.setdefault("properties", {})
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties.setdefault("metadata", {"type": "object"})
    if root:
        properties = out.setdefault("properties", {})
        properties.update(apiVersion={"type": "string"}, kind={"type": "string"}, metadata={"$ref": OBJECT_META})
    if (schema.get("type") == "object" or "properties" in schema) and "additionalProperties" not in schema \
            and not schema.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if schema.get("x-kubernetes-list-type") == "set":
        out["uniqueItems"] = True
    if schema.get("nullable"):
        out = {"anyOf": [out, {"type": "null"}]}
    return out


def _without_nulls(schema: Any, value: Any) -> Any:
    """The object as the server validates it: nulls of non-nullable fields pruned."""
    if not isinstance(schema, dict):
        return value
    if isinstance(value, dict):
        kept = {}
        for name, child in value.items():
            sub = (schema.get("properties") or {}).get(name)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            if child is None and not (sub or {}).get("nullable"):
                continue
            kept[name] = _without_nulls(sub, child)
        return kept
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_without_nulls(schema["items"], v) for v in value]
    return value


def _list_map_problems(schema: dict, value: Any, path: str) -> Iterator[str]:
    """Items of an `x-kubernetes-list-type: map` list must be unique by their map keys."""
    if not isinstance(schema, dict):
        return
    if isinstance(value, list) and schema.get("x-kubernetes-list-type") == "map":
        keys = schema.get("x-kubernetes-list-map-keys", [])
        seen = set()
        for item in value:
            key = tuple(item.get(k) for k in keys) if isinstance(item, dict) else item
            if key in seen:
                yield f"{path}: duplicate entry for {dict(zip(keys, key))} in a list-type map"
            seen.add(key)
    if isinstance(value, dict):
        for name, child in value.items():
            sub = (schema.get("properties") or {}).get(name)
            if sub is None and isinstance(schema.get("additionalProperties"), dict):
                sub = schema["additionalProperties"]
            yield from _list_map_problems(sub, child, f"{path}.{name}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, child in enumerate(value):
            yield from _list_map_problems(schema["items"], child, f"{path}[{i}]")


@functools.lru_cache(maxsize=1)
def _registry() -> referencing.Registry:
    definitions = kubernetes_validate.utils.schema_contents(
        f"kubernetes-json-schema/v{KUBERNETES_VERSION}-local-strict/_definitions.json", KUBERNETES_VERSION)
    return referencing.Registry().with_resource(definitions["$id"], DRAFT202012.create_resource(definitions))


class CustomResourceSchemas:
    """The served versions of a set of CRDs, as validators, by (apiVersion, kind)."""

    def __init__(self, crds: list[dict]):
        self.schemas: dict[tuple[str, str], dict] = {}
        self.validators: dict[tuple[str, str], jsonschema.protocols.Validator] = {}
        for crd in crds:
            spec = crd["spec"]
            for version in spec["versions"]:
                if not version.get("served", True):
                    continue
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                schema = version["schema"]["openAPIV3Schema"]
                self.schemas[key] = schema
                self.validators[key] = jsonschema.Draft202012Validator(crd_json_schema(schema), registry=_registry())

    def errors(self, obj: dict) -> list[str]:
        key = (obj["apiVersion"], obj["kind"])
        if key not in self.validators:
            return [f"no CustomResourceDefinition serves {key[1]} {key[0]}"]
        obj = _without_nulls(self.schemas[key], obj)
        found = [f"{'.'.join(str(p) for p in e.absolute_path) or '(root)'}: {e.message[:300]}"
                 for e in self.validators[key].iter_errors(obj)]
        return found + list(_list_map_problems(self.schemas[key], obj, "(root)"))

