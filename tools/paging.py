"""Who gets paged for what: build/<stack>/alerting/paging.md and paging.json.

Every alert the rendered rule files define (built-in, SLO, recovery and your own alerts/), with
its severity, each receiver Alertmanager routes it to with that route's group and repeat timing
and time intervals, and the recovery playbook it starts. The routing is amtool's (`amtool config
routes test` of the Alertmanager the chart deploys, tools/upstream.py), run on a copy of the
rendered alertmanager.yml whose every route has a receiver named after its place in the tree:
amtool answers which routes an alert ends on, and each route's settings are read from there.

    python -m tools.paging build/homelab     # (re)write build/homelab/alerting/paging.{md,json}

An alert whose label is a template (`service: '{{ $labels.service }}'`) takes its value from the
series; it is routed once per value the scrape configs give that label, plus once for any other.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from contracts import recovery as recovery_catalog
from model.facts.matchers import Matcher
from model.rules.route_coverage import LABEL_TEMPLATE

_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where present
# The value a templated label is routed with when the series carries none the scrape configs name.
ANY_OTHER = "(any other)"
TIMING = ("group_by", "group_wait", "group_interval", "repeat_interval")
# Alertmanager's defaults (config/config.go DefaultRouteOpts) where the root route leaves one out.
DEFAULT_TIMING = {"group_by": [], "group_wait": "30s", "group_interval": "5m", "repeat_interval": "4h"}


class PagingUnavailable(Exception):
    """The table cannot be rendered here (no amtool of the deployed version); says what to run."""


@dataclass(frozen=True)
class Delivery:
    """One receiver an alert reaches, through the route (its key path in alertmanager.yml) it ends on."""

    receiver: str
    route: str
    group_by: list[str]
    group_wait: str
    group_interval: str
    repeat_interval: str
    mute_time_intervals: list[str] = field(default_factory=list)
    active_time_intervals: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Page:
    alert: str
    severity: str
    labels: dict[str, str]  # the labels it is routed with, alertname and severity aside
    rule_file: str
    for_: str | None
    deliveries: list[Delivery]
    recovery: str | None  # "playbook: action (mode), ...", with the trigger's label condition


# --- the inputs: rendered files --------------------------------------------------------------

def _load(path: Path) -> Any:
    return yaml.load(path.read_text(), Loader=_LOADER) if path.is_file() else None


def alert_rules(build: Path) -> Iterator[tuple[str, dict]]:
    """(rule file stem, alerting rule) for every alert of build/<stack>/prometheus/rules/."""
    for path in sorted((build / "prometheus" / "rules").glob("*.yaml")):
        for group in (_load(path) or {}).get("groups") or []:
            for rule in group.get("rules") or []:
                if "alert" in rule:
                    yield path.stem, rule


def scrape_label_values(build: Path) -> dict[str, set[str]]:
    """label -> every value the scrape configs' targets carry for it."""
    found: dict[str, set[str]] = {}
    for job in (_load(build / "prometheus" / "scrape-configs.yaml") or {}).get("scrape_configs") or []:
        for static in job.get("static_configs") or []:
            for label, value in (static.get("labels") or {}).items():
                found.setdefault(label, set()).add(str(value))
    return found


def label_sets(rule: dict, values: dict[str, set[str]]) -> list[dict[str, str]]:
    """The label sets an alert can carry: one, or one per value of each templated label."""
    sets: list[dict[str, str]] = [{}]
    for label, value in sorted((rule.get("labels") or {}).items()):
        value = str(value)
        templated = LABEL_TEMPLATE.match(value)
        if templated:
            options = sorted(values.get(templated.group(1), set())) + [ANY_OTHER]
        elif "{{" in value:
            options = [ANY_OTHER]
        else:
            options = [value]
        sets = [{**s, label: option} for s in sets for option in options]
    return [{"alertname": rule["alert"], **s} for s in sets]


# --- routing: amtool's answer -----------------------------------------------------------------

def amtool_path() -> Path:
    """amtool of the Alertmanager the chart deploys (`make upstream`); PagingUnavailable if absent."""
    from tools import upstream

    try:
        return upstream.built_binary("amtool")
    except upstream.UpstreamError as exc:
        raise PagingUnavailable(str(exc)) from None


