"""Routes no alert can take: each route of `alerting.routes` against the labels of every alert the
stack defines (its rule files: built-in, SLOs, recovery, alerts/).

A matcher is checked on the labels the rules set (alertname, severity, service, slo, ...): a label
that only the series carry (namespace, job, instance) may take any value, so it is not judged. A
label a rule writes as a template (`service: '{{ $labels.service }}'`) takes the values the scrape
jobs give it. A route whose matchers no alert satisfies together is an error naming the route, its
matcher and the closest value an alert carries.
"""

from __future__ import annotations

import difflib
import re
from itertools import product
from typing import Iterable

from model.config import Problem, StackConfig
from model.facts.matchers import Matcher
from model.rules import RuleFile
from model.values.metrics import static_scrape_jobs

# A rule label whose value is the series' label of that name.
LABEL_TEMPLATE = re.compile(r"^\{\{\s*\$labels\.([A-Za-z_][A-Za-z0-9_]*)\s*\}\}$")


def scrape_label_values(cfg: StackConfig) -> dict[str, set[str]]:
    """label -> the values the scrape jobs' targets carry (what a templated rule label takes)."""
    found: dict[str, set[str]] = {}
    for job in static_scrape_jobs(cfg):
        for static in job.config.get("static_configs") or []:
            for label, value in (static.get("labels") or {}).items():
                found.setdefault(label, set()).add(str(value))
    return found


def alert_label_sets(files: dict[str, RuleFile], values: dict[str, set[str]]) -> list[dict[str, str]]:
    """Every label set an alert of these rule files can carry, as far as the rules fix it."""
    sets = []
    for doc in files.values():
        for group in doc["groups"]:
            for rule in group["rules"]:
                if "alert" not in rule:
                    continue
                options = []
                for label, value in sorted((rule.get("labels") or {}).items()):
                    templated = LABEL_TEMPLATE.match(str(value))
                    options.append([(label, v) for v in sorted(values.get(templated.group(1), ()))] if templated
                                   else [(label, str(value))])
                sets += [{"alertname": rule["alert"], **dict(choice)} for choice in product(*options)]
    return sets


def _values(label_sets: Iterable[dict[str, str]], label: str) -> list[str]:
    return sorted({s[label] for s in label_sets if label in s})


def _closest(matcher: Matcher, values: list[str]) -> str:
    close = difflib.get_close_matches(matcher.value, values, n=1, cutoff=0.5) if matcher.op in ("=", "=~") else []
    if close:
        return f"; did you mean {str(Matcher(matcher.label, '=', close[0]))!r}?"
    shown = ", ".join(values[:12]) + (", ..." if len(values) > 12 else "")
    return f" ({matcher.label} is one of: {shown})"


def route_problems(cfg: StackConfig, files: dict[str, RuleFile]) -> list[Problem]:
    if cfg.alerting is None:
        return []
    label_sets = alert_label_sets(files, scrape_label_values(cfg))
    ruled = {label for s in label_sets for label in s}  # the labels some rule sets
    found = []
    for i, route in enumerate(cfg.alerting.routes):
        at = f"alerting.routes[{i}]"
        judged = [m for m in route.matchers if m.label in ruled]
        unmatched = False
        for j, m in enumerate(route.matchers):
            if m in judged and not any(m.matches(s) for s in label_sets):
                unmatched = True
                found.append(Problem(f"{at}.matchers[{j}]", f"{str(m)!r} (route to {route.receiver!r}): no alert "
                                                            f"this stack defines carries it"
                                                            f"{_closest(m, _values(label_sets, m.label))}"))
        if not unmatched and judged and not any(all(m.matches(s) for m in judged) for s in label_sets):
            together = " and ".join(repr(str(m)) for m in judged)
            found.append(Problem(f"{at}.matchers", f"no alert this stack defines carries {together} together, "
                                                   f"so the route to {route.receiver!r} never takes one"))
    return found
