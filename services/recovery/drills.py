"""Restore drills: proof, guest by guest, that the newest backup restores and boots.

The schedule (``Scheduler``, a thread of the service) picks one guest at a time whose last drill is
older than its tier's interval, inside the configured window, and queues a ``restore-drill``
occurrence; a worker runs it (``RestoreDrill``) like any playbook, so a restart of the service
finds it in the state file. A drill, through the PVE API:

1. finds the guest's newest snapshot on PBS (through the PVE storage of the datastore, which
   names the datastore and namespace), a free scratch VMID of the range, and checks that the
   scratch storage has room for the snapshot's size times the headroom and that no vzdump runs
   on the node (it waits for one);
2. restores into the scratch VMID, on the scratch storage, into the drill pool, tagged as ours
   (``POST /nodes/{node}/qemu`` with ``archive`` and ``unique=1``, ``POST /nodes/{node}/lxc``
   with ``ostemplate`` and ``restore=1``);
3. isolates it (every NIC ``link_down=1``, read back), starts it and waits for the QEMU guest
   agent (``agent/ping``) or, for a container, the running state; the time from the restore's
   start to that moment is the guest's RTO;
4. always tears it down: stops it and destroys it (``purge=1``, ``destroy-unreferenced-disks=1``),
   after a success, a failure, the maximum duration or a restart of the service mid-drill.

Guards: nothing state-changing on a VMID outside the scratch range or not provably ours (ours:
tagged and in the pool, or the target of our own restore task); one drill at a time; the kill
switch, the action's mode (dry-run plans and reports, touching nothing), its cooldown and attempts.
Evidence: an audit line per step, the tasks' logs in the audit, the gauges of audit.Metrics.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone

from contracts.recovery import RESTORE_DRILL, RESTORE_DRILL_RUN

from .engine import Engine
from .errors import Deferred
from .proxmox import Pve, started_by, task_succeeded
from .rest import ApiError
from .state import Occurrence

log = logging.getLogger("recovery")
ACTION = RESTORE_DRILL_RUN
BACKUP_TYPES = {"qemu": "vm", "lxc": "ct"}  # PVE guest type -> PBS backup type
RESTORE_TASKS = {"qemu": "qmrestore", "lxc": "vzrestore"}
NET_KEY = re.compile(r"^net\d+$")


class StepFailed(Exception):
    def __init__(self, step: str, why: str):
        super().__init__(why)
        self.step, self.why = step, why


def isolated_nic(value: str) -> str:
    """A NIC's config without its MAC (PVE gives the copy a new one) and with its link down:
    ``virtio=BC:24:11:00:00:01,bridge=vmbr0`` -> ``virtio,bridge=vmbr0,link_down=1``."""
    parts = [p for p in str(value).split(",") if p and not p.startswith(("macaddr=", "link_down="))]
    if parts and "=" in parts[0] and ":" in parts[0].split("=", 1)[1]:
        parts[0] = parts[0].split("=", 1)[0]
    return ",".join([*parts, "link_down=1"])


def split_tags(value) -> set[str]:
    """PVE writes a guest's tags joined by ';' (the API also takes ',' and spaces)."""
    return {t for t in re.split(r"[;,\s]+", str(value or "")) if t}


def guest_key(kind: str, vmid: int) -> str:
    return f"{BACKUP_TYPES[kind]}/{vmid}"


def in_window(window: dict, now: datetime) -> bool:
    """Whether ``now`` (the host's local time) lies in [start, end); a window across midnight wraps."""
    start, end = (int(window[k][:2]) * 60 + int(window[k][3:]) for k in ("start", "end"))
    minute = now.hour * 60 + now.minute
    if start == end:
        return True
    return start <= minute < end if start < end else minute >= start or minute < end


@dataclass(frozen=True)
class Guest:
    vmid: int
    kind: str
    node: str
    tier: str
    interval: float

    @property
    def key(self) -> str:
        return guest_key(self.kind, self.vmid)

    @property
    def fingerprint(self) -> str:
        return f"restore-drill:{self.key}"


