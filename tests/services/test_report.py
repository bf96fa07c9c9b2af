"""The quarterly PBS job report against Prometheus holding a generated quarter.

The expected figures are counted here from the generated runs (tests/pbs_history.py), never
taken from services/report; the report itself is read back from its PDF with poppler's pdftotext.
"""

from __future__ import annotations

import bisect
import json
import re
import shutil
import subprocess
import sys
import threading
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy
import pytest

from model.reports import config_map_data, report_command, report_settings
from tests.configs import homelab_config
from tests.pbs_history import (POLL_LAG, Alert, Drill, ExporterRestart, Run, alert_series, backfill, datastore_series,
                               drill_series, exporter_series, scrape_times, start_prometheus, write_openmetrics)
from tools.offline_engine import ROOT

BERLIN = ZoneInfo("Europe/Berlin")
UTC = ZoneInfo("Etc/UTC")
SCRAPE = 1800  # 30 min, with a 1 h look-back (LOOKBACK): the series of a 30 s scrape, 60 times fewer samples
LOOKBACK = "1h"
EVALUATION = 60
GIB = 2 ** 30


def utc(*args) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


def daily(job_id, job_type, hour, minute, first, last, duration, failed=(), store="homelab"):
    runs, day = [], first
    while day <= last:
        end = datetime(day.year, day.month, day.day, hour, minute, tzinfo=timezone.utc).timestamp()
        index = (day - first).days
        runs.append(Run(job_id, job_type, store, end, duration(index), day not in failed))
        day += timedelta(days=1)
    return runs


FIRST, LAST = datetime(2026, 6, 20).date(), datetime(2026, 10, 9).date()
D = lambda m, d: datetime(2026, m, d).date()  # noqa: E731

VM101_FAILED = (D(7, 14), D(8, 9), D(9, 21))
RUNS: list[Run] = [
    # 92 runs in Q3 of which 3 failed: the 92 / 89 / 3 / 96.74%.
    *daily("vm/101", "backup", 1, 0, FIRST, LAST, lambda i: 600 + 37 * (i % 9), VM101_FAILED),
    # Ends at 23:59 in Berlin: Prometheus sees each run after midnight, in the next quarter.
    *daily("vm/102", "backup", 21, 59, FIRST, LAST, lambda i: 1500, (D(9, 30),)),
    # Ends at 00:30 in Berlin: the first of July in Berlin is still June in UTC.
    *daily("ct/200", "backup", 22, 30, FIRST, LAST, lambda i: 300 + i, (D(6, 30),)),
    # An extra run fails at 02:45 and the 03:00 run succeeds: two scrapes of one hour see them.
    # The 03:00 run fails and is retried 90 s later: both runs land in one scrape.
    *daily("vm/103", "backup", 3, 0, FIRST, LAST, lambda i: 900, (D(8, 4),)),
    Run("vm/103", "backup", "homelab", utc(2026, 8, 3, 2, 45), 1200, False),
    Run("vm/103", "backup", "homelab", utc(2026, 8, 4, 3, 1, 30), 60, True),
    *daily("homelab", "gc", 4, 0, FIRST, LAST, lambda i: 1200),
    *daily("p-daily", "prune", 4, 30, FIRST, LAST, lambda i: 45),
    *[r for r in daily("s-offsite", "sync", 2, 0, FIRST, LAST, lambda i: 3 * 3600)
      if datetime.fromtimestamp(r.end, timezone.utc).weekday() == 6],
    # Twice a month: its last run is more than the exporter's 7-day look-back before the lost state.
    *[r for r in daily("v-fortnight", "verify", 5, 0, FIRST, LAST, lambda i: 7200)
      if datetime.fromtimestamp(r.end, timezone.utc).day in (1, 16)],
    # Manual runs around the quarter's first edge (Berlin: Q3, UTC: Q2) and last edge.
    *[Run("manual", "verify", "homelab", t, 600, True) for t in (
        utc(2026, 6, 30, 22, 15), utc(2026, 6, 30, 22, 40), utc(2026, 6, 30, 23, 10), utc(2026, 7, 20, 10, 0),
        utc(2026, 9, 30, 23, 0))],
]
RESTARTS = [
    # Lost its state file: every counter starts again, backup groups re-read 7 days of tasks.
    ExporterRestart(back_at=utc(2026, 8, 15, 12, 0), down_for=2 * 3600, lost_state=True),
    # An ordinary restart: the counters continue.
    ExporterRestart(back_at=utc(2026, 9, 5, 10, 0), down_for=10 * 60, lost_state=False),
]


