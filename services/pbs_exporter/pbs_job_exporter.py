#!/usr/bin/python3
"""Prometheus exporter for Proxmox Backup Server job results.

PBS has no Prometheus endpoint of its own, and the stack's recording rule
``job:backup_success:ratio`` needs per-job attempt and success counters.  This
process reads the PBS REST API (``/api2/json``) with an API token and serves
``/metrics``.  It needs only the Python standard library and
``prometheus_client`` (Debian: python3-prometheus-client, 0.16 APIs only).
cloud-init ships it as this one file; its parts, in file order:

* ``PbsClient`` - GET requests against the API;
* ``TaskReader`` - which tasks to read (running, recent, one lost task);
* ``JobCatalog`` - the configured jobs and their status;
* ``classify`` - which job a task belongs to (the table below);
* ``Ledger`` and ``StateFile`` - counting each task once, across restarts;
* ``Datastores`` - usage and snapshot counts;
* ``Problems`` - error counters and one log line per problem;
* ``build_families`` and ``Exposition`` - what a scrape serves;
* ``Exporter`` - one poll, in order.

Design
======

Polling runs in the main thread on a fixed interval (``--interval``); the
HTTP server only serves the metric families that the last poll published,
rendered once.  A scrape therefore never waits for PBS: when PBS hangs,
Prometheus still gets an answer within milliseconds saying ``pbs_up 0``
instead of timing out and reporting the exporter itself as down.  The price is that values are up to
one interval old, which ``pbs_exporter_last_scrape_timestamp_seconds`` shows.

Each poll asks PBS for:

* ``GET /nodes/{node}/tasks?running=1`` - the running tasks, which feed
  ``pbs_job_running``;
* ``GET /nodes/{node}/tasks?start=&limit=`` - the task list, paged, down to
  the first task that ended before the cursor (see "Reading the task list");
* ``GET /admin/sync?sync-direction=all``, ``/admin/verify``, ``/admin/prune``
  and ``/admin/gc`` - the configured jobs with their status.  They say more
  than the task list: jobs that never ran yet (their counters start at 0, so
  ``rate()`` sees their first run), the local datastore of a sync job, which
  job ran a prune task, the next scheduled run, and the last run even after
  its task has left the task history.  PBS before 3.3 has no push sync jobs
  and answers ``sync-direction`` with 400: then the exporter asks without it
  (and tries again hourly, in case PBS was upgraded).  PBS before 3.2 has no
  ``/admin/gc``: then ``/admin/datastore/{store}/gc`` per datastore;
* ``GET /status/datastore-usage`` - size/used/available per datastore, and
  every ``--snapshot-interval`` seconds ``/admin/datastore/{store}/namespace``
  plus ``.../snapshots?ns=`` for snapshot counts (listing snapshots is the
  expensive call on a big datastore, hence the slower cadence).

Reading the task list
=====================

PBS lists the running tasks first, then its task archive in the order tasks
were archived, newest first (proxmox-rest-server worker_task.rs,
``TaskListInfoIterator``).  Its ``since`` parameter stops that listing at the
first finished task that *ended* before ``since``.  A task whose process died
(a crash, a power loss) is archived only when PBS notices, with status
``unknown`` and the time of its last log line as end time, which can be far
older than the tasks archived just before it; ``since`` would stop at it and
never list them.  So the exporter pages with ``start``/``limit`` instead and
stops at the first task that ended before the cursor with a real status; like
``since``, it skips tasks that started before the cursor, except the running
tasks it is waiting for.  A warm poll reads only the last ``--overlap``
seconds of tasks, not the whole history.

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
  running any more nor in the listing (it started before the cursor: a long
  verify or GC), it is looked up with ``until=<its start>``;
* which prune job ran which task, as the job status showed it (below).

Counters and the counted UPIDs are saved together, so a kill at any moment
either keeps a task counted in both or in neither: after a restart every task
that finished while the exporter was down is counted once.  With no state
file (first run), tasks of the last ``--initial-lookback`` seconds are
counted; a corrupt state file is moved aside and treated the same way.

Labels
======

``job_type`` is one of backup, sync, verify, prune, gc.  ``job_id`` and
``datastore`` come from the task's worker type and worker id, in the forms
PBS 3.x writes them (``ns`` is a namespace like ``a/b``, empty for the root
namespace; ``nspath`` is ``ns/a/ns/b``):

==================  ==================================  ==================
worker_type         worker_id                           job_id
==================  ==================================  ==================
backup              ``store:vm/101`` (no namespace)     ``vm/101``, the
                                                        backup group (PBS
                                                        backup tasks carry
                                                        no job id)
syncjob             ``remote:rstore:store:ns:jobid``    ``jobid``
                    (pull and push; remote ``-`` for
                    a local sync)
verificationjob     ``store:jobid``                     ``jobid``
prunejob            ``store`` or ``store:ns``           the prune job, see
                                                        below
garbage_collection  ``store``                           ``store``
sync                ``store``                           ``manual``
prune               ``store:ns:vm/101``, ``store:ns``   ``manual``
verify              ``store`` or ``store:nspath``;      ``manual``
                    ``store:vm/101/65A0B0C0`` (after a
                    backup, datastore ``verify-new``)
verify_group        ``store:nspath/vm/101``             ``manual``
verify_snapshot     ``store:nspath/vm/101/65A0B0C0``    ``manual``
==================  ==================================  ==================

The datastore is the ``store`` part; for sync jobs the job config's ``store``
(the local datastore, for pull and push alike).  Manual runs share one
``manual`` series per datastore and type, so snapshot times never become
label values; "run now" on a configured job is that job's worker type and
counts for the job.  A prune job's worker id names only its datastore and
namespace, so a ``prunejob`` task is matched to its job by these rules, in
order:

1. the job whose status showed the task's UPID as ``last-run-upid``, on this
   poll or an earlier one (PBS sets it when the run starts);
2. the only prune job configured on that datastore and namespace;
3. of several such jobs, those whose last run started at or after the task
   (a job whose latest run is older, or that never ran, cannot have run it):
   the only one, else the first by job id (logged as ambiguous);
4. no such job (deleted, or hidden from the token): ``job_id="unmatched"``.

Other worker types (restores, tape, apt updates...) are not jobs; they are
counted in ``pbs_exporter_tasks_ignored_total{reason="unknown_type"}``, and a
worker id of a job type that matches none of the forms above in
``{reason="malformed"}``.  A task that ended "OK" or "WARNINGS: n" is a
success (warnings are counted separately in ``pbs_job_warning_total``); an
error message or "unknown" is a failure.
"""

