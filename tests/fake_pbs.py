"""A fake Proxmox Backup Server API (``/api2/json``) on 127.0.0.1.

It answers the calls the exporter makes with the shapes PBS gives (every
answer wrapped in ``{"data": ...}``, errors as a status code with a plain
message body), and behaves like PBS where the exporter depends on it.  Where
each behaviour comes from (proxmox-backup and proxmox-rs sources):

* UPIDs: ``UPID:node:pid:pstart:task_id:starttime:type:worker_id:auth_id:``
  with the worker id escaped like a systemd unit name, except that ``:`` is
  escaped too (proxmox-schema src/upid.rs ``escape_id``).
* Worker ids as PBS writes them: ``job_worker_id`` and ``manual_worker_id``
  below, each with the file that writes it.
* ``GET /nodes/{node}/tasks`` (src/api2/node/tasks.rs ``list_tasks``): the
  running tasks, newest first, then the task archive in the order tasks were
  archived, newest first (proxmox-rest-server worker_task.rs
  ``TaskListInfoIterator``).  A task is archived when it ends; one whose
  process died is archived when PBS notices, with status ``unknown`` and the
  time of its last log line as end time (``upid_read_status``): ``crash``.
  ``since`` stops at the first finished task that ended before it and skips
  those that started before it; ``until`` skips tasks that started after it;
  ``limit`` defaults to 50 (0: no limit); ``start``, ``running``, ``errors``,
  ``typefilter``, ``statusfilter``, ``userfilter`` and ``store`` filter as
  there.  Every task says ``"node": "localhost"``; ``total`` is counted the
  same way.
* ``GET /admin/{sync,verify,prune}``: job configs with their status
  (src/server/jobstate.rs ``compute_schedule_status``): ``last-run-upid`` of
  the run started last, with ``last-run-state`` and ``last-run-endtime`` once
  it ended.  ``/admin/sync`` lists pull jobs only unless asked
  ``sync-direction=all`` or ``push`` (PBS 3.3, src/api2/admin/sync.rs); PBS
  3.2 refuses the parameter with 400.
* ``GET /admin/gc`` (PBS 3.2+, src/api2/admin/gc.rs) and
  ``/admin/datastore/{store}/gc``: the GC job status per datastore; before
  3.2 only the latter, with the last GC's ``upid`` and counts and no job
  status (src/api2/admin/datastore.rs ``garbage_collection_status``).
* ``GET /status/datastore-usage``, ``/admin/datastore/{store}/status``,
  ``.../namespace`` and ``.../snapshots``.
* Unknown query parameters are refused with 400, as PBS's schema check does.

For the recovery service (POST, src/api2/admin/{sync,verify,prune}.rs ``run_*_job`` and
src/api2/admin/datastore.rs ``start_garbage_collection``; src/api2/node/tasks.rs):

* ``POST /admin/{sync,verify,prune}/{id}/run`` starts a run as the token's auth id and returns
  its UPID; while a run of the job holds its lock a second start fails (400, the lock timeout's
  message); ``POST /admin/datastore/{store}/gc`` fails with "garbage collection already running".
* ``GET /nodes/{node}/tasks/{upid}/status`` (``status`` running or stopped, ``exitstatus`` once
  stopped) and ``.../log`` (lines numbered from 1, ``start`` keeps lines numbered ``>= start``,
  ``limit`` default 50, 0 for all; ``total`` counts every line).
* ``run_outcomes[(kind, id)]``: a list of (exitstatus, seconds) that each started run ends
  with; a run with none left stays running until ``finish_task``. ``tokens`` maps further
  tokens to their auth id; ``post_fault`` = "lost" starts the run but answers only after
  ``slow_seconds`` (the answer is lost to a client that gave up).

Faults for the tests: a different ``token`` (401), ``fault`` = "403", "500",
"slow" (answers after ``slow_seconds``), "garbage" (not JSON), "shape"
(``data`` of the wrong type); ``stop()``/``start()`` for PBS being down.

Run as a script it serves a large generated history for the benchmark.
"""

