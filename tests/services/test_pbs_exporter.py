"""The PBS job exporter, run as a real process against a fake PBS API: the zipapp cloud-init ships.

Every wait polls with a deadline; nothing sleeps a fixed time or asserts on
speed.  Needs promtool on PATH (`make upstream`).
"""

import atexit
import collections
import functools
import gzip
import json
import math
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as parse_openmetrics,
)
from prometheus_client.parser import text_string_to_metric_families

from model.cloud_init import exporter_zipapp
from services.pbs_exporter.collector.jobs import JobCatalog
from services.pbs_exporter.problems import Problems
from services.pbs_exporter.shapes import Task, classify, upid_starttime
from tests.fake_pbs import (
    TOKEN,
    FakePBS,
    job_worker_id,
    manual_worker_id,
    systemd_escape,
    verify_new_worker_id,
)

ROOT = Path(__file__).resolve().parents[2]
SECRET = TOKEN.rsplit(":", 1)[1]
DEADLINE = 20.0


@functools.cache
def exporter_command():
    """How the pbs host runs the exporter: the zipapp of model/cloud_init.py, from a directory of
    its own (nothing of the repository on its path but what the archive carries)."""
    home = Path(tempfile.mkdtemp(prefix="pbs-exporter-"))
    atexit.register(shutil.rmtree, home, True)
    zipapp = home / "pbs-job-exporter.pyz"
    zipapp.write_bytes(exporter_zipapp())
    return [sys.executable, str(zipapp)]


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
        with open(self.log_path, "w") as log_file:  # the child keeps it
            self.proc = subprocess.Popen(
                [*exporter_command(), "--pbs-url", self.url,
                 "--token-file", str(self.token_file), "--listen",
                 "127.0.0.1:0", "--state-file", str(self.state),
                 "--interval", "0.1", "--timeout", "2", *self.extra],
                stdout=subprocess.DEVNULL, stderr=log_file)
        match = wait_for(lambda: self.proc.poll() is None and re.search(
            r"listening on 127\.0\.0\.1:(\d+)", self.log()), "listen line")
        self.port = int(match.group(1))
        return self

    def log(self):
        return self.log_path.read_text()

    def get(self, path, accept):
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.port}{path}", headers={"Accept": accept})
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read().decode()

    def scrape(self, openmetrics=False):
        text = self.get("/metrics",
                        "application/openmetrics-text; version=0.0.1"
                        if openmetrics else "text/plain")
        if openmetrics:
            list(parse_openmetrics(text))  # raises on invalid exposition
        return Metrics(text)

    def wait_polls(self, count=2):
        """Wait until ``count`` more polls finished: the last one started
        after this call."""
        now = self.scrape().get("pbs_exporter_scrapes_total") or 0
        return self.wait_until(lambda m: (m.get(
            "pbs_exporter_scrapes_total") or 0) >= now + count,
            f"{count} more polls")

    def wait_metric(self, name, labels, value):
        return self.wait_until(lambda m: m.get(name, labels) == value,
                               f"{name}{labels} == {value}")

    def wait_until(self, predicate, what):
        """The first scrape whose metrics fulfil ``predicate``."""
        def scraped():
            metrics = self.scrape()
            return metrics if predicate(metrics) else None
        return wait_for(scraped, what)

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=DEADLINE)
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


def seed_datastores(fake, now):
    """store1 with a namespace and a GC schedule, store2 without; four
    snapshots of three backup types."""
    fake.add_datastore("store1", 4 * 2**40, 2**40, namespaces=("", "prod"))
    fake.add_datastore("store2", 2 * 2**40, 3 * 2**39, gc_schedule=None)
    fake.add_snapshot("store1", "vm", "101", now - 86400)
    fake.add_snapshot("store1", "vm", "101", now - 3000)
    fake.add_snapshot("store1", "ct", "200", now - 3000, ns="prod")
    fake.add_snapshot("store2", "host", "pve1", now - 3000)


