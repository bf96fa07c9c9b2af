"""The SLO engine under promtool: burn rates, zero traffic, and measured detection times.

Detection times are measured, not computed: promtool replays a steady stream of events
(a clean history long enough for the 3d window, then an incident) through the rendered
rules, and the first timestamp of the firing ALERTS series is read back. They are checked
against the SRE Workbook's arithmetic (a window of length W reaches burn factor F under an
error fraction e after W * F * budget / e) and written to build/slo-detection-times.md.
"""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.conftest import run_tool

REPORT = Path(__file__).resolve().parents[2] / "build" / "slo-detection-times.md"
EVENTS_PER_STEP = 100
SECONDS = {"m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> int:
    return sum(int(n) * SECONDS[u] for n, u in re.findall(r"(\d+)([mhd])", duration))


@dataclass(frozen=True)
class SloUnderTest:
    name: str
    alert: str
    budget: float  # 1 - objective, as Pulumi.homelab.yaml states it
    total: str
    good: str


BACKUPS = SloUnderTest("backup-success", "BackupSuccessBudgetBurn", 0.005,
                       'pbs_job_attempt_total{datastore="homelab",job_id="vm-nightly",job_type="backup"}',
                       'pbs_job_success_total{datastore="homelab",job_id="vm-nightly",job_type="backup"}')
LATENCY = SloUnderTest("api-gateway-latency", "ApiGatewayLatencyBudgetBurn", 0.01,
                       'traces_span_metrics_duration_milliseconds_count{service_name="api-gateway",span_kind="SPAN_KIND_SERVER"}',
                       # Prometheus 3 spells the bound 500.0; the rules accept both spellings.
                       'traces_span_metrics_duration_milliseconds_bucket{le="500.0",service_name="api-gateway",span_kind="SPAN_KIND_SERVER"}')

# Workbook policy: (severity, for, [(factor, long window, short window)]).
POLICY = {
    "critical": ("2m", [(14.4, "1h", "5m"), (6, "6h", "30m")]),
    "warning": ("15m", [(3, "1d", "2h"), (1, "3d", "6h")]),
}


def workbook_detection(slo: SloUnderTest, severity: str, error_fraction: float) -> int | None:
    """Seconds until the policy fires for a step change to `error_fraction` after a clean history."""
    for_, conditions = POLICY[severity]
    times = []
    for factor, long, short in conditions:
        threshold = factor * slo.budget
        if threshold < error_fraction:
            times.append(max(seconds(long), seconds(short)) * threshold / error_fraction)
    return int(min(times)) + seconds(for_) if times else None


def _counter(start_steps: int, incident_steps: int, per_step_before: int, per_step_after: int) -> str:
    before = f"0+{per_step_before}x{start_steps}"
    return f"{before} {start_steps * per_step_before + per_step_after}+{per_step_after}x{incident_steps - 1}"


def _slo_rule_file(homelab, slo: SloUnderTest, tmp_path: Path) -> Path:
    """The SLO's own group from the rendered slos.yaml, minus the budget series no alert reads."""
    doc = homelab.yaml("prometheus/rules/slos.yaml")
    group = next(g for g in doc["groups"] if g["name"] == f"slo-{slo.name}")
    assert not any("error_budget_remaining" in r["expr"] for r in group["rules"] if "alert" in r)
    group = {**group, "rules": [r for r in group["rules"] if r.get("record") != "slo:error_budget_remaining:ratio"]}
    path = tmp_path / f"{slo.name}.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": [group]}, sort_keys=False))
    return path


