"""Remote-write catch-up after an outage of the long-term store: median of several runs.

Not a test: it prints figures. Each run renders the homelab stack with metrics.longTerm, starts
VictoriaMetrics and Prometheus (`make upstream`) with the rendered remote-write (tests/long_term_world.py),
lets the series flow, stops the store for `--outage` seconds, starts it again and measures the wall
time until Prometheus has sent everything it appended meanwhile (lag under one scrape interval).

    .venv/bin/python -m benchmarks.bench_remote_write_catch_up [--runs 3] [--outage 60]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from tools import upstream
from tests.conftest import FAKE_SECRETS
from tests.long_term_world import LongTermWorld
from tests.stacks import write_stack
from tools.offline_engine import run_program
from tools.preview import render


def _long_term(sections) -> None:
    sections["metrics"]["longTerm"] = {"storage": {"sizeGb": 100}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--outage", type=float, default=60.0, help="seconds the store is down")
    args = parser.parse_args(argv)
    upstream.put_on_path()  # Prometheus, promtool, VictoriaMetrics at the charts' versions
    with tempfile.TemporaryDirectory(prefix="bench-remote-write-") as tmp:
        root = Path(tmp)
        rendered = render(run_program(write_stack(root, _long_term, stack="longterm"), FAKE_SECRETS), root / "build")
        results = []
        for run in range(args.runs):
            work = root / f"run-{run}"
            work.mkdir()
            with LongTermWorld(rendered, work) as world:
                world.wait(lambda: world.lag() is not None and world.vm_query("up"), 30)
                time.sleep(5)
                outage = world.outage(args.outage)
            results.append(outage)
            print(f"run {run + 1}: lag {outage['lag_at_restart']:.1f}s at restart, caught up {outage['catch_up_s']:.2f}s later", flush=True)
        catch_up = [r["catch_up_s"] for r in results]
        print(f"catch-up after a {args.outage:g}s outage: median {statistics.median(catch_up):.2f}s "
              f"(min {min(catch_up):.2f}s, max {max(catch_up):.2f}s, {args.runs} runs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