def seed(fake):
    """A small PBS: two datastores, jobs of every type, finished, running,
    manual and foreign tasks, with the worker ids PBS writes."""
    seed_datastores(fake, NOW)
    fake.add_job("sync", "s-offsite", "store1")
    fake.add_job("sync", "s-new", "store2", next_run=NOW + 7200)
    fake.add_job("verify", "v-weekly", "store1")
    fake.add_job("verify", "v-old", "store2", status={
        "last-run-endtime": NOW - 30 * 86400, "last-run-state": "OK"})
    fake.add_job("prune", "p-daily", "store2")
    add = fake.add_task
    add("backup", "store1:vm/101", NOW - 3000, NOW - 2900)
    add("backup", "store1:vm/101", NOW - 2000, NOW - 1990,
        "backup failed: connection reset by peer")
    add("backup", "store1:ct/200", NOW - 1900, NOW - 1700, "WARNINGS: 1")
    add("backup", "store2:host/pve1", NOW - 1500, NOW - 1400)
    fake.run_job("sync", "s-offsite", NOW - 1300, NOW - 1200)
    fake.run_job("sync", "s-offsite", NOW - 900, NOW - 800)
    fake.run_job("verify", "v-weekly", NOW - 1200, NOW - 1000,
                 "verification failed - please check the log for details")
    fake.run_job("prune", "p-daily", NOW - 700, NOW - 690)
    fake.run_job("gc", "store1", NOW - 6000, NOW - 1000)
    add("verify_snapshot", manual_worker_id(
        "verify_snapshot", "store1", group="vm/101",
        snapshot_time=NOW - 3000), NOW - 600, NOW - 550)
    add("prune", manual_worker_id("prune", "store2", group="vm/300"),
        NOW - 500, NOW - 499)
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
        (job("store2", "gc", "store2"), (0, 0, 0)),  # from the gc status
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
    next_runs = m.series("pbs_job_next_run_timestamp_seconds")
    assert next_runs[frozenset(job("s-new", "sync", "store2").items())] == \
        NOW + 7200
    # Every sync, verify and prune job, and GC where it has a schedule.
    assert {dict(k)["job_id"] for k in next_runs} == {
        "s-offsite", "s-new", "v-weekly", "v-old", "p-daily", "store1"}
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
    assert m.get("pbs_exporter_tasks_ignored_total",
                 {"reason": "malformed"}) == 0
    assert m.total("pbs_exporter_scrape_errors_total") == 0
    exporter.scrape(openmetrics=True)  # strict parser accepts it too
    # Gzipped as Prometheus asks for it: the same series, and the process's.
    request = urllib.request.Request(
        f"http://127.0.0.1:{exporter.port}/metrics",
        headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        unzipped = Metrics(gzip.decompress(response.read()).decode())
    assert unzipped.series("pbs_job_attempt_total") == \
        m.series("pbs_job_attempt_total")
    assert unzipped.get("process_resident_memory_bytes") > 0
    log = exporter.log()
    assert log.count("'reader'") == 1 and log.count("'aptupdate'") == 1
    # Paged, and only parameters PBS knows (the fake refuses the others).
    assert all(q.get("limit") for q in fake.task_requests())


@pytest.mark.parametrize("archived_late", [False, True],
                         ids=["listed", "looked-up"])
def test_running_tasks_are_counted_once_when_they_finish(
        archived_late, fake, exporters, tmp_path):
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
    if archived_late:
        # PBS archives a task when it ends, so the listing reaches every
        # task that ended after the cursor.  One archived late with its
        # real, older end time (its process died between logging its end
        # and archiving it) ends the listing early: then a lookup by start
        # time finds the long task.
        fake.add_task("backup", "store1:vm/103", now - 500, now - 400,
                      archived=now + 2)
    m = exporter.wait_metric("pbs_job_attempt_total", verify, 1)
    m = exporter.wait_metric("pbs_job_attempt_total", vm101, 1)
    assert bool(fake.task_requests("until")) == archived_late
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
    assert json.loads(second.state.read_text())["version"] == 2

    third = exporters(tmp_path, fake.url, ["--overlap", "60"]).start()
    m = third.wait_polls(3)
    for key, (attempts, _) in expected:
        assert m.get("pbs_job_attempt_total", key) == attempts, key
    assert "no state file" not in third.log()


class Book:
    """What the tests made PBS run: expected attempts and successes by
    (job_id, job_type, datastore), written down next to each task."""

    def __init__(self):
        self.attempts = collections.Counter()
        self.successes = collections.Counter()

    def ran(self, job_id, job_type, datastore, status="OK"):
        key = frozenset(job(job_id, job_type, datastore).items())
        self.attempts[key] += 1
        self.successes[key] += status == "OK" or status.startswith("WARN")

    def configured(self, job_id, job_type, datastore):
        key = frozenset(job(job_id, job_type, datastore).items())
        self.attempts[key] += 0
        self.successes[key] += 0

    def check(self, m):
        assert m.series("pbs_job_attempt_total") == dict(self.attempts)
        assert m.series("pbs_job_success_total") == dict(self.successes)
        assert m.get("pbs_exporter_tasks_ignored_total",
                     {"reason": "malformed"}) == 0
        assert m.total("pbs_exporter_scrape_errors_total") == 0


def test_pbs_33_namespaces_push_jobs_manual_runs_across_a_restart(
        fake, exporters, tmp_path):
    """Several datastores and namespaces, prune jobs on the root and on
    namespaces (two on one), pull, push and local sync jobs, manual runs, a
    crashed task; the exporter is killed while tasks run, and tasks end
    while it is down.  Every task counts once, for the right job."""
    now = int(time.time())
    book = Book()
    fake.add_datastore("store1", 2**42, 2**40, namespaces=("", "prod"))
    fake.add_datastore("store2", 2**42, 2**41,
                       namespaces=("", "prod", "prod/db"))
    fake.add_job("prune", "p-root", "store1")
    fake.add_job("prune", "p-prod", "store1", ns="prod")
    fake.add_job("prune", "p-a", "store2", ns="prod")
    fake.add_job("prune", "p-b", "store2", ns="prod", **{"max-depth": 0})
    fake.add_job("sync", "s-pull", "store1")
    fake.add_job("sync", "s-push", "store2", next_run=now + 900,
                 **{"sync-direction": "push", "remote-store": "offsite2"})
    fake.add_job("sync", "s-local", "store1", remote=None,
                 **{"remote-store": "store2", "ns": "prod"})
    fake.add_job("verify", "v-prod", "store1", ns="prod")
    for store in ("store1", "store2"):
        book.configured(store, "gc", store)

    def run(kind, job_id, store, start, end, status="OK"):
        book.ran(job_id, kind, store, status)
        return fake.run_job(kind, job_id, start, end, status)

    def manual(worker_type, job_type, store, start, status="OK", **where):
        book.ran("manual", job_type, store, status)
        fake.add_task(worker_type, manual_worker_id(worker_type, store,
                                                    **where),
                      start, start + 3, status)

    # History, before the exporter's first poll.
    run("prune", "p-a", "store2", now - 3000, now - 2990)
    run("prune", "p-root", "store1", now - 2900, now - 2895)
    run("prune", "p-prod", "store1", now - 2800, now - 2790, "WARNINGS: 1")
    run("sync", "s-pull", "store1", now - 2700, now - 2600)
    run("sync", "s-local", "store1", now - 2650, now - 2640)
    run("gc", "store2", "store2", now - 2500, now - 2000)
    for start in (now - 1900, now - 1800):  # one guest in two namespaces
        book.ran("vm/101", "backup", "store1")
        fake.add_task("backup", "store1:vm/101", start, start + 60)
    manual("sync", "sync", "store2", now - 1700)
    manual("prune", "prune", "store1", now - 1600)
    manual("prune", "prune", "store1", now - 1500, ns="prod",
           group="vm/101")
    manual("verify", "verify", "store1", now - 1400, "verify failed")
    manual("verify_group", "verify", "store1", now - 1300, ns="prod",
           group="vm/101")
    manual("verify_snapshot", "verify", "store2", now - 1200,
           group="ct/200", snapshot_time=now - 86400)
    # Running at the first poll.
    b1 = fake.run_job("prune", "p-b", now - 100)
    gc1 = fake.run_job("gc", "store1", now - 5000)
    crashing = fake.run_job("verify", "v-prod", now - 4000)

    first = exporters(tmp_path, fake.url, ["--overlap", "60"]).start()
    m = first.wait_metric("pbs_job_running", job("p-b", "prune", "store2"), 1)
    book.configured("s-push", "sync", "store2")  # only sync-direction=all
    book.configured("p-b", "prune", "store2")
    book.configured("v-prod", "verify", "store1")
    book.check(m)
    assert m.get("pbs_job_running", job("store1", "gc", "store1")) == 1
    assert m.get("pbs_job_running", job("v-prod", "verify", "store1")) == 1
    assert m.get("pbs_job_next_run_timestamp_seconds",
                 job("s-push", "sync", "store2")) == now + 900
    for store in ("store1", "store2"):
        assert m.get("pbs_job_next_run_timestamp_seconds",
                     job(store, "gc", store)) is not None
    assert m.get("pbs_job_last_success_timestamp_seconds",
                 job("store2", "gc", "store2")) == now - 2000
    assert all(q == {"sync-direction": ["all"]}
               for q in fake.requested("/admin/sync"))
    assert first.stop(signal.SIGKILL) == -signal.SIGKILL
    cursor = json.loads(first.state.read_text())["cursor"]

    # While the exporter is down.  p-b's run ends and p-b runs again, so its
    # job status no longer names the first run; p-a runs twice, so only
    # its second run is in its job status.
    book.ran("p-b", "prune", "store2")
    fake.finish_task(b1, now - 98)
    run("prune", "p-b", "store2", now - 97, now - 96)
    run("prune", "p-a", "store2", now - 90, now - 85)
    run("prune", "p-a", "store2", now - 30, now - 25)
    run("sync", "s-push", "store2", now - 60, now - 55)
    manual("sync", "sync", "store1", now - 50)
    book.ran("store1", "gc", "store1")
    fake.finish_task(gc1, now - 10)
    book.ran("vm/102", "backup", "store1")
    short = fake.add_task("backup", "store1:vm/102", now - 20, now - 15)
    # The verify's process dies: PBS archives it after the backup, ending
    # at its last log line, long before the cursor.
    book.ran("v-prod", "verify", "store1", "unknown")
    fake.crash(crashing, last_log=now - 3500)
    listed = fake.list_tasks({"since": [str(cursor)], "limit": ["0"]})
    assert short not in {t["upid"] for t in listed}, "since alone finds it"

    second = exporters(tmp_path, fake.url, ["--overlap", "60"]).start()
    total = sum(book.attempts.values())
    m = second.wait_until(
        lambda m: m.total("pbs_job_attempt_total") == total,
        f"{total} attempts")
    book.check(m)
    assert m.total("pbs_job_running") == 0
    book.check(second.wait_polls(3))  # and no task counts twice
    assert "ambiguous" not in second.log() + first.log()
    assert "unmatched" not in second.log() + first.log()


def test_a_crashed_task_does_not_hide_tasks_archived_before_it(
        fake, exporters, tmp_path):
    now = int(time.time())
    stuck = fake.add_task("verificationjob", "store1:v-1", now - 7200)
    fake.add_task("backup", "store1:vm/100", now - 10, now - 5)
    exporter = exporters(tmp_path, fake.url, ["--overlap", "60"]).start()
    exporter.wait_metric("pbs_job_attempt_total",
                         job("vm/100", "backup", "store1"), 1)
    cursor = json.loads(exporter.state.read_text())["cursor"]
    short = fake.add_task("backup", "store1:vm/101", now - 3, now - 2)
    fake.crash(stuck, last_log=now - 7000)  # archived now, ended long ago
    assert short not in {t["upid"] for t in fake.list_tasks(
        {"since": [str(cursor)], "limit": ["0"]})}, "since alone finds it"
    vm101 = job("vm/101", "backup", "store1")
    verify = job("v-1", "verify", "store1")
    m = exporter.wait_metric("pbs_job_attempt_total", vm101, 1)
    m = exporter.wait_metric("pbs_job_attempt_total", verify, 1)
    assert m.get("pbs_job_success_total", verify) == 0  # "unknown" failed
    assert m.get("pbs_job_last_run_timestamp_seconds", verify) == now - 7000
    m = exporter.wait_polls(3)
    assert m.get("pbs_job_attempt_total", vm101) == 1
    assert m.get("pbs_job_attempt_total", verify) == 1
    assert m.total("pbs_exporter_scrape_errors_total") == 0


@pytest.fixture
def fake_of():
    started = []

    def make(version):
        pbs = FakePBS(version=version)
        pbs.start()
        started.append(pbs)
        return pbs

    yield make
    for pbs in started:
        pbs.stop()


def test_pbs_32_refuses_sync_direction_and_still_lists_pull_jobs(
        fake_of, exporters, tmp_path):
    now = int(time.time())
    fake = fake_of((3, 2))
    fake.add_datastore("store1", 2**40, 2**39)
    fake.add_job("sync", "s-pull", "store1", next_run=now + 600)
    fake.run_job("sync", "s-pull", now - 100, now - 90)
    exporter = exporters(tmp_path, fake.url).start()
    exporter.wait_polls(2)
    m = exporter.wait_polls(2)
    s_pull = job("s-pull", "sync", "store1")
    assert m.get("pbs_job_attempt_total", s_pull) == 1
    assert m.get("pbs_job_next_run_timestamp_seconds", s_pull) == now + 600
    assert m.get("pbs_job_next_run_timestamp_seconds",
                 job("store1", "gc", "store1")) is not None
    assert m.total("pbs_exporter_scrape_errors_total") == 0
    asked = fake.requested("/admin/sync")
    # Asked once for all directions, refused; then only without, for now.
    assert asked[0] == {"sync-direction": ["all"]} and len(asked) >= 4
    assert asked[1:] == [{}] * (len(asked) - 1)
    assert exporter.log().count("refuses sync-direction") == 1


def test_pbs_31_has_gc_status_only_per_datastore(fake_of, exporters,
                                                 tmp_path):
    now = int(time.time())
    fake = fake_of((3, 1))
    fake.add_datastore("store1", 2**40, 2**39)
    fake.add_datastore("store2", 2**40, 2**39)
    fake.run_job("gc", "store1", now - 100, now - 50)
    exporter = exporters(tmp_path, fake.url).start()
    exporter.wait_polls(2)
    m = exporter.wait_polls(2)
    assert m.series("pbs_job_attempt_total") == {
        frozenset(job("store1", "gc", "store1").items()): 1,
        frozenset(job("store2", "gc", "store2").items()): 0}
    assert m.series("pbs_job_next_run_timestamp_seconds") == {}
    assert m.total("pbs_exporter_scrape_errors_total") == 0
    assert len(fake.requested("/admin/gc")) == 1  # 404 once, then not again
    assert fake.requested("/admin/datastore/store2/gc")


def test_gc_job_status_gives_last_run_older_than_the_history(
        fake, exporters, tmp_path):
    now = int(time.time())
    fake.add_datastore("store1", 2**40, 2**39)
    fake.run_job("gc", "store1", now - 3 * 86400, now - 3 * 86400 + 600,
                 "WARNINGS: 2")
    exporter = exporters(tmp_path, fake.url,
                         ["--initial-lookback", "86400"]).start()
    m = exporter.wait_metric("pbs_up", {}, 1)
    gc = job("store1", "gc", "store1")
    assert m.get("pbs_job_attempt_total", gc) == 0  # before the lookback
    assert m.get("pbs_job_last_success_timestamp_seconds", gc) == \
        now - 3 * 86400 + 600
    assert m.get("pbs_job_next_run_timestamp_seconds", gc) > now


def test_version_1_state_keeps_counters_and_drops_misnamed_prune_series(
        fake, exporters, tmp_path):
    """Exporters before the state's version 2 counted a prune job on
    namespace "prod" as job_id="prod"; that frozen series would go stale."""
    now = int(time.time())
    fake.add_datastore("store1", 2**40, 2**39)
    fake.add_job("prune", "p-prod", "store1", ns="prod")

    def entry(job_type, job_id, store, attempts):
        return {"job_type": job_type, "job_id": job_id, "datastore": store,
                "attempts": attempts, "successes": attempts, "warnings": 0,
                "last_run": now - 600, "last_success": now - 600,
                "last_duration": 5.0, "buckets": [attempts] + [0] * 12,
                "duration_sum": 5.0 * attempts}

    (tmp_path / "state.json").write_text(json.dumps({
        "version": 1, "cursor": now - 3600, "buckets": [
            10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400, 28800,
            86400],
        "counted": {}, "running": {}, "jobs": [
            entry("backup", "vm/101", "store1", 5),
            entry("prune", "prod", "store1", 3),
            entry("prune", "p-prod", "store1", 2),
            entry("prune", "manual", "store1", 1)]}))
    exporter = exporters(tmp_path, fake.url).start()
    m = exporter.wait_polls(2)
    assert m.series("pbs_job_attempt_total") == {
        frozenset(job("vm/101", "backup", "store1").items()): 5,
        frozenset(job("p-prod", "prune", "store1").items()): 2,
        frozenset(job("manual", "prune", "store1").items()): 1,
        frozenset(job("store1", "gc", "store1").items()): 0}
    state = json.loads(exporter.state.read_text())
    assert state["version"] == 2 and state["prune_ids_checked"] is True
    assert "dropped prune series" in exporter.log()
    assert exporter.stop() == 0
    again = exporters(tmp_path, fake.url).start()
    m = again.wait_polls(2)
    assert len(m.series("pbs_job_attempt_total")) == 4
    assert "dropped prune series" not in again.log()


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
    b"{not json", b'{"version": 1}', (b'{"version": 1, "cursor": 5, '
                                      b'"counted": {"x": 1}, "running": {}, '
                                      b'"jobs": [], "buckets": []}'),
    b"\xff\xfe\x00",
    json.dumps({"version": 1, "cursor": 5, "counted": {}, "running": {},
                "buckets": [], "jobs": [{
                    "job_type": "backup", "job_id": "vm/101",
                    "datastore": "store1", "attempts": 1, "successes": 1,
                    "warnings": 0, "last_run": "yesterday",
                    "last_success": None, "last_duration": None,
                    "buckets": [0] * 13, "duration_sum": 0}]}).encode(),
    json.dumps({"version": 2, "cursor": 5, "counted": {}, "running": {},
                "buckets": [], "jobs": [], "prune_ids_checked": True,
                "prune_runs": {"UPID:x": 7}}).encode(),
    json.dumps({"version": 3, "cursor": 5, "counted": {}, "running": {},
                "buckets": [], "jobs": []}).encode()],
    ids=["not-json", "incomplete", "bad-upid", "binary", "bad-field-type",
         "bad-prune-run", "future-version"])
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
    return subprocess.run([*exporter_command(), *argv],
                          check=False, capture_output=True, text=True,
                          timeout=DEADLINE)


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


