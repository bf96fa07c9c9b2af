"""A registered resource's inputs as the provider's Check would judge them.

The mock engine accepts any input; a provider does not. `check_registration` judges one
registration (type token, name, inputs as the SDK sends them: camelCase names, plain values)
against the published schema of its provider, vendored in vendor/provider-schemas/ (gzip, each
pinned by source commit and sha256 in its SOURCES.json; see vendor/README.md):
- proxmoxve, grafana, random: the Pulumi package schemas (`resources.<token>.inputProperties`,
  `requiredInputs`, `types`, the provider's own inputs for `pulumi:providers:<pkg>`);
- kubernetes core/v1 kinds: the Kubernetes OpenAPI document pulumi-kubernetes generates from
  (k8s-swagger.json), found by each definition's x-kubernetes-group-version-kind;
- kubernetes helm.sh/v3:Release and its RepositoryOpts: parsed from pulumi-kubernetes'
  overlays.go (k8s-overlays.go), the Go source that defines them.

It reports unknown property names, missing required inputs, wrong types, values outside an
enum or const, resource types the provider does not have, and deprecated resources and
properties (a `deprecationMessage`, or a description that opens with "**Deprecated:**", as
the Terraform-bridged providers publish it). Pure: no Pulumi import, no I/O beyond reading
the schema files once; a missing or altered file is a SchemaDataError naming it.
"""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

ROOT = Path(__file__).resolve().parent.parent
SCHEMAS = ROOT / "vendor" / "provider-schemas"
PACKAGE_FILES = {"proxmoxve": "proxmoxve.json", "grafana": "grafana.json", "random": "random.json"}
# What the offline engine writes for a Pulumi secret in build/<stack>/resources.json: any type.
REDACTED = "[secret]"
# A value the engine does not know yet in a preview: Pulumi's wire sentinel, the SDK's Unknown,
# or how the offline engine's recording prints one. The provider's Check lets it pass.
UNKNOWN_SENTINEL = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"


def _unknown(value: Any) -> bool:
    if type(value).__name__ == "Unknown":
        return True
    return isinstance(value, str) and (value == UNKNOWN_SENTINEL or value.startswith("<pulumi.output.Unknown object"))


_ANY_REFS = {"pulumi.json#/Any", "pulumi.json#/Json", "pulumi.json#/Asset", "pulumi.json#/Archive"}


@dataclass(frozen=True)
class Problem:
    path: str  # property path in the SDK's camelCase, e.g. "disks[0].fileId"; "" for the resource
    message: str
    # A deprecation is a warning: the provider still accepts the input. Anything else it refuses.
    deprecation: bool = False

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


# --- the schemas ----------------------------------------------------------------------------

class SchemaDataError(Exception):
    """A vendored schema file is missing, or is not the one its SOURCES.json pins."""


def read_schema_file(name: str, directory: Path = SCHEMAS) -> str:
    """`<name>.gz` as vendored, checked against the sha256 SOURCES.json pins (else `<name>` as is)."""
    packed = directory / f"{name}.gz"
    if not packed.is_file():
        if (directory / name).is_file():
            return (directory / name).read_text()
        raise SchemaDataError(f"provider schema {packed} is missing: restore it from the repository "
                              f"(`git checkout -- {packed.relative_to(ROOT) if packed.is_relative_to(ROOT) else packed}`)")
    data = gzip.decompress(packed.read_bytes())
    sources = directory / "SOURCES.json"
    if sources.is_file():
        pinned = json.loads(sources.read_text()).get(packed.name, {}).get("sha256")
        if hashlib.sha256(data).hexdigest() != pinned:
            raise SchemaDataError(f"provider schema {packed} is not the file {sources.name} pins (sha256 "
                                  f"{pinned}): re-vendor it as vendor/README.md says")
    return data.decode()


