"""The quarterly PBS job report: PDF, JSON and CSV of what Prometheus recorded.

    python -m tools.report --stack homelab [--quarter 2026Q3] [--prometheus-url URL]
    python -m tools.report --settings /opt/pbs-report/settings.json --publish   # the scheduled job

Writes pbs-<quarter>.pdf, .json and .csv (default: build/<stack>/reports/). With --publish the
files go to the archive of the settings, older reports beyond its retention are deleted and
the backup room hears of it. Exit status 2: bad argument, quarter, stack config or settings;
1: Prometheus, the archive or the chat failed. Either way: one line on stderr, no partial file.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time
import urllib.parse
from datetime import datetime
from pathlib import Path

from tools.report import USAGE, PrometheusUnreachable, ReportError

ROOT = Path(__file__).resolve().parent.parent.parent


def _stack_settings(stack_file: Path):
    """The report settings of a stack file, derived by model/reports.py (needs the program's venv)."""
    from model.config import ConfigError
    from model.reports import report_settings
    from tools.offline_engine import StackFile, StackFileError
    from tools.report.settings import ReportSettings

    try:
        stack = StackFile.load(stack_file, ROOT / "Pulumi.yaml")
        cfg = stack.stack_config()
    except OSError as exc:
        raise ReportError(f"cannot read the stack {stack_file}: {exc.strerror}", USAGE) from None
    except (StackFileError, ConfigError) as exc:
        raise ReportError(str(exc), USAGE) from None
    return ReportSettings.from_dict(report_settings(cfg, stack.stack), str(stack_file))


def port_forward_hint(url: str) -> str:
    """How to reach the stack's in-cluster Prometheus (http://<service>.<namespace>.svc:<port>) from here."""
    parsed = urllib.parse.urlsplit(url)
    service, _, rest = (parsed.hostname or "").partition(".")
    namespace = rest.split(".")[0] if rest.endswith("svc") or ".svc." in rest else None
    port = parsed.port or 9090
    forward = (f"`kubectl -n {namespace} port-forward svc/{service} {port}:{port}` in another shell, then "
               if namespace else "")
    return f"outside the cluster, run {forward}`make report PROMETHEUS_URL=http://127.0.0.1:{port}`"


def run(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.report", description=__doc__.split("\n\n")[0])
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--stack", default="homelab", help="stack whose Pulumi.<stack>.yaml is read (default: homelab)")
    source.add_argument("--stack-file", type=Path, help="any Pulumi.<stack>.yaml")
    source.add_argument("--settings", type=Path, help="settings JSON rendered by the stack (the scheduled job)")
    parser.add_argument("--quarter", help="e.g. 2026Q3 (default: the last finished quarter in the site's time zone)")
    parser.add_argument("--prometheus-url", help="default: the stack's Prometheus")
    parser.add_argument("--out", type=Path, help="directory of the files (default: build/<stack>/reports/)")
    parser.add_argument("--publish", action="store_true",
                        help="write to the settings' archive, apply its retention, announce in the backup room")
    args = parser.parse_args(argv)

    from tools.report import make
    from tools.report.quarter import Quarter, check_finished, last_finished
    from tools.report.settings import ReportSettings

    try:  # before Prometheus is asked anything
        importlib.import_module("tools.report.pdf")
    except ImportError as exc:
        raise ReportError(f"cannot make the PDF without reportlab ({exc}): install requirements-dev.txt, "
                          "or tools/report/requirements.txt") from None

    settings = ReportSettings.load(args.settings) if args.settings else \
        _stack_settings(args.stack_file or ROOT / f"Pulumi.{args.stack}.yaml")
    tz = settings.tz
    now = datetime.fromtimestamp(time.time(), tz)
    quarter = Quarter.parse(args.quarter) if args.quarter else last_finished(now, tz)
    check_finished(quarter, now, tz)
    if args.publish and settings.archive is None:
        raise ReportError("--publish needs settings with an archive (the stack's `reports` section)", USAGE)
    out = args.out or (Path(settings.archive.directory) if args.publish else make.default_out(settings, ROOT))

    from tools.report.publish import announce, prune, write_all

    try:
        report = make.make_report(settings, quarter, now.timestamp(), args.prometheus_url)
    except PrometheusUnreachable as exc:
        if args.settings or args.prometheus_url:  # the scheduled job, or a URL the user chose
            raise
        raise ReportError(f"{exc}; {port_forward_hint(settings.prometheus_url)}") from None
    paths = write_all(out, quarter, make.writers(report))
    print(f"PBS job report {quarter}: {paths['pdf']} (.json, .csv): {make.one_line(report)}")
    if args.publish:
        for path in prune(out, quarter, settings.archive.retention_years):
            print(f"removed {path.name}: older than the archive's {settings.archive.retention_years} years")
        if settings.announce:
            announce(settings.announce, make.announcement(report, settings.archive.location))
            print("announced in the backup room")
    return 0


def main(argv: list[str] | None = None) -> int:
    try:
        return run(argv)
    except ReportError as exc:
        print(f"pbs-report: error: {exc}", file=sys.stderr)
        return exc.status
    except KeyboardInterrupt:
        print("pbs-report: interrupted; no report file was left half-written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
