"""Clients of the two Proxmox APIs the backup playbook drives: Backup Server and VE.

Both wrap every answer in ``{"data": ...}`` and share the task endpoints
(``GET /nodes/{node}/tasks/{upid}/status`` and ``.../log?start=&limit=``). What each call does,
from the sources (proxmox-backup src/api2, pve-manager PVE/API2):

PBS
* ``POST /admin/{sync,verify,prune}/{id}/run`` starts a job and returns its UPID; the job holds
  a lock file while it runs (src/server/jobstate.rs), so a second start fails after the lock
  timeout. ``POST /admin/datastore/{store}/gc`` starts a GC, "garbage collection already
  running" when one is. A job's status (``GET /admin/{kind}``) has ``last-run-upid``, and
  ``last-run-state`` only once that run ended: no state means it is running.
* Task logs: lines are numbered from 1 and ``start`` keeps lines numbered ``>= start``.

PVE
* No run-now endpoint: the GUI's "Run now" (www/manager6/dc/Backup.js) reads the job, drops the
  scheduling fields and posts the rest to ``POST /nodes/{node}/vzdump``. A node that hosts none
  of the job's guests answers ``OK`` instead of a UPID (PVE/API2/VZDump.pm). One vzdump per node:
  a second one waits on the node's vzdump lock.
* ``GET /cluster/backup/{id}`` reads a job (needs Sys.Audit on /), ``/cluster/resources`` says
  which node hosts each guest, ``GET /storage`` names the PBS storages with their datastore.
* Task logs: ``start`` is the 0-based index of the first line returned.

Task lists (PVE/API2/Tasks.pm ``node_tasks``): a task of the ``active`` source that still runs has
``"status": "RUNNING"`` and no ``endtime``; an ended one not yet archived has both. An archived
task started with an API token lists ``user`` without the token and the token's name in
``tokenid`` (``recovery@pve`` + ``backup``); the active source leaves ``user`` whole
(``recovery@pve!backup``). ``userfilter`` is a case-insensitive substring match on ``user``.

A task succeeded when its ``exitstatus`` is ``OK`` or ``WARNINGS: <n>``; anything else
(``job errors``, ``unknown`` for a task whose process died, any message) is a failure.
"""

from __future__ import annotations

import re

from .rest import ApiError, Endpoint, data_member

WARNINGS = re.compile(r"^WARNINGS: \d+$")
# www/manager6/dc/Backup.js run_backup_now: the fields that belong to the schedule, not the backup.
SCHEDULE_FIELDS = ("id", "schedule", "enabled", "type", "node", "comment", "next-run", "repeat-missed", "starttime", "dow")
PROPERTY_STRING_FIELDS = ("performance", "prune-backups", "fleecing")


def task_succeeded(exitstatus: str | None) -> bool:
    return exitstatus == "OK" or bool(exitstatus and WARNINGS.match(exitstatus))


def started_by(task: dict, auth_id: str) -> bool:
    """Whether a PVE task list entry was started by ``auth_id`` (``user@realm!token``), in either form."""
    user, _, token = auth_id.partition("!")
    if task.get("tokenid"):
        return task.get("user") == user and task["tokenid"] == token
    return task.get("user") == auth_id


def upid_node(upid: str) -> str:
    parts = upid.split(":")
    if len(parts) < 9 or parts[0] != "UPID":
        raise ValueError(f"not a UPID: {upid!r}")
    return parts[1]


def property_string(value: dict) -> str:
    """PVE.Parser.printPropertyString: {"keep-last": 3} -> "keep-last=3"."""
    return ",".join(f"{key}={value[key]}" for key in value)


def run_now_params(job: dict) -> dict:
    """The vzdump parameters of the GUI's "Run now" for one backup job definition."""
    params = {key: value for key, value in job.items() if key not in SCHEDULE_FIELDS}
    params["all"] = 1 if job.get("all") in (True, 1, "1") else 0
    for key in PROPERTY_STRING_FIELDS:
        if isinstance(params.get(key), dict):
            params[key] = property_string(params[key])
    return params


def split_list(value) -> list[str]:
    if value is None:
        return []
    if isinstance(value, int):
        return [str(value)]
    return [item for item in re.split(r"[\s,;]+", str(value)) if item]


def included_guests(job: dict, resources: list[dict]) -> tuple[dict[str, list[int]], list[int]]:
    """({node: [vmid]}, [vmids no node hosts]) of a job's selection, as
    PVE::VZDump::get_included_guests reads it: ``all`` minus ``exclude``, a ``pool``, or ``vmid``."""
    guests = {int(r["vmid"]): r for r in resources if r.get("type") in ("qemu", "lxc") and "vmid" in r}
    if job.get("all") in (True, 1, "1"):
        excluded = {int(v) for v in split_list(job.get("exclude"))}
        wanted = [v for v in sorted(guests) if v not in excluded]
    elif job.get("pool"):
        wanted = sorted(v for v, r in guests.items() if r.get("pool") == job["pool"])
    else:
        wanted = [int(v) for v in split_list(job.get("vmid"))]
    if job.get("node"):
        wanted = [v for v in wanted if v not in guests or guests[v].get("node") == job["node"]]
    by_node: dict[str, list[int]] = {}
    missing = []
    for vmid in wanted:
        if vmid in guests:
            by_node.setdefault(guests[vmid]["node"], []).append(vmid)
        else:
            missing.append(vmid)
    return by_node, missing


