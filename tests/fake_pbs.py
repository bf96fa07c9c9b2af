"""A fake Proxmox Backup Server API (``/api2/json``) on 127.0.0.1.

It answers the calls the exporter makes with the shapes PBS gives (every
answer wrapped in ``{"data": ...}``, errors as a status code with a plain
message body), and it behaves like PBS where the exporter depends on it:

* ``GET /nodes/{node}/tasks``: running tasks first, then finished tasks
  newest end first; ``since`` drops tasks that *started* before it and stops
  at the first task that *ended* before it (as PBS stops reading its
  archive); ``until`` drops tasks that started after it; ``limit`` defaults
  to 50; ``start``, ``running``, ``errors``, ``typefilter``, ``statusfilter``,
  ``userfilter`` and ``store`` filter as documented.  UPIDs are encoded like
  PBS's, worker ids systemd-escaped inside them.
* ``GET /admin/{sync,verify,prune}``: the job configs with their status
  (``last-run-upid``, ``last-run-state``, ``last-run-endtime``, ``next-run``)
  worked out from the task list.
* ``GET /status/datastore-usage``, ``/admin/datastore/{store}/status``,
  ``.../namespace`` and ``.../snapshots``.
* Unknown query parameters are refused with 400, as PBS's schema check does.

Faults for the tests: a different ``token`` (401), ``fault`` = "403", "500",
"slow" (answers after ``slow_seconds``), "garbage" (not JSON), "shape"
(``data`` of the wrong type); ``stop()``/``start()`` for PBS being down.

Run as a script it serves a large generated history for the benchmark.
"""

import argparse
import collections
import json
import random
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
    "sync": {"sync-direction"},
    "verify": set(), "prune": set(), "usage": set(),
    "namespace": {"parent", "max-depth"},
    "snapshots": {"backup-type", "backup-id", "ns"},
    "status": {"verbose"},
}
JOB_WORKER_TYPES = {"sync": "syncjob", "verify": "verificationjob",
                    "prune": "prunejob"}


def systemd_escape(text):
    """proxmox_sys::systemd::escape_unit, as PBS escapes UPID worker ids."""
    out = []
    for index, char in enumerate(text):
        if char == "/":
            out.append("-")
        elif (index == 0 and char == ".") or not (
                char.isascii() and (char.isalnum() or char in "_.")):
            out.append("".join(f"\\x{b:02x}" for b in char.encode()))
        else:
            out.append(char)
    return "".join(out)


def status_type(status):
    if status == "OK":
        return "ok"
    if status.startswith("WARNINGS"):
        return "warning"
    if status == "unknown":
        return "unknown"
    return "error"


class ApiError(Exception):
    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


