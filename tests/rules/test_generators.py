"""The rule generators on small inputs, table-driven (as Sloth tests its SLO generator): each row is
an input and the rule it must produce, written out by hand from the design (docs/metrics-slo.md,
the SRE Workbook's multi-window burn rates, the seed's paging rules), never taken from the output.

What the rules then do with series is for promtool: tests/rules/<domain>.test.yaml."""

from __future__ import annotations

import pytest

from model.config import Slo
from model.rules import backups, disks, slo
from tests.configs import homelab_config


def _slo(sli: dict, objective: float = 99.9, **more) -> Slo:
    return Slo.model_validate({"name": "checkout", "service": "shop", "description": "Checkout requests",
                               "objective": objective, "sli": sli, **more})


# --- the SLO engine --------------------------------------------------------------------------------
# A burn rate is the error ratio over the window divided by the error budget (1 - objective); no
# traffic is a ratio of 0 (the `or ... * 0` branch), a missing good-events counter zero good events.

BURN_RATE_1H = [
    pytest.param(
        {"goodEvents": 'http_requests_total{code!~"5.."}', "totalEvents": "http_requests_total"}, 99.9,
        "(\n"
        '  clamp_min(sum(rate(http_requests_total[1h])) - (sum(rate(http_requests_total{code!~"5.."}[1h])) or vector(0)), 0)\n'
        "    / (sum(rate(http_requests_total[1h])) > 0)\n"
        "  or\n"
        "  sum(rate(http_requests_total[1h])) * 0\n"
        ") / 0.001",
        id="good-over-total"),
    pytest.param(
        {"badEvents": 'http_requests_total{code=~"5.."}', "totalEvents": "http_requests_total"}, 99,
        "(\n"
        '  (sum(rate(http_requests_total{code=~"5.."}[1h])) or vector(0))\n'
        "    / (sum(rate(http_requests_total[1h])) > 0)\n"
        "  or\n"
        "  sum(rate(http_requests_total[1h])) * 0\n"
        ") / 0.01",
        id="bad-over-total"),
    pytest.param(
        {"latency": {"histogram": "http_request_duration_seconds", "selector": {"job": "checkout", "handler": "/pay"},
                     "threshold": 0.3}}, 95,
        "(\n"
        '  clamp_min(sum(rate(http_request_duration_seconds_count{handler="/pay",job="checkout"}[1h])) - '
        r'(sum(rate(http_request_duration_seconds_bucket{handler="/pay",job="checkout",le=~"0\\.3"}[1h])) or vector(0)), 0)'
        "\n"
        '    / (sum(rate(http_request_duration_seconds_count{handler="/pay",job="checkout"}[1h])) > 0)\n'
        "  or\n"
        '  sum(rate(http_request_duration_seconds_count{handler="/pay",job="checkout"}[1h])) * 0\n'
        ") / 0.05",
        id="latency-fractional-bound"),
    pytest.param(
        # Prometheus 3 stores an integer bound as "500.0", 2.x as the exporter wrote it: both match.
        {"latency": {"histogram": "span_duration_milliseconds", "threshold": 500}}, 99.5,
        "(\n"
        "  clamp_min(sum(rate(span_duration_milliseconds_count[1h])) - "
        r'(sum(rate(span_duration_milliseconds_bucket{le=~"500(\\.0)?"}[1h])) or vector(0)), 0)'
        "\n"
        "    / (sum(rate(span_duration_milliseconds_count[1h])) > 0)\n"
        "  or\n"
        "  sum(rate(span_duration_milliseconds_count[1h])) * 0\n"
        ") / 0.005",
        id="latency-integer-bound"),
    pytest.param(
        # Each probe is an event: probe_success is a 0/1 gauge, counted and summed over the window.
        {"probe": "checkout-health"}, 99.95,
        "(\n"
        '  clamp_min(sum(count_over_time(probe_success{probe="checkout-health"}[1h])) - '
        '(sum(sum_over_time(probe_success{probe="checkout-health"}[1h])) or vector(0)), 0)\n'
        '    / (sum(count_over_time(probe_success{probe="checkout-health"}[1h])) > 0)\n'
        "  or\n"
        '  sum(count_over_time(probe_success{probe="checkout-health"}[1h])) * 0\n'
        ") / 0.0005",
        id="probe"),
]


@pytest.mark.parametrize("sli,objective,expected", BURN_RATE_1H)
def test_the_burn_rate_of_each_kind_of_indicator(sli, objective, expected):
    records = {r["record"]: r for r in slo.recording_rules(_slo(sli, objective))}
    assert records["slo:burn_rate:1h"] == {"record": "slo:burn_rate:1h", "expr": expected,
                                           "labels": {"slo": "checkout", "service": "shop"}}