import argparse
import bisect
import collections
import dataclasses
import gzip
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
from prometheus_client.exposition import choose_encoder, gzip_accepted
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
)
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.utils import floatToGoString

log = logging.getLogger("pbs-job-exporter")

PROG = "pbs-job-exporter"
STATE_VERSION = 2
STATE_VERSIONS = (1, 2)  # version 1 had no prune job runs
PBS_DEFAULT_PORT = 8007
TASK_PAGE = 500
TASK_FIRST_PAGE = 50
TASK_MAX_PAGES = 1000
LOOKUP_PAGE = 100
LOOKUP_MAX_PAGES = 10
# A task stamped this far ahead of this host's clock counts as clock skew.
SKEW_TOLERANCE = 300
# How often a PBS that refused sync-direction (before 3.3) is asked again.
SYNC_DIRECTION_RETRY = 3600
DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400,
                    28800, 86400)
ERROR_KINDS = ("connect", "timeout", "tls", "auth", "http", "parse", "state",
               "clock_skew", "lost_task", "internal")
IGNORE_REASONS = ("unknown_type", "malformed")
BACKUP_TYPES = ("vm", "ct", "host")
JOB_LABELS = ("job_id", "job_type", "datastore")
JOB_TYPES = ("sync", "verify", "prune", "gc")  # the ones with a job status
MANUAL = "manual"
UNMATCHED = "unmatched"
MAX_LABEL_LEN = 128
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
    path = path.removesuffix("/api2/json")
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


# ------------------------------------------------------------ PBS shapes ---
# The forms PBS itself writes, so that "malformed" means "not a PBS shape".
SAFE_ID = r"[A-Za-z0-9_][A-Za-z0-9._\-]*"  # proxmox-schema SAFE_ID_REGEX_STR
NS = rf"(?:{SAFE_ID}/){{0,7}}{SAFE_ID}"  # pbs-api-types lib.rs BACKUP_NS_RE
NS_PATH = rf"(?:ns/{SAFE_ID}/){{0,7}}ns/{SAFE_ID}"  # display_as_path()
GROUP = rf"(?:vm|ct|host)/{SAFE_ID}"  # BACKUP_TYPE_RE "/" BACKUP_ID_RE
# proxmox-schema upid.rs PROXMOX_UPID_REGEX
UPID_RE = re.compile(
    r"UPID:[a-zA-Z0-9](?:[a-zA-Z0-9\-]*[a-zA-Z0-9])?:[0-9A-Fa-f]{8}:"
    r"[0-9A-Fa-f]{8,9}:[0-9A-Fa-f]{8,16}:(?P<starttime>[0-9A-Fa-f]{8}):"
    r"[^:\s]+:[^:\s]*:[^:\s]+:")


def _form(pattern):
    return re.compile(pattern.format(store=rf"(?P<store>{SAFE_ID})",
                                     SAFE_ID=SAFE_ID, NS=NS, NS_PATH=NS_PATH,
                                     GROUP=GROUP))


