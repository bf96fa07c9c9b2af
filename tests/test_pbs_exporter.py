"""The PBS job exporter, run as a real process against a fake PBS API.

Every wait polls with a deadline; nothing sleeps a fixed time or asserts on
speed.  Needs promtool on PATH (Debian package ``prometheus``).
"""

import importlib.util
import json
import math
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.fake_pbs import TOKEN, FakePBS

ROOT = Path(__file__).resolve().parents[1]
EXPORTER = ROOT / "exporters" / "pbs_job_exporter.py"
SECRET = TOKEN.rsplit(":", 1)[1]
DEADLINE = 20.0


def wait_for(predicate, what, timeout=DEADLINE):
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def job(job_id, job_type, datastore):
    return {"job_id": job_id, "job_type": job_type, "datastore": datastore}


class Metrics:
    """Samples of one scrape, parsed by prometheus_client's parser."""

    def __init__(self, text):
        self.text = text
        self.samples = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                key = (sample.name, frozenset(sample.labels.items()))
                assert key not in self.samples, f"duplicate series {key}"
                self.samples[key] = sample.value

    def get(self, name, labels=None):
        return self.samples.get((name, frozenset((labels or {}).items())))

    def total(self, name):
        return sum(v for (n, _), v in self.samples.items() if n == name)

    def series(self, name):
        return {labels: v for (n, labels), v in self.samples.items()
                if n == name}


class Exporter:
    def __init__(self, tmp_path, url, extra=(), state="state.json"):
        self.tmp_path = tmp_path
        self.url = url
        self.extra = list(extra)
        self.state = tmp_path / state
        self.token_file = tmp_path / "token"
        if not self.token_file.exists():
            self.token_file.write_text(TOKEN + "\n")
            self.token_file.chmod(0o600)
        self.proc = None
        self.runs = 0

    def start(self):
        self.runs += 1
        self.log_path = self.tmp_path / f"exporter-{id(self)}-{self.runs}.log"
        self.log_file = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [sys.executable, str(EXPORTER), "--pbs-url", self.url,
             "--token-file", str(self.token_file), "--listen", "127.0.0.1:0",
             "--state-file", str(self.state), "--interval", "0.1",
             "--timeout", "2", *self.extra],
            stdout=subprocess.DEVNULL, stderr=self.log_file)
        match = wait_for(lambda: self.proc.poll() is None and re.search(
            r"listening on 127\.0\.0\.1:(\d+)", self.log()), "listen line")
        self.port = int(match.group(1))
        return self

    def log(self):
        return self.log_path.read_text()

    def scrape(self, openmetrics=False):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}/metrics", headers={
                "Accept": "application/openmetrics-text; version=0.0.1"
                if openmetrics else "text/plain"})
        with urllib.request.urlopen(request, timeout=10) as response:
            text = response.read().decode()
        if openmetrics:
            list(parse_openmetrics(text))  # raises on invalid exposition
        return Metrics(text)

    def wait_polls(self, count=2):
        """Wait until ``count`` more polls finished: the last one started
        after this call."""
        now = self.scrape().get("pbs_exporter_scrapes_total") or 0
        return wait_for(lambda: (lambda m: m if (m.get(
            "pbs_exporter_scrapes_total") or 0) >= now + count else None)(
            self.scrape()), f"{count} more polls")

    def wait_metric(self, name, labels, value):
        return wait_for(lambda: (lambda m: m if m.get(name, labels) == value
                                 else None)(self.scrape()),
                        f"{name}{labels} == {value}")

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=DEADLINE)
        self.log_file.close()
        return self.proc.returncode


@pytest.fixture
def fake():
    pbs = FakePBS()
    pbs.start()
    yield pbs
    pbs.stop()


@pytest.fixture
def exporters():
    started = []

    def make(*args, **kwargs):
        exporter = Exporter(*args, **kwargs)
        started.append(exporter)
        return exporter

    yield make
    for exporter in started:
        if exporter.proc is not None and exporter.proc.poll() is None:
            exporter.stop(signal.SIGKILL)


NOW = int(time.time())