import argparse
import collections
import json
import random
import re
import signal
import ssl
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

TOKEN = "exporter@pbs!metrics:0b7c5a8e-1f1e-4c55-9d3c-2f4f7f0a9e61"
USER = "root@pam"

ALLOWED_PARAMS = {
    "tasks": {"start", "limit", "since", "until", "typefilter",
              "statusfilter", "running", "errors", "userfilter", "store"},
    "sync": {"store", "sync-direction"},
    "verify": {"store"}, "prune": {"store"}, "gc": {"store"},
    "usage": set(), "store-gc": set(),
    "namespace": {"parent", "max-depth"},
    "snapshots": {"backup-type", "backup-id", "ns"},
    "status": {"verbose"},
    "task-log": {"start", "limit", "download", "test-status"},
    "task-status": set(),
}
JOB_WORKER_TYPES = {"sync": "syncjob", "verify": "verificationjob",
                    "prune": "prunejob", "gc": "garbage_collection"}
SAFE_ID = r"[A-Za-z0-9_][A-Za-z0-9._\-]*"
# pbs-api-types jobs.rs
VERIFICATION_JOB_WORKER_ID_REGEX = re.compile(rf"^({SAFE_ID}):")
SYNC_JOB_WORKER_ID_REGEX = re.compile(
    rf"^({SAFE_ID}|\-):({SAFE_ID}):({SAFE_ID})(?::((?:{SAFE_ID}/){{0,7}}"
    rf"{SAFE_ID})?)?:")


def systemd_escape(text):
    """proxmox-schema src/upid.rs escape_id: systemd unit escaping, but only
    ``_``, ``.`` and ASCII letters and digits stay (so ``:`` is escaped)."""
    out = []
    for index, byte in enumerate(text.encode()):
        char = chr(byte)
        if char == "/":
            out.append("-")
        elif (index == 0 and char == ".") or not (
                char.isascii() and (char.isalnum() or char in "_.")):
            out.append(f"\\x{byte:02x}")
        else:
            out.append(char)
    return "".join(out)


def ns_path(ns):
    """BackupNamespace::display_as_path: "a/b" -> "ns/a/ns/b"."""
    return "/".join(f"ns/{part}" for part in ns.split("/")) if ns else ""


def job_worker_id(kind, config):
    """The worker id of a scheduled job's task, from its config."""
    if kind == "sync":  # src/server/sync.rs (3.3), src/api2/pull.rs (3.2)
        return (f"{config.get('remote') or '-'}:{config['remote-store']}:"
                f"{config['store']}:{config.get('ns', '')}:{config['id']}")
    if kind == "verify":  # src/server/verify_job.rs
        return f"{config['store']}:{config['id']}"
    if kind == "prune":  # src/server/prune_job.rs do_prune_job
        ns = config.get("ns", "")
        return f"{config['store']}:{ns}" if ns else config["store"]
    return config["store"]  # src/server/gc_job.rs


def manual_worker_id(worker_type, store, ns="", group=None,
                     snapshot_time=None):
    """The worker id of a manual run (no job)."""
    if worker_type == "sync":  # src/api2/pull.rs pull
        return store
    if worker_type == "prune":  # src/api2/admin/datastore.rs prune(_datastore)
        return f"{store}:{ns}:{group}" if group else f"{store}:{ns}"
    # src/api2/admin/datastore.rs verify
    if worker_type == "verify":
        return f"{store}:{ns_path(ns)}" if ns else store
    if worker_type == "verify_group":
        return f"{store}:{ns_path(ns)}/{group}"
    if worker_type == "verify_snapshot":
        return f"{store}:{ns_path(ns)}/{group}/{snapshot_time:08X}"
    raise ValueError(worker_type)


def verify_new_worker_id(store, group, snapshot_time):
    """The verification PBS starts after a backup on a datastore with
    ``verify-new`` (src/api2/backup/environment.rs verify_after_complete):
    worker type ``verify``, no namespace in the id."""
    return f"{store}:{group}/{snapshot_time:08X}"