# worker_type -> (job_type, how the job is named, worker_id form).  Where
# PBS writes each one (proxmox-backup, src/):
WORKER_FORMS = {
    # api2/backup/mod.rs; the namespace is not in it ("FIXME: include
    # namespace here?")
    "backup": ("backup", "group", _form(r"{store}:(?P<group>{GROUP})")),
    # server/sync.rs (3.3, pull and push) / api2/pull.rs (3.2) do_sync_job;
    # one field less before namespaces (PBS < 2.2)
    "syncjob": ("sync", "job", _form(
        r"(?:{SAFE_ID}|-):{SAFE_ID}:{store}(?::(?:{NS})?)?"
        r":(?P<job>{SAFE_ID})")),
    # server/verify_job.rs
    "verificationjob": ("verify", "job", _form(r"{store}:(?P<job>{SAFE_ID})")),
    # server/prune_job.rs do_prune_job
    "prunejob": ("prune", "prune", _form(r"{store}(?::(?P<ns>{NS}))?")),
    # server/gc_job.rs
    "garbage_collection": ("gc", "store", _form(r"{store}")),
    # api2/pull.rs pull (manual sync: "FIXME: add namespace to worker id?")
    "sync": ("sync", MANUAL, _form(r"{store}")),
    # api2/admin/datastore.rs prune (a group) and prune_datastore
    "prune": ("prune", MANUAL, _form(r"{store}:(?:{NS})?(?::{GROUP})?")),
    # api2/admin/datastore.rs verify; before namespaces without the "/";
    # api2/backup/environment.rs verify_after_complete (verify-new): the
    # new snapshot, no namespace
    "verify": ("verify", MANUAL, _form(
        r"{store}(?::(?:{NS_PATH}|{GROUP}/[0-9A-Fa-f]{{8,}}))?")),
    "verify_group": ("verify", MANUAL, _form(
        r"{store}:(?:{NS_PATH})?/?{GROUP}")),
    "verify_snapshot": ("verify", MANUAL, _form(
        r"{store}:(?:{NS_PATH})?/?{GROUP}/[0-9A-Fa-f]{{8,}}")),
}


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


def upid_starttime(upid):
    """The start time a UPID carries, or None if it is no UPID."""
    match = UPID_RE.fullmatch(upid) if isinstance(upid, str) else None
    return int(match["starttime"], 16) if match else None


def parse_task(raw):
    """A task list entry (pbs-api-types TaskListItem) as a Task, or None when
    it is malformed."""
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


def ended_before(raw, when):
    """True if the entry is a task that really ended before ``when``: not a
    crashed one, whose end time PBS guesses from its last log line."""
    return (isinstance(raw, dict) and _is_int(raw.get("endtime"))
            and raw["endtime"] < when and raw.get("status") != "unknown")


def task_succeeded(status):
    return status == "OK" or status.startswith("WARNINGS")


def _label_ok(value):
    return bool(value) and len(value) <= MAX_LABEL_LEN and value.isprintable()


def classify(task, catalog, prune_runs):
    """(key, note) of a task: key is (job_type, job_id, datastore), or None
    with note "unknown_type" / "malformed"; with a key, note says when the
    job was a guess ("ambiguous", "unmatched")."""
    known = WORKER_FORMS.get(task.worker_type)
    if known is None:
        return None, "unknown_type"
    job_type, naming, form = known
    match = form.fullmatch(task.worker_id)
    if match is None:
        return None, "malformed"
    store, note = match["store"], None
    if naming == "group":
        job_id = match["group"]
    elif naming == "job":
        job_id = match["job"]
        if job_type == "sync":
            store = catalog.sync_store(job_id) or store
    elif naming == "prune":
        job_id, note = catalog.prune_job(task, store, match["ns"] or "",
                                         prune_runs)
    elif naming == "store":
        job_id = store
    else:
        job_id = MANUAL
    if not (_label_ok(store) and _label_ok(job_id)):
        return None, "malformed"
    return (job_type, job_id, store), note


# ----------------------------------------------------------- task reader ---

class TaskReader:
    """Which tasks to read from ``/nodes/{node}/tasks`` (src/api2/node/
    tasks.rs list_tasks: running first, then the archive newest first)."""

    def __init__(self, client, node):
        self.client = client
        self.path = f"/nodes/{quote(node)}/tasks"

    def running(self):
        # PBS reads only its file of active tasks for this.
        return self.client.get_list(self.path, {
            "running": 1, "start": 0, "limit": TASK_PAGE})

    def recent(self, cursor, waiting):
        """Entries of the tasks that started at or after ``cursor``, and of
        those in ``waiting`` (running ones the ledger waits for)."""
        entries, seen, start, limit = [], set(), 0, TASK_FIRST_PAGE
        for _ in range(TASK_MAX_PAGES):
            # A warm poll needs only the last --overlap seconds: small first
            # pages, then full ones for a long history.
            page = self.client.get_list(self.path, {
                "start": start, "limit": limit})
            for raw in page:
                if ended_before(raw, cursor):
                    return entries  # the rest of the archive is older
                if isinstance(raw, dict) and _is_int(raw.get("starttime")) \
                        and raw["starttime"] < cursor \
                        and raw.get("upid") not in waiting:
                    continue  # counted before, or before the lookback
                entries.append(raw)
            if len(page) < limit:
                return entries
            upids = {t.get("upid") for t in page if isinstance(t, dict)}
            if upids <= seen:  # the API ignored 'start': stop, don't loop
                raise PbsError("parse", "task list paging returns the same "
                               "tasks again")
            seen |= upids
            start += limit
            limit = min(limit * 4, TASK_PAGE)
        raise PbsError("parse", f"task list has more than {start} tasks "
                       f"since {cursor}")

    def find(self, upid, starttime):
        """The entry of one task that started before the cursor, or None."""
        for page_no in range(LOOKUP_MAX_PAGES):
            page = self.client.get_list(self.path, {
                "until": starttime, "start": page_no * LOOKUP_PAGE,
                "limit": LOOKUP_PAGE})
            for raw in page:
                if isinstance(raw, dict) and raw.get("upid") == upid:
                    return raw
            # Archived after it ended: past its start, it is not coming.
            if len(page) < LOOKUP_PAGE or ended_before(page[-1], starttime):
                return None
        return None