def check_schema_files(directory: Path = SCHEMAS) -> None:
    """Reads every schema once, so a missing or altered file fails before the program runs."""
    for package in PACKAGE_FILES:
        package_schema(package, directory)
    kubernetes_schema(directory)


def _deprecation(spec: dict) -> str | None:
    if spec.get("deprecationMessage"):
        return spec["deprecationMessage"]
    description = (spec.get("description") or "").lstrip("> ")
    if description.startswith("**Deprecated:**"):
        first = description.split("\n", 1)[0][len("**Deprecated:**"):]
        # The bridge spells the replacement once per language; keep the Python spelling.
        first = re.sub(r'<span [^>]*pulumi-lang-python="([^"]*)"[^>]*>.*?</span>', r"\1", first)
        return first.strip()
    return None


class Schema:
    """Resources and types of one provider, and how a `$ref` resolves."""

    def __init__(self, resources: dict[str, dict], types: dict[str, dict], resolve: Callable[[str], dict | None]):
        self.resources = resources
        self.types = types
        self.resolve = resolve


@functools.lru_cache(maxsize=None)
def package_schema(package: str, directory: Path = SCHEMAS) -> Schema:
    doc = json.loads(read_schema_file(PACKAGE_FILES[package], directory))
    resources = {token: {"properties": spec.get("inputProperties") or {}, "required": spec.get("requiredInputs") or [],
                         "deprecation": _deprecation(spec)}
                 for token, spec in doc.get("resources", {}).items()}
    provider = doc.get("provider") or {}
    resources[f"pulumi:providers:{package}"] = {"properties": provider.get("inputProperties") or {},
                                                 "required": provider.get("requiredInputs") or [], "deprecation": None}
    types = doc.get("types") or {}
    return Schema(resources, types, lambda ref: types.get(ref[len("#/types/"):]) if ref.startswith("#/types/") else None)


# k8s-swagger.json names a few definitions whose JSON forms are wider than their `type`.
_K8S_SPECIAL = {
    "io.k8s.apimachinery.pkg.util.intstr.IntOrString": {"oneOf": [{"type": "integer"}, {"type": "string"}]},
    "io.k8s.apimachinery.pkg.api.resource.Quantity": {"oneOf": [{"type": "string"}, {"type": "number"}]},
}


@functools.lru_cache(maxsize=None)
def kubernetes_schema(directory: Path = SCHEMAS) -> Schema:
    definitions = json.loads(read_schema_file("k8s-swagger.json", directory))["definitions"]
    resources: dict[str, dict] = {}
    for name, spec in definitions.items():
        for gvk in spec.get("x-kubernetes-group-version-kind") or []:
            group = gvk["group"] or "core"
            token = f"kubernetes:{group}/{gvk['version']}:{gvk['kind']}"
            resources[token] = {"properties": spec.get("properties") or {}, "required": spec.get("required") or [],
                                "deprecation": _deprecation(spec), "const": {
                                    "apiVersion": f"{gvk['group']}/{gvk['version']}".lstrip("/"),
                                    "kind": gvk["kind"]}}
    overlays = parse_overlays(read_schema_file("k8s-overlays.go", directory))
    types = {token: go_spec(spec) for token, spec in overlays["TypeOverlays"].items()}
    for token, spec in overlays["ResourceOverlays"].items():
        resources[token] = {"properties": {k: go_spec(v) for k, v in (spec.get("InputProperties") or {}).items()},
                            "required": spec.get("RequiredInputs") or [], "deprecation": spec.get("DeprecationMessage")}

    def resolve(ref: str) -> dict | None:
        if ref.startswith("#/definitions/"):
            name = ref[len("#/definitions/"):]
            return _K8S_SPECIAL.get(name) or definitions.get(name)
        if ref.startswith("#/types/"):
            return types.get(ref[len("#/types/"):])
        return None

    return Schema(resources, types, resolve)


# --- the Go source of pulumi-kubernetes' overlays -------------------------------------------