def seed(fake):
    """A small PBS: two datastores, jobs of every type, finished, running,
    manual and foreign tasks."""
    fake.add_datastore("store1", 4 * 2**40, 2**40, namespaces=("", "prod"))
    fake.add_datastore("store2", 2 * 2**40, 3 * 2**39)
    fake.add_snapshot("store1", "vm", "101", NOW - 86400)
    fake.add_snapshot("store1", "vm", "101", NOW - 3000)
    fake.add_snapshot("store1", "ct", "200", NOW - 3000, ns="prod")
    fake.add_snapshot("store2", "host", "pve1", NOW - 3000)
    fake.add_job("sync", "s-offsite", "store1")
    fake.add_job("sync", "s-new", "store2", **{"next-run": NOW + 7200})
    fake.add_job("verify", "v-weekly", "store1")
    fake.add_job("verify", "v-old", "store2", **{
        "last-run-endtime": NOW - 30 * 86400, "last-run-state": "OK"})
    fake.add_job("prune", "p-daily", "store2")
    add = fake.add_task
    add("backup", "store1:vm/101", NOW - 3000, NOW - 2900)
    add("backup", "store1:vm/101", NOW - 2000, NOW - 1990,
        "backup failed: connection reset by peer")
    add("backup", "store1:ct/200", NOW - 1900, NOW - 1700, "WARNINGS: 1")
    add("backup", "store2:host/pve1", NOW - 1500, NOW - 1400)
    add("syncjob", "offsite:main:store1::s-offsite", NOW - 1300, NOW - 1200)
    add("syncjob", "offsite:main:store1::s-offsite", NOW - 900, NOW - 800)
    add("verificationjob", "store1:v-weekly", NOW - 1200, NOW - 1000,
        "verification failed - please check the log for details")
    add("prunejob", "store2:p-daily", NOW - 700, NOW - 690)
    add("garbage_collection", "store1", NOW - 6000, NOW - 1000)
    add("verify_snapshot", "store1:vm/101/6553F0A0", NOW - 600, NOW - 550)
    add("prune", "store2:vm/300", NOW - 500, NOW - 499)
    add("reader", "store1:vm/101", NOW - 450, NOW - 400)
    add("aptupdate", "", NOW - 350, NOW - 340)
    return add("backup", "store1:vm/102", NOW - 30)


