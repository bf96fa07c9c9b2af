"""The seed's playbooks, as steps the service carries out.

backup-failure (BackupJobFailed, BackupMaintenanceJobFailed; labels job_type, job_id, datastore)
  1. find the failed task and read the end of its log (PBS, and for a backup the PVE vzdump
     task too); post job, UPID, last lines and the task's link to the room; add them to the
     incident when the alert pages;
  2. re-run: a PBS sync/verify/prune job or GC (``pbs-job-rerun``), or for a backup the PVE
     vzdump job that covers the guest, as the GUI's "Run now" does, on the nodes hosting its
     guests (``pve-backup-rerun``); verify by the tasks' exitstatus; tell the room
     "failed -> re-run -> OK" (or what happened);
  3. when the re-run failed, could not be confirmed, or the target is exhausted: page at once
     (PagerDuty, on the incident Alertmanager opens for the same alert group) with the log and
     what was tried; for a failed backup also run the fallback (``backup-fallback``,
     ansible-playbook, enforce only, once per job and day) and report the restore point.

disk-usage (the Loki volume, the NAS)
  1. post Loki's compactor health from Prometheus (``loki-compactor-report``);
  2. prune the configured NAS dataset's snapshots older than its retention
     (``nas-snapshot-prune``, dry-run by default: it lists what it would delete), never one with a
     hold or one a replication task still needs, always keeping the newest N.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
from datetime import datetime
from urllib.parse import quote, urlencode

from contracts.recovery import (BACKUP_FAILURE, BACKUP_FALLBACK, CUSTOMER_IMPACT, CUSTOMER_IMPACT_PROBE, DISK_USAGE,
                                LOKI_COMPACTOR_REPORT, NAS_SNAPSHOT_PRUNE, PBS_JOB_RERUN, PVE_BACKUP_RERUN, RESTORE_DRILL)

from .drills import restore_drill
from .engine import Engine
from .errors import Deferred, Halted
from .probes import run_probe, verdict
from .proxmox import included_guests, run_now_params, upid_node
from .rest import ApiError
from .state import Occurrence
from .truenas import RpcError, TrueNasError, prune_plan

log = logging.getLogger("recovery")
PBS_KINDS = {"sync", "verify", "prune", "gc"}


def pbs_link(cfg, upid: str) -> str:
    base = cfg["pbs"].get("uiUrl") or cfg["pbs"]["url"]
    return f"{base.rstrip('/')}/#pbsServerAdministration:tasks"  # www/button/TaskButton.js


def pve_link(cfg, node: str) -> str:
    base = cfg["pve"].get("uiUrl") or cfg["pve"]["url"]
    # www/manager6/StateProvider.js: view "server" (0), rid node/<node>, ltab and nodetab "tasks" (4)
    return f"{base.rstrip('/')}/#v1:0:={quote('node/' + node, safe='')}:4:4"


def upid_start(upid: str) -> int:
    return int(upid.split(":")[5], 16)


def epoch(timestamp: str) -> float:
    """An Alertmanager time (RFC 3339) in seconds since the epoch."""
    return datetime.fromisoformat(timestamp).timestamp()


def job_target(found: dict) -> str:
    """A PVE backup job is re-run as a whole, so its attempts are counted per job, not per guest."""
    return f"pve-job/{found['job'].get('id')}"


def code_block(lines: list[str]) -> str:
    return "```\n" + "\n".join(line.replace("```", "'''") for line in lines) + "\n```" if lines else "(no log lines)"


# ---------------------------------------------------------------------- backup failure
class BackupFailure:
    def __init__(self, engine: Engine, occ: Occurrence):
        self.e, self.occ, self.cfg = engine, occ, engine.cfg
        labels = occ.labels
        self.kind, self.job_id, self.store = labels.get("job_type", ""), labels.get("job_id", ""), labels.get("datastore", "")
        self.target = f"{self.kind}/{self.store}/{self.job_id}"
        self.action = PVE_BACKUP_RERUN if self.kind == "backup" else PBS_JOB_RERUN
        self.title = f"{self.kind} job {self.job_id} on datastore {self.store}"

    def run(self) -> None:
        occ, e = self.occ, self.e
        problem = self._unsupported()
        if problem:
            e.audit("skip", **e.who(occ), target=self.target, action=self.action, result="skipped", why=problem)
            return
        if e.mode(self.action) == "off":
            e.audit("skip", **e.who(occ), target=self.target, action=self.action, result="skipped",
                    why="kill switch engaged" if e.kill_switch() else f"action {self.action} is off")
            return
        if e.pages(occ):  # the page is out (the same job's warning ran the steps): notes for its incident
            self.add_notes()
            return
        found = occ.context.get("found")
        if found is None:
            found = occ.context["found"] = self.find_failure()
            e.state.save_context(occ)
        if not occ.context.get("reported"):
            self.report_failure(found)
            occ.context["reported"] = True
            e.state.save_context(occ)
        rerun = self.rerun(found)
        if not occ.context.get("told"):
            self.tell(rerun)
            occ.context["told"] = True
            e.state.save_context(occ)
        if rerun["result"] in ("failed", "unknown") or rerun.get("exhausted"):
            if not occ.context.get("gave_up"):
                self.escalate(rerun)
            if self.kind == "backup" and rerun["result"] == "failed":
                self.fallback(found)

    def _unsupported(self) -> str | None:
        if not (self.kind and self.job_id and self.store):
            return "the alert has no job_type, job_id or datastore label"
        if self.job_id in ("manual", "unmatched"):
            return f"job_id {self.job_id} is not a job that can be re-run"
        if self.kind not in PBS_KINDS | {"backup"}:
            return f"unknown job_type {self.kind}"
        return None

    # --- step 1: the failed task and its log
    def find_failure(self) -> dict:
        found = {"tasks": [], "problems": [], "guests": [], "job": None, "nodes": []}
        lines = self.cfg["logLines"]
        try:
            pbs = self.e.clients.pbs()
            if self.kind == "backup":
                task = pbs.last_failed_backup(self.store, self.job_id)
                upid = task and task["upid"]
                status = task and task.get("status")
            elif self.kind == "gc":
                upid, status = pbs.gc_status(self.store).get("upid"), None
            else:
                job = pbs.job(self.kind, self.job_id)
                if job is None:
                    found["problems"].append(f"PBS has no {self.kind} job {self.job_id} (or the read token cannot see it)")
                upid, status = (job or {}).get("last-run-upid"), (job or {}).get("last-run-state")
            if upid:
                found["tasks"].append({"api": "PBS", "upid": upid, "status": status, "started": upid_start(upid),
                                       "link": pbs_link(self.cfg, upid),
                                       "lines": pbs.task_log_tail(pbs.node, upid, lines)})
            else:
                found["problems"].append("no failed PBS task found for it")
        except ApiError as exc:
            self._api_error(found, exc)
        if self.kind == "backup":
            self.find_vzdump_job(found)
        return found

    def find_vzdump_job(self, found: dict) -> None:
        """The PVE backup job that writes this guest to this datastore, the nodes hosting its
        guests, and the failed vzdump task's log on the guest's node."""
        guest_type, _, vmid = self.job_id.partition("/")
        if guest_type not in ("vm", "ct") or not vmid.isdigit():
            found["problems"].append(f"backup group {self.job_id} is not a guest (vm/<id> or ct/<id>)")
            return
        vmid = int(vmid)
        try:
            pve = self.e.clients.pve()
            storages = set(pve.pbs_storages(self.store, self.cfg["pve"].get("pbsServer")))
            resources = pve.resources()
            jobs = [j for j in pve.backup_jobs() if j.get("storage") in storages]
            covering = []
            for job in sorted(jobs, key=lambda j: str(j.get("id"))):
                by_node, _ = included_guests(job, resources)
                if any(vmid in guests for guests in by_node.values()):
                    covering.append((job, by_node))
            if not covering:
                found["problems"].append(f"no PVE backup job writes guest {vmid} to a storage of datastore {self.store} "
                                         f"(PBS storages: {', '.join(sorted(storages)) or 'none'})")
                return
            job, by_node = covering[0]
            found["job"] = pve.backup_job(job["id"])
            found["nodes"] = sorted(by_node)
            found["guests"] = [vmid]
            offline = sorted(r["node"] for r in resources if r.get("type") == "node" and r.get("node") in by_node
                             and r.get("status") != "online")
            if offline:
                found["problems"].append(f"node(s) {', '.join(offline)} of the job are not online")
            node = next(n for n, guests in by_node.items() if vmid in guests)
            task = pve.last_failed_vzdump(node, vmid)
            if task:
                found["tasks"].append({"api": "PVE", "upid": task["upid"], "status": task.get("status"),
                                       "started": task.get("starttime"),
                                       "link": pve_link(self.cfg, node),
                                       "lines": pve.task_log_tail(node, task["upid"], self.cfg["logLines"])})
        except ApiError as exc:
            self._api_error(found, exc)

    def _api_error(self, found: dict, exc: ApiError) -> None:
        self.e.metrics.api_errors.labels(exc.api, exc.kind).inc()
        self.e.audit("report", **self.e.who(self.occ), target=self.target, result="failed", why=f"gathering: {exc}")
        found["problems"].append(str(exc))

    def report_failure(self, found: dict) -> None:
        text = [f"**{self.occ.alertname}**: the last run of {self.title} failed."]
        for task in found["tasks"]:
            text += [f"{task['api']} task `{task['upid']}` ended `{task['status'] or '?'}` ([task list]({task['link']}))",
                     code_block(task["lines"])]
        text += [f"Note: {p}" for p in found["problems"]]
        self.e.post(self.occ, "\n".join(text))

    def details(self, found: dict, tried: list[str] | None = None) -> dict:
        details = {"job": self.title, "problems": found["problems"]}
        for task in found["tasks"]:
            details[f"{task['api']} task"] = task["upid"]
            details[f"{task['api']} log (last lines)"] = "\n".join(task["lines"])
        if tried:
            details["tried"] = tried
        return details

    def links(self, found: dict) -> list[dict]:
        return [{"href": t["link"], "text": f"{t['api']} task list ({t['upid'][:40]}...)"} for t in found["tasks"]]

    # --- step 2: re-run
    def rerun(self, found: dict) -> dict:
        if self.kind == "backup":
            return self.rerun_vzdump(found)
        pbs_node = f"pbs:{self.cfg['pbs']['node']}"
        return self.e.act(self.occ, "rerun", self.action, self.target, [pbs_node], plan=self.pbs_plan(),
                          start=self.start_pbs, adopt=self.adopt_pbs, verify=self.verify_pbs)

    def pbs_plan(self) -> str:
        if self.kind == "gc":
            return f"POST /admin/datastore/{self.store}/gc on PBS"
        return f"POST /admin/{self.kind}/{self.job_id}/run on PBS"

    def start_pbs(self) -> list[str]:
        pbs = self.e.clients.pbs()
        job = pbs.gc_status(self.store) if self.kind == "gc" else pbs.job(self.kind, self.job_id)
        running = job and ((self.kind != "gc" and job.get("last-run-upid") and not job.get("last-run-state")))
        if running:  # PBS holds the job's lock: wait for this run instead of starting another
            self.e.audit("skip", **self.e.who(self.occ), target=self.target, action=self.action, upid=job["last-run-upid"],
                         why="the job is already running: verifying that run instead of starting one")
            return [job["last-run-upid"]]
        return [pbs.start(self.kind, self.store if self.kind == "gc" else self.job_id, self.e.clients.pbs(self.kind))]

    def adopt_pbs(self, started_at: float) -> list[str]:
        pbs = self.e.clients.pbs()
        upid = (pbs.gc_status(self.store).get("upid") if self.kind == "gc"
                else (pbs.job(self.kind, self.job_id) or {}).get("last-run-upid"))
        return [upid] if upid and upid_start(upid) >= int(started_at) - 5 else []

    def verify_pbs(self, upids: list[str]) -> tuple[str, str]:
        pbs = self.e.clients.pbs()  # the read token may read every task; the action token only its own
        return self.e.wait_tasks(pbs, upids, lambda upid: pbs.node)

    def rerun_vzdump(self, found: dict) -> dict:
        job, nodes = found.get("job"), found.get("nodes") or []
        if not job or not nodes:
            outcome = {"result": "failed", "why": "cannot re-run: " + ("; ".join(found["problems"]) or "no backup job found"),
                       "upids": [], "exhausted": False}
            if "rerun" not in self.occ.context:
                self.e.metrics.actions.labels(self.action, "failed").inc()
                self.e.audit("skip", **self.e.who(self.occ), target=self.target, action=self.action, result="failed",
                             why=outcome["why"])
                self.occ.context["rerun"] = outcome
                self.e.state.save_context(self.occ)
            return self.occ.context["rerun"]
        covered = self.covering_rerun(found)
        if covered is not None:
            return covered
        params = run_now_params(job)
        plan = f"run PVE backup job {job.get('id')} now (POST /nodes/{{node}}/vzdump on {', '.join(nodes)}: {urlencode(params)})"
        return self.e.act(self.occ, "rerun", self.action, job_target(found), [f"pve:{n}" for n in nodes], plan=plan,
                          start=lambda: self.start_vzdump(nodes, params), adopt=lambda t: self.adopt_vzdump(nodes, t),
                          verify=self.verify_vzdump)

    def covering_rerun(self, found: dict) -> dict | None:
        """The outcome of a re-run of the same PVE job that started after this failure (for another of
        its guests): it backed this guest up too, so the job is not run again. While it runs, wait."""
        if "rerun" in self.occ.context or self.e.state.attempt_of(self.occ, "rerun") is not None:
            return None
        started = {t["api"]: t["started"] for t in found["tasks"] if isinstance(t.get("started"), int)}
        failed_at = started.get("PVE", started.get("PBS", epoch(self.occ.starts_at)))  # the vzdump task is the job's run
        target = job_target(found)
        runs = [a for a in self.e.state.attempts(self.action, target, failed_at) if a.step == "rerun"]
        if not runs:
            return None
        run = runs[-1]
        if run.state != "done":
            raise Deferred(f"PVE backup job {found['job'].get('id')} is being re-run for another of its guests: "
                           "waiting for that run, which backs this guest up too")
        when = time.strftime("%H:%M:%SZ", time.gmtime(run.started_at))
        outcome = {"result": run.result or "unknown", "upids": run.upids, "exhausted": False,
                   "why": f"the job was already re-run at {when} after this failure (for another of its guests): {run.detail}"}
        self.e.audit("skip", **self.e.who(self.occ), target=target, action=self.action, upid=",".join(run.upids),
                     result=outcome["result"], why=outcome["why"])
        self.occ.context["rerun"] = outcome
        self.e.state.save_context(self.occ)
        return outcome

    def start_vzdump(self, nodes: list[str], params: dict) -> list[str]:
        pve, writer = self.e.clients.pve(), self.e.clients.pve(writer=True)
        for node in nodes:  # one vzdump per node: wait for a running one (bounded) instead of queueing on its lock
            deadline = time.time() + self.cfg["verifyTimeoutSeconds"]
            while pve.active_vzdumps(node):
                if time.time() >= deadline:
                    raise ApiError("pve", "http", f"a vzdump still runs on {node} after {self.cfg['verifyTimeoutSeconds']:g}s")
                self.e.sleep(self.cfg["pollSeconds"])
        if self.e.kill_switch():  # the wait may have taken hours
            raise Halted("kill switch engaged while waiting for the node's running vzdump: nothing started")
        upids = []
        for node in nodes:
            asked_at = time.time()
            try:
                upid = pve.vzdump(node, params, writer)
            except ApiError as exc:  # a lost answer on one node must not keep the job from the others
                found = self.adopt_vzdump([node], asked_at) if exc.lost else []
                if not found:
                    raise
                log.warning("%s: answer of %s lost (%s), its task found: %s", self.action, node, exc, found[0])
                upids += found
                continue
            if upid is None:
                self.e.audit("report", **self.e.who(self.occ), target=self.target, action=self.action,
                             why=f"PVE node {node} answered OK without a task: none of the job's guests are there now")
            else:
                upids.append(upid)
        return upids

    def adopt_vzdump(self, nodes: list[str], started_at: float) -> list[str]:
        reader = self.e.clients.pve()
        auth_id = self.e.clients.secret("pve", self.cfg["pve"]["backupTokenFile"]).split("=", 1)[0]
        return [t["upid"] for node in nodes for t in reader.vzdumps_since(node, int(started_at) - 5, auth_id)]

    def verify_vzdump(self, upids: list[str]) -> tuple[str, str]:
        if not upids:
            return "failed", "no node ran the job: its guests are on none of the nodes it was sent to"
        return self.e.wait_tasks(self.e.clients.pve(), upids, upid_node)

    def tell(self, rerun: dict) -> None:
        result = rerun["result"]
        words = {"ok": "OK", "failed": "failed again", "unknown": "outcome unknown", "dry-run": "not re-run (dry-run)",
                 "skipped": "not re-run"}[result]
        text = f"{self.title}: failed → re-run → {words}"
        if result != "ok":
            text += f"\n{rerun['why']}"
        if rerun["upids"]:
            text += "\nTask(s): " + ", ".join(f"`{u}`" for u in rerun["upids"])
        self.e.post(self.occ, text)

    # --- step 3: give up (the page comes at once) and fall back
    def escalate(self, rerun: dict) -> None:
        """Gives up on this failure: recovery_backup_job_gave_up_failure_timestamp_seconds takes its start
        for the job, on which BackupJobFailed pages at once (model/alerts.py) instead of after the retry
        grace, for this failure only: once a run succeeds, the give-up is older than the last success.
        The service never pages itself: Alertmanager's page is the one page, and it resolves with the job."""
        self.occ.context["gave_up"] = True
        self.e.state.save_context(self.occ)
        pages = self.kind == "backup"
        self.e.audit("escalate", **self.e.who(self.occ), target=self.target, action=self.action, result=rerun["result"],
                     why=f"gave up ({rerun['why']}): " + ("BackupJobFailed pages now (recovery_backup_job_gave_up_failure_timestamp_seconds)" if pages
                                                         else "the backup room has the warning; maintenance jobs page nobody"))
        self.e.post(self.occ, f"{self.title}: the recovery service gives up ({rerun['why']}); "
                              + ("paging now." if pages else "a person has to look."))

    def tried(self, found: dict) -> list[str]:
        """What the service did about this job within the re-run window, oldest first (for a backup
        group: the re-runs of its PVE job)."""
        since = self.occ.received_at - self.e.cfg.action(self.action)["windowSeconds"]
        rerun_target = job_target(found) if self.kind == "backup" and found.get("job") else self.target
        attempts = sorted(self.e.state.attempts(self.action, rerun_target, since, counted_only=False)
                          + self.e.state.attempts(BACKUP_FALLBACK, self.target, since, counted_only=False),
                          key=lambda a: a.started_at)
        return [f"{time.strftime('%H:%M:%SZ', time.gmtime(a.started_at))} {a.action}: {a.result or a.state}"
                + (f" ({a.detail})" if a.detail else "") for a in attempts]

    def add_notes(self) -> None:
        """For the page's own occurrence: the log and what was tried onto the incident; once the job's
        fallback is done, its restore point too."""
        ctx = self.occ.context
        ctx["notes_only"] = True
        if not ctx.get("noted"):
            found = ctx["found"] = self.find_failure()
            tried = self.tried(found)
            reruns = [t for t in tried if f" {self.action}: " in t]
            summary = (f"{self.title} failed; the recovery service's re-run: {reruns[-1]}" if reruns
                       else f"{self.title} failed; the recovery service has not re-run it"
                       + (f": {'; '.join(found['problems'])}" if found["problems"] else ""))
            self.e.attach(self.occ, summary, self.details(found, tried), self.links(found))
            ctx["noted"] = True
            self.e.state.save_context(self.occ)
        if self.kind != "backup" or ctx.get("fallback_noted") or self.e.mode(BACKUP_FALLBACK) == "off":
            return
        since = self.occ.received_at - self.e.cfg.action(self.action)["windowSeconds"]
        fallback = (self.e.state.attempts(BACKUP_FALLBACK, self.target, since, counted_only=False) or [None])[-1]
        if fallback is None:
            return
        if fallback.state != "done":
            raise Deferred(f"the fallback backup of {self.target} still runs: its restore point goes onto the incident next")
        self.e.attach(self.occ, f"{self.title}: fallback backup to the NAS: {fallback.result} ({fallback.detail})",
                      {"job": self.title, "tried": self.tried(ctx["found"])}, [])
        ctx["fallback_noted"] = True
        self.e.state.save_context(self.occ)

    def fallback(self, found: dict) -> None:
        fb = self.cfg.get("fallback")
        if not fb:
            return
        # The backup group names its guest even when no PVE job covers it (nothing to re-run): back it up anyway.
        guest_type, _, vmid = self.job_id.partition("/")
        guests = found.get("guests") or ([int(vmid)] if guest_type in ("vm", "ct") and vmid.isdigit() else [])
        if not guests:
            self.e.audit("skip", **self.e.who(self.occ), target=self.target, action=BACKUP_FALLBACK, result="skipped",
                         why=f"backup group {self.job_id} names no guest to back up to the NAS")
            return
        result_file = os.path.join(fb["resultDir"], f"{self.occ.fingerprint}-{self.occ.starts_at.replace(':', '')}.json")
        extra = {"recovery_job": self.target, "recovery_guests": guests, "recovery_result_file": result_file}
        command = [fb["ansiblePlaybook"], "-i", fb["inventory"], fb["playbook"], "-e", json.dumps(extra)]
        outcome = self.e.act(self.occ, "fallback", BACKUP_FALLBACK, self.target, ["pve:fallback"],
                             plan="run " + " ".join(command[:4]) + f" for guests {guests}",
                             start=lambda: self.run_ansible(command, result_file), adopt=lambda t: self.read_result(result_file),
                             verify=lambda refs: self.check_result(result_file))
        if self.occ.context.get("fallback_told"):
            return
        if outcome["result"] == "ok":
            text = f"{self.title}: fallback backup to the NAS done. Restore point(s): {outcome['why']}"
        else:
            text = f"{self.title}: fallback backup to the NAS: {outcome['result']} ({outcome['why']})"
        self.e.post(self.occ, text)
        self.occ.context["fallback_told"] = True
        self.e.state.save_context(self.occ)

    def run_ansible(self, command: list[str], result_file: str) -> list[str]:
        os.makedirs(os.path.dirname(result_file), exist_ok=True)
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=self.cfg["fallback"]["timeoutSeconds"],
                                  env={**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_RETRY_FILES_ENABLED": "0"})
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise ApiError("ansible", "timeout" if isinstance(exc, subprocess.TimeoutExpired) else "connect",
                           f"{' '.join(command[:4])}: {exc}") from None
        if done.returncode != 0:
            tail = " | ".join((done.stdout + done.stderr).strip().splitlines()[-6:])
            raise ApiError("ansible", "http", f"ansible-playbook exited {done.returncode}: {tail[-600:]}")
        return [result_file]

    def read_result(self, result_file: str) -> list[str]:
        return [result_file] if os.path.exists(result_file) else []

    def check_result(self, result_file: str) -> tuple[str, str]:
        try:
            with open(result_file, encoding="utf-8") as handle:
                result = json.load(handle)
        except (OSError, ValueError) as exc:
            return "unknown", f"no readable result from the playbook: {exc}"
        points = result.get("restore_points") or []
        if not points:
            return "failed", "the playbook reported no restore point"
        return "ok", ", ".join(f"{p.get('volid')} on {p.get('node')}" for p in points)


def backup_failure(engine: Engine, occ: Occurrence) -> None:
    BackupFailure(engine, occ).run()


# ---------------------------------------------------------------------- disk usage
COMPACTOR_QUERIES = {
    "retention last ran": "time() - max(loki_compactor_apply_retention_last_successful_run_timestamp_seconds)",
    "compaction last ran": "time() - max(loki_boltdb_shipper_compact_tables_operation_last_successful_run_timestamp_seconds)",
    "pending delete requests": "sum(loki_compactor_pending_delete_requests_count)",
    "oldest pending delete request": "max(loki_compactor_oldest_pending_delete_request_age_seconds)",
}


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def compactor_health(engine: Engine) -> list[str]:
    prometheus = engine.clients.prometheus()
    lines = []
    for what, query in COMPACTOR_QUERIES.items():
        try:
            answer = prometheus.json("GET", "/api/v1/query", headers={}, params={"query": query})
            result = answer["data"]["result"] if isinstance(answer, dict) and answer.get("status") == "success" else None
            if not isinstance(result, list):
                raise ApiError("prometheus", "shape", f"query {query!r}: {str(answer)[:160]}")
        except (ApiError, KeyError, TypeError) as exc:
            lines.append(f"{what}: unknown ({exc})")
            continue
        if not result:
            lines.append(f"{what}: no data (the metric is absent: is the compactor running and scraped?)")
            continue
        value = float(result[0]["value"][1])
        lines.append(f"{what}: {_age(value) + ' ago' if 'ran' in what else (_age(value) if 'oldest' in what else f'{value:.0f}')}")
    return lines


def disk_usage(engine: Engine, occ: Occurrence) -> None:
    e, cfg = engine, engine.cfg
    what = occ.labels.get("persistentvolumeclaim") or occ.labels.get("hrStorageDescr") or occ.labels.get("instance", "")
    if e.mode(LOKI_COMPACTOR_REPORT) != "off" and "compactor" not in occ.context:
        lines = compactor_health(e) if "prometheus" in cfg.doc else ["no prometheus section configured"]
        occ.context["compactor"] = lines
        e.state.save_context(occ)
        e.metrics.actions.labels(LOKI_COMPACTOR_REPORT, "ok").inc()
        e.audit("report", **e.who(occ), target=what, action=LOKI_COMPACTOR_REPORT, result="ok", why="; ".join(lines))
        e.post(occ, f"**{occ.alertname}** {what}: Loki compactor health\n" + "\n".join(f"- {line}" for line in lines))
    if e.mode(NAS_SNAPSHOT_PRUNE) == "off" or "truenas" not in cfg.doc:
        e.audit("skip", **e.who(occ), target=what, action=NAS_SNAPSHOT_PRUNE, result="skipped",
                why="kill switch engaged" if e.kill_switch() else "nas-snapshot-prune is off or not configured")
        return
    nas = cfg["truenas"]
    dataset = nas["dataset"]
    planned = occ.context.get("prune_plan")
    if planned is None:
        try:
            with e.clients.truenas() as client:
                snapshots, tasks = client.snapshots(dataset), client.replication_tasks()
        except TrueNasError as exc:
            e.metrics.api_errors.labels("truenas", exc.kind).inc()
            e.audit("skip", **e.who(occ), target=dataset, action=NAS_SNAPSHOT_PRUNE, result="failed", why=str(exc))
            e.metrics.actions.labels(NAS_SNAPSHOT_PRUNE, "failed").inc()
            e.post(occ, f"NAS snapshot prune of {dataset}: cannot read the snapshots: {exc}")
            return
        cutoff = int(time.time() - nas["retentionDays"] * 86400)
        delete, kept = prune_plan(snapshots, tasks, dataset, cutoff, nas["keepNewest"])
        planned = occ.context["prune_plan"] = {"delete": [s.id for s in delete], "kept": kept}
        e.state.save_context(occ)
    delete = planned["delete"]
    if not delete:
        e.audit("skip", **e.who(occ), target=dataset, action=NAS_SNAPSHOT_PRUNE, result="skipped",
                why=f"nothing older than {nas['retentionDays']:g} days to delete ({len(planned['kept'])} snapshots kept)")
        e.metrics.actions.labels(NAS_SNAPSHOT_PRUNE, "skipped").inc()
        return
    run = {}  # what the deletions ran into, for the verification
    outcome = e.act(occ, "prune", NAS_SNAPSHOT_PRUNE, dataset, ["truenas"],
                    plan=f"delete {len(delete)} snapshot(s) of {dataset}: {', '.join(delete)}",
                    start=lambda: _delete_snapshots(e, delete, run), adopt=lambda t: [],
                    verify=lambda done: _verify_deleted(e, dataset, delete, run))
    if occ.context.get("prune_told"):
        return
    kept_reasons = sorted({why for why in planned["kept"].values()})
    e.post(occ, f"NAS snapshot prune of {dataset}: {outcome['result']} ({outcome['why']})\n"
                f"kept {len(planned['kept'])}: {'; '.join(kept_reasons)}")
    occ.context["prune_told"] = True
    e.state.save_context(occ)


def _delete_snapshots(engine: Engine, ids: list[str], run: dict) -> list[str]:
    """Deletes the planned snapshots one by one and returns those it asked to delete. A busy one (it
    got a hold since the query) is skipped; the kill switch or a lost connection stops the loop.
    What happened is left in ``run`` for the verification, which re-reads the snapshots."""
    asked = []
    run.update(busy={}, stopped="", asked=asked)
    try:
        with engine.clients.truenas() as client:
            for snapshot_id in ids:
                if engine.kill_switch():
                    run["stopped"] = f"kill switch engaged after {len(asked)} deletion request(s)"
                    break
                asked.append(snapshot_id)
                try:
                    client.delete_snapshot(snapshot_id)
                except RpcError as exc:
                    if not exc.busy:
                        raise
                    run["busy"][snapshot_id] = exc.reason
                    log.warning("nas-snapshot-prune: skipping %s, TrueNAS says it is busy: %s", snapshot_id, exc.reason)
    except TrueNasError as exc:
        if not asked:
            raise
        run["stopped"] = f"stopped after {len(asked)} deletion request(s): {exc}"
        run["lost"] = exc.kind != "rpc"
        log.error("nas-snapshot-prune: %s", run["stopped"])
    return asked


def _verify_deleted(engine: Engine, dataset: str, ids: list[str], run: dict) -> tuple[str, str]:
    """Which planned snapshots are gone now: the prune's outcome is what was actually deleted. After
    a restart ``run`` is empty and every planned snapshot still there counts as a failure."""
    with engine.clients.truenas() as client:
        left = {s.id for s in client.snapshots(dataset)} & set(ids)
    gone = [i for i in ids if i not in left]
    busy = sorted(set(run.get("busy", {})) & left)
    untried = sorted(left & set(ids[len(run.get("asked", ids)):]))
    unexplained = sorted(left - set(busy) - set(untried))
    parts = [f"deleted {len(gone)} of {len(ids)} snapshot(s)" + (f": {', '.join(gone)}" if gone and left else "")]
    if busy:
        parts.append(f"skipped {len(busy)} busy (held or in use since the plan): {', '.join(busy)}")
    if run.get("stopped"):
        parts.append(run["stopped"] + (f"; not tried: {', '.join(untried)}" if untried else ""))
    if unexplained:
        parts.append(f"still there: {', '.join(unexplained)}")
    if run.get("lost"):
        return "unknown", "; ".join(parts)
    return ("failed" if unexplained else "ok"), "; ".join(parts)


# ---------------------------------------------------------------------- customer impact
def customer_impact(engine: Engine, occ: Occurrence) -> None:
    """A latency SLO pages: are customers hurt? The service's configured probes answer, now."""
    e, action = engine, CUSTOMER_IMPACT_PROBE
    service = occ.labels.get("service", "")
    mode = e.mode(action)
    targets = [t for t in (e.cfg.get("probes") or {}).get("targets", []) if t["service"] == service]
    if mode == "off" or not targets:
        why = ("kill switch engaged" if e.kill_switch() else f"{action} is off") if mode == "off" \
            else f"no probe is configured for service {service!r}"
        e.audit("skip", **e.who(occ), target=service, action=action, result="skipped", why=why)
        e.metrics.actions.labels(action, "skipped").inc()
        return
    if mode == "dry-run":
        why = "would probe " + ", ".join(f"{t['name']} ({t['url']})" for t in targets)
        e.audit("dry-run", **e.who(occ), target=service, action=action, result="dry-run", why=why)
        e.metrics.actions.labels(action, "dry-run").inc()
        return
    if "probes" not in occ.context:
        exporter = e.clients.blackbox()
        answers = [run_probe(exporter, t) for t in targets]
        impact, text = verdict(answers)
        occ.context["probes"] = {"impact": impact, "text": text,
                                 "answers": [{"name": a.name, "url": a.url, "success": a.success, "detail": a.detail} for a in answers]}
        e.state.save_context(occ)
        result = "failed" if impact == "unknown" else "ok"
        e.metrics.actions.labels(action, result).inc()
        e.audit("report", **e.who(occ), target=service, action=action, result=result, why=text)
    found = occ.context["probes"]
    if not found.get("told"):
        e.post(occ, f"**{occ.alertname}** ({service}): {found['text']}")
        details = {"customer impact": found["impact"]}
        for a in found["answers"]:
            state = {True: "OK", False: "FAILS"}.get(a["success"], "unknown")
            details[f"probe {a['name']}"] = f"{state}: {a['detail']} ({a['url']})"
        e.attach(occ, f"{service}: {found['text']}", details,
                 [{"href": a["url"], "text": f"probed endpoint {a['name']}"} for a in found["answers"]])
        found["told"] = True
        e.state.save_context(occ)


# The steps of each playbook of the catalog (contracts/recovery.py), handed to the engine by __main__.
PLAYBOOKS = {BACKUP_FAILURE: backup_failure, DISK_USAGE: disk_usage, CUSTOMER_IMPACT: customer_impact,
             RESTORE_DRILL: restore_drill}
