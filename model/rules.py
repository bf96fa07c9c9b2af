"""The shape of one Prometheus alerting rule as the stack writes it, for every rule module.

Every alert carries `severity` and `service` labels (the routing table matches on them) and a
static `summary` with a templated `description`; model/alerts.py adds the runbook and dashboard
links to all of them at once.
"""

from __future__ import annotations


def alert(name: str, expr: str, severity: str, service: str, summary: str, description: str,
          for_: str | None = None, labels: dict[str, str] | None = None) -> dict:
    rule: dict = {"alert": name, "expr": expr}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity, "service": service, **(labels or {})}
    rule["annotations"] = {"summary": summary, "description": description}
    return rule
