"""The report's figures as JSON (everything) and CSV (one row per job), for spreadsheets and scripts."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from typing import Any

from .figures import Report, budget_used, duration_trend, percent_value


def _time(t: float | None, report: Report) -> str | None:
    return None if t is None else datetime.fromtimestamp(t, report.window.tz).isoformat(timespec="seconds")


def _number(value: Any) -> float | None:
    if value is None:
        return None
    return float(value)


def _trend(value: float | None) -> float | None:
    return None if value is None else round(100 * value, 1)


def job_rows(report: Report) -> list[dict[str, Any]]:
    rows = []
    for job in report.jobs:
        gap = job.longest_gap
        p50, p95 = job.duration_quantile(0.5), job.duration_quantile(0.95)
        rows.append({
            "job_id": job.job_id, "job_type": job.job_type, "datastore": job.datastore, "instance": job.instance,
            "runs": job.runs, "successes": job.successes, "failures": job.failures,
            "success_percent": _number(percent_value(job.ratio)),
            "error_budget_used_percent": _number(percent_value(budget_used(job.runs, job.failures, report.objective))),
            "duration_p50_seconds": None if p50 is None else round(p50, 1),
            "duration_p95_seconds": None if p95 is None else round(p95, 1),
            "duration_p50_trend_percent": _trend(duration_trend(job, report.window)),
            "last_success": _time(job.last_success, report),
            "longest_gap_seconds": None if gap is None else round(gap[1] - gap[0]),
            "longest_gap_start": _time(gap[0], report) if gap else None,
            "longest_gap_end": _time(gap[1], report) if gap else None,
        })
    return rows


def report_json(report: Report) -> dict[str, Any]:
    summary = report.summary
    jobs = job_rows(report)
    for row, job in zip(jobs, report.jobs):
        row["failed_runs"] = [{"time": _time(f.time, report), "runs": f.runs, "exact_time": f.exact}
                              for f in job.failure_list]
        row["counter_resets"] = [{"time": _time(r.time, report), "value": r.value, "counted": r.counted}
                                 for r in job.resets]
    return {
        "quarter": report.quarter,
        "site": report.site,
        "timezone": report.timezone,
        "start": _time(report.window.start, report),
        "end": _time(report.window.end, report),
        "data_read_until": _time(report.read_until, report),
        "generated_at": _time(report.generated_at, report),
        "prometheus_url": report.prometheus_url,
        "slo_objective_percent": float(report.objective * 100),
        "has_data": report.has_data,
        "summary": {
            "jobs": len(report.jobs), "runs": summary.runs, "successes": summary.successes,
            "failures": summary.failures, "success_percent": _number(percent_value(summary.ratio)),
            "slo_met": summary.slo_met,
            "error_budget_used_percent": _number(percent_value(budget_used(summary.runs, summary.failures,
                                                                           report.objective))),
            "incidents": len(report.incidents),
        },
        "jobs": jobs,
        "datastores": [{
            "datastore": d.datastore, "instance": d.instance, "size_bytes": _number(d.size),
            "used_bytes_start": _number(d.used_start), "used_bytes_end": _number(d.used_end),
            "available_bytes": _number(d.available), "growth_bytes": _number(d.growth),
            "growth_bytes_per_day": None if d.growth_per_day is None else round(d.growth_per_day),
            "days_until_full": None if d.days_until_full is None else round(d.days_until_full, 1),
        } for d in report.datastores],
        "incidents": [{
            "start": _time(i.start, report), "end": _time(i.end, report), "duration_seconds": round(i.duration),
            "began_before_quarter": i.began_before, "ongoing_at_quarter_end": i.ongoing,
            "alerts": [{"alertname": a, "severity": s} for a, s in sorted(i.alerts)], "jobs": sorted(i.jobs),
        } for i in report.incidents],
        "daily": [{"date": d.isoformat(), "successes": ok, "failures": failed} for d, ok, failed in report.daily()],
        "restore_drills": [{
            "guest": d.guest, "drills": d.runs, "passed": d.passed, "failed": d.failed, "failed_steps": list(d.failed_steps),
            **{f"rto_{which}_seconds": _number(d.rto(which)) for which in ("min", "median", "max")},
        } for d in report.drills],
    }


CSV_COLUMNS = ("job_id", "job_type", "datastore", "instance", "runs", "successes", "failures", "success_percent",
               "error_budget_used_percent", "duration_p50_seconds", "duration_p95_seconds",
               "duration_p50_trend_percent", "last_success", "longest_gap_seconds")


def jobs_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for row in job_rows(report):
        writer.writerow({k: "" if v is None else v for k, v in row.items()})
    return out.getvalue()
