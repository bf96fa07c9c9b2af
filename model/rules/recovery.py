"""The recovery service's side of the alert rules: the page that comes at once when it gives up,
and the alerts about the service itself (docs/recovery.md, runbooks/Recovery*.md).

The service is scraped as job `recovery` (model/values/metrics.py); the metric names come from
contracts/metrics.py, the one place the service and the rules share.
"""

from __future__ import annotations

from contracts import alerts
from contracts.recovery import RESTORE_DRILL_RUN
from contracts.metrics import (ACTIONS_METRIC, EXHAUSTED_METRIC, GAVE_UP_LABELS, GAVE_UP_METRIC, LIMIT_REACHED_METRIC, PBS_JOB_LAST_SUCCESS,
                               RESTORE_DRILL_INTERVAL, RESTORE_DRILL_LAST_DURATION, RESTORE_DRILL_LAST_RESULT, RESTORE_DRILL_LAST_RUN,
                               RESTORE_DRILL_LAST_SUCCESS, SCRAPE_JOB)
from model.config import RestoreDrills, StackConfig
from model.facts.durations import parse_seconds
from model.rules import AlertRule, RuleGroup, alert

# RecoveryServiceDown tells of this target; TargetDown leaves it out (one alert per outage).
SCRAPE_SELECTOR = f'job="{SCRAPE_JOB}"'
OTHER_TARGETS = f'job!="{SCRAPE_JOB}"'
FAILING_WINDOW = "6h"
FAILING_ACTIONS = 3


def gave_up(job_selector: str) -> str:
    """The jobs the service gave up on (re-run failed or unknown, attempts exhausted, nothing to re-run)
    during their current failure: the failure it gave up on started after the job's last success. A
    give-up from an earlier failure, which a run has fixed since, counts for nothing: the next failure
    waits for the automation again (the service sends no "resolved", so it cannot reset a gauge itself)."""
    selector = job_selector.rstrip("}") + "," if job_selector else "{"
    return (f"{GAVE_UP_METRIC}{selector}{SCRAPE_SELECTOR}}}\n      > on({', '.join(GAVE_UP_LABELS)})\n"
            f"    {PBS_JOB_LAST_SUCCESS}{job_selector}")


def alert_rules() -> list[AlertRule]:
    return [
        alert(alerts.RECOVERY_SERVICE_DOWN, f"up{{{SCRAPE_SELECTOR}}} == 0", "warning", "The recovery service does not answer",
              "Prometheus cannot scrape the recovery service on {{ $labels.instance }}: failed backups are not re-run "
              "and the backup room hears nothing from it. Pages still come, after the retry grace.",
              for_="5m"),
        alert(alerts.RECOVERY_ACTIONS_FAILING,
              f'sum by (action) (increase({ACTIONS_METRIC}{{result=~"failed|unknown"}}[{FAILING_WINDOW}])) >= {FAILING_ACTIONS}',
              "warning", "The recovery service's actions keep failing",
              f"{{{{ $value | printf \"%.0f\" }}}} {{{{ $labels.action }}}} actions failed or ended unknown within {FAILING_WINDOW} "
              "(each was escalated): a token without its privilege, an unreachable API or a broken playbook, not one bad night."),
        # A target at its maximum that the guard had to refuse: a loop stopped (not one daily fallback used up).
        alert(alerts.RECOVERY_REMEDIATION_LOOP,
              f"max by (action) ({EXHAUSTED_METRIC}) > 0\n  and on(action)\n"
              f"sum by (action) (increase({LIMIT_REACHED_METRIC}[1d])) > 0", "warning", "The recovery service stopped re-running a target that keeps failing",
              "{{ $value }} target(s) of {{ $labels.action }} reached the maximum of attempts within the window and failed "
              "again: the service escalates instead of trying once more, and the cause is still there."),
    ]


ON_GUEST = "on(guest, tier)"
LAST_KNOWN = "10m"


def drill_rules(drills: RestoreDrills) -> list[AlertRule]:
    """The restore drills' alerts (docs/restore-drills.md): to the backup room, none pages. Each guest's
    interval comes from the service (its tier's), so one rule holds for every tier."""
    last_success, interval = f"{RESTORE_DRILL_LAST_SUCCESS}{{{SCRAPE_SELECTOR}}}", f"{RESTORE_DRILL_INTERVAL}{{{SCRAPE_SELECTOR}}}"
    guest = "guest {{ $labels.guest }} (tier {{ $labels.tier }})"
    target = parse_seconds(drills.rto_target)
    return [
        # The last result the service reported stands for LAST_KNOWN: a missed scrape is no passed drill
        # (RecoveryServiceDown tells of an outage); a newer drill that passed ends it at once.
        alert(alerts.RESTORE_DRILL_FAILED,
              f"last_over_time({RESTORE_DRILL_LAST_RESULT}{{{SCRAPE_SELECTOR}}}[{LAST_KNOWN}]) == 0\n"
              f"unless {ON_GUEST}\n{RESTORE_DRILL_LAST_RESULT}{{{SCRAPE_SELECTOR}}} == 1", "warning",
              "A guest's restore drill failed",
              f"The newest restore drill of {guest} failed at step {{{{ $labels.step }}}}: its newest backup did not restore and "
              "boot as it should. The recovery service posted the step's task log to the backup room; the audit log on the pbs "
              "host keeps every task's log. This resolves when a drill of the guest passes."),
        alert(alerts.RESTORE_DRILL_STALE,
              f"time() - {last_success} > {ON_GUEST} 2 * {interval}\nor {ON_GUEST}\n"
              f"(time() - {RESTORE_DRILL_LAST_RUN}{{{SCRAPE_SELECTOR}}} > {ON_GUEST} 2 * {interval}\n"
              f"  unless {ON_GUEST} {last_success})",
              "warning", "No restore drill of a guest passed within twice its interval",
              f"No restore drill of {guest} has passed within twice its interval: nothing proves that its backups still "
              "restore. Drills fail, are refused, or do not run (window, kill switch, mode)."),
        alert(alerts.RESTORE_TIME_ABOVE_TARGET, f"{RESTORE_DRILL_LAST_DURATION}{{{SCRAPE_SELECTOR}}} > {target}", "warning",
              "A guest's restore takes longer than the RTO target",
              f"The newest passed drill of {guest} took {{{{ $value | humanizeDuration }}}} from the restore's start until the "
              f"guest was up, over the RTO target of {drills.rto_target}."),
    ]


def rule_groups(cfg: StackConfig) -> list[RuleGroup]:
    if not cfg.recovery:
        return []
    rules = alert_rules()
    if cfg.recovery.restore_drills and cfg.recovery.mode(RESTORE_DRILL_RUN) != "off":
        rules += drill_rules(cfg.recovery.restore_drills)
    return [{"name": "recovery-service", "interval": cfg.metrics.evaluation_interval, "rules": rules}]