class ProxmoxApi:
    """GETs and POSTs under /api2/json with an API token; ``token`` is the file's one line."""

    api = "proxmox"
    scheme = ""

    def __init__(self, endpoint: Endpoint, token: str):
        self.endpoint = endpoint
        self.headers = {"Authorization": f"{self.scheme}={token}"}

    def call(self, method: str, path: str, kind: type | tuple[type, ...], params: dict | None = None, form: dict | None = None):
        query = params if method in ("GET", "DELETE") else None  # PVE reads a DELETE's parameters from the query
        document = self.endpoint.json(method, "/api2/json" + path, headers=self.headers, params=query, form=form)
        return data_member(self.api, f"{method} {path}", document, kind)

    def task_status(self, node: str, upid: str) -> dict:
        return self.call("GET", f"/nodes/{node}/tasks/{upid}/status", dict)

    def task_log_tail(self, node: str, upid: str, lines: int) -> list[str]:
        path = f"/nodes/{node}/tasks/{upid}/log"
        document = self.endpoint.json("GET", "/api2/json" + path, headers=self.headers, params={"start": 0, "limit": 1})
        if not isinstance(document, dict) or not isinstance(document.get("data"), list):
            raise ApiError(self.api, "shape", f"GET {path}: answer has no list of lines")
        total = document.get("total", 0)  # PVE leaves 'total' out when it is 0 (PVE/HTTPServer.pm)
        if not isinstance(total, int):
            raise ApiError(self.api, "shape", f"GET {path}: answer has no line 'total'")
        if total == 0:
            return []
        start = max(0, total - lines)
        entries = self.call("GET", path, list, params={"start": start, "limit": lines + 1})
        numbered = sorted((e["n"], str(e.get("t", ""))) for e in entries if isinstance(e, dict) and isinstance(e.get("n"), int))
        return [text for _, text in numbered[-lines:]]


class Pbs(ProxmoxApi):
    api = "pbs"
    scheme = "PBSAPIToken"

    def __init__(self, endpoint: Endpoint, token: str, node: str = "localhost"):
        super().__init__(endpoint, token)
        self.node = node

    def job(self, kind: str, job_id: str) -> dict | None:
        """A sync, verify or prune job's config with its status; None when PBS has no such job."""
        params = {"sync-direction": "all"} if kind == "sync" else None
        try:
            jobs = self.call("GET", f"/admin/{kind}", list, params=params)
        except ApiError as exc:
            if kind != "sync" or exc.status != 400:
                raise
            jobs = self.call("GET", f"/admin/{kind}", list)  # PBS before 3.3 has no sync-direction
        return next((j for j in jobs if isinstance(j, dict) and j.get("id") == job_id), None)

    def gc_status(self, store: str) -> dict:
        return self.call("GET", f"/admin/datastore/{store}/gc", dict)

    def last_failed_backup(self, store: str, group: str) -> dict | None:
        """The newest failed backup task of a group: PBS writes its worker id as ``store:type/id``."""
        tasks = self.call("GET", f"/nodes/{self.node}/tasks", list,
                          params={"typefilter": "backup", "store": store, "errors": 1, "limit": 50})
        return next((t for t in tasks if isinstance(t, dict) and t.get("worker_id") == f"{store}:{group}"
                     and t.get("status") not in (None, "OK")), None)

    def snapshots(self, store: str, backup_type: str, backup_id: str, ns: str = "") -> list[dict]:
        """A backup group's snapshots (pbs-api-types SnapshotListItem: backup-time, size, verification...)."""
        params = {"backup-type": backup_type, "backup-id": backup_id, **({"ns": ns} if ns else {})}
        return [s for s in self.call("GET", f"/admin/datastore/{store}/snapshots", list, params=params) if isinstance(s, dict)]

    def start(self, kind: str, job_id: str, token_api: "Pbs") -> str:
        """Starts a job (or a datastore's GC) with the action's own token; returns its UPID."""
        path = f"/admin/datastore/{job_id}/gc" if kind == "gc" else f"/admin/{kind}/{job_id}/run"
        upid = token_api.call("POST", path, str, form={})
        upid_node(upid)
        return upid