def catalog_of(**configs):
    """A JobCatalog holding these job configs, as read from PBS."""
    catalog = JobCatalog(None, Problems())
    for job_type, items in configs.items():
        catalog.configs[job_type] = {item["id"]: item for item in items}
    return catalog


SNAPSHOT = 0x6553F0A0
WORKER_IDS = [  # worker_type, worker_id, sync job stores, labels or reason
    ("backup", "store1:vm/101", {}, ("backup", "vm/101", "store1")),
    ("backup", "store1:host/pve-1.lan", {},
     ("backup", "host/pve-1.lan", "store1")),
    ("syncjob", job_worker_id("sync", {
        "id": "s-1", "store": "store1", "remote": "offsite",
        "remote-store": "main"}), {}, ("sync", "s-1", "store1")),
    ("syncjob", job_worker_id("sync", {  # local sync into a namespace
        "id": "s-2", "store": "store2", "remote-store": "store1",
        "ns": "prod/db"}), {}, ("sync", "s-2", "store2")),
    # PBS before namespaces had one field less.
    ("syncjob", "offsite:main:store1:s-1", {}, ("sync", "s-1", "store1")),
    # The sync job's config knows its local datastore better.
    ("syncjob", "a:b:c:d:s-1", {"s-1": "local"}, ("sync", "s-1", "local")),
    ("verificationjob", job_worker_id("verify", {
        "id": "v-1", "store": "store1"}), {}, ("verify", "v-1", "store1")),
    ("garbage_collection", "store1", {}, ("gc", "store1", "store1")),
    ("sync", manual_worker_id("sync", "store2"), {},
     ("sync", "manual", "store2")),
    ("prune", manual_worker_id("prune", "store2"), {},
     ("prune", "manual", "store2")),
    ("prune", manual_worker_id("prune", "store2", ns="a/b"), {},
     ("prune", "manual", "store2")),
    ("prune", manual_worker_id("prune", "store2", group="vm/300"), {},
     ("prune", "manual", "store2")),
    ("prune", manual_worker_id("prune", "store2", ns="a", group="ct/3"), {},
     ("prune", "manual", "store2")),
    ("verify", manual_worker_id("verify", "store1"), {},
     ("verify", "manual", "store1")),
    ("verify", manual_worker_id("verify", "store1", ns="a/b"), {},
     ("verify", "manual", "store1")),
    ("verify_group", manual_worker_id("verify_group", "store1",
                                      group="vm/101"), {},
     ("verify", "manual", "store1")),
    ("verify_group", manual_worker_id("verify_group", "store1", ns="a",
                                      group="vm/101"), {},
     ("verify", "manual", "store1")),
    ("verify_snapshot", manual_worker_id(
        "verify_snapshot", "store1", group="vm/101",
        snapshot_time=SNAPSHOT), {}, ("verify", "manual", "store1")),
    ("verify_snapshot", manual_worker_id(
        "verify_snapshot", "store1", ns="a/b", group="ct/7",
        snapshot_time=SNAPSHOT), {}, ("verify", "manual", "store1")),
    # the verification PBS starts itself after a backup (datastore verify-new)
    ("verify", verify_new_worker_id("store1", "vm/101", SNAPSHOT), {},
     ("verify", "manual", "store1")),
    ("tape-backup-job", "x:y", {}, "unknown_type"),
    ("reader", "store1:vm/101", {}, "unknown_type"),
    # No PBS writes these.
    ("backup", "store1:", {}, "malformed"),
    ("backup", "store1:ns/prod/ct/200", {}, "malformed"),
    ("backup", "store1:disk/1", {}, "malformed"),
    ("syncjob", "offsite:main:store1", {}, "malformed"),
    ("verificationjob", "store1", {}, "malformed"),
    ("garbage_collection", "", {}, "malformed"),
    ("verify_snapshot", "store1:/vm/101", {}, "malformed"),
    ("verify", "store1:ns/a/vm/101/65A0B0C0", {}, "malformed"),
    ("backup", "store1:vm/" + "9" * 200, {}, "malformed"),  # label too long
]


