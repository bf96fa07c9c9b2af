from pathlib import Path

import pytest

from tools.drill import scenarios
from tools.drill.deployed_config import DeployedConfig, TimeScale
from tools.drill.scenarios import Expect, ReceiverOutage, Scenario, Window, m
from tools.drill.verdict import RATIO_LIMIT, Captured, Notification, bound_for, decode, judge

CONFIG = DeployedConfig.load(Path(__file__).parent / "fixtures" / "drill")
RULES = CONFIG.alert_rules()
TREE = CONFIG.routing()
SCALE = TimeScale.for_config(CONFIG, 120)

# Bodies shaped as Alertmanager 0.25 sends them with its default templates.
PAGERDUTY_TRIGGER = {
    "routing_key": "drill-dummy", "dedup_key": "3c0f", "event_action": "trigger",
    "payload": {"summary": "[FIRING:1] BackupJobFailed backups (critical vm-100-nightly)", "source": "Alertmanager",
                "severity": "critical",
                "custom_details": {"firing": "Labels:\n - alertname = BackupJobFailed\n - severity = critical\n"}},
}
SLACK_RESOLVED = {"channel": "backups", "attachments": [
    {"title": "[RESOLVED] BackupJobFailedOnce backups", "color": "good", "fallback": "[RESOLVED] BackupJobFailedOnce"}]}
WEBHOOK = {"status": "firing", "alerts": [{"labels": {"alertname": "Watchdog", "severity": "none"}}]}


def test_decode_pagerduty_event():
    n = decode(Captured(1.0, "pagerduty-primary", "pagerduty", PAGERDUTY_TRIGGER, 202), RULES)
    assert (n.status, n.alerts, n.severity) == ("firing", frozenset({"BackupJobFailed"}), "critical")


def test_decode_slack_does_not_confuse_alerts_sharing_a_prefix():
    n = decode(Captured(1.0, "mattermost-backup-room", "slack", SLACK_RESOLVED, 200), RULES)
    assert (n.status, n.alerts, n.severity) == ("resolved", frozenset({"BackupJobFailedOnce"}), "warning")


def test_decode_webhook():
    n = decode(Captured(1.0, "heartbeat", "webhook", WEBHOOK, 200), RULES)
    assert (n.status, n.alerts, n.severity) == ("firing", frozenset({"Watchdog"}), "none")


def _scenario(*expected, **kwargs):
    return Scenario("t", "test", m(60), 120, expected=tuple(expected), **kwargs)


def _page(wall, alert="BackupJobFailed", status="firing", receiver="pagerduty-primary"):
    return Notification(wall, receiver, "pagerduty", status, frozenset({alert}), "critical", "{}")


PAGE = Expect("pagerduty-primary", "BackupJobFailed", "critical", "firing", m(20))


def test_a_page_on_time_passes_with_its_ratio():
    verdict = judge(_scenario(PAGE), [_page(SCALE.wall(m(20)) + 1.0)], RULES, TREE, SCALE)
    assert verdict.passed, verdict.failures
    result = verdict.results[0]
    assert result.bound.wall == pytest.approx(0.25 + 0.25 + 0.5 + 0.25)
    assert result.ratio(SCALE) == pytest.approx(1.0 / 1.25)


def test_missed_page_fails():
    verdict = judge(_scenario(PAGE), [], RULES, TREE, SCALE)
    assert verdict.failures == ["missed: pagerduty-primary BackupJobFailed firing"]


def test_second_page_within_repeat_interval_is_a_duplicate_and_after_it_a_repeat():
    at = SCALE.wall(m(20)) + 1
    duplicate = judge(_scenario(PAGE), [_page(at), _page(at + 5)], RULES, TREE, SCALE)
    assert duplicate.failures[0].startswith("duplicate: pagerduty-primary BackupJobFailed")
    repeat_interval = 4 * 3600 / 120
    repeated = judge(_scenario(PAGE), [_page(at), _page(at + repeat_interval + 1)], RULES, TREE, SCALE)
    assert repeated.passed and len(repeated.repeats) == 1


def test_unexpected_page_fails():
    verdict = judge(_scenario(PAGE), [_page(11.0), _page(12.0, alert="DiskUsageHigh")], RULES, TREE, SCALE)
    assert verdict.failures == ["unexpected: pagerduty-primary DiskUsageHigh firing"]


def test_wrong_receiver_is_a_miss_and_an_unexpected():
    verdict = judge(_scenario(PAGE), [_page(11.0, receiver="mattermost-ops")], RULES, TREE, SCALE)
    assert len(verdict.failures) == 2


def test_late_page_fails_beyond_the_ratio_limit():
    bound = 1.25
    verdict = judge(_scenario(PAGE), [_page(SCALE.wall(m(20)) + bound * (RATIO_LIMIT + 0.5))], RULES, TREE, SCALE)
    assert verdict.failures[0].startswith("late: ")


def test_repeating_expectation_accepts_many():
    watchdog = scenarios.WATCHDOG
    beats = [Notification(t, watchdog.receiver, "webhook", "firing", frozenset({"Watchdog"}), "none", "{}") for t in (1, 1.5, 2)]
    assert judge(_scenario(watchdog), beats, RULES, TREE, SCALE).passed


def test_bound_waits_for_a_receiver_outage_and_for_alertmanager():
    room = Expect("mattermost-backup-room", "BackupJobFailedOnce", "warning", "firing", m(10))
    outage = _scenario(room, receiver_outages=(ReceiverOutage(m(5), m(20), receiver="mattermost-backup-room"),))
    bound = bound_for(room, RULES[room.alert], TREE, SCALE, outage)
    assert bound.wall == pytest.approx(SCALE.wall(m(20) - m(10)) + 300 / 120)
    restart = _scenario(PAGE, alertmanager_down=(Window(m(19), m(30)),))
    assert bound_for(PAGE, RULES[PAGE.alert], TREE, SCALE, restart).wall > SCALE.wall(m(10))
