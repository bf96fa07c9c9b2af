"""Your own Prometheus rules, no code: every alerts/*.yaml, a rule file as Prometheus and promtool read it.

They are rendered beside the stack's own files (prometheus/rules/alerts-<name>.yaml) and get what
the built-in alerts get: the runbook and dashboard links (model/facts/links.py), the routing
(their `severity` and `service` labels), the paging table and the check of the routing table's
matchers. What the routing and the policy pack need is checked here, by file and rule, before any
resource is registered; promtool checks the PromQL (tools/preview.py, tests/rules/test_user_rules.py).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from contracts.alerts import ALL as BUILT_IN_ALERTS
from model.config import Problem
from model.rules import RuleFile

USER_RULES_DIR = Path(__file__).resolve().parents[2] / "alerts"
RUNBOOKS_DIR = Path(__file__).resolve().parents[2] / "runbooks"
FILE_PREFIX = "alerts-"
# What the routing table and the policy pack know (policy/policies.py DEFAULT_SEVERITIES, save the
# Watchdog's `none`).
SEVERITIES = ("critical", "warning", "info")
REQUIRED_LABELS = ("severity", "service")
REQUIRED_ANNOTATIONS = ("summary", "description")
GROUP_KEYS = {"name", "interval", "limit", "query_offset", "labels", "rules"}
RULE_KEYS = {"alert", "record", "expr", "for", "keep_firing_for", "labels", "annotations"}


@dataclass
class UserRules:
    files: dict[str, RuleFile] = field(default_factory=dict)  # rendered stem -> rule file
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    sources: dict[str, Path] = field(default_factory=dict)  # rendered stem -> alerts/<name>.yaml


def _near(word: str, known: set[str]) -> str:
    close = difflib.get_close_matches(word, sorted(known), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _rule_problems(rule: Any, at: str, runbooks: Path) -> tuple[list[Problem], list[str]]:
    if not isinstance(rule, dict):
        return [Problem(at, "must be a mapping with `alert` or `record` and `expr`")], []
    found = [Problem(f"{at}.{k}", f"unknown key{_near(str(k), RULE_KEYS)}") for k in rule if k not in RULE_KEYS]
    if ("alert" in rule) == ("record" in rule):
        found.append(Problem(at, "needs exactly one of `alert` and `record`"))
    if not isinstance(rule.get("expr"), (str, int, float)) or not str(rule.get("expr")).strip():
        found.append(Problem(f"{at}.expr", "is required (PromQL)"))
    if "alert" not in rule:
        return found, []
    name = str(rule["alert"])
    labels, annotations = rule.get("labels") or {}, rule.get("annotations") or {}
    for key, value in (("labels", labels), ("annotations", annotations)):
        if not isinstance(value, dict):
            return found + [Problem(f"{at}.{key}", "must be a mapping of names to strings")], []
    if "runbook_url" in annotations:
        found.append(Problem(f"{at}.annotations.runbook_url", f"is set by the stack: write runbooks/{name}.md, "
                                                              "published under site.runbookHubUrl"))
    if name in BUILT_IN_ALERTS:
        found.append(Problem(f"{at}.alert", f"{name!r} is an alert of the stack already: name yours differently"))
    for label in REQUIRED_LABELS:
        if not labels.get(label):
            found.append(Problem(f"{at}.labels.{label}", "is required: the routing table matches on it"))
    severity = labels.get("severity")
    if severity and severity not in SEVERITIES:
        found.append(Problem(f"{at}.labels.severity", f"must be one of {', '.join(SEVERITIES)} (got {severity!r})"
                                                      f"{_near(str(severity), set(SEVERITIES))}"))
    for key in REQUIRED_ANNOTATIONS:
        if not annotations.get(key):
            found.append(Problem(f"{at}.annotations.{key}", "is required: every page says what and why"))
    warnings = []
    if not (runbooks / f"{name}.md").is_file():
        warnings.append(f"{at}: alert {name} has no runbook: write runbooks/{name}.md (the policy pack "
                        f"refuses `pulumi up` of an alert without one; its runbook_url already points there)")
    return found, warnings


def load_user_rules(directory: Path | None = None, runbooks: Path | None = None,
                    taken_groups: frozenset[str] = frozenset()) -> UserRules:
    """Every alerts/*.yaml with the problems that stop the preview and the warnings it prints."""
    directory, runbooks = directory or USER_RULES_DIR, runbooks or RUNBOOKS_DIR
    out = UserRules()
    if not directory.is_dir():
        return out
    groups_seen: dict[str, str] = {}
    alerts_seen: dict[tuple, str] = {}
    for path in sorted(directory.glob("*.y*ml")):
        where = f"{directory.name}/{path.name}"
        try:
            doc = yaml.safe_load(path.read_text())
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            line = f" (line {mark.line + 1})" if mark else ""
            out.problems.append(Problem(where, f"is not YAML{line}: {getattr(exc, 'problem', exc)}"))
            continue
        if not isinstance(doc, dict) or not isinstance(doc.get("groups"), list):
            out.problems.append(Problem(where, "must be a Prometheus rule file: a mapping with `groups:` (a list)"))
            continue
        out.problems += [Problem(f"{where}: {k}", f"unknown key{_near(str(k), {'groups'})}") for k in doc if k != "groups"]
        for g, group in enumerate(doc["groups"]):
            at = f"{where}: groups[{g}]"
            if not isinstance(group, dict) or not isinstance(group.get("rules"), list):
                out.problems.append(Problem(at, "must be a mapping with `name` and `rules` (a list)"))
                continue
            out.problems += [Problem(f"{at}.{k}", f"unknown key{_near(str(k), GROUP_KEYS)}") for k in group if k not in GROUP_KEYS]
            name = str(group.get("name") or "")
            if not name:
                out.problems.append(Problem(f"{at}.name", "is required"))
            elif name in taken_groups or name in groups_seen:
                out.problems.append(Problem(f"{at}.name", f"group {name!r} is already defined "
                                                          f"({groups_seen.get(name, 'by the stack')})"))
            groups_seen.setdefault(name, at)
            for r, rule in enumerate(group["rules"]):
                label = f" ({rule.get('alert') or rule.get('record')})" if isinstance(rule, dict) else ""
                rule_at = f"{at}.rules[{r}]{label}"
                problems, warnings = _rule_problems(rule, rule_at, runbooks)
                out.problems += problems
                out.warnings += warnings
                if isinstance(rule, dict) and "alert" in rule:
                    key = (rule["alert"], tuple(sorted((rule.get("labels") or {}).items())))
                    if key in alerts_seen:
                        out.problems.append(Problem(rule_at, f"the same alert and labels as {alerts_seen[key]}"))
                    alerts_seen.setdefault(key, rule_at)
        stem = FILE_PREFIX + path.stem
        out.files[stem] = doc
        out.sources[stem] = path
    return out
