"""The stack's rendered alerting configuration, and the drill's copy of it.

Input is the offline preview's output (build/<stack>/): prometheus/rules/*.yaml,
prometheus/scrape-configs.yaml and alertmanager/alertmanager.yml. The drill changes only:
  - every duration (rule windows, `for`, intervals, Alertmanager timers), divided by the
    time-scale factor (see durations.py);
  - scrape targets, re-pointed at local synthetic exporters (the original target is kept as
    the `instance` label, so alert labels read as in production); TLS and scrape auth are
    dropped because the exporters speak plain HTTP on 127.0.0.1;
  - notification endpoints (PagerDuty `url`, Slack `api_url`/`api_url_file`, webhook
    `url`/`url_file`), re-pointed at the local capture server, and every `*_file` secret,
    replaced by a dummy file.
Anything that would send a notification elsewhere (an integration the capture server does not
speak) is refused, so a drill never pages a real person or leaves the machine.
"""

from __future__ import annotations

import copy
import dataclasses
import glob
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlparse

import yaml

from tools.drill import durations
from tools.drill.routes import Route, routing_tree

# Intervals below these are not worth running: Prometheus and Alertmanager on 2 cores.
MIN_INTERVAL = 0.1
# Prometheus marks an alert it sends as ending 4 x max(resend delay, evaluation interval) ahead;
# a floor of 1s keeps that margin well above scheduling noise so no spurious "resolved" appears.
MIN_RESEND_DELAY = 1.0
# A rate() window needs several samples: the shortest scaled window must hold this many scrapes.
MIN_SAMPLES_PER_WINDOW = 4

SUPPORTED_INTEGRATIONS = {"pagerduty_configs", "slack_configs", "webhook_configs"}
_ENDPOINT_KEYS = {"url", "api_url"}
_PROMETHEUS_DEFAULTS = {"scrape_interval": 60.0, "scrape_timeout": 10.0, "evaluation_interval": 60.0}
_KUBE_PROMETHEUS_STACK_DEFAULT = 30.0  # prometheusSpec.scrapeInterval / evaluationInterval when unset


class DrillConfigError(Exception):
    pass


@dataclass(frozen=True)
class AlertRule:
    name: str
    expr: str
    for_seconds: float
    labels: dict[str, str]
    group: str
    file: str


