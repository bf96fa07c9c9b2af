"""The quarterly PBS job report as the scheduled job makes it: PDF, JSON and CSV of what Prometheus recorded.

    python -m report --settings /opt/pbs-report/settings.json --publish          # the CronJob
    python -m report --settings settings.json --out DIR [--quarter 2026Q3] [--prometheus-url URL]

In the repository the package is `services.report`; `make report` (tools/report.py) makes the
report of a stack file instead of a settings file. Writes pbs-<quarter>.pdf, .json and .csv. With
--publish the files go to the archive of the settings, older reports beyond its retention are
deleted and the backup room hears of it. Exit status 2: bad argument, quarter or settings; 1:
Prometheus, the archive or the chat failed. Either way: one line on stderr, no partial file.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Callable

from . import USAGE, PrometheusUnreachable, ReportError
from .settings import ReportSettings


def arguments(prog: str) -> argparse.ArgumentParser:
    """The arguments of a report run, but where its settings come from."""
    parser = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    parser.add_argument("--quarter", help="e.g. 2026Q3 (default: the last finished quarter in the site's time zone)")
    parser.add_argument("--prometheus-url", help="default: the settings' Prometheus")
    parser.add_argument("--out", type=Path, help="directory of the files")
    parser.add_argument("--publish", action="store_true",
                        help="write to the settings' archive, apply its retention, announce in the backup room")
    return parser


def require_pdf() -> None:
    """Before Prometheus is asked anything: the PDF needs reportlab."""
    try:
        importlib.import_module(".pdf", __package__)
    except ImportError as exc:
        raise ReportError(f"cannot make the PDF without reportlab ({exc}): install requirements-dev.txt, "
                          "or services/report/requirements.txt") from None


def make_files(settings: ReportSettings, args: argparse.Namespace, default_out: Path | None = None,
               unreachable_hint: str | None = None) -> int:
    """The report of ``args.quarter`` written, and with --publish archived and announced.

    ``default_out``: where the files go without --out or --publish; ``unreachable_hint``: what
    to add when Prometheus does not answer at all."""
    from . import make
    from .publish import announce, prune, write_all
    from .quarter import Quarter, check_finished, last_finished

    tz = settings.tz
    now = datetime.fromtimestamp(time.time(), tz)
    quarter = Quarter.parse(args.quarter) if args.quarter else last_finished(now, tz)
    check_finished(quarter, now, tz)
    if args.publish and settings.archive is None:
        raise ReportError("--publish needs settings with an archive (the stack's `reports` section)", USAGE)
    out = args.out or (Path(settings.archive.directory) if args.publish else default_out)
    if out is None:
        raise ReportError("where should the files go? --out DIR, or --publish to the settings' archive", USAGE)

    try:
        report = make.make_report(settings, quarter, now.timestamp(), args.prometheus_url)
    except PrometheusUnreachable as exc:
        if unreachable_hint is None:
            raise
        raise ReportError(f"{exc}; {unreachable_hint}") from None
    paths = write_all(out, quarter, make.writers(report))
    print(f"PBS job report {quarter}: {paths['pdf']} (.json, .csv): {make.one_line(report)}")
    if args.publish:
        for path in prune(out, quarter, settings.archive.retention_years):
            print(f"removed {path.name}: older than the archive's {settings.archive.retention_years} years")
        if settings.announce:
            announce(settings.announce, make.announcement(report, settings.archive.location))
            print("announced in the backup room")
    return 0


def guarded(run: Callable[[], int]) -> int:
    """``run()``'s exit status; a ReportError is its one line on stderr."""
    try:
        return run()
    except ReportError as exc:
        print(f"pbs-report: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("pbs-report: interrupted; no report file was left half-written", file=sys.stderr)
        return 130


def main(argv: list[str] | None = None) -> int:
    parser = arguments("python -m report")
    parser.add_argument("--settings", type=Path, required=True, help="settings JSON rendered by the stack")
    args = parser.parse_args(argv)

    def run() -> int:
        require_pdf()
        return make_files(ReportSettings.load(args.settings), args)

    return guarded(run)


if __name__ == "__main__":
    sys.exit(main())
