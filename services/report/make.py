"""One report: read Prometheus, compute the figures, write PDF, JSON and CSV."""

from __future__ import annotations

import json
from fractions import Fraction

from . import collect
from .figures import Report, Window, datastore_figures, drill_figures, incidents, job_figures, percent
from .prometheus import Prometheus
from .quarter import Quarter
from .settings import ReportSettings


def objective(settings: ReportSettings) -> Fraction:
    return Fraction(str(settings.slo_objective_percent)) / 100


def make_report(settings: ReportSettings, quarter: Quarter, now: float, prometheus_url: str | None = None) -> Report:
    tz = settings.tz
    url = prometheus_url or settings.prometheus_url
    prom = Prometheus(url)
    window = Window(quarter.start(tz).timestamp(), quarter.end(tz).timestamp(), tz)
    read_until = min(window.end + collect.READ_AFTER_END, now)
    jobs = collect.job_samples(prom, window.start, read_until)
    stores = collect.datastore_samples(prom, window.start, window.end)
    alerts = collect.alert_samples(prom, settings.incident_selector, window.start, window.end)
    drills = collect.drill_samples(prom, window.start, window.end)
    return Report(
        quarter=str(quarter), title=quarter.title, span=quarter.span(tz), site=settings.site,
        timezone=settings.timezone, window=window, read_until=read_until, generated_at=now,
        prometheus_url=url, objective=objective(settings),
        jobs=job_figures(jobs, window), datastores=datastore_figures(stores, window),
        incidents=incidents(alerts, window, settings.evaluation_interval_seconds), drills=drill_figures(drills, window),
    )


def writers(report: Report) -> dict:
    from .pdf import write_pdf
    from .tables import jobs_csv, report_json

    return {
        "pdf": lambda path: write_pdf(report, path),
        "json": lambda path: path.write_text(json.dumps(report_json(report), indent=2, ensure_ascii=False) + "\n"),
        "csv": lambda path: path.write_text(jobs_csv(report)),
    }


def one_line(report: Report) -> str:
    s = report.summary
    if not report.has_data:
        return f"no PBS job data in Prometheus for {report.title}"
    if not s.runs:
        return f"{len(report.jobs)} jobs, no runs"
    verdict = "met" if s.slo_met else "missed"
    return (f"{len(report.jobs)} jobs, {s.runs} runs, {s.failures} failed, {percent(s.ratio)} successful "
            f"(SLO {percent(report.objective)} {verdict}), {len(report.incidents)} backup incidents")


def announcement(report: Report, location: str) -> str:
    s = report.summary
    head = f"**PBS job report {report.title}** (site {report.site})"
    if not report.has_data:
        body = "Prometheus holds no PBS job data for this quarter."
    elif not s.runs:
        body = "No PBS job ran this quarter."
    else:
        body = (f"{percent(s.ratio)} of {s.runs} runs successful: backup SLO {percent(report.objective)} "
                f"**{'met' if s.slo_met else 'missed'}**. {s.failures} failed runs, "
                f"{len(report.incidents)} backup incidents.")
        below = sorted((j for j in report.jobs if j.ratio is not None and j.ratio < report.objective),
                       key=lambda j: j.ratio)
        if below:
            body += " Below the SLO: " + ", ".join(f"{j.job_type} {j.job_id} ({percent(j.ratio)})"
                                                   for j in below[:5]) + (" …" if len(below) > 5 else "") + "."
    return f"{head}: {body}\nReport: `{location}/pbs-{report.quarter}.pdf` (figures in .json and .csv beside it)."
