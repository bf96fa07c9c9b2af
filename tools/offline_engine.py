"""Runs the Pulumi program (`__main__.py`) on Pulumi's in-process mock engine.

The real CLI and provider plugins are out of reach here, so the program is driven by the
SDK's own MockMonitor; this module records every resource registration exactly as the SDK
sends it to an engine (type, name, parent, options, inputs) with secret values redacted.
Secret config that the stack file holds encrypted (or not at all) is replaced by a clearly
marked placeholder, since only the Pulumi CLI can decrypt it.

Every registration is also judged as its provider's Check would judge it
(tools/provider_schemas.py): what a provider would refuse fails the run with
ProviderCheckError, naming each resource and problem; deprecations are kept as warnings.
"""

from __future__ import annotations

import json
import logging
import os
import runpy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from sdk.internals import decode_properties, is_secret_envelope, run_program_in_stack
from tools.provider_schemas import Problem, check_registration

ROOT = Path(__file__).resolve().parent.parent
REDACTED = "[secret]"
# How a value the engine does not know yet in a preview is recorded (tools/provider_schemas.py lets it pass).
UNKNOWN = "<pulumi.output.Unknown object>"


def secret_placeholder(key: str) -> str:
    return f"<secret {key}: not available offline>"


class StackFileError(ValueError):
    """A stack file the CLI would not read as one: wrong name, not YAML, no config map."""


@dataclass(frozen=True)
class ProviderFinding:
    """What a provider's Check says about one registered resource."""

    resource: str
    type: str
    problem: Problem

    def __str__(self) -> str:
        return f"{self.resource} ({self.type}): {self.problem}"


class ProviderCheckError(ValueError):
    """Inputs the providers would refuse: `pulumi up` would fail on these resources."""

    def __init__(self, findings: list[ProviderFinding]):
        self.findings = findings
        lines = [f"the providers would refuse {len(findings)} input(s):"]
        lines += [f"  - {f}" for f in findings]
        super().__init__("\n".join(lines))


@dataclass
class StackFile:
    """A Pulumi.<stack>.yaml read without the CLI."""

    project: str
    stack: str
    config: dict[str, str]  # fully qualified key -> value as the CLI hands it to the program
    secret_keys: list[str]

    @classmethod
    def load(cls, path: Path, project_file: Path = ROOT / "Pulumi.yaml") -> "StackFile":
        project = yaml.safe_load(project_file.read_text())["name"]
        name = path.name
        stack = name[len("Pulumi."):-len(".yaml")]
        if not (name.startswith("Pulumi.") and name.endswith(".yaml")) or not stack:
            # The CLI finds a stack's config only by this name, so any other name is never deployed.
            raise StackFileError(f"{path}: a stack file must be named Pulumi.<stack>.yaml (e.g. Pulumi.homelab.yaml)")
        try:
            doc = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise StackFileError(f"{path}: not valid YAML ({exc})") from None
        if not isinstance(doc, dict) or not isinstance(doc.get("config") or {}, dict):
            raise StackFileError(f"{path}: a stack file is a map with a `config` map")
        config: dict[str, str] = {}
        secret_keys: list[str] = []
        for key, value in (doc.get("config") or {}).items():
            full = key if ":" in key else f"{project}:{key}"
            if isinstance(value, dict) and set(value) == {"secure"}:
                secret_keys.append(full)
                config[full] = secret_placeholder(full.split(":", 1)[1])
            elif isinstance(value, (dict, list)):
                config[full] = json.dumps(value)
            else:
                config[full] = value if isinstance(value, str) else json.dumps(value)
        return cls(project, stack, config, secret_keys)

    def stack_config(self):
        """The typed StackConfig of this file's plain (non-secret) sections, as the program reads them."""
        from model.config import load_stack_config
        from model.facts.secrets import SECRETS

        prefix = f"{self.project}:"
        sections = {}
        for key, value in self.config.items():
            section = key[len(prefix):]
            if key.startswith(prefix) and key not in self.secret_keys and section not in SECRETS:
                sections[section] = json.loads(value) if value[:1] in "{[" else value
        return load_stack_config(sections, f"stack {self.stack!r} (Pulumi.{self.stack}.yaml)")


@dataclass
class RecordedResource:
    type: str
    name: str
    urn: str
    parent: str
    custom: bool
    options: dict[str, Any]
    inputs: dict[str, Any]