def _next_success(job_id: str, after: float) -> float:
    return min(r.end for r in RUNS if r.job_id == job_id and r.ok and r.end > after)


def _failed_alerts() -> list[Alert]:
    alerts = []
    for run in RUNS:
        if not run.ok and run.job_type == "backup" and run.job_id in ("vm/101", "ct/200", "vm/102"):
            labels = {"job_id": run.job_id, "job_type": "backup", "datastore": "homelab", "service": "backups",
                      "instance": "pbs.home.arpa", "job": "pbs-exporter"}
            alerts.append(Alert("BackupJobFailed", "critical", labels, run.end + 1800,
                                _next_success(run.job_id, run.end) + EVALUATION))
    # In the quarter before: no incident of Q3.
    alerts.append(Alert("BackupsStale", "critical", {"job_id": "s-offsite", "job_type": "sync", "datastore": "homelab",
                                                     "service": "backups"}, utc(2026, 6, 22), utc(2026, 6, 23)))
    return alerts


# Restore drills: vm/101 (tier-1) weekly on Mondays at 11:00 UTC, failing once at the agent and once at the
# restore; ct/200 monthly on the 2nd; vm/102 drilled by the service but never in the quarter (its first is in Q4).
TIERS = {"vm/101": ("tier-1", 7 * 86400), "ct/200": ("default", 30 * 86400), "vm/102": ("default", 30 * 86400)}
DRILLS: list[Drill] = [
    *[Drill("vm/101", utc(2026, 6, 22, 11) + 7 * 86400 * i, None if i in (7, 11) else 300 + 10 * (i % 5),
            {7: "agent", 11: "restore"}.get(i, "none")) for i in range(16)],
    *[Drill("ct/200", utc(2026, month, 2, 12), 120 + month) for month in (6, 7, 8, 9, 10)],
    Drill("vm/102", utc(2026, 10, 5, 12), 900),
]
SIZE = 2 * 2 ** 40
START = utc(2026, 6, 20)


def used_at(t: float) -> float:
    return 800 * GIB + 2 * GIB * (t - START) / 86400


def quarter_series(times: list[float]) -> tuple[dict, ...]:
    """Every series of the generated history: the exporter's jobs and datastore, the backup alerts, the drills."""
    return (exporter_series(RUNS, RESTARTS, times), datastore_series("homelab", times[::2], SIZE, used_at),
            alert_series(_failed_alerts(), EVALUATION), drill_series(DRILLS, TIERS, times))


@pytest.fixture(scope="module")
def history(tmp_path_factory) -> Path:
    """The TSDB blocks of the generated history (Jun 20 to Oct 10, 2026)."""
    work = tmp_path_factory.mktemp("history")
    times = scrape_times(START, utc(2026, 10, 10), SCRAPE, 17)
    files = write_openmetrics(work / "openmetrics", *quarter_series(times))
    backfill(files, work / "blocks")
    shutil.rmtree(work / "openmetrics")
    return work / "blocks"


@pytest.fixture(scope="module")
def prometheus(history, tmp_path_factory):
    work = tmp_path_factory.mktemp("prometheus")
    shutil.copytree(history, work / "tsdb")
    process, url = start_prometheus(work / "tsdb", work, [f"--query.lookback-delta={LOOKBACK}"])
    yield url
    process.stop()


@pytest.fixture(scope="module")
def strict_prometheus(history, tmp_path_factory):
    """The same quarter in a Prometheus that may load only a few samples per query."""
    work = tmp_path_factory.mktemp("strict")
    shutil.copytree(history, work / "tsdb")
    process, url = start_prometheus(work / "tsdb", work, [f"--query.lookback-delta={LOOKBACK}", "--query.max-samples=100"])
    yield url
    process.stop()


# --- what the generated runs imply ----------------------------------------------------------

def quarter_edges(tz, year=2026, q=3) -> tuple[float, float]:
    start = datetime(year, 3 * q - 2, 1, tzinfo=tz)
    end = datetime(year + (q == 4), 1 if q == 4 else 3 * q + 1, 1, tzinfo=tz)
    return start.timestamp(), end.timestamp()


