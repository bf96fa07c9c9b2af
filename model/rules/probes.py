"""The synthetic probes' alerts: a failing check, a certificate about to expire (model/probes.py scrapes them)."""

from __future__ import annotations

from contracts import alerts
from model.config import Probes, StackConfig
from model.probes import PROBE_JOBS
from model.rules import AlertRule, RuleGroup, alert


def alert_rules(p: Probes) -> list[AlertRule]:
    expiry = f"(probe_ssl_earliest_cert_expiry{{{PROBE_JOBS}}} - time()) / 86400"
    rules = [
        alert(alerts.SYNTHETIC_PROBE_FAILING, f"probe_success{{{PROBE_JOBS}}} == 0", "critical", "A synthetic API check fails: customers are likely affected",
              "Probe {{ $labels.probe }} of {{ $labels.instance }} has failed for " + p.failing_for
              + " (wrong status, body, TLS or no answer): customers of {{ $labels.service }} see the same.",
              for_=p.failing_for, service="{{ $labels.service }}"),
    ]
    for severity, days in (("warning", p.certificate_warning_days), ("critical", p.certificate_critical_days)):
        rules.append(alert(
            alerts.PROBE_CERTIFICATE_EXPIRING, f"{expiry} < {days}", severity, "A probed endpoint's TLS certificate is about to expire",
            "The earliest certificate in the chain of {{ $labels.instance }} (probe {{ $labels.probe }}) expires in "
            f"{{{{ $value | printf \"%.1f\" }}}} days (threshold {days} days).",
            for_="15m", service="{{ $labels.service }}"))
    return rules


def rule_groups(cfg: StackConfig) -> list[RuleGroup]:
    if not cfg.probes:
        return []
    return [{"name": "synthetic-probes", "interval": cfg.metrics.evaluation_interval, "rules": alert_rules(cfg.probes)}]
