"""From an Alertmanager webhook to guarded, verified actions.

``intake`` turns a webhook (payload version 4) into durable occurrences, one per firing alert of
the trigger table, keyed by fingerprint and startsAt; resolved alerts and alerts outside the
table are only audited. Worker threads then run each occurrence's playbook: the playbooks (recovery.playbooks)
are handed to the engine where the service is wired (recovery.__main__); the engine knows none of them.

Every action goes through ``Engine.act``, which applies the guards in this order: the global
kill switch, the action's mode (off, dry-run, enforce), the cooldown and the maximum of
attempts per window for (action, target), then one action at a time per node. An action that
passes is recorded (attempt row) *before* it is started and gets its task UPIDs recorded as soon
as they are known, then it is verified by polling its tasks. After a restart an occurrence
resumes where it stood: a recorded attempt is never started again; one whose start may or may
not have happened is looked up (adopted) and otherwise counts as "unknown".
"""

from __future__ import annotations

import logging
import os
import threading
import time
from contextlib import contextmanager
from datetime import datetime
from typing import Callable, Mapping

from contracts.metrics import GAVE_UP_LABELS
from contracts.recovery import BACKUP_FAILURE, MODES

from .audit import Audit, Metrics
from .config import Config
from .errors import Deferred, Halted, Interrupted, PayloadError
from .notify import Chat, Pager
from .proxmox import Pbs, Pve
from .rest import ApiError, Endpoint, read_secret, ssl_context
from .state import Occurrence, State
from .truenas import TrueNas, TrueNasError

log = logging.getLogger("recovery")


ALERT_STATUSES = ("firing", "resolved")


def _strings(value: object) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def parse_payload(document: object) -> list[dict]:
    """The alerts of an Alertmanager v4 notification (alertmanager notify/webhook Message: labels and
    annotations map strings to strings, times are RFC 3339); anything else is refused whole."""
    if not isinstance(document, dict):
        raise PayloadError("body is not a JSON object")
    if document.get("version") != "4":
        raise PayloadError(f"payload version {str(document.get('version'))[:20]!r}, expected '4'")
    alerts = document.get("alerts")
    if not isinstance(alerts, list):
        raise PayloadError("'alerts' is not a list")
    for index, alert in enumerate(alerts):
        if not isinstance(alert, dict) or not _strings(alert.get("labels")):
            raise PayloadError(f"alerts[{index}].labels is not an object of strings")
        if not _strings(alert.get("annotations") or {}):
            raise PayloadError(f"alerts[{index}].annotations is not an object of strings")
        for key in ("status", "startsAt", "fingerprint"):
            if not isinstance(alert.get(key), str) or not alert[key]:
                raise PayloadError(f"alerts[{index}].{key} is missing")
        if alert["status"] not in ALERT_STATUSES:
            raise PayloadError(f"alerts[{index}].status {alert['status'][:20]!r} is neither firing nor resolved")
        try:
            datetime.fromisoformat(alert["startsAt"])
        except ValueError:
            raise PayloadError(f"alerts[{index}].startsAt {alert['startsAt'][:40]!r} is not an RFC 3339 time") from None
    truncated = document.get("truncatedAlerts", 0)
    if not isinstance(truncated, int) or isinstance(truncated, bool) or truncated < 0:
        raise PayloadError("'truncatedAlerts' is not a count")
    if not isinstance(document.get("groupKey", ""), str):
        raise PayloadError("'groupKey' is not a string")
    return alerts


