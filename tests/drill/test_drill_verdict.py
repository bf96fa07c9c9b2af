import dataclasses
from pathlib import Path

import pytest

from tools.drill import scenarios
from tools.drill.deployed_config import DeployedConfig, TimeScale
from tools.drill.scenarios import Expect, ReceiverOutage, Scenario, Window, m
from tools.drill.verdict import RATIO_LIMIT, Captured, Notification, bound_for, decode, judge

CONFIG = DeployedConfig.load(Path(__file__).parent.parent / "fixtures" / "drill")
RULES = CONFIG.alert_rules()
TREE = CONFIG.routing()
SCALE = TimeScale.for_config(CONFIG, 120)

# Bodies shaped as Alertmanager 0.34 sends them with its default templates (PagerDuty's details
# list the group's alerts as objects, as captured from the drill's Alertmanager).
PAGERDUTY_TRIGGER = {
    "routing_key": "drill-dummy", "dedup_key": "3c0f", "event_action": "trigger",
    "payload": {"summary": "[FIRING:1] BackupJobFailed backups (critical vm-100-nightly)", "source": "Alertmanager",
                "severity": "critical",
                "custom_details": {"firing": [{"labels": {"alertname": "BackupJobFailed", "severity": "critical"},
                                               "annotations": {}, "fingerprint": "32090f98c6425b79"}],
                                   "num_firing": 1, "num_resolved": 0, "resolved": []}},
}
SLACK_RESOLVED = {"channel": "backups", "attachments": [
    {"title": "[RESOLVED] BackupJobFailedTwice backups", "color": "good", "fallback": "[RESOLVED] BackupJobFailedTwice"}]}
WEBHOOK = {"status": "firing", "alerts": [{"labels": {"alertname": "Watchdog", "severity": "none"}}]}


def test_decode_pagerduty_event():
    n = decode(Captured(1.0, "pagerduty-primary", "pagerduty", PAGERDUTY_TRIGGER, 202), RULES)
    assert (n.status, n.alerts, n.severity) == ("firing", frozenset({"BackupJobFailed"}), "critical")


def test_decode_slack_does_not_confuse_alerts_sharing_a_prefix():
    # No two alerts of the stack share a prefix today; one named after BackupJobFailed may come.
    twice = dataclasses.replace(RULES["BackupJobFlapping"], name="BackupJobFailedTwice")
    n = decode(Captured(1.0, "mattermost-backup-room", "slack", SLACK_RESOLVED, 200), {**RULES, twice.name: twice})
    assert (n.status, n.alerts, n.severity) == ("resolved", frozenset({"BackupJobFailedTwice"}), "warning")


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
    assert verdict.failures == ["missed: pagerduty-primary BackupJobFailed firing",
                                "incidents: 0 PagerDuty incident(s) opened, 1 expected"]


def test_second_page_within_repeat_interval_is_a_duplicate_and_after_it_a_repeat():
    at = SCALE.wall(m(20)) + 1
    duplicate = judge(_scenario(PAGE), [_page(at), _page(at + 5)], RULES, TREE, SCALE)
    assert duplicate.failures == ["duplicate: pagerduty-primary re-sent BackupJobFailed firing without a change "
                                  "within its repeat_interval"]
    repeat_interval = 4 * 3600 / 120
    repeated = judge(_scenario(PAGE), [_page(at), _page(at + repeat_interval + 1)], RULES, TREE, SCALE)
    assert repeated.passed and len(repeated.repeats) == 1


def test_unexpected_page_fails():
    verdict = judge(_scenario(PAGE), [_page(11.0), _page(12.0, alert="NodeDiskUsageHigh")], RULES, TREE, SCALE)
    assert verdict.failures == ["unexpected: pagerduty-primary NodeDiskUsageHigh firing"]


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
    room = Expect("mattermost-backup-room", "BackupJobFlapping", "warning", "firing", m(10))
    outage = _scenario(room, receiver_outages=(ReceiverOutage(m(5), m(20), receiver="mattermost-backup-room"),))
    bound = bound_for(room, RULES[room.alert], TREE, SCALE, outage)
    assert bound.wall == pytest.approx(SCALE.wall(m(20) - m(10)) + 300 / 120)
    restart = _scenario(PAGE, alertmanager_down=(Window(m(19), m(30)),))
    assert bound_for(PAGE, RULES[PAGE.alert], TREE, SCALE, restart).wall > SCALE.wall(m(10))


def _trigger(wall, action, firing=(), resolved=(), key="group-backups"):
    """A PagerDuty event as Alertmanager 0.34 sends it: every alert of the group in the default details."""
    def instances(jobs):
        return [{"labels": {"alertname": "BackupJobFailed", "job_id": j, "service": "backups", "severity": "critical"},
                 "annotations": {"summary": "A PBS backup job failed"}, "generatorURL": "x"} for j in jobs]
    body = {"dedup_key": key, "event_action": action,
            "payload": {"summary": "backups", "severity": "critical",
                        "custom_details": {"firing": instances(firing), "resolved": instances(resolved),
                                           "num_firing": len(firing), "num_resolved": len(resolved)}}}
    return decode(Captured(wall, "pagerduty-primary", "pagerduty", body, 202), RULES, ("vm-nightly", "ct-nightly"))