# ----------------------------------------------------------- job catalog ---

class JobCatalog:
    """The configured jobs and their status (pbs-api-types jobs.rs
    JobScheduleStatus: next-run, last-run-upid, last-run-state,
    last-run-endtime), by job type and job id."""

    def __init__(self, client, problems):
        self.client = client
        self.problems = problems
        self.configs = {job_type: {} for job_type in JOB_TYPES}
        self.unsupported = set()
        self.read_ok = set()  # job types whose status this poll read
        self.sync_all_retry = 0.0  # when to ask sync-direction=all again

    def read(self, stores):
        self.read_ok = set()
        for job_type, path, reader in (
                ("sync", "/admin/sync", self._sync),
                ("verify", "/admin/verify", None),
                ("prune", "/admin/prune", None),
                ("gc", "/admin/gc", self._gc)):
            source = f"job status {path}"
            try:
                if reader is not None:
                    data = reader(stores)
                elif path in self.unsupported:
                    continue
                else:
                    data = self._unless_missing(path)
            except PbsError as err:
                self.problems.report(source, err)
                continue
            self.problems.recovered(source)
            if data is None:  # not offered by this PBS
                self.configs[job_type] = {}
                continue
            configs = {}
            for item in data:
                if not isinstance(item, dict):
                    continue
                if job_type == "gc":  # one per datastore, named after it
                    item = dict(item, id=item.get("store"))
                job_id, store = item.get("id"), item.get("store")
                if isinstance(job_id, str) and isinstance(store, str) \
                        and _label_ok(job_id) and _label_ok(store):
                    configs[job_id] = item
            self.configs[job_type] = configs
            self.read_ok.add(job_type)

    def _unless_missing(self, path, params=None):
        try:
            return self.client.get_list(path, params)
        except PbsError as err:
            if err.status not in (404, 501):
                raise
        self.unsupported.add(path)
        log.info("%s: not offered by this PBS", path)
        return None

    def _sync(self, _stores):
        # PBS 3.3 lists push jobs only when asked for all directions (src/
        # api2/admin/sync.rs ListSyncDirection, default pull); 3.2 refuses
        # the parameter with 400 (proxmox-router: unknown property).
        if "/admin/sync" in self.unsupported:
            return None
        if time.monotonic() >= self.sync_all_retry:
            try:
                return self._unless_missing("/admin/sync",
                                            {"sync-direction": "all"})
            except PbsError as err:
                if err.status != 400:
                    raise
                if self.sync_all_retry == 0.0:
                    log.info("/admin/sync refuses sync-direction (PBS "
                             "before 3.3): listing pull jobs only")
                self.sync_all_retry = time.monotonic() + SYNC_DIRECTION_RETRY
        return self._unless_missing("/admin/sync")

    def _gc(self, stores):
        # /admin/gc came with PBS 3.2 (src/api2/admin/gc.rs); before, each
        # datastore's .../gc has the same item with fewer fields.
        if "/admin/gc" not in self.unsupported:
            data = self._unless_missing("/admin/gc")
            if data is not None:
                return data
        items = []
        for store in sorted(stores):
            item = self.client.get(f"/admin/datastore/{quote(store)}/gc")
            if isinstance(item, dict):
                items.append(dict(item, store=store))
        return items

    def sync_store(self, job_id):
        item = self.configs["sync"].get(job_id)
        return item["store"] if item else None

    def last_run_upids(self, job_type):
        """{last-run-upid: job_id} of the job type's jobs."""
        return {item["last-run-upid"]: job_id for job_id, item
                in self.configs[job_type].items()
                if upid_starttime(item.get("last-run-upid")) is not None}

    def prune_job(self, task, store, ns, prune_runs):
        """(job_id, note) of a prunejob task, by the rules in the module
        docstring."""
        job_id = prune_runs.get(task.upid)
        if job_id is not None:
            return job_id, None
        same = sorted(job_id for job_id, item in self.configs["prune"].items()
                      if item["store"] == store
                      and (item.get("ns") or "") == ns)
        if len(same) == 1:
            return same[0], None
        if not same:
            return UNMATCHED, "unmatched"
        later = [job_id for job_id in same if (upid_starttime(
            self.configs["prune"][job_id].get("last-run-upid")) or -1)
            >= task.starttime]
        if len(later) == 1:
            return later[0], None
        return (later or same)[0], "ambiguous"

    def next_runs(self):
        return {(job_type, job_id, item["store"]): item["next-run"]
                for job_type, configs in self.configs.items()
                for job_id, item in configs.items()
                if _is_int(item.get("next-run"))}

    def last_runs(self):
        """{key: (last run, last success)} end times the job status
        reports."""
        result = {}
        for job_type, configs in self.configs.items():
            for job_id, item in configs.items():
                end, status = item.get("last-run-endtime"), \
                    item.get("last-run-state")
                if not _is_int(end):
                    continue
                ok = end if isinstance(status, str) \
                    and task_succeeded(status) else None
                result[(job_type, job_id, item["store"])] = (end, ok)
        return result


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
    counted: dict = dataclasses.field(default_factory=dict)  # upid -> start
    running: dict = dataclasses.field(default_factory=dict)  # upid -> start
    jobs: dict = dataclasses.field(default_factory=dict)  # key -> JobStats
    # upid -> prune job id, from last-run-upid, until the task is counted
    prune_runs: dict = dataclasses.field(default_factory=dict)
    # False after version 1, which keyed namespaced prune jobs by namespace:
    # its prune series of no configured job go once the job status is read.
    prune_ids_checked: bool = True

    def to_json(self):
        jobs = []
        for (job_type, job_id, store), stats in sorted(self.jobs.items()):
            entry = dataclasses.asdict(stats)
            entry.update(job_type=job_type, job_id=job_id, datastore=store)
            jobs.append(entry)
        return json.dumps({"version": STATE_VERSION, "cursor": self.cursor,
                           "buckets": list(DURATION_BUCKETS),
                           "counted": self.counted, "running": self.running,
                           "prune_runs": self.prune_runs,
                           "prune_ids_checked": self.prune_ids_checked,
                           "jobs": jobs}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text):
        try:
            doc = json.loads(text)
            version = doc.get("version")
            if version not in STATE_VERSIONS:
                raise StateError(f"unknown version {version!r}")
            state = cls(int(doc["cursor"]))
            for name in ("counted", "running"):
                for upid, start in doc[name].items():
                    if not (upid.startswith("UPID:") and _is_int(start)):
                        raise StateError(f"bad {name} entry {upid!r}")
                    getattr(state, name)[upid] = start
            if version == 1:
                state.prune_ids_checked = False
            else:
                for upid, job_id in doc["prune_runs"].items():
                    if not (upid.startswith("UPID:")
                            and isinstance(job_id, str)):
                        raise StateError(f"bad prune run {upid!r}")
                    state.prune_runs[upid] = job_id
                state.prune_ids_checked = doc["prune_ids_checked"] is True
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