@pytest.mark.parametrize("worker_type,worker_id,stores,want", WORKER_IDS,
                         ids=[f"{w[0]}-{w[1][:40]}" for w in WORKER_IDS])
def test_job_labels_from_worker_ids(worker_type, worker_id, stores, want):
    catalog = catalog_of(sync=[
        {"id": job_id, "store": store} for job_id, store in stores.items()])
    task = Task("UPID:x", worker_type, worker_id, 1, 2, "OK")
    key, note = classify(task, catalog, {})
    assert (key or note) == want
    assert note is None or key is None


def upid(start):
    return (f"UPID:pbs1:00001234:0001E240:00000007:{start:08X}:prunejob:"
            "store1:root@pam:")


PRUNE_JOBS = [  # prune jobs: p-root alone on store1's root namespace, two on
    # store2's "prod" (p-a ran last at 5000, p-b at 3000), none on store2's
    # root namespace
    {"id": "p-root", "store": "store1", "last-run-upid": upid(100)},
    {"id": "p-a", "store": "store2", "ns": "prod", "last-run-upid": upid(5000)},
    {"id": "p-b", "store": "store2", "ns": "prod", "last-run-upid": upid(3000)},
    {"id": "p-new", "store": "store2", "ns": "prod"},  # never ran
    {"id": "p-deep", "store": "store2", "ns": "prod/db"},
]


