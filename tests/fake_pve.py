"""A fake Proxmox VE API (``/api2/json``) on 127.0.0.1, for the recovery service and the fallback playbook.

Shaped from pve-manager (PVE/API2/*.pm) and pve-common:

* Auth: ``Authorization: PVEAPIToken=<user>@<realm>!<token>=<uuid>``; anything else 401.
* Answers ``{"data": ...}``. An error (pve-manager PVE/HTTPServer.pm rest_handler, pve-http-server
  Formatter/Standard.pm and AnyEvent.pm ``response``) has its message's first line as the HTTP
  reason phrase and ``{"data": null}`` as body, plus ``"message"`` (the whole message, with its
  newline) from pve-http-server 5.2 (``http_server_version``), plus ``"errors": {param: message}``
  for a parameter error (400 "Parameter verification failed.", pve-common PVE/Exception.pm
  raise_param_exc; additionalProperties => 0 everywhere: an unknown parameter is refused). A
  permission error is 403 "Permission check failed (<path>, <privilege>)" (raise_perm_exc); a
  refused token 401 with the reason in the status line and no body (AnyEvent.pm auth_handler).
* UPIDs ``UPID:node:pid:pstart:starttime:type:id:user:`` (pve-common PVE/UPID.pm encode); ``user``
  is the token's full id (``recovery@pve!backup``) for a task a token started.
* ``GET /cluster/backup``, ``/cluster/backup/{id}`` (jobs.cfg: id, type vzdump, schedule,
  enabled, storage, mode, vmid/all/exclude/pool, comment, next-run in the list...),
  ``/cluster/resources`` (``type``: vm or node), ``/storage`` (``type``), ``GET/POST /storage``.
* ``POST /nodes/{node}/vzdump`` (PVE/API2/VZDump.pm): the job's guests on that node; ``OK``
  and no task when none is there and ``all`` is not set; else a ``vzdump`` task whose id is the
  guest when it is only one. Needs VM.Backup on the guests and Datastore.AllocateSpace on the
  storage: a token without ``backup`` rights gets 403. A backup to a storage of type ``nfs`` adds
  a ``vzdump-<type>-<vmid>-<time>.vma.zst`` volume to ``/nodes/{node}/storage/{id}/content``.
* ``GET /nodes/{node}/tasks`` (PVE/API2/Tasks.pm node_tasks): ``source`` archive|active|all,
  ``typefilter`` (exact), ``vmid``, ``errors``, ``userfilter`` (case-insensitive substring of
  ``user``), ``since``, ``until``, ``start``, ``limit``; the active ones first (pve-common
  INotify.pm read_active_workers: ``saved`` "0", a running one ``"status": "RUNNING"`` and no
  ``endtime``, ``user`` as in the UPID), then the archive newest first (``endtime``, ``status``; a
  token's task as ``user`` + ``tokenid``, convert_token_task); ``total`` counts every match.
  ``.../{upid}/status`` (``status`` running|stopped, ``exitstatus`` once stopped, ``user`` +
  ``tokenid``) and ``.../{upid}/log`` (``start`` is the 0-based first line, ``n`` counts from
  start + 1, ``total`` every line). An ended task stays in the active list, unarchived, until
  ``archive`` (``finish(..., archived=False)``).

``vzdump_outcomes[node]``: (exitstatus, seconds) per started vzdump; none left: it stays running
until ``finish``. ``fault`` = "403", "500", "slow", "garbage" for every request; ``post_fault``
= "lost" carries a POST out but answers only after ``slow_seconds``.
"""

from __future__ import annotations

import json
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, unquote, urlsplit

from tests.loopback import start_http, stop_http

