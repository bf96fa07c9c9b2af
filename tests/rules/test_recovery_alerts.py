"""The recovery service's own alerts under promtool (model/recovery_alerts.py): down, failing, looping."""

from __future__ import annotations

from tests.rules.test_alerts import GRAFANA, HUB, _firing, _unit_test


def test_the_recovery_service_s_own_alerts(homelab, tmp_path):
    target = 'instance="pbs.home.arpa",job="recovery",service="backups"'
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        "input_series": [
            # down from 10m to 20m: RecoveryServiceDown after 5m, and no TargetDown beside it
            {"series": f"up{{{target}}}", "values": "1x9 0x10 1x40"},
            # three failed re-runs within 6h: the automation is broken, not one night
            {"series": f'recovery_actions_total{{action="pve-backup-rerun",result="failed",{target}}}', "values": "0x30 1 2 3x28"},
            {"series": f'recovery_actions_total{{action="pbs-job-rerun",result="failed",{target}}}', "values": "0 1 2x58"},
            {"series": f'recovery_exhausted_targets{{action="pve-backup-rerun",{target}}}', "values": "0x38 1x22"},
            {"series": f'recovery_exhausted_targets{{action="pbs-job-rerun",{target}}}', "values": "1x60"},
            # pve-backup-rerun's guard refused another attempt at 41m; pbs-job-rerun's target is only used up
            {"series": f'recovery_attempt_limit_reached_total{{action="pve-backup-rerun",{target}}}', "values": "0x40 1x19"},
            {"series": f'recovery_attempt_limit_reached_total{{action="pbs-job-rerun",{target}}}', "values": "0x60"},
        ],
        "alert_rule_test": [
            {"eval_time": "14m", "alertname": "RecoveryServiceDown", "exp_alerts": []},
            {"eval_time": "15m", "alertname": "RecoveryServiceDown", "exp_alerts": [
                {"exp_labels": {"severity": "warning", "service": "backups", "instance": "pbs.home.arpa", "job": "recovery"},
                 "exp_annotations": {
                     "summary": "The recovery service does not answer",
                     "description": "Prometheus cannot scrape the recovery service on pbs.home.arpa: failed backups are not "
                                    "re-run and the backup room hears nothing from it. Pages still come, after the retry grace.",
                     "runbook_url": f"{HUB}/runbooks/RecoveryServiceDown.md", "dashboard_url": f"{GRAFANA}/d/backups"}}]},
            {"eval_time": "18m", "alertname": "TargetDown", "exp_alerts": []},
            {"eval_time": "25m", "alertname": "RecoveryServiceDown", "exp_alerts": []},
        ],
        "promql_expr_test": [
            _firing("RecoveryActionsFailing", "32m", []),
            _firing("RecoveryActionsFailing", "33m", ['ALERTS{action="pve-backup-rerun",alertname="RecoveryActionsFailing",'
                                                      'alertstate="firing",service="backups",severity="warning"}']),
            _firing("RecoveryRemediationLoop", "40m", []),
            _firing("RecoveryRemediationLoop", "41m", ['ALERTS{action="pve-backup-rerun",alertname="RecoveryRemediationLoop",'
                                                       'alertstate="firing",service="backups",severity="warning"}']),
        ],
    }], files=("recovery", "stack"))