class Pve(ProxmoxApi):
    api = "pve"
    scheme = "PVEAPIToken"

    def backup_jobs(self) -> list[dict]:
        return [j for j in self.call("GET", "/cluster/backup", list) if isinstance(j, dict)]

    def backup_job(self, job_id: str) -> dict:
        return self.call("GET", f"/cluster/backup/{job_id}", dict)

    def resources(self) -> list[dict]:
        return [r for r in self.call("GET", "/cluster/resources", list) if isinstance(r, dict)]

    def pbs_storages(self, datastore: str, server: str | None = None) -> list[str]:
        storages = self.call("GET", "/storage", list, params={"type": "pbs"})
        return sorted(s["storage"] for s in storages if isinstance(s, dict) and s.get("datastore") == datastore
                      and (server is None or s.get("server") == server))

    def active_vzdumps(self, node: str) -> list[dict]:
        tasks = self.call("GET", f"/nodes/{node}/tasks", list, params={"source": "active", "typefilter": "vzdump"})
        # An ended task waits in the active list until it is archived: it has an endtime.
        return [t for t in tasks if isinstance(t, dict) and (t.get("status") == "RUNNING" or "endtime" not in t)]

    def vzdumps_since(self, node: str, since: int, auth_id: str) -> list[dict]:
        """The vzdump tasks ``auth_id`` started on a node since a time, running or ended."""
        tasks = self.call("GET", f"/nodes/{node}/tasks", list, params={
            "source": "all", "typefilter": "vzdump", "since": since, "userfilter": auth_id.partition("!")[0]})
        return [t for t in tasks if isinstance(t, dict) and t.get("upid") and started_by(t, auth_id)]

    def last_failed_vzdump(self, node: str, vmid: int) -> dict | None:
        """The node's newest failed vzdump task for the guest (a task of several guests has no id)."""
        tasks = self.call("GET", f"/nodes/{node}/tasks", list, params={"typefilter": "vzdump", "errors": 1, "limit": 20})
        return next((t for t in tasks if isinstance(t, dict) and str(t.get("id") or vmid) == str(vmid)), None)

    def vzdump(self, node: str, params: dict, token_api: "Pve") -> str | None:
        """Starts vzdump on a node with the action's token: its UPID, or None when PVE answers
        ``OK`` (none of the job's guests are on that node any more)."""
        answer = token_api.call("POST", f"/nodes/{node}/vzdump", str, form=params)
        if answer == "OK":
            return None
        upid_node(answer)
        return answer

    # --- restore drills (qemu-server PVE/API2/Qemu.pm, pve-container src/PVE/API2/LXC.pm and LXC/Status.pm)
    def storage(self, storage: str) -> dict:
        return self.call("GET", f"/storage/{storage}", dict)

    def storage_status(self, node: str, storage: str) -> dict:
        return self.call("GET", f"/nodes/{node}/storage/{storage}/status", dict)

    def guest_config(self, node: str, kind: str, vmid: int) -> dict:
        return self.call("GET", f"/nodes/{node}/{kind}/{vmid}/config", dict)

    def guest_status(self, node: str, kind: str, vmid: int) -> dict:
        return self.call("GET", f"/nodes/{node}/{kind}/{vmid}/status/current", dict)

    def guest_tasks(self, node: str, vmid: int, since: int) -> list[dict]:
        tasks = self.call("GET", f"/nodes/{node}/tasks", list, params={"source": "all", "vmid": vmid, "since": since})
        return [t for t in tasks if isinstance(t, dict) and t.get("upid")]

    def restore(self, node: str, kind: str, params: dict) -> str:
        """POST /nodes/{node}/qemu (``archive``) or /lxc (``ostemplate``, ``restore=1``): the restore task's UPID."""
        return self._task("POST", f"/nodes/{node}/{kind}", params)

    def set_config(self, node: str, kind: str, vmid: int, params: dict) -> None:
        self.call("PUT", f"/nodes/{node}/{kind}/{vmid}/config", (dict, type(None)), form=params)

    def power(self, node: str, kind: str, vmid: int, command: str) -> str:
        return self._task("POST", f"/nodes/{node}/{kind}/{vmid}/status/{command}", {})

    def agent_ping(self, node: str, vmid: int) -> dict:
        return self.call("POST", f"/nodes/{node}/qemu/{vmid}/agent/ping", dict, form={})

    def destroy(self, node: str, kind: str, vmid: int) -> str:
        return self._task("DELETE", f"/nodes/{node}/{kind}/{vmid}", {"purge": 1, "destroy-unreferenced-disks": 1})

    def stop_task(self, node: str, upid: str) -> None:
        self.call("DELETE", f"/nodes/{node}/tasks/{upid}", (dict, str, type(None)), params={})

    def _task(self, method: str, path: str, params: dict) -> str:
        upid = self.call(method, path, str, params=params if method == "DELETE" else None,
                         form=params if method != "DELETE" else None)
        upid_node(upid)
        return upid
