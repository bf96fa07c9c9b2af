"""The recovery service in the drill's loop: the real process, with the stack's rendered config.

For a scenario with `recovery` (tools/drill/scenarios.py RecoveryInTheLoop), the drill runs
`python -m recovery serve` with build/<stack>/recovery/recovery.yml changed as the drill changes
everything else: its durations divided by the time-scale factor, its endpoints re-pointed at
local stand-ins on 127.0.0.1 (the fake PVE and PBS APIs of the tests, the drill's Prometheus, the
capture server for the backup room and for PagerDuty), its secrets replaced by files the fakes
accept. Alertmanager's recovery receiver is re-pointed at the service (through a proxy that can
deliver each request several times), and Prometheus scrapes the service's /metrics (through a
proxy that is down with the service). What the service does comes back into the scenario: each
vzdump re-run, when it ends, becomes a run of the job in the PBS exporter's series, so its
success resolves the alert and its failure is the retry that failed too.

Besides the notifications, the loop judges the service: the actions it must record, in order,
the re-runs PVE received, what it posted to the backup room, and that every note it sent to
PagerDuty landed on an incident Alertmanager opened (one incident, one page).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import yaml

from model.recovery import RECEIVER
from contracts import recovery as catalog
from contracts.fallback import inventory
from contracts.metrics import SCRAPE_JOB
from tests.fake_pbs import TOKEN as PBS_READ_TOKEN
from tests.fake_pbs import FakePBS
from tests.fake_pve import BACKUP_TOKEN, DRILL_TOKEN, FALLBACK_TOKEN, READ_TOKEN, FakePVE
from tools.drill import durations
from tools.drill.deployed_config import DeployedConfig, DrillAlertmanagerConfig, DrillConfigError, Endpoint, TimeScale
from tools.drill.processes import ManagedProcess, ProcessSupervisor, free_port, wait_ready
from tools.drill.scenarios import Run, Scenario, backup_job, pbs_labels
from tools.drill.servers import ScenarioClock, SyntheticExporter, _QuietHandler, _Served
from tools.drill.verdict import Captured, Notification

ROOT = Path(__file__).resolve().parents[2]
CHAT = Endpoint("recovery-service-chat", "slack", 0)  # what the service posts to the rooms
NOTES = Endpoint("recovery-service-notes", "pagerduty", 0)  # its Events API v2 notes on incidents
PVE_NODE, PVE_STORAGE, PVE_JOB, DATASTORE = "pve1", "pbs-homelab", "backup-nightly", "homelab"
# Durations of the service's config that are scenario time; timeoutSeconds of the fallback is not
# (ansible-playbook runs in wall time), requestTimeoutSeconds neither (an HTTP timeout on 127.0.0.1).
SCALED = ("pollSeconds", "verifyTimeoutSeconds", "deferSeconds")
DRILL_SCALED = ("checkSeconds", "maxDurationSeconds", "agentTimeoutSeconds")
SCRATCH_STORAGE_BYTES = 2**40
MIN_SECONDS = 0.05
RESULTS = {"ok": "ok", "failed": "failed", "unknown": "failed", "skipped": "skipped", "dry-run": "dry-run"}


def automation_receivers() -> set[str]:
    """Receivers that are no person: the drill judges the service's deliveries here, not as notifications."""
    return {RECEIVER, CHAT.receiver, NOTES.receiver}


@dataclass
class RecoveryRun:
    """What the service did in one scenario, and what the loop found wrong with it."""

    actions: list[dict] = field(default_factory=list)  # {"action", "target", "result", "at_s", "why"}
    reruns: list[Run] = field(default_factory=list)  # the vzdump re-runs, as runs of the job
    deliveries: int = 0  # webhook requests Alertmanager made to the service
    chat: list[str] = field(default_factory=list)
    notes: list[dict] = field(default_factory=list)  # PagerDuty events the service sent
    failures: list[str] = field(default_factory=list)

    def first_fix_s(self, failed_at: float) -> float | None:
        """Scenario seconds from the job's failure to the end of the first successful re-run."""
        ok = [r for r in self.reruns if r.ok]
        return ok[0].end - failed_at if ok else None