@dataclass
class Recording:
    project: str
    stack: str
    resources: list[RecordedResource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    # Unredacted inputs, for tests that must see what the provider would receive.
    raw_inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    # Every secret config value of the run (key without namespace -> value), for redaction.
    secret_values: dict[str, str] = field(default_factory=dict)
    # What the providers' Check says about the registrations (refusals and deprecations).
    findings: list[ProviderFinding] = field(default_factory=list)
    # What the program logged as warnings (pulumi.log.warn), as the CLI would show them.
    logged_warnings: list[str] = field(default_factory=list)
    # What it logged as info (pulumi.log.info): e.g. the optional parts the stack leaves out.
    logged_info: list[str] = field(default_factory=list)

    def errors(self) -> list[ProviderFinding]:
        return [f for f in self.findings if not f.problem.deprecation]

    def warnings(self) -> list[str]:
        """Each deprecation once, with the resources it concerns."""
        concerned: dict[str, list[str]] = {}
        for f in self.findings:
            if f.problem.deprecation:
                text = f"{f.type} {f.problem}" if f.problem.path else str(f.problem)
                concerned.setdefault(text, []).append(f.resource)
        return self.logged_warnings + [f"{text} ({', '.join(sorted(names))})" for text, names in sorted(concerned.items())]

    def redact_text(self, text: str) -> str:
        for key, value in sorted(self.secret_values.items(), key=lambda kv: -len(kv[1])):
            if value:
                text = text.replace(value, f"<secret {key}>")
        return text

    def of_type(self, type_: str) -> list[RecordedResource]:
        return [r for r in self.resources if r.type == type_]

    def named(self, type_: str, name: str) -> RecordedResource:
        return next(r for r in self.resources if r.type == type_ and r.name == name)


def _redact(value: Any) -> Any:
    if isinstance(value, dict):
        if is_secret_envelope(value):
            return REDACTED
        return {k: _redact(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_redact(v) for v in value]
    return value


def _unwrap(value: Any) -> Any:
    if isinstance(value, dict):
        if is_secret_envelope(value):
            return _unwrap(value["value"])
        return {k: _unwrap(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_unwrap(v) for v in value]
    return value


def _plain(value: Any) -> Any:
    """Resource references and other SDK objects become strings for JSON."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)  # protobuf carries every number as a double
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if type(value).__name__ == "Unknown":
        return UNKNOWN  # str() would carry its memory address: the same preview would render differently
    return str(value)


def _provider_id(type_: str, name: str, inputs: dict[str, Any]) -> str:
    """The ID a provider gives a new resource, where the program hands it on as an input."""
    if type_ == "proxmoxve:download/file:File":  # a VM's disk names its image by this volume ID
        return f"{inputs['datastoreId']}:{inputs['contentType']}/{inputs['fileName']}"
    return f"{name}-id"


def run_program(stack_file: Path, secret_values: dict[str, str] | None = None,
                program: Path = ROOT / "__main__.py", recording: Recording | None = None,
                check_inputs: bool = True) -> Recording:
    """Run `program` for `stack_file` on the mock engine and return what it registered.

    `secret_values` (key without namespace -> value) stands in for what `pulumi config set
    --secret` would provide; tests use it to prove that secrets never leak. Pass `recording`
    to keep what was registered even when the program fails. Raises ProviderCheckError when a
    provider would refuse an input (unless `check_inputs` is False: the findings stay in
    `recording.findings`).
    """
    import pulumi
    from pulumi.runtime import mocks

    stack = StackFile.load(Path(stack_file))
    config = dict(stack.config)
    secret_keys = list(stack.secret_keys)
    from model.facts.secrets import SECRETS

    # Secrets the stack file lacks get a marked placeholder, so the preview shows the shape.
    provided = {key: secret_placeholder(key) for key in SECRETS if f"{stack.project}:{key}" not in config}
    provided.update(secret_values or {})
    for key, value in provided.items():
        full = f"{stack.project}:{key}"
        config[full] = value
        if full not in secret_keys:
            secret_keys.append(full)

    recording = recording or Recording(stack.project, stack.stack)
    recording.secret_values = {k.split(":", 1)[1]: config[k] for k in secret_keys}

    class Engine(mocks.Mocks):
        def new_resource(self, args: mocks.MockResourceArgs):
            state = dict(args.inputs)
            return _provider_id(args.typ, args.name, state), state

        def call(self, args: mocks.MockCallArgs):
            return {}

    class RecordingMonitor(mocks.MockMonitor):
        def RegisterResource(self, request):
            response = super().RegisterResource(request)
            if request.type != "pulumi:pulumi:Stack":
                inputs = decode_properties(request.object)
                options = {
                    "protect": bool(request.protect),
                    "ignoreChanges": list(request.ignoreChanges),
                    "deleteBeforeReplace": bool(request.deleteBeforeReplace),
                    "retainOnDelete": bool(request.retainOnDelete),
                    "replaceOnChanges": list(request.replaceOnChanges),
                    "dependsOn": sorted(request.dependencies),
                    # Former names (same parent): the engine adopts a resource of that name instead of replacing it.
                    "aliases": sorted(a.spec.name for a in request.aliases if a.spec.name),
                }
                recording.resources.append(
                    RecordedResource(request.type, request.name, response.urn, request.parent,
                                     bool(request.custom), options, _plain(_redact(inputs)))
                )
                raw = recording.raw_inputs[response.urn] = _plain(_unwrap(inputs))
                # The provider sees secrets in clear, so the check does too.
                recording.findings += [
                    ProviderFinding(request.name, request.type,
                                    Problem(p.path, recording.redact_text(p.message), p.deprecation))
                    for p in check_registration(request.type, request.name, raw, bool(request.custom))]
            return response

        def RegisterResourceOutputs(self, request):
            if request.urn.split("::")[-2] == "pulumi:pulumi:Stack":
                recording.outputs.update(_plain(_redact(decode_properties(request.outputs))))
            return super().RegisterResourceOutputs(request)

    class Warnings(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            into = recording.logged_warnings if record.levelno >= logging.WARNING else recording.logged_info
            into.append(record.getMessage())

    logger = logging.getLogger(f"{__name__}.program")
    logger.handlers, logger.propagate = [Warnings(logging.INFO)], False
    logger.setLevel(logging.INFO)
    monitor = RecordingMonitor(Engine())
    mocks.set_mocks(Engine(), project=stack.project, stack=stack.stack, preview=True, monitor=monitor, logger=logger)
    pulumi.runtime.set_all_config(config, secret_keys)

    sys.path.insert(0, str(program.parent))
    cwd = os.getcwd()
    os.chdir(program.parent)
    try:
        run_program_in_stack(lambda: runpy.run_path(str(program), run_name="__main__"))
    finally:
        os.chdir(cwd)
        sys.path.remove(str(program.parent))
    if check_inputs and recording.errors():
        raise ProviderCheckError(recording.errors())
    return recording