class FakePBS:
    def __init__(self, node="pbs1", token=TOKEN):
        self.node = node
        self.token = token
        self.lock = threading.RLock()
        self.tasks = {}
        self.seq = 0
        self.pid = 4000
        self.pstart = 123456
        self.order = None
        self.datastores = {}
        self.namespaces = collections.defaultdict(lambda: [""])
        self.snapshots = collections.defaultdict(list)
        self.jobs = {"sync": {}, "verify": {}, "prune": {}}
        self.fault = None
        self.slow_seconds = 5.0
        self.release = threading.Event()
        self.requests = []
        self.server = None
        self.port = None

    # --- content
    def add_task(self, worker_type, worker_id, start, end=None, status="OK",
                 user=USER):
        with self.lock:
            self.seq += 1
            self.pid += 1
            upid = (f"UPID:{self.node}:{self.pid:08X}:{self.pstart:08X}:"
                    f"{self.seq:08X}:{int(start):08X}:{worker_type}:"
                    f"{systemd_escape(worker_id)}:{user}:")
            task = {"upid": upid, "node": self.node, "pid": self.pid,
                    "pstart": self.pstart, "starttime": int(start),
                    "worker_type": worker_type, "worker_id": worker_id,
                    "user": user}
            if end is not None:
                task.update(endtime=int(end), status=status)
            self.tasks[upid] = task
            self.order = None
            return upid

    def finish_task(self, upid, end, status="OK"):
        with self.lock:
            self.tasks[upid].update(endtime=int(end), status=status)
            self.order = None

    def add_datastore(self, name, total, used, namespaces=("",)):
        with self.lock:
            self.datastores[name] = {"total": total, "used": used}
            self.namespaces[name] = list(namespaces)

    def add_snapshot(self, store, backup_type, backup_id, backup_time, ns=""):
        with self.lock:
            self.snapshots[store].append({
                "ns": ns, "backup-type": backup_type, "backup-id": backup_id,
                "backup-time": int(backup_time), "owner": USER,
                "protected": False, "size": 3 * 2**30,
                "files": [{"filename": "index.json.blob", "size": 812,
                           "crypt-mode": "none"},
                          {"filename": "drive-scsi0.img.fidx",
                           "size": 3 * 2**30, "crypt-mode": "none"}],
                "verification": {"state": "ok", "upid": "UPID:..."}})

    def add_job(self, kind, job_id, store, **extra):
        with self.lock:
            config = {"id": job_id, "store": store, "schedule": "daily"}
            if kind == "sync":
                config.update({"remote": "offsite", "remote-store": "main",
                               "remove-vanished": False, "owner": USER})
            elif kind == "verify":
                config.update({"ignore-verified": True, "outdated-after": 30})
            else:
                config.update({"keep-daily": 7, "keep-weekly": 4})
            config.update(extra)
            self.jobs[kind][job_id] = config

    # --- task list, PBS semantics
    def _ordered(self):
        if self.order is None:
            tasks = list(self.tasks.values())
            running = sorted((t for t in tasks if "endtime" not in t),
                             key=lambda t: t["starttime"], reverse=True)
            done = sorted((t for t in tasks if "endtime" in t),
                          key=lambda t: (t["endtime"], t["starttime"],
                                         t["upid"]), reverse=True)
            self.order = running + done
            self.n_running = len(running)
            self.last_runs = {}
            for task in reversed(done):  # the newest end wins
                job_id = task["worker_id"].split(":")[-1]
                self.last_runs[(task["worker_type"], job_id)] = task
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
            if running and finished:
                continue
            if errors and finished and task["status"] == "OK":
                continue
            if until is not None and task["starttime"] > until:
                continue
            if since is not None:
                if finished and task["endtime"] < since:
                    break  # PBS stops reading its archive here
                if task["starttime"] < since:
                    continue
            if typefilter and typefilter not in task["worker_type"]:
                continue
            if statusfilter and finished \
                    and status_type(task["status"]) not in statusfilter:
                continue
            if userfilter and userfilter not in task["user"]:
                continue
            if store and not task["worker_id"].startswith(store):
                continue
            if skipped < start:
                skipped += 1
                continue
            if limit and len(result) >= limit:
                break
            result.append(dict(task))
        return result

    def job_status(self, kind):
        self._ordered()
        out = []
        for job_id, config in sorted(self.jobs[kind].items()):
            item = dict(config)
            item.setdefault("next-run", int(time.time()) + 3600)
            task = self.last_runs.get((JOB_WORKER_TYPES[kind], job_id))
            if task is not None:
                item.update({"last-run-upid": task["upid"],
                             "last-run-state": task["status"],
                             "last-run-endtime": task["endtime"]})
            out.append(item)
        return out

    def datastore_usage(self):
        out = []
        for name, ds in sorted(self.datastores.items()):
            item = {"store": name, "total": ds["total"], "used": ds["used"],
                    "avail": ds["total"] - ds["used"],
                    "history-start": int(time.time()) - 86400 * 30,
                    "history-delta": 86400,
                    "history": [round(ds["used"] / ds["total"], 4)] * 30,
                    "estimated-full-date": int(time.time()) + 86400 * 200}
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
            return parts[1], lambda: self.job_status(parts[1])
        if parts == ["status", "datastore-usage"]:
            return "usage", self.datastore_usage
        if len(parts) == 4 and parts[:2] == ["admin", "datastore"]:
            store, what = parts[2], parts[3]
            if store not in self.datastores:
                raise ApiError(400, f"no such datastore '{store}'")
            if what == "namespace":
                return what, lambda: [{"ns": ns} for ns in
                                      self.namespaces[store]]
            if what == "snapshots":
                ns = q.get("ns", [""])[0]
                if ns not in self.namespaces[store]:
                    raise ApiError(400, f"namespace '{ns}' does not exist")
                return what, lambda: [
                    {k: v for k, v in s.items() if k != "ns"}
                    for s in self.snapshots[store] if s["ns"] == ns]
            if what == "status":
                ds = self.datastores[store]
                return what, lambda: {"total": ds["total"],
                                      "used": ds["used"],
                                      "avail": ds["total"] - ds["used"]}
        raise ApiError(404, f"Path '/api2/json/{'/'.join(parts)}' not found.")

    def respond(self, path, query, auth):
        """(status, body bytes) for one GET."""
        q = parse_qs(query, keep_blank_values=True)
        with self.lock:
            self.requests.append((path, q))
            fault = self.fault
            if auth != f"PBSAPIToken={self.token}":
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
        if fault == "shape":
            data = {"unexpected": data}
        document = {"data": data}
        if name == "tasks":
            document["total"] = len(data)
        return 200, json.dumps(document).encode()

    # --- server
    def start(self, port=0, ssl_context=None):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):
                url = urlsplit(self.path)
                status, body = fake.respond(url.path, url.query,
                                            self.headers.get("Authorization"))
                self.send_response(status)
                self.send_header("Content-Type",
                                 "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

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

    def task_requests(self, param=None):
        with self.lock:
            return [q for path, q in self.requests if path.endswith("/tasks")
                    and (param is None or param in q)]


def populate(fake, tasks, jobs, now, seed=4):
    """A history of ``tasks`` finished tasks over 7 days for ``jobs`` jobs:
    70% backup groups, then sync, verify and prune jobs, one GC a datastore.
    Returns {(job_type, job_id, datastore): (attempts, successes)}."""
    rng = random.Random(seed)
    stores = ["store1", "store2"]
    for store in stores:
        fake.add_datastore(store, 8 * 2**40, rng.randint(1, 6) * 2**40,
                           namespaces=("", "prod"))
    plan = []
    for store in stores:
        plan.append(("gc", store, store, "garbage_collection", store))
    n_backup = max(0, jobs - 2) * 7 // 10
    rest = jobs - 2 - n_backup
    for index in range(n_backup):
        store = stores[index % 2]
        group = f"{'vm' if index % 3 else 'ct'}/{100 + index}"
        plan.append(("backup", group, store, "backup", f"{store}:{group}"))
        for day in range(3):
            fake.add_snapshot(store, group.split("/")[0], group[3:],
                              now - 86400 * day, ns="" if index % 4 else "prod")
    kinds = ["sync", "verify", "prune"]
    for index in range(rest):
        kind = kinds[index % 3]
        store = stores[index % 2]
        job_id = f"{kind[0]}-{index:04x}"
        fake.add_job(kind, job_id, store)
        wid = (f"offsite:main:{store}::{job_id}" if kind == "sync"
               else f"{store}:{job_id}")
        plan.append((kind, job_id, store, JOB_WORKER_TYPES[kind], wid))
    expected = collections.Counter()
    span = 7 * 86400
    for index in range(tasks):
        job_type, job_id, store, wtype, wid = plan[index % len(plan)]
        start = now - span + index * span // tasks
        roll = rng.random()
        status = ("OK" if roll < 0.95 else "WARNINGS: 2" if roll < 0.98
                  else "backup failed: connection reset")
        fake.add_task(wtype, wid, start, start + rng.randint(5, 600), status)
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
