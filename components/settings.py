"""Reads the stack's configuration from the Pulumi runtime into the typed StackConfig.

The only place that knows how Pulumi hands config to a program: every `<project>:<key>` of
the stack file is one section of StackConfig; secret keys are kept apart as Pulumi secrets.
"""

from __future__ import annotations

import difflib
import json
from typing import Any

import pulumi
from pulumi.runtime import config as runtime_config

from model.config import ConfigError, Problem, StackConfig, load_stack_config, required_secrets
from model.facts.secrets import SECRETS
from model.preflight import preflight


def _decode(value: Any) -> Any:
    # Structured values arrive JSON-encoded; plain scalars arrive as strings.
    if isinstance(value, str) and value[:1] in "{[":
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def _all_config() -> dict[str, Any]:
    merged: dict[str, Any] = dict(runtime_config.get_config_env())
    merged.update(runtime_config.CONFIG.get())
    return merged


def _project_config(project: str) -> tuple[dict[str, Any], set[str]]:
    merged = _all_config()
    secret_keys = set(runtime_config.get_config_secret_keys_env()) | {k for k in merged if runtime_config.is_config_secret(k)}
    prefix = f"{project}:"
    values = {k[len(prefix):]: _decode(v) for k, v in merged.items() if k.startswith(prefix)}
    secrets = {k[len(prefix):] for k in secret_keys if k.startswith(prefix)}
    return values, secrets


# The config namespaces besides the project's that the program's providers read.
PROVIDER_NAMESPACES = ("proxmoxve", "kubernetes", "grafana", "random", "pulumi")


def namespace_problems(keys: set[str], project: str) -> list[Problem]:
    """A key in a namespace nothing reads is dropped without a word by Pulumi: a typo of the project's
    (`homelab-observabilty:slos`) would quietly lose a whole section."""
    known = [project, *PROVIDER_NAMESPACES]
    found = []
    for key in sorted(keys):
        namespace, _, name = key.partition(":")
        if namespace in known or not name:
            continue
        close = difflib.get_close_matches(namespace, known, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}:{name}'?" if close else ""
        found.append(Problem(key, f"unknown namespace {namespace!r}: nothing reads it (the program reads "
                                  f"{', '.join(n + ':' for n in known)}){hint}"))
    return found


class Settings:
    """The typed config plus the stack's secrets as Pulumi secret Outputs."""

    def __init__(self, config: StackConfig, secrets: dict[str, pulumi.Output[str]],
                 kubernetes_context: str | None = None, kubeconfig: pulumi.Output[str] | None = None,
                 warnings: list[str] | None = None):
        self.config = config
        self.secrets = secrets
        # Printed by the program: e.g. an alert of alerts/ without a runbook yet.
        self.warnings = warnings or []
        # The cluster the Kubernetes provider deploys to (its own config keys), for the node readiness check.
        self.kubernetes_context = kubernetes_context
        self.kubeconfig = kubeconfig


def load_settings() -> Settings:
    project, stack = pulumi.get_project(), pulumi.get_stack()
    values, secret_keys = _project_config(project)
    source = f"stack {stack!r} (Pulumi.{stack}.yaml)"

    problems: list[Problem] = namespace_problems(set(_all_config()), project)
    for key in sorted(secret_keys - set(SECRETS)):
        problems.append(Problem(key, "unknown secret key"))
    for key in sorted(set(values) & set(SECRETS) - secret_keys):
        problems.append(Problem(key, f"is a secret: set it with `pulumi config set --secret {key} <value>`"))
    plain = {k: v for k, v in values.items() if k not in secret_keys and k not in SECRETS}
    try:
        config = load_stack_config(plain, source)
    except ConfigError as exc:
        raise ConfigError(problems + exc.problems, source) from None
    # alerts/, dashboards/ and the routing table against every alert: only a loaded config has them.
    found, warnings = preflight(config)
    problems += found
    kubernetes = pulumi.Config("kubernetes")
    context = kubernetes.get("context")
    if config.k3s is not None and not context:
        # The default Kubernetes provider would otherwise deploy to kubectl's current context.
        problems.append(Problem("kubernetes:context", "is required: the kubeconfig context of the k3s cluster "
                                                      "the releases go to (`pulumi config set kubernetes:context "
                                                      "<context>`)"))
    for key in required_secrets(config):
        if key not in secret_keys:
            spec = SECRETS[key]
            problems.append(Problem(key, f"secret not set ({spec.purpose}): `pulumi config set --secret {key} <value>`"))
    if problems:
        raise ConfigError(problems, source)

    cfg = pulumi.Config()
    secrets = {key: cfg.require_secret(key) for key in sorted(secret_keys)}
    return Settings(config, secrets, context, kubernetes.get_secret("kubeconfig"), warnings)