def selected_guests(drills: dict, resources: list[dict]) -> list[Guest]:
    """The guests the config names by VMID or tag, each with its tier (the first of its tags that has an
    interval) and interval; never one of the scratch range."""
    first, last = drills["vmidRange"]["first"], drills["vmidRange"]["last"]
    wanted, tags = set(drills.get("guests", [])), set(drills.get("tags", []))
    out = []
    for r in resources:
        if r.get("type") not in BACKUP_TYPES or not isinstance(r.get("vmid"), int) or first <= r["vmid"] <= last:
            continue
        guest_tags = split_tags(r.get("tags"))
        if r["vmid"] in wanted or guest_tags & tags:
            tier = next((t for t in sorted(guest_tags) if t in drills["intervals"]), "default")
            out.append(Guest(r["vmid"], r["type"], str(r.get("node")), tier, drills["intervals"][tier]))
    return sorted(out, key=lambda g: g.vmid)


def update_metrics(engine: Engine) -> None:
    """The drill gauges from the state file: the newest finished drill per guest, and its newest success."""
    m = engine.metrics
    newest: dict[tuple[str, str], dict] = {}
    passed: dict[tuple[str, str], dict] = {}
    for labels, outcome in engine.state.outcomes(RESTORE_DRILL, "outcome"):
        if outcome.get("result") not in ("ok", "failed"):
            continue  # dry runs, skips and interrupted drills prove nothing either way
        key = (labels.get("guest", ""), labels.get("tier", ""))
        newest[key] = outcome
        if outcome["result"] == "ok":
            passed[key] = outcome
    for key, outcome in newest.items():
        m.drill_last_run.labels(*key).set(outcome["started"])
        step = "none" if outcome["result"] == "ok" else outcome.get("step", "unknown")
        for stale in [s for s in m.drill_steps.get(key, set()) if s != step]:
            m.drill_result.remove(*key, stale)
        m.drill_steps[key] = {step}
        m.drill_result.labels(*key, step).set(1 if outcome["result"] == "ok" else 0)
    for key, outcome in passed.items():
        m.drill_last_success.labels(*key).set(outcome["finished"])
        m.drill_duration.labels(*key).set(outcome["rto"])


# ---------------------------------------------------------------------- the schedule
class Scheduler:
    """Queues one due drill at a time; at its first round it also queues the teardown of every scratch
    guest of ours no drill owns (what a crash left behind)."""

    def __init__(self, engine: Engine):
        self.e = engine
        self.swept = False

    def run(self) -> None:
        drills = self.e.cfg["restoreDrills"]
        while not self.e.stopping.is_set():
            try:
                self.tick(time.time())
            except ApiError as exc:
                self.e.metrics.api_errors.labels(exc.api, exc.kind).inc()
                log.error("restore drills: %s (the schedule tries again in %gs)", exc, drills["checkSeconds"])
            except Exception:  # a bug must not end the schedule
                log.exception("restore drills: the schedule failed")
            if self.e.stopping.wait(drills["checkSeconds"]):
                break

    def tick(self, now: float) -> None:
        e, drills = self.e, self.e.cfg["restoreDrills"]
        update_metrics(e)
        if e.mode(ACTION) == "off":
            return
        resources = e.clients.pve().resources()
        guests = selected_guests(drills, resources)
        for g in guests:
            e.metrics.drill_interval.labels(g.key, g.tier).set(g.interval)
        if not self.swept:
            self.sweep(resources)
            self.swept = True
        if e.state.open_occurrences(RESTORE_DRILL) or not in_window(drills["window"], datetime.fromtimestamp(now)):
            return
        latest = e.state.latest_by_fingerprint(RESTORE_DRILL)
        due = [g for g in guests if now - latest.get(g.fingerprint, 0) >= g.interval]
        if due:
            guest = min(due, key=lambda g: (latest.get(g.fingerprint, 0), g.vmid))  # the longest without a drill first
            self.queue(guest.fingerprint, now, {"guest": guest.key, "vmid": str(guest.vmid), "type": guest.kind,
                                                "node": guest.node, "tier": guest.tier})

    def queue(self, fingerprint: str, now: float, labels: dict) -> None:
        starts_at = datetime.fromtimestamp(now, timezone.utc).isoformat()
        occ = Occurrence(fingerprint, starts_at, "", RESTORE_DRILL, labels, {}, now)  # no alert: the schedule
        if self.e.state.add(occ):
            self.e.audit("queued", **self.e.who(occ), target=labels.get("guest") or f"vmid/{labels['vmid']}", action=ACTION,
                         why="scratch guest left behind: tear it down" if labels.get("cleanup") else
                         f"restore drill due (tier {labels['tier']})")
            self.e.wakeup.set()

    def sweep(self, resources: list[dict]) -> None:
        drills = self.e.cfg["restoreDrills"]
        owned = {int(o.context["scratch"]["vmid"]) for o in self.e.state.open_occurrences(RESTORE_DRILL) if "scratch" in o.context}
        for r in resources:
            vmid = r.get("vmid")
            if r.get("type") not in BACKUP_TYPES or not isinstance(vmid, int) or vmid in owned \
                    or not drills["vmidRange"]["first"] <= vmid <= drills["vmidRange"]["last"]:
                continue
            if drills["tag"] in split_tags(r.get("tags")) and r.get("pool") == drills["pool"]:
                self.queue(f"restore-drill-cleanup:{vmid}", time.time(),
                           {"cleanup": "1", "vmid": str(vmid), "type": r["type"], "node": str(r.get("node"))})
            else:
                warn_foreign(self.e, r)


