"""The whole drill's wall time: median of several full runs, side by side (--jobs) or one by one.

Not a test: it prints figures. Each run is `python -m tools.drill` on the rendered homelab stack
(make preview first), every scenario; a run counts only if every verdict passed, and the starved
attempts it had to repeat are counted (tools/drill/run.py retries a starved scenario alone).

    python -m benchmarks.bench_drill --runs 5            # side by side as `make drill` runs it
    python -m benchmarks.bench_drill --runs 3 --jobs 1   # one by one
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.drill.__main__ import DEFAULT_JOBS
from tools.offline_engine import ROOT


def one_run(jobs: int, input_dir: Path, out: Path) -> dict:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "tools.drill", "--input", str(input_dir), "--out", str(out),
                           "--jobs", str(jobs), "--quiet"], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "MPLBACKEND": "Agg"})
    wall = time.monotonic() - started
    results = json.loads((out / "results.json").read_text()) if (out / "results.json").is_file() else {"scenarios": []}
    return {"wall_s": round(wall, 1), "exit": done.returncode,
            "passed": sum(s["verdict"] == "pass" for s in results["scenarios"]),
            "scenarios": len(results["scenarios"]),
            "retried": [s["name"] for s in results["scenarios"] if s.get("attempts", 1) > 1],
            "starved": [s["name"] for s in results["scenarios"] if s.get("starved")]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_drill", description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=DEFAULT_JOBS)
    parser.add_argument("--input", type=Path, default=ROOT / "build" / "homelab")
    args = parser.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory(prefix="bench-drill-") as tmp:
        for i in range(args.runs):
            runs.append(one_run(args.jobs, args.input, Path(tmp) / str(i)))
            print(json.dumps(runs[-1]), flush=True)
    walls = [r["wall_s"] for r in runs]
    print(f"full drill, --jobs {args.jobs}: median {statistics.median(walls):.0f}s over {len(walls)} runs "
          f"({', '.join(f'{w:.0f}s' for w in walls)}); all passed in {sum(r['exit'] == 0 for r in runs)} of {len(runs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