def test_every_window_of_the_alerts_is_recorded_and_the_budget_over_the_period():
    rules = slo.recording_rules(_slo({"goodEvents": "ok_total", "totalEvents": "all_total"}, 99, period="28d"))
    assert [r["record"] for r in rules] == [
        "slo:burn_rate:5m", "slo:burn_rate:30m", "slo:burn_rate:1h", "slo:burn_rate:2h", "slo:burn_rate:6h",
        "slo:burn_rate:1d", "slo:burn_rate:3d", "slo:error_budget_remaining:ratio"]
    assert rules[-1]["expr"] == (
        "1 - (\n"
        "  clamp_min(sum(rate(all_total[28d])) - (sum(rate(ok_total[28d])) or vector(0)), 0)\n"
        "    / (sum(rate(all_total[28d])) > 0)\n"
        "  or\n"
        "  sum(rate(all_total[28d])) * 0\n"
        ") / 0.01")


PAGE = ("(\n"
        '  slo:burn_rate:1h{slo="checkout"} > 14.4\n'
        "  and\n"
        '  slo:burn_rate:5m{slo="checkout"} > 14.4\n'
        ")\n"
        "or\n"
        "(\n"
        '  slo:burn_rate:6h{slo="checkout"} > 6\n'
        "  and\n"
        '  slo:burn_rate:30m{slo="checkout"} > 6\n'
        ")")
TICKET = ("(\n"
          '  slo:burn_rate:1d{slo="checkout"} > 3\n'
          "  and\n"
          '  slo:burn_rate:2h{slo="checkout"} > 3\n'
          ")\n"
          "or\n"
          "(\n"
          '  slo:burn_rate:3d{slo="checkout"} > 1\n'
          "  and\n"
          '  slo:burn_rate:6h{slo="checkout"} > 1\n'
          ")")
# With minBadEvents, each condition also needs that many bad events in its long window.
PAGE_OF_FIVE = ("(\n"
                '  slo:burn_rate:1h{slo="checkout"} > 14.4\n'
                "  and\n"
                '  slo:burn_rate:5m{slo="checkout"} > 14.4\n'
                "  and on()\n"
                "  clamp_min(sum(increase(all_total[1h])) - (sum(increase(ok_total[1h])) or vector(0)), 0) >= 5\n"
                ")\n"
                "or\n"
                "(\n"
                '  slo:burn_rate:6h{slo="checkout"} > 6\n'
                "  and\n"
                '  slo:burn_rate:30m{slo="checkout"} > 6\n'
                "  and on()\n"
                "  clamp_min(sum(increase(all_total[6h])) - (sum(increase(ok_total[6h])) or vector(0)), 0) >= 5\n"
                ")")


@pytest.mark.parametrize("more,expected", [
    pytest.param({}, [("critical", PAGE, "2m"), ("warning", TICKET, "15m")], id="page-and-ticket"),
    pytest.param({"pageFor": "5m", "ticketFor": "1h"}, [("critical", PAGE, "5m"), ("warning", TICKET, "1h")],
                 id="own-for"),
    pytest.param({"minBadEvents": 5}, [("critical", PAGE_OF_FIVE, "2m")], id="min-bad-events"),
    pytest.param({"alerts": False}, [], id="recording-only"),
])
def test_the_page_and_the_ticket(more, expected):
    rules = slo.alert_rules(_slo({"goodEvents": "ok_total", "totalEvents": "all_total"}, **more))
    got = [(r["labels"]["severity"], r["expr"], r["for"]) for r in rules]
    assert got[:len(expected)] == expected
    assert len(got) == (2 if expected else 0)
    assert all(r["alert"] == "CheckoutBudgetBurn" and r["labels"]["slo"] == "checkout" for r in rules)


@pytest.mark.parametrize("name,alert", [
    ("checkout", "CheckoutBudgetBurn"),
    ("api-gateway-latency", "ApiGatewayLatencyBudgetBurn"),
    ("nas-smb-availability", "NasSmbAvailabilityBudgetBurn"),
])
def test_an_slo_s_alert_is_named_after_it(name, alert):
    assert _slo({"probe": "p"}, name=name).alert_name == alert


# --- backups: stale per job, the grace of the page ----------------------------------------------------

LAST_SUCCESS_AGE = "time() - pbs_job_last_success_timestamp_seconds"


def _backup_alerts(metrics: dict, recovery: bool = True) -> dict[tuple[str, str], dict]:
    def change(sections):
        if "backupMaxAgeByJob" not in metrics:  # the homelab's own override would be a row of its own
            sections["metrics"].pop("backupMaxAgeByJob", None)
        sections["metrics"].update(metrics)
        if not recovery:
            del sections["recovery"]
            sections["reports"]["archive"]["nfs"]["server"] = "nas.home.arpa"  # no recovery NAS to take it from
    rules = backups.backup_rules(homelab_config(change))
    return {(r["alert"], r["labels"]["severity"]): r for r in rules if "alert" in r}