class Clients:
    """API clients, built when first needed: secret files are read then, so a missing or
    malformed one fails that action with a clear message instead of stopping the service."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.timeout = cfg["requestTimeoutSeconds"]

    def _endpoint(self, section: str, api: str) -> Endpoint:
        s = self.cfg[section]
        context = ssl_context(s.get("verifyTls", True), s.get("caFile")) if s["url"].startswith("https") else None
        return Endpoint(api, s["url"], self.timeout, context)

    def pbs(self, kind: str | None = None) -> Pbs:
        s = self.cfg["pbs"]
        path = s["tokenFiles"].get(kind) if kind else s["readTokenFile"]
        if kind and not path:
            raise ApiError("pbs", "auth", f"no token file for PBS {kind} jobs (pbs.tokenFiles.{kind})")
        return Pbs(self._endpoint("pbs", "pbs"), self.secret("pbs", path), s["node"])

    def pve(self, writer: bool = False, token: str = "backupTokenFile") -> Pve:
        """The read token's client; ``writer``: the action's own token (pve.backupTokenFile, pve.drillTokenFile)."""
        s = self.cfg["pve"]
        path = s.get(token) if writer else s["readTokenFile"]
        if not path:
            raise ApiError("pve", "auth", f"no token file for this action (pve.{token})")
        return Pve(self._endpoint("pve", "pve"), self.secret("pve", path))

    def truenas(self) -> TrueNas:
        s = self.cfg["truenas"]
        try:
            key = read_secret(s["apiKeyFile"])
        except ValueError as exc:
            raise TrueNasError("auth", str(exc)) from None
        return TrueNas(s["url"], key, self.timeout, s["verifyTls"], s.get("caFile"))

    def prometheus(self) -> Endpoint:
        return self._endpoint("prometheus", "prometheus")

    def blackbox(self) -> Endpoint:
        s = self.cfg["probes"]
        context = ssl_context(True, None) if s["exporterUrl"].startswith("https") else None
        return Endpoint("blackbox", s["exporterUrl"], s["timeoutSeconds"], context)

    def chat(self) -> Chat | None:
        s = self.cfg.get("mattermost")
        if not s:
            return None
        try:
            url = read_secret(s["webhookUrlFile"])
        except ValueError as exc:
            log.error("chat: %s", exc)
            return None
        context = ssl_context(s["verifyTls"], s.get("caFile")) if url.startswith("https") else None
        return Chat(url, self.timeout, s["username"], context)

    def pager(self) -> Pager | None:
        s = self.cfg.get("pagerduty")
        if not s:
            return None
        try:
            key = read_secret(s["routingKeyFile"])
        except ValueError as exc:
            log.error("pagerduty: %s", exc)
            return None
        return Pager(s["url"], key, self.timeout, s["routeKey"], s["groupBy"], s["matchers"])

    @staticmethod
    def secret(api: str, path: str) -> str:
        try:
            return read_secret(path)
        except ValueError as exc:
            raise ApiError(api, "auth", str(exc)) from None


class Engine:
    def __init__(self, cfg: Config, state: State, audit: Audit, metrics: Metrics,
                 playbooks: Mapping[str, Callable[[Engine, Occurrence], None]], clients: Clients | None = None):
        self.cfg = cfg
        self.playbooks = playbooks
        self.state = state
        self.audit = audit
        self.metrics = metrics
        self.clients = clients or Clients(cfg)
        self.stopping = threading.Event()
        self.wakeup = threading.Event()
        self.locks_guard = threading.Lock()
        self.busy_nodes: set[str] = set()
        for action in cfg["actions"]:
            for mode in MODES:
                metrics.modes.labels(action, mode).set(1 if cfg.action(action)["mode"] == mode else 0)

    # ------------------------------------------------------------------ intake
    def intake(self, document: object) -> dict:
        alerts = parse_payload(document)
        truncated = document.get("truncatedAlerts", 0)
        if truncated:
            self.metrics.truncated.inc(truncated)
            self.audit("ignored", why=f"Alertmanager left {truncated} alert(s) of group {document.get('groupKey', '?')} out of "
                       "the notification (max_alerts); the service cannot see or act on them")
        counts = {"queued": 0, "duplicate": 0, "resolved": 0, "not_in_table": 0}
        now = time.time()
        for alert in alerts:
            labels = alert["labels"]
            who = {"alert": labels.get("alertname", ""), "fingerprint": alert["fingerprint"], "starts_at": alert["startsAt"]}
            trigger = self.cfg.trigger_for(labels)
            if alert["status"] != "firing":
                outcome, why = "resolved", f"status {alert['status']}: the service never acts on a resolved alert"
            elif trigger is None:
                outcome, why = "not_in_table", "no trigger of the recovery table matches this alert"
            else:
                occ = Occurrence(alert["fingerprint"], alert["startsAt"], labels.get("alertname", ""), trigger.playbook,
                                 labels, alert.get("annotations") or {}, now)
                if self.state.add(occ):
                    outcome, why = "queued", f"playbook {trigger.playbook}"
                else:
                    outcome, why = "duplicate", "this occurrence (fingerprint, startsAt) was already received"
            counts[outcome] += 1
            self.metrics.alerts.labels(outcome).inc()
            self.audit({"queued": "queued", "duplicate": "duplicate"}.get(outcome, "ignored"), why=why, **who)
        if counts["queued"]:
            self.wakeup.set()
        self.metrics.queue.set(self.state.queue_depth())
        return counts

    # ------------------------------------------------------------------ workers
    def worker(self) -> None:
        while not self.stopping.is_set():
            self.metrics.up.set_to_current_time()
            self.metrics.kill_switch.set(1 if self.kill_switch() else 0)
            self._refresh_gauges()
            occ = self.state.claim(time.time())
            if occ is None:
                self.wakeup.wait(min(1.0, self.cfg["pollSeconds"]))
                self.wakeup.clear()
                continue
            try:
                self.playbooks[occ.playbook](self, occ)
            except Deferred as exc:
                occ.context["deferrals"] = occ.context.get("deferrals", 0) + 1
                self.state.finish(occ, "queued", time.time() + self.cfg["deferSeconds"])
                self.audit("defer", **self.who(occ), why=str(exc))
                continue
            except Interrupted:
                self.state.finish(occ, "queued")
                continue
            except Exception as exc:  # a bug must not stop the worker; the occurrence is closed with the reason
                log.exception("playbook %s failed on %s", occ.playbook, occ.alertname)
                occ.context["error"] = f"{exc.__class__.__name__}: {exc}"
                self.audit("skip", **self.who(occ), result="failed", why=f"internal error: {occ.context['error']}")
            self.state.finish(occ)
            self.metrics.queue.set(self.state.queue_depth())

    def _refresh_gauges(self) -> None:
        flights = self.state.in_flight()
        for action in self.cfg["actions"]:
            self.metrics.in_flight.labels(action).set(flights.get(action, 0))
        for action, count in self.state.targets_over(self.cfg.limits(), time.time()).items():
            self.metrics.exhausted.labels(action).set(count)
        for job, failure_start in self.state.gave_up(BACKUP_FAILURE, GAVE_UP_LABELS).items():
            self.metrics.gave_up.labels(*job).set(failure_start)

    def sleep(self, seconds: float) -> None:
        if self.stopping.wait(seconds):
            raise Interrupted()

    # ------------------------------------------------------------------ guards
    def kill_switch(self) -> bool:
        return not self.cfg["enabled"] or os.path.exists(self.cfg["killSwitchFile"])

    def mode(self, action: str) -> str:
        return "off" if self.kill_switch() else self.cfg.action(action)["mode"]

    def guard(self, action: str, target: str) -> tuple[str, str]:
        """("act" | "dry-run" | "skip" | "exhausted", why) for one action on one target."""
        if self.kill_switch():
            return "skip", "kill switch engaged (recovery disabled)"
        settings = self.cfg.action(action)
        if settings["mode"] == "off":
            return "skip", f"action {action} is off"
        now = time.time()
        recent = self.state.attempts(action, target, now - settings["windowSeconds"])
        if len(recent) >= settings["maxAttempts"]:
            return "exhausted", (f"{len(recent)} attempt(s) of {action} on {target} within {settings['windowSeconds']:g}s "
                                 f"(maximum {settings['maxAttempts']}): escalating instead of trying again")
        if recent and now - recent[-1].started_at < settings["cooldownSeconds"]:
            return "skip", (f"cooldown: last attempt {now - recent[-1].started_at:.0f}s ago, cooldown "
                            f"{settings['cooldownSeconds']:g}s")
        if settings["mode"] == "dry-run":
            return "dry-run", "mode dry-run"
        return "act", "mode enforce"

    @contextmanager
    def nodes_locked(self, occ: Occurrence, nodes: list[str]):
        """One action at a time per node, in this process and across a restart (unfinished attempts)."""
        with self.locks_guard:
            busy = [n for n in nodes if n in self.busy_nodes]
            if not busy:
                for node in nodes:
                    other = self.state.in_flight_on(node, occ)
                    if other is not None:
                        busy.append(f"{node} ({other.action} on {other.target})")
            if busy:
                raise Deferred(f"node busy: {', '.join(busy)}")
            self.busy_nodes.update(nodes)
        try:
            yield
        finally:
            with self.locks_guard:
                self.busy_nodes.difference_update(nodes)

    # ------------------------------------------------------------------ acting
    def who(self, occ: Occurrence) -> dict:
        return {"alert": occ.alertname, "fingerprint": occ.fingerprint, "starts_at": occ.starts_at}

    def act(self, occ: Occurrence, step: str, action: str, target: str, nodes: list[str], *,
            plan: str, start: Callable[[], list[str]], adopt: Callable[[float], list[str]],
            verify: Callable[[list[str]], tuple[str, str]]) -> dict:
        """Runs one guarded action once per occurrence and returns its outcome
        ``{"result", "why", "upids", "exhausted"}``; the outcome is kept in the occurrence."""
        if step in occ.context:
            return occ.context[step]
        existing = self.state.attempt_of(occ, step)
        if existing is None:
            decision, why = self.guard(action, target)
            if decision == "exhausted":
                self.metrics.limit_reached.labels(action).inc()
            if decision in ("skip", "exhausted"):
                outcome = {"result": "skipped", "why": why, "upids": [], "exhausted": decision == "exhausted"}
                self.metrics.actions.labels(action, "skipped").inc()
                self.audit("skip", **self.who(occ), target=target, action=action, result="skipped", why=why)
                return self._keep(occ, step, outcome)
            if decision == "dry-run":
                attempt = self.state.start_attempt(occ, step, action, target, ",".join(nodes), time.time(), state="done")
                self.state.update_attempt(attempt, result="dry-run", detail=plan, finished_at=time.time())
                self.metrics.actions.labels(action, "dry-run").inc()
                self.audit("dry-run", **self.who(occ), target=target, action=action, result="dry-run", why=f"would {plan}")
                return self._keep(occ, step, {"result": "dry-run", "why": f"would {plan}", "upids": [], "exhausted": False})
            with self.nodes_locked(occ, nodes):
                if self.kill_switch():  # checked again right before acting
                    return self.act(occ, step, action, target, nodes, plan=plan, start=start, adopt=adopt, verify=verify)
                attempt = self.state.start_attempt(occ, step, action, target, ",".join(nodes), time.time())
                self.audit("act", **self.who(occ), target=target, action=action, why=plan)
                upids, failure = self._start(occ, action, target, attempt, start, adopt, time.time())
                return self._finish(occ, step, action, target, attempt, upids, failure, verify)
        if existing.state == "done":
            outcome = {"result": existing.result or "unknown", "why": existing.detail, "upids": existing.upids, "exhausted": False}
            return self._keep(occ, step, outcome)
        with self.nodes_locked(occ, nodes):
            self.audit("verify", **self.who(occ), target=target, action=action, upid=",".join(existing.upids),
                       why="resuming after a restart: the action is not started again")
            upids, failure = existing.upids, None
            if existing.state == "starting":  # the start may or may not have reached the API
                upids, failure = self._adopt(action, existing.id, adopt, existing.started_at)
            return self._finish(occ, step, action, target, existing.id, upids, failure, verify)

    def _start(self, occ, action, target, attempt, start, adopt, started_at) -> tuple[list[str], tuple[str, str] | None]:
        try:
            upids = start()
        except Halted as exc:
            return [], ("skipped", str(exc))
        except (ApiError, TrueNasError) as exc:
            self.metrics.api_errors.labels(getattr(exc, "api", "truenas"), exc.kind).inc()
            log.error("%s on %s: start failed: %s", action, target, exc)
            if isinstance(exc, ApiError) and exc.lost:
                return self._adopt(action, attempt, adopt, started_at, cause=str(exc))
            return [], ("failed", f"could not start: {exc}")
        self.state.update_attempt(attempt, state="running", upids=upids)
        return upids, None

    def _adopt(self, action, attempt, adopt, started_at, cause="the service stopped before the answer was recorded"):
        try:
            upids = adopt(started_at)
        except (ApiError, TrueNasError) as exc:
            log.error("%s: looking up the task of a start whose answer was lost failed: %s", action, exc)
            upids = []
        if upids:
            self.state.update_attempt(attempt, state="running", upids=upids)
            return upids, None
        return [], ("unknown", f"answer lost ({cause}) and no task of it found: the action may or may not have run")

    def _finish(self, occ, step, action, target, attempt, upids, failure, verify) -> dict:
        if failure is None:
            try:
                result, why = verify(upids)
            except (ApiError, TrueNasError) as exc:
                result, why = "unknown", f"could not verify: {exc}"
        else:
            result, why = failure
        self.state.update_attempt(attempt, state="done", result=result, detail=why, finished_at=time.time())
        self.metrics.actions.labels(action, result).inc()
        self.audit("verify", **self.who(occ), target=target, action=action, upid=",".join(upids), result=result, why=why)
        return self._keep(occ, step, {"result": result, "why": why, "upids": upids, "exhausted": False})

    def _keep(self, occ: Occurrence, step: str, outcome: dict) -> dict:
        occ.context[step] = outcome
        self.state.save_context(occ)
        return outcome

    def wait_tasks(self, api, upids: list[str], node_of: Callable[[str], str]) -> tuple[str, str]:
        """Polls each task's status until it stopped: ok when every exitstatus is OK or WARNINGS: n."""
        from .proxmox import task_succeeded

        deadline = time.time() + self.cfg["verifyTimeoutSeconds"]
        results = {}
        errors = 0
        while len(results) < len(upids):
            for upid in upids:
                if upid in results:
                    continue
                try:
                    status = api.task_status(node_of(upid), upid)
                except ApiError as exc:
                    errors += 1
                    self.metrics.api_errors.labels(exc.api, exc.kind).inc()
                    if errors == 1 or errors % 10 == 0:
                        log.warning("verify %s: %s (still polling)", upid, exc)
                    continue
                if status.get("status") == "stopped":
                    results[upid] = str(status.get("exitstatus"))
            if len(results) == len(upids):
                break
            if time.time() >= deadline:
                return "unknown", f"tasks still running after {self.cfg['verifyTimeoutSeconds']:g}s: " + ", ".join(
                    u for u in upids if u not in results)
            self.sleep(self.cfg["pollSeconds"])
        failed = {u: s for u, s in results.items() if not task_succeeded(s)}
        if failed:
            return "failed", "; ".join(f"{u} ended {s!r}" for u, s in failed.items())
        return "ok", "; ".join(f"{u} ended {s!r}" for u, s in results.items())

    # ------------------------------------------------------------------ telling people
    def post(self, occ: Occurrence, text: str) -> None:
        chat = self.clients.chat()
        if chat is None:
            return
        channel = self.cfg["mattermost"]["channels"].get(occ.playbook)
        if chat.post(channel, text):
            self.audit("report", **self.who(occ), why=f"posted to {channel or 'the default channel'}: {text.splitlines()[0][:120]}")

    def pages(self, occ: Occurrence) -> bool:
        """Whether Alertmanager pages for this alert: it has an incident the service may add notes to."""
        pager = self.clients.pager()
        return pager is not None and pager.pages(occ.labels)

    def attach(self, occ: Occurrence, summary: str, details: dict, links: list[dict]) -> None:
        """Adds details to the PagerDuty incident Alertmanager opened for the alert (same dedup_key). The
        service never pages on its own: an alert that does not page has no incident and gets nothing."""
        pager = self.clients.pager()
        if pager is None or not pager.pages(occ.labels):
            return
        key = pager.trigger(occ.labels, summary, "recovery", details, links)
        self.metrics.escalations.labels("note", "sent" if key else "failed").inc()
        self.audit("report", **self.who(occ), result="sent" if key else "failed",
                   why=f"PagerDuty note (dedup_key {pager.key_for(occ.labels)[:12]}...): {summary[:160]}")