@pytest.mark.parametrize("worker_id,start,learned,want", [
    # 1. the job status showed the task's UPID as last-run-upid
    ("store2:prod", 3000, {}, ("p-b", None)),
    ("store2:prod", 1000, {"p-b": 1000}, ("p-b", None)),
    # 2. the only job on the datastore and namespace
    ("store1", 50, {}, ("p-root", None)),
    ("store2:prod/db", 50, {}, ("p-deep", None)),
    # 3. only p-a ran last at or after 4000: p-b's last run is older, and
    # p-new never ran
    ("store2:prod", 4000, {}, ("p-a", None)),
    # ... p-a and p-b both did after 2000: a guess
    ("store2:prod", 2000, {}, ("p-a", "ambiguous")),
    # 4. no job there
    ("store2", 50, {}, ("unmatched", "unmatched")),
], ids=["status", "learned", "only-root", "only-ns", "later-run",
        "ambiguous", "unmatched"])
def test_prune_tasks_map_to_their_job(worker_id, start, learned, want):
    catalog = catalog_of(prune=PRUNE_JOBS)
    task = Task(upid(start), "prunejob", worker_id, start, start + 5,
                       "OK")
    prune_runs = catalog.last_run_upids("prune")
    prune_runs.update({upid(s): job_id for job_id, s in learned.items()})
    key, note = classify(task, catalog, prune_runs)
    assert (key[1], note) == want
    assert key[0] == "prune" and key[2] == worker_id.split(":")[0]


