#!/usr/bin/python3
"""Prometheus exporter for Proxmox Backup Server job results.

PBS has no Prometheus endpoint of its own, and the stack's recording rule
``job:backup_success:ratio`` needs per-job attempt and success counters.  This
process reads the PBS REST API (``/api2/json``) with an API token and serves
``/metrics``.  It needs only the Python standard library and
``prometheus_client`` (Debian: python3-prometheus-client, 0.16 APIs only).

Design
======

Polling runs in the main thread on a fixed interval (``--interval``); the
HTTP server only renders the metric families that the last poll published.
A scrape therefore never waits for PBS: when PBS hangs, Prometheus still gets
an answer within milliseconds saying ``pbs_up 0`` instead of timing out and
reporting the exporter itself as down, and the warm scrape cost is only the
rendering of ~50 jobs' series.  The price is that values are up to one
interval old, which ``pbs_exporter_last_scrape_timestamp_seconds`` shows.

Each poll asks PBS for:

* ``GET /nodes/{node}/tasks?running=1`` - the running tasks (PBS reads only
  its active-task file for this), which feed ``pbs_job_running``;
* ``GET /nodes/{node}/tasks?since=<cursor>`` (paged with start/limit) - every
  task that started at or after the cursor.  PBS filters ``since`` on the
  task's *start* time and stops reading its archive at the first task that
  ended before it, so a warm poll reads only the last ``--overlap`` seconds
  of tasks, not the whole history;
* ``GET /admin/{sync,verify,prune}`` - the configured jobs.  They say more
  than the task list: jobs that never ran yet (their counters start at 0, so
  ``rate()`` sees their first run), the local datastore of a sync job, the
  next scheduled run, and the last run even after its task has left the
  task history;
* ``GET /status/datastore-usage`` - size/used/available per datastore, and
  every ``--snapshot-interval`` seconds ``/admin/datastore/{store}/namespace``
  plus ``.../snapshots?ns=`` for snapshot counts (listing snapshots is the
  expensive call on a big datastore, hence the slower cadence).

Exactly-once counting
=====================

A task is counted when it is first seen finished (it has an ``endtime``);
running tasks only feed ``pbs_job_running`` and are remembered.  Tasks are
keyed by their UPID, which PBS makes unique.  The state file holds, written
atomically (temp file, fsync, rename) after every poll that changed it:

* the counters and histograms themselves, so a restart continues them
  instead of resetting them (no reset for ``rate()`` to guess about);
* the UPIDs already counted whose start time is within ``--overlap`` below
  the cursor (older ones can no longer be listed, so they can be forgotten);
* the cursor: the newest start time seen minus ``--overlap``, never ahead of
  this host's clock minus ``--overlap`` (a task stamped in the future by a
  skewed clock must not push the cursor past tasks still to come);
* the running tasks, with their start times.  When one of them is neither
  running any more nor in the ``since`` listing (it started before the
  cursor: a long verify or GC), it is looked up with ``until=<its start>``.

Counters and the counted UPIDs are saved together, so a kill at any moment
either keeps a task counted in both or in neither: after a restart every task
that finished while the exporter was down is counted once.  With no state
file (first run), tasks of the last ``--initial-lookback`` seconds are
counted; a corrupt state file is moved aside and treated the same way.

Labels
======

``job_type`` is one of backup, sync, verify, prune, gc.  ``job_id`` and
``datastore`` come from the task's worker type and worker id as PBS writes
them:

==================  ======================================  ===============
worker_type         worker_id                               job_id
==================  ======================================  ===============
backup              ``store:vm/101`` (``store:ns/x/vm/101``)  ``vm/101`` - the
                                                            backup group; PBS
                                                            backup tasks carry
                                                            no job id (vzdump
                                                            jobs live on PVE)
syncjob             ``remote:rstore:store:ns:jobid``        ``jobid``
verificationjob     ``store:jobid``                         ``jobid``
prunejob            ``store:jobid``                         ``jobid``
garbage_collection  ``store``                               ``store``
sync, verify,       ``store...`` (a manual run, not a job)  ``manual``
verify_group,
verify_snapshot,
prune
==================  ======================================  ===============

Manual runs share one ``manual`` series per datastore and type, so snapshot
times never become label values.  Other worker types (restores, tape, apt
updates...) are not jobs; they are counted in
``pbs_exporter_tasks_ignored_total{reason="unknown_type"}``.  A task that
ended "OK" or "WARNINGS: n" is a success (warnings are counted separately in
``pbs_job_warning_total``); an error message or "unknown" is a failure.
"""