_GO_TOKEN = re.compile(r"""
    (?P<space>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)
  | (?P<number>-?\d+(?:\.\d+)?)
  | (?P<ident>[A-Za-z_][\w.]*)
  | (?P<punct>[{}\[\]:,&+()=*;])
""", re.VERBOSE | re.DOTALL)


def _go_tokens(text: str) -> list[tuple[str, str]]:
    tokens, pos = [], 0
    while pos < len(text):
        match = _GO_TOKEN.match(text, pos)
        if not match:
            raise ValueError(f"overlays.go: cannot read {text[pos:pos + 40]!r}")
        pos = match.end()
        if match.lastgroup != "space":
            tokens.append((match.lastgroup, match.group()))
    return tokens


class GoIdent(str):
    """A Go identifier (a constant such as v1.ServiceTypeClusterIP): its value is not in this file."""


class _GoLiterals:
    """Go composite literals (the `var x = pkg.T{...}` and `M["k"] = x` of overlays.go) as Python data."""

    def __init__(self, tokens: list[tuple[str, str]]):
        self.tokens, self.i = tokens, 0

    def peek(self, offset: int = 0) -> tuple[str, str]:
        return self.tokens[self.i + offset] if self.i + offset < len(self.tokens) else ("eof", "")

    def take(self, value: str | None = None) -> str:
        kind, text = self.peek()
        if value is not None and text != value:
            raise ValueError(f"overlays.go: expected {value!r}, found {text!r}")
        self.i += 1
        return text

    def type_(self) -> None:
        if self.peek()[1] == "[":
            self.take("["), self.take("]"), self.type_()
        elif self.peek()[1] == "map":
            self.take("map"), self.take("["), self.type_(), self.take("]"), self.type_()
        else:
            self.take()

    def value(self) -> Any:
        kind, text = self.peek()
        if kind == "string":
            parts = [self._string(self.take())]
            while self.peek()[1] == "+":
                self.take("+")
                parts.append(self._string(self.take()))
            return "".join(parts)
        if text == "{":
            return self.braces()
        if text == "&":
            self.take("&")
            return self.value()
        if text in ("[", "map") or (kind == "ident" and self.peek(1)[1] == "{"):
            self.type_()
            return self.braces()
        if kind == "ident" and self.peek(1)[1] == "(":  # a call such as rawMessage(...): not needed
            self.take()
            depth = 0
            while True:
                t = self.take()
                depth += t == "("
                depth -= t == ")"
                if depth == 0:
                    return None
        self.take()
        if kind == "number":
            return float(text) if "." in text else int(text)
        return {"true": True, "false": False, "nil": None}.get(text, GoIdent(text))

    @staticmethod
    def _string(text: str) -> str:
        return text[1:-1] if text.startswith("`") else json.loads(text)

    def braces(self) -> Any:
        self.take("{")
        keyed: dict[Any, Any] = {}
        items: list[Any] = []
        while self.peek()[1] != "}":
            first = self.value()
            if self.peek()[1] == ":":
                self.take(":")
                keyed[first] = self.value()
            else:
                items.append(first)
            if self.peek()[1] == ",":
                self.take(",")
        self.take("}")
        return keyed if keyed or not items else items


def parse_overlays(text: str) -> dict[str, dict[str, dict]]:
    """`TypeOverlays` and `ResourceOverlays` of overlays.go: token -> the Go literal as data."""
    tokens = _go_tokens(text)
    variables: dict[str, Any] = {}
    maps: dict[str, dict[str, Any]] = {"TypeOverlays": {}, "ResourceOverlays": {}}
    for i, (kind, text_) in enumerate(tokens):
        if text_ == "var" and i + 2 < len(tokens) and tokens[i + 2][1] == "=":
            reader = _GoLiterals(tokens[i + 3:])
            if reader.peek()[0] == "ident":
                variables[tokens[i + 1][1]] = reader.value()
        elif text_ in maps and tokens[i + 1][1] == "[" and tokens[i + 4][1] == "=":
            maps[text_][json.loads(tokens[i + 2][1])] = variables[tokens[i + 5][1]]
    return maps