def test_fake_upids_escape_worker_ids_like_pbs():
    """The fake's UPIDs against the real systemd-escape: PBS escapes like a
    systemd unit name, and ':' too, since it separates the UPID's fields."""
    assert shutil.which("systemd-escape"), "apt-get install systemd"
    fake = FakePBS()
    worker_ids = [w[1] for w in WORKER_IDS if w[1]] + [
        ".hidden:ns/ä", "store1:a-b\\c d"]
    for worker_id in worker_ids:
        systemd = subprocess.run(
            ["systemd-escape", "--", worker_id], capture_output=True,
            text=True, check=True, timeout=10).stdout.rstrip("\n")
        assert systemd_escape(worker_id) == systemd.replace(":", "\\x3a")
        task = fake.add_task("backup", worker_id, 1700000000)
        assert f":backup:{systemd.replace(':', chr(92) + 'x3a')}:" in task
        assert upid_starttime(task) == 1700000000
    assert upid_starttime("UPID:pbs1:bad") is None


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
        "tests": [{"interval": "1s", "input_series": series,
                   "promql_expr_test": [{
                       "expr": "round(job:backup_success:ratio, 0.0001)",
                       "eval_time": "60m",
                       "exp_samples": [{"labels": '{slo="99.5"}',
                                        "value": expected}]}]}]}))
    return subprocess.run(["promtool", "test", "rules", str(tests)],
                          check=False, capture_output=True, text=True,
                          cwd=tmp_path, timeout=60)


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
        exporter.wait_until(lambda m, total=total: m.total(
            "pbs_job_attempt_total") == total, f"{total} attempts")
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
            # Each poll's value held for its 5 minutes, one sample a second: Prometheus 3's
            # range selectors leave the window's start out, so the baseline must sit just
            # inside it for rate() to see every run with next to no extrapolation.
            series.append({"series": series_name(name, labels),
                           "values": " ".join([f"{v:g}+0x299" for v in values[:-1]]
                                              + [f"{values[-1]:g}"])})
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