@dataclass
class DeployedConfig:
    root: Path
    rule_files: dict[str, dict[str, Any]]  # file name -> parsed rule file
    scrape_configs: list[dict[str, Any]]
    alertmanager: dict[str, Any]
    scrape_interval: float
    evaluation_interval: float
    scrape_timeout: float

    @classmethod
    def load(cls, root: Path) -> "DeployedConfig":
        rules_dir = root / "prometheus" / "rules"
        scrape_file = root / "prometheus" / "scrape-configs.yaml"
        am_file = root / "alertmanager" / "alertmanager.yml"
        missing = [str(p) for p in (rules_dir, scrape_file, am_file) if not p.exists()]
        if missing:
            raise DrillConfigError("rendered configuration not found (run `make preview` first?): "
                                   + ", ".join(missing))
        rule_files = {p.name: yaml.safe_load(p.read_text()) or {}
                      for p in sorted(rules_dir.glob("*.y*ml"))}
        if not rule_files:
            raise DrillConfigError(f"no rule files in {rules_dir}")
        scrape_doc = yaml.safe_load(scrape_file.read_text()) or []
        global_doc: dict[str, Any] = {}
        if isinstance(scrape_doc, dict):  # a whole prometheus.yml rather than a bare list
            global_doc = scrape_doc.get("global") or {}
            scrape_doc = scrape_doc.get("scrape_configs") or []
        intervals = dict(_PROMETHEUS_DEFAULTS)
        intervals.update(_kube_prometheus_stack_intervals(root))
        intervals.update({k: durations.parse(v) for k, v in global_doc.items() if k in intervals})
        return cls(root, rule_files, list(scrape_doc), yaml.safe_load(am_file.read_text()) or {},
                   intervals["scrape_interval"], intervals["evaluation_interval"], intervals["scrape_timeout"])

    # --- reading ---

    def alert_rules(self) -> dict[str, AlertRule]:
        """The first rule of each alert name (see alert_rule_variants for names with several severities)."""
        return {name: variants[0] for name, variants in self.alert_rule_variants().items()}

    def alert_rule_variants(self) -> dict[str, list[AlertRule]]:
        """Every rule of each alert name, in file order: one name often has a warning and a critical rule."""
        rules: dict[str, list[AlertRule]] = {}
        for file, doc in self.rule_files.items():
            for group in doc.get("groups") or []:
                for rule in group.get("rules") or []:
                    if "alert" in rule:
                        rules.setdefault(rule["alert"], []).append(AlertRule(
                            rule["alert"], rule["expr"], durations.parse(rule.get("for", "0s")),
                            {k: str(v) for k, v in (rule.get("labels") or {}).items()}, group["name"], file))
        return rules

    def with_scrape_jobs(self, jobs: Mapping[str, str]) -> "DeployedConfig":
        """A copy with extra static jobs {job name: target} that production scrapes some other way
        (a ServiceMonitor of the Prometheus Operator, not in scrape-configs.yaml)."""
        known = {job["job_name"] for job in self.scrape_configs}
        extra = [{"job_name": name, "static_configs": [{"targets": [target]}]}
                 for name, target in jobs.items() if name not in known]
        return dataclasses.replace(self, scrape_configs=[*self.scrape_configs, *extra])

    def all_expressions(self) -> list[tuple[str, str]]:
        """(rule name, expr) of every recording and alerting rule."""
        return [(rule.get("alert") or rule.get("record"), rule["expr"])
                for doc in self.rule_files.values() for group in doc.get("groups") or []
                for rule in group.get("rules") or []]

    def longest_window(self) -> float:
        """The longest range any alert reads, directly or through the recording rules it uses.

        A recording rule no alert reads (the 30d error-budget ratio for dashboards) does not count:
        backfilling 30 days would cost more start-up time than every scenario's run."""
        exprs = dict(self.all_expressions())
        alerts = [expr for doc in self.rule_files.values() for group in doc.get("groups") or []
                  for rule in group.get("rules") or [] if "alert" in rule for expr in [rule["expr"]]]
        read = list(alerts)
        for name, expr in exprs.items():
            if name and ":" in name and any(re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", a) for a in alerts):
                read.append(expr)
        return max((durations.largest_range(expr) or 0.0 for expr in read), default=0.0)

    def shortest_window(self) -> float | None:
        found = [w for _, expr in self.all_expressions() if (w := durations.smallest_range(expr))]
        return min(found) if found else None

    def routing(self) -> Route:
        return routing_tree(self.alertmanager)

    def targets(self) -> list[tuple[str, str]]:
        """(job, original target) of every static target; SD-based jobs get one target named after the job."""
        found = []
        for job in self.scrape_configs:
            static = [t for sc in job.get("static_configs") or [] for t in sc.get("targets") or []]
            found += [(job["job_name"], t) for t in static] or [(job["job_name"], job["job_name"])]
        return found


def _kube_prometheus_stack_intervals(root: Path) -> dict[str, float]:
    """The global intervals the Prometheus Operator will use, from the chart values if rendered."""
    found = {"scrape_interval": _KUBE_PROMETHEUS_STACK_DEFAULT, "evaluation_interval": _KUBE_PROMETHEUS_STACK_DEFAULT}
    values_file = root / "helm" / "kube-prometheus-stack.values.yaml"
    if values_file.exists():
        spec = ((yaml.safe_load(values_file.read_text()) or {}).get("prometheus") or {}).get("prometheusSpec") or {}
        for key, field_name in (("scrape_interval", "scrapeInterval"), ("evaluation_interval", "evaluationInterval")):
            if spec.get(field_name):
                found[key] = durations.parse(spec[field_name])
    return found


# --- time scale ---------------------------------------------------------------------------

@dataclass(frozen=True)
class TimeScale:
    """How one scenario's run compresses time; every `*_s` is wall seconds in the drill."""

    factor: float
    scrape_interval_s: float
    evaluation_interval_s: float
    scrape_timeout_s: float
    resend_delay_s: float
    lookback_delta_s: float

    @classmethod
    def for_config(cls, config: DeployedConfig, factor: float) -> "TimeScale":
        if factor < 1:
            raise DrillConfigError(f"time-scale factor must be >= 1 (got {factor})")
        scrape = max(config.scrape_interval / factor, MIN_INTERVAL)
        evaluation = max(config.evaluation_interval / factor, MIN_INTERVAL)
        shortest = config.shortest_window()
        if shortest is not None and shortest / factor < MIN_SAMPLES_PER_WINDOW * scrape:
            raise DrillConfigError(
                f"time-scale factor {factor:g} is too large: the shortest rule window "
                f"{durations.human(shortest)} becomes {durations.human(shortest / factor)}, fewer than "
                f"{MIN_SAMPLES_PER_WINDOW} scrapes at {durations.human(scrape)}")
        return cls(factor, scrape, evaluation, min(max(config.scrape_timeout / factor, MIN_INTERVAL), scrape),
                   max(60.0 / factor, MIN_RESEND_DELAY), max(300.0 / factor, MIN_INTERVAL))

    def wall(self, real_seconds: float) -> float:
        return real_seconds / self.factor

    def real(self, wall_seconds: float) -> float:
        return wall_seconds * self.factor

    def interval(self, text: str | float) -> str:
        return durations.scale(text, self.factor, MIN_INTERVAL)


# --- rule files ---------------------------------------------------------------------------

def scaled_rule_files(config: DeployedConfig, scale: TimeScale) -> tuple[dict[str, str], list[str]]:
    """(file name -> scaled YAML, notes on rules that do not compress faithfully)."""
    out: dict[str, str] = {}
    notes: list[str] = []
    for file, doc in config.rule_files.items():
        doc = copy.deepcopy(doc)
        for group in doc.get("groups") or []:
            if "interval" in group:
                group["interval"] = scale.interval(group["interval"])
            for rule in group.get("rules") or []:
                name = rule.get("alert") or rule.get("record")
                for why in durations.unscalable_constructs(rule["expr"]):
                    notes.append(f"{file}: {name}: {why}")
                rule["expr"] = durations.scale_promql(rule["expr"], scale.factor)
                for key in ("for", "keep_firing_for"):
                    if key in rule:
                        rule[key] = durations.scale(rule[key], scale.factor)
        out[file] = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    return out, list(dict.fromkeys(notes))


# --- prometheus.yml -----------------------------------------------------------------------

_SCRAPE_TRANSPORT_KEYS = ("tls_config", "authorization", "basic_auth", "oauth2", "bearer_token",
                          "bearer_token_file", "proxy_url", "follow_redirects", "enable_http2")


def drill_prometheus_config(config: DeployedConfig, scale: TimeScale, exporter_address: Mapping[tuple[str, str], str],
                            rule_paths: list[Path], alertmanager_address: str | list[str]) -> tuple[dict[str, Any], list[str]]:
    """prometheus.yml for the drill and notes on what was changed beyond targets and durations.
    `alertmanager_address`: one Alertmanager, or every peer of a cluster (Prometheus sends to all)."""
    notes: list[str] = []
    jobs = []
    for job in copy.deepcopy(config.scrape_configs):
        name = job["job_name"]
        for key in ("scrape_interval", "scrape_timeout"):
            if key in job:
                job[key] = scale.interval(job[key])
        if "scrape_interval" in job and durations.parse(job.get("scrape_timeout", "0s")) == 0:
            job["scrape_timeout"] = job["scrape_interval"]
        dropped = [k for k in _SCRAPE_TRANSPORT_KEYS if k in job]
        for key in dropped:
            del job[key]
        if job.get("scheme", "http") != "http":
            dropped.append(f"scheme {job['scheme']}")
            job["scheme"] = "http"
        if dropped:
            notes.append(f"scrape job {name}: dropped {', '.join(dropped)} (synthetic exporters are plain HTTP)")
        # A relabel rule that sends the scrape elsewhere (the SNMP exporter's service address)
        # would bypass the synthetic exporter; the rest (instance, __param_target) stays.
        relabels = job.get("relabel_configs") or []
        kept = [r for r in relabels if r.get("target_label") != "__address__"]
        if len(kept) != len(relabels):
            notes.append(f"scrape job {name}: relabel to __address__ dropped (scraped from its synthetic exporter)")
            job["relabel_configs"] = kept
        sd_keys = [k for k in job if k.endswith("_sd_configs")]
        originals = [{"targets": [name]}] if sd_keys else job.get("static_configs") or []
        if sd_keys:
            for key in sd_keys:
                del job[key]
            if job.pop("relabel_configs", None):
                notes.append(f"scrape job {name}: relabel_configs dropped with {', '.join(sd_keys)}")
            notes.append(f"scrape job {name}: {', '.join(sd_keys)} replaced by one synthetic target")
        # One exporter per original target; the original address stays visible as `instance`.
        job["static_configs"] = [
            {"targets": [exporter_address[(name, target)]],
             "labels": {**(static.get("labels") or {}), "instance": (static.get("labels") or {}).get("instance", target)}}
            for static in originals for target in static.get("targets") or []
        ]
        jobs.append(job)
    doc = {
        "global": {
            "scrape_interval": durations.format_seconds(scale.scrape_interval_s),
            "scrape_timeout": durations.format_seconds(scale.scrape_timeout_s),
            "evaluation_interval": durations.format_seconds(scale.evaluation_interval_s),
        },
        "rule_files": [str(p) for p in rule_paths],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [alertmanager_address] if isinstance(
            alertmanager_address, str) else list(alertmanager_address)}]}]},
        "scrape_configs": jobs,
    }
    return doc, notes