def test_counts_every_job_type_with_its_labels(fake, exporters, tmp_path):
    seed(fake)
    exporter = exporters(tmp_path, fake.url).start()
    m = exporter.wait_metric("pbs_up", {}, 1)
    expected = [  # job, (attempts, successes, warnings)
        (job("vm/101", "backup", "store1"), (2, 1, 0)),
        (job("ct/200", "backup", "store1"), (1, 1, 1)),
        (job("host/pve1", "backup", "store2"), (1, 1, 0)),
        (job("vm/102", "backup", "store1"), (0, 0, 0)),  # still running
        (job("s-offsite", "sync", "store1"), (2, 2, 0)),
        (job("s-new", "sync", "store2"), (0, 0, 0)),  # configured, never ran
        (job("v-weekly", "verify", "store1"), (1, 0, 0)),
        (job("v-old", "verify", "store2"), (0, 0, 0)),
        (job("p-daily", "prune", "store2"), (1, 1, 0)),
        (job("store1", "gc", "store1"), (1, 1, 0)),
        (job("manual", "verify", "store1"), (1, 1, 0)),
        (job("manual", "prune", "store2"), (1, 1, 0)),
    ]
    for index, name in enumerate(("pbs_job_attempt_total",
                                  "pbs_job_success_total",
                                  "pbs_job_warning_total")):
        assert m.series(name) == {frozenset(labels.items()): counts[index]
                                  for labels, counts in expected}, name
    vm101 = job("vm/101", "backup", "store1")
    assert m.get("pbs_job_last_run_timestamp_seconds", vm101) == NOW - 1990
    assert m.get("pbs_job_last_success_timestamp_seconds", vm101) == NOW - 2900
    assert m.get("pbs_job_last_duration_seconds", vm101) == 10
    # v-old's only run is older than the task history: its job status says.
    v_old = job("v-old", "verify", "store2")
    assert m.get("pbs_job_last_success_timestamp_seconds", v_old) == \
        NOW - 30 * 86400
    assert m.get("pbs_job_last_success_timestamp_seconds",
                 job("v-weekly", "verify", "store1")) is None
    gc = job("store1", "gc", "store1")
    assert m.get("pbs_job_duration_seconds_bucket", {**gc, "le": "3600.0"}) == 0
    assert m.get("pbs_job_duration_seconds_bucket", {**gc, "le": "7200.0"}) == 1
    assert m.get("pbs_job_duration_seconds_count", gc) == 1
    assert m.get("pbs_job_duration_seconds_sum", gc) == 5000
    assert m.get("pbs_job_running", job("vm/102", "backup", "store1")) == 1
    assert m.total("pbs_job_running") == 1
    assert m.get("pbs_job_next_run_timestamp_seconds",
                 job("s-new", "sync", "store2")) == NOW + 7200
    assert m.get("pbs_datastore_size_bytes", {"datastore": "store1"}) == 2**42
    assert m.get("pbs_datastore_used_bytes", {"datastore": "store2"}) == \
        3 * 2**39
    assert m.get("pbs_datastore_available_bytes", {"datastore": "store2"}) \
        == 2**39
    snapshots = {tuple(sorted(k)): v for k, v in
                 m.series("pbs_datastore_snapshots").items() if v}
    assert snapshots == {
        (("backup_type", "vm"), ("datastore", "store1")): 2,
        (("backup_type", "ct"), ("datastore", "store1")): 1,  # namespace
        (("backup_type", "host"), ("datastore", "store2")): 1}
    assert m.get("pbs_exporter_tasks_ignored_total",
                 {"reason": "unknown_type"}) == 2
    assert m.total("pbs_exporter_scrape_errors_total") == 0
    exporter.scrape(openmetrics=True)  # strict parser accepts it too
    log = exporter.log()
    assert log.count("'reader'") == 1 and log.count("'aptupdate'") == 1
    # Paged, and only parameters PBS knows (the fake refuses the others).
    assert all(q.get("limit") for q in fake.task_requests())


def test_running_tasks_are_counted_once_when_they_finish(fake, exporters,
                                                         tmp_path):
    now = int(time.time())
    # Started long before the cursor (overlap 60 s): found by its start time.
    long_verify = fake.add_task("verificationjob", "store1:v-weekly",
                                now - 7200)
    short = fake.add_task("backup", "store1:vm/101", now - 20)
    fake.add_task("backup", "store1:vm/102", now - 10, now - 5)
    exporter = exporters(tmp_path, fake.url, ["--overlap", "60"]).start()
    verify = job("v-weekly", "verify", "store1")
    vm101 = job("vm/101", "backup", "store1")
    m = exporter.wait_metric("pbs_job_running", verify, 1)
    assert m.get("pbs_job_running", vm101) == 1
    assert m.get("pbs_job_attempt_total", verify) == 0
    assert m.get("pbs_job_attempt_total", vm101) == 0

    fake.finish_task(short, now, "OK")
    fake.finish_task(long_verify, now + 1, "OK")
    m = exporter.wait_metric("pbs_job_attempt_total", verify, 1)
    m = exporter.wait_metric("pbs_job_attempt_total", vm101, 1)
    assert fake.task_requests("until"), "long task was not looked up"
    m = exporter.wait_polls(3)
    assert m.get("pbs_job_attempt_total", verify) == 1
    assert m.get("pbs_job_success_total", verify) == 1
    assert m.get("pbs_job_attempt_total", vm101) == 1
    assert m.get("pbs_job_duration_seconds_sum", verify) == 7201
    assert m.total("pbs_job_running") == 0
    assert m.get("pbs_exporter_scrape_errors_total",
                 {"kind": "lost_task"}) == 0