READ_TOKEN = "recovery@pve!read=6b1f7c3e-2d4a-4b8e-9f10-aa55cc77ee01"
BACKUP_TOKEN = "recovery@pve!backup=0c9d8e7f-6a5b-4c3d-8e2f-1a2b3c4d5e6f"
FALLBACK_TOKEN = "recovery@pve!fallback=9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b"
DRILL_TOKEN = "recovery@pve!drill=3d2c1b0a-9f8e-4d7c-8b6a-5f4e3d2c1b0a"
VZDUMP_PARAMS = {  # PVE::VZDump::Common json_config_properties, plus job-id and stdout
    "vmid", "node", "all", "exclude", "pool", "storage", "mode", "compress", "mailto", "mailnotification", "notes-template",
    "prune-backups", "remove", "protected", "performance", "fleecing", "bwlimit", "ionice", "lockwait", "stopwait", "tmpdir",
    "dumpdir", "script", "zstd", "pigz", "quiet", "stop", "stdout", "job-id", "notification-mode", "notification-target",
    "exclude-path", "maxfiles", "pbs-change-detection-mode", "storage-type"}
TASK_PARAMS = {"source", "typefilter", "vmid", "errors", "userfilter", "since", "until", "start", "limit", "statusfilter"}
STORAGE_PARAMS = {"storage", "type", "server", "export", "content", "path", "options", "prune-backups", "nodes", "disable"}
# create_vm of qemu-server PVE/API2/Qemu.pm and pve-container PVE/API2/LXC.pm (restore), beside the guest's
# config keys (json_config_properties; here the few a drill sets: netN, tags); destroy_vm of both.
QEMU_CREATE_PARAMS = {"vmid", "archive", "storage", "force", "unique", "live-restore", "pool", "bwlimit", "start", "ha-managed",
                      "import-working-storage", "tags"}
LXC_CREATE_PARAMS = {"vmid", "ostemplate", "password", "storage", "force", "restore", "unique", "pool", "ignore-unpack-errors",
                     "ssh-public-keys", "bwlimit", "start", "ha-managed", "tags"}
DESTROY_PARAMS = {"qemu": {"purge", "destroy-unreferenced-disks", "skiplock"}, "lxc": {"purge", "destroy-unreferenced-disks", "force"}}
TASK_NAMES = {"qemu": {"restore": "qmrestore", "start": "qmstart", "stop": "qmstop", "destroy": "qmdestroy"},
              "lxc": {"restore": "vzrestore", "start": "vzstart", "stop": "vzstop", "destroy": "vzdestroy"}}
CONFIG_DIRS = {"qemu": "qemu-server", "lxc": "lxc"}


class PveError(Exception):
    def __init__(self, code: int, reason: str, errors: dict | None = None):
        super().__init__(reason)
        self.code, self.reason, self.errors = code, reason, errors


def split_list(value) -> list[str]:
    return [v for v in str(value or "").replace(";", ",").replace(" ", ",").split(",") if v]


