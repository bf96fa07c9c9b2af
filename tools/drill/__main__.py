"""Alert drill: run the stack's real alerting pipeline on this machine and prove who gets paged.

    python -m tools.drill                                  # every scenario, build/homelab/ as input
    python -m tools.drill --scenario backup-fails-twice    # one (repeatable)
    python -m tools.drill --input tests/fixtures/drill --short

Exit status: 0 all scenarios passed; 1 a notification was missed, duplicated, late or
unexpected; 2 the configuration could not be drilled.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tools.drill import scenarios
from tools.drill.deployed_config import DeployedConfig, DrillConfigError
from tools.offline_engine import ROOT


# Side by side, one more than the cores this process may use: a scenario mostly waits on its compressed
# clock (about a third of a core on average). On 2 cores three at a time ran all 22 scenarios in 463 s
# with none starved; a starved run is still caught and run again alone (tools/drill/run.py).
DEFAULT_JOBS = len(os.sched_getaffinity(0)) + 1
# What the drill runs, named with their versions in report.md and results.json.
DRILLED_BINARIES = ["prometheus", "promtool", "alertmanager", "amtool", "blackbox_exporter"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.drill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default="homelab", help="stack whose build/<stack>/ is drilled (default: homelab)")
    parser.add_argument("--input", type=Path, help="rendered configuration directory (default: build/<stack>/)")
    parser.add_argument("--out", type=Path,
                        help="where report.md, results.json and timeline.png go (default: build/<stack>/drill/)")
    parser.add_argument("--scenario", action="append", default=[], help="scenario name (repeatable; default: all)")
    parser.add_argument("--short", action="store_true", help=f"the short drill: {', '.join(scenarios.SHORT_DRILL)}")
    parser.add_argument("--time-scale", type=float, help="override every scenario's time-scale factor")
    parser.add_argument("--keep", type=Path, help="copy the drill's working directory (configs, logs) here")
    parser.add_argument("--list", action="store_true", help="list the scenarios and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress line")
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS,
                        help=f"scenarios run side by side, each in its own process (default: {DEFAULT_JOBS})")
    args = parser.parse_args(argv)

    if args.list:
        for s in scenarios.SCENARIOS:
            print(f"{s.name:26} ×{s.factor:<4g} {s.duration / s.factor:4.0f}s  {s.story}")
        return 0
    names = args.scenario or (list(scenarios.SHORT_DRILL) if args.short else [])
    try:
        chosen = scenarios.by_name(names)
    except KeyError as exc:
        print(f"error: {exc.args[0]}", file=sys.stderr)
        return 2
    input_dir = args.input or ROOT / "build" / args.stack
    out_dir = args.out or ROOT / "build" / args.stack / "drill"

    from tools import upstream
    try:
        upstream.put_on_path()
    except upstream.UpstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    from tools.drill.plot import write_timeline
    from tools.drill.report import write_report, write_results
    from tools.drill.run import Progress, run_drill

    started = time.monotonic()
    try:
        config = DeployedConfig.load(input_dir)
        runs = run_drill(config, chosen, factor=args.time_scale, progress=Progress(chosen, quiet=args.quiet),
                         keep=args.keep, jobs=args.jobs)
    except DrillConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as exc:
        print(f"\ndrill interrupted ({exc or 'Ctrl-C'}); every process it started has been stopped", file=sys.stderr)
        return 130
    picture = write_timeline(runs, out_dir / "timeline.png")
    binaries = upstream.reported_versions(DRILLED_BINARIES)
    report = write_report(runs, out_dir / "report.md", input_dir, args.stack, time.monotonic() - started, picture.name,
                          binaries)
    results = write_results(runs, out_dir / "results.json", binaries)
    failed = [r for r in runs if not r.passed]
    for run in failed:
        for failure in run.failures:
            print(f"FAIL {run.scenario.name}: {failure}", file=sys.stderr)
    print(f"{'FAIL' if failed else 'PASS'}: {len(runs) - len(failed)} of {len(runs)} scenarios passed in "
          f"{time.monotonic() - started:.0f}s; report {report}, results {results}, picture {picture}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