def test_restarts_count_every_task_exactly_once(fake, exporters, tmp_path):
    now = int(time.time())
    vm = {i: job(f"vm/{i}", "backup", "store1") for i in (101, 102, 103, 104)}
    gc = job("store1", "gc", "store1")
    fake.add_task("backup", "store1:vm/101", now - 300, now - 290)
    fake.add_task("backup", "store1:vm/102", now - 280, now - 270, "error")
    fake.add_task("backup", "store1:vm/101", now - 260, now - 250)
    running = fake.add_task("backup", "store1:vm/103", now - 100)
    long_gc = fake.add_task("garbage_collection", "store1", now - 7200)
    first = exporters(tmp_path, fake.url, ["--overlap", "60"]).start()
    first.wait_metric("pbs_job_running", gc, 1)
    before = first.wait_metric("pbs_job_attempt_total", vm[101], 2)
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL

    # While the exporter is down: running tasks end, new ones come and go.
    fake.finish_task(running, now - 40, "OK")
    fake.finish_task(long_gc, now - 30, "OK")
    fake.add_task("backup", "store1:vm/104", now - 20, now - 10)
    fake.add_task("backup", "store1:vm/102", now - 15, now - 5)
    fake.add_task("backup", "store1:vm/101", now - 2)  # running

    second = exporters(tmp_path, fake.url, ["--overlap", "60"]).start()
    m = second.wait_metric("pbs_job_attempt_total", vm[104], 1)
    expected = [(vm[101], (2, 2)), (vm[102], (2, 1)), (vm[103], (1, 1)),
                (vm[104], (1, 1)), (gc, (1, 1))]
    for _ in range(2):  # on the first poll after restart, and 3 polls later
        for key, (attempts, successes) in expected:
            assert m.get("pbs_job_attempt_total", key) == attempts, key
            assert m.get("pbs_job_success_total", key) == successes, key
        assert m.get("pbs_job_running", vm[101]) == 1
        m = second.wait_polls(3)
    # Counters continued: no reset for rate() to misread.
    for series, value in before.series("pbs_job_attempt_total").items():
        assert m.series("pbs_job_attempt_total")[series] >= value
    assert second.stop() == 0  # SIGTERM: clean exit
    assert json.loads(second.state.read_text())["version"] == 1

    third = exporters(tmp_path, fake.url, ["--overlap", "60"]).start()
    m = third.wait_polls(3)
    for key, (attempts, _) in expected:
        assert m.get("pbs_job_attempt_total", key) == attempts, key
    assert "no state file" not in third.log()


FAULTS = {  # fault: (how to cause it, the error kind it counts)
    "down": "connect", "slow": "timeout", "401": "auth", "403": "auth",
    "500": "http", "garbage": "parse", "shape": "parse"}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_pbs_trouble_sets_pbs_up_0_and_recovers(fault, fake, exporters,
                                                tmp_path):
    now = int(time.time())
    vm101 = job("vm/101", "backup", "store1")
    fake.add_datastore("store1", 2**40, 2**39)
    fake.add_task("backup", "store1:vm/101", now - 100, now - 90)
    exporter = exporters(tmp_path, fake.url, ["--timeout", "0.5"]).start()
    exporter.wait_metric("pbs_job_attempt_total", vm101, 1)
    port = fake.port
    if fault == "down":
        fake.stop()
    elif fault == "401":
        fake.token = "exporter@pbs!metrics:revoked"
    else:
        fake.slow_seconds = 3
        fake.fault = fault

    kind = {"kind": FAULTS[fault]}
    m = exporter.wait_metric("pbs_up", {}, 0)
    assert m.get("pbs_exporter_scrape_errors_total", kind) >= 1
    fake.add_task("backup", "store1:vm/101", now - 50, now - 40, "failed")
    m = exporter.wait_polls(3)  # several failed polls in a row
    assert m.get("pbs_up") == 0
    assert m.get("pbs_exporter_scrape_errors_total", kind) >= 3
    assert m.get("pbs_job_attempt_total", vm101) == 1  # last known, kept
    assert m.get("pbs_datastore_size_bytes", {"datastore": "store1"}) is None

    if fault == "down":
        fake.start(port)
    fake.token, fake.fault = TOKEN, None
    m = exporter.wait_metric("pbs_job_attempt_total", vm101, 2)
    assert m.get("pbs_up") == 1
    assert m.get("pbs_job_success_total", vm101) == 1
    log = exporter.log()
    assert "Traceback" not in log
    failures = [line for line in log.splitlines()
                if line.startswith("ERROR PBS task list")]
    assert len(failures) == 1, log  # one line, not one per poll
    assert log.count("PBS task list: working again") == 1
    assert exporter.proc.poll() is None