def status_type(status):
    if status == "OK":
        return "ok"
    if status.startswith("WARNINGS"):
        return "warning"
    if status == "unknown":
        return "unknown"
    return "error"


def check_job_store(task, store):
    """src/api2/node/tasks.rs check_job_store: the ``store`` filter."""
    wtype, wid = task["worker_type"], task["worker_id"] or ""
    if wtype.startswith("verif"):
        match = VERIFICATION_JOB_WORKER_ID_REGEX.match(wid)
        return match.group(1) == store if match else wid == store
    if wtype == "syncjob":
        match = SYNC_JOB_WORKER_ID_REGEX.match(wid)
        return bool(match) and match.group(3) == store
    if wtype in ("prune", "prunejob", "backup", "garbage_collection"):
        return wid == store or wid.startswith(f"{store}:")
    return False


class ApiError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class FakePBS:
    def __init__(self, node="pbs1", token=TOKEN, version=(3, 3)):
        self.node = node
        self.token = token
        self.version = version
        self.lock = threading.RLock()
        self.tasks = {}
        self.archived = {}  # upid -> (archived at, sequence)
        self.seq = 0
        self.pid = 4000
        self.pstart = 123456
        self.order = None
        self.datastores = {}
        self.namespaces = collections.defaultdict(lambda: [""])
        self.snapshots = collections.defaultdict(list)
        self.jobs = {"sync": {}, "verify": {}, "prune": {}}
        self.job_state = {}  # (kind, job id) -> upid of the last started run
        self.fault = None
        self.slow_seconds = 5.0
        self.release = threading.Event()
        self.requests = []
        self.logs = {}  # upid -> log lines
        self.tokens = {}  # further token -> auth id
        self.run_outcomes = collections.defaultdict(list)
        self.runs = []  # (kind, job id, upid) of every POSTed start
        self.post_fault = None
        self.server = None
        self.port = None
        # PBS's clock, for the times it computes (next runs, usage history); a test of the
        # exact exposition sets a fixed one.
        self.clock = time.time

    # --- content
    def add_task(self, worker_type, worker_id, start, end=None, status="OK",
                 user=USER, job=None, archived=None):
        """A task; finished when ``end`` is given (archived then, unless
        ``archived`` says when).  ``job`` is the (kind, job id) it ran for."""
        with self.lock:
            self.seq += 1
            self.pid += 1
            upid = (f"UPID:{self.node}:{self.pid:08X}:{self.pstart:08X}:"
                    f"{self.seq:08X}:{int(start):08X}:{worker_type}:"
                    f"{systemd_escape(worker_id)}:{user}:")
            self.tasks[upid] = {
                "upid": upid, "node": "localhost", "pid": self.pid,
                "pstart": self.pstart, "starttime": int(start),
                "worker_type": worker_type, "worker_id": worker_id or None,
                "user": user}
            if job is not None:
                last = self.tasks.get(self.job_state.get(job))
                if last is None or last["starttime"] <= int(start):
                    self.job_state[job] = upid
            if end is not None:
                self.finish_task(upid, end, status, archived)
            self.order = None
            return upid

    def finish_task(self, upid, end, status="OK", archived=None):
        with self.lock:
            self.tasks[upid].update(endtime=int(end), status=status)
            self.seq += 1
            self.archived[upid] = (end if archived is None else archived,
                                   self.seq)
            self.order = None

    def crash(self, upid, last_log=None, noticed=None):
        """The task's process died: PBS archives it when it notices, as
        "unknown" ending at its last log line (else at its start)."""
        task = self.tasks[upid]
        end = task["starttime"] if last_log is None else last_log
        self.finish_task(upid, end, "unknown",
                         self.clock() if noticed is None else noticed)

    def run_job(self, kind, job_id, start, end=None, status="OK", **extra):
        """A run of a configured job (or of a datastore's GC), with the
        worker type and id PBS gives it."""
        config = ({"store": job_id} if kind == "gc"
                  else self.jobs[kind][job_id]["config"])
        return self.add_task(JOB_WORKER_TYPES[kind],
                             job_worker_id(kind, config), start, end, status,
                             job=(kind, job_id), **extra)

    def add_datastore(self, name, total, used, namespaces=("",),
                      gc_schedule="daily"):
        with self.lock:
            self.datastores[name] = {"total": total, "used": used,
                                     "gc-schedule": gc_schedule}
            self.namespaces[name] = list(namespaces)

    def add_snapshot(self, store, backup_type, backup_id, backup_time, ns="",
                     verification="ok"):
        """A snapshot; ``verification``: its last verify's state (ok,
        failed), None when it was never verified (no member then)."""
        with self.lock:
            self.snapshots[store].append({
                "ns": ns, "backup-type": backup_type, "backup-id": backup_id,
                "backup-time": int(backup_time), "owner": USER,
                "protected": False, "size": 3 * 2**30,
                "files": [{"filename": "index.json.blob", "size": 812,
                           "crypt-mode": "none"},
                          {"filename": "drive-scsi0.img.fidx",
                           "size": 3 * 2**30, "crypt-mode": "none"}],
                **({"verification": {"state": verification,
                                     "upid": "UPID:..."}}
                   if verification else {})})

    def add_job(self, kind, job_id, store, next_run=None, status=None,
                **config):
        """A job config (pbs-api-types jobs.rs *JobConfig, kebab-case keys);
        ``status`` overrides its computed job status."""
        with self.lock:
            item = {"id": job_id, "store": store, "schedule": "daily"}
            if kind == "sync":
                item.update({"remote": "offsite", "remote-store": "main",
                             "remove-vanished": False, "owner": USER})
            elif kind == "verify":
                item.update({"ignore-verified": True, "outdated-after": 30})
            else:
                item.update({"keep-daily": 7, "keep-weekly": 4})
            item.update(config)
            item = {k: v for k, v in item.items() if v is not None}
            self.jobs[kind][job_id] = {
                "config": item, "next-run": next_run, "status": status or {}}

    # --- task list, PBS semantics
    def _ordered(self):
        if self.order is None:
            tasks = list(self.tasks.values())
            running = sorted((t for t in tasks if "endtime" not in t),
                             key=lambda t: (t["starttime"], t["upid"]),
                             reverse=True)
            done = sorted((t for t in tasks if "endtime" in t),
                          key=lambda t: self.archived[t["upid"]],
                          reverse=True)
            self.order = running + done
            self.n_running = len(running)
        return self.order

    def list_tasks(self, q):
        start = self._int(q, "start", 0)
        limit = self._int(q, "limit", 50)
        since = self._int(q, "since", None)
        until = self._int(q, "until", None)
        running = self._bool(q, "running")
        errors = self._bool(q, "errors")
        typefilter = q.get("typefilter", [None])[0]
        userfilter = q.get("userfilter", [None])[0]
        store = q.get("store", [None])[0]
        statusfilter = set(q.get("statusfilter", []))
        for value in statusfilter:
            if value not in ("ok", "warning", "error", "unknown"):
                raise ApiError(400, "parameter verification errors\n\n"
                               f"statusfilter: value '{value}' is not "
                               "defined in the enumeration.")
        result = []
        skipped = 0
        tasks = self._ordered()
        if running:  # PBS reads only its file of active tasks for this
            tasks = tasks[:self.n_running]
        for task in tasks:
            finished = "endtime" in task
            if until is not None and task["starttime"] > until:
                continue
            if since is not None:
                if finished and task["endtime"] < since:
                    break  # PBS stops reading its archive here
                if task["starttime"] < since:
                    continue
            if userfilter and userfilter not in task["user"]:
                continue
            if store and not check_job_store(task, store):
                continue
            if typefilter and typefilter not in task["worker_type"]:
                continue
            if finished and running:
                continue
            if finished and errors and task["status"] == "OK":
                continue
            if statusfilter and (not finished or status_type(
                    task["status"]) not in statusfilter):
                continue
            if skipped < start:
                skipped += 1
                continue
            result.append(dict(task))
            if limit and len(result) >= limit:
                break
        self.total = len(result) + start + (
            1 if result and limit and len(result) >= limit else 0)
        return result

    def last_run(self, kind, job_id):
        """JobScheduleStatus fields of the job's last started run."""
        task = self.tasks.get(self.job_state.get((kind, job_id)))
        if task is None:
            return {}
        status = {"last-run-upid": task["upid"]}
        if "endtime" in task:
            status.update({"last-run-state": task["status"],
                           "last-run-endtime": task["endtime"]})
        return status

    def job_status(self, kind, q):
        direction = q.get("sync-direction", ["pull"])[0]
        if kind == "sync" and direction not in ("all", "push", "pull"):
            raise ApiError(400, "parameter verification errors\n\n"
                           f"sync-direction: value '{direction}' is not "
                           "defined in the enumeration.")
        store = q.get("store", [None])[0]
        out = []
        for job_id, job in sorted(self.jobs[kind].items()):
            item = dict(job["config"])
            if store and item["store"] != store:
                continue
            if kind == "sync" and direction != "all" and \
                    item.get("sync-direction", "pull") != direction:
                continue
            item["next-run"] = job["next-run"] or int(self.clock()) + 3600
            item.update(self.last_run(kind, job_id))
            item.update(job["status"])
            out.append(item)
        return out

    def gc_status(self, store):
        ds = self.datastores[store]
        upid = self.job_state.get(("gc", store))
        item = {"upid": upid, "index-file-count": 0, "index-data-bytes": 0,
                "disk-bytes": 0, "disk-chunks": 0, "removed-bytes": 0,
                "removed-chunks": 0, "pending-bytes": 0, "pending-chunks": 0,
                "removed-bad": 0, "still-bad": 0}
        if self.version < (3, 2):
            return item
        item["store"] = store
        if ds["gc-schedule"]:
            item["schedule"] = ds["gc-schedule"]
            item["next-run"] = int(self.clock()) + 1800
        last = self.last_run("gc", store)
        if "last-run-endtime" in last:
            item.update({"last-run-endtime": last["last-run-endtime"],
                         "last-run-state": last["last-run-state"],
                         "duration": last["last-run-endtime"]
                         - self.tasks[upid]["starttime"]})
        return item

    def datastore_usage(self):
        out = []
        for name, ds in sorted(self.datastores.items()):
            item = {"store": name, "total": ds["total"], "used": ds["used"],
                    "avail": ds["total"] - ds["used"],
                    "history-start": int(self.clock()) - 86400 * 30,
                    "history-delta": 86400,
                    "history": [round(ds["used"] / ds["total"], 4)] * 30,
                    "estimated-full-date": int(self.clock()) + 86400 * 200}
            if "error" in ds:
                item = {"store": name, "error": ds["error"]}
            out.append(item)
        return out

    @staticmethod
    def _int(q, name, default):
        if name not in q:
            return default
        try:
            return int(q[name][0])
        except ValueError:
            raise ApiError(400, f"parameter verification errors\n\n{name}: "
                           "Expected integer value.") from None

    @staticmethod
    def _bool(q, name):
        value = q.get(name, ["0"])[0].lower()
        if value in ("1", "true", "yes", "on"):
            return True
        if value in ("0", "false", "no", "off"):
            return False
        raise ApiError(400, f"parameter verification errors\n\n{name}: "
                       "Unable to parse boolean option.")

    # --- routing
    def route(self, path, q):
        parts = [unquote(p) for p in path.split("/") if p]
        if parts[:2] != ["api2", "json"]:
            raise ApiError(404, f"Path '{path}' not found.")
        parts = parts[2:]
        if len(parts) == 3 and parts[0] == "nodes" and parts[2] == "tasks":
            if parts[1] not in (self.node, "localhost"):
                raise ApiError(400, f"no such node '{parts[1]}'")
            return "tasks", lambda: self.list_tasks(q)
        if len(parts) == 2 and parts[0] == "admin" and parts[1] in self.jobs:
            if parts[1] == "sync" and "sync-direction" in q \
                    and self.version < (3, 3):
                raise ApiError(400, "parameter verification errors\n\n"
                               "sync-direction: schema does not allow "
                               "additional properties.")
            return parts[1], lambda: self.job_status(parts[1], q)
        if parts[:2] == ["admin", "gc"] and len(parts) <= 3 \
                and self.version >= (3, 2):
            stores = parts[2:] or q.get("store") or sorted(self.datastores)
            for store in stores:
                if store not in self.datastores:
                    raise ApiError(400, f"no such datastore '{store}'")
            return "gc", lambda: [self.gc_status(s) for s in stores]
        if parts == ["status", "datastore-usage"]:
            return "usage", self.datastore_usage
        if len(parts) == 4 and parts[:2] == ["admin", "datastore"]:
            store, what = parts[2], parts[3]
            if store not in self.datastores:
                raise ApiError(400, f"no such datastore '{store}'")
            if what == "gc":
                return "store-gc", lambda: self.gc_status(store)
            if what == "namespace":
                return what, lambda: [{"ns": ns} for ns in
                                      self.namespaces[store]]
            if what == "snapshots":
                ns = q.get("ns", [""])[0]
                if ns not in self.namespaces[store]:
                    raise ApiError(400, f"namespace '{ns}' does not exist")
                # src/api2/admin/datastore.rs list_snapshots: backup-type
                # and backup-id narrow the list to one group.
                return what, lambda: [
                    {k: v for k, v in s.items() if k != "ns"}
                    for s in self.snapshots[store] if s["ns"] == ns
                    and q.get("backup-type", [s["backup-type"]])[0]
                    == s["backup-type"]
                    and q.get("backup-id", [s["backup-id"]])[0]
                    == s["backup-id"]]
            if what == "status":
                ds = self.datastores[store]
                return what, lambda: {"total": ds["total"],
                                      "used": ds["used"],
                                      "avail": ds["total"] - ds["used"]}
        if len(parts) == 5 and parts[0] == "nodes" and parts[2] == "tasks" \
                and parts[4] in ("log", "status"):
            task = self.tasks.get(parts[3])
            if task is None:
                raise ApiError(400, f"no such task '{parts[3]}'")
            if parts[4] == "status":
                return "task-status", lambda: self.task_status(task)
            return "task-log", lambda: self.task_log(task, q)
        raise ApiError(404, f"Path '/api2/json/{'/'.join(parts)}' not found.")

    # --- recovery: task status and log, starting jobs
    def task_log_lines(self, task):
        if task["upid"] in self.logs:
            return self.logs[task["upid"]]
        lines = [f"starting {task['worker_type']} {task['worker_id'] or ''}".strip()]
        if "endtime" in task:
            lines.append("TASK OK" if task["status"] == "OK" else
                         f"TASK {task['status']}" if task["status"].startswith(
                             "WARNINGS") else f"TASK ERROR: {task['status']}")
        return lines

    def task_log(self, task, q):
        start = self._int(q, "start", 0)
        limit = self._int(q, "limit", 50)
        lines = self.task_log_lines(task)
        out = [{"n": n, "t": text} for n, text in enumerate(lines, 1)
               if n >= start]
        self.log_total = len(lines)
        return out[:limit] if limit else out

    def task_status(self, task):
        status = {"upid": task["upid"], "node": self.node, "pid": task["pid"],
                  "pstart": task["pstart"], "starttime": task["starttime"],
                  "type": task["worker_type"], "id": task["worker_id"],
                  "user": task["user"].split("!")[0]}
        if "!" in task["user"]:
            status["tokenid"] = task["user"].split("!", 1)[1]
        if "endtime" in task:
            status.update(status="stopped", exitstatus=task["status"])
        else:
            status["status"] = "running"
        return status

    def start_run(self, kind, job_id, auth_id):
        """POST .../run or .../gc: a running task of the job, as ``auth_id``."""
        if kind == "gc":
            if job_id not in self.datastores:
                raise ApiError(400, f"no such datastore '{job_id}'")
        elif job_id not in self.jobs[kind]:
            raise ApiError(400, f"no such {kind} job '{job_id}'")
        last = self.tasks.get(self.job_state.get((kind, job_id)))
        if last is not None and "endtime" not in last:
            if kind == "gc":
                raise ApiError(400, "garbage collection already running")
            state_file = {"sync": "syncjob", "verify": "verificationjob",
                          "prune": "prunejob"}[kind]
            raise ApiError(400, 'Unable to acquire lock "/var/lib/proxmox-'
                           f'backup/jobstates/{state_file}-{job_id}.lck" - '
                           "got timeout")
        upid = self.run_job(kind, job_id, time.time(), user=auth_id)
        self.runs.append((kind, job_id, upid))
        outcomes = self.run_outcomes[(kind, job_id)]
        if outcomes:
            status, seconds = outcomes.pop(0)
            timer = threading.Timer(seconds, lambda: self.finish_task(
                upid, time.time(), status))
            timer.daemon = True
            timer.start()
        return upid

    def respond_post(self, path, auth):
        """(status, body bytes) for one POST."""
        with self.lock:
            self.requests.append((path, {"method": ["POST"]}))
            auth_id = (USER if auth == f"PBSAPIToken={self.token}" else
                       next((who for token, who in self.tokens.items()
                             if auth == f"PBSAPIToken={token}"), None))
            if auth_id is None:
                return 401, b"authentication failed - invalid API token"
            fault, post_fault = self.fault, self.post_fault
        if fault == "403":
            return 403, b"permission check failed"
        if fault in ("500", "slow", "garbage"):
            return self.respond(path, "", auth)
        parts = [unquote(p) for p in path.split("/") if p][2:]
        with self.lock:
            try:
                if len(parts) == 4 and parts[0] == "admin" and \
                        parts[1] in self.jobs and parts[3] == "run":
                    upid = self.start_run(parts[1], parts[2], auth_id)
                elif len(parts) == 4 and parts[:2] == ["admin", "datastore"] \
                        and parts[3] == "gc":
                    upid = self.start_run("gc", parts[2], auth_id)
                else:
                    raise ApiError(404, f"Path '{path}' not found.")
            except ApiError as exc:
                return exc.code, str(exc).encode()
        if post_fault == "lost":
            self.release.wait(self.slow_seconds)
        return 200, json.dumps({"data": upid}).encode()

    def respond(self, path, query, auth):
        """(status, body bytes) for one GET."""
        q = parse_qs(query, keep_blank_values=True)
        with self.lock:
            self.requests.append((path, q))
            fault = self.fault
            if auth != f"PBSAPIToken={self.token}" and auth not in {
                    f"PBSAPIToken={token}" for token in self.tokens}:
                return 401, b"authentication failed - invalid API token"
        if fault == "slow":
            self.release.wait(self.slow_seconds)
        if fault == "403":
            return 403, b"permission check failed"
        if fault == "500":
            return 500, b"internal error - unexpected failure"
        if fault == "garbage":
            return 200, b'{"data": [{"upid": "UPID:pbs1:0000'
        with self.lock:
            try:
                name, produce = self.route(path, q)
                unknown = set(q) - ALLOWED_PARAMS[name]
                if unknown:
                    raise ApiError(400, "parameter verification errors\n\n" +
                                   "\n".join(f"{p}: schema does not allow "
                                             "additional properties."
                                             for p in sorted(unknown)))
                for p, values in q.items():
                    if len(values) > 1 and p != "statusfilter":
                        raise ApiError(400, f"parameter verification errors"
                                       f"\n\n{p}: duplicate parameter")
                data = produce()
            except ApiError as exc:
                return exc.code, str(exc).encode()
            document = {"data": data}
            if name == "tasks":
                document["total"] = self.total
            if name == "task-log":
                document.update(total=self.log_total, success=1)
        if fault == "shape":
            document["data"] = {"unexpected": data}
        return 200, json.dumps(document).encode()

    # --- server
    def start(self, port=0, ssl_context=None):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _reply(self, status, body):
                self.send_response(status)
                self.send_header("Content-Type",
                                 "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                url = urlsplit(self.path)
                self._reply(*fake.respond(url.path, url.query,
                                          self.headers.get("Authorization")))

            def do_POST(self):
                url = urlsplit(self.path)
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._reply(*fake.respond_post(
                    url.path, self.headers.get("Authorization")))

            def log_message(self, *args):
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            allow_reuse_address = True

            def handle_error(self, request, client_address):
                if not isinstance(sys.exc_info()[1], (ConnectionError,
                                                      ssl.SSLError)):
                    super().handle_error(request, client_address)

        self.release.clear()
        self.server = Server(("127.0.0.1", port), Handler)
        if ssl_context is not None:
            self.server.socket = ssl_context.wrap_socket(
                self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, args=(0.05,),
                         daemon=True).start()
        return self.port

    def stop(self):
        self.release.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def requested(self, suffix, param=None):
        """Queries of the GETs whose path ends with ``suffix``."""
        with self.lock:
            return [q for path, q in self.requests if path.endswith(suffix)
                    and (param is None or param in q)]

    def task_requests(self, param=None):
        return self.requested("/tasks", param)


def populate(fake, tasks, jobs, now, seed=4):
    """A history of ``tasks`` finished tasks over 7 days for ``jobs`` jobs:
    70% backup groups, then sync (pull and push), verify and prune jobs (on
    the root namespace and on "prod"), one GC a datastore.  Returns
    {(job_type, job_id, datastore, "attempts" | "successes"): count}."""
    rng = random.Random(seed)
    stores = ["store1", "store2"]
    for store in stores:
        fake.add_datastore(store, 8 * 2**40, rng.randint(1, 6) * 2**40,
                           namespaces=("", "prod"))
    plan = [("gc", store, store) for store in stores]
    n_backup = max(0, jobs - 2) * 7 // 10
    rest = jobs - 2 - n_backup
    for index in range(n_backup):
        store = stores[index % 2]
        group = f"{'vm' if index % 3 else 'ct'}/{100 + index}"
        plan.append(("backup", group, store))
        for day in range(3):
            fake.add_snapshot(store, group.split("/")[0], group[3:],
                              now - 86400 * day, ns="" if index % 4 else "prod")
    kinds = ["sync", "verify", "prune"]
    for index in range(rest):
        kind = kinds[index % 3]
        store = stores[index % 2]
        job_id = f"{kind[0]}-{index:04x}"
        extra = {}
        if kind == "prune" and index % 2:
            extra["ns"] = "prod"
        if kind == "sync" and index % 2:
            extra["sync-direction"] = "push"
        fake.add_job(kind, job_id, store, **extra)
        plan.append((kind, job_id, store))
    expected = collections.Counter()
    span = 7 * 86400
    for index in range(tasks):
        job_type, job_id, store = plan[index % len(plan)]
        start = now - span + index * span // tasks
        end = start + rng.randint(5, 600)
        roll = rng.random()
        status = ("OK" if roll < 0.95 else "WARNINGS: 2" if roll < 0.98
                  else "backup failed: connection reset")
        if job_type == "backup":
            fake.add_task("backup", f"{store}:{job_id}", start, end, status)
        else:
            fake.run_job(job_type, job_id, start, end, status)
        expected[(job_type, job_id, store, "attempts")] += 1
        expected[(job_type, job_id, store, "successes")] += status != \
            "backup failed: connection reset"
    return expected


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--tasks", type=int, default=10000)
    parser.add_argument("--jobs", type=int, default=50)
    args = parser.parse_args(argv)
    fake = FakePBS()
    populate(fake, args.tasks, args.jobs, int(time.time()) - 900)
    port = fake.start(args.port)
    print(f"PORT {port}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    fake.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