def go_spec(spec: dict) -> dict:
    """A pschema.ComplexTypeSpec / ObjectTypeSpec / TypeSpec literal as a Pulumi schema object."""
    flat = {**(spec.get("ObjectTypeSpec") or {}), **(spec.get("TypeSpec") or {}),
            **{k: v for k, v in spec.items() if k not in ("ObjectTypeSpec", "TypeSpec")}}
    out: dict[str, Any] = {}
    if flat.get("Type"):
        out["type"] = flat["Type"]
    if flat.get("Ref"):
        out["$ref"] = flat["Ref"]
    if flat.get("Items"):
        out["items"] = go_spec(flat["Items"])
    if flat.get("AdditionalProperties"):
        out["additionalProperties"] = go_spec(flat["AdditionalProperties"])
    if flat.get("OneOf"):
        out["oneOf"] = [go_spec(s) for s in flat["OneOf"]]
    if flat.get("Properties"):
        out["properties"] = {k: go_spec(v) for k, v in flat["Properties"].items()}
    if flat.get("Required"):
        out["required"] = flat["Required"]
    if flat.get("Enum") and not any(isinstance(e.get("Value"), GoIdent) for e in flat["Enum"]):
        out["enum"] = [{"value": e.get("Value")} for e in flat["Enum"]]
    if "Const" in flat:
        out["const"] = flat["Const"]
    if flat.get("DeprecationMessage"):
        out["deprecationMessage"] = flat["DeprecationMessage"]
    return out


# --- checking -------------------------------------------------------------------------------

def _type_name(value: Any) -> str:
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array", dict: "object"}.get(
        type(value), type(value).__name__)


_PYTHON_TYPES = {"string": str, "boolean": bool, "array": list, "object": dict}


def _type_ok(expected: str, value: Any) -> bool:
    if isinstance(value, bool):
        return expected == "boolean"
    if expected == "integer":  # the wire carries every number as a double
        return isinstance(value, int) or (isinstance(value, float) and value.is_integer())
    if expected == "number":
        return isinstance(value, (int, float))
    return isinstance(value, _PYTHON_TYPES.get(expected, object))


def _check(schema: Schema, spec: dict, value: Any, path: str, seen_refs: tuple = ()) -> Iterator[Problem]:
    if value is None or value == REDACTED or _unknown(value):
        return
    if spec.get("deprecationMessage"):
        yield Problem(path, f"is deprecated: {spec['deprecationMessage']}", deprecation=True)
    ref = spec.get("$ref")
    if ref:
        if ref in _ANY_REFS or ref in seen_refs:
            return
        target = schema.resolve(ref)
        if target is None:
            yield Problem(path, f"refers to {ref}, which the schema does not define")
            return
        yield from _check(schema, {k: v for k, v in target.items() if k != "deprecationMessage"},
                          value, path, seen_refs + (ref,))
        return
    if "oneOf" in spec:
        for option in spec["oneOf"]:
            if not list(_check(schema, option, value, path, seen_refs)):
                return
        yield Problem(path, f"{_type_name(value)} {json.dumps(value)[:60]} matches none of its types")
        return
    if "const" in spec and value != spec["const"]:
        yield Problem(path, f"must be {json.dumps(spec['const'])}, not {json.dumps(value)[:60]}")
        return
    if "enum" in spec:
        allowed = [e["value"] if isinstance(e, dict) else e for e in spec["enum"]]
        if value not in allowed:
            yield Problem(path, f"{json.dumps(value)[:60]} is not one of {', '.join(json.dumps(a) for a in allowed)}")
            return
    expected = spec.get("type") or ("object" if "properties" in spec else None)
    if expected and not _type_ok(expected, value):
        yield Problem(path, f"must be {'an' if expected[0] in 'aeiou' else 'a'} {expected}, not {_type_name(value)} "
                            f"{json.dumps(value)[:60]}")
        return
    if isinstance(value, list) and "items" in spec:
        for i, item in enumerate(value):
            yield from _check(schema, spec["items"], item, f"{path}[{i}]", seen_refs)
    if isinstance(value, dict) and expected == "object":
        yield from _check_object(schema, spec.get("properties"), spec.get("required") or [],
                                 spec.get("additionalProperties"), value, path, seen_refs)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _check_object(schema: Schema, properties: dict | None, required: list[str], additional: Any,
                  value: dict, path: str, seen_refs: tuple = ()) -> Iterator[Problem]:
    for name in required:
        if value.get(name) is None:
            yield Problem(_join(path, name), "is required")
    for name, child in value.items():
        if properties is not None and name in properties:
            yield from _check(schema, properties[name], child, _join(path, name), seen_refs)
        elif isinstance(additional, dict):
            yield from _check(schema, additional, child, _join(path, name), seen_refs)
        elif properties is not None or additional is False:
            known = ", ".join(sorted(properties or {}))
            yield Problem(_join(path, name), f"is not a property of this type (known: {known})"[:400])