def expected(tz) -> dict[tuple, dict]:
    start, end = quarter_edges(tz)
    out: dict[tuple, dict] = {}
    for run in RUNS:
        if start <= run.end < end:
            job = out.setdefault(run.job, {"runs": 0, "ok": 0, "failed_at": [], "durations": []})
            job["runs"] += 1
            job["ok"] += run.ok
            job["durations"].append(run.duration)
            if not run.ok:
                job["failed_at"].append(datetime.fromtimestamp(run.end, tz).strftime("%Y-%m-%d %H:%M"))
    return out


def two_decimals(ok: int, runs: int) -> str:
    return f"{(Decimal(ok) * 100 / Decimal(runs)).quantize(Decimal('0.01'), rounding=ROUND_HALF_UP)}%"


# --- running the report ---------------------------------------------------------------------

def settings_file(directory: Path, tz: str = "Europe/Berlin", **extra) -> Path:
    cfg = homelab_config(lambda s: s["site"].update(timezone=tz))
    path = directory / f"settings-{tz.replace('/', '-')}.json"
    path.write_text(json.dumps({**report_settings(cfg, "homelab"), **extra}))
    return path


def report(*args, cwd: Path = ROOT, env=None, module="services.report") -> subprocess.CompletedProcess:
    """The report job on a settings file (``module="tools.report"``: `make report`'s front on a stack)."""
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def pdf_text(path: Path) -> str:
    return subprocess.run(["pdftotext", "-layout", str(path), "-"], capture_output=True, text=True, check=True).stdout


def job_rows(text: str) -> dict[tuple[str, str, str], tuple[int, int, int, str]]:
    """Job, type, datastore -> runs, OK, failed, success ratio, from the PDF's job table."""
    rows = {}
    for m in re.finditer(r"^\s*(\S+)\s+(backup|sync|verify|prune|gc)\s+(\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+([\d.]+%|–)",
                         text, re.M):
        rows[(m.group(1), m.group(2), m.group(3))] = (int(m.group(4)), int(m.group(5)), int(m.group(6)), m.group(7))
    return rows


@pytest.fixture(scope="module")
def berlin(prometheus, tmp_path_factory):
    out = tmp_path_factory.mktemp("berlin")
    result = report("--settings", settings_file(out), "--quarter", "2026Q3", "--prometheus-url", prometheus,
                    "--out", out)
    assert result.returncode == 0, result.stderr
    return out, pdf_text(out / "pbs-2026Q3.pdf"), json.loads((out / "pbs-2026Q3.json").read_text())


def test_pdf_shows_the_exact_counts_of_every_job(berlin):
    _, text, _ = berlin
    rows = job_rows(text)
    want = expected(BERLIN)
    assert set(rows) == set(want)
    for job, figures in want.items():
        failed = figures["runs"] - figures["ok"]
        assert rows[job] == (figures["runs"], figures["ok"], failed, two_decimals(figures["ok"], figures["runs"])), job
    # The example, spelled out.
    assert rows[("vm/101", "backup", "homelab")] == (92, 89, 3, "96.74%")


def test_summary_states_the_overall_ratio_against_the_slo(berlin):
    _, text, doc = berlin
    want = expected(BERLIN)
    runs = sum(j["runs"] for j in want.values())
    ok = sum(j["ok"] for j in want.values())
    ratio = two_decimals(ok, runs)
    met = Decimal(ok) / Decimal(runs) >= Decimal("0.995")
    assert f"All jobs: {ratio} successful — backup SLO 99.50% {'met' if met else 'missed'}" in text
    # Error budget used: failures over the 0.5% of the runs that may fail.
    budget = (Decimal(runs - ok) / (Decimal(runs) * Decimal("0.005")) * 100).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP)
    summary_numbers = re.search(r"Jobs\s+Runs\s+Successful\s+Failed.*\n\s*(.+)", text).group(1).split()
    assert summary_numbers[:6] == [str(len(want)), str(runs), str(ok), str(runs - ok), ratio, f"{budget}%"]
    assert doc["summary"]["runs"] == runs and doc["summary"]["slo_met"] is met


def test_runs_of_the_neighbouring_quarters_are_not_counted(berlin):
    _, text, _ = berlin
    rows = job_rows(text)
    # Its June 30 run ended at 23:59 Berlin and was scraped in July; its September 30 run ended
    # at 23:59 and was scraped in October: the first is left out, the second counted.
    assert rows[("vm/102", "backup", "homelab")][:3] == (92, 91, 1)
    assert "2026-09-30 23:59" in text
    # Only the manual runs that ended in the quarter.
    assert rows[("manual", "verify", "homelab")][0] == 4