import argparse
import bisect
import collections
import dataclasses
import http.client
import http.server
import json
import logging
import math
import os
import re
import signal
import socket
import ssl
import sys
import tempfile
import threading
import time
from urllib.parse import quote, urlencode, urlsplit

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import MetricsHandler
from prometheus_client.metrics_core import (
    CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.utils import floatToGoString

log = logging.getLogger("pbs-job-exporter")

PROG = "pbs-job-exporter"
STATE_VERSION = 1
PBS_DEFAULT_PORT = 8007
TASK_PAGE = 500
LOOKUP_PAGE = 100
LOOKUP_MAX_PAGES = 10
# A task stamped this far ahead of this host's clock counts as clock skew.
SKEW_TOLERANCE = 300
DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400,
                    28800, 86400)
ERROR_KINDS = ("connect", "timeout", "tls", "auth", "http", "parse", "state",
               "clock_skew", "lost_task", "internal")
IGNORE_REASONS = ("unknown_type", "malformed")
BACKUP_TYPES = ("vm", "ct", "host")
JOB_LABELS = ("job_id", "job_type", "datastore")
MAX_LABEL_LEN = 128

# worker_type -> (job_type, how its worker_id names the job)
WORKER_TYPES = {
    "backup": ("backup", "group"),
    "syncjob": ("sync", "syncjob"),
    "verificationjob": ("verify", "job"),
    "prunejob": ("prune", "job"),
    "garbage_collection": ("gc", "store"),
    "sync": ("sync", "manual_sync"),
    "verify": ("verify", "manual"),
    "verify_group": ("verify", "manual"),
    "verify_snapshot": ("verify", "manual"),
    "prune": ("prune", "manual"),
}
JOB_STATUS_PATHS = (("sync", "/admin/sync"), ("verify", "/admin/verify"),
                    ("prune", "/admin/prune"))
TOKEN_RE = re.compile(r"[^\s@!:]+@[^\s@!:]+![^\s@!:]+:\S+")


class ConfigError(Exception):
    """A start-up mistake: reported in one line, exit status 2."""


class PbsError(Exception):
    """A failed PBS API call; ``kind`` is one of ERROR_KINDS."""

    def __init__(self, kind, message, status=None):
        super().__init__(message)
        self.kind = kind
        self.status = status


class Cancelled(Exception):
    """Shutdown was requested while a poll was talking to PBS."""


# ---------------------------------------------------------------- config ---

def _positive(value):
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {value!r}") from None
    if not number > 0 or math.isinf(number):
        raise argparse.ArgumentTypeError(f"must be > 0: {value!r}")
    return number


def parse_listen(value):
    match = re.fullmatch(r"\[([0-9A-Fa-f:.%\w]+)\]:(\d+)|([^\[\]:]*):(\d+)",
                         value)
    if not match:
        raise ConfigError(f"--listen {value!r}: expected host:port "
                          "(or [ipv6]:port)")
    host = match.group(1) or match.group(3) or "0.0.0.0"
    port = int(match.group(2) or match.group(4))
    if port > 65535:
        raise ConfigError(f"--listen {value!r}: port out of range")
    return host, port


def parse_pbs_url(value):
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"--pbs-url {value!r}: {exc}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError(f"--pbs-url {value!r}: expected "
                          "https://host[:port], e.g. https://localhost:8007")
    if parts.query or parts.fragment or parts.username:
        raise ConfigError(f"--pbs-url {value!r}: no query, fragment or "
                          "user part allowed")
    path = parts.path.rstrip("/")
    if path.endswith("/api2/json"):
        path = path[:-len("/api2/json")]
    return parts.scheme, parts.hostname, port or PBS_DEFAULT_PORT, path


