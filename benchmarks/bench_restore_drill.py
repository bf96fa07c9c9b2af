"""How long a restore drill of a small guest takes against the fake PVE and PBS, and where the time goes.

Not a test: it prints figures, the median of --runs runs. Each run starts the recovery service as a real
process among the tests' fakes (tests/recovery_world.py, the world of tests/services/test_restore_drills.py):
the fake restores in 0.3 s, runs each start/stop/destroy task for 0.05 s and answers agent/ping 0.2 s after
the start; the service polls every 0.05 s (pollSeconds). From the audit it times the phases of the drill:
plan (queued -> restore POSTed), restore (-> isolation), isolate + start (-> agent wait), up (-> teardown),
teardown (-> outcome), and reads the RTO the service exported.

    python -m benchmarks.bench_restore_drill [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.recovery_world import DRILL_ACTION, World  # noqa: E402


def one_run(work: Path) -> dict[str, float]:
    world = World(work)
    world.start_fakes()
    now = time.time()
    world.stage_restore_drills(now, now - 3600)
    try:
        world.start_drills()
        done = world.drill_outcome()
        if done["result"] != "ok":
            raise RuntimeError(f"the drill did not pass: {done['why']}")
        audit = world.audit()
        queued = next(a["ts"] for a in audit if a["decision"] == "queued" and a["action"] == DRILL_ACTION)
        acts = {a["why"].split(":")[0].removeprefix("step "): a["ts"] for a in audit if a["decision"] == "act"}
        rto = world.metric("recovery_restore_drill_last_duration_seconds", guest="vm/101", tier="tier-1")
        return {"plan": acts["restore"] - queued, "restore": acts["isolate"] - acts["restore"],
                "isolate+start": acts["start"] - acts["isolate"], "start->stop (boot, agent)": acts["stop"] - acts["start"],
                "teardown": done["ts"] - acts["stop"], "whole drill": done["ts"] - queued, "RTO (exported)": rto}
    finally:
        world.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = []
    for index in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            runs.append(one_run(Path(tmp)))
        print(f"run {index + 1}: " + ", ".join(f"{k} {v:.2f}s" for k, v in runs[-1].items()), file=sys.stderr)
    print(f"restore drill of a small guest against the fakes, median of {args.runs} runs:")
    for key in runs[0]:
        print(f"  {key:<28} {statistics.median(r[key] for r in runs):6.2f} s")


if __name__ == "__main__":
    main()