# --- alertmanager.yml ---------------------------------------------------------------------

@dataclass(frozen=True)
class Endpoint:
    """One notification integration of one receiver, as the capture server sees it."""

    receiver: str
    integration: str  # pagerduty | slack | webhook
    index: int

    @property
    def path(self) -> str:
        return f"/{self.receiver}/{self.integration}/{self.index}"


@dataclass
class DrillAlertmanagerConfig:
    doc: dict[str, Any]
    endpoints: list[Endpoint]
    secret_files: dict[Path, str] = field(default_factory=dict)  # dummy secret file -> content


def _scale_route(route: dict[str, Any], scale: TimeScale) -> None:
    for key in ("group_wait", "group_interval", "repeat_interval"):
        if key in route:
            route[key] = durations.scale(route[key], scale.factor, 0.0 if key == "group_wait" else MIN_INTERVAL)
    for child in route.get("routes") or []:
        _scale_route(child, scale)


def _dummy_secret_files(node: Any, secrets_dir: Path, stem: str, files: dict[Path, str]) -> None:
    """Re-point every `*_file` credential under `node` at a dummy file."""
    if isinstance(node, dict):
        for key, value in list(node.items()):
            if key.endswith("_file") and isinstance(value, str) and key not in ("api_url_file", "url_file"):
                path = secrets_dir / f"{stem}-{key.removesuffix('_file').replace('_', '-')}"
                files[path] = f"drill-dummy-{path.name}"
                node[key] = str(path)
            else:
                _dummy_secret_files(value, secrets_dir, stem, files)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _dummy_secret_files(item, secrets_dir, f"{stem}-{i}", files)