class StateFile:
    """Loads the state (a missing or corrupt file means a fresh start) and
    saves it atomically."""

    def __init__(self, path, initial_lookback, problems):
        self.path = path
        self.initial_lookback = initial_lookback
        self.problems = problems

    def load(self):
        path = self.path
        try:
            with open(path, encoding="utf-8") as handle:
                return State.from_json(handle.read())
        except FileNotFoundError:
            log.info("no state file %s: first run, counting tasks of the "
                     "last %gs", path, self.initial_lookback)
        except (OSError, UnicodeDecodeError, StateError) as exc:
            self.problems.errors["state"] += 1
            aside = f"{path}.corrupt-{int(time.time())}"
            try:
                os.replace(path, aside)
                where = f"moved to {aside}"
            except OSError as move_exc:
                where = f"could not move it aside: {move_exc.strerror}"
            log.error("state file %s unusable (%s); %s; starting afresh, "
                      "counting tasks of the last %gs", path, exc, where,
                      self.initial_lookback)
        return State(int(time.time() - self.initial_lookback))

    def save(self, state):
        try:
            write_atomically(self.path, state.to_json())
        except OSError as exc:
            self.problems.report("state file", PbsError(
                "state", f"cannot write {self.path}: {exc}"))
            return
        self.problems.recovered("state file")


# ---------------------------------------------------------------- ledger ---

