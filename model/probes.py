"""Synthetic API checks: the blackbox exporter's modules, scrape jobs and alerts, from `probes`.

Each configured target gets its own module (its expected status codes and body match) and its
own scrape job (its interval), scraped as `/probe?target=<url>&module=<module>` on the
exporter. A module asks for IPv4 explicitly: the exporter's default `preferred_ip_protocol` is
ip6, and a gateway name with an AAAA record nobody serves would fail every probe.

`probe_targets` is what the recovery service may run on demand (rendered into its config,
model/recovery.py): only configured targets with their own module, never a URL of the caller's
choosing.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.config import ProbeTarget, StackConfig, duration_seconds

JOB_PREFIX = "probe-"
PROBE_JOBS = f'job=~"{JOB_PREFIX}.+"'
# Label the scrape adds: which configured target a series belongs to.
PROBE_LABEL = "probe"


def module_name(target: ProbeTarget) -> str:
    return f"http_{target.name.replace('-', '_')}"


def job_name(target: ProbeTarget) -> str:
    return f"{JOB_PREFIX}{target.name}"


def blackbox_module(target: ProbeTarget) -> dict:
    http: dict = {
        "method": "GET",
        "valid_status_codes": list(target.expected_status),
        "valid_http_versions": ["HTTP/1.1", "HTTP/2.0"],
        "follow_redirects": True,
        "preferred_ip_protocol": "ip4",
        "ip_protocol_fallback": False,
    }
    if target.body_match:
        http["fail_if_body_not_matches_regexp"] = [target.body_match]
    return {"prober": "http", "timeout": target.timeout, "http": http}


def blackbox_config(cfg: StackConfig) -> dict:
    """The exporter's configuration file: one module per configured target."""
    targets = cfg.probes.targets if cfg.probes else []
    return {"modules": {module_name(t): blackbox_module(t) for t in targets}}


def scrape_timeout(target: ProbeTarget) -> str:
    # The exporter cuts a probe at the scrape timeout less half a second: leave the module its own.
    return f"{duration_seconds(target.timeout) + 1}s"


def scrape_configs(cfg: StackConfig) -> list[tuple[ProbeTarget, dict]]:
    """(target, Prometheus scrape config) per probe target, scraped through the exporter."""
    if not cfg.probes:
        return []
    exporter = cfg.endpoints().blackbox_exporter_address
    return [(target, {
        "job_name": job_name(target),
        "scrape_interval": target.interval,
        "scrape_timeout": scrape_timeout(target),
        "metrics_path": "/probe",
        "params": {"module": [module_name(target)]},
        "static_configs": [{"targets": [target.url],
                            "labels": {"service": target.service, PROBE_LABEL: target.name}}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": exporter},
        ],
    }) for target in cfg.probes.targets]


@dataclass(frozen=True)
class OnDemandProbe:
    """A configured probe as the recovery service may run it."""

    name: str
    service: str
    url: str
    module: str


def probe_targets(cfg: StackConfig) -> list[OnDemandProbe]:
    """Every probe the recovery service may run: the configured targets, nothing else."""
    targets = cfg.probes.targets if cfg.probes else []
    return [OnDemandProbe(t.name, t.service, t.url, module_name(t)) for t in targets]