def drill_alertmanager_config(config: DeployedConfig, scale: TimeScale, capture_url: str,
                              secrets_dir: Path) -> DrillAlertmanagerConfig:
    """alertmanager.yml for the drill: same routes and receivers, local endpoints, scaled timers."""
    doc = copy.deepcopy(config.alertmanager)
    files: dict[Path, str] = {}
    endpoints: list[Endpoint] = []
    glob_doc = doc.setdefault("global", {})
    if "resolve_timeout" in glob_doc:
        glob_doc["resolve_timeout"] = durations.scale(glob_doc["resolve_timeout"], scale.factor, MIN_INTERVAL)
    for key in ("pagerduty_url", "slack_api_url", "slack_api_url_file", "http_config"):
        glob_doc.pop(key, None)  # every integration below gets its own local endpoint
    _scale_route(doc["route"], scale)
    for receiver in doc.get("receivers") or []:
        name = receiver["name"]
        for key in [k for k in receiver if k.endswith("_configs")]:
            if key not in SUPPORTED_INTEGRATIONS:
                raise DrillConfigError(f"receiver {name}: {key} cannot be captured by the drill "
                                       f"(supported: {', '.join(sorted(SUPPORTED_INTEGRATIONS))})")
            integration = key.removesuffix("_configs")
            for index, integration_doc in enumerate(receiver[key]):
                endpoint = Endpoint(name, integration, index)
                endpoints.append(endpoint)
                url = capture_url + endpoint.path
                http_config = integration_doc.get("http_config") or {}
                for transport_key in ("proxy_url", "tls_config"):
                    http_config.pop(transport_key, None)
                if integration == "pagerduty":
                    integration_doc["url"] = url
                elif integration == "slack":
                    integration_doc.pop("api_url", None)
                    integration_doc["api_url_file"] = str(secrets_dir / f"{name}-{index}-slack-url")
                    files[Path(integration_doc["api_url_file"])] = url
                elif integration == "webhook":
                    integration_doc.pop("url_file", None)
                    integration_doc["url"] = url
                _dummy_secret_files(integration_doc, secrets_dir, f"{name}-{index}-{integration}", files)
    doc["templates"] = _local_templates(config, doc.get("templates") or [])
    _refuse_foreign_endpoints(doc, capture_url)
    return DrillAlertmanagerConfig(doc, endpoints, files)


