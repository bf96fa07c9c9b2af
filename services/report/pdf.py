"""The report as a PDF (reportlab): summary first, then pictures, then every figure per job.

Landscape A4, because the job table has thirteen columns. Charts are reportlab drawings, so
the PDF stays vector and its text (axis labels included) is extractable.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

from reportlab.graphics.charts.barcharts import VerticalBarChart
from reportlab.graphics.charts.legends import Legend
from reportlab.graphics.charts.lineplots import LinePlot
from reportlab.graphics.shapes import Drawing, String
from reportlab.graphics.widgets.markers import makeMarker
from reportlab.lib import colors
from reportlab.lib.enums import TA_RIGHT
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import (CondPageBreak, KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table,
                                TableStyle)

from contracts.metrics import PBS_JOB_ATTEMPT, PBS_JOB_LAST_DURATION, PBS_JOB_LAST_RUN, PBS_JOB_SUCCESS

from .figures import JobFigures, Report, budget_used, duration_trend, percent, quantile

PAGE = landscape(A4)
MARGIN = 14 * mm
WIDTH = PAGE[0] - 2 * MARGIN

INK = colors.HexColor("#1f2a30")
MUTED = colors.HexColor("#5f6b73")
RULE = colors.HexColor("#cfd8dc")
HEADER_BG = colors.HexColor("#263238")
STRIPE = colors.HexColor("#f4f6f7")
OK = colors.HexColor("#2e7d32")
FAIL = colors.HexColor("#c62828")
FAIL_TINT = colors.HexColor("#fdecea")
SERIES = [colors.HexColor(c) for c in ("#1565c0", "#ef6c00", "#6a1b9a", "#00838f", "#ad1457", "#558b2f",
                                       "#4e342e", "#283593")]
SLOWEST_JOBS_CHARTED = 6

_styles = getSampleStyleSheet()
BODY = ParagraphStyle("body", parent=_styles["BodyText"], fontName="Helvetica", fontSize=9, leading=12,
                      textColor=INK)
SMALL = ParagraphStyle("small", parent=BODY, fontSize=7.5, leading=9.5, textColor=MUTED)
H1 = ParagraphStyle("h1", parent=BODY, fontName="Helvetica-Bold", fontSize=20, leading=24, spaceAfter=2)
H2 = ParagraphStyle("h2", parent=BODY, fontName="Helvetica-Bold", fontSize=13, leading=16, spaceBefore=10,
                    spaceAfter=5)
VERDICT = ParagraphStyle("verdict", parent=BODY, fontName="Helvetica-Bold", fontSize=14, leading=18)
CELL = ParagraphStyle("cell", parent=BODY, fontSize=7.5, leading=9)
CELL_RIGHT = ParagraphStyle("cellr", parent=CELL, alignment=TA_RIGHT)


# --- formatting -----------------------------------------------------------------------------

def when(t: float | None, report: Report) -> str:
    return "–" if t is None else datetime.fromtimestamp(t, report.window.tz).strftime("%Y-%m-%d %H:%M")


def span(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    seconds = round(seconds)
    if seconds < 120:
        return f"{seconds} s"
    minutes = round(seconds / 60)
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def size(value: float | None) -> str:
    if value is None:
        return "–"
    for unit, factor in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20)):
        if abs(value) >= factor:
            return f"{value / factor:.1f} {unit}"
    return f"{value:.0f} B"


def trend(value: float | None) -> str:
    if value is None:
        return "–"
    return "0%" if round(100 * value) == 0 else f"{100 * value:+.0f}%"


def days(value: float | None) -> str:
    if value is None:
        return "not filling up"
    return f"{value:.0f} days" if value >= 1 else "less than a day"


def _table(rows: list[list], widths: list[float], numeric_from: int, tints: dict[int, colors.Color] | None = None
           ) -> Table:
    table = Table(rows, colWidths=widths, repeatRows=1)
    style = [
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 7.5),
        ("FONT", (0, 1), (-1, -1), "Helvetica", 7.5),
        ("TEXTCOLOR", (0, 0), (-1, 0), colors.white),
        ("BACKGROUND", (0, 0), (-1, 0), HEADER_BG),
        ("ALIGN", (numeric_from, 0), (-1, -1), "RIGHT"),
        ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
        ("LINEBELOW", (0, 1), (-1, -1), 0.25, RULE),
        ("TOPPADDING", (0, 0), (-1, -1), 2.5),
        ("BOTTOMPADDING", (0, 0), (-1, -1), 2.5),
    ]
    for i in range(1, len(rows)):
        if i % 2 == 0:
            style.append(("BACKGROUND", (0, i), (-1, i), STRIPE))
    for i, tint in (tints or {}).items():
        style.append(("BACKGROUND", (0, i), (-1, i), tint))
    table.setStyle(TableStyle(style))
    return table


# --- charts ---------------------------------------------------------------------------------

def _legend(drawing: Drawing, pairs: list[tuple[colors.Color, str]], x: float, y: float, columns: int = 8) -> float:
    """A legend in rows of `columns` entries whose top is at y; returns the y below it."""
    legend = Legend()
    legend.x, legend.y = x, y
    legend.alignment = "right"
    legend.fontName, legend.fontSize = "Helvetica", 7
    rows = -(-len(pairs) // columns)
    legend.columnMaximum = rows
    legend.deltax, legend.deltay = 92, 10
    legend.dxTextSpace = 4
    legend.dx = legend.dy = 7
    legend.colorNamePairs = pairs
    drawing.add(legend)
    return y - 10 * rows


def _title(drawing: Drawing, text: str) -> None:
    drawing.add(String(0, drawing.height - 10, text, fontName="Helvetica-Bold", fontSize=9, fillColor=INK))


def daily_chart(report: Report) -> Drawing:
    daily = report.daily()
    drawing = Drawing(WIDTH, 125)
    _title(drawing, "Runs per day: successful and failed")
    chart = VerticalBarChart()
    chart.x, chart.y, chart.width, chart.height = 30, 18, WIDTH - 40, 85
    chart.data = [[ok for _, ok, _ in daily] or [0], [failed for _, _, failed in daily] or [0]]
    chart.categoryAxis.style = "stacked"
    chart.categoryAxis.categoryNames = [d.strftime("%-d %b") if d.day in (1, 8, 15, 22) else "" for d, _, _ in daily]
    chart.categoryAxis.labels.fontName, chart.categoryAxis.labels.fontSize = "Helvetica", 6.5
    chart.categoryAxis.tickDown = 0
    chart.valueAxis.labels.fontName, chart.valueAxis.labels.fontSize = "Helvetica", 6.5
    chart.valueAxis.valueMin = 0
    chart.valueAxis.gridStrokeColor, chart.valueAxis.visibleGrid = RULE, True
    chart.barSpacing, chart.groupSpacing = 0, 1
    chart.bars.strokeWidth = 0
    chart.bars[0].fillColor, chart.bars[1].fillColor = OK, FAIL
    drawing.add(chart)
    _legend(drawing, [(OK, "successful"), (FAIL, "failed")], WIDTH - 150, drawing.height - 4)
    return drawing


def _time_axis(plot: LinePlot, report: Report) -> None:
    start = report.window.local(report.window.start)
    months = [(m_start - report.window.start) / 86400 for m_start, _ in report.window.months()]
    plot.xValueAxis.valueMin, plot.xValueAxis.valueMax = 0, (report.window.end - report.window.start) / 86400
    plot.xValueAxis.valueSteps = months
    plot.xValueAxis.labelTextFormat = lambda d: (start + timedelta(days=d)).strftime("%-d %b")
    plot.xValueAxis.labels.fontName, plot.xValueAxis.labels.fontSize = "Helvetica", 6.5
    plot.yValueAxis.labels.fontName, plot.yValueAxis.labels.fontSize = "Helvetica", 6.5
    plot.yValueAxis.visibleGrid, plot.yValueAxis.gridStrokeColor = True, RULE
    plot.yValueAxis.valueMin = 0


def datastore_chart(report: Report) -> Drawing | None:
    stores = [d for d in report.datastores if len(d.used_series) > 1]
    if not stores:
        return None
    unit, factor = ("TiB", 2 ** 40) if max(d.size or 0 for d in stores) >= 2 ** 41 else ("GiB", 2 ** 30)
    drawing = Drawing(WIDTH / 2 - 12, 150)
    _title(drawing, f"Datastore usage ({unit}), dashed: size")
    pairs = [(SERIES[i % len(SERIES)], store.datastore) for i, store in enumerate(stores)]
    top = _legend(drawing, pairs, 34, drawing.height - 16, columns=4)
    plot = LinePlot()
    plot.x, plot.y, plot.width = 34, 16, drawing.width - 44
    plot.height = top - 6 - plot.y
    data = []
    for store in stores:
        data.append([((t - report.window.start) / 86400, v / factor) for t, v in store.used_series])
        if store.size:
            data.append([(0, store.size / factor), ((report.window.end - report.window.start) / 86400,
                                                     store.size / factor)])
    plot.data = data
    index = 0
    for i, store in enumerate(stores):
        color = SERIES[i % len(SERIES)]
        plot.lines[index].strokeColor, plot.lines[index].strokeWidth = color, 1.5
        index += 1
        if store.size:
            plot.lines[index].strokeColor, plot.lines[index].strokeWidth = color, 0.75
            plot.lines[index].strokeDashArray = (3, 2)
            index += 1
    _time_axis(plot, report)
    drawing.add(plot)
    return drawing


def _weekly_p95(job: JobFigures, report: Report) -> list[tuple[float, float]]:
    weeks: dict[int, list[float]] = {}
    for t, seconds in job.durations:
        weeks.setdefault(int((t - report.window.start) // (7 * 86400)), []).append(seconds)
    return [((w + 0.5) * 7, quantile(v, 0.95) / 60) for w, v in sorted(weeks.items())]


def duration_chart(report: Report) -> Drawing | None:
    jobs = sorted((j for j in report.jobs if len(j.durations) > 1),
                  key=lambda j: -(j.duration_quantile(0.95) or 0))[:SLOWEST_JOBS_CHARTED]
    if not jobs:
        return None
    drawing = Drawing(WIDTH / 2 - 12, 150)
    _title(drawing, f"Weekly p95 duration (min) of the {len(jobs)} slowest jobs")
    pairs = [(SERIES[i % len(SERIES)], f"{j.job_type} {j.job_id}") for i, j in enumerate(jobs)]
    top = _legend(drawing, pairs, 34, drawing.height - 16, columns=3)
    plot = LinePlot()
    plot.x, plot.y, plot.width = 34, 16, drawing.width - 44
    plot.height = top - 6 - plot.y
    plot.data = [_weekly_p95(j, report) for j in jobs]
    for i in range(len(jobs)):
        plot.lines[i].strokeColor, plot.lines[i].strokeWidth = SERIES[i % len(SERIES)], 1.2
        plot.lines[i].symbol = makeMarker("FilledCircle", size=2.5, fillColor=SERIES[i % len(SERIES)])
    _time_axis(plot, report)
    drawing.add(plot)
    return drawing


# --- sections -------------------------------------------------------------------------------

def _header(report: Report) -> list:
    return [
        Paragraph(f"PBS job report · {report.title}", H1),
        Paragraph(f"Site <b>{report.site}</b> · {report.span} ({report.timezone}) · made "
                  f"{when(report.generated_at, report)} from Prometheus {report.prometheus_url}", SMALL),
        Spacer(1, 8),
    ]


def _summary(report: Report) -> list:
    s = report.summary
    objective = percent(report.objective)
    if s.runs == 0:
        verdict = Paragraph(f"No PBS job ran in {report.title}: nothing to measure against the {objective} SLO.",
                            VERDICT)
    else:
        met = s.slo_met
        color = "#2e7d32" if met else "#c62828"
        verdict = Paragraph(f"All jobs: <font color='{color}'>{percent(s.ratio)} successful — backup SLO "
                            f"{objective} {'met' if met else 'missed'}</font>", VERDICT)
    incident_time = sum(i.duration for i in report.incidents)
    below = [j for j in report.jobs if j.ratio is not None and j.ratio < report.objective]
    figures = [
        ["Jobs", "Runs", "Successful", "Failed", "Success ratio", "Error budget used", "Backup incidents",
         "Time in incidents"],
        [str(len(report.jobs)), str(s.runs), str(s.successes), str(s.failures), percent(s.ratio),
         percent(budget_used(s.runs, s.failures, report.objective)), str(len(report.incidents)),
         span(incident_time) if report.incidents else "–"],
    ]
    table = Table(figures, colWidths=[WIDTH / 8] * 8)
    table.setStyle(TableStyle([
        ("FONT", (0, 0), (-1, 0), "Helvetica", 7.5), ("TEXTCOLOR", (0, 0), (-1, 0), MUTED),
        ("FONT", (0, 1), (-1, 1), "Helvetica-Bold", 15), ("TEXTCOLOR", (0, 1), (-1, 1), INK),
        ("TOPPADDING", (0, 1), (-1, 1), 4), ("BOTTOMPADDING", (0, 1), (-1, 1), 6),
        ("LINEABOVE", (0, 0), (-1, 0), 0.5, RULE), ("LINEBELOW", (0, 1), (-1, 1), 0.5, RULE),
    ]))
    notes = []
    if below:
        names = ", ".join(f"{j.job_type} {j.job_id} ({percent(j.ratio)})" for j in
                          sorted(below, key=lambda j: j.ratio)[:8])
        more = f" and {len(below) - 8} more" if len(below) > 8 else ""
        notes.append(f"<b>{len(below)} of {len(report.jobs)} jobs</b> were below the SLO: {names}{more}.")
    elif s.runs:
        notes.append(f"Every job met the {objective} SLO on its own.")
    for d in report.datastores:
        notes.append(f"Datastore <b>{d.datastore}</b>: {size(d.used_end)} of {size(d.size)} used "
                     f"({'–' if d.used_percent is None else f'{d.used_percent:.0f}%'}), "
                     f"{'growing ' + size(d.growth_per_day) + ' a day, full in ' + days(d.days_until_full) if (d.growth_per_day or 0) > 0 else 'not growing'}.")
    return [verdict, Spacer(1, 6), table, Spacer(1, 6)] + [Paragraph(n, BODY) for n in notes]


def _jobs(report: Report) -> list:
    head = ["Job", "Type", "Datastore", "Runs", "OK", "Failed", "Success", "Budget used", "p50", "p95",
            "p50 trend", "Last success", "Longest gap"]
    rows, tints = [head], {}
    hosts = len({j.instance for j in report.jobs}) > 1
    for i, job in enumerate(report.jobs, start=1):
        name = f"{job.job_id} ({job.instance})" if hosts else job.job_id
        rows.append([name, job.job_type, job.datastore, str(job.runs), str(job.successes), str(job.failures),
                     percent(job.ratio), percent(budget_used(job.runs, job.failures, report.objective)),
                     span(job.duration_quantile(0.5)), span(job.duration_quantile(0.95)),
                     trend(duration_trend(job, report.window)), when(job.last_success, report),
                     span(job.longest_gap[1] - job.longest_gap[0]) if job.longest_gap else "–"])
        if job.ratio is not None and job.ratio < report.objective:
            tints[i] = FAIL_TINT
    w = WIDTH
    widths = [0.13 * w, 0.06 * w, 0.08 * w, 0.05 * w, 0.05 * w, 0.05 * w, 0.07 * w, 0.075 * w, 0.065 * w,
              0.065 * w, 0.065 * w, 0.11 * w, 0.09 * w]
    return [CondPageBreak(50 * mm), Paragraph("Jobs", H2),
            Paragraph(f"Success against the backup SLO of {percent(report.objective)}; the budget is the "
                      f"{percent(1 - report.objective)} of each job's runs that may fail. Durations are per run; "
                      "the trend compares the median of the quarter's last month with its first. Rows in red "
                      "missed the SLO.", SMALL),
            Spacer(1, 4), _table(rows, widths, 3, tints)]


def _failures(report: Report) -> list:
    failed = sorted(((j, f) for j in report.jobs for f in j.failure_list), key=lambda jf: jf[1].time)
    out = [CondPageBreak(60 * mm), Paragraph(f"Failed runs ({sum(f.runs for _, f in failed)})", H2)]
    if not failed:
        return out + [Paragraph("No run failed this quarter.", BODY)]
    rows = [["Ended", "Job", "Type", "Datastore", "Failed runs"]]
    for job, f in failed:
        note = "" if f.exact else " (latest of the runs seen at once)"
        rows.append([when(f.time, report) + note, job.job_id, job.job_type, job.datastore, str(f.runs)])
    w = WIDTH
    return out + [_table(rows, [0.3 * w, 0.25 * w, 0.15 * w, 0.18 * w, 0.12 * w], 4)]


def _datastores(report: Report) -> list:
    out = [CondPageBreak(70 * mm), Paragraph("Datastores", H2)]
    if not report.datastores:
        return out + [Paragraph("Prometheus holds no datastore usage for this quarter.", BODY)]
    rows = [["Datastore", "Size", "Used at the end", "Used", "Growth over the quarter", "Growth a day",
             "Full in (at that rate)"]]
    for d in report.datastores:
        rows.append([d.datastore, size(d.size), size(d.used_end),
                     "–" if d.used_percent is None else f"{d.used_percent:.1f}%", size(d.growth),
                     size(d.growth_per_day), days(d.days_until_full)])
    w = WIDTH
    return out + [_table(rows, [0.2 * w] + [0.8 * w / 6] * 6, 1)]


def _charts_row(report: Report) -> list:
    left, right = datastore_chart(report), duration_chart(report)
    cells = [c for c in (left, right) if c is not None]
    if not cells:
        return []
    row = Table([cells], colWidths=[WIDTH / 2] * len(cells))
    row.setStyle(TableStyle([("LEFTPADDING", (0, 0), (-1, -1), 0), ("VALIGN", (0, 0), (-1, -1), "TOP")]))
    return [Spacer(1, 8), KeepTogether([row])]


def _incidents(report: Report) -> list:
    out = [CondPageBreak(50 * mm), Paragraph(f"Backup incidents ({len(report.incidents)})", H2)]
    if not report.incidents:
        return out + [Paragraph("No backup alert fired this quarter.", BODY)]
    rows = [["Start", "End", "Duration", "Alerts", "Jobs"]]
    for i in report.incidents:
        alerts = ", ".join(f"{a} ({s})" if s else a for a, s in sorted(i.alerts))
        rows.append([when(i.start, report) + (" (began before)" if i.began_before else ""),
                     when(i.end, report) + (" (still firing)" if i.ongoing else ""), span(i.duration),
                     Paragraph(alerts, CELL), Paragraph(", ".join(sorted(i.jobs)) or "–", CELL)])
    w = WIDTH
    return out + [Paragraph("Firing periods of the alerts routed to the backup service, overlapping ones "
                            "merged into one incident.", SMALL), Spacer(1, 4),
                  _table(rows, [0.15 * w, 0.15 * w, 0.09 * w, 0.33 * w, 0.28 * w], 9)]


def _drills(report: Report) -> list:
    drills = report.drills
    out = [CondPageBreak(50 * mm), Paragraph(f"Restore drills ({sum(d.runs for d in drills)})", H2)]
    if not drills:
        return out + [Paragraph("No guest is restore-drilled: the recovery service's restore drills are off "
                                "or Prometheus holds none of their series for this quarter.", BODY)]
    rows, tints = [["Guest", "Drills", "Passed", "Failed", "Failed at", "RTO min", "RTO median", "RTO max"]], {}
    for i, d in enumerate(drills, start=1):
        rows.append([d.guest, str(d.runs), str(d.passed), str(d.failed), Paragraph(", ".join(d.failed_steps) or "–", CELL),
                     span(d.rto("min")), span(d.rto("median")), span(d.rto("max"))])
        if d.failed or not d.runs:
            tints[i] = FAIL_TINT
    never = [d.guest for d in drills if not d.runs]
    w = WIDTH
    return out + [Paragraph("Each drill restored the guest's newest backup into a scratch guest, booted it isolated "
                            "and destroyed it; the RTO is the time from the restore's start until the guest was up. "
                            "Rows in red failed a drill or were never drilled this quarter"
                            + (f" (never drilled: {', '.join(never)})." if never else "."), SMALL),
                  Spacer(1, 4), _table(rows, [0.16 * w, 0.08 * w, 0.08 * w, 0.08 * w, 0.24 * w] + [0.12 * w] * 3, 1, tints)]


def _notes(report: Report) -> list:
    out = [CondPageBreak(40 * mm), Paragraph("How these figures were made", H2)]
    text = [
        f"Runs are counted from the PBS job exporter's counters <i>{PBS_JOB_ATTEMPT}</i> and "
        f"<i>{PBS_JOB_SUCCESS}</i> as Prometheus stored them, increment by increment: not extrapolated. "
        f"A run belongs to the quarter in which it ended (<i>{PBS_JOB_LAST_RUN}</i>), so runs "
        f"of the neighbouring quarters are left out. Samples were read until {when(report.read_until, report)}.",
        f"Durations are the exporter's <i>{PBS_JOB_LAST_DURATION}</i> of each counted run; runs of one job "
        "that ended within the same minute count separately but share one duration and end time.",
    ]
    by_time: dict[str, list] = {}
    for job, reset in report.resets:
        by_time.setdefault(when(reset.time, report), []).append((job, reset))
    for at, resets in by_time.items():
        reread = [f"{j.job_type} {j.job_id} ({r.value})" for j, r in resets if not r.counted]
        line = (f"At {at} the exporter's counters of {len(resets)} job(s) started again from zero (it lost its "
                "state file).")
        if reread:
            line += (" The runs it re-read from PBS's task log had been counted before and are not counted "
                     f"again: {', '.join(reread)}.")
        text.append(line)
    return out + [Paragraph(t, SMALL) for t in text]


def story(report: Report) -> list:
    flow = _header(report)
    if not report.has_data:
        return flow + [
            Paragraph(f"Prometheus holds no data of the PBS job exporter for {report.title}.", VERDICT),
            Spacer(1, 6),
            Paragraph(f"Neither job counters nor datastore usage nor backup alerts were found between "
                      f"{when(report.window.start, report)} and {when(report.window.end, report)} "
                      f"({report.timezone}). Either the exporter was not scraped in that quarter, or "
                      "Prometheus no longer keeps it (its retention).", BODY),
        ]
    flow += _summary(report)
    flow += [Spacer(1, 8), daily_chart(report)]
    flow += _charts_row(report)
    flow += _jobs(report) + _failures(report) + _datastores(report) + _incidents(report) + _drills(report)
    flow += _notes(report)
    return flow


def write_pdf(report: Report, path: Path) -> None:
    def footer(canvas, doc):
        canvas.saveState()
        canvas.setFont("Helvetica", 7)
        canvas.setFillColor(MUTED)
        canvas.drawString(MARGIN, 8 * mm, f"PBS job report {report.title} · site {report.site}")
        canvas.drawRightString(PAGE[0] - MARGIN, 8 * mm, f"page {doc.page}")
        canvas.restoreState()

    doc = SimpleDocTemplate(str(path), pagesize=PAGE, leftMargin=MARGIN, rightMargin=MARGIN, topMargin=MARGIN,
                            bottomMargin=MARGIN + 4 * mm, title=f"PBS job report {report.title}",
                            author=f"site {report.site}", subject="Proxmox Backup Server job results")
    doc.build(story(report), onFirstPage=footer, onLaterPages=footer)

