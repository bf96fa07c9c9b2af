"""The scenario table agrees with the real rendered rules and routing it drills (Pulumi.homelab.yaml)."""

import re

import pytest

from tools.drill import scenarios
from tools.drill.deployed_config import DeployedConfig, TimeScale


@pytest.fixture(scope="module")
def config(homelab):
    return DeployedConfig.load(homelab.out).with_scrape_jobs(scenarios.SERVICE_MONITOR_JOBS)


def test_the_issue_s_scenarios_are_all_there():
    names = [s.name for s in scenarios.SCENARIOS]
    assert len(names) == len(set(names)) == 22
    assert {"backup-flapping", "two-jobs-fail", "no-jobs-scheduled"} <= set(names)
    # the recovery service in the loop (issue 13)
    assert {"backup-retried-by-automation", "backup-automation-exhausted", "recovery-service-down",
            "webhook-redelivered", "backup-nothing-to-rerun"} <= {s.name for s in scenarios.SCENARIOS if s.recovery}
    # and its restore drills (issue 27)
    assert {s.name for s in scenarios.SCENARIOS if s.recovery and s.recovery.restore_drill} == {"restore-drill-fails"}
    assert set(scenarios.SHORT_DRILL) <= set(names)
    # the latency page from real spans through the Collector (issue 25)
    assert [s.name for s in scenarios.SCENARIOS if s.spans] == ["latency-burn-from-spans"]
    with pytest.raises(KeyError, match="unknown scenario"):
        scenarios.by_name(["no-such"])


def _target_labels(config, scenario):
    """Static labels of the target a scenario takes away or whose endpoint fails (TargetDown and
    SyntheticProbeFailing copy `service` from it)."""
    jobs = {o.job for o in (*scenario.exporter_outages, *scenario.endpoint_outages)}
    return {k: v for job in config.scrape_configs if job["job_name"] in jobs
            for sc in job.get("static_configs") or [] for k, v in (sc.get("labels") or {}).items()}


def _expand(value, labels):
    return re.sub(r"\{\{\s*\$labels\.(\w+)\s*\}\}", lambda m: labels[m.group(1)], value)


@pytest.mark.parametrize("scenario", scenarios.SCENARIOS, ids=lambda s: s.name)
def test_expectations_name_real_alerts_routed_to_the_expected_receivers(scenario, config):
    scenario = scenarios.planned(scenario)
    variants = config.alert_rule_variants()
    tree = config.routing()
    for expect in scenario.expected:
        rule = next(r for r in variants[expect.alert] if r.labels["severity"] == expect.severity)
        labels = {k: _expand(v, _target_labels(config, scenario)) for k, v in rule.labels.items()}
        receivers = [d.receiver for d in tree.deliveries({"alertname": rule.name, **labels})]
        assert expect.receiver in receivers
        assert 0 <= expect.at < scenario.duration
    TimeScale.for_config(config, scenario.factor)  # the factor keeps enough samples per window


@pytest.mark.parametrize("scenario", scenarios.SCENARIOS, ids=lambda s: s.name)
def test_played_series_belong_to_rendered_scrape_jobs(scenario, config):
    jobs = {job for job, _ in config.targets()}
    assert {s.job for s in (*scenarios.BASELINE, *scenario.series)} <= jobs


@pytest.mark.parametrize("scenario", scenarios.SCENARIOS, ids=lambda s: s.name)
def test_every_critical_alert_expected_in_chat_is_also_a_page(scenario):
    """continue: true on the critical route: a critical alert reaches PagerDuty and its room."""
    scenario = scenarios.planned(scenario)
    pages = {(e.alert, e.status) for e in scenario.expected if e.receiver == scenarios.RECEIVER_PAGE}
    for e in scenario.expected:
        if e.severity == "critical":
            assert (e.alert, e.status) in pages


def test_paging_scenarios_and_non_paging_ones():
    """One PagerDuty incident for each incident, whatever it takes."""
    incidents = {s.name: scenarios.planned(s).incidents_expected for s in scenarios.SCENARIOS}
    assert incidents == {
        "backup-retry-succeeds": 0, "backup-fails-twice": 1, "two-jobs-fail": 1, "backup-flapping": 1,
        "no-jobs-scheduled": 0, "latency-fast-burn": 1, "latency-burn-from-spans": 1, "latency-slow-burn": 0, "disk-crossing-85": 0,
        "pbs-exporter-disappears": 1,  # BackupMetricsAbsent, after 1h
        "mattermost-outage": 0,
        "alertmanager-restart": 2,  # the backup incident and the latency burn
        "api-probe-failing": 1,  # the probe's page and the availability burn, one api-gateway group
        # the recovery service in the loop: a re-run that works pages nobody, one that fails one incident
        "backup-retried-by-automation": 0, "backup-automation-exhausted": 1, "recovery-service-down": 1,
        "webhook-redelivered": 0, "backup-nothing-to-rerun": 1,
        "restore-drill-fails": 0,  # the backup room hears of a failed drill; nobody is paged
        "alertmanager-peer-lost": 2, "alertmanager-restart-clustered": 2,  # the same, on a cluster
        "prometheus-pair": 2,  # and on an HA Prometheus pair
    }
    two_jobs = next(s for s in scenarios.SCENARIOS if s.name == "two-jobs-fail")
    assert [(e.job, e.joins) for e in two_jobs.pages] == [("vm-nightly", False), ("ct-nightly", True)]
    quiet = next(s for s in scenarios.SCENARIOS if s.name == "no-jobs-scheduled")
    assert [e.alert for e in quiet.expected] == ["Watchdog"]


def test_the_slow_burn_stays_below_the_page_thresholds():
    assert scenarios.SLOW_BURN < 6 < 14.4


@pytest.mark.parametrize("scenario", scenarios.SCENARIOS, ids=lambda s: s.name)
def test_every_expected_notification_is_due_before_the_scenario_ends(scenario, config):
    """A resolution needs up to group_interval (5m) after its condition clears: a scenario that stops
    sooner would miss it on an unlucky group tick. Each notification's bound must end a minute early."""
    from tools.drill.verdict import bound_for, rule_for

    scale = TimeScale.for_config(config, scenario.factor)
    variants = config.alert_rule_variants()
    for expect in scenario.expected:
        rule = rule_for(variants, expect.alert, expect.severity)
        bound = bound_for(expect, rule, config.routing(), scale, scenario)
        if bound is not None:
            assert expect.at + scale.real(bound.wall) + 60 <= scenario.duration, (expect, bound)
