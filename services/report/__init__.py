"""The quarterly PBS job report: what Prometheus recorded of the PBS job exporter, as PDF, JSON and CSV.

    collect.py   reads Prometheus (HTTP API): the job counters' change points, datastores, ALERTS
    figures.py   computes the report's figures from those samples (pure, no I/O)
    pdf.py       renders the figures as the PDF an operator hands over (reportlab)
    tables.py    the same figures as JSON and CSV
    publish.py   writes the files atomically, keeps the archive's retention, announces the report

The job that makes the report on schedule runs this package (`python -m report`) with nothing but
the standard library, reportlab and the metric names of contracts/metrics.py: no stack config, no
pydantic (see model/reports.py for what it gets). `make report` (tools/report.py) runs it on a
stack file from a workstation.
"""


class ReportError(Exception):
    """A problem the report cannot work around; its message is the one line the user sees."""

    def __init__(self, message: str, status: int = 1):
        super().__init__(message)
        self.status = status


class PrometheusUnreachable(ReportError):
    """No answer from Prometheus at all (refused, unknown host, timeout): where it is may be the problem."""


USAGE = 2  # exit status of a bad argument or settings file; 1 is a failure of Prometheus, archive or chat