def read_token(path):
    try:
        with open(path, encoding="utf-8") as handle:
            token = handle.read().strip()
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError(f"--token-file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"--token-file {path}: not text") from None
    if not TOKEN_RE.fullmatch(token):
        # Never echo the file: it holds a secret.
        raise ConfigError(f"--token-file {path}: expected one line "
                          "'user@realm!tokenid:secret'")
    if mode & 0o077:
        log.warning("token file %s is readable by group or others; "
                    "chmod 600 it", path)
    return token


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog=PROG, description="Serve Proxmox Backup Server job results "
        "(per-job attempt/success counters, durations, datastore usage) "
        "as Prometheus metrics.")
    parser.add_argument("--pbs-url", default="https://localhost:8007",
                        help="PBS API base URL (default %(default)s)")
    parser.add_argument("--token-file", default="/etc/pbs-job-exporter/token",
                        help="file holding user@realm!tokenid:secret "
                        "(default %(default)s)")
    parser.add_argument("--listen", required=True,
                        help="address to serve /metrics on, host:port")
    parser.add_argument("--state-file",
                        default="/var/lib/pbs-job-exporter/state.json",
                        help="where counted tasks and counters persist "
                        "(default %(default)s)")
    parser.add_argument("--node", default="localhost",
                        help="PBS node name for the task list "
                        "(default %(default)s)")
    parser.add_argument("--verify-tls", action=argparse.BooleanOptionalAction,
                        default=True, help="verify the PBS TLS certificate "
                        "(default: verify)")
    parser.add_argument("--ca-file", help="PEM file to trust for the PBS "
                        "certificate, e.g. /etc/proxmox-backup/proxy.pem "
                        "(default: the system CAs)")
    parser.add_argument("--interval", type=_positive, default=30.0,
                        help="seconds between polls of PBS (default 30)")
    parser.add_argument("--timeout", type=_positive, default=10.0,
                        help="seconds to wait for one PBS API answer "
                        "(default 10)")
    parser.add_argument("--snapshot-interval", type=_positive, default=300.0,
                        help="seconds between snapshot counts (default 300)")
    parser.add_argument("--overlap", type=_positive, default=3600.0,
                        help="seconds of task history re-read on every poll "
                        "(default 3600)")
    parser.add_argument("--initial-lookback", type=_positive,
                        default=7 * 86400.0,
                        help="with no state file, count tasks of this many "
                        "past seconds (default 604800, 7 days)")
    parser.add_argument("--log-level", default="info",
                        choices=("debug", "info", "warning", "error"))
    args = parser.parse_args(argv)

    args.listen_addr = parse_listen(args.listen)
    args.pbs = parse_pbs_url(args.pbs_url)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9.-]*", args.node):
        raise ConfigError(f"--node {args.node!r}: not a node name")
    args.token = read_token(args.token_file)
    state_dir = os.path.dirname(os.path.abspath(args.state_file))
    if os.path.isdir(args.state_file):
        raise ConfigError(f"--state-file {args.state_file}: is a directory")
    if not os.path.isdir(state_dir):
        raise ConfigError(f"--state-file {args.state_file}: directory "
                          f"{state_dir} does not exist")
    if not os.access(state_dir, os.W_OK | os.X_OK):
        raise ConfigError(f"--state-file {args.state_file}: directory "
                          f"{state_dir} is not writable")
    if args.ca_file and not args.verify_tls:
        raise ConfigError("--ca-file makes no sense with --no-verify-tls")
    args.ssl_context = make_ssl_context(args.verify_tls, args.ca_file)
    return args


def make_ssl_context(verify, ca_file):
    if not verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    try:
        context = ssl.create_default_context(cafile=ca_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"--ca-file {ca_file}: cannot load: "
                          f"{getattr(exc, 'strerror', None) or exc}") from None
    if ca_file:
        # Lets the file be the PBS certificate itself, even one that is not
        # self-signed (an ACME certificate): trust it without its chain.
        context.verify_flags |= getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)
    return context


# ---------------------------------------------------------------- client ---

class PbsClient:
    """GET requests against /api2/json, returning the ``data`` member."""

    def __init__(self, pbs, token, timeout, ssl_context, cancel):
        self.scheme, self.host, self.port, path = pbs
        self.prefix = path + "/api2/json"
        self.headers = {"Authorization": f"PBSAPIToken={token}",
                        "Accept": "application/json"}
        self.timeout = timeout
        self.ssl_context = ssl_context
        self.cancel = cancel

    def get(self, path, params=None):
        if self.cancel.is_set():
            raise Cancelled()
        target = self.prefix + path
        if params:
            target += "?" + urlencode(params, doseq=True)
        if self.scheme == "https":
            conn = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.timeout,
                context=self.ssl_context)
        else:
            conn = http.client.HTTPConnection(self.host, self.port,
                                              timeout=self.timeout)
        try:
            conn.request("GET", target, headers=self.headers)
            response = conn.getresponse()
            body = response.read()
        except TimeoutError:
            raise PbsError("timeout", f"GET {path}: no answer within "
                           f"{self.timeout:g}s") from None
        except ssl.SSLError as exc:
            raise PbsError("tls", f"GET {path}: TLS: {exc}") from None
        except (OSError, http.client.HTTPException) as exc:
            raise PbsError("connect", f"GET {path}: {exc!r}") from None
        finally:
            conn.close()
        if response.status != 200:
            text = body[:200].decode("utf-8", "replace").strip()
            kind = "auth" if response.status in (401, 403) else "http"
            raise PbsError(kind, f"GET {path}: HTTP {response.status} "
                           f"{response.reason}: {text}", response.status)
        try:
            document = json.loads(body)
        except ValueError as exc:
            raise PbsError("parse", f"GET {path}: not JSON: {exc}") from None
        if not isinstance(document, dict) or "data" not in document:
            raise PbsError("parse", f"GET {path}: no 'data' member")
        return document["data"]

    def get_list(self, path, params=None):
        data = self.get(path, params)
        if not isinstance(data, list):
            raise PbsError("parse", f"GET {path}: 'data' is not a list")
        return data


# ----------------------------------------------------------------- tasks ---

