"""Offline-preview wall time: the homelab stack and the same stack scaled 10x.

    make bench            # or: .venv/bin/python -m benchmarks.bench_preview --runs 5

Each run is a fresh `python -m tools.preview --quiet` process, as a user runs it; the figure
is the median wall time. The scaled stack multiplies every collection of the config (VMs
now; more as the stack grows: see SCALERS).
"""

from __future__ import annotations

import argparse
import copy
import ipaddress
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from tests.stacks import ROOT, write_stack


def scale_hosts(cfg: dict[str, Any], factor: int) -> None:
    network = ipaddress.ip_network(cfg["network"]["cidr"])
    free = (str(a) for a in network.hosts() if str(a) != cfg["network"]["gateway"])
    used = {h["address"] for h in cfg["hosts"].values()}
    free = (a for a in free if a not in used)
    originals = list(cfg["hosts"].items())
    next_id = max(h["vmId"] for _, h in originals) + 1
    for copy_no in range(1, factor):
        for name, host in originals:
            clone = copy.deepcopy(host)
            clone.update(vmId=next_id, address=next(free))
            next_id += 1
            cfg["hosts"][f"{name}{copy_no}"] = clone


def scale_slos(cfg: dict[str, Any], factor: int) -> None:
    originals = list(cfg.get("slos", []))
    for copy_no in range(1, factor):
        for slo in originals:
            cfg["slos"].append({**copy.deepcopy(slo), "name": f"{slo['name']}-{copy_no}"})


def scale_tenants(cfg: dict[str, Any], factor: int) -> None:
    logs = cfg.get("logs")
    if not logs:
        return
    originals = list(logs["tenants"].items())
    rules = list(logs.get("namespaceRetention", []))
    for copy_no in range(1, factor):
        for name, tenant in originals:
            logs["tenants"][f"{name}{copy_no}"] = copy.deepcopy(tenant)
        logs["namespaceRetention"] += [{**r, "tenant": f"{r['tenant']}{copy_no}"} for r in rules]


# Dashboards are files in dashboards/, not config: they do not scale with the stack file.
SCALERS: list[Callable[[dict[str, Any], int], None]] = [scale_hosts, scale_slos, scale_tenants]


def scaled(factor: int) -> Callable[[dict[str, Any]], None]:
    def change(cfg: dict[str, Any]) -> None:
        for scale in SCALERS:
            scale(cfg, factor)
    return change


def time_preview(stack_file: Path, out: Path, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "tools.preview", "--stack-file", str(stack_file), "--out", str(out), "--quiet"],
                       cwd=ROOT, check=True, capture_output=True)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--factor", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        base = write_stack(tmp_path, stack="bench1x")
        big = write_stack(tmp_path, scaled(args.factor), stack=f"bench{args.factor}x")
        time_preview(base, tmp_path / "build", 1)  # warm the file cache
        one = time_preview(base, tmp_path / "build", args.runs)
        many = time_preview(big, tmp_path / "build", args.runs)
    m1, m10 = statistics.median(one), statistics.median(many)
    print(f"homelab stack:       median {m1:.2f} s over {args.runs} runs ({', '.join(f'{t:.2f}' for t in one)})")
    print(f"scaled {args.factor}x:          median {m10:.2f} s over {args.runs} runs ({', '.join(f'{t:.2f}' for t in many)})")
    print(f"ratio {args.factor}x / 1x:   {m10 / m1:.2f}")


if __name__ == "__main__":
    main()