class DrillPVE(FakePVE):
    """The tests' fake PVE, telling the loop when a vzdump re-run to the PBS storage starts and ends."""

    def __init__(self, loop: "RecoveryLoop"):
        super().__init__(nodes=(PVE_NODE, "pve2"))
        self.loop = loop
        self.started: dict[str, float] = {}

    def vzdump(self, node: str, params: dict, rights: set, user: str):
        upid = super().vzdump(node, params, rights, user)
        if upid != "OK":
            self.started[upid] = self.loop.clock.now()
        return upid

    def finish(self, upid: str, status: str = "OK", end: float | None = None):
        super().finish(upid, status, end)
        if upid in self.started and self.storages.get(self.tasks[upid].get("storage"), {}).get("type") == "pbs":
            self.loop.backup_ran(upid, self.started[upid], self.loop.clock.now(), status)


class _MetricsProxyHandler(_QuietHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        loop: RecoveryLoop = self.server.owner.loop  # type: ignore[attr-defined]
        try:
            with urllib.request.urlopen(f"{loop.service_url}/metrics", timeout=loop.scale.scrape_timeout_s) as answer:
                self.reply(200, answer.read(), answer.headers.get("Content-Type", "text/plain"))
        except OSError:
            self.close_connection = True  # the service is down: so is its target
            self.connection.close()


class _WebhookProxyHandler(_QuietHandler):
    def do_POST(self) -> None:  # noqa: N802
        loop: RecoveryLoop = self.server.owner.loop  # type: ignore[attr-defined]
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("authorization", "content-type")}
        loop.result.deliveries += 1
        status, answer = 502, b"drill: the recovery service does not answer"
        for copy_index in range(loop.spec.deliveries):
            request = urllib.request.Request(f"{loop.service_url}/webhook", data=body, headers=headers, method="POST")
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    reply = response.status, response.read()
            except urllib.error.HTTPError as exc:
                reply = exc.code, exc.read()
            except OSError:
                continue
            if copy_index == 0:
                status, answer = reply
        self.reply(status, answer, "application/json")


class _Proxy(_Served):
    def __init__(self, loop: "RecoveryLoop", handler: type[BaseHTTPRequestHandler]):
        self.loop = loop
        super().__init__(handler)