def measure(homelab, slo: SloUnderTest, severity: str, error_fraction: float, tmp_path: Path) -> int | None:
    """Replay history + incident through promtool; seconds from incident start to firing, or None."""
    # Pages need the 6h window filled and 5m resolution; tickets need 3d of history. The
    # horizon is generous: an outage fires within the hour, 2% errors within two days.
    step, history = ("1m", "6h") if severity == "critical" else ("5m", "3d")
    horizon = {("critical", True): "2h", ("critical", False): "8h", ("warning", True): "3h", ("warning", False): "40h"}[
        (severity, error_fraction == 1.0)]
    step_s, history_s = seconds(step), seconds(history)
    history_steps, incident_steps = history_s // step_s, seconds(horizon) // step_s
    good_after = round(EVENTS_PER_STEP * (1 - error_fraction))
    end = f"{(history_s + seconds(horizon)) // 60}m"
    first = (f'min(min_over_time(timestamp(ALERTS{{alertname="{slo.alert}",alertstate="firing",'
             f'severity="{severity}"}})[{end}:{step}]))')
    test = {
        "rule_files": [str(_slo_rule_file(homelab, slo, tmp_path))],
        "evaluation_interval": step,
        "tests": [{
            "interval": step,
            "input_series": [
                {"series": slo.total, "values": _counter(history_steps, incident_steps, EVENTS_PER_STEP, EVENTS_PER_STEP)},
                {"series": slo.good, "values": _counter(history_steps, incident_steps, EVENTS_PER_STEP, good_after)},
            ],
            # An impossible expectation makes promtool print what it measured.
            "promql_expr_test": [{"expr": first, "eval_time": end, "exp_samples": [{"labels": "{}", "value": -1}]}],
        }],
    }
    path = tmp_path / f"{slo.name}-{severity}-{error_fraction}.test.yaml"
    path.write_text(yaml.safe_dump(test, sort_keys=False))
    result = run_tool("promtool", "test", "rules", path)
    got = re.search(r"got: (nil|\{\} (\S+))", result.stdout + result.stderr)
    assert got, result.stdout + result.stderr
    if got.group(1) == "nil":
        return None
    return int(float(got.group(2))) - history_s


# The backup SLO raises no alert (alerts: false): its failures page per job (BackupJobFailed).
SCENARIOS = [(LATENCY, sev, frac) for sev in ("critical", "warning") for frac in (1.0, 0.02)]


