"""The scenario table agrees with the rendered rules and routing it drills."""

from pathlib import Path

import pytest

from tools.drill import scenarios
from tools.drill.deployed_config import DeployedConfig, TimeScale

FIXTURE = Path(__file__).parent / "fixtures" / "drill"
CONFIG = DeployedConfig.load(FIXTURE)


def test_the_issue_s_scenarios_are_all_there():
    names = [s.name for s in scenarios.SCENARIOS]
    assert len(names) == len(set(names)) == 8
    assert set(scenarios.SHORT_DRILL) <= set(names)
    with pytest.raises(KeyError, match="unknown scenario"):
        scenarios.by_name(["no-such"])


@pytest.mark.parametrize("scenario", scenarios.SCENARIOS, ids=lambda s: s.name)
def test_expectations_name_real_alerts_routed_to_the_expected_receivers(scenario):
    rules = CONFIG.alert_rules()
    tree = CONFIG.routing()
    for expect in scenario.expected:
        rule = rules[expect.alert]
        assert rule.labels["severity"] == expect.severity or expect.receiver == scenarios.RECEIVER_PAGE
        receivers = [d.receiver for d in tree.deliveries({"alertname": rule.name, **rule.labels})]
        assert expect.receiver in receivers
        assert 0 <= expect.at < scenario.duration
    TimeScale.for_config(CONFIG, scenario.factor)  # the factor keeps enough samples per window


@pytest.mark.parametrize("scenario", scenarios.SCENARIOS, ids=lambda s: s.name)
def test_every_critical_alert_expected_in_chat_is_also_a_page(scenario):
    """continue: true on the critical route: a critical alert reaches PagerDuty and its room."""
    pages = {(e.alert, e.status) for e in scenario.expected if e.receiver == scenarios.RECEIVER_PAGE}
    for e in scenario.expected:
        if e.severity == "critical":
            assert (e.alert, e.status) in pages


def test_paging_scenarios_and_non_paging_ones():
    page_counts = {s.name: len(s.pages) for s in scenarios.SCENARIOS}
    assert page_counts["backup-retry-succeeds"] == 0
    assert page_counts["backup-fails-twice"] == 1
    assert page_counts["latency-slow-burn"] == 0
    assert page_counts["disk-crossing-85"] == 0
    assert page_counts["alertmanager-restart"] == 2


def test_the_slow_burn_stays_below_the_page_thresholds():
    assert scenarios.SLOW_BURN < 6 < 14.4