def _local_templates(config: DeployedConfig, templates: list[str]) -> list[str]:
    """Notification templates as rendered beside alertmanager.yml (same base name)."""
    local = []
    am_dir = config.root / "alertmanager"
    for pattern in templates:
        candidates = [am_dir / pattern] if not Path(pattern).is_absolute() else []
        candidates += [am_dir / Path(pattern).name, am_dir / "templates" / Path(pattern).name]
        matched = next((c for c in candidates if glob.glob(str(c))), None)
        if matched is None:
            raise DrillConfigError(f"notification template {pattern} is not rendered under {am_dir}")
        local.append(str(matched))
    return local


def _refuse_foreign_endpoints(doc: dict[str, Any], capture_url: str) -> None:
    """Last guard: no integration may still point anywhere but the capture server."""
    for receiver in doc.get("receivers") or []:
        for key in [k for k in receiver if k.endswith("_configs")]:
            for integration_doc in receiver[key]:
                for endpoint_key in _ENDPOINT_KEYS:
                    value = integration_doc.get(endpoint_key)
                    if value is not None and not str(value).startswith(capture_url):
                        raise DrillConfigError(f"receiver {receiver['name']}: {key} {endpoint_key} still points at "
                                               f"{urlparse(str(value)).hostname}; refusing to run")


def write_yaml(path: Path, doc: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path