def expected_failures(tz) -> dict[tuple, list[tuple[str, bool]]]:
    """Per job, (local end time, exact) of its failures: runs that one scrape sees together are
    one change point, timed by the latest of them (docs/reports.md)."""
    start, end = quarter_edges(tz)
    grid = scrape_times(START, utc(2026, 10, 10), SCRAPE, 17)
    seen_together: dict[tuple, list[Run]] = {}
    for run in RUNS:
        seen = grid[bisect.bisect_left(grid, run.end + POLL_LAG)]
        seen_together.setdefault((run.job, seen), []).append(run)
    out: dict[tuple, list[tuple[str, bool]]] = {}
    for (job, _), runs in sorted(seen_together.items(), key=lambda kv: max(r.end for r in kv[1])):
        latest = max(r.end for r in runs)
        if start <= latest < end and not all(r.ok for r in runs):
            out.setdefault(job, []).append((datetime.fromtimestamp(latest, tz).strftime("%Y-%m-%d %H:%M"),
                                            len(runs) == 1))
    return out


def test_every_failure_is_listed_with_its_time(berlin):
    _, text, doc = berlin
    section = text[text.index("Failed runs ("):text.index("Datastores")]
    want = expected_failures(BERLIN)
    for job, failures in want.items():
        for at, exact in failures:
            marker = "" if exact else r" \(latest of the runs seen at once\)"
            assert re.search(rf"{at}{marker}\s+{re.escape(job[0])}\s+{job[1]}", section), (job, at)
    total_failed = sum(j["runs"] - j["ok"] for j in expected(BERLIN).values())
    assert f"Failed runs ({total_failed})" in text
    listed = {(j["job_id"], j["job_type"], j["datastore"]): [(f["time"][:16].replace("T", " "), f["exact_time"])
                                                             for f in j["failed_runs"]] for j in doc["jobs"]}
    assert {job: failures for job, failures in listed.items() if failures} == want
    # The issue's example job failed alone each time: its times are its runs' own.
    assert want[("vm/101", "backup", "homelab")] == [("2026-07-14 03:00", True), ("2026-08-09 03:00", True),
                                                     ("2026-09-21 03:00", True)]


def test_a_counter_reset_mid_quarter_neither_loses_nor_recounts_runs(berlin):
    _, text, doc = berlin
    rows = job_rows(text)
    want = expected(BERLIN)
    # The exporter lost its state on 15 August: daily jobs re-read 7 days of runs (not counted
    # again), the fortnightly verify started again from 0.
    for job in [("homelab", "gc", "homelab"), ("v-fortnight", "verify", "homelab"), ("s-offsite", "sync", "homelab")]:
        assert rows[job][0] == want[job]["runs"], job
    resets = {(j["job_id"], j["job_type"]): j["counter_resets"] for j in doc["jobs"]}
    assert resets[("homelab", "gc")] and not resets[("homelab", "gc")][0]["counted"]
    assert resets[("v-fortnight", "verify")][0]["value"] == 0
    assert "counters of 9 job(s) started again from zero (it lost its state file)" in text