def warn_foreign(engine: Engine, resource: dict) -> None:
    why = (f"VMID {resource['vmid']} lies in the scratch range but is not ours (tag {engine.cfg['restoreDrills']['tag']!r}, "
           f"pool {engine.cfg['restoreDrills']['pool']!r}): left alone; give the range to the drills or change it")
    log.warning("restore drills: %s", why)
    engine.audit("skip", target=f"vmid/{resource['vmid']}", action=ACTION, result="skipped", why=why)


# ---------------------------------------------------------------------- one drill
class RestoreDrill:
    def __init__(self, engine: Engine, occ: Occurrence):
        self.e, self.occ, self.ctx = engine, occ, occ.context
        self.d = engine.cfg["restoreDrills"]
        labels = occ.labels
        self.kind, self.vmid, self.node = labels["type"], int(labels["vmid"]), labels["node"]
        self.target = labels.get("guest") or f"vmid/{self.vmid}"
        self.tasks: list[tuple[str, str]] = [tuple(t) for t in self.ctx.get("tasks", [])]  # (step, upid)

    # --- plumbing
    def audit(self, decision: str, why: str, **extra) -> None:
        self.e.audit(decision, **self.e.who(self.occ), target=self.target, action=ACTION, why=why, **extra)

    def save(self, **values) -> None:
        self.ctx.update(values)
        self.e.state.save_context(self.occ)

    def reader(self) -> Pve:
        return self.e.clients.pve()

    def writer(self) -> Pve:
        return self.e.clients.pve(writer=True, token="drillTokenFile")

    def in_range(self, vmid: int) -> bool:
        return self.d["vmidRange"]["first"] <= vmid <= self.d["vmidRange"]["last"]

    def write(self, vmid: int, step: str, what: str, call):
        """Every state-changing call goes through here: only ever on a VMID of the scratch range."""
        if not self.in_range(vmid):
            raise StepFailed(step, f"refused: VMID {vmid} is outside the scratch range")
        self.audit("act", f"step {step}: {what}")
        return call()

    def task(self, step: str, upid: str) -> str:
        self.tasks.append((step, upid))
        self.save(tasks=self.tasks)
        if "attempt" in self.ctx:
            self.e.state.update_attempt(self.ctx["attempt"], state="running", upids=[u for _, u in self.tasks])
        return upid

    def wait_task(self, step: str, upid: str, deadline: float) -> None:
        pve = self.reader()
        while True:
            status = pve.task_status(self.node, upid)
            if status.get("status") == "stopped":
                if not task_succeeded(status.get("exitstatus")):
                    raise StepFailed(step, f"task {upid} ended {status.get('exitstatus')!r}")
                return
            if time.time() >= deadline:
                raise StepFailed(step, f"task {upid} still running at the drill's maximum duration "
                                       f"({self.d['maxDurationSeconds']:g}s)")
            self.e.sleep(self.e.cfg["pollSeconds"])

    def present(self, vmid: int) -> dict | None:
        return next((r for r in self.reader().resources() if r.get("vmid") == vmid and r.get("type") in BACKUP_TYPES), None)

    # --- the playbook
    def run(self) -> None:
        if "outcome" in self.ctx:
            return
        attempt = self.e.state.attempt_of(self.occ, "drill")
        if attempt is not None:
            return self.resume(attempt)
        if self.occ.labels.get("cleanup"):
            return self.cleanup()
        decision, why = self.e.guard(ACTION, self.target)
        if decision in ("skip", "exhausted"):
            self.e.metrics.actions.labels(ACTION, "skipped").inc()
            self.audit("skip", why, result="skipped")
            return self.save(outcome={"result": "skipped", "why": why})
        try:
            plan = self.plan()
        except StepFailed as failed:
            return self.finish(None, "failed", failed.step, failed.why, started=time.time())
        except ApiError as exc:
            self.e.metrics.api_errors.labels(exc.api, exc.kind).inc()
            return self.finish(None, "failed", "plan", str(exc), started=time.time())
        if decision == "dry-run":
            self.e.metrics.actions.labels(ACTION, "dry-run").inc()
            self.audit("dry-run", "would " + plan["text"], result="dry-run")
            return self.save(outcome={"result": "dry-run", "why": plan["text"]})
        with self.e.nodes_locked(self.occ, [f"pve:{plan['node']}"]):
            self.no_backup_running(plan["node"])
            self.save(scratch=plan)  # before the attempt and the restore: a restart knows which VMID may be ours
            attempt_id = self.e.state.start_attempt(self.occ, "drill", ACTION, self.target, f"pve:{plan['node']}", time.time())
            self.save(attempt=attempt_id)
            self.drill(attempt_id, plan)

    def plan(self) -> dict:
        """Which snapshot into which VMID on which storage: GETs only."""
        d, pve = self.d, self.reader()
        storage = pve.storage(d["pbsStorage"])
        store, ns = storage.get("datastore"), storage.get("namespace", "")
        if storage.get("type") != "pbs" or not store:
            raise StepFailed("plan", f"storage {d['pbsStorage']} is not a PBS storage of PVE")
        btype = BACKUP_TYPES[self.kind]
        snapshots = self.e.clients.pbs().snapshots(store, btype, str(self.vmid), ns)
        snapshots = [s for s in snapshots if isinstance(s.get("backup-time"), int)]
        if not snapshots:
            raise StepFailed("snapshot", f"no snapshot of {btype}/{self.vmid} on datastore {store}"
                                         + (f" namespace {ns}" if ns else ""))
        newest = max(snapshots, key=lambda s: s["backup-time"])
        stamp = datetime.fromtimestamp(newest["backup-time"], timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        volid = f"{d['pbsStorage']}:backup/{btype}/{self.vmid}/{stamp}"  # pve-storage PBSPlugin print_volid
        node = d.get("node") or self.node
        resources = pve.resources()
        taken = {r["vmid"]: r for r in resources if isinstance(r.get("vmid"), int)}
        for vmid in sorted(v for v in taken if self.in_range(v)):
            r = taken[vmid]
            if not (d["tag"] in split_tags(r.get("tags")) and r.get("pool") == d["pool"]):
                warn_foreign(self.e, r)
        scratch = next((v for v in range(d["vmidRange"]["first"], d["vmidRange"]["last"] + 1) if v not in taken), None)
        if scratch is None:
            raise StepFailed("vmid", f"no free VMID in the scratch range {d['vmidRange']['first']}-{d['vmidRange']['last']}")
        size = newest.get("size") or sum(f.get("size", 0) for f in newest.get("files", []) if isinstance(f, dict))
        status = pve.storage_status(node, d["storage"])
        needed = size * d["storageHeadroom"]
        if not isinstance(status.get("avail"), (int, float)) or status["avail"] < needed:
            raise StepFailed("storage", f"scratch storage {d['storage']} on {node} has {status.get('avail')} bytes free, "
                                        f"the snapshot needs {size} x {d['storageHeadroom']:g} = {needed:.0f}: refused")
        live = self.kind == "qemu" and self.vmid in d.get("liveRestore", [])
        if live:  # started before it is restored: isolated from the first moment, by the NICs it has now
            config = pve.guest_config(self.node, "qemu", self.vmid)
            params = {"vmid": scratch, "archive": volid, "unique": 1, "live-restore": 1,
                      **{k: isolated_nic(v) for k, v in config.items() if NET_KEY.match(k)}}
        elif self.kind == "qemu":
            params = {"vmid": scratch, "archive": volid, "unique": 1}
        else:
            params = {"vmid": scratch, "ostemplate": volid, "restore": 1, "unique": 1}
        params.update(storage=d["storage"], pool=d["pool"], tags=d["tag"])
        text = (f"{'live-' if live else ''}restore {volid} ({size} bytes) of {self.target} into VMID {scratch} on {node} "
                f"(storage {d['storage']}, pool {d['pool']}), isolate, start, wait until up, destroy")
        return {"node": node, "vmid": scratch, "kind": self.kind, "volid": volid, "size": size, "params": params,
                "text": text, "snapshot": newest["backup-time"], "live": live}

    def no_backup_running(self, node: str) -> None:
        running = self.reader().active_vzdumps(node)
        if running:
            raise Deferred(f"a backup runs on {node} ({running[0].get('upid')}): the drill waits")

    def drill(self, attempt_id: int, plan: dict) -> None:
        node, vmid, kind = plan["node"], plan["vmid"], plan["kind"]
        self.node = node
        started = time.time()
        deadline = started + self.d["maxDurationSeconds"]
        step, rto, how = "restore", None, ""
        try:
            self.save(step=step)
            upid = self.write(vmid, step, f"POST /nodes/{node}/{kind} {plan['volid']} -> VMID {vmid}",
                              lambda: self.start_restore(plan, started))
            restore = self.task(step, upid)
            if plan["live"]:  # PVE starts it at once and streams the rest: isolated or stopped at once
                step = "isolate"
                self.save(step=step)
                self.wait_configured(vmid, step, deadline)
                self.isolate(vmid, step, change=False)
            else:
                self.wait_task(step, restore, deadline)
                step = "isolate"
                self.save(step=step)
                self.isolate(vmid, step)
                step = "start"
                self.save(step=step)
                upid = self.task(step, self.write(vmid, step, "start", lambda: self.writer().power(node, kind, vmid, "start")))
                self.wait_task(step, upid, deadline)
            step = "agent" if kind == "qemu" else "running"
            self.save(step=step)
            how = self.wait_up(vmid, step, deadline)
            rto = time.time() - started
            if plan["live"]:
                step = "restore"
                self.save(step=step)
                self.wait_task(step, restore, deadline)  # up is not enough: every byte must come back
                how += "; live-restore, the rest restored in the background"
            result, why = "ok", f"up {rto:.1f}s after the restore started ({how})"
        except StepFailed as failed:
            result, step, why = "failed", failed.step, failed.why
        except ApiError as exc:
            self.e.metrics.api_errors.labels(exc.api, exc.kind).inc()
            result, why = "failed", str(exc)
        problem = self.teardown(vmid, kind, node)
        if problem:
            step = "destroy" if result == "ok" else step
            result, why = "failed", f"{why}; teardown: {problem}" if result == "failed" else f"teardown: {problem}"
        self.finish(attempt_id, result, step, why, started=started, rto=rto)

    def start_restore(self, plan: dict, started: float) -> str:
        try:
            return self.writer().restore(plan["node"], plan["kind"], plan["params"])
        except ApiError as exc:
            if not exc.lost:
                raise
            upid = self.own_restore_task(plan["node"], plan["vmid"], started)  # the answer was lost, not the request
            if upid is None:
                raise
            return upid

    def own_restore_task(self, node: str, vmid: int, since: float) -> str | None:
        """Our restore task of this VMID since a time: what proves that a guest still being restored is ours."""
        auth_id = self.e.clients.secret("pve", self.e.cfg["pve"]["drillTokenFile"]).split("=", 1)[0]
        tasks = self.reader().guest_tasks(node, vmid, int(since) - 5)
        return next((t["upid"] for t in tasks if t.get("type") == RESTORE_TASKS[self.kind] and str(t.get("id")) == str(vmid)
                     and started_by(t, auth_id)), None)

    def wait_configured(self, vmid: int, step: str, deadline: float) -> None:
        """A live-restore writes the guest's config before it starts it: wait for it (our tag in it)."""
        while self.d["tag"] not in split_tags(self.reader().guest_config(self.node, "qemu", vmid).get("tags")):
            if time.time() >= deadline:
                raise StepFailed(step, f"the live-restored guest {vmid} got no config within the maximum duration")
            self.e.sleep(self.e.cfg["pollSeconds"])

    def isolate(self, vmid: int, step: str, change: bool = True) -> None:
        """Every NIC link_down=1, then read back: a restored guest never reaches the network its original is on."""
        kind, pve = self.ctx["scratch"]["kind"], self.reader()
        config = pve.guest_config(self.node, kind, vmid)
        if self.d["tag"] not in split_tags(config.get("tags")):
            raise StepFailed(step, f"the restored guest {vmid} is not tagged {self.d['tag']!r}: refusing to touch it further")
        changes = {k: f"{v},link_down=1" for k, v in config.items() if NET_KEY.match(k) and "link_down=1" not in str(v).split(",")}
        if changes and change:
            self.write(vmid, step, f"PUT config {', '.join(sorted(changes))} link_down=1",
                       lambda: self.writer().set_config(self.node, kind, vmid, changes))
        config = pve.guest_config(self.node, kind, vmid)
        up = sorted(k for k, v in config.items() if NET_KEY.match(k) and "link_down=1" not in str(v).split(","))
        if up:
            raise StepFailed(step, f"NIC(s) {', '.join(up)} of the restored guest have their link up: not going on with it")

    def wait_up(self, vmid: int, step: str, deadline: float) -> str:
        kind, pve = self.ctx["scratch"]["kind"], self.reader()
        until = min(deadline, time.time() + self.d["agentTimeoutSeconds"])
        if kind == "qemu" and not pve.guest_config(self.node, kind, vmid).get("agent"):
            kind = "no-agent"
        last = ""
        while True:
            try:
                if kind == "qemu":
                    self.writer().agent_ping(self.node, vmid)
                    return "the QEMU guest agent answered agent/ping"
                status = pve.guest_status(self.node, self.ctx["scratch"]["kind"], vmid).get("status")
                if status == "running":
                    return "running" + ("; no QEMU guest agent configured, so not proven booted" if kind == "no-agent" else "")
                last = f"status {status!r}"
            except ApiError as exc:
                last = str(exc)
            if time.time() >= until:
                what = "no answer from the QEMU guest agent" if kind == "qemu" else "not running"
                raise StepFailed(step, f"{what} within {self.d['agentTimeoutSeconds']:g}s: {last}")
            self.e.sleep(self.e.cfg["pollSeconds"])

    def ours(self, vmid: int, resource: dict, since: float) -> bool:
        if self.d["tag"] in split_tags(resource.get("tags")) and resource.get("pool") == self.d["pool"]:
            return True
        restores = [u for s, u in self.tasks if s == "restore"]
        return bool(restores) or self.own_restore_task(self.node, vmid, since) is not None

    def teardown(self, vmid: int, kind: str, node: str, since: float | None = None) -> str | None:
        """Stops and destroys the scratch guest once its tasks ended; None when it is gone, else what is wrong."""
        self.node = node
        deadline = time.time() + self.e.cfg["verifyTimeoutSeconds"]
        try:
            resource = self.present(vmid)
            if resource is None:
                self.audit("report", f"step destroy: VMID {vmid} is gone", result="ok")
                return None
            if not self.in_range(vmid) or not self.ours(vmid, resource, since or time.time()):
                warn_foreign(self.e, resource)
                return f"VMID {vmid} is not provably ours: left alone"
            pve = self.reader()
            for _, upid in self.tasks:  # a guest is locked while its restore runs: a drill that ends stops it
                if pve.task_status(node, upid).get("status") != "stopped":
                    self.write(vmid, "destroy", f"stop task {upid}", lambda u=upid: self.writer().stop_task(node, u))
                    self.wait_stopped(upid, deadline)
            if pve.guest_status(node, kind, vmid).get("status") == "running":
                upid = self.task("stop", self.write(vmid, "stop", "stop", lambda: self.writer().power(node, kind, vmid, "stop")))
                self.wait_task("stop", upid, deadline)
            upid = self.task("destroy", self.write(vmid, "destroy", "DELETE purge=1 destroy-unreferenced-disks=1",
                                                   lambda: self.writer().destroy(node, kind, vmid)))
            self.wait_task("destroy", upid, deadline)
            if self.present(vmid) is not None:
                return f"VMID {vmid} is still there after its destroy task ended"
            self.audit("report", f"step destroy: VMID {vmid} destroyed", result="ok", upid=upid)
            return None
        except StepFailed as failed:
            return f"{failed.step}: {failed.why}"
        except ApiError as exc:
            self.e.metrics.api_errors.labels(exc.api, exc.kind).inc()
            return str(exc)

    def wait_stopped(self, upid: str, deadline: float) -> None:
        while self.reader().task_status(self.node, upid).get("status") != "stopped":
            if time.time() >= deadline:
                raise StepFailed("destroy", f"task {upid} did not stop")
            self.e.sleep(self.e.cfg["pollSeconds"])

    def resume(self, attempt) -> None:
        """The service stopped mid-drill: the drill is not continued, its scratch guest is torn down."""
        scratch = self.ctx.get("scratch")
        if attempt.state == "done":
            return self.save(outcome={"result": attempt.result, "why": attempt.detail})
        with self.e.nodes_locked(self.occ, [f"pve:{scratch['node']}"]):
            if not any(step == "restore" for step, _ in self.tasks):  # stopped before the restore's answer was kept
                try:
                    upid = self.own_restore_task(scratch["node"], scratch["vmid"], attempt.started_at)
                except ApiError as exc:
                    upid = None
                    log.error("restore drills: looking up the restore task of VMID %s: %s", scratch["vmid"], exc)
                if upid:
                    self.task("restore", upid)
            problem = self.teardown(scratch["vmid"], scratch["kind"], scratch["node"], since=attempt.started_at)
        why = f"interrupted at step {self.ctx.get('step', 'restore')} by a restart of the service; scratch guest " + (
            f"not torn down: {problem}" if problem else "torn down")
        self.finish(attempt.id, "failed" if problem else "unknown", "destroy" if problem else self.ctx.get("step", "restore"),
                    why, started=attempt.started_at)

    def cleanup(self) -> None:
        mode = self.e.mode(ACTION)
        if mode != "enforce":
            why = "kill switch engaged" if self.e.kill_switch() else f"mode {mode}"
            self.audit("dry-run" if mode == "dry-run" else "skip", f"would tear down scratch guest {self.vmid} ({why})",
                       result="dry-run" if mode == "dry-run" else "skipped")
            return self.save(outcome={"result": "skipped", "why": why})
        with self.e.nodes_locked(self.occ, [f"pve:{self.node}"]):
            problem = self.teardown(self.vmid, self.kind, self.node)
        self.audit("verify", f"scratch guest {self.vmid} left behind: " + (problem or "torn down"),
                   result="failed" if problem else "ok")
        self.save(outcome={"result": "failed" if problem else "ok", "why": problem or "torn down"})

    # --- evidence
    def finish(self, attempt_id: int | None, result: str, step: str, why: str, *, started: float, rto: float | None = None) -> None:
        now = time.time()
        if attempt_id is not None:
            self.e.state.update_attempt(attempt_id, state="done", result=result, detail=f"step {step}: {why}", finished_at=now)
        self.e.metrics.actions.labels(ACTION, result).inc()
        logs = self.task_logs()
        self.audit("verify", f"restore drill {result} at step {step}: {why}" if result != "ok" else f"restore drill passed: {why}",
                   result=result, upid=",".join(u for _, u in self.tasks))
        self.save(outcome={"result": result, "step": step, "why": why, "started": started, "finished": now, "rto": rto})
        update_metrics(self.e)
        if result == "ok":
            return
        # the failed step's task, else the last one before the teardown (the start, for a guest that never came up)
        failed = [lines for s, _, lines in logs if s == step] or [lines for s, _, lines in logs if s not in ("stop", "destroy")][-1:]
        text = [f"**Restore drill of {self.target} failed** at step `{step}`: {why}"]
        if failed:
            text += ["Task log (last lines):", "```\n" + "\n".join(failed[-1]).replace("```", "'''") + "\n```"]
        self.e.post(self.occ, "\n".join(text))

    def task_logs(self) -> list[tuple[str, str, list[str]]]:
        """Each task's last lines, kept in the audit beside the drill's steps."""
        out = []
        for step, upid in self.tasks:
            try:
                lines = self.reader().task_log_tail(self.node, upid, self.e.cfg["logLines"])
            except ApiError as exc:
                lines = [f"(log unavailable: {exc})"]
            self.e.audit("report", **self.e.who(self.occ), target=self.target, action=ACTION, upid=upid,
                         why=f"task log of step {step}:\n" + "\n".join(lines))
            out.append((step, upid, lines))
        return out


def restore_drill(engine: Engine, occ: Occurrence) -> None:
    RestoreDrill(engine, occ).run()
