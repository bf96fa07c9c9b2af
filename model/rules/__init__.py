"""The shape of one Prometheus alerting rule as the stack writes it, for every rule module.

Every alert carries `severity` and `service` labels (the routing table matches on them) and a
static `summary` with a templated `description`; model/alerts.py adds the runbook and dashboard
links to all of them at once. The name and the service come from the catalog (contracts/alerts.py);
an alert without a fixed service names the label its service comes from.
"""

from __future__ import annotations

from contracts.alerts import Alert


def alert(spec: Alert, expr: str, severity: str, summary: str, description: str,
          for_: str | None = None, labels: dict[str, str] | None = None, *, service: str | None = None) -> dict:
    rule: dict = {"alert": spec.name, "expr": expr}
    if for_:
        rule["for"] = for_
    rule["labels"] = {"severity": severity, "service": service or spec.service, **(labels or {})}
    rule["annotations"] = {"summary": summary, "description": description}
    return rule