class Ledger:
    """Counts every finished task once into the state, and knows which jobs
    run now."""

    def __init__(self, state, overlap, problems):
        self.state = state
        self.overlap = int(overlap)
        self.problems = problems
        self.ignored = dict.fromkeys(IGNORE_REASONS, 0)
        self.running_by_job = {}
        self.changed = False
        self.unknown_types = set()
        self.malformed_seen = set()

    def entries(self, raw_tasks):
        """{upid: Task} of a listing; a finished entry beats a running one."""
        entries = {}
        for raw in raw_tasks:
            task = parse_task(raw)
            if task is None:
                self.ignore_malformed(raw)
                continue
            seen = entries.get(task.upid)
            if seen is None or seen.endtime is None:
                entries[task.upid] = task
        return entries

    def waiting_for(self, entries):
        """(upid, start) of the running tasks the listing did not show."""
        return [(upid, start) for upid, start in self.state.running.items()
                if upid not in entries]

    def lost(self, upid):
        self.problems.errors["lost_task"] += 1
        log.warning("task %s was running but PBS no longer lists it; it "
                    "cannot be counted", upid)
        del self.state.running[upid]
        self.changed = True

    def adopt(self, catalog):
        """Series for every configured job; prune runs the status shows."""
        state = self.state
        for job_type, configs in catalog.configs.items():
            for job_id, item in configs.items():
                key = (job_type, job_id, item["store"])
                if key not in state.jobs:
                    state.jobs[key] = JobStats()
                    self.changed = True
        for upid, job_id in catalog.last_run_upids("prune").items():
            if upid not in state.counted \
                    and state.prune_runs.get(upid) != job_id:
                state.prune_runs[upid] = job_id
                self.changed = True
        if not state.prune_ids_checked and "prune" in catalog.read_ok:
            known = set(catalog.configs["prune"]) | {MANUAL, UNMATCHED}
            stale = [k for k in state.jobs if k[0] == "prune"
                     and k[1] not in known]
            for key in stale:
                del state.jobs[key]
            if stale:
                log.info("dropped prune series of no configured job, left "
                         "by an older exporter: %s", ", ".join(
                             f"{job_id} on {store}"
                             for _, job_id, store in sorted(stale)))
            state.prune_ids_checked = True
            self.changed = True

    def count(self, entries, catalog, now):
        state = self.state
        skewed = []
        for task in sorted((t for t in entries.values()
                            if t.endtime is not None),
                           key=lambda t: (t.endtime, t.upid)):
            if state.running.pop(task.upid, None) is not None:
                self.changed = True
            if task.upid in state.counted:
                continue
            state.counted[task.upid] = task.starttime
            self.changed = True
            key, note = classify(task, catalog, state.prune_runs)
            state.prune_runs.pop(task.upid, None)
            if key is None:
                self.ignore(task, note)
                continue
            if note is not None:
                log.warning("prune task %s: %s job, counted for %r", task.upid,
                            note, key[1])
            if task.endtime < task.starttime \
                    or task.starttime > now + SKEW_TOLERANCE:
                skewed.append(task)
            state.jobs.setdefault(key, JobStats()).record(task)
        if skewed:
            self.problems.errors["clock_skew"] += len(skewed)
            sample = skewed[0]
            log.warning("%d task(s) with clock skew, counted once (e.g. %s: "
                        "start %d, end %d, this host's clock %d)",
                        len(skewed), sample.upid, sample.starttime,
                        sample.endtime, now)
        self.track_running(entries, catalog)
        self.advance(entries, now)

    def track_running(self, entries, catalog):
        state = self.state
        running_by_job = collections.Counter()
        for task in entries.values():
            if task.endtime is not None:
                continue
            key, _ = classify(task, catalog, state.prune_runs)
            if key is None:
                continue
            running_by_job[key] += 1
            if key not in state.jobs:
                state.jobs[key] = JobStats()
                self.changed = True
            if state.running.get(task.upid) != task.starttime:
                state.running[task.upid] = task.starttime
                self.changed = True
        self.running_by_job = running_by_job

    def advance(self, entries, now):
        """Moves the cursor and forgets what can no longer be listed."""
        state, overlap = self.state, self.overlap
        cursor = state.cursor
        if entries:
            newest = max(t.starttime for t in entries.values())
            cursor = max(cursor, newest - overlap)
        cursor = min(cursor, int(now) - overlap)
        if cursor != state.cursor:
            state.cursor = cursor
            self.changed = True
        horizon = cursor - overlap
        for upid in [u for u, s in state.counted.items() if s < horizon]:
            del state.counted[upid]
            self.changed = True
        for upid in [u for u in state.prune_runs if u not in state.running
                     and (upid_starttime(u) or 0) < horizon]:
            del state.prune_runs[upid]
            self.changed = True

    def ignore(self, task, reason):
        self.ignored[reason] += 1
        if reason == "unknown_type":
            if task.worker_type not in self.unknown_types \
                    and len(self.unknown_types) < 100:
                self.unknown_types.add(task.worker_type)
                log.info("ignoring tasks of type %r: not a job type this "
                         "exporter counts", task.worker_type)
        else:
            log.warning("ignoring task %s: worker id %r is not a form PBS "
                        "writes for %r", task.upid, task.worker_id,
                        task.worker_type)

    def ignore_malformed(self, raw):
        key = json.dumps(raw, sort_keys=True, default=str)[:500]
        if key in self.malformed_seen:
            return
        if len(self.malformed_seen) > 10000:
            self.malformed_seen.clear()
        self.malformed_seen.add(key)
        self.ignored["malformed"] += 1
        log.warning("ignoring malformed task list entry: %s", key[:200])


# ------------------------------------------------------------ datastores ---

