"""`make report`: the quarterly PBS job report (services/report) of a stack file, from a workstation.

    python -m tools.report --stack homelab [--quarter 2026Q3] [--prometheus-url URL] [--out DIR]
    python -m tools.report --settings settings.json [...]    # a settings file, as the scheduled job reads

The report's settings come from the stack config (model/reports.py, the same function that renders
the job's settings file); the files go to build/<stack>/reports/ unless --out says otherwise.
"""

from __future__ import annotations

import sys
import urllib.parse
from pathlib import Path

from services.report import USAGE, ReportError
from services.report.__main__ import arguments, guarded, make_files, require_pdf
from services.report.settings import ReportSettings

ROOT = Path(__file__).resolve().parent.parent


def _stack_settings(stack_file: Path) -> ReportSettings:
    """The report settings of a stack file, derived by model/reports.py."""
    from model.config import ConfigError
    from model.reports import report_settings
    from tools.offline_engine import StackFile, StackFileError

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


def main(argv: list[str] | None = None) -> int:
    parser = arguments("python -m tools.report")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--stack", default="homelab", help="stack whose Pulumi.<stack>.yaml is read (default: homelab)")
    source.add_argument("--stack-file", type=Path, help="any Pulumi.<stack>.yaml")
    source.add_argument("--settings", type=Path, help="settings JSON rendered by the stack")
    args = parser.parse_args(argv)

    def run() -> int:
        require_pdf()
        settings = ReportSettings.load(args.settings) if args.settings else \
            _stack_settings(args.stack_file or ROOT / f"Pulumi.{args.stack}.yaml")
        # The stack's own Prometheus is in-cluster: say how to reach it. A URL the user chose, or a
        # settings file, speaks for itself.
        hint = None if args.settings or args.prometheus_url else port_forward_hint(settings.prometheus_url)
        return make_files(settings, args, ROOT / "build" / settings.stack / "reports", hint)

    return guarded(run)


if __name__ == "__main__":
    sys.exit(main())