class FakePVE:
    def __init__(self, nodes=("pve1", "pve2")):
        self.lock = threading.RLock()
        self.nodes = {n: "online" for n in nodes}
        self.guests = {}  # vmid -> {"type", "node", "name", "pool"}
        self.jobs = {}  # id -> job config
        self.storages = {"local": {"storage": "local", "type": "dir", "path": "/var/lib/vz", "content": "iso,vztmpl,backup"}}
        self.content = defaultdict(list)  # storage -> volumes
        self.tasks = {}  # upid -> task
        self.logs = {}
        self.tokens = {READ_TOKEN: {"backup"}, BACKUP_TOKEN: {"backup"}, FALLBACK_TOKEN: {"backup", "storage"},
                       DRILL_TOKEN: {"drill"}}
        # Restore drills: the pools, each storage's free space per node, what each restore and agent does,
        # and the guard of the tests: a state-changing call on a guest outside `scratch` or in `foreign` is a violation.
        self.pools = {"restore-drills"}
        self.storage_space = {}  # (node, storage) -> (total, avail)
        self.restore_outcomes = []  # (exitstatus, seconds) per restore; none left: restore_default
        self.restore_default = ("OK", 0.3)  # None: a restore runs until finish()
        self.restores = []  # (node, kind, params, upid) of every restore POSTed
        self.agent_delay = 0.2  # seconds from a start until agent/ping answers; None: the agent never answers
        self.task_seconds = 0.05  # how long a start, stop or destroy task runs
        self.scratch = None  # (first, last)
        self.foreign = set()
        self.violations = []
        self.on_finish = {}  # upid -> what its end does to the guest
        self.vzdump_outcomes = defaultdict(list)
        self.vzdump_posts = []  # (node, params, answer)
        self.requests = []
        self.fault = None
        self.http_server_version = (6, 0)  # libpve-http-server-perl: "message" in error bodies from 5.2
        self.post_fault = None
        self.slow_seconds = 5.0
        self.release = threading.Event()
        self.pid = 9000
        self.server = None
        self.port = None

    # --- content
    def add_guest(self, vmid: int, node: str, kind: str = "qemu", pool: str | None = None, tags: str = "",
                  config: dict | None = None, status: str = "running"):
        net = "virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1" if kind == "qemu" else "name=eth0,bridge=vmbr0,ip=dhcp,type=veth"
        base = {"name": f"guest{vmid}", "net0": net, **({"agent": "1", "ostype": "l26"} if kind == "qemu" else {"ostype": "debian"})}
        self.guests[vmid] = {"type": kind, "node": node, "name": f"guest{vmid}", "pool": pool, "tags": tags, "status": status,
                             "lock": None, "config": {**base, **(config or {})}, "started": time.time()}

    def add_storage(self, storage: str, node: str, total: int, avail: int, kind: str = "lvmthin"):
        self.storages[storage] = {"storage": storage, "type": kind, "content": "images,rootdir"}
        self.storage_space[(node, storage)] = (total, avail)

    def add_pbs_storage(self, storage: str, datastore: str, server: str = "192.168.30.20"):
        self.storages[storage] = {"storage": storage, "type": "pbs", "datastore": datastore, "server": server, "content": "backup",
                                  "username": "pve@pbs", "fingerprint": "aa:bb"}

    def add_job(self, job_id: str, **config):
        self.jobs[job_id] = {"id": job_id, "type": "vzdump", "schedule": "21:00", "enabled": 1, "mode": "snapshot",
                             "compress": "zstd", "notes-template": "{{guestname}}", "repeat-missed": 0, **config}

    def add_task(self, node: str, kind: str, task_id: str, user: str, start: float, end: float | None = None,
                 status: str = "OK", lines: list[str] | None = None) -> str:
        with self.lock:
            self.pid += 1
            upid = f"UPID:{node}:{self.pid:08X}:{self.pid * 7:08X}:{int(start):08X}:{kind}:{task_id}:{user}:"
            self.tasks[upid] = {"upid": upid, "node": node, "pid": self.pid, "pstart": self.pid * 7, "starttime": int(start),
                                "type": kind, "id": task_id, "user": user}
            self.logs[upid] = lines or [f"INFO: starting new backup job: vzdump {task_id}"]
            if end is not None:
                self.finish(upid, status, end)
            return upid

    def finish(self, upid: str, status: str = "OK", end: float | None = None, archived: bool = True):
        with self.lock:
            task = self.tasks[upid]
            task.update(endtime=int(end or time.time()), status=status, archived=archived)
            done = "INFO: Backup job finished successfully" if task["type"] == "vzdump" else "TASK OK"
            self.logs[upid].append(done if status == "OK" else f"TASK ERROR: {status}")
            hook = self.on_finish.pop(upid, None)
            if hook:
                hook(status)
            if (status == "OK" or status.startswith("WARNINGS")) and task.get("storage") in self.storages and self.storages[task["storage"]]["type"] == "nfs":
                for vmid in task["vmids"]:
                    kind = "qemu" if self.guests.get(vmid, {}).get("type", "qemu") == "qemu" else "lxc"
                    stamp = time.strftime("%Y_%m_%d-%H_%M_%S", time.gmtime(task["starttime"]))
                    ext = "vma.zst" if kind == "qemu" else "tar.zst"
                    self.content[task["storage"]].append({
                        "volid": f"{task['storage']}:backup/vzdump-{kind}-{vmid}-{stamp}.{ext}", "vmid": vmid,
                        "content": "backup", "format": ext, "size": 2**30, "ctime": task["starttime"]})

    # --- API
    def resources(self, q):
        kind = q.get("type", [None])[0]
        out = []
        if kind in (None, "node"):
            out += [{"id": f"node/{n}", "type": "node", "node": n, "status": s} for n, s in sorted(self.nodes.items())]
        if kind in (None, "vm"):
            for vmid, g in sorted(self.guests.items()):
                item = {"id": f"{g['type']}/{vmid}", "type": g["type"], "vmid": vmid, "node": g["node"], "name": g["name"],
                        "status": g.get("status", "running")}
                for key in ("pool", "tags", "lock"):
                    if g.get(key):
                        item[key] = g[key]
                out.append(item)
        return out

    def included(self, params) -> list[int]:
        """PVE::VZDump::get_included_guests for the parameters, all nodes."""
        if str(params.get("all", "0")) in ("1", "true"):
            excluded = {int(v) for v in split_list(params.get("exclude"))}
            return [v for v in sorted(self.guests) if v not in excluded]
        if params.get("pool"):
            return sorted(v for v, g in self.guests.items() if g["pool"] == params["pool"])
        return [int(v) for v in split_list(params.get("vmid"))]

    def vzdump(self, node: str, params: dict, rights: set, user: str):
        unknown = set(params) - VZDUMP_PARAMS
        if unknown:
            raise PveError(400, "Parameter verification failed.", {
                p: "property is not defined in schema and the schema does not allow additional properties" for p in sorted(unknown)})
        if "backup" not in rights:
            first = (self.included(params) or [""])[0]
            raise PveError(403, f"Permission check failed (/vms/{first}, VM.Backup)")
        storage = params.get("storage", "local")
        if storage not in self.storages:
            raise PveError(500, f"storage '{storage}' does not exist")
        local = [v for v in self.included(params) if self.guests.get(v, {}).get("node") == node]
        if not local and str(params.get("all", "0")) not in ("1", "true"):
            self.vzdump_posts.append((node, dict(params), "OK"))
            return "OK"
        upid = self.add_task(node, "vzdump", str(local[0]) if len(local) == 1 else "", user, time.time(),
                             lines=[f"INFO: starting new backup job: vzdump {' '.join(map(str, local))} --storage {storage}"])
        self.tasks[upid].update(vmids=local, storage=storage)
        self.vzdump_posts.append((node, dict(params), upid))
        outcomes = self.vzdump_outcomes[node]
        if outcomes:
            status, seconds = outcomes.pop(0)
            timer = threading.Timer(seconds, lambda: self.finish(upid, status))
            timer.daemon = True
            timer.start()
        return upid

    def list_tasks(self, node: str, q):
        """PVE/API2/Tasks.pm node_tasks: the active list first (unsorted there; here by start), then the archive."""
        source = q.get("source", ["archive"])[0]
        errors = q.get("errors", ["0"])[0] in ("1", "true")
        start, limit = int(q.get("start", ["0"])[0]), int(q.get("limit", ["50"])[0])
        ordered = sorted((t for t in self.tasks.values() if t["node"] == node), key=lambda t: (t["starttime"], t["upid"]),
                         reverse=True)
        active = [self.entry(t, archived=False) for t in ordered if not t.get("archived")] if source in ("active", "all") else []
        archive = [self.entry(t, archived=True) for t in ordered if t.get("archived")] if source != "active" else []
        matches = []
        for item in active + archive:
            if "userfilter" in q and q["userfilter"][0].lower() not in item["user"].lower():
                continue
            if "typefilter" in q and item["type"] != q["typefilter"][0]:
                continue
            if "vmid" in q and item["id"] != q["vmid"][0]:
                continue
            if "since" in q and item["starttime"] < int(q["since"][0]):
                continue
            if "until" in q and item["starttime"] > int(q["until"][0]):
                continue
            if errors and item.get("status") == "OK":  # a running task has no status yet: "unknown", kept
                continue
            matches.append(item)
        for item in matches:
            if "endtime" not in item:
                item["status"] = "RUNNING"  # set after the filter, as node_tasks does
        return matches[start:start + limit], len(matches)

    def entry(self, task: dict, archived: bool) -> dict:
        """A task list entry: upid_decode's fields and upid; the archive's splits a token's user."""
        item = {k: task[k] for k in ("upid", "node", "pid", "pstart", "starttime", "type", "id", "user")}
        if not archived:
            item["saved"] = "0"
        if "endtime" in task:
            item.update(endtime=task["endtime"], status=task["status"])
        if archived and "!" in item["user"]:
            item["user"], item["tokenid"] = item["user"].split("!", 1)
        return item

    def task_status(self, upid: str):
        task = self.tasks.get(upid)
        if task is None:
            raise PveError(400, "Parameter verification failed.", {"upid": "no such task"})
        out = self.entry(task, archived=True)
        out.pop("endtime", None)
        out.pop("status", None)
        if "endtime" in task:
            out.update(status="stopped", exitstatus=task["status"])
        else:
            out["status"] = "running"
        return out

    def task_log(self, upid: str, q):
        if upid not in self.tasks:
            raise PveError(400, "Parameter verification failed.", {"upid": "unable to parse worker upid"})
        lines = self.logs[upid]
        start, limit = int(q.get("start", ["0"])[0]), int(q.get("limit", ["50"])[0])
        return [{"n": i + 1, "t": lines[i]} for i in range(start, min(len(lines), start + limit))], len(lines)

    def create_storage(self, params: dict, rights: set):
        unknown = set(params) - STORAGE_PARAMS
        if unknown:
            raise PveError(400, "Parameter verification failed.", {p: "property is not defined in schema" for p in sorted(unknown)})
        if "storage" not in rights:
            raise PveError(403, "Permission check failed (/storage, Datastore.Allocate)")
        missing = [p for p in ("storage", "type", "server", "export") if not params.get(p)]
        if missing:
            raise PveError(400, "Parameter verification failed.", {p: "property is missing and it is not optional" for p in missing})
        if params["storage"] in self.storages:
            raise PveError(500, f"create storage failed: storage ID '{params['storage']}' already defined")
        self.storages[params["storage"]] = {**params, "path": params.get("path") or f"/mnt/pve/{params['storage']}"}

    def route(self, method: str, path: str, q: dict, form: dict, token: str):
        rights = self.tokens[token]
        user = token.split("=", 1)[0]
        parts = [unquote(p) for p in path.split("/") if p]
        if parts[:2] != ["api2", "json"]:
            raise PveError(501, f"Method '{method} {path}' not implemented")
        p = parts[2:]
        if method == "GET" and p == ["cluster", "backup"]:
            return [{**job, "next-run": int(time.time()) + 3600} for job in self.jobs.values()]
        if method == "GET" and len(p) == 3 and p[:2] == ["cluster", "backup"]:
            if p[2] not in self.jobs:
                raise PveError(400, "Parameter verification failed.", {"id": f"No such job '{p[2]}'"})
            return dict(self.jobs[p[2]])
        if method == "GET" and p == ["cluster", "resources"]:
            return self.resources(q)
        if p == ["storage"]:
            if method == "POST":
                self.create_storage(form, rights)
                return None
            kind = q.get("type", [None])[0]
            return [dict(s) for s in self.storages.values() if kind in (None, s["type"])]
        if method == "GET" and len(p) == 2 and p[0] == "storage":
            if p[1] not in self.storages:
                raise PveError(500, f"storage '{p[1]}' does not exist")
            return dict(self.storages[p[1]])
        if len(p) >= 2 and p[0] == "nodes":
            node = p[1]
            if node not in self.nodes:
                raise PveError(595, f"no such cluster node '{node}'")
            if method == "POST" and p[2:] == ["vzdump"]:
                return self.vzdump(node, form, rights, user)
            if method == "GET" and p[2:] == ["tasks"]:
                unknown = set(q) - TASK_PARAMS
                if unknown:
                    raise PveError(400, "Parameter verification failed.", {u: "property is not defined in schema" for u in unknown})
                return self.list_tasks(node, q)
            if method == "GET" and len(p) == 5 and p[2] == "tasks" and p[4] == "status":
                return self.task_status(p[3])
            if method == "GET" and len(p) == 5 and p[2] == "tasks" and p[4] == "log":
                return self.task_log(p[3], q)
            if len(p) >= 3 and p[2] in ("qemu", "lxc"):
                return self.guest_route(method, node, p[2], p[3:], form if method in ("POST", "PUT") else
                                        {k: v[0] for k, v in q.items()}, rights, user)
            if method == "GET" and len(p) == 5 and p[2] == "storage" and p[4] == "status":
                if (node, p[3]) not in self.storage_space:
                    raise PveError(500, f"storage '{p[3]}' does not exist")
                total, avail = self.storage_space[(node, p[3])]
                return {"total": total, "used": total - avail, "avail": avail, "active": 1, "enabled": 1, "shared": 0,
                        "type": self.storages[p[3]]["type"], "content": self.storages[p[3]]["content"]}
            if method == "DELETE" and len(p) == 4 and p[2] == "tasks":
                task = self.tasks.get(p[3])
                if task is None:
                    raise PveError(400, "Parameter verification failed.", {"upid": "no such task"})
                if "endtime" not in task:
                    self.finish(p[3], "interrupted by signal")
                return None
            if method == "GET" and len(p) == 5 and p[2] == "storage" and p[4] == "content":
                vmid = q.get("vmid", [None])[0]
                return [c for c in self.content[p[3]] if vmid is None or str(c["vmid"]) == vmid]
        raise PveError(501, f"Method '{method} {path}' not implemented")

    # --- restore drills: qemu-server PVE/API2/Qemu.pm, pve-container PVE/API2/LXC.pm and LXC/Status.pm
    def guarded(self, vmid: int, what: str):
        if self.scratch and (not self.scratch[0] <= vmid <= self.scratch[1] or vmid in self.foreign):
            self.violations.append(f"{what} on VMID {vmid}")
            raise PveError(403, f"Permission check failed (/vms/{vmid}, VM.Allocate)")

    def worker(self, node: str, kind: str, what: str, vmid: int, user: str, seconds: float | None, status: str = "OK",
               then=None) -> str:
        upid = self.add_task(node, TASK_NAMES[kind][what], str(vmid), user, time.time(),
                             lines=[f"{TASK_NAMES[kind][what]} {vmid}"])
        if then:
            self.on_finish[upid] = then
        if seconds is not None:
            timer = threading.Timer(seconds, lambda: self.finish(upid, status) if "endtime" not in self.tasks[upid] else None)
            timer.daemon = True
            timer.start()
        return upid

    def restore(self, node: str, kind: str, params: dict, rights: set, user: str) -> str:
        allowed = QEMU_CREATE_PARAMS if kind == "qemu" else LXC_CREATE_PARAMS
        unknown = {k for k in params if k not in allowed and not (k.startswith("net") and k[3:].isdigit())}
        if unknown:
            raise PveError(400, "Parameter verification failed.", {
                k: "property is not defined in schema and the schema does not allow additional properties" for k in sorted(unknown)})
        archive = params.get("archive" if kind == "qemu" else "ostemplate")
        if not archive or not str(params.get("vmid", "")).isdigit():
            raise PveError(400, "Parameter verification failed.", {"vmid": "property is missing and it is not optional"})
        vmid = int(params["vmid"])
        self.guarded(vmid, "restore")
        if "drill" not in rights:
            raise PveError(403, "Permission check failed")
        if params.get("pool") and params["pool"] not in self.pools:
            raise PveError(500, f"pool '{params['pool']}' does not exist")
        if params.get("storage") and params["storage"] not in self.storages:
            raise PveError(500, f"storage '{params['storage']}' does not exist")
        if vmid in self.guests:
            raise PveError(500, f"unable to restore {'VM' if kind == 'qemu' else 'CT'} {vmid} - "
                                f"{'VM' if self.guests[vmid]['type'] == 'qemu' else 'CT'} {vmid} already exists on node "
                                f"'{self.guests[vmid]['node']}'")
        store, _, volname = archive.partition(":")
        parts = volname.split("/")
        if self.storages.get(store, {}).get("type") != "pbs" or len(parts) != 4 or parts[0] != "backup":
            raise PveError(500, f"unable to parse volume ID '{archive}'")
        source = self.guests.get(int(parts[2]), {}).get("config", {})
        self.guests[vmid] = {"type": kind, "node": node, "name": f"restore{vmid}", "pool": params.get("pool"), "tags": "",
                             "status": "stopped", "lock": "create", "config": {}, "started": None}
        live = str(params.get("live-restore", "0")) in ("1", "true")

        def merge_config():  # the backup's config with the given keys over it (restore_merge_config)
            config = {k: v for k, v in source.items() if k != "tags"}
            config.update({k: v for k, v in params.items() if k.startswith("net") or k == "tags"})
            self.guests[vmid].update(config=config, tags=params.get("tags", ""))

        if live:  # QemuServer.pm restore_proxmox_backup_archive: config written, the VM started, locked until restored
            merge_config()
            self.guests[vmid].update(status="running", started=time.time())

        def restored(status: str):
            guest = self.guests.get(vmid)
            if guest is None:
                return
            guest["lock"] = None  # remove_lock after an error too: "VM state is NOT cleaned up"
            if status == "OK" and not live:
                merge_config()
            elif status != "OK" and live:
                guest["status"] = "stopped"  # pbs_live_restore stops the VM: "live-restore failed"
            elif status != "OK" and kind == "lxc":
                del self.guests[vmid]  # pve-container destroys the config of a failed restore

        status, seconds = self.restore_outcomes.pop(0) if self.restore_outcomes else (self.restore_default or ("OK", None))
        upid = self.worker(node, kind, "restore", vmid, user, seconds, status, restored)
        self.logs[upid] = [f"restoring '{archive}' now.." if kind == "lxc" else f"restore proxmox backup image: {archive}"]
        self.restores.append((node, kind, dict(params), upid))
        return upid

    def guest_route(self, method: str, node: str, kind: str, rest: list[str], params: dict, rights: set, user: str):
        if not rest:
            if method == "POST":
                return self.restore(node, kind, params, rights, user)
            return [{"vmid": v, "name": g["name"], "status": g["status"]} for v, g in sorted(self.guests.items())
                    if g["node"] == node and g["type"] == kind]
        vmid = int(rest[0])
        what = "/".join(rest[1:]) or "destroy"
        if method != "GET":
            self.guarded(vmid, f"{method} {what}")
        guest = self.guests.get(vmid)
        if guest is None or guest["type"] != kind or guest["node"] != node:
            raise PveError(500, f"Configuration file 'nodes/{node}/{CONFIG_DIRS[kind]}/{vmid}.conf' does not exist")
        if method != "GET" and "drill" not in rights:
            raise PveError(403, f"Permission check failed (/vms/{vmid}, VM.PowerMgmt)")
        label = "VM" if kind == "qemu" else "CT"
        if rest[1:] == ["config"]:
            if method == "GET":
                config = {**guest["config"], "digest": "0" * 40}
                if guest["tags"]:
                    config["tags"] = guest["tags"]
                if guest["lock"]:
                    config["lock"] = guest["lock"]
                return config
            if guest["lock"]:
                raise PveError(500, f"{label} is locked ({guest['lock']})")
            guest["config"].update({k: v for k, v in params.items() if k not in ("digest", "node", "vmid")})
            return None
        if rest[1:] == ["status", "current"]:
            status = {"vmid": vmid, "name": guest["name"], "status": guest["status"], "uptime": 0}
            if kind == "qemu":
                status["qmpstatus"] = guest["status"]
                if guest["config"].get("agent"):
                    status["agent"] = 1
            return status
        if rest[1:] in (["status", "start"], ["status", "stop"]):
            if guest["lock"]:
                raise PveError(500, f"{label} is locked ({guest['lock']})")
            command = rest[2]
            if command == "start" and guest["status"] == "running":
                raise PveError(500, f"{label} {vmid} already running")

            def powered(status: str, command=command):
                if status == "OK":
                    guest.update(status="running" if command == "start" else "stopped", started=time.time())
            return self.worker(node, kind, command, vmid, user, self.task_seconds, then=powered)
        if rest[1:] == ["agent", "ping"] and kind == "qemu" and method == "POST":
            if not guest["config"].get("agent"):  # PVE::QemuServer::Agent assert_agent_available
                raise PveError(500, "No QEMU guest agent configured")
            if guest["status"] != "running":
                raise PveError(500, f"VM {vmid} is not running")
            if self.agent_delay is None or time.time() - guest["started"] < self.agent_delay:
                raise PveError(500, "QEMU guest agent is not running")
            return {"result": {}}
        if not rest[1:] and method == "DELETE":
            unknown = set(params) - DESTROY_PARAMS[kind]
            if unknown:
                raise PveError(400, "Parameter verification failed.", {k: "property is not defined in schema" for k in sorted(unknown)})
            if guest["lock"]:
                raise PveError(500, f"{label} is locked ({guest['lock']})")
            if guest["status"] == "running":
                raise PveError(500, f"{label} {vmid} is running - destroy failed" if kind == "qemu"
                               else f"unable to destroy CT {vmid} - container is running")
            return self.worker(node, kind, "destroy", vmid, user, self.task_seconds,
                               then=lambda status: self.guests.pop(vmid, None) if status == "OK" else None)
        raise PveError(501, f"Method '{method} /nodes/{node}/{kind}/{'/'.join(rest)}' not implemented")

    def respond(self, method: str, path: str, query: str, body: bytes, auth: str | None, content_type: str):
        q = parse_qs(query, keep_blank_values=True)
        if body and "json" in (content_type or ""):
            form = json.loads(body)
        else:
            form = {k: v[0] for k, v in parse_qs(body.decode(), keep_blank_values=True).items()}
        with self.lock:
            self.requests.append((method, path, q, form))
            fault = self.fault
        token = (auth or "").removeprefix("PVEAPIToken=")
        if token not in self.tokens:
            return 401, "invalid token value!", b""
        if fault == "slow":
            self.release.wait(self.slow_seconds)
        if fault == "403":
            return self.error(PveError(403, "Permission check failed (/, Sys.Audit)\n"))
        if fault == "500":
            return self.error(PveError(500, "internal error\n"))
        if fault == "garbage":
            return 200, "OK", b'{"data": [{"upid": "UPID:pve1'
        with self.lock:
            try:
                data = self.route(method, path, q, form, token)
            except PveError as exc:
                return self.error(exc)
        if method == "POST" and self.post_fault == "lost":
            self.release.wait(self.slow_seconds)  # done, but the answer comes after the client gave up
        document = {"data": data}
        if isinstance(data, tuple):  # a task list or log: the items and rpcenv's 'total' (only when not 0)
            document = {"data": data[0], **({"total": data[1]} if data[1] else {})}
        return 200, "OK", json.dumps(document).encode()

    def error(self, exc: PveError) -> tuple[int, str, bytes]:
        """The status line takes the message's first line; the body its whole text from 5.2 on."""
        message = exc.reason if exc.reason.endswith("\n") else exc.reason + "\n"
        document = {"data": None}
        if self.http_server_version >= (5, 2):
            document["message"] = message
        if exc.errors:
            document["errors"] = exc.errors
        return exc.code, message.splitlines()[0], json.dumps(document).encode()

    # --- server
    def start(self, port: int = 0) -> int:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self, method):
                url = urlsplit(self.path)
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                code, reason, payload = fake.respond(method, url.path, url.query, body, self.headers.get("Authorization"),
                                                     self.headers.get("Content-Type"))
                self.send_response(code, reason)
                self.send_header("Content-Type", "application/json;charset=UTF-8")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PUT(self):
                self._handle("PUT")

            def do_DELETE(self):
                self._handle("DELETE")

            def log_message(self, *args):
                pass

        self.release.clear()
        self.server = start_http(Handler, port)
        self.port = self.server.server_address[1]
        return self.port

    def stop(self):
        self.release.set()
        stop_http(self.server)
        self.server = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"