@dataclasses.dataclass(frozen=True)
class Task:
    upid: str
    worker_type: str
    worker_id: str
    starttime: int
    endtime: object  # int, or None while running
    status: str


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def parse_task(raw):
    """A task list entry as a Task, or None when it is malformed."""
    if not isinstance(raw, dict):
        return None
    upid, wtype = raw.get("upid"), raw.get("worker_type")
    wid, start = raw.get("worker_id") or "", raw.get("starttime")
    end, status = raw.get("endtime"), raw.get("status")
    if not (isinstance(upid, str) and upid.startswith("UPID:")
            and isinstance(wtype, str) and isinstance(wid, str)
            and _is_int(start) and (end is None or _is_int(end))):
        return None
    if end is not None and not isinstance(status, str):
        status = "unknown"
    return Task(upid, wtype, wid, start, end, status or "")


def _label_ok(value):
    return bool(value) and len(value) <= MAX_LABEL_LEN and value.isprintable()


def classify(task, sync_stores):
    """(job_type, job_id, datastore) of a task, or (None, reason)."""
    known = WORKER_TYPES.get(task.worker_type)
    if known is None:
        return None, "unknown_type"
    job_type, form = known
    parts = task.worker_id.split(":")
    store, job_id = parts[0], "manual"
    if form == "group":
        job_id = task.worker_id.partition(":")[2]
    elif form == "job":
        job_id = parts[-1] if len(parts) >= 2 else ""
    elif form == "syncjob":
        job_id = parts[-1]
        store = sync_stores.get(job_id) or (parts[2] if len(parts) >= 4
                                            else "")
    elif form == "manual_sync":
        store = parts[2] if len(parts) >= 3 else ""
    elif form == "store":
        store = job_id = task.worker_id
    if not (_label_ok(store) and _label_ok(job_id)):
        return None, "malformed"
    return (job_type, job_id, store), None


def task_succeeded(status):
    return status == "OK" or status.startswith("WARNINGS")


# ----------------------------------------------------------------- state ---