def test_the_time_zone_moves_the_quarters_edges(prometheus, tmp_path):
    result = report("--settings", settings_file(tmp_path, "Etc/UTC"), "--quarter", "2026Q3", "--prometheus-url",
                    prometheus, "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    text = pdf_text(tmp_path / "pbs-2026Q3.pdf")
    rows = job_rows(text)
    want = expected(UTC)
    for job, figures in want.items():
        assert rows[job][:3] == (figures["runs"], figures["ok"], figures["runs"] - figures["ok"]), job
    # ct/200's failure ended at 00:30 on 1 July in Berlin, 22:30 on 30 June in UTC.
    berlin_ct200 = expected(BERLIN)[("ct/200", "backup", "homelab")]
    assert rows[("ct/200", "backup", "homelab")][2] == 0 and berlin_ct200["runs"] - berlin_ct200["ok"] == 1
    assert rows[("manual", "verify", "homelab")][0] == 2
    assert "1 Jul – 30 Sep 2026 (Etc/UTC)" in text


def test_durations_last_success_and_longest_gap(berlin):
    _, text, doc = berlin
    figures = expected(BERLIN)[("vm/101", "backup", "homelab")]
    vm101 = next(j for j in doc["jobs"] if j["job_id"] == "vm/101")
    assert vm101["duration_p50_seconds"] == pytest.approx(numpy.percentile(figures["durations"], 50), abs=0.1)
    assert vm101["duration_p95_seconds"] == pytest.approx(numpy.percentile(figures["durations"], 95), abs=0.1)
    row = next(line for line in text.splitlines() if line.strip().startswith("vm/101 "))
    assert f"{round(numpy.percentile(figures['durations'], 50) / 60)} min" in row
    # Every run at 01:00 UTC; a failure leaves two days between successes.
    assert vm101["longest_gap_seconds"] == 2 * 86400
    assert vm101["last_success"] == "2026-09-30T03:00:00+02:00"


def test_datastore_growth_and_days_until_full(berlin):
    _, text, doc = berlin
    (store,) = doc["datastores"]
    start, end = quarter_edges(BERLIN)
    growth_per_day = 2 * GIB  # the generated linear growth
    assert store["growth_bytes_per_day"] == pytest.approx(growth_per_day, rel=1e-3)
    full_in = (SIZE - used_at(end)) / growth_per_day
    assert store["days_until_full"] == pytest.approx(full_in, abs=1)
    section = text[text.index("Datastores\n"):]
    row = re.search(r"^\s*homelab\s+2\.0 TiB\s+(\S+) GiB\s+([\d.]+)%\s+(\S+) GiB\s+(\S+) GiB\s+(\d+) days", section, re.M)
    assert row, section[:400]
    assert float(row.group(1)) == pytest.approx(used_at(end - 3600) / GIB, abs=0.1)
    assert float(row.group(3)) == pytest.approx((used_at(end - 3600) - used_at(start)) / GIB, abs=0.1)
    assert float(row.group(4)) == pytest.approx(2.0, abs=0.05)
    assert abs(int(row.group(5)) - full_in) <= 1


def test_backup_incidents_come_from_the_alerts_series(berlin):
    _, text, doc = berlin
    # Three failures of vm/101 and ct/200's failure of 1 July (Berlin); the June BackupsStale and
    # vm/102's alert (from 00:29 on 1 October) are outside the quarter.
    assert "Backup incidents (4)" in text
    assert [sorted(i["jobs"]) for i in doc["incidents"]] == [["backup ct/200"]] + [["backup vm/101"]] * 3
    first_vm101 = doc["incidents"][1]
    failed = utc(2026, 7, 14, 1, 0)
    assert first_vm101["duration_seconds"] == pytest.approx(_next_success("vm/101", failed) + EVALUATION
                                                            - (failed + 1800), abs=EVALUATION)


def test_json_and_csv_carry_the_same_figures(berlin):
    out, _, doc = berlin
    csv_rows = (out / "pbs-2026Q3.csv").read_text().splitlines()
    header = csv_rows[0].split(",")
    by_job = {tuple(r.split(",")[:3]): dict(zip(header, r.split(","))) for r in csv_rows[1:]}
    for job, figures in expected(BERLIN).items():
        assert int(by_job[job]["runs"]) == figures["runs"]
        assert int(by_job[job]["failures"]) == figures["runs"] - figures["ok"]
    assert len(doc["jobs"]) == len(csv_rows) - 1
    assert doc["quarter"] == "2026Q3" and doc["start"] == "2026-07-01T00:00:00+02:00"


def test_a_quarter_without_data_says_so(prometheus, tmp_path):
    result = report("--settings", settings_file(tmp_path), "--quarter", "2025Q4", "--prometheus-url", prometheus,
                    "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Prometheus holds no data of the PBS job exporter for 2025 Q4" in pdf_text(tmp_path / "pbs-2025Q4.pdf")
    assert json.loads((tmp_path / "pbs-2025Q4.json").read_text())["has_data"] is False


# --- bad input ------------------------------------------------------------------------------

def _current_quarter(tz) -> str:
    now = datetime.now(tz)
    return f"{now.year}Q{(now.month - 1) // 3 + 1}"


BAD = {
    "unknown quarter": (["--quarter", "2026Q5"], 2, r"unknown quarter '2026Q5'"),
    "future quarter": (["--quarter", f"{datetime.now().year + 1}Q2"], 2, r"is in the future"),
    "unfinished quarter": (["--quarter", _current_quarter(BERLIN)], 2, r"has not ended yet"),
    "unreachable": (["--quarter", "2026Q3", "--prometheus-url", "http://127.0.0.1:9"], 1,
                    r"cannot reach Prometheus at http://127\.0\.0\.1:9: Connection refused"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_is_one_line_and_leaves_no_pdf(case, tmp_path):
    args, status, message = BAD[case]
    _bad_run(tmp_path, args, status, message)


def test_the_stacks_unreachable_prometheus_names_prometheus_url_and_the_port_forward(monkeypatch, capsys):
    """`make report` on a laptop: the stack's in-cluster Prometheus has no address there."""
    from services.report import PrometheusUnreachable, make
    from tools.report import main

    def unreachable(settings, quarter, now, url=None):
        with pytest.raises(PrometheusUnreachable):  # what the client raises for a refused connection
            make.Prometheus("http://127.0.0.1:9").instant("up", now)
        raise PrometheusUnreachable(f"cannot reach Prometheus at {settings.prometheus_url}: Name or service not known")

    monkeypatch.setattr(make, "make_report", unreachable)
    assert main(["--stack", "homelab", "--quarter", "2026Q2"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("pbs-report: error: cannot reach Prometheus at http://kube-prometheus-stack-prometheus.monitoring")
    assert err.rstrip().endswith("outside the cluster, run `kubectl -n monitoring port-forward "
                                 "svc/kube-prometheus-stack-prometheus 9090:9090` in another shell, then "
                                 "`make report PROMETHEUS_URL=http://127.0.0.1:9090`")


def test_the_job_needs_to_be_told_where_the_files_go(tmp_path):
    result = report("--settings", settings_file(tmp_path), "--quarter", "2026Q3", "--prometheus-url", "http://127.0.0.1:9")
    assert result.returncode == 2
    assert result.stderr == "pbs-report: error: where should the files go? --out DIR, or --publish to the settings' archive\n"


def _bad_run(tmp_path: Path, args: list[str], status: int, message: str) -> None:
    old = tmp_path / "pbs-2026Q3.pdf"
    old.write_bytes(b"%PDF- the previous report")
    result = report("--settings", settings_file(tmp_path), "--out", tmp_path, *args)
    assert result.returncode == status
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("pbs-report: error: ") and re.search(message, lines[0]), lines
    assert old.read_bytes() == b"%PDF- the previous report"
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith("settings-")] == [old.name]


@pytest.mark.parametrize("content, message", [
    ("{not json", r"is not JSON"),
    (json.dumps({"stack": "homelab"}), r"site is required"),
    (None, r"slo_objective_percent must be a float \(got 'high'\)"),
])
def test_a_bad_settings_file_is_one_line(tmp_path, content, message):
    path = tmp_path / "settings.json"
    if content is None:
        doc = json.loads(settings_file(tmp_path).read_text())
        content = json.dumps({**doc, "slo_objective_percent": "high"})
    path.write_text(content)
    result = report("--settings", path, "--quarter", "2026Q3", "--out", tmp_path)
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1, result.stderr
    assert re.search(message, result.stderr) and not list(tmp_path.glob("pbs-*"))


def test_prometheus_answering_an_api_error(strict_prometheus, tmp_path):
    _bad_run(tmp_path, ["--quarter", "2026Q3", "--prometheus-url", strict_prometheus], 1,
             r"answered HTTP 422: execution: query processing would load too many samples")


def test_something_else_than_prometheus_at_the_url(prometheus, tmp_path):
    _bad_run(tmp_path, ["--quarter", "2026Q3", "--prometheus-url", f"{prometheus}/not-here"], 1,
             r"answered HTTP 404 \(text/plain\) that is not Prometheus' API: 404 page not found")


# --- the scheduled job: archive, retention, announcement --------------------------------------

class _Chat(BaseHTTPRequestHandler):
    received: list = []
    status = 200

    def do_POST(self):
        body = self.rfile.read(int(self.headers["Content-Length"]))
        type(self).received.append((self.path, json.loads(body)))
        self.send_response(type(self).status)
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args):
        pass


@pytest.fixture
def chat():
    _Chat.received, _Chat.status = [], 200
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Chat)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


def _job_settings(tmp_path: Path, chat) -> tuple[Path, Path, str]:
    """The settings.json the stack renders for the CronJob, re-pointed at local paths."""
    cfg = homelab_config()
    settings = json.loads(config_map_data(cfg, "homelab")["settings.json"])
    archive = tmp_path / "archive"
    archive.mkdir()
    webhook = f"http://127.0.0.1:{chat.server_address[1]}/hooks/webhook-secret-123"
    (tmp_path / "webhook-url").write_text(webhook + "\n")
    settings["archive"]["directory"] = str(archive)
    settings["announce"]["webhook_url_file"] = str(tmp_path / "webhook-url")
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(settings))
    return path, archive, webhook


def _shipped_code(directory: Path) -> Path:
    """The ConfigMap's files laid out as the CronJob mounts them."""
    for name, content in config_map_data(homelab_config(), "homelab").items():
        target = directory / (name.replace(".", "/", 1) if name.endswith(".py") else name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    return directory


def test_without_reportlab_the_job_says_so_before_asking_prometheus(tmp_path):
    # -S: no site-packages, as the job's image before its init container installed reportlab.
    code = _shipped_code(tmp_path / "code")
    result = subprocess.run([sys.executable, "-S", "-m", "report", "--settings", str(settings_file(tmp_path)),
                             "--quarter", "2026Q3", "--prometheus-url", "http://127.0.0.1:9", "--out", str(tmp_path)],
                            cwd=code, capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("pbs-report: error: cannot make the PDF without reportlab (No module named")
    assert len(result.stderr.splitlines()) == 1 and not list(tmp_path.glob("pbs-*"))


def test_the_scheduled_job_archives_prunes_and_announces(prometheus, chat, tmp_path):
    settings, archive, webhook = _job_settings(tmp_path, chat)
    # 7 years of retention (Pulumi.homelab.yaml): 2019Q3 is 7 years before 2026Q3 and goes.
    for name in ("pbs-2019Q3.pdf", "pbs-2019Q3.json", "pbs-2019Q4.pdf", "pbs-2025Q1.csv", "notes.txt"):
        (archive / name).write_text("x")
    # The job runs the shipped files alone: only the ConfigMap's modules, no model/, no pydantic.
    code = _shipped_code(tmp_path / "code")
    command = report_command()
    assert command[:3] == ["python", "-m", "report"] and command[-1] == "--publish"
    result = subprocess.run([sys.executable, "-m", "report", "--settings", str(settings), "--publish",
                             "--quarter", "2026Q3", "--prometheus-url", prometheus], cwd=code,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in archive.iterdir()) == [
        "notes.txt", "pbs-2019Q4.pdf", "pbs-2025Q1.csv", "pbs-2026Q3.csv", "pbs-2026Q3.json", "pbs-2026Q3.pdf"]
    ((path, message),) = _Chat.received
    assert path == "/hooks/webhook-secret-123"
    assert message["channel"] == "backups" and message["username"] == "pbs-report"
    assert "**PBS job report 2026 Q3**" in message["text"]
    assert "`nas.home.arpa:/mnt/tank/pbs-reports/pbs-2026Q3.pdf`" in message["text"]
    assert "vm/101 (96.74%)" in message["text"]
    assert webhook not in result.stdout + result.stderr


def test_an_unreachable_chat_fails_the_job_without_showing_the_webhook(prometheus, chat, tmp_path):
    settings, archive, webhook = _job_settings(tmp_path, chat)
    _Chat.status = 500
    result = report("--settings", settings, "--publish", "--quarter", "2026Q3", "--prometheus-url", prometheus)
    assert result.returncode == 1
    assert result.stderr.strip() == (f"pbs-report: error: the backup room's webhook (from {tmp_path}/webhook-url) "
                                     "answered HTTP 500; the report is archived but not announced")
    assert (archive / "pbs-2026Q3.pdf").is_file()
    assert webhook not in result.stdout + result.stderr


# --- make report ----------------------------------------------------------------------------

def test_make_report_passes_quarter_and_prometheus_url():
    # Under `make test` this make is nested and would print "Entering/Leaving directory" lines.
    result = subprocess.run(["make", "--no-print-directory", "-n", "report", "QUARTER=2026Q3",
                             "PROMETHEUS_URL=http://127.0.0.1:9090"],
                            cwd=ROOT, capture_output=True, text=True, check=True)
    assert result.stdout.splitlines()[-1].endswith(
        "-m tools.report --stack-file Pulumi.homelab.yaml --quarter 2026Q3 --prometheus-url http://127.0.0.1:9090")


def test_report_of_a_stack_file(prometheus, tmp_path):
    from tests.stacks import write_stack

    stack = write_stack(tmp_path, lambda s: s["site"].update(timezone="Etc/UTC"), stack="lab")
    result = report("--stack-file", stack, "--quarter", "2026Q3", "--prometheus-url", prometheus, "--out", tmp_path,
                    module="tools.report")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"PBS job report 2026Q3: {tmp_path}/pbs-2026Q3.pdf (.json, .csv): 9 jobs, ")
    assert json.loads((tmp_path / "pbs-2026Q3.json").read_text())["timezone"] == "Etc/UTC"


def test_a_broken_stack_file_fails_before_prometheus_is_asked(tmp_path):
    from tests.stacks import write_stack

    stack = write_stack(tmp_path, lambda s: s["metrics"]["prometheus"].update(retention="30d"), stack="lab")
    result = report("--stack-file", stack, "--out", tmp_path, "--prometheus-url", "http://127.0.0.1:9",
                    module="tools.report")
    assert result.returncode == 2
    assert "metrics.prometheus.retention: must be at least 93d with reports" in result.stderr
    assert "Traceback" not in result.stderr and not list(tmp_path.glob("pbs-*"))


# --- the report read from the long-term store (metrics.longTerm) -------------------------------

def _without_source(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in ("prometheus_url", "generated_at")}


def test_the_report_from_victoria_metrics_is_the_report_from_prometheus(berlin, tmp_path):
    """With metrics.longTerm the report reads vmselect's Prometheus API (model/reports.py): single-node
    VictoriaMetrics at the chart's version, holding the same history, must give the same figures."""
    from tests.long_term_world import import_openmetrics, start_victoria_metrics
    from tools.drill.processes import ProcessSupervisor, free_port

    times = scrape_times(START, utc(2026, 10, 10), SCRAPE, 17)
    files = write_openmetrics(tmp_path / "openmetrics", *quarter_series(times))
    port = free_port()
    with ProcessSupervisor() as supervisor:
        start_victoria_metrics(supervisor, tmp_path / "vm", port, tmp_path / "vm.log")
        url = f"http://127.0.0.1:{port}"
        assert import_openmetrics(url, files) > 100_000
        result = report("--settings", settings_file(tmp_path), "--quarter", "2026Q3", "--prometheus-url", url,
                        "--out", tmp_path)
    assert result.returncode == 0, result.stderr
    from_store = _without_source(json.loads((tmp_path / "pbs-2026Q3.json").read_text()))
    from_prometheus = _without_source(berlin[2])
    # Every count, time and ratio is equal; the datastore's bytes to the last bits of a double
    # (VictoriaMetrics stores floats as scaled integers).
    assert from_store["jobs"] == from_prometheus["jobs"]
    for key in from_prometheus:
        if key != "datastores":
            assert from_store[key] == from_prometheus[key], key
    for got, want in zip(from_store["datastores"], from_prometheus["datastores"], strict=True):
        assert {k: pytest.approx(v, rel=1e-12) if isinstance(v, float) else v for k, v in want.items()} == got


def test_the_restore_section_counts_each_guest_s_drills_and_rtos(berlin):
    _, text, doc = berlin
    start, end = quarter_edges(BERLIN)
    want = {}
    for d in DRILLS:
        if start <= d.start < end:
            row = want.setdefault(d.guest, {"passed": 0, "failed": 0, "failed_steps": [], "rtos": []})
            row["passed" if d.rto is not None else "failed"] += 1
            if d.rto is None:
                row["failed_steps"].append(d.step)
            else:
                row["rtos"].append(d.rto)
    got = {r["guest"]: r for r in doc["restore_drills"]}
    assert set(got) == set(TIERS)
    for guest, row in want.items():
        assert (got[guest]["passed"], got[guest]["failed"], got[guest]["failed_steps"]) == (
            row["passed"], row["failed"], row["failed_steps"]), guest
        assert (got[guest]["rto_min_seconds"], got[guest]["rto_median_seconds"], got[guest]["rto_max_seconds"]) == (
            min(row["rtos"]), float(numpy.median(row["rtos"])), max(row["rtos"])), guest
    assert got["vm/102"]["drills"] == 0 and got["vm/102"]["rto_median_seconds"] is None  # never drilled this quarter
    assert f"Restore drills ({sum(r['passed'] + r['failed'] for r in want.values())})" in text
    assert "never drilled: vm/102" in " ".join(text.split())
