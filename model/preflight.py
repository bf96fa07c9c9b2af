"""What the stack config and the files beside it must get right against what the stack ships, checked
before any resource is registered: your own alert rules (alerts/), your own dashboards (dashboards/),
the routing table against every alert the stack defines (a route no alert can take is a typo, not a
rule), and the SNMP modules against the exporter's snmp.yml."""

from __future__ import annotations

from model.config import Problem, StackConfig
from model.grafana.dashboards import dashboard_problems
from model.rules.route_coverage import route_problems
from model.grafana.runbooks import defined_alerts, stack_runbooks
from model.rules.registry import rule_files, stack_rule_files, user_rules
from model.values.snmp_modules import snmp_problems


def preflight(cfg: StackConfig) -> tuple[list[Problem], list[str]]:
    """(problems that stop the program, warnings it prints)."""
    user = user_rules(cfg)
    problems = list(user.problems) + dashboard_problems(cfg) + snmp_problems(cfg)
    # Every alert of the stack's own links runbooks/<AlertName>.md (alerts/ without one: a warning).
    _, missing = stack_runbooks(defined_alerts(stack_rule_files(cfg).values()))
    problems += [Problem(f"runbooks/{alert}.md", f"is missing: the stack defines alert {alert}, whose runbook_url "
                                                 "links it") for alert in missing]
    if not user.problems:  # the routes are judged on rules that load
        problems += route_problems(cfg, rule_files(cfg))
    return problems, user.warnings
