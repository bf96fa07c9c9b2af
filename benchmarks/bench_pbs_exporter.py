"""Benchmark of the PBS job exporter against a fake PBS with a big history.

Not a test: it prints figures.  Each run starts the fake PBS
(tests/fake_pbs.py, 10,000 finished tasks of 50 jobs over 7 days) and the
exporter as separate processes, waits for the first (cold) poll, then times
many warm scrapes of /metrics, plain and gzipped (as Prometheus asks),
while the exporter keeps polling PBS in the background every ``--interval``
seconds (so some scrapes overlap a poll), and reads the exporter's peak
memory (VmHWM in /proc/<pid>/status).

    python benchmarks/bench_pbs_exporter.py [--runs 5] [--scrapes 2000]
"""

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

ROOT = Path(__file__).resolve().parents[1]
FAKE = ROOT / "tests" / "fake_pbs.py"
sys.path.insert(0, str(ROOT))  # run as a script, like the fake PBS


def exporter_zipapp():
    from model.cloud_init import exporter_zipapp
    return exporter_zipapp()


def fake_token():
    from tests.fake_pbs import TOKEN
    return TOKEN


def read_line(proc, prefix, deadline):
    while time.monotonic() < deadline:
        line = proc.stdout.readline() if proc.stdout else ""
        if line.startswith(prefix):
            return line
        if not line and proc.poll() is not None:
            break
    raise RuntimeError(f"no {prefix!r} line from {proc.args}")


def wait_log(path, needle, deadline):
    while time.monotonic() < deadline:
        text = path.read_text()
        if needle in text:
            return text
        time.sleep(0.02)
    raise RuntimeError(f"no {needle!r} in {path}")


def scrape(port, gzipped=False):
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics",
        headers={"Accept-Encoding": "gzip"} if gzipped else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.read()


def timed_scrapes(port, count, gzipped=False):
    """Sorted durations of ``count`` scrapes, and the last body."""
    timings = []
    for _ in range(count):
        begin = time.perf_counter()
        body = scrape(port, gzipped)
        timings.append(time.perf_counter() - begin)
    return sorted(timings), body


def p95(timings):
    return timings[int(len(timings) * 0.95) - 1]


def values(body):
    out = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if not sample.labels:
                out[sample.name] = sample.value
            elif sample.name == "pbs_job_attempt_total":
                out[sample.name] = out.get(sample.name, 0) + sample.value
    return out


def vm_hwm_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise RuntimeError("no VmHWM")


def one_run(args, workdir):
    deadline = time.monotonic() + 120
    fake = subprocess.Popen(
        [sys.executable, str(FAKE), "--tasks", str(args.tasks),
         "--jobs", str(args.jobs)], stdout=subprocess.PIPE, text=True)
    exporter = None
    try:
        fake_port = int(read_line(fake, "PORT ", deadline).split()[1])
        token = workdir / "token"
        token.write_text(fake_token())
        token.chmod(0o600)
        log = workdir / "exporter.log"
        state = workdir / "state.json"
        if state.exists():
            state.unlink()
        started = time.monotonic()
        zipapp = workdir / "pbs-job-exporter.pyz"  # what the pbs host runs
        zipapp.write_bytes(exporter_zipapp())
        with open(log, "w") as log_file:
            exporter = subprocess.Popen(
                [sys.executable, str(zipapp), "--pbs-url",
                 f"http://127.0.0.1:{fake_port}", "--token-file", str(token),
                 "--listen", "127.0.0.1:0", "--state-file", str(state),
                 "--interval", str(args.interval),
                 "--initial-lookback", str(8 * 86400)],
                stderr=log_file, stdout=subprocess.DEVNULL)
        text = wait_log(log, "listening on 127.0.0.1:", deadline)
        port = int(text.split("listening on 127.0.0.1:")[1].split(",")[0])
        while True:
            first = values(scrape(port))
            if first.get("pbs_exporter_scrapes_total", 0) >= 1:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("no first poll")
            time.sleep(0.01)
        first_poll_s = time.monotonic() - started
        cold_poll_s = first["pbs_exporter_scrape_duration_seconds"]
        if first.get("pbs_up") != 1 or \
                first.get("pbs_job_attempt_total") != args.tasks:
            raise RuntimeError(f"exporter did not count the history: {first}")
        for _ in range(20):
            scrape(port)
        timings, body = timed_scrapes(port, args.scrapes)
        zipped, _ = timed_scrapes(port, args.scrapes, gzipped=True)
        last = values(body)
        return {
            "scrape_median_ms": statistics.median(timings) * 1000,
            "scrape_p95_ms": p95(timings) * 1000,
            "scrape_max_ms": timings[-1] * 1000,
            "gzip_scrape_median_ms": statistics.median(zipped) * 1000,
            "gzip_scrape_p95_ms": p95(zipped) * 1000,
            "cold_poll_ms": cold_poll_s * 1000,
            "warm_poll_ms": last["pbs_exporter_scrape_duration_seconds"]
            * 1000,
            "first_poll_after_start_s": first_poll_s,
            "polls_during_scrapes": last["pbs_exporter_scrapes_total"]
            - first["pbs_exporter_scrapes_total"],
            "vmhwm_mib": vm_hwm_kib(exporter.pid) / 1024,
            "exposition_kib": len(body) / 1024,
        }
    finally:
        for proc in (exporter, fake):
            if proc is not None and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=30)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--scrapes", type=int, default=2000)
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--jobs", type=int, default=50)
    parser.add_argument("--interval", type=float, default=1.0,
                        help="exporter poll interval (default 1 s, so polls "
                        "overlap the timed scrapes)")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(1, args.runs + 1):
            result = one_run(args, Path(tmp))
            results.append(result)
            print(f"run {run}: " + ", ".join(
                f"{k} {v:.1f}" for k, v in result.items()), flush=True)
    print(f"\n{args.tasks} tasks, {args.jobs} jobs, {args.scrapes} warm "
          f"scrapes per run, median of {args.runs} runs "
          f"(python {sys.version.split()[0]}, {os.cpu_count()} cpus):")
    for key in results[0]:
        print(f"  {key:26s} {statistics.median(r[key] for r in results):9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
