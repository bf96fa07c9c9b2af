"""The policies of the homelab observability stack, as plain validation functions.

Each policy reads resources by their Pulumi type tokens and plain inputs, so it runs the same
against the real engine (`pulumi preview --policy-pack policy`) and against the offline
engine's recording (tests/policy_harness.py). Every function tolerates shapes it does not
know: a missing key means "nothing to check here", never a crash.

Violation messages name the resource and say how to fix it; secret values are never echoed.
"""

from __future__ import annotations

import base64
import binascii
import copy
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import yaml
from pulumi_policy import (
    ReportViolation,
    ResourceValidationArgs,
    StackValidationArgs,
)
from pulumi_policy import proxy as _proxy

from model.facts.durations import parse_seconds
from policy import credentials
from sdk.internals import policy_proxy_target
from policy.charts import CHARTS, DEFAULT_ALLOWED_REPOSITORIES, KUBE_PROMETHEUS_STACK, MISSING, ChartFacts, lookup

REPO_ROOT = Path(__file__).resolve().parent.parent

# --- type tokens ----------------------------------------------------------------------------

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"
HELM_CHART_V4 = "kubernetes:helm.sh/v4:Chart"
HELM_TYPES = (HELM_RELEASE, HELM_CHART_V4)
CONFIG_MAP = "kubernetes:core/v1:ConfigMap"
SECRET = "kubernetes:core/v1:Secret"
PVC = "kubernetes:core/v1:PersistentVolumeClaim"
PV = "kubernetes:core/v1:PersistentVolume"
PROMETHEUS_RULE = "kubernetes:monitoring.coreos.com/v1:PrometheusRule"
ALERTMANAGER_CONFIG = "kubernetes:monitoring.coreos.com/v1alpha1:AlertmanagerConfig"
GRAFANA_DASHBOARD = "grafana:oss/dashboard:Dashboard"
GRAFANA_CONTACT_POINT = "grafana:alerting/contactPoint:ContactPoint"
GRAFANA_NOTIFICATION_POLICY = "grafana:alerting/notificationPolicy:NotificationPolicy"
GRAFANA_RULE_GROUP = "grafana:alerting/ruleGroup:RuleGroup"
PROXMOX_VMS = ("proxmoxve:index/vmLegacy:VmLegacy", "proxmoxve:index/vm:Vm",
               "proxmoxve:cloned/vmLegacy:VmLegacy", "proxmoxve:cloned/vm:Vm")

_UNKNOWNS = {_proxy.UNKNOWN_BOOLEAN_VALUE, _proxy.UNKNOWN_NUMBER_VALUE, _proxy.UNKNOWN_STRING_VALUE,
             _proxy.UNKNOWN_ARRAY_VALUE, _proxy.UNKNOWN_ASSET_VALUE, _proxy.UNKNOWN_ARCHIVE_VALUE,
             _proxy.UNKNOWN_OBJECT_VALUE}


class Unknown:
    """A value the engine does not know yet during preview; every check skips it."""

    def __repr__(self) -> str:
        return "<unknown>"


UNKNOWN = Unknown()


