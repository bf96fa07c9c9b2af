"""Prometheus rule files: the seed's recording rule, the playbooks' alerts and the SLO engine's.

Every alert carries `severity` and `service` labels (the routing table matches on them) and
`summary`, `description`, `runbook_url` and (with Grafana) `dashboard_url` annotations; both
links are added in rule_files, once, from model/facts/links.py, so runbooks/<AlertName>.md must
exist for every alert name. One module per domain produces its groups; this is their one registry.
"""

from __future__ import annotations

from model.rules import Rule, RuleFile
from model.config import StackConfig
from model.facts.links import alert_links
from model.grafana.dashboards import deployed_uids
from model.rules import coverage, long_term, loki_health, loki_limits, network, probes, pve
from model.rules import recovery as recovery_alerts
from model.rules import slo as slo_engine
from model.rules.backups import backup_recording_rule, backup_rules
from model.rules.disks import disk_rules
from model.rules.stack import stack_rules
from model.rules.user import UserRules, load_user_rules


def rule_files(cfg: StackConfig) -> dict[str, RuleFile]:
    """File stem -> Prometheus rule file, each loadable as it is by promtool and Prometheus."""
    files = stack_rule_files(cfg)
    # Your own, from alerts/ (model/preflight.py has checked them before any resource is registered).
    files.update(user_rules(cfg, files).files)
    grafana_url = cfg.grafana.url if cfg.grafana else None
    deployed = deployed_uids(cfg)
    for rule in all_rules(files):
        if "alert" in rule:
            # A rule of alerts/ may link a dashboard of its own; no built-in rule sets either link.
            links = alert_links(rule["alert"], rule["labels"]["service"], cfg.site.runbook_hub_url, grafana_url, deployed)
            rule["annotations"].update({k: v for k, v in links.items() if k not in rule["annotations"]})
    return files


def user_rules(cfg: StackConfig, stack_files: dict[str, RuleFile] | None = None) -> UserRules:
    """alerts/*.yaml, with their problems; a group may not take the name of one of the stack's."""
    files = stack_files if stack_files is not None else stack_rule_files(cfg)
    return load_user_rules(taken_groups=frozenset(group["name"] for doc in files.values() for group in doc["groups"]))


def stack_rule_files(cfg: StackConfig) -> dict[str, RuleFile]:
    """The stack's own rule files, before the links are added."""
    interval = cfg.metrics.evaluation_interval
    files = {
        "backups": {"groups": [
            {"name": "backup-recording", "interval": interval, "rules": [backup_recording_rule()]},
            {"name": "backup-alerts", "interval": interval, "rules": backup_rules(cfg)},
        ]},
        "disks": {"groups": [{"name": "disk-usage", "interval": interval, "rules": disk_rules(cfg)}]},
        "stack": {"groups": [{"name": "stack-health", "interval": interval, "rules": stack_rules(cfg)}]},
    }
    if cfg.slos:
        files["slos"] = {"groups": slo_engine.rule_groups(cfg)}
    # What the playbooks diagnose, one rule module per domain.
    for stem, groups in (("network", network.rule_groups(cfg)), ("probes", probes.rule_groups(cfg)),
                          ("loki", loki_health.rule_groups(cfg)), ("virtualization", pve.rule_groups(cfg)),
                          ("loki-limits", loki_limits.rule_groups(cfg)), ("recovery", recovery_alerts.rule_groups(cfg)),
                          ("long-term", long_term.rule_groups(cfg)), ("coverage", coverage.rule_groups(cfg))):
        if groups:
            files[stem] = {"groups": groups}
    return files


def all_rules(files: dict[str, RuleFile]) -> list[Rule]:
    return [rule for doc in files.values() for group in doc["groups"] for rule in group["rules"]]