class Datastores:
    """Usage of every datastore each poll; snapshot counts less often."""

    def __init__(self, client, problems, snapshot_interval):
        self.client = client
        self.problems = problems
        self.snapshot_interval = snapshot_interval
        self.usage = {}      # store -> [total, used, avail]
        self.snapshots = {}  # store -> Counter of backup types
        self.snapshots_due = 0.0

    def read_usage(self):
        source = "datastore usage"
        try:
            data = self.client.get_list("/status/datastore-usage")
        except PbsError as err:
            self.problems.report(source, err)
            self.usage = {}
            return
        self.problems.recovered(source)
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
                self.problems.report(f"datastore {item['store']}", PbsError(
                    "http", f"no usage: {item.get('error') or 'bad values'}"),
                    count=False)
                continue
            self.problems.recovered(f"datastore {item['store']}")
            usage[item["store"]] = values
        self.usage = usage

    def read_snapshots(self):
        if time.monotonic() < self.snapshots_due:
            self.snapshots = {s: c for s, c in self.snapshots.items()
                              if s in self.usage}
            return
        self.snapshots_due = time.monotonic() + self.snapshot_interval
        snapshots = {}
        for store in self.usage:
            source = f"snapshots of {store}"
            try:
                snapshots[store] = self.count_snapshots(store)
            except PbsError as err:
                self.problems.report(source, err)
                if store in self.snapshots:
                    snapshots[store] = self.snapshots[store]
                continue
            self.problems.recovered(source)
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


# -------------------------------------------------------------- problems ---

class Problems:
    """Error counters by kind, and the log: one line when a problem starts or
    changes kind (a PBS going down answers "reset" then "refused": one
    outage, one line), one line when it ends."""

    def __init__(self):
        self.errors = dict.fromkeys(ERROR_KINDS, 0)
        self.logged = {}

    def report(self, source, err, count=True):
        if count:
            self.errors[err.kind] += 1
        if self.logged.get(source) != err.kind:
            log.error("%s: %s", source, err)
            self.logged[source] = err.kind

    def recovered(self, source):
        if self.logged.pop(source, None) is not None:
            log.info("%s: working again", source)


# --------------------------------------------------------------- metrics ---

@dataclasses.dataclass
class PollStatus:
    up: object = None  # None before the first poll, then True or False
    polls: int = 0
    duration: object = None
    ended: object = None


def build_families(status, problems, ledger, catalog, datastores):
    """The metric families a scrape serves, from the last poll's results."""
    families = []

    def family(cls, name, doc, labels, rows):
        fam = cls(name, doc, labels=labels)
        for label_values, value in rows:
            fam.add_metric(label_values, value)
        families.append(fam)

    if status.up is not None:
        family(GaugeMetricFamily, "pbs_up", "1 if the last poll read the PBS "
               "task list, else 0.", [], [([], int(status.up))])
    family(CounterMetricFamily, "pbs_exporter_scrapes",
           "Polls of the PBS API.", [], [([], status.polls)])
    family(CounterMetricFamily, "pbs_exporter_scrape_errors",
           "Failed PBS API calls and data problems, by kind.", ["kind"],
           [([k], v) for k, v in problems.errors.items()])
    family(CounterMetricFamily, "pbs_exporter_tasks_ignored",
           "Finished tasks not counted as a job run, by reason.",
           ["reason"], [([k], v) for k, v in ledger.ignored.items()])
    if status.duration is not None:
        family(GaugeMetricFamily, "pbs_exporter_scrape_duration_seconds",
               "Duration of the last poll of the PBS API.", [],
               [([], status.duration)])
        family(GaugeMetricFamily, "pbs_exporter_last_scrape_timestamp_seconds",
               "When the last poll of the PBS API ended.", [],
               [([], status.ended)])

    jobs = sorted(ledger.state.jobs.items())
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

    status_last = catalog.last_runs()
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

    if status.up:
        family(GaugeMetricFamily, "pbs_job_running",
               "Tasks of the job running now.", labels,
               [(job_labels(k), ledger.running_by_job.get(k, 0))
                for k, _ in jobs])
        family(GaugeMetricFamily, "pbs_job_next_run_timestamp_seconds",
               "Next scheduled run of the job, from its job status.", labels,
               [(job_labels(k), v) for k, v in
                sorted(catalog.next_runs().items())])
        usage = sorted(datastores.usage.items())
        for name, index, doc in (
                ("pbs_datastore_size_bytes", 0, "Size of the datastore."),
                ("pbs_datastore_used_bytes", 1, "Used bytes."),
                ("pbs_datastore_available_bytes", 2, "Available bytes.")):
            family(GaugeMetricFamily, name, doc, ["datastore"],
                   [([s], v[index]) for s, v in usage])
        family(GaugeMetricFamily, "pbs_datastore_snapshots",
               "Backup snapshots in the datastore (all namespaces).",
               ["datastore", "backup_type"],
               [([s, t], n) for s, counts in sorted(
                   datastores.snapshots.items())
                for t, n in sorted(counts.items())])
    return tuple(families)


# -------------------------------------------------------------- exporter ---