class RecoveryLoop:
    def __init__(self, scenario: Scenario, config: DeployedConfig, clock: ScenarioClock, scale: TimeScale, work: Path):
        assert scenario.recovery is not None
        self.scenario, self.spec, self.clock, self.scale = scenario, scenario.recovery, clock, scale
        self.work = work / "recovery"
        self.work.mkdir(parents=True)
        rendered = config.root / "recovery" / "recovery.yml"
        if not rendered.exists():
            raise DrillConfigError(f"scenario {scenario.name} runs the recovery service, but {rendered} is not rendered "
                                   "(no `recovery` section in the stack config?)")
        self.rendered = yaml.safe_load(rendered.read_text())
        self.rendered_dir = rendered.parent
        self.port = free_port()
        self.service_url = f"http://127.0.0.1:{self.port}"
        self.result = RecoveryRun()
        self.lock = threading.Lock()
        self.pbs = FakePBS(node="localhost")
        self.pve = DrillPVE(self)
        self.metrics_proxy = _Proxy(self, _MetricsProxyHandler)
        self.webhook_proxy = _Proxy(self, _WebhookProxyHandler)
        self.exporter: SyntheticExporter | None = None
        self.process: ManagedProcess | None = None
        self.stopped = threading.Event()

    # --- wiring, before anything starts
    def adopt_exporters(self, exporters: dict[tuple[str, str], Any]) -> None:
        """Prometheus scrapes the service (through the metrics proxy), and the PBS exporter's series of
        the job follow its re-runs."""
        targets = [key for key in exporters if key[0] == SCRAPE_JOB]
        if len(targets) != 1:
            raise DrillConfigError(f"the rendered scrape configs have {len(targets)} target(s) of job {SCRAPE_JOB!r}; "
                                   "the drill needs the service's one")
        exporters[targets[0]].server.server_close()
        exporters[targets[0]] = self.metrics_proxy
        job_label = dict(pbs_labels(self.spec.job_id))
        self.exporter = next(e for e in exporters.values() if isinstance(e, SyntheticExporter)
                             and any(dict(s.labels).get("job_id") == job_label["job_id"] for s in e.series))

    def wire(self, am: DrillAlertmanagerConfig, capture_endpoints: dict[str, Endpoint]) -> None:
        """Alertmanager's recovery receiver to the service; the service's posts and notes to the capture server."""
        receiver = next((r for r in am.doc["receivers"] if r["name"] == RECEIVER), None)
        if receiver is None:
            raise DrillConfigError(f"alertmanager.yml has no receiver {RECEIVER!r}: the routing table does not notify the service")
        hook = receiver["webhook_configs"][0]
        hook["url"] = f"http://{self.webhook_proxy.address}/webhook"
        self.token = am.secret_files[Path(hook["http_config"]["authorization"]["credentials_file"])]
        capture_endpoints.update({CHAT.path: CHAT, NOTES.path: NOTES})

    def service_config(self, capture_url: str, prometheus_url: str) -> dict:
        doc = copy.deepcopy(self.rendered)
        secret = self._secret
        doc.update(listen=f"127.0.0.1:{self.port}", webhookTokenFile=secret("webhook-token", self.token),
                   stateFile=str(self.work / "state.sqlite3"), auditLog=str(self.work / "audit.jsonl"),
                   killSwitchFile=str(self.work / "disabled"), requestTimeoutSeconds=2)
        for key in SCALED:
            doc[key] = max(float(doc.get(key, {"pollSeconds": 10, "verifyTimeoutSeconds": 21600, "deferSeconds": 60}[key]))
                           / self.scale.factor, MIN_SECONDS)
        for settings in doc["actions"].values():
            for key in ("cooldownSeconds", "windowSeconds"):
                if key in settings:
                    settings[key] = settings[key] / self.scale.factor if settings[key] else 0
            settings.setdefault("windowSeconds", 86400 / self.scale.factor)
        pbs = doc["pbs"]
        pbs.pop("caFile", None)
        pbs.update(url=self.pbs.url, readTokenFile=secret("pbs-read-token", PBS_READ_TOKEN))
        pbs["tokenFiles"] = {kind: secret(f"pbs-{kind}-token", f"recovery@pbs!{kind}:{kind}-drill") for kind in pbs.get("tokenFiles", {})}
        self.pbs.tokens = {f"recovery@pbs!{kind}:{kind}-drill": f"recovery@pbs!{kind}" for kind in pbs["tokenFiles"]}
        pve = doc["pve"]
        pve.pop("caFile", None)
        pve.update(url=self.pve.url, readTokenFile=secret("pve-read-token", READ_TOKEN))
        if "backupTokenFile" in pve:
            pve["backupTokenFile"] = secret("pve-backup-token", BACKUP_TOKEN)
        if "fallback" in doc:
            token = secret("pve-fallback-token", FALLBACK_TOKEN)
            rendered = yaml.safe_load((self.rendered_dir / "fallback-inventory.yml").read_text())
            host = rendered["pve_api"]["hosts"]["pve-api"]
            inv = inventory(pve_url=self.pve.url, token_file=token, verify_tls=False, storage=host["nas_storage"],
                            nas_server=host["nas_server"], nas_export=host["nas_export"], poll_seconds=1)
            inv_path = self.work / "fallback-inventory.yml"
            inv_path.write_text(yaml.safe_dump(inv, sort_keys=False))
            doc["fallback"] = {"playbook": str(ROOT / "playbooks" / "backup-fallback.yml"), "inventory": str(inv_path),
                               "ansiblePlaybook": str(Path(sys.executable).parent / "ansible-playbook"),
                               "resultDir": str(self.work / "fallback"), "timeoutSeconds": 300}
        drills = doc.get("restoreDrills")
        if drills:
            pve["drillTokenFile"] = secret("pve-drill-token", DRILL_TOKEN)
            defaults = {"checkSeconds": 60, "maxDurationSeconds": 7200, "agentTimeoutSeconds": 600}
            for key in DRILL_SCALED:
                drills[key] = max(float(drills.get(key, defaults[key])) / self.scale.factor, MIN_SECONDS)
            drills["intervals"] = {tier: seconds / self.scale.factor for tier, seconds in drills["intervals"].items()}
            drills["window"] = {"start": "00:00", "end": "00:00"}  # the drill's clock is not the site's day
            drills.pop("node", None)
        # No TrueNAS in these scenarios: its action is off; the compactor report reads the drill's Prometheus.
        doc.pop("truenas", None)
        doc["actions"][catalog.NAS_SNAPSHOT_PRUNE] = {"mode": "off"}
        if "prometheus" in doc:
            doc["prometheus"] = {"url": prometheus_url}
        if "mattermost" in doc:
            doc["mattermost"]["webhookUrlFile"] = secret("mattermost-webhook-url", capture_url + CHAT.path)
        if "pagerduty" in doc:
            doc["pagerduty"].update(url=capture_url + NOTES.path, routingKeyFile=secret("pagerduty-routing-key", "drill-key"))
        return doc

    def _secret(self, name: str, value: str) -> str:
        path = self.work / "secrets" / name
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_text(value + "\n")
        path.chmod(0o600)
        return str(path)

    # --- the world the service acts on
    def _stage(self) -> None:
        """PBS and PVE as they stand after the nightly failure (scripted in the scenario's runs)."""
        epoch = self.clock.epoch_of
        guest = int(self.spec.job_id.split("/")[1])
        self.pbs.add_datastore(DATASTORE, 8 * 2**40, 2**40)
        self.pve.add_guest(guest, PVE_NODE)
        self.pve.add_guest(guest + 1, PVE_NODE)
        self.pve.add_pbs_storage(PVE_STORAGE, DATASTORE)
        drills = self.rendered.get("restoreDrills")
        if drills:  # the scratch storage and range of the stack's drills; the fake fails any write outside the range
            self.pve.add_storage(drills["storage"], PVE_NODE, SCRATCH_STORAGE_BYTES, SCRATCH_STORAGE_BYTES // 2)
            self.pve.scratch = (drills["vmidRange"]["first"], drills["vmidRange"]["last"])
        if self.spec.restore_drill:
            self._stage_drill(self.spec.restore_drill)
        failed = next((r for r in self.spec.runs if not r.ok), None)
        if failed is None:
            return
        upid = self.pbs.add_task("backup", f"{DATASTORE}:{self.spec.job_id}", epoch(failed.start), epoch(failed.end),
                                 "backup failed: connection reset by peer")
        self.pbs.logs[upid] = [f"starting backup {self.spec.job_id}", "TASK ERROR: backup failed: connection reset by peer"]
        covered = guest if self.spec.pve_job_covers_guest else guest + 1  # the job lost the guest: nothing to re-run
        self.pve.add_job(PVE_JOB, storage=PVE_STORAGE, vmid=str(covered), comment="nightly to PBS")
        self.pve.add_task(PVE_NODE, "vzdump", str(guest), "root@pam", epoch(failed.start), epoch(failed.end), "job errors",
                          lines=[f"INFO: starting new backup job: vzdump {guest} --storage {PVE_STORAGE}",
                                 f"ERROR: Backup of VM {guest} failed - connection reset by peer", "TASK ERROR: job errors"])
        wall = self.scale.wall
        outcomes = [(status, wall(seconds)) for status, seconds in self.spec.reruns]
        if self.spec.fallback:
            outcomes.insert(1, (self.spec.fallback[0], wall(self.spec.fallback[1])))
        self.pve.vzdump_outcomes[PVE_NODE] = outcomes

    def _stage_drill(self, play) -> None:
        """The guest the stack's drills will select (tagged at t = 0, so that its drill runs in the scenario, not
        while Prometheus warms up), with last night's snapshot on PBS, and the fault the drill meets."""
        self.pbs.add_snapshot(DATASTORE, "vm", str(play.vmid), self.clock.epoch_of(-3600 * 20))
        if play.fails_at_step == "agent":
            self.pve.agent_delay = None
        elif play.fails_at_step == "restore":
            self.pve.restore_outcomes = [("command '/usr/bin/pbs-restore' failed: exit code 255", 0.2)]
        else:
            raise DrillConfigError(f"a restore drill cannot be made to fail at step {play.fails_at_step!r}")

    def _tag_at_zero(self, play) -> None:
        while self.clock.now() < 0 and not self.stopped.wait(0.05):
            pass
        with self.pve.lock:
            self.pve.guests[play.vmid]["tags"] = play.tags

    def backup_ran(self, upid: str, start: float, end: float, status: str) -> None:
        """A re-run ended: PBS has its backup task, and the exporter's series of the job gain the run."""
        ok = status == "OK" or status.startswith("WARNINGS")
        epoch = self.clock.epoch_of
        self.pbs.add_task("backup", f"{DATASTORE}:{self.spec.job_id}", epoch(start), epoch(end),
                          "OK" if ok else "backup failed: connection reset by peer")
        with self.lock:
            self.result.reruns.append(Run(start, end, ok))
            runs = tuple(sorted((*self.spec.runs, *self.result.reruns), key=lambda r: r.end))
        assert self.exporter is not None
        target = self.exporter.target
        played = {s.key: s for s in (dataclasses.replace(s, target=target)
                                     for s in backup_job(runs, pbs_labels(self.spec.job_id)))}
        self.exporter.series = [played.get(s.key, s) for s in self.exporter.series]

    # --- running
    def start(self, supervisor: ProcessSupervisor, capture_url: str, prometheus_url: str) -> None:
        self._stage()
        self.pbs.start()
        self.pve.start()
        self.webhook_proxy.start()  # the metrics proxy is one of the drill's exporters: started with them
        config = self.work / "recovery.yml"
        config.write_text(yaml.safe_dump(self.service_config(capture_url, prometheus_url), sort_keys=False))
        if self.spec.restore_drill:
            threading.Thread(target=self._tag_at_zero, args=(self.spec.restore_drill,), daemon=True).start()
        if self.spec.service_up:
            self.process = supervisor.start(ManagedProcess(
                "recovery", [sys.executable, "-m", "services.recovery", "serve", "--config", str(config)], self.work / "service.log"))
            wait_ready(self.process, f"{self.service_url}/healthz")

    def stop(self) -> None:
        self.stopped.set()
        if self.process:
            self.process.stop()
        if self.webhook_proxy.thread.is_alive():
            self.webhook_proxy.stop()
        self.pbs.stop()
        self.pve.stop()

    # --- judging
    def expected(self, scenario: Scenario) -> Scenario:
        """The scenario with the expectations that follow from the re-runs that happened (the planned ones
        when some never ran: judge() says so, and the notifications are judged against the plan)."""
        reruns = tuple(self.result.reruns)
        if len(reruns) < len(self.spec.reruns):
            reruns = self.spec.planned_reruns()
        if self.spec.restore_drill:
            acted = next((self._at(e["ts"]) for e in self._audit() if e["decision"] == "verify" and e["result"] == "failed"
                          and e["why"].startswith("restore drill")), None)
        else:
            acted = next((self._at(e["ts"]) for e in self._audit() if e["decision"] == "escalate"), None)
        return dataclasses.replace(scenario, expected=(*scenario.expected, *self.spec.expect(reruns, acted)))

    def _audit(self) -> list[dict]:
        audit = self.work / "audit.jsonl"
        return [json.loads(line) for line in audit.read_text().splitlines()] if audit.exists() else []

    def _at(self, epoch: float) -> float:
        return round(self.scale.real(epoch - self.clock.origin_epoch), 1)

    def judge(self, captured: list[Captured], notifications: list[Notification]) -> RecoveryRun:
        result = self.result
        for entry in self._audit():
            if entry["action"] and entry["result"] in RESULTS and entry["decision"] in ("verify", "dry-run", "skip"):
                result.actions.append({"action": entry["action"], "target": entry["target"], "result": RESULTS[entry["result"]],
                                       "at_s": self._at(entry["ts"]), "why": entry["why"]})
        result.chat = [str((c.body or {}).get("text", "")) for c in captured if c.receiver == CHAT.receiver]
        result.notes = [c.body for c in captured if c.receiver == NOTES.receiver and isinstance(c.body, dict)]
        got = [(a["action"], a["result"]) for a in result.actions]
        if got != list(self.spec.actions):
            result.failures.append(f"recovery actions: {got or 'none'}, expected {list(self.spec.actions) or 'none'}")
        started = len([p for p in self.pve.vzdump_posts if p[1].get("storage") == PVE_STORAGE])
        if started != len(self.spec.reruns):
            result.failures.append(f"PVE received {started} re-run(s) of the backup job, expected {len(self.spec.reruns)}")
        if self.spec.restore_drill:
            restores = len(self.pve.restores)
            if restores != 1:
                result.failures.append(f"PVE received {restores} restore(s) of the drilled guest, expected 1")
            left = sorted(v for v in self.pve.guests if self.pve.scratch and self.pve.scratch[0] <= v <= self.pve.scratch[1])
            if left:
                result.failures.append(f"scratch guest(s) {left} are still there at the end")
        result.failures += [f"the fake PVE refused a state-changing call outside the scratch range: {v}" for v in self.pve.violations]
        for words in self.spec.room_says:
            if not any(words in text for text in result.chat):
                result.failures.append(f"the backup room never heard {words!r} from the service")
        incidents = {n.dedup_key for n in notifications if n.integration == "pagerduty" and n.status == "firing"}
        for note in result.notes:
            if note.get("dedup_key") not in incidents:
                result.failures.append(f"the service's PagerDuty event {note.get('payload', {}).get('summary', '')[:60]!r} "
                                       "is on no incident Alertmanager opened: a second incident")
        if self.spec.log_on_incident and not any(
                any("log (last lines)" in key and value for key, value in (n.get("payload", {}).get("custom_details") or {}).items())
                for n in result.notes):
            result.failures.append("no task log was added to the page's incident")
        if self.spec.deliveries > 1 and result.deliveries and self._duplicates() < self.spec.deliveries - 1:
            result.failures.append(f"the service counted {self._duplicates():g} duplicate alert(s) for "
                                   f"{result.deliveries} webhook request(s) delivered {self.spec.deliveries} times each")
        return result

    def _duplicates(self) -> float:
        return float(sum(1 for entry in self._audit() if entry["decision"] == "duplicate"))


def describe(run: RecoveryRun, scenario: Scenario) -> list[str]:
    """Report lines: what the service did, and the time from the failure to its successful re-run."""
    spec = scenario.recovery
    assert spec is not None
    failed = next((r for r in spec.runs if not r.ok), None)
    lines = ["Recovery service in the loop: " + (f"{run.deliveries} webhook request(s) from Alertmanager"
                                                   + (f", each delivered {spec.deliveries} times" if spec.deliveries > 1 else "")
                                                   if spec.service_up else "not running (its port refuses)") + "."]
    fix = run.first_fix_s(failed.end) if failed else None
    if fix is not None:
        lines.append(f"From the failure ({durations.human(failed.end)}) to the successful automated re-run: "
                     f"{durations.human(fix)} of scenario time.")
    lines += [f"- {durations.human(a['at_s'])}: {a['action']} on {a['target']}: **{a['result']}** ({a['why'][:160]})"
              for a in run.actions]
    lines += [f"- PagerDuty note on the incident: {n.get('payload', {}).get('summary', '')[:140]}" for n in run.notes]
    return lines