@pytest.fixture(scope="module")
def detection_times(homelab, tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("detection")
    with ThreadPoolExecutor(max_workers=2) as pool:  # promtool is single-threaded; two cores
        futures = {s: pool.submit(measure, homelab, *s, tmp) for s in SCENARIOS}
    times = {s: f.result() for s, f in futures.items()}
    _write_report(times)
    return times


def _fmt(t: int | None) -> str:
    if t is None:
        return "never"
    h, m = divmod(t // 60, 60)
    return f"{h}h{m:02d}m" if h else f"{m}m"


def _write_report(times: dict) -> None:
    lines = ["# SLO alert detection times (measured with promtool)", "",
             f"Steady traffic of {EVENTS_PER_STEP} events per step, clean history, then a step change.", "",
             "| SLO | alert | severity | 100% outage | 2% errors |", "|---|---|---|---|---|"]
    for slo in (LATENCY,):
        for sev in ("critical", "warning"):
            lines.append(f"| {slo.name} | {slo.alert} | {sev} | {_fmt(times[(slo, sev, 1.0)])} | {_fmt(times[(slo, sev, 0.02)])} |")
    REPORT.parent.mkdir(exist_ok=True)
    REPORT.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize("slo,severity,error_fraction", SCENARIOS,
                         ids=[f"{s.name}-{sev}-{int(f * 100)}pct" for s, sev, f in SCENARIOS])
def test_detection_time_matches_the_workbook(detection_times, slo, severity, error_fraction):
    measured = detection_times[(slo, severity, error_fraction)]
    expected = workbook_detection(slo, severity, error_fraction)
    if expected is None:
        assert measured is None, f"fired after {_fmt(measured)} though the burn never reaches the threshold"
        return
    assert measured is not None, f"never fired; the workbook says {_fmt(expected)}"
    step = 60 if severity == "critical" else 300
    # Evaluation steps and rate()'s window edges shift the moment by at most a few steps.
    assert expected - 2 * step <= measured <= expected + 3 * step, (_fmt(measured), _fmt(expected))


def _unit_test(homelab, tmp_path, test: dict, rule_file: Path | None = None) -> None:
    doc = {"rule_files": [str(rule_file or homelab.out / "prometheus" / "rules" / "slos.yaml")],
           "evaluation_interval": test["interval"], "tests": [test]}
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = run_tool("promtool", "test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr


def _burn(window: str, slo: str, value: float, at: str) -> dict:
    return {"expr": f'round(slo:burn_rate:{window}{{slo="{slo}"}}, 0.001)', "eval_time": at,
            "exp_samples": [{"labels": f'{{service="{"backups" if slo == "backup-success" else "api-gateway"}",slo="{slo}"}}', "value": value}]}


def test_burn_rates_and_budget_for_a_steady_error_ratio(homelab, tmp_path):
    # A day clean, then a day at 1% errors: burn 2 (1% of a 0.5% budget); over both days
    # the error ratio is 0.5%, exactly the budget: nothing remains.
    # Sampled every minute: under Prometheus 3 a range is left-open, so [5m] over 5-minute samples
    # holds one sample and rate() has nothing (2.x's closed range held two).
    _unit_test(homelab, tmp_path, {
        "interval": "1m",
        "input_series": [
            {"series": BACKUPS.total, "values": "0+20x2880"},
            {"series": BACKUPS.good, "values": "0+20x1440 28819.8+19.8x1439"},
        ],
        "promql_expr_test": [
            _burn("1h", "backup-success", 2, "2d"),
            _burn("1d", "backup-success", 2, "2d"),
            _burn("5m", "backup-success", 0, "1d"),
            {"expr": 'round(slo:error_budget_remaining:ratio{slo="backup-success"}, 0.01)', "eval_time": "2d",
             "exp_samples": [{"labels": '{service="backups",slo="backup-success"}', "value": 0}]},
        ],
    })


def test_zero_traffic_is_a_clean_zero_not_nan_and_never_pages(homelab, tmp_path):
    # Counters exist but do not move (no requests at night); the good-events bucket never appeared.
    _unit_test(homelab, tmp_path, {
        "interval": "1m",  # [5m] must hold two samples (see above)
        "input_series": [{"series": LATENCY.total, "values": "500x1500"}],
        "promql_expr_test": [
            _burn("5m", "api-gateway-latency", 0, "1d"),
            _burn("3d", "api-gateway-latency", 0, "1d"),
            {"expr": 'slo:error_budget_remaining:ratio{slo="api-gateway-latency"}', "eval_time": "1d",
             "exp_samples": [{"labels": 'slo:error_budget_remaining:ratio{service="api-gateway",slo="api-gateway-latency"}', "value": 1}]},
            {"expr": "ALERTS", "eval_time": "1d", "exp_samples": []},
        ],
    })


def test_no_total_counter_means_no_series_at_all(homelab, tmp_path):
    _unit_test(homelab, tmp_path, {
        "interval": "1m",
        "input_series": [{"series": "some_other_metric", "values": "1x30"}],
        "promql_expr_test": [{"expr": '{__name__=~"slo:.+"}', "eval_time": "30m", "exp_samples": []}],
    })


def test_the_backup_slo_records_its_burn_rates_and_budget_but_raises_no_alert(homelab):
    groups = {g["name"]: g for g in homelab.yaml("prometheus/rules/slos.yaml")["groups"]}
    backups = groups["slo-backup-success"]["rules"]
    assert [r["record"] for r in backups] == [f"slo:burn_rate:{w}" for w in ("5m", "30m", "1h", "2h", "6h", "1d", "3d")] + [
        "slo:error_budget_remaining:ratio"]
    assert {r.get("alert") for r in groups["slo-api-gateway-latency"]["rules"]} >= {LATENCY.alert}


def _low_traffic_slo_rules(tmp_path) -> Path:
    """The backup SLO as a paging SLO with the low-traffic guard (minBadEvents: 2), rendered by the engine."""
    from model.rules import slo as slo_engine
    from model.config import load_stack_config
    from tests.stacks import homelab_sections

    sections = homelab_sections()
    sections["slos"][0] = {**sections["slos"][0], "alerts": True, "minBadEvents": 2}
    path = tmp_path / "low-traffic.rules.yaml"
    path.write_text(yaml.safe_dump({"groups": slo_engine.rule_groups(load_stack_config(sections))[:1]}, sort_keys=False))
    return path


def test_with_min_bad_events_a_single_failure_that_a_retry_fixes_does_not_page(homelab, tmp_path):
    # Ten jobs a night; one fails at 02:10 and its retry at 02:15 succeeds.
    _unit_test(homelab, tmp_path, {
        "interval": "5m",
        "input_series": [
            {"series": BACKUPS.total, "values": "0x25 1+1x9 11x100"},
            {"series": BACKUPS.good, "values": "0x25 1 1 2+1x7 10x100"},
        ],
        "promql_expr_test": [
            {"expr": f'ALERTS{{alertname="{BACKUPS.alert}"}}', "eval_time": f"{t}m", "exp_samples": []}
            for t in (140, 150, 180, 300, 600)
        ],
    }, _low_traffic_slo_rules(tmp_path))


def test_with_min_bad_events_two_failures_in_an_hour_page(homelab, tmp_path):
    _unit_test(homelab, tmp_path, {
        "interval": "5m",
        "input_series": [
            {"series": BACKUPS.total, "values": "0x25 1+1x9 10x10"},
            {"series": BACKUPS.good, "values": "0x25 1 1 1 2+1x6 8x10"},
        ],
        "promql_expr_test": [{
            "expr": f'ALERTS{{alertname="{BACKUPS.alert}",alertstate="firing",severity="critical"}}', "eval_time": "150m",
            "exp_samples": [{"labels": f'ALERTS{{alertname="{BACKUPS.alert}",alertstate="firing",service="backups",severity="critical",slo="backup-success"}}', "value": 1}],
        }],
    }, _low_traffic_slo_rules(tmp_path))


def test_slo_mistakes_are_reported_by_key_path():
    from model.config import ConfigError, load_stack_config
    from tools.offline_engine import ROOT

    doc = yaml.safe_load((ROOT / "Pulumi.homelab.yaml").read_text())["config"]
    raw = {k.split(":", 1)[1]: v for k, v in doc.items() if k.startswith("homelab-observability:")}
    raw["slos"] = [
        {**raw["slos"][0], "sli": {"goodEvents": "pbs_job_success_total"}},
        {**raw["slos"][1], "name": "backup-success", "objective": 100},
    ]
    with pytest.raises(ConfigError) as err:
        load_stack_config(raw)
    assert [str(p) for p in err.value.problems] == ["slos[1].objective: input should be less than 100"]
    raw["slos"][1]["objective"] = 99
    with pytest.raises(ConfigError) as err:
        load_stack_config(raw)
    assert [str(p) for p in err.value.problems] == [
        "slos[0].sli.totalEvents: is required with goodEvents",
        # Two SLOs of the same name are told apart by their place in the list.
        "slos[1].name: 'backup-success' is used twice (slos[0] has it)",
    ]
    raw["slos"] = [{**raw["slos"][0], "sli": {"goodEvents": "a_total", "totalEvents": "b_total"}, "minBadEvents": 2}]
    with pytest.raises(ConfigError) as err:
        load_stack_config(raw)
    # An SLO's problems name it, not its index.
    assert [str(p) for p in err.value.problems] == [
        "slos[backup-success].minBadEvents: has no effect with alerts: false (the SLO raises no alert)"]


# --- availability from the probes (sli.probe) -------------------------------------------------

AVAILABILITY = "api-gateway-availability"
AVAILABILITY_BUDGET = 0.005  # objective 99.5 in Pulumi.homelab.yaml
PROBE_SERIES = ('probe_success{instance="https://api.home.arpa/healthz",job="probe-api-gateway-health",'
                'probe="api-gateway-health",service="api-gateway"}')
HISTORY_MINUTES = 3 * 24 * 60  # a clean history that fills the 3d window at one probe a minute


def _availability_alerts(at: str, severity: str, firing: bool) -> dict:
    labels = (f'ALERTS{{alertname="ApiGatewayAvailabilityBudgetBurn",alertstate="firing",service="api-gateway",'
              f'severity="{severity}",slo="{AVAILABILITY}"}}')
    return {"expr": f'ALERTS{{alertname="ApiGatewayAvailabilityBudgetBurn",alertstate="firing",severity="{severity}"}}',
            "eval_time": at, "exp_samples": [{"labels": labels, "value": 1}] if firing else []}


def _minutes(m: int) -> str:
    return f"{m}m"


def test_the_availability_slo_counts_each_probe_as_an_event(homelab):
    groups = {g["name"]: g for g in homelab.yaml("prometheus/rules/slos.yaml")["groups"]}
    rules = groups[f"slo-{AVAILABILITY}"]["rules"]
    burn_5m = next(r for r in rules if r.get("record") == "slo:burn_rate:5m")
    assert 'count_over_time(probe_success{probe="api-gateway-health"}[5m])' in burn_5m["expr"]
    assert 'sum_over_time(probe_success{probe="api-gateway-health"}[5m])' in burn_5m["expr"]
    assert {(r["alert"], r["labels"]["severity"]) for r in rules if "alert" in r} == {
        ("ApiGatewayAvailabilityBudgetBurn", "critical"), ("ApiGatewayAvailabilityBudgetBurn", "warning")}


def test_a_probe_failing_for_15m_pages_and_recovering_resolves(homelab, tmp_path):
    start, failed = HISTORY_MINUTES, 15  # probes fail from `start` for 15 minutes, one a minute
    page_factor, page_for = 14.4, 2
    # The 1h window (60 probes) passes 14.4x the budget at the first whole failed probe above
    # 60 * 14.4 * budget; the 5m window (5 probes) is past its threshold by then.
    needed = int(60 * page_factor * AVAILABILITY_BUDGET) + 1
    pages_at = start + (needed - 1) + page_for
    # After the last failed probe the 30m window (6x) still holds it for 30 minutes; the 6h window
    # holds 15 of 360 probes, above 6x the budget, so the page lasts until the 30m window is clean.
    # (Prometheus 2.x includes a range's left edge, 3.x does not: allow the minute between.)
    last_failure = start + failed - 1
    resolves_at = last_failure + 30 + 1
    _unit_test(homelab, tmp_path, {
        "interval": "1m",
        "input_series": [{"series": PROBE_SERIES, "values": f"1x{start - 1} 0x{failed - 1} 1x{60 + 30}"}],
        "promql_expr_test": [
            # Every probe failing: the error ratio is 1, the burn 1 / budget.
            _burn("5m", AVAILABILITY, round(1 / AVAILABILITY_BUDGET, 3), _minutes(start + 10)),
            _burn("5m", AVAILABILITY, 0, _minutes(start - 1)),
            _availability_alerts(_minutes(pages_at - 1), "critical", False),
            _availability_alerts(_minutes(pages_at), "critical", True),
            _availability_alerts(_minutes(resolves_at - 2), "critical", True),
            _availability_alerts(_minutes(resolves_at), "critical", False),
            # 15 failed probes are 0.35% of the 3d window and 1% of the day: no ticket.
            *[_availability_alerts(_minutes(t), "warning", False) for t in (start + 30, resolves_at, resolves_at + 30)],
        ],
    })


def test_a_single_failed_probe_pages_no_one(homelab, tmp_path):
    start = HISTORY_MINUTES
    _unit_test(homelab, tmp_path, {
        "interval": "1m",
        "input_series": [{"series": PROBE_SERIES, "values": f"1x{start - 1} 0 1x60"}],
        "promql_expr_test": [
            {"expr": 'ALERTS{alertname="ApiGatewayAvailabilityBudgetBurn"}', "eval_time": _minutes(t), "exp_samples": []}
            for t in (start, start + 3, start + 10, start + 30)
        ],
    })


def test_a_probe_sli_names_a_configured_probe():
    from tests.configs import problems_of

    def unknown(s):
        s["slos"][-1]["sli"]["probe"] = "api-gateway-helth"

    def with_total(s):
        s["slos"][-1]["sli"]["totalEvents"] = "probe_success"

    def without_probes(s):
        s.pop("probes")

    assert problems_of(unknown)["slos[api-gateway-availability].sli.probe"] == (
        "unknown probe 'api-gateway-helth' (probes.targets: api-gateway-health, api-gateway-openapi)")
    assert problems_of(with_total)["slos[api-gateway-availability].sli.totalEvents"] == "is not used with probe (every probe is an event)"
    assert problems_of(without_probes)["slos[api-gateway-availability].sli.probe"] == "unknown probe 'api-gateway-health' (probes.targets: none)"