def plain(value: Any) -> Any:
    """The engine's read-only proxies as plain dicts and lists, unknowns as UNKNOWN (no raise)."""
    value = policy_proxy_target(value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [plain(v) for v in value]
    if isinstance(value, str) and value in _UNKNOWNS:
        return UNKNOWN
    return value


def deep_merge(base: Any, override: Any) -> Any:
    """Helm's values merge: maps merge key by key, anything else replaces, null deletes."""
    if not isinstance(base, dict) or not isinstance(override, dict):
        return copy.deepcopy(override)
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = deep_merge(merged.get(key), value)
    return merged


def _config(args: Any, defaults: Mapping[str, Any]) -> dict[str, Any]:
    # The CLI fills schema defaults; direct callers (tests) may pass none.
    given = args.get_config() if hasattr(args, "get_config") else {}
    return {**defaults, **{k: v for k, v in dict(given or {}).items() if v is not None}}


def _label(resource_type: str, name: str) -> str:
    return f"{resource_type.rsplit(':', 1)[-1]} '{name}'"


# --- Helm releases --------------------------------------------------------------------------

class Release:
    """The parts of a Helm release (v3 Release or v4 Chart) the policies read."""

    def __init__(self, name: str, props: Mapping[str, Any]):
        self.name = name
        self.chart_ref = props.get("chart") if isinstance(props.get("chart"), str) else ""
        self.chart = self.chart_ref.rstrip("/").rsplit("/", 1)[-1]
        version = props.get("version")
        self.version = version if isinstance(version, str) else None
        opts = props.get("repositoryOpts") if isinstance(props.get("repositoryOpts"), Mapping) else {}
        repo = opts.get("repo")
        if isinstance(repo, str) and repo:
            self.repository: str | None = repo
        elif self.chart_ref.startswith("oci://"):
            self.repository = self.chart_ref.rstrip("/").rsplit("/", 1)[0]
        else:
            self.repository = None
        values = props.get("values")
        self.values: dict[str, Any] = values if isinstance(values, dict) else {}
        self.facts: ChartFacts | None = CHARTS.get(self.chart)

    @property
    def label(self) -> str:
        return f"Helm release '{self.name}' (chart {self.chart or '?'})"


def _release(args: Any) -> Release | None:
    if args.resource_type not in HELM_TYPES:
        return None
    return Release(args.name, plain(args.props))


_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


def _normalize_repo(url: str) -> str:
    return url.strip().rstrip("/").lower()


def helm_chart_pinned(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    release = _release(args)
    if release is None:
        return
    cfg = _config(args, {"allowedRepositories": DEFAULT_ALLOWED_REPOSITORIES})
    allowed = {_normalize_repo(r) for r in cfg["allowedRepositories"] if isinstance(r, str)}
    if not release.version or not _SEMVER.match(release.version):
        got = f"'{release.version}'" if release.version else "no version"
        report_violation(f"{release.label} has {got}. Fix: set `version` to the exact chart version "
                         f"(e.g. '1.2.3'), not a range, so every preview installs the chart that was reviewed.")
    if release.repository is None:
        report_violation(f"{release.label} does not name its repository. Fix: set `repository_opts.repo` to "
                         f"one of the allowed repositories ({', '.join(sorted(allowed))}) instead of a local "
                         f"path or a `helm repo add` alias.")
    elif _normalize_repo(release.repository) not in allowed:
        report_violation(f"{release.label} comes from {release.repository}, which is not an allowed repository. "
                         f"Fix: use one of {', '.join(sorted(allowed))}, or add the repository to the "
                         f"`allowedRepositories` config of policy 'helm-chart-pinned'.")


def _image_problems(value: Any, path: str) -> Iterator[tuple[str, str]]:
    """(path, problem) for each image in values that runs `latest` or has no tag at all."""
    if isinstance(value, Mapping):
        for key, child in value.items():
            where = f"{path}.{key}" if path else str(key)
            is_image_key = key == "image" or str(key).endswith("Image")
            if is_image_key and isinstance(child, Mapping):
                tag, digest = child.get("tag"), child.get("digest") or child.get("sha")
                if isinstance(tag, str) and tag.strip().lower() == "latest" and not digest:
                    yield f"{where}.tag", "is 'latest'"
                # An absent or empty tag means the chart's appVersion, pinned by the chart version.
            elif is_image_key and isinstance(child, str) and child.strip():
                yield from _image_string_problem(child.strip(), where)
            else:
                yield from _image_problems(child, where)
    elif isinstance(value, list):
        for i, child in enumerate(value):
            yield from _image_problems(child, f"{path}[{i}]")


def _image_string_problem(ref: str, where: str) -> Iterator[tuple[str, str]]:
    if "@sha256:" in ref or "{{" in ref:
        return
    last = ref.rsplit("/", 1)[-1]
    if ":" not in last:
        yield where, f"'{ref}' has no tag (Kubernetes pulls 'latest')"
    elif last.rsplit(":", 1)[1].lower() == "latest":
        yield where, f"'{ref}' uses the 'latest' tag"


def image_tags_pinned(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    release = _release(args)
    if release is None:
        return
    problems = list(_image_problems(release.values, "values"))
    for path, tag, when in release.facts.latest_by_default if release.facts else ():
        if all(c.holds(release.values) for c in when) and lookup(release.values, path, tag) == tag:
            problems.append((f"values.{path}", "defaults to 'latest' in this chart"))
    for where, problem in problems:
        report_violation(f"{release.label}: image at {where} {problem}. Fix: pin an explicit version tag "
                         f"(or a @sha256 digest), or drop the override to use the chart's pinned appVersion.")


# --- secrets in plain configuration ---------------------------------------------------------

def _plain_documents(args: Any) -> Iterator[tuple[str, Any]]:
    """(path prefix, document) of everything a resource keeps in plain, readable form."""
    props = plain(args.props)
    if args.resource_type in HELM_TYPES:
        yield "values", props.get("values")
    elif args.resource_type == CONFIG_MAP:
        yield "data", props.get("data")
    elif args.resource_type == GRAFANA_DASHBOARD:
        text = props.get("configJson")
        if isinstance(text, str):
            try:
                yield "configJson", json.loads(text)
            except ValueError:
                yield "configJson", text


def no_plaintext_secrets(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    cfg = _config(args, {"ignore": []})
    ignored = {i for i in cfg["ignore"] if isinstance(i, str)}
    what = _label(args.resource_type, args.name)
    for prefix, doc in _plain_documents(args):
        if doc is None or isinstance(doc, Unknown):
            continue
        for finding in credentials.scan(doc, prefix):
            if f"{args.name}:{finding.path}" in ignored:
                continue
            report_violation(
                f"{what}: {finding}. Fix: keep the value in a Kubernetes Secret created from a Pulumi secret "
                f"(`pulumi config set --secret ...`) and reference it (existingSecret, secretKeyRef, *_file, "
                f"$__file{{}}); a false positive can be listed as '{args.name}:{finding.path}' in the "
                f"`ignore` config of policy 'no-plaintext-secrets'.")


# --- data protection ------------------------------------------------------------------------

def _vm_holds_data(props: Mapping[str, Any]) -> bool:
    disks = props.get("disks") if isinstance(props.get("disks"), list) else []
    tags = props.get("tags") if isinstance(props.get("tags"), list) else []
    # The first disk boots the image; any further disk carries data.
    return len(disks) > 1 or "data" in tags


def _release_holds_data(release: Release) -> bool:
    facts = release.facts
    if facts is not None and (facts.always_persistent or any(c.holds(release.values) for c in facts.persistence)):
        return True
    return any(True for _ in _enabled_persistence(release.values))


def _enabled_persistence(values: Any) -> Iterator[str]:
    if isinstance(values, Mapping):
        for key, child in values.items():
            if key == "persistence" and isinstance(child, Mapping) and child.get("enabled") is True:
                yield str(key)
            elif key in ("volumeClaimTemplate", "volumeClaimTemplates") and child:
                yield str(key)
            else:
                yield from _enabled_persistence(child)
    elif isinstance(values, list):
        for child in values:
            yield from _enabled_persistence(child)


def _protected(args: Any) -> bool:
    opts = getattr(args, "opts", None)
    return bool(getattr(opts, "protect", False))


def data_protected(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    props = plain(args.props)
    what = _label(args.resource_type, args.name)
    fix_protect = "Fix: pass `opts=pulumi.ResourceOptions(protect=True)` so that no `pulumi up` or `destroy` can delete it."
    if args.resource_type in PROXMOX_VMS:
        if not _vm_holds_data(props):
            return
        if not _protected(args):
            report_violation(f"{what} has a data disk but is not protected. {fix_protect}")
        if props.get("protection") is not True:
            report_violation(f"{what} has a data disk but Proxmox protection is off. Fix: set `protection=True` "
                             f"so the VM and its disks cannot be removed from the Proxmox UI or API either.")
    elif args.resource_type in (PVC, PV):
        if not _protected(args):
            report_violation(f"{what} holds data but is not protected. {fix_protect}")
    elif args.resource_type in HELM_TYPES:
        release = Release(args.name, props)
        if _release_holds_data(release) and not _protected(args):
            report_violation(f"{release.label} creates persistent volumes but is not protected: replacing or "
                             f"uninstalling it can delete them. {fix_protect}")


# --- Prometheus alert rules -----------------------------------------------------------------

# "none" is the Watchdog's: an always-firing heartbeat that no route may page with.
DEFAULT_SEVERITIES = ["critical", "warning", "info", "none"]


def _parse_embedded(value: Any) -> Any:
    if isinstance(value, str) and "groups" in value:
        try:
            return yaml.safe_load(value)
        except yaml.YAMLError:
            return None
    return value


def find_rule_groups(doc: Any, path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """Every Prometheus rule group (`{name, rules: [...]}` under a `groups` list) in a document."""
    doc = _parse_embedded(doc)
    if isinstance(doc, Mapping):
        groups = doc.get("groups")
        if isinstance(groups, list) and all(isinstance(g, Mapping) and isinstance(g.get("rules"), list) for g in groups):
            for i, group in enumerate(groups):
                yield f"{path}.groups[{i}]", group
            return
        for key, child in doc.items():
            yield from find_rule_groups(child, f"{path}.{key}" if path else str(key))
    elif isinstance(doc, list):
        for i, child in enumerate(doc):
            yield from find_rule_groups(child, f"{path}[{i}]")


def runbook_path(url: str, runbooks: Path) -> Path | None:
    """The runbook a runbook_url points at, if it exists under `runbooks`.

    Accepted: any URL whose path ends in the runbook's name (https://runbooks.home.arpa/pbs-job-failed),
    or names it below a `runbooks/` directory (https://git.example/ops/repo/blob/main/runbooks/logs/loki-down.md);
    a `#section` anchor is ignored.
    """
    if not url or "{{" in url or "$" in url:
        return None
    path = urlparse(url).path if "://" in url else url
    path = path.strip("/")
    if not path or ".." in path.split("/"):
        return None
    candidates = []
    if "runbooks/" in f"/{path}":
        candidates.append(f"/{path}".rsplit("runbooks/", 1)[1])
    candidates += [path, path.rsplit("/", 1)[-1]]
    root = runbooks.resolve()
    for rel in candidates:
        stem = re.sub(r"\.(md|html)$", "", rel)
        for option in (f"{stem}.md", f"{stem}/README.md"):
            target = (root / option).resolve()
            if target.is_file() and root in target.parents:
                return target
    return None


def _rule_problems(rule: Mapping[str, Any], runbooks: Path, severities: list[str]) -> list[str]:
    problems = []
    labels = rule.get("labels") if isinstance(rule.get("labels"), Mapping) else {}
    annotations = rule.get("annotations") if isinstance(rule.get("annotations"), Mapping) else {}
    severity = labels.get("severity")
    if not severity:
        problems.append(f"has no `severity` label (one of {', '.join(severities)})")
    elif severity not in severities:
        problems.append(f"has severity '{severity}', not one of {', '.join(severities)}")
    for key in ("summary", "description"):
        if not str(annotations.get(key) or "").strip():
            problems.append(f"has no `{key}` annotation")
    url = str(annotations.get("runbook_url") or "").strip()
    if not url:
        problems.append("has no `runbook_url` annotation")
    elif runbook_path(url, runbooks) is None:
        problems.append(f"has runbook_url '{url}' but no runbook {runbooks.name}/<name>.md matches it")
    return problems


def _alert_rules(args: Any) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
    """(where, alert name, rule in Prometheus form) for every alerting rule a resource defines."""
    props = plain(args.props)
    if args.resource_type == GRAFANA_RULE_GROUP:
        for i, rule in enumerate(props.get("rules") or []):
            if isinstance(rule, Mapping) and not rule.get("record"):
                yield f"rules[{i}]", str(rule.get("name") or f"rules[{i}]"), rule
        return
    if args.resource_type == PROMETHEUS_RULE:
        docs = [("spec", props.get("spec"))]
    elif args.resource_type in HELM_TYPES:
        docs = [("values", props.get("values"))]
    elif args.resource_type == CONFIG_MAP:
        docs = [("data", props.get("data"))]
    else:
        return
    for prefix, doc in docs:
        for where, group in find_rule_groups(doc, prefix):
            for j, rule in enumerate(group.get("rules") or []):
                if isinstance(rule, Mapping) and "alert" in rule:
                    yield f"{where}.rules[{j}]", str(rule.get("alert")), rule


def alert_rules_complete(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    cfg = _config(args, {"runbooksDir": "runbooks", "severities": DEFAULT_SEVERITIES})
    runbooks = Path(cfg["runbooksDir"])
    runbooks = runbooks if runbooks.is_absolute() else REPO_ROOT / runbooks
    what = _label(args.resource_type, args.name)
    for where, alert, rule in _alert_rules(args):
        for problem in _rule_problems(rule, runbooks, list(cfg["severities"])):
            report_violation(
                f"{what}: alert '{alert}' ({where}) {problem}. Fix: every alert carries labels.severity, "
                f"annotations summary, description and runbook_url, and the runbook exists as "
                f"{runbooks.name}/<name>.md in this repository.")


# --- alert routing --------------------------------------------------------------------------

def _is_alertmanager_config(doc: Any) -> bool:
    return isinstance(doc, Mapping) and isinstance(doc.get("route"), Mapping) and "receivers" in doc


def find_alertmanager_configs(doc: Any, path: str) -> Iterator[tuple[str, Mapping[str, Any]]]:
    if isinstance(doc, str) and "route" in doc and "receivers" in doc:
        try:
            doc = yaml.safe_load(doc)
        except yaml.YAMLError:
            return
    if _is_alertmanager_config(doc):
        yield path, doc
    elif isinstance(doc, Mapping):
        for key, child in doc.items():
            yield from find_alertmanager_configs(child, f"{path}.{key}" if path else str(key))


def _route_problems(route: Mapping[str, Any], receivers: set[str], where: str, root: bool) -> Iterator[str]:
    receiver = route.get("receiver")
    if root and not receiver:
        yield f"{where} (the root route) names no receiver"
    elif receiver and receiver not in receivers:
        yield f"{where} sends to receiver '{receiver}', which is not defined"
    for i, child in enumerate(route.get("routes") or []):
        if isinstance(child, Mapping):
            yield from _route_problems(child, receivers, f"{where}.routes[{i}]", False)


def _alertmanager_documents(resource: Any) -> Iterator[tuple[str, Any]]:
    props = plain(resource.props)
    if resource.resource_type in HELM_TYPES:
        release = Release(resource.name, props)
        values = release.values
        if release.chart == "kube-prometheus-stack":
            config = lookup(values, "alertmanager.config", None)
            if isinstance(config, Mapping):
                values = deep_merge(values, {"alertmanager": {"config": deep_merge(
                    KUBE_PROMETHEUS_STACK.extra["alertmanager_default_config"], dict(config))}})
        yield "values", values
    elif resource.resource_type == SECRET:
        yield "stringData", props.get("stringData")
        for key, encoded in (props.get("data") or {}).items() if isinstance(props.get("data"), Mapping) else ():
            try:
                yield f"data.{key}", base64.b64decode(str(encoded), validate=True).decode()
            except (binascii.Error, UnicodeDecodeError):
                continue
    elif resource.resource_type == ALERTMANAGER_CONFIG:
        spec = props.get("spec")
        if isinstance(spec, Mapping) and isinstance(spec.get("route"), Mapping):
            yield "spec", {"route": spec["route"], "receivers": spec.get("receivers") or []}


def _grafana_route_problems(resources: list[Any], external: set[str]) -> Iterator[tuple[Any, str]]:
    names: dict[str, set[str]] = {}
    for r in resources:
        if r.resource_type == GRAFANA_CONTACT_POINT:
            props = plain(r.props)
            if isinstance(props.get("name"), str):
                names.setdefault(str(props.get("orgId") or ""), set()).add(props["name"])

    def walk(policy: Mapping[str, Any], where: str, known: set[str], root: bool) -> Iterator[str]:
        point = policy.get("contactPoint")
        if root and not point:
            yield f"{where} (the root policy) names no contact point"
        elif isinstance(point, str) and point not in known:
            yield f"{where} sends to contact point '{point}', which is not defined"
        for i, child in enumerate(policy.get("policies") or []):
            if isinstance(child, Mapping):
                yield from walk(child, f"{where}.policies[{i}]", known, False)

    for r in resources:
        props = plain(r.props)
        known = names.get(str(props.get("orgId") or ""), set()) | external
        if r.resource_type == GRAFANA_NOTIFICATION_POLICY:
            for problem in walk(props, "policy", known, True):
                yield r, problem
        elif r.resource_type == GRAFANA_RULE_GROUP:
            for i, rule in enumerate(props.get("rules") or []):
                settings = rule.get("notificationSettings") if isinstance(rule, Mapping) else None
                point = settings.get("contactPoint") if isinstance(settings, Mapping) else None
                if isinstance(point, str) and point not in known:
                    yield r, f"rules[{i}] ({rule.get('name')}) sends to contact point '{point}', which is not defined"


def alert_routes_resolve(args: StackValidationArgs, report_violation: ReportViolation) -> None:
    cfg = _config(args, {"externalContactPoints": []})
    external = {c for c in cfg["externalContactPoints"] if isinstance(c, str)}
    for resource in args.resources:
        what = _label(resource.resource_type, resource.name)
        for prefix, doc in _alertmanager_documents(resource):
            for where, config in find_alertmanager_configs(doc, prefix):
                receivers = {r.get("name") for r in config.get("receivers") or [] if isinstance(r, Mapping)}
                for problem in _route_problems(config["route"], receivers, f"{where}.route", True):
                    report_violation(f"{what}: Alertmanager {problem}. Fix: define the receiver under "
                                     f"{where}.receivers or route to one that exists "
                                     f"({', '.join(sorted(r for r in receivers if r)) or 'none defined'}).",
                                     resource.urn)
    for resource, problem in _grafana_route_problems(list(args.resources), external):
        report_violation(f"{_label(resource.resource_type, resource.name)}: {problem}. Fix: create the contact "
                         f"point with grafana.alerting.ContactPoint in this stack, or list a contact point managed "
                         f"outside Pulumi in the `externalContactPoints` config of policy 'alert-routes-resolve'.",
                         resource.urn)


# --- Loki retention -------------------------------------------------------------------------

MIN_RETENTION_HOURS = 24


def duration_seconds(text: Any) -> float | None:
    """Seconds of a Prometheus/Loki duration ('744h', '31d', '1w2d', '0s'); None if not one.

    The pack judges rendered values on its own (they need not come from model/), with the model's parser.
    """
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text) if text == 0 else None
    if not isinstance(text, str):
        return None
    try:
        return parse_seconds(text)
    except ValueError:
        return None


def _loki_section(values: Mapping[str, Any], name: str) -> dict[str, Any]:
    # The chart renders loki.<name>, then merges loki.structuredConfig.<name> over it.
    base = lookup(values, f"loki.{name}", {})
    structured = lookup(values, f"loki.structuredConfig.{name}", {})
    return deep_merge(base if isinstance(base, dict) else {}, structured if isinstance(structured, dict) else {})


def _retention_problems(limits: Mapping[str, Any], where: str, required: bool) -> Iterator[str]:
    period = limits.get("retention_period", MISSING)
    if period is MISSING:
        if required:
            yield f"{where}.retention_period is not set (Loki keeps logs until the disk is full)"
    else:
        seconds = duration_seconds(period)
        if seconds is None:
            yield f"{where}.retention_period '{period}' is not a duration"
        elif seconds == 0:
            yield f"{where}.retention_period is 0, which disables deletion"
        elif seconds < MIN_RETENTION_HOURS * 3600:
            yield f"{where}.retention_period '{period}' is shorter than {MIN_RETENTION_HOURS}h"
    for i, stream in enumerate(limits.get("retention_stream") or []):
        seconds = duration_seconds(stream.get("period")) if isinstance(stream, Mapping) else None
        if seconds is None or seconds < MIN_RETENTION_HOURS * 3600:
            yield (f"{where}.retention_stream[{i}] ({stream.get('selector') if isinstance(stream, Mapping) else '?'}) "
                   f"has period {stream.get('period') if isinstance(stream, Mapping) else '?'!r}, under {MIN_RETENTION_HOURS}h")


def loki_retention(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    release = _release(args)
    if release is None or release.chart != "loki":
        return
    values = release.values
    problems = list(_retention_problems(_loki_section(values, "limits_config"), "loki.limits_config", True))
    overrides = lookup(values, "loki.runtimeConfig.overrides", {})
    for tenant, limits in (overrides.items() if isinstance(overrides, Mapping) else ()):
        if isinstance(limits, Mapping):
            problems += _retention_problems(limits, f"loki.runtimeConfig.overrides.{tenant}", False)
    compactor = _loki_section(values, "compactor")
    if compactor.get("retention_enabled") is not True:
        problems.append("loki.compactor.retention_enabled is not true, so no retention period is applied")
    elif not compactor.get("delete_request_store"):
        problems.append("loki.compactor.delete_request_store is not set; Loki refuses to start with retention "
                        "enabled and no delete request store")
    for problem in problems:
        report_violation(f"{release.label}: {problem}. Fix: set loki.limits_config.retention_period to at least "
                         f"{MIN_RETENTION_HOURS}h (e.g. '744h'), per-tenant and per-stream periods likewise, and "
                         f"loki.compactor.retention_enabled: true with delete_request_store (e.g. 'filesystem').")


# --- workload resources ---------------------------------------------------------------------

def _resources_problem(resources: Any) -> str | None:
    if not isinstance(resources, Mapping) or not resources:
        return "has no resources"
    requests = resources.get("requests") if isinstance(resources.get("requests"), Mapping) else {}
    limits = resources.get("limits") if isinstance(resources.get("limits"), Mapping) else {}
    missing = [f"requests.{k}" for k in ("cpu", "memory") if not requests.get(k)]
    missing += [] if limits.get("memory") else ["limits.memory"]
    return f"lacks {', '.join(missing)}" if missing else None


def workload_resources(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    release = _release(args)
    if release is None:
        return
    if release.facts is None:
        report_violation(f"{release.label}: the policy pack does not know where this chart's workloads set "
                         f"their resources. Fix: add the chart to policy/charts.py (derived from its default "
                         f"values.yaml) so its requests and limits are checked.")
        return
    for workload in release.facts.workloads:
        if not workload.deployed(release.values):
            continue
        problem = _resources_problem(lookup(release.values, workload.resources, None))
        if problem:
            report_violation(f"{release.label}: workload values.{workload.resources} {problem}. Fix: set "
                             f"requests.cpu, requests.memory and limits.memory there (a CPU limit is optional).")


# --- VM tags --------------------------------------------------------------------------------

DEFAULT_REQUIRED_TAGS = ["observability", "pulumi"]


def vm_required_tags(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in PROXMOX_VMS:
        return
    cfg = _config(args, {"requiredTags": DEFAULT_REQUIRED_TAGS})
    props = plain(args.props)
    tags = props.get("tags")
    if isinstance(tags, Unknown):
        return
    have = {t for t in tags if isinstance(t, str)} if isinstance(tags, list) else set()
    missing = [t for t in cfg["requiredTags"] if t not in have]
    if missing:
        report_violation(f"{_label(args.resource_type, args.name)} lacks the required tag(s) {', '.join(missing)}. "
                         f"Fix: add them to the VM's `tags` (hosts.<name>.tags in the stack config, or the "
                         f"base tags in model/hosts.py).")