@dataclasses.dataclass
class JobStats:
    attempts: int = 0
    successes: int = 0
    warnings: int = 0
    last_run: object = None
    last_success: object = None
    last_duration: object = None
    buckets: list = dataclasses.field(
        default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0

    def record(self, task):
        duration = float(max(0, task.endtime - task.starttime))
        self.attempts += 1
        if task_succeeded(task.status):
            self.successes += 1
            if self.last_success is None or task.endtime > self.last_success:
                self.last_success = task.endtime
        if task.status.startswith("WARNINGS"):
            self.warnings += 1
        if self.last_run is None or task.endtime >= self.last_run:
            self.last_run = task.endtime
            self.last_duration = duration
        self.buckets[bisect.bisect_left(DURATION_BUCKETS, duration)] += 1
        self.duration_sum += duration


class StateError(Exception):
    pass


def _is_number(value):
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _valid_stats(stats):
    counts = [stats.attempts, stats.successes, stats.warnings]
    return (all(_is_int(n) and n >= 0 for n in counts)
            and isinstance(stats.buckets, list)
            and len(stats.buckets) == len(DURATION_BUCKETS) + 1
            and all(_is_int(n) and n >= 0 for n in stats.buckets)
            and _is_number(stats.duration_sum)
            and all(v is None or _is_number(v) for v in (
                stats.last_run, stats.last_success, stats.last_duration)))


@dataclasses.dataclass
class State:
    cursor: int
    counted: dict  # upid -> starttime
    running: dict  # upid -> starttime
    jobs: dict     # (job_type, job_id, datastore) -> JobStats

    def to_json(self):
        jobs = []
        for (job_type, job_id, store), stats in sorted(self.jobs.items()):
            entry = dataclasses.asdict(stats)
            entry.update(job_type=job_type, job_id=job_id, datastore=store)
            jobs.append(entry)
        return json.dumps({"version": STATE_VERSION, "cursor": self.cursor,
                           "buckets": list(DURATION_BUCKETS),
                           "counted": self.counted, "running": self.running,
                           "jobs": jobs}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text):
        try:
            doc = json.loads(text)
            if doc.get("version") != STATE_VERSION:
                raise StateError(f"unknown version {doc.get('version')!r}")
            state = cls(int(doc["cursor"]), {}, {}, {})
            for name in ("counted", "running"):
                for upid, start in doc[name].items():
                    if not (upid.startswith("UPID:") and _is_int(start)):
                        raise StateError(f"bad {name} entry {upid!r}")
                    getattr(state, name)[upid] = start
            same_buckets = doc["buckets"] == list(DURATION_BUCKETS)
            fields = {f.name for f in dataclasses.fields(JobStats)}
            for entry in doc["jobs"]:
                key = (entry.pop("job_type"), entry.pop("job_id"),
                       entry.pop("datastore"))
                if not all(isinstance(k, str) for k in key):
                    raise StateError(f"bad job key {key!r}")
                stats = JobStats(**{k: entry[k] for k in fields})
                if not _valid_stats(stats):
                    raise StateError(f"bad counters for {key!r}")
                if not same_buckets:  # bucket bounds changed: restart them
                    stats.buckets = JobStats().buckets
                    stats.duration_sum = 0.0
                state.jobs[key] = stats
            return state
        except StateError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateError(f"{type(exc).__name__}: {exc}") from None


def write_atomically(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


# -------------------------------------------------------------- exporter ---

class Exporter:
    def __init__(self, args, cancel):
        self.args = args
        self.client = PbsClient(args.pbs, args.token, args.timeout,
                                args.ssl_context, cancel)
        self.node_tasks = f"/nodes/{quote(args.node)}/tasks"
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.ignored = dict.fromkeys(IGNORE_REASONS, 0)
        self.scrapes = 0
        self.up = None
        self.scrape_duration = None
        self.last_scrape = None
        self.job_configs = {job_type: {} for job_type, _ in JOB_STATUS_PATHS}
        self.unsupported = set()
        self.running_by_job = {}
        self.usage = {}
        self.snapshots = {}
        self.snapshots_due = 0.0
        self.logged = {}
        self.unknown_types = set()
        self.malformed_seen = set()
        self.state = self.load_state()
        self.families = ()
        self.publish()

    # --- state file
    def fresh_state(self):
        cursor = int(time.time() - self.args.initial_lookback)
        return State(cursor, {}, {}, {})

    def load_state(self):
        path = self.args.state_file
        try:
            with open(path, encoding="utf-8") as handle:
                return State.from_json(handle.read())
        except FileNotFoundError:
            log.info("no state file %s: first run, counting tasks of the "
                     "last %gs", path, self.args.initial_lookback)
        except (OSError, UnicodeDecodeError, StateError) as exc:
            self.errors["state"] += 1
            aside = f"{path}.corrupt-{int(time.time())}"
            try:
                os.replace(path, aside)
                where = f"moved to {aside}"
            except OSError as move_exc:
                where = f"could not move it aside: {move_exc.strerror}"
            log.error("state file %s unusable (%s); %s; starting afresh, "
                      "counting tasks of the last %gs", path, exc, where,
                      self.args.initial_lookback)
        return self.fresh_state()

    def save_state(self):
        try:
            write_atomically(self.args.state_file, self.state.to_json())
        except OSError as exc:
            self.problem("state file", PbsError(
                "state", f"cannot write {self.args.state_file}: {exc}"))
            return
        self.recovered("state file")

    # --- logging: one line when a problem starts or changes kind (a PBS
    # going down answers "reset" then "refused": one outage, one line), one
    # line when it ends.
    def problem(self, source, err, count=True):
        if count:
            self.errors[err.kind] += 1
        if self.logged.get(source) != err.kind:
            log.error("%s: %s", source, err)
            self.logged[source] = err.kind

    def recovered(self, source):
        if self.logged.pop(source, None) is not None:
            log.info("%s: working again", source)

    # --- one poll
    def poll(self):
        started = time.monotonic()
        self.scrapes += 1
        try:
            self.up = self.poll_pbs()
        except Cancelled:
            return
        except Exception:  # a bug must not stop the exporter
            self.errors["internal"] += 1
            log.exception("internal error during poll")
            self.up = False
        self.scrape_duration = time.monotonic() - started
        self.last_scrape = time.time()
        try:
            self.publish()
        except Exception:  # keep serving the previous families
            self.errors["internal"] += 1
            log.exception("internal error while building metrics")

    def poll_pbs(self):
        client = self.client
        try:
            running = client.get_list(self.node_tasks, {
                "running": 1, "start": 0, "limit": TASK_PAGE})
            listed = self.list_tasks({"since": self.state.cursor})
        except PbsError as err:
            self.problem("PBS task list", err)
            self.running_by_job = {}
            return False
        self.recovered("PBS task list")
        self.poll_job_status()
        changed = self.process_tasks(running + listed)
        if changed:
            self.save_state()
        self.poll_datastores()
        return True

    def list_tasks(self, params):
        tasks, start, seen = [], 0, set()
        while True:
            page = self.client.get_list(self.node_tasks, dict(
                params, start=start, limit=TASK_PAGE))
            tasks.extend(page)
            if len(page) < TASK_PAGE:
                return tasks
            upids = {t.get("upid") for t in page if isinstance(t, dict)}
            if upids <= seen:  # the API ignored 'start': stop, don't loop
                raise PbsError("parse", "task list paging returns the same "
                               "tasks again")
            seen |= upids
            start += TASK_PAGE

    def lookup_task(self, upid, starttime):
        """The entry of one task that started before the cursor, or None."""
        for page_no in range(LOOKUP_MAX_PAGES):
            page = self.client.get_list(self.node_tasks, {
                "until": starttime, "start": page_no * LOOKUP_PAGE,
                "limit": LOOKUP_PAGE})
            for raw in page:
                if isinstance(raw, dict) and raw.get("upid") == upid:
                    return raw
            # Finished tasks come newest end first; past its start it is gone.
            last = page[-1] if page else {}
            end = last.get("endtime") if isinstance(last, dict) else None
            if len(page) < LOOKUP_PAGE or (_is_int(end) and end < starttime):
                return None
        return None

    def poll_job_status(self):
        for job_type, path in JOB_STATUS_PATHS:
            if path in self.unsupported:
                continue
            source = f"job status {path}"
            try:
                data = self.client.get_list(path)
            except PbsError as err:
                if err.status in (404, 501):
                    self.unsupported.add(path)
                    log.info("%s: not offered by this PBS (%s); its jobs "
                             "come from the task list only", source, err)
                    self.job_configs[job_type] = {}
                else:
                    self.problem(source, err)
                continue
            configs = {}
            for item in data:
                if not isinstance(item, dict):
                    continue
                job_id, store = item.get("id"), item.get("store")
                if isinstance(job_id, str) and isinstance(store, str) \
                        and _label_ok(job_id) and _label_ok(store):
                    configs[job_id] = item
            self.job_configs[job_type] = configs
            self.recovered(source)

    def process_tasks(self, raw_tasks):
        state, now = self.state, time.time()
        entries = {}
        for raw in raw_tasks:
            task = parse_task(raw)
            if task is None:
                self.ignore_malformed(raw)
                continue
            seen = entries.get(task.upid)
            if seen is None or seen.endtime is None:
                entries[task.upid] = task
        changed = False
        # Running tasks we knew about that are in neither listing started
        # before the cursor: look their end up one by one.
        for upid, start in list(state.running.items()):
            if upid in entries:
                continue
            try:
                raw = self.lookup_task(upid, start)
            except PbsError as err:
                # PBS went away mid-poll: don't wait out a timeout per task;
                # the rest stay tracked and are looked up next poll.
                self.problem("PBS task lookup", err)
                break
            task = parse_task(raw) if raw is not None else None
            if task is None:
                self.errors["lost_task"] += 1
                log.warning("task %s was running but PBS no longer lists "
                            "it; it cannot be counted", upid)
                del state.running[upid]
                changed = True
            else:
                entries[upid] = task

        sync_stores = {job_id: item["store"] for job_id, item
                       in self.job_configs["sync"].items()}
        for job_type, configs in self.job_configs.items():
            for job_id, item in configs.items():
                key = (job_type, job_id, item["store"])
                if key not in state.jobs:
                    state.jobs[key] = JobStats()
                    changed = True

        skewed = []
        finished = sorted((t for t in entries.values()
                           if t.endtime is not None),
                          key=lambda t: (t.endtime, t.upid))
        for task in finished:
            if state.running.pop(task.upid, None) is not None:
                changed = True
            if task.upid in state.counted:
                continue
            state.counted[task.upid] = task.starttime
            changed = True
            key, reason = classify(task, sync_stores)
            if key is None:
                self.ignore(task, reason)
                continue
            if task.endtime < task.starttime \
                    or task.starttime > now + SKEW_TOLERANCE:
                skewed.append(task)
            state.jobs.setdefault(key, JobStats()).record(task)
        if skewed:
            self.errors["clock_skew"] += len(skewed)
            sample = skewed[0]
            log.warning("%d task(s) with clock skew, counted once (e.g. %s: "
                        "start %d, end %d, this host's clock %d)",
                        len(skewed), sample.upid, sample.starttime,
                        sample.endtime, now)

        running_by_job = collections.Counter()
        for task in entries.values():
            if task.endtime is not None:
                continue
            key, _ = classify(task, sync_stores)
            if key is None:
                continue
            running_by_job[key] += 1
            if key not in state.jobs:
                state.jobs[key] = JobStats()
                changed = True
            if state.running.get(task.upid) != task.starttime:
                state.running[task.upid] = task.starttime
                changed = True
        self.running_by_job = running_by_job

        overlap = int(self.args.overlap)
        cursor = state.cursor
        if entries:
            newest = max(t.starttime for t in entries.values())
            cursor = max(cursor, newest - overlap)
        cursor = min(cursor, int(now) - overlap)
        if cursor != state.cursor:
            state.cursor = cursor
            changed = True
        forget = [u for u, s in state.counted.items() if s < cursor - overlap]
        for upid in forget:
            del state.counted[upid]
        return changed or bool(forget)

    def ignore(self, task, reason):
        self.ignored[reason] += 1
        if reason == "unknown_type":
            if task.worker_type not in self.unknown_types \
                    and len(self.unknown_types) < 100:
                self.unknown_types.add(task.worker_type)
                log.info("ignoring tasks of type %r: not a job type this "
                         "exporter counts", task.worker_type)
        else:
            log.warning("ignoring task %s: cannot tell its job from worker "
                        "id %r", task.upid, task.worker_id)

    def ignore_malformed(self, raw):
        key = json.dumps(raw, sort_keys=True, default=str)[:500]
        if key in self.malformed_seen:
            return
        if len(self.malformed_seen) > 10000:
            self.malformed_seen.clear()
        self.malformed_seen.add(key)
        self.ignored["malformed"] += 1
        log.warning("ignoring malformed task list entry: %s", key[:200])

    def poll_datastores(self):
        source = "datastore usage"
        try:
            data = self.client.get_list("/status/datastore-usage")
        except PbsError as err:
            self.problem(source, err)
            self.usage = {}
            return
        self.recovered(source)
        usage = {}
        for item in data:
            if not isinstance(item, dict) or not isinstance(
                    item.get("store"), str) or not _label_ok(item["store"]):
                continue
            values = [item.get(k) for k in ("total", "used", "avail")]
            if item.get("error") or not all(
                    _is_int(v) and v >= 0 for v in values):
                # PBS's own word on the datastore (e.g. not mounted): log it
                # once, it is no fault of the exporter.
                self.problem(f"datastore {item['store']}", PbsError(
                    "http", f"no usage: {item.get('error') or 'bad values'}"),
                    count=False)
                continue
            self.recovered(f"datastore {item['store']}")
            usage[item["store"]] = values
        self.usage = usage
        if time.monotonic() < self.snapshots_due:
            self.snapshots = {s: c for s, c in self.snapshots.items()
                              if s in usage}
            return
        self.snapshots_due = time.monotonic() + self.args.snapshot_interval
        snapshots = {}
        for store in usage:
            source = f"snapshots of {store}"
            try:
                snapshots[store] = self.count_snapshots(store)
            except PbsError as err:
                self.problem(source, err)
                if store in self.snapshots:
                    snapshots[store] = self.snapshots[store]
                continue
            self.recovered(source)
        self.snapshots = snapshots

    def count_snapshots(self, store):
        base = f"/admin/datastore/{quote(store)}"
        try:
            namespaces = [n.get("ns") for n in self.client.get_list(
                base + "/namespace") if isinstance(n, dict)]
        except PbsError as err:
            if err.status != 404:  # PBS before 2.2: only the root namespace
                raise
            namespaces = [""]
        counts = collections.Counter({t: 0 for t in BACKUP_TYPES})
        for ns in namespaces:
            if not isinstance(ns, str):
                continue
            for snap in self.client.get_list(base + "/snapshots",
                                             {"ns": ns} if ns else None):
                kind = snap.get("backup-type") if isinstance(snap, dict) \
                    else None
                counts[kind if kind in BACKUP_TYPES else "other"] += 1
        return counts

    # --- metrics
    def publish(self):
        """Build the families a scrape serves; swapped in as one object."""
        families = []

        def family(cls, name, doc, labels, rows):
            fam = cls(name, doc, labels=labels)
            for label_values, value in rows:
                fam.add_metric(label_values, value)
            families.append(fam)

        if self.up is not None:
            family(GaugeMetricFamily, "pbs_up", "1 if the last poll read "
                   "the PBS task list, else 0.", [], [([], int(self.up))])
        family(CounterMetricFamily, "pbs_exporter_scrapes",
               "Polls of the PBS API.", [], [([], self.scrapes)])
        family(CounterMetricFamily, "pbs_exporter_scrape_errors",
               "Failed PBS API calls and data problems, by kind.", ["kind"],
               [([k], v) for k, v in self.errors.items()])
        family(CounterMetricFamily, "pbs_exporter_tasks_ignored",
               "Finished tasks not counted as a job run, by reason.",
               ["reason"], [([k], v) for k, v in self.ignored.items()])
        if self.scrape_duration is not None:
            family(GaugeMetricFamily, "pbs_exporter_scrape_duration_seconds",
                   "Duration of the last poll of the PBS API.", [],
                   [([], self.scrape_duration)])
            family(GaugeMetricFamily,
                   "pbs_exporter_last_scrape_timestamp_seconds",
                   "When the last poll of the PBS API ended.", [],
                   [([], self.last_scrape)])

        jobs = sorted(self.state.jobs.items())
        labels = list(JOB_LABELS)

        def job_labels(key):
            job_type, job_id, store = key
            return [job_id, job_type, store]

        for name, attr, doc in (
                ("pbs_job_attempt", "attempts", "Finished runs of the job."),
                ("pbs_job_success", "successes",
                 "Runs of the job that ended OK or with warnings."),
                ("pbs_job_warning", "warnings",
                 "Runs of the job that ended with warnings.")):
            family(CounterMetricFamily, name, doc, labels,
                   [(job_labels(k), getattr(s, attr)) for k, s in jobs])

        status_last = self.status_last_runs()
        last_run, last_ok = [], []
        for key, stats in jobs:
            run, ok = status_last.get(key, (None, None))
            run = max((v for v in (stats.last_run, run) if v is not None),
                      default=None)
            ok = max((v for v in (stats.last_success, ok) if v is not None),
                     default=None)
            if run is not None:
                last_run.append((job_labels(key), run))
            if ok is not None:
                last_ok.append((job_labels(key), ok))
        family(GaugeMetricFamily, "pbs_job_last_run_timestamp_seconds",
               "End time of the job's last finished run.", labels, last_run)
        family(GaugeMetricFamily, "pbs_job_last_success_timestamp_seconds",
               "End time of the job's last successful run.", labels, last_ok)
        family(GaugeMetricFamily, "pbs_job_last_duration_seconds",
               "Duration of the job's last finished run.", labels,
               [(job_labels(k), s.last_duration) for k, s in jobs
                if s.last_duration is not None])
        hist = HistogramMetricFamily(
            "pbs_job_duration_seconds", "Durations of finished job runs.",
            labels=labels)
        bounds = [floatToGoString(b) for b in DURATION_BUCKETS] + ["+Inf"]
        for key, stats in jobs:
            cumulative, total = [], 0
            for bound, count in zip(bounds, stats.buckets):
                total += count
                cumulative.append((bound, total))
            hist.add_metric(job_labels(key), cumulative, stats.duration_sum)
        families.append(hist)

        if self.up:
            family(GaugeMetricFamily, "pbs_job_running",
                   "Tasks of the job running now.", labels,
                   [(job_labels(k), self.running_by_job.get(k, 0))
                    for k, _ in jobs])
            next_runs = []
            for job_type, configs in sorted(self.job_configs.items()):
                for job_id, item in sorted(configs.items()):
                    if _is_int(item.get("next-run")):
                        next_runs.append(([job_id, job_type, item["store"]],
                                          item["next-run"]))
            family(GaugeMetricFamily, "pbs_job_next_run_timestamp_seconds",
                   "Next scheduled run of the job, from its job status.",
                   labels, next_runs)
            for name, index, doc in (
                    ("pbs_datastore_size_bytes", 0, "Size of the datastore."),
                    ("pbs_datastore_used_bytes", 1, "Used bytes."),
                    ("pbs_datastore_available_bytes", 2, "Available bytes.")):
                family(GaugeMetricFamily, name, doc, ["datastore"],
                       [([s], v[index]) for s, v in sorted(self.usage.items())])
            family(GaugeMetricFamily, "pbs_datastore_snapshots",
                   "Backup snapshots in the datastore (all namespaces).",
                   ["datastore", "backup_type"],
                   [([s, t], n) for s, counts in sorted(self.snapshots.items())
                    for t, n in sorted(counts.items())])
        self.families = tuple(families)

    def status_last_runs(self):
        """(last run, last success) end times that the job status reports."""
        result = {}
        for job_type, configs in self.job_configs.items():
            for job_id, item in configs.items():
                end, status = item.get("last-run-endtime"), \
                    item.get("last-run-state")
                if not _is_int(end):
                    continue
                ok = end if isinstance(status, str) \
                    and task_succeeded(status) else None
                result[(job_type, job_id, item["store"])] = (end, ok)
        return result


class _Collector:
    def __init__(self, exporter):
        self.exporter = exporter

    def collect(self):
        return iter(self.exporter.families)


class _Handler(MetricsHandler):
    def do_GET(self):
        path = urlsplit(self.path).path
        if path == "/metrics":
            super().do_GET()
            return
        body = (b"<html><body><h1>PBS job exporter</h1>"
                b'<a href="/metrics">/metrics</a></body></html>\n') \
            if path == "/" else b"not found\n"
        self.send_response(200 if path == "/" else 404)
        self.send_header("Content-Type", "text/html" if path == "/"
                         else "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def start_server(address, registry):
    host, port = address
    try:
        family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
    except socket.gaierror as exc:
        raise ConfigError(f"--listen {host}:{port}: {exc.strerror}") from None

    class Server(http.server.ThreadingHTTPServer):
        address_family = family
        daemon_threads = True

        def handle_error(self, request, client_address):
            # A scraper that hangs up mid-answer is not worth a traceback.
            log.debug("serving %s: %s", client_address, sys.exc_info()[1])

    handler = type("Handler", (_Handler,), {"registry": registry})
    try:
        server = Server((host, port), handler)
    except OSError as exc:
        raise ConfigError(f"--listen {host}:{port}: cannot listen: "
                          f"{exc.strerror}") from None
    threading.Thread(target=server.serve_forever, name="http",
                     daemon=True).start()
    return server


def main(argv=None):
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(levelname)s %(message)s")
    try:
        args = parse_args(argv)
        logging.getLogger().setLevel(args.log_level.upper())
        stop = threading.Event()
        exporter = Exporter(args, stop)
        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(exporter))
        ProcessCollector(registry=registry)
        server = start_server(args.listen_addr, registry)
    except ConfigError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    host, port = server.server_address[:2]
    log.info("listening on %s:%d, polling %s every %gs", host, port,
             args.pbs_url, args.interval)

    def on_signal(signum, _frame):
        log.info("got %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    while not stop.is_set():
        exporter.poll()
        stop.wait(args.interval)
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