def _routes(route: dict, path: str = "route") -> Iterator[tuple[str, dict]]:
    yield path, route
    for i, child in enumerate(route.get("routes") or []):
        yield from _routes(child, f"{path}.routes[{i}]")


def route_naming_config(am_config: dict) -> dict:
    """alertmanager.yml with every route's receiver named after the route's key path: what amtool
    then answers for a label set are the routes it ends on, in the tree's order."""
    doc = copy.deepcopy(am_config)
    names = []
    for path, route in _routes(doc["route"]):
        route["receiver"] = path
        names.append(path)
    doc["receivers"] = [{"name": name} for name in names]
    doc.pop("templates", None)
    return doc


def _route_at(am_config: dict, path: str) -> list[dict]:
    """The routes from the root down to the one at `path` (route.routes[2].routes[0])."""
    chain = [am_config["route"]]
    for index in re.findall(r"\[(\d+)\]", path):
        chain.append(chain[-1]["routes"][int(index)])
    return chain


def delivery(am_config: dict, path: str) -> Delivery:
    """What the route at `path` delivers with: a child inherits its parent's receiver and timing,
    never its time intervals (dispatch/route.go newRoute)."""
    chain = _route_at(am_config, path)
    settings: dict[str, Any] = {"receiver": None, **DEFAULT_TIMING}
    for route in chain:
        for key in ("receiver", *TIMING):
            if route.get(key) is not None:
                settings[key] = route[key]
    final = chain[-1]
    return Delivery(settings["receiver"], path, list(settings["group_by"]), str(settings["group_wait"]),
                    str(settings["group_interval"]), str(settings["repeat_interval"]),
                    list(final.get("mute_time_intervals") or []), list(final.get("active_time_intervals") or []))


def route_with_amtool(amtool: Path, config_file: Path, labels: dict[str, str]) -> list[str]:
    """The key paths of the routes a label set ends on, as Alertmanager's dispatcher finds them."""
    done = subprocess.run([str(amtool), "config", "routes", "test", f"--config.file={config_file}",
                           *(str(Matcher(k, "=", v)) for k, v in labels.items())],
                          capture_output=True, text=True, timeout=60)
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise PagingUnavailable(f"amtool config routes test {labels}: {done.stdout}{done.stderr}".strip())
    return lines[-1].split(",")  # earlier lines are Alertmanager's parser notes


# --- recovery ----------------------------------------------------------------------------------

def recovery_of(labels: dict[str, str], receivers: list[str], recovery_config: dict | None,
                recovery_receiver: str) -> str | None:
    """The playbook (and its actions with their modes) the recovery service runs for this alert."""
    if not recovery_config or recovery_receiver not in receivers:
        return None
    modes = {name: (action or {}).get("mode", "off") for name, action in (recovery_config.get("actions") or {}).items()}
    for trigger in recovery_config.get("triggers") or []:
        if trigger.get("alertname") != labels["alertname"]:
            continue
        matchers = {str(k): str(v) for k, v in (trigger.get("matchers") or {}).items()}
        if any(k in labels and labels[k] != v for k, v in matchers.items()):
            continue
        condition = [f"{k}={v}" for k, v in sorted(matchers.items()) if k not in labels]
        steps = ", ".join(f"{a.name} ({modes.get(a.name, 'off')})" for a in recovery_catalog.steps(trigger["playbook"]))
        return f"{trigger['playbook']}: {steps}" + (f" (when {', '.join(condition)})" if condition else "")
    return None


# --- the table ---------------------------------------------------------------------------------

def paging(build: Path, amtool: Path | None = None) -> list[Page]:
    """Every alert of the rendered stack with whom it reaches and what it starts."""
    from model.recovery import RECEIVER as RECOVERY_RECEIVER

    am_config = _load(build / "alertmanager" / "alertmanager.yml")
    if am_config is None:
        return []
    amtool = amtool or amtool_path()
    recovery_config = _load(build / "recovery" / "recovery.yml")
    values = scrape_label_values(build)
    work = [(stem, rule, labels) for stem, rule in alert_rules(build) for labels in label_sets(rule, values)]
    with tempfile.TemporaryDirectory(prefix="paging-") as tmp:
        config_file = Path(tmp) / "alertmanager.yml"
        config_file.write_text(yaml.safe_dump(route_naming_config(am_config)))
        with ThreadPoolExecutor(max_workers=4) as pool:
            routed = list(pool.map(lambda item: route_with_amtool(amtool, config_file, item[2]), work))
    pages = []
    for (stem, rule, labels), paths in zip(work, routed):
        deliveries = [delivery(am_config, path) for path in paths]
        receivers = [d.receiver for d in deliveries]
        rest = {k: v for k, v in labels.items() if k not in ("alertname", "severity")}
        pages.append(Page(rule["alert"], labels.get("severity", ""), rest, stem, rule.get("for"), deliveries,
                          recovery_of(labels, receivers, recovery_config, RECOVERY_RECEIVER)))
    return pages