def _schema_for(type_: str, directory: Path) -> Schema | None:
    package = type_.split(":", 1)[0] if not type_.startswith("pulumi:providers:") else type_.rsplit(":", 1)[1]
    if package in PACKAGE_FILES:
        return package_schema(package, directory)
    if package == "kubernetes":
        return kubernetes_schema(directory)
    return None


def check_registration(type_: str, name: str, inputs: dict[str, Any], custom: bool = True,
                       directory: Path = SCHEMAS) -> list[Problem]:
    """What the provider's Check would refuse (or warn about) in one resource registration.

    Component resources (custom=False) and types of packages without a schema here are not
    judged. Kubernetes types outside the swagger document and the overlays (custom resources,
    apps/v1 kinds) are not judged either: pulumi-kubernetes accepts any group/version/kind.
    """
    if not custom:
        return []
    schema = _schema_for(type_, directory)
    if schema is None:
        return []
    resource = schema.resources.get(type_)
    if resource is None:
        if type_.startswith("kubernetes:") and not type_.startswith(("kubernetes:core/", "kubernetes:helm.sh/")):
            return []
        return [Problem("", f"{type_} is not a resource of the {type_.split(':')[0]} provider's schema")]
    problems = []
    if resource.get("deprecation"):
        problems.append(Problem("", f"{type_} is deprecated: {resource['deprecation']}", deprecation=True))
    for key, expected in (resource.get("const") or {}).items():
        if inputs.get(key) not in (None, expected):
            problems.append(Problem(key, f"must be {expected!r} for {type_}, not {inputs.get(key)!r}"))
    if type_.startswith("pulumi:providers:"):
        inputs = _provider_config(resource["properties"], inputs)
    problems += _check_object(schema, resource["properties"], resource["required"], None, inputs, "")
    return problems


def _provider_config(properties: dict, inputs: dict[str, Any]) -> dict[str, Any]:
    """A provider's inputs as its Check reads them: the SDKs send each non-string one JSON-encoded."""
    decoded = {}
    for name, value in inputs.items():
        spec = properties.get(name) or {}
        if isinstance(value, str) and spec.get("type", "string") != "string" and value != REDACTED \
                and not _unknown(value):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                pass  # not JSON: the type check names it
        decoded[name] = value
    return decoded


def check_resources(doc: dict, directory: Path = SCHEMAS) -> dict[str, list[Problem]]:
    """Every resource of a build/<stack>/resources.json document: urn -> its problems (only those with any)."""
    found = {}
    for r in doc["resources"]:
        problems = check_registration(r["type"], r["name"], r["inputs"], r.get("custom", True), directory)
        if problems:
            found[r["urn"]] = problems
    return found