def test_clock_skew_is_counted_once_and_does_not_stall_counting(
        fake, exporters, tmp_path):
    now = int(time.time())
    future = job("vm/101", "backup", "store1")
    backwards = job("vm/102", "backup", "store1")
    later = job("vm/103", "backup", "store1")
    fake.add_task("backup", "store1:vm/101", now + 86400, now + 86460)
    fake.add_task("backup", "store1:vm/102", now - 100, now - 200)
    exporter = exporters(tmp_path, fake.url, ["--overlap", "60"]).start()
    m = exporter.wait_metric("pbs_job_attempt_total", backwards, 1)
    assert m.get("pbs_job_attempt_total", future) == 1
    assert m.get("pbs_exporter_scrape_errors_total",
                 {"kind": "clock_skew"}) == 2
    assert m.get("pbs_job_last_duration_seconds", backwards) == 0
    assert m.get("pbs_job_duration_seconds_sum", future) == 60
    # A task stamped a day ahead must not move the cursor past this one.
    fake.add_task("backup", "store1:vm/103", now + 1, now + 2)
    m = exporter.wait_metric("pbs_job_attempt_total", later, 1)
    m = exporter.wait_polls(3)
    assert m.get("pbs_job_attempt_total", future) == 1
    assert m.get("pbs_job_attempt_total", backwards) == 1
    assert m.get("pbs_job_attempt_total", later) == 1
    assert m.get("pbs_exporter_scrape_errors_total",
                 {"kind": "clock_skew"}) == 2
    assert "clock skew" in exporter.log()


@pytest.mark.parametrize("content", [
    b"{not json", b'{"version": 1}', b'{"version": 1, "cursor": 5, "counted":'
    b' {"x": 1}, "running": {}, "jobs": [], "buckets": []}', b"\xff\xfe\x00",
    json.dumps({"version": 1, "cursor": 5, "counted": {}, "running": {},
                "buckets": [], "jobs": [{
                    "job_type": "backup", "job_id": "vm/101",
                    "datastore": "store1", "attempts": 1, "successes": 1,
                    "warnings": 0, "last_run": "yesterday",
                    "last_success": None, "last_duration": None,
                    "buckets": [0] * 13, "duration_sum": 0}]}).encode()],
    ids=["not-json", "incomplete", "bad-upid", "binary", "bad-field-type"])
