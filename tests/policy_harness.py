"""Runs the policy pack's policies over recorded resources, the way the Pulumi engine would.

The engine hands a policy a ResourceValidationArgs per resource (inputs wrapped in its
unknown-checking proxies, options as PolicyResourceOptions) and one StackValidationArgs with
every resource. This builds the same objects from an offline-engine Recording, with the
*unredacted* inputs: the real engine shows policies the plaintext of Pulumi secrets too.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from pulumi_policy import (
    PolicyCustomTimeouts,
    PolicyResource,
    PolicyResourceOptions,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    StackValidationArgs,
    StackValidationPolicy,
)
from pulumi_policy.proxy import unknown_checking_proxy

from policy.pack import all_policies
from tools.offline_engine import ROOT, Recording, run_program

HOMELAB_STACK = ROOT / "Pulumi.homelab.yaml"
FIXTURE_PROGRAM = Path(__file__).parent / "policy_fixtures" / "program.py"
# Realistic secret values, so that a secret leaking into plain config would look like one.
# No network here: rendered-manifests takes the charts from ../shared/charts only.
OFFLINE = {"rendered-manifests": {"fetchCharts": False}}
SECRETS = {"k3sToken": "K10" + "3f9a1c" * 10 + "b2d4::server:" + "9c8e7d6f5a4b3c2d1e0f9a8b7c6d5e4f"}


@dataclass
class Resource:
    type: str
    name: str
    urn: str
    props: dict[str, Any]
    protect: bool = False
    parent: str = ""

    def mutated(self, **changes: Any) -> "Resource":
        clone = copy.deepcopy(self)
        for key, value in changes.items():
            setattr(clone, key, value)
        return clone


@dataclass
class Violation:
    policy: str
    resource: str
    message: str


@dataclass
class Outcome:
    violations: list[Violation] = field(default_factory=list)

    def of(self, policy: str) -> list[Violation]:
        return [v for v in self.violations if v.policy == policy]


def resources_of(recording: Recording) -> list[Resource]:
    return [Resource(r.type, r.name, r.urn, copy.deepcopy(recording.raw_inputs[r.urn]),
                     bool(r.options.get("protect")), r.parent)
            for r in recording.resources if r.custom]


def record(program: Path | None = None) -> list[Resource]:
    if program is None:
        return resources_of(run_program(HOMELAB_STACK, SECRETS))
    return resources_of(run_program(HOMELAB_STACK, SECRETS, program=program))


def _opts(resource: Resource) -> PolicyResourceOptions:
    return PolicyResourceOptions(resource.protect, [], None, [], PolicyCustomTimeouts(0, 0, 0), [], resource.parent)


def run(resources: list[Resource], only: str | None = None,
        config: Mapping[str, Mapping[str, Any]] | None = None) -> Outcome:
    """Every policy (or only `only`) over `resources`; config maps policy name -> its config."""
    config = {**OFFLINE, **(config or {})}
    outcome = Outcome()
    by_urn = {r.urn: r for r in resources}
    for policy in all_policies():
        if only and policy.name != only:
            continue
        if isinstance(policy, ResourceValidationPolicy):
            for r in resources:
                args = ResourceValidationArgs(r.type, unknown_checking_proxy(copy.deepcopy(r.props)), r.urn, r.name,
                                              _opts(r), None, config.get(policy.name))
                policy.validate(args, lambda msg, urn=None, r=r, p=policy.name:
                                outcome.violations.append(Violation(p, r.name, msg)))
        elif isinstance(policy, StackValidationPolicy):
            stack = [PolicyResource(r.type, unknown_checking_proxy(copy.deepcopy(r.props)), r.urn, r.name, _opts(r),
                                    None, None, [], {}) for r in resources]
            args = StackValidationArgs(stack, config.get(policy.name))
            policy.validate(args, lambda msg, urn=None, p=policy.name: outcome.violations.append(
                Violation(p, by_urn[urn].name if urn in by_urn else "(stack)", msg)))
    return outcome