def _timing(d: Delivery) -> str:
    parts = [f"wait {d.group_wait}, every {d.group_interval}, repeat {d.repeat_interval}"]
    grouping = "every label" if d.group_by == ["..."] else ",".join(d.group_by) or "nothing"
    parts.append(f"grouped by {grouping}")
    if d.mute_time_intervals:
        parts.append("muted " + ",".join(d.mute_time_intervals))
    if d.active_time_intervals:
        parts.append("only " + ",".join(d.active_time_intervals))
    return "; ".join(parts)


def receivers_text(page: Page) -> str:
    return "<br>".join(f"**{d.receiver}** ({_timing(d)})" for d in page.deliveries)


def labels_text(labels: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(labels.items()))


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def merged_rows(pages: list[Page]) -> list[tuple[Page, str]]:
    """One row per alert, severity and outcome: the values of a label that varies (a templated one)
    share a row where they route alike (`service=backups` apart, `service=metrics | (any other)` together)."""
    seen: dict[tuple, dict[str, set[str]]] = {}
    for p in pages:
        for k, v in p.labels.items():
            seen.setdefault((p.rule_file, p.alert, p.severity), {}).setdefault(k, set()).add(v)
    rows: dict[tuple, tuple[Page, dict[str, list[str]]]] = {}
    for p in pages:
        rule = (p.rule_file, p.alert, p.severity)
        fixed = tuple((k, v) for k, v in sorted(p.labels.items()) if len(seen[rule][k]) == 1)
        key = rule + fixed + (json.dumps([asdict(d) for d in p.deliveries]), p.recovery)
        _, values = rows.setdefault(key, (p, {}))
        for k, v in sorted(p.labels.items()):
            if v not in values.setdefault(k, []):
                values[k].append(v)
    return [(page, ", ".join(f"{k}={' | '.join(v)}" for k, v in values.items())) for page, values in rows.values()]


def markdown(pages: list[Page], stack: str) -> str:
    lines = [f"# Who gets paged for what: stack {stack}", "",
             "Every alert the rendered rules define, the receivers Alertmanager's routing (amtool) sends it to, "
             "with the route's group wait, group interval, repeat interval and grouping, and the recovery "
             "playbook it starts. A templated label is routed once per value the scrape configs give it and "
             f"once as `{ANY_OTHER}`; values that route alike share a row.", "",
             "| alert | severity | labels | receivers (timing) | recovery | rule file |",
             "|---|---|---|---|---|---|"]
    for page, labels in merged_rows(pages):
        lines.append("| " + " | ".join(_cell(c) for c in (
            page.alert, page.severity, labels, receivers_text(page), page.recovery or "", page.rule_file)) + " |")
    return "\n".join(lines) + "\n"


def to_json(pages: list[Page]) -> str:
    return json.dumps([asdict(p) for p in pages], indent=2, sort_keys=True) + "\n"


def write(build: Path, stack: str, amtool: Path | None = None) -> list[Page]:
    pages = paging(build, amtool)
    target = build / "alerting"
    target.mkdir(parents=True, exist_ok=True)
    (target / "paging.json").write_text(to_json(pages))
    (target / "paging.md").write_text(markdown(pages, stack))
    return pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.paging", description=__doc__.split("\n\n")[0])
    parser.add_argument("build", type=Path, help="a rendered stack: build/<stack>")
    args = parser.parse_args(argv)
    try:
        pages = write(args.build, args.build.name)
    except PagingUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{len(pages)} alert label sets -> {args.build / 'alerting' / 'paging.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