def _job_page(job, status, at, joins=False):
    return Expect("pagerduty-primary", "BackupJobFailed", "critical", status, at, job=job, joins=joins)


def test_decode_pagerduty_lists_each_alert_of_the_group_with_its_job_and_status():
    n = _trigger(1.0, "trigger", firing=("vm-nightly",), resolved=("ct-nightly",))
    assert n.dedup_key == "group-backups"
    assert [(e.alert, e.job, e.status) for e in n.entries] == [
        ("BackupJobFailed", "vm-nightly", "firing"), ("BackupJobFailed", "ct-nightly", "resolved")]


def test_decode_chat_reads_one_block_per_alert():
    text = ("*critical* firing: A PBS backup job failed\nThe last run of backup job ct-nightly failed.\n"
            "Runbook: https://hub/runbooks/BackupJobFailed.md\n"
            "*warning* resolved: A PBS backup job failed\nThe last run of backup job vm-nightly failed.\n"
            "Runbook: https://hub/runbooks/BackupJobFailed.md\n")
    body = {"attachments": [{"title": "[FIRING:1] BackupJobFailed (backups)", "text": text}]}
    n = decode(Captured(1.0, "mattermost-backup-room", "slack", body, 200), RULES, ("vm-nightly", "ct-nightly"))
    assert [(e.alert, e.severity, e.status, e.job) for e in n.entries] == [
        ("BackupJobFailed", "critical", "firing", "ct-nightly"), ("BackupJobFailed", "warning", "resolved", "vm-nightly")]


def test_a_second_job_joining_the_open_incident_is_one_incident_and_no_duplicate():
    expected = (_job_page("vm-nightly", "firing", m(10)), _job_page("ct-nightly", "firing", m(45), joins=True),
                _job_page("ct-nightly", "resolved", m(53)), _job_page("vm-nightly", "resolved", m(62)))
    at = SCALE.wall
    events = [_trigger(at(m(10)) + 0.5, "trigger", firing=("vm-nightly",)),
              _trigger(at(m(45)) + 1.0, "trigger", firing=("vm-nightly", "ct-nightly")),
              _trigger(at(m(53)) + 1.0, "trigger", firing=("vm-nightly",), resolved=("ct-nightly",)),
              _trigger(at(m(62)) + 1.0, "resolve", resolved=("vm-nightly", "ct-nightly"))]
    verdict = judge(_scenario(*expected), events, RULES, TREE, SCALE)
    assert verdict.passed, verdict.failures
    assert (verdict.incidents_expected, verdict.incidents_opened) == (1, 1)
    assert [len(r.arrivals) for r in verdict.results] == [1, 1, 1, 1]


def test_an_incident_resolved_and_opened_again_is_two_incidents_and_a_duplicate_page():
    expected = (_job_page("vm-nightly", "firing", m(10)), _job_page("vm-nightly", "resolved", m(40)))
    at = SCALE.wall
    events = [_trigger(at(m(10)) + 0.5, "trigger", firing=("vm-nightly",)),
              _trigger(at(m(40)) + 0.5, "resolve", resolved=("vm-nightly",)),
              _trigger(at(m(42)) + 0.5, "trigger", firing=("vm-nightly",))]
    verdict = judge(_scenario(*expected), events, RULES, TREE, SCALE)
    assert verdict.incidents_opened == 2
    assert verdict.failures == ["duplicate: pagerduty-primary BackupJobFailed firing (heard 2 times)",
                                "incidents: 2 PagerDuty incident(s) opened, 1 expected"]


def test_two_alerts_of_one_name_in_a_chat_group_are_two_changes_not_a_duplicate():
    def message(wall, *instances):
        text = "".join(f"*warning* firing: A scrape target is down\nPrometheus cannot scrape {i}.\n"
                       "Runbook: https://hub/runbooks/NodeDiskUsageHigh.md\n" for i in instances)
        body = {"attachments": [{"title": f"[FIRING:{len(instances)}] NodeDiskUsageHigh (nodes)", "text": text}]}
        return decode(Captured(wall, "mattermost-ops", "slack", body, 200), RULES)

    expected = [Expect("mattermost-ops", "NodeDiskUsageHigh", "warning", "firing", m(10)),
                Expect("mattermost-ops", "NodeDiskUsageHigh", "warning", "firing", m(20), joins=True)]
    verdict = judge(_scenario(*expected), [message(SCALE.wall(m(10)) + 1, "nas"),
                                           message(SCALE.wall(m(20)) + 1, "nas", "switch")], RULES, TREE, SCALE)
    assert verdict.passed, verdict.failures
    assert len({h.entry.identity for r in verdict.results for h in r.arrivals}) == 2