@pytest.mark.parametrize("metrics,expected", [
    pytest.param({"backupMaxAge": "26h"}, f'{LAST_SUCCESS_AGE}{{job_id!~"manual"}} > 93600', id="one-window"),
    pytest.param({"backupMaxAge": "26h", "backupMaxAgeByJob": {"sync-offsite": "8d"}},
                 f'{LAST_SUCCESS_AGE}{{job_id="sync-offsite"}} > 691200\nor\n'
                 f'{LAST_SUCCESS_AGE}{{job_id!~"sync-offsite|manual"}} > 93600', id="one-override"),
    pytest.param({"backupMaxAge": "2d", "backupMaxAgeByJob": {"vm-hourly": "90m", "archive": "31d"}},
                 f'{LAST_SUCCESS_AGE}{{job_id="archive"}} > 2678400\nor\n'
                 f'{LAST_SUCCESS_AGE}{{job_id="vm-hourly"}} > 5400\nor\n'
                 f'{LAST_SUCCESS_AGE}{{job_id!~"archive|vm-hourly|manual"}} > 172800', id="overrides-in-order"),
])
def test_backups_go_stale_after_their_job_s_window(metrics, expected):
    stale = _backup_alerts(metrics)[("BackupsStale", "critical")]
    assert (stale["expr"], stale["for"]) == (expected, "10m")


@pytest.mark.parametrize("grace,scrape_interval,throughout", [
    # Failed throughout the grace: the range reaches one scrape further back (it is left-open in
    # Prometheus 3) to hold the sample taken when the grace began.
    ("30m", "30s", "1830s"),
    ("1h", "1m", "3660s"),
    ("45m", "15s", "2715s"),
])
def test_the_page_waits_for_the_retry_grace(grace, scrape_interval, throughout):
    rules = _backup_alerts({"backupRetryGrace": grace, "scrapeInterval": scrape_interval})
    page = rules[("BackupJobFailed", "critical")]["expr"]
    assert f'min_over_time(pbs_job:last_run_failed:bool{{job_type="backup"}}[{throughout}]) == 1' in page
    assert f'(changes(pbs_job_last_run_timestamp_seconds{{job_type="backup"}}[{grace}]) >= 2' in page
    assert rules[("BackupMaintenanceJobFailed", "warning")]["for"] == grace


@pytest.mark.parametrize("recovery", [True, False], ids=["with-recovery", "without"])
def test_the_page_hears_the_recovery_service_only_where_it_runs(recovery):
    page = _backup_alerts({}, recovery=recovery)[("BackupJobFailed", "critical")]["expr"]
    assert ("recovery_backup_job_gave_up_failure_timestamp_seconds" in page) == recovery


# --- disks: the thresholds, and the NAS only when a target has storage ---------------------------------

NODE_FS = 'fstype!~"tmpfs|ramfs|overlay|squashfs|nsfs|fuse.*",mountpoint!~"/mnt/datastore/.*"'
NAS = 'job=~"snmp-nas",hrStorageDescr!~"(?i).*(memory|swap|buffer|cache|shared).*"'


@pytest.mark.parametrize("warning,critical", [(85, 95), (70, 90)])
def test_disk_alerts_warn_and_page_at_the_configured_percentages(warning, critical):
    cfg = homelab_config(lambda s: s["metrics"].update(diskWarningPercent=warning, diskCriticalPercent=critical))
    rules = {(r["alert"], r["labels"]["severity"]): r for r in disks.disk_rules(cfg)}
    node = f"100 * (1 - node_filesystem_avail_bytes{{{NODE_FS}}} / node_filesystem_size_bytes{{{NODE_FS}}})"
    assert rules[("NodeDiskUsageHigh", "warning")]["expr"] == f"{node} > {warning}"
    assert rules[("NodeDiskUsageHigh", "critical")]["expr"] == f"{node} > {critical}"
    datastore = "100 * pbs_datastore_used_bytes / (pbs_datastore_size_bytes > 0)"
    assert rules[("PbsDatastoreUsageHigh", "critical")]["expr"] == f"{datastore} > {critical}"
    assert rules[("NasStorageUsageHigh", "warning")]["expr"] == f"100 * hrStorageUsed{{{NAS}}} / (hrStorageSize{{{NAS}}} > 0) > {warning}"
    assert {r["for"] for r in rules.values()} == {"15m"}


def test_no_nas_alert_without_a_target_that_has_storage():
    def no_storage(sections):
        for target in sections["metrics"]["snmp"]["targets"]:
            target.pop("hasStorage", None)
    assert "NasStorageUsageHigh" not in {r["alert"] for r in disks.disk_rules(homelab_config(no_storage))}
