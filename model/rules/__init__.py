"""Rule generators, one module per domain, and the typed rule they all produce.

Every alert carries `severity` and `service` labels (the routing table matches on them) and a
static `summary` with a templated `description`; model/rules/registry.py adds the runbook and
dashboard links to all of them at once. The name and the service come from the catalog
(contracts/alerts.py); an alert without a fixed service names the label its service comes from.
The types are Prometheus' rule file format as dicts, so a generator's output is written as it is.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict, Union

from contracts.alerts import Alert

# Prometheus' rule file format (prometheus/model/rulefmt): `for` is a keyword, hence the functional form.
AlertRule = TypedDict("AlertRule", {
    "alert": str, "expr": str, "for": NotRequired[str], "labels": dict[str, str], "annotations": dict[str, str]})


class RecordingRule(TypedDict):
    record: str
    expr: str
    labels: NotRequired[dict[str, str]]


Rule = Union[AlertRule, RecordingRule]


class RuleGroup(TypedDict):
    name: str
    interval: NotRequired[str]
    rules: list[Rule]


class RuleFile(TypedDict):
    groups: list[RuleGroup]


def alert(spec: Alert, expr: str, severity: str, summary: str, description: str,
          for_: str | None = None, labels: dict[str, str] | None = None, *, service: str | None = None) -> AlertRule:
    rule: AlertRule = {"alert": spec.name, "expr": expr}  # type: ignore[typeddict-item]  # completed below, in file order
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity, "service": service or spec.service, **(labels or {})}
    rule["annotations"] = {"summary": summary, "description": description}
    return rule