def test_corrupt_state_file_is_moved_aside(content, fake, exporters,
                                           tmp_path):
    now = int(time.time())
    fake.add_task("backup", "store1:vm/101", now - 100, now - 90)
    (tmp_path / "state.json").write_bytes(content)
    exporter = exporters(tmp_path, fake.url).start()
    m = exporter.wait_metric("pbs_job_attempt_total",
                             job("vm/101", "backup", "store1"), 1)
    assert m.get("pbs_up") == 1
    assert m.get("pbs_exporter_scrape_errors_total", {"kind": "state"}) == 1
    aside = list(tmp_path.glob("state.json.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == content
    wait_for(lambda: (tmp_path / "state.json").exists(), "new state file")
    assert json.loads((tmp_path / "state.json").read_text())["jobs"]
    assert exporter.log().count("unusable") == 1


def test_unwritable_state_file_is_an_error_not_a_crash(fake, exporters,
                                                       tmp_path):
    now = int(time.time())
    vm101 = job("vm/101", "backup", "store1")
    fake.add_task("backup", "store1:vm/101", now - 100, now - 90)
    exporter = exporters(tmp_path, fake.url).start()
    exporter.wait_metric("pbs_job_attempt_total", vm101, 1)
    exporter.state.unlink()
    exporter.state.mkdir()  # renaming onto a directory fails, even for root
    fake.add_task("backup", "store1:vm/101", now - 50, now - 40)
    m = exporter.wait_metric("pbs_job_attempt_total", vm101, 2)
    assert m.get("pbs_exporter_scrape_errors_total", {"kind": "state"}) == 1
    assert m.get("pbs_up") == 1
    exporter.state.rmdir()
    fake.add_task("backup", "store1:vm/101", now - 30, now - 20)
    exporter.wait_metric("pbs_job_attempt_total", vm101, 3)
    state = wait_for(lambda: exporter.state.is_file() and json.loads(
        exporter.state.read_text()), "state file written again")
    assert [j["attempts"] for j in state["jobs"]] == [3]
    log = exporter.log()
    assert log.count("ERROR state file") == 1
    assert "state file: working again" in log


def test_missing_state_file_counts_recent_history_only(fake, exporters,
                                                       tmp_path):
    now = int(time.time())
    fake.add_task("backup", "store1:vm/101", now - 7200, now - 7100)
    fake.add_task("backup", "store1:vm/101", now - 100, now - 90)
    exporter = exporters(tmp_path, fake.url,
                         ["--initial-lookback", "3600"]).start()
    m = exporter.wait_metric("pbs_up", {}, 1)
    assert m.get("pbs_job_attempt_total",
                 job("vm/101", "backup", "store1")) == 1
    assert "no state file" in exporter.log()


def run_bad_start(tmp_path, *args, token=TOKEN):
    token_file = tmp_path / "token"
    token_file.write_text(token)
    defaults = {"--pbs-url": "https://127.0.0.1:8007",
                "--token-file": str(token_file),
                "--listen": "127.0.0.1:0",
                "--state-file": str(tmp_path / "state.json")}
    argv = list(args)
    for flag, value in defaults.items():
        if flag not in argv:
            argv += [flag, value]
    return subprocess.run([sys.executable, str(EXPORTER), *argv],
                          capture_output=True, text=True, timeout=DEADLINE)


@pytest.mark.parametrize("args,token,message", [
    (["--token-file", "/nonexistent/token"], TOKEN, "No such file"),
    ([], "just-a-secret-" + SECRET, "user@realm!tokenid:secret"),
    (["--pbs-url", "ftp://pbs.example:8007"], TOKEN, "expected https://"),
    (["--pbs-url", "localhost:8007"], TOKEN, "expected https://"),
    (["--pbs-url", "https://pbs.example:99999"], TOKEN, "out of range"),
    (["--listen", "9101"], TOKEN, "expected host:port"),
    (["--listen", "no.such.host.invalid:9101"], TOKEN, "--listen"),
    (["--state-file", "/nonexistent/dir/state.json"], TOKEN, "does not exist"),
    (["--ca-file", "/nonexistent/ca.pem"], TOKEN, "--ca-file"),
    (["--interval", "0"], TOKEN, "must be > 0"),
], ids=["token-missing", "token-malformed", "url-scheme", "url-no-scheme",
        "url-port", "listen-form", "listen-host", "state-dir", "ca-file",
        "interval"])
def test_start_up_mistakes_fail_at_once_with_one_clear_line(
        args, token, message, tmp_path):
    result = run_bad_start(tmp_path, *args, token=token)
    assert result.returncode != 0
    assert message in result.stderr
    assert "Traceback" not in result.stderr
    assert SECRET not in result.stderr
    assert "error:" in result.stderr.splitlines()[-1]


def test_listen_port_in_use_fails_at_once(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = run_bad_start(tmp_path, "--listen", f"127.0.0.1:{port}")
    assert result.returncode == 2
    assert "cannot listen" in result.stderr
    assert "Traceback" not in result.stderr


def test_tls_verification(fake, exporters, tmp_path):
    cert, key = tmp_path / "pbs.pem", tmp_path / "pbs.key"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    fake.stop()
    port = fake.start(ssl_context=context)
    fake.add_task("backup", "store1:vm/101", NOW - 100, NOW - 90)
    url = f"https://127.0.0.1:{port}"
    pinned = exporters(tmp_path, url, ["--ca-file", str(cert)],
                       state="a.json").start()
    system_cas = exporters(tmp_path, url, state="b.json").start()
    unverified = exporters(tmp_path, url, ["--no-verify-tls"],
                           state="c.json").start()
    vm101 = job("vm/101", "backup", "store1")
    pinned.wait_metric("pbs_job_attempt_total", vm101, 1)
    unverified.wait_metric("pbs_job_attempt_total", vm101, 1)
    m = system_cas.wait_metric("pbs_up", {}, 0)
    assert m.get("pbs_exporter_scrape_errors_total", {"kind": "tls"}) >= 1
    assert "CERTIFICATE_VERIFY_FAILED" in system_cas.log()


def load_module():
    spec = importlib.util.spec_from_file_location("pbs_job_exporter",
                                                  EXPORTER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


WORKER_IDS = [  # worker_type, worker_id, sync job stores, labels or reason
    ("backup", "store1:vm/101", {}, ("backup", "vm/101", "store1")),
    ("backup", "store1:ns/prod/ct/200", {},
     ("backup", "ns/prod/ct/200", "store1")),
    ("syncjob", "offsite:main:store1::s-1", {}, ("sync", "s-1", "store1")),
    # PBS before namespaces had one field less.
    ("syncjob", "offsite:main:store1:s-1", {}, ("sync", "s-1", "store1")),
    # The sync job's config knows its local datastore better.
    ("syncjob", "a:b:c:d:s-1", {"s-1": "local"}, ("sync", "s-1", "local")),
    ("sync", "offsite:main:store2", {}, ("sync", "manual", "store2")),
    ("verificationjob", "store1:v-1", {}, ("verify", "v-1", "store1")),
    ("verify", "store1", {}, ("verify", "manual", "store1")),
    ("verify_group", "store1:vm/101", {}, ("verify", "manual", "store1")),
    ("verify_snapshot", "store1:vm/101/6553F0A0", {},
     ("verify", "manual", "store1")),
    ("prunejob", "store2:p-1", {}, ("prune", "p-1", "store2")),
    ("prune", "store2:vm/300", {}, ("prune", "manual", "store2")),
    ("garbage_collection", "store1", {}, ("gc", "store1", "store1")),
    ("tape-backup-job", "x:y", {}, "unknown_type"),
    ("prunejob", "store2", {}, "malformed"),
    ("backup", "store1:", {}, "malformed"),
]


@pytest.mark.parametrize("worker_type,worker_id,stores,want", WORKER_IDS,
                         ids=[f"{w[0]}-{w[1]}" for w in WORKER_IDS])
def test_job_labels_from_worker_ids(worker_type, worker_id, stores, want):
    module = load_module()
    task = module.Task("UPID:x", worker_type, worker_id, 1, 2, "OK")
    key, reason = module.classify(task, stores)
    assert (key or reason) == want


# --- the seed's recording rule, evaluated by the real promtool ----------

RULE = {"groups": [{"name": "backups", "rules": [{
    "record": "job:backup_success:ratio",
    "expr": "sum(rate(pbs_job_success_total[1h]))\n  /\n"
            "sum(rate(pbs_job_attempt_total[1h]))\n",
    "labels": {"slo": "99.5"}}]}]}


def series_name(name, labels):
    inner = ",".join(f'{k}="{v}"' for k, v in sorted(labels))
    return f"{name}{{{inner}}}"


def promtool_test(tmp_path, series, expected):
    rules, tests = tmp_path / "rules.yml", tmp_path / "rules_test.yml"
    rules.write_text(yaml.safe_dump(RULE))
    tests.write_text(yaml.safe_dump({
        "rule_files": [rules.name], "evaluation_interval": "1m",
        "tests": [{"interval": "5m", "input_series": series,
                   "promql_expr_test": [{
                       "expr": "round(job:backup_success:ratio, 0.0001)",
                       "eval_time": "60m",
                       "exp_samples": [{"labels": '{slo="99.5"}',
                                        "value": expected}]}]}]}))
    return subprocess.run(["promtool", "test", "rules", str(tests)],
                          capture_output=True, text=True, cwd=tmp_path,
                          timeout=60)


def test_backup_success_ratio_from_served_series_via_promtool(
        fake, exporters, tmp_path):
    assert shutil.which("promtool"), "apt-get install prometheus (promtool)"
    now = int(time.time())
    jobs = {"vm101": ("backup", "store1:vm/101"),
            "vm102": ("backup", "store1:vm/102"),
            "ct200": ("backup", "store2:ct/200"),
            "sync": ("syncjob", "offsite:main:store1::s-offsite"),
            "new": ("syncjob", "offsite:main:store2::s-new"),
            "verify": ("verificationjob", "store1:v-weekly"),
            "gc": ("garbage_collection", "store1")}
    fake.add_job("sync", "s-offsite", "store1")
    fake.add_job("sync", "s-new", "store2")  # first runs inside the window
    fake.add_job("verify", "v-weekly", "store1")
    for name in ("vm101", "vm102", "ct200", "sync", "verify", "gc"):
        fake.add_task(*jobs[name], now - 7000, now - 6990)  # history
    # What runs before each of the 12 later samples (5 min apart), and how
    # it ends; an exporter restart comes with sample 6.
    plan = {step: [("vm101", "OK"),
                   ("vm102", "OK" if step % 4 else "backup failed: EIO"),
                   ("ct200", "WARNINGS: 1" if step % 5 else "timeout")]
            for step in range(1, 13)}
    plan[3].append(("sync", "OK"))
    plan[6].append(("verify", "verification failed"))
    plan[8].append(("new", "OK"))
    plan[9].append(("sync", "sync failed: remote unreachable"))
    plan[10].append(("gc", "OK"))
    attempts = sum(len(runs) for runs in plan.values())
    successes = sum(status == "OK" or status.startswith("WARNINGS")
                    for runs in plan.values() for _, status in runs)

    exporter = exporters(tmp_path, fake.url).start()
    history = 6
    m = exporter.wait_polls(2)
    assert m.total("pbs_job_attempt_total") == history
    samples = [m]
    for step in range(1, 13):
        if step == 6:
            exporter.stop(signal.SIGKILL)
        for name, status in plan[step]:
            start = int(time.time()) - 2
            fake.add_task(*jobs[name], start, start + 1, status)
        if step == 6:
            exporter = exporters(tmp_path, fake.url).start()
        total = history + sum(len(plan[s]) for s in range(1, step + 1))
        wait_for(lambda: exporter.scrape().total("pbs_job_attempt_total")
                 == total, f"{total} attempts")
        samples.append(exporter.wait_polls(2))

    series = []
    for name in ("pbs_job_success_total", "pbs_job_attempt_total"):
        keys = set().union(*(s.series(name) for s in samples))
        assert len(keys) == 7
        for labels in sorted(keys, key=sorted):
            values = [s.series(name).get(labels) for s in samples]
            # Every series exists from the first sample, so rate() over the
            # window sees each run; s-new is there at 0 from its job status.
            assert None not in values, labels
            series.append({"series": series_name(name, labels),
                           "values": " ".join(f"{v:g}" for v in values)})
    for name, added in (("pbs_job_success_total", successes),
                        ("pbs_job_attempt_total", attempts)):
        assert samples[-1].total(name) - samples[0].total(name) == added

    ratio = math.floor(successes / attempts * 10000 + 0.5) / 10000
    result = promtool_test(tmp_path, series, ratio)
    assert result.returncode == 0, result.stdout + result.stderr
    # The check can fail: a wrong expectation makes promtool say so.
    wrong = promtool_test(tmp_path, series, ratio + 0.01)
    assert wrong.returncode != 0
    output = wrong.stdout + wrong.stderr
    got = re.search(r'got: \{slo="99\.5"\} (\S+)', output)
    assert got and float(got.group(1)) == ratio, output