class Exporter:
    """One poll of PBS after another; a scrape serves what the last one
    published (``families``)."""

    def __init__(self, args, cancel):
        self.problems = Problems()
        self.client = PbsClient(args.pbs, args.token, args.timeout,
                                args.ssl_context, cancel)
        self.tasks = TaskReader(self.client, args.node)
        self.catalog = JobCatalog(self.client, self.problems)
        self.datastores = Datastores(self.client, self.problems,
                                     args.snapshot_interval)
        self.state_file = StateFile(args.state_file, args.initial_lookback,
                                    self.problems)
        self.ledger = Ledger(self.state_file.load(), args.overlap,
                             self.problems)
        self.status = PollStatus()
        self.families = ()
        self.publish()

    def poll(self):
        started = time.monotonic()
        self.status.polls += 1
        try:
            self.status.up = self.poll_pbs()
        except Cancelled:
            return
        except Exception:  # a bug must not stop the exporter
            self.problems.errors["internal"] += 1
            log.exception("internal error during poll")
            self.status.up = False
        self.status.duration = time.monotonic() - started
        self.status.ended = time.time()
        self.publish()

    def poll_pbs(self):
        ledger = self.ledger
        ledger.changed = False
        try:
            listing = self.tasks.running() + self.tasks.recent(
                ledger.state.cursor, ledger.state.running)
        except PbsError as err:
            self.problems.report("PBS task list", err)
            ledger.running_by_job = {}
            return False
        self.problems.recovered("PBS task list")
        self.datastores.read_usage()
        self.catalog.read(self.datastores.usage)
        entries = ledger.entries(listing)
        for upid, start in ledger.waiting_for(entries):
            try:
                raw = self.tasks.find(upid, start)
            except PbsError as err:
                # PBS went away mid-poll: don't wait out a timeout per task;
                # the rest stay tracked and are looked up next poll.
                self.problems.report("PBS task lookup", err)
                break
            task = parse_task(raw) if raw is not None else None
            if task is None:
                ledger.lost(upid)
            else:
                entries[upid] = task
        ledger.adopt(self.catalog)
        ledger.count(entries, self.catalog, time.time())
        if ledger.changed:
            self.state_file.save(ledger.state)
        self.datastores.read_snapshots()
        return True

    def publish(self):
        """Swaps in the families a scrape serves, as one object."""
        try:
            self.families = build_families(self.status, self.problems,
                                           self.ledger, self.catalog,
                                           self.datastores)
        except Exception:  # keep serving the previous families
            self.problems.errors["internal"] += 1
            log.exception("internal error while building metrics")


# ---------------------------------------------------------------- server ---

class _Families:
    """A collector of fixed families, so the encoders can render them."""

    def __init__(self, families):
        self.families = families

    def collect(self):
        return iter(self.families)


class Exposition:
    """What /metrics serves: the last poll's families, rendered once per
    format (and gzipped once), then the exporter's own process metrics,
    rendered per scrape.  Rendering ~50 jobs' series on every scrape cost
    ~10 ms of CPU, more on a busy host."""

    def __init__(self, exporter):
        self.exporter = exporter
        self.process = CollectorRegistry(auto_describe=False)
        ProcessCollector(registry=self.process)
        self.lock = threading.Lock()
        self.rendered_for = None
        self.cache = {}

    def _jobs(self, encoder, gzipped):
        families = self.exporter.families
        with self.lock:
            if self.rendered_for is not families:
                self.rendered_for, self.cache = families, {}
            key = (encoder, gzipped)
            if key not in self.cache:
                # OpenMetrics ends with one "# EOF": the process part's.
                body = encoder(_Families(families)).removesuffix(b"# EOF\n")
                self.cache[key] = gzip.compress(body) if gzipped else body
            return self.cache[key]

    def render(self, accept, accept_encoding):
        """(body, content type, gzipped) for a scrape's Accept headers."""
        encoder, content_type = choose_encoder(accept)
        gzipped = gzip_accepted(accept_encoding)
        process = encoder(self.process)
        # Two gzip members make one valid gzip stream (RFC 1952 2.2).
        return (self._jobs(encoder, gzipped)
                + (gzip.compress(process) if gzipped else process),
                content_type, gzipped)


class _Handler(http.server.BaseHTTPRequestHandler):
    exposition = None  # set per server

    def do_GET(self):
        path = urlsplit(self.path).path
        encoding = None
        if path == "/metrics":
            status = 200
            body, content_type, gzipped = self.exposition.render(
                self.headers.get("Accept"),
                self.headers.get("Accept-Encoding"))
            encoding = "gzip" if gzipped else None
        elif path == "/":
            status, content_type = 200, "text/html"
            body = (b"<html><body><h1>PBS job exporter</h1>"
                    b'<a href="/metrics">/metrics</a></body></html>\n')
        else:
            status, content_type, body = 404, "text/plain", b"not found\n"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if encoding:
            self.send_header("Content-Encoding", encoding)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def start_server(address, exposition):
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

    handler = type("Handler", (_Handler,), {"exposition": exposition})
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
        server = start_server(args.listen_addr, Exposition(exporter))
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
