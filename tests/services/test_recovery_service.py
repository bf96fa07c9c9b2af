"""The recovery service as a real process: webhooks in, PBS/PVE actions out, guards, restarts, faults."""

from __future__ import annotations

import json
import socket
import sqlite3
import struct
import time
from datetime import datetime

import pytest

from tests.recovery_world import WEBHOOK_TOKEN, World, alert, notification, wait_for

NOW = time.time()
# The failures' starts (startsAt of their alerts), as the service exports a give-up.
STARTED_10_00, STARTED_10_15 = (datetime.fromisoformat(f"2026-12-01T10:{m}:00Z").timestamp() for m in ("00", "15"))
SYNC = {"job_type": "sync", "job_id": "s-offsite", "datastore": "homelab", "service": "backups", "severity": "warning"}


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    w.start_fakes()
    w.pbs.add_datastore("homelab", 8 * 2**40, 2**40)
    w.pbs.add_job("sync", "s-offsite", "homelab")
    failed = w.pbs.run_job("sync", "s-offsite", NOW - 600, NOW - 300, "sync failed: remote 'offsite' unreachable")
    w.pbs.logs[failed] = [f"line {n}" for n in range(1, 12)] + ["TASK ERROR: sync failed: remote 'offsite' unreachable"]
    yield w
    w.stop()


def sync_failed(starts_at="2026-12-01T10:00:00Z", **labels):
    return alert("BackupMaintenanceJobFailed", {**SYNC, **labels}, starts_at=starts_at)


def test_a_failed_sync_job_is_rerun_once_for_duplicate_and_resent_webhooks(world):
    world.pbs.run_outcomes[("sync", "s-offsite")] = [("OK", 0.3)]
    world.start()
    occurrence = sync_failed()
    first = notification(occurrence)
    assert world.send(first) == (200, {"queued": 1, "duplicate": 0, "resolved": 0, "not_in_table": 0})
    # Alertmanager delivers at least once and re-sends the group; the same alert may reach the
    # service in another group's notification too.
    assert world.send(first)[1]["duplicate"] == 1
    assert world.send(notification(occurrence, group_key='{}/{service="backups"}:{alertname="Other"}'))[1]["duplicate"] == 1
    wait_for(lambda: any("failed → re-run → OK" in t for t in world.chat_texts()), what="the room to hear of the re-run")
    world.send(first)
    time.sleep(0.5)
    assert [(kind, job) for kind, job, _ in world.pbs.runs] == [("sync", "s-offsite")]
    # The run was started with the sync token, not the read token.
    assert world.pbs.tasks[world.pbs.runs[0][2]]["user"] == "recovery@pbs!sync"
    report = world.chat_texts()[0]
    assert "UPID:pbs:" in report and "TASK ERROR: sync failed" in report and "line 8" in report and "line 7" not in report
    assert "#pbsServerAdministration:tasks" in report
    assert world.capture.pages() == []  # a warning opens no incident, and the re-run fixed it
    assert world.metric("recovery_actions_total", action="pbs-job-rerun", result="ok") == 1
    assert world.metric("recovery_alerts_total", outcome="duplicate") == 3
    verified = world.decisions("verify", action="pbs-job-rerun")
    assert verified[-1]["result"] == "ok" and verified[-1]["upid"] == world.pbs.runs[0][2]


def test_resolved_alerts_and_alerts_outside_the_table_do_nothing(world):
    world.start()
    resolved = alert("BackupMaintenanceJobFailed", SYNC, status="resolved")
    other = alert("TargetDown", {"instance": "pbs:9101", "severity": "warning", "service": "backups"})
    status, counts = world.send(notification(resolved, other, truncated=2))
    assert status == 200 and counts == {"queued": 0, "duplicate": 0, "resolved": 1, "not_in_table": 1}
    time.sleep(0.5)
    assert world.pbs.runs == [] and world.capture.chat() == []
    whys = [a["why"] for a in world.decisions("ignored")]
    assert any("never acts on a resolved alert" in w for w in whys)
    assert any("no trigger of the recovery table" in w for w in whys)
    assert any("left 2 alert(s)" in w for w in whys)
    assert world.metric("recovery_webhook_truncated_alerts_total") == 2


def fail_again(world):
    upid = world.pbs.run_job("sync", "s-offsite", time.time(), time.time(), "sync failed: remote 'offsite' unreachable")
    world.pbs.logs[upid] = ["TASK ERROR: sync failed: remote 'offsite' unreachable"]


def test_a_flapping_job_meets_the_cooldown_then_the_attempt_limit_escalates(world):
    world.pbs.run_outcomes[("sync", "s-offsite")] = [("OK", 0.1), ("OK", 0.1)]
    world.start(actions={"pbs-job-rerun": {"mode": "enforce", "cooldownSeconds": 1.5, "maxAttempts": 2, "windowSeconds": 60}})
    world.send(notification(sync_failed("2026-12-01T10:00:00Z")))
    wait_for(lambda: world.decisions("verify", result="ok"), what="the first re-run")
    # The job fails again at once: a new occurrence (new startsAt) within the cooldown.
    fail_again(world)
    world.send(notification(sync_failed("2026-12-01T10:05:00Z")))
    wait_for(lambda: world.decisions("skip", action="pbs-job-rerun"), what="the cooldown")
    assert "cooldown" in world.decisions("skip", action="pbs-job-rerun")[0]["why"]
    assert len(world.pbs.runs) == 1
    time.sleep(1.6)
    world.send(notification(sync_failed("2026-12-01T10:10:00Z")))
    wait_for(lambda: len(world.decisions("verify", result="ok")) == 2, what="the second re-run after the cooldown")
    fail_again(world)
    world.send(notification(sync_failed("2026-12-01T10:15:00Z")))
    wait_for(lambda: world.decisions("escalate"), what="the escalation")
    assert len(world.pbs.runs) == 2
    skip = world.decisions("skip", action="pbs-job-rerun")[-1]
    assert "maximum 2" in skip["why"] and "escalating" in skip["why"]
    # It gives up on this failure and says so; a maintenance job pages nobody (BackupMaintenanceJobFailed warns).
    wait_for(lambda: world.metric("recovery_backup_job_gave_up_failure_timestamp_seconds", job_type="sync",
                                  job_id="s-offsite", datastore="homelab") == STARTED_10_15, what="the gave-up gauge")
    assert any("gives up" in t and "maximum 2" in t for t in world.chat_texts())
    assert world.capture.pages() == []
    wait_for(lambda: world.metric("recovery_exhausted_targets", action="pbs-job-rerun") == 1, what="the exhausted gauge")


def test_a_restart_mid_action_does_not_run_again_and_still_verifies_the_outcome(world):
    world.start()  # no outcome queued: the run stays running until the test finishes it
    world.send(notification(sync_failed()))
    wait_for(lambda: world.pbs.runs, what="the re-run to start")
    wait_for(lambda: world.decisions("act", action="pbs-job-rerun"), what="the start to be recorded")
    time.sleep(0.3)  # the UPID is recorded right after the POST answers
    world.kill()  # SIGKILL: no chance to tidy up
    world.start()
    world.send(notification(sync_failed()))  # Alertmanager re-sends meanwhile
    time.sleep(0.5)
    upid = world.pbs.runs[0][2]
    world.pbs.finish_task(upid, time.time(), "WARNINGS: 2")
    wait_for(lambda: world.decisions("verify", result="ok"), what="the outcome after the restart")
    assert len(world.pbs.runs) == 1
    assert any("resuming after a restart" in a["why"] for a in world.decisions("verify"))
    assert world.decisions("verify", result="ok")[0]["upid"] == upid
    wait_for(lambda: any("failed → re-run → OK" in t for t in world.chat_texts()), what="the room to hear of it")


def test_a_lost_answer_to_the_start_is_looked_up_not_counted_as_failed(world):
    world.pbs.post_fault = "lost"
    world.pbs.slow_seconds = 2
    world.pbs.run_outcomes[("sync", "s-offsite")] = [("OK", 0.2)]
    world.start()
    world.send(notification(sync_failed()))
    wait_for(lambda: world.decisions("verify", action="pbs-job-rerun"), what="the verification")
    assert world.decisions("verify", action="pbs-job-rerun")[-1]["result"] == "ok"
    assert len(world.pbs.runs) == 1
    assert "no answer within 1s" in world.log()


def test_a_job_already_running_is_watched_not_started_again(world):
    world.pbs.run_outcomes[("sync", "s-offsite")] = []
    running = world.pbs.run_job("sync", "s-offsite", time.time())
    world.start()
    world.send(notification(sync_failed()))
    wait_for(lambda: any("already running" in a["why"] for a in world.decisions("skip")), what="the running check")
    world.pbs.finish_task(running, time.time(), "OK")
    wait_for(lambda: world.decisions("verify", result="ok"), what="the running job's outcome")
    assert world.pbs.runs == []


@pytest.mark.parametrize("fault, expected", [
    ("down", "ConnectionRefusedError"),
    ("403", "HTTP 403: permission check failed (the token lacks a privilege?)"),
    ("slow", "no answer within 1s"),
    ("garbage", "answer is not JSON"),
    ("401", "HTTP 401: authentication failed - invalid API token (wrong or expired token?)"),
])
def test_api_trouble_is_logged_clearly_and_escalated_without_a_crash(world, fault, expected):
    world.pbs.slow_seconds = 1.5
    overrides = {}
    if fault == "401":
        overrides["pbs"] = {**world.config()["pbs"], "readTokenFile": world.secret("wrong", "nobody@pbs!x:wrong"),
                            "tokenFiles": {"sync": world.secret("wrong-sync", "nobody@pbs!y:wrong")}}
    world.start(**overrides)
    if fault == "down":
        world.pbs.stop()
    elif fault != "401":
        world.pbs.fault = fault
    world.send(notification(sync_failed()))
    wait_for(lambda: world.decisions("escalate"), timeout=15, what="the escalation")
    assert world.healthy()
    assert expected in world.log()
    wait_for(lambda: any("gives up" in t for t in world.chat_texts()), what="the room to hear it")
    assert expected in json.dumps(world.capture.chat())
    # the gauge follows the state on the worker's next round
    wait_for(lambda: world.metric("recovery_backup_job_gave_up_failure_timestamp_seconds", job_type="sync",
                                  job_id="s-offsite", datastore="homelab") == STARTED_10_00, what="the gave-up gauge")
    assert world.pbs.runs == []
    result = world.decisions("verify", action="pbs-job-rerun")[-1]["result"]
    assert result == ("unknown" if fault in ("slow", "garbage") else "failed")
    kind = {"down": "connect", "403": "forbidden", "slow": "timeout", "garbage": "parse", "401": "auth"}[fault]
    assert world.metric("recovery_api_errors_total", api="pbs", kind=kind) >= 1


def test_the_kill_switch_stops_every_action(world):
    world.kill_switch.write_text("maintenance\n")
    world.start()
    world.send(notification(sync_failed()))
    wait_for(lambda: world.decisions("skip"), what="the decision")
    assert "kill switch" in world.decisions("skip")[0]["why"]
    wait_for(lambda: world.metric("recovery_kill_switch_engaged") == 1, what="the kill switch gauge")
    assert world.pbs.runs == [] and world.capture.chat() == []


def test_dry_run_reports_what_it_would_do_and_starts_nothing(world):
    world.start(actions={"pbs-job-rerun": {"mode": "dry-run"}})
    world.send(notification(sync_failed()))
    wait_for(lambda: any("not re-run (dry-run)" in t for t in world.chat_texts()), what="the dry-run report")
    assert world.pbs.runs == []
    assert "would POST /admin/sync/s-offsite/run on PBS" in world.decisions("dry-run")[0]["why"]
    assert world.metric("recovery_actions_total", action="pbs-job-rerun", result="dry-run") == 1


def test_one_action_at_a_time_per_node(world):
    world.pbs.add_job("verify", "v-weekly", "homelab")
    world.pbs.run_job("verify", "v-weekly", NOW - 500, NOW - 400, "verification failed")
    world.pbs.run_outcomes[("sync", "s-offsite")] = [("OK", 0.8)]
    world.pbs.run_outcomes[("verify", "v-weekly")] = [("OK", 0.1)]
    world.start()
    verify = alert("BackupMaintenanceJobFailed", {**SYNC, "job_type": "verify", "job_id": "v-weekly"})
    world.send(notification(sync_failed(), verify))
    wait_for(lambda: len(world.decisions("verify", result="ok")) == 2, what="both re-runs")
    first, second = [world.pbs.tasks[upid] for _, _, upid in world.pbs.runs]
    assert second["starttime"] >= first["endtime"] - 1  # the second started only once the first ended
    assert any("node busy: pbs:localhost" in a["why"] for a in world.decisions("defer"))


def test_the_webhook_wants_its_bearer_token_and_a_v4_payload(world):
    world.start()
    assert world.send(notification(sync_failed()), token="wrong")[0] == 401
    assert world.send({}, raw=b"{not json")[0] == 400
    status, body = world.send({**notification(sync_failed()), "version": "3"})
    assert status == 400 and "expected '4'" in body["error"]
    assert "webhook from 127.0.0.1 refused: wrong bearer token" in world.log()
    time.sleep(0.3)
    assert world.pbs.runs == []
    assert world.metric("recovery_webhook_requests_total", code="401") == 1


def raw_post(port: int, body: bytes, headers: dict[str, str], send: bytes | None = None) -> tuple[int, bytes]:
    """One POST /webhook over a plain socket (``send``: the bytes actually sent, for a truncated body);
    the status code and body of the answer, or (0, b"") when the service dropped the connection."""
    head = "".join(f"{k}: {v}\r\n" for k, v in {"Host": "recovery", "Authorization": f"Bearer {WEBHOOK_TOKEN}",
                                                  "Content-Length": str(len(body)), **headers}.items())
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"POST /webhook HTTP/1.1\r\n{head}\r\n".encode() + (body if send is None else send))
        if send is not None:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < content_length(answer):
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
    if not answer:
        return 0, b""
    return int(answer.split(b" ", 2)[1]), answer.partition(b"\r\n\r\n")[2]


def content_length(answer: bytes) -> int:
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def valid() -> dict:
    return notification(sync_failed())


def with_alert(**changes) -> bytes:
    document = valid()
    document["alerts"][0].update(changes)
    return json.dumps(document).encode()


JSON = {"Content-Type": "application/json"}
HOSTILE = {
    "wrong content type": (json.dumps(valid()).encode(), {"Content-Type": "text/plain"}, None, 415, "content type 'text/plain'"),
    "form content type": (json.dumps(valid()).encode(), {"Content-Type": "application/x-www-form-urlencoded"}, None, 415,
                          "content type 'application/x-www-form-urlencoded'"),
    "no content type": (json.dumps(valid()).encode(), {}, None, 415, "content type 'none'"),
    "truncated body": (json.dumps(valid()).encode(), JSON, json.dumps(valid()).encode()[:40], 400, "body ends after 40 of"),
    "deep nesting": (b"[" * 200000 + b"]" * 200000, JSON, None, 400, "nested too deep"),
    "not utf-8": (b'{"version": "4", "alerts": ["\xff\xfe"]}', JSON, None, 400, "body is not JSON"),
    "labels of numbers": (with_alert(labels={"alertname": "BackupMaintenanceJobFailed", "job_id": 7}), JSON, None, 400,
                          "alerts[0].labels is not an object of strings"),
    "annotations a list": (with_alert(annotations=["x"]), JSON, None, 400, "alerts[0].annotations is not an object"),
    "status not firing": (with_alert(status="pending"), JSON, None, 400, "is neither firing nor resolved"),
    "startsAt not a time": (with_alert(startsAt="yesterday"), JSON, None, 400, "is not an RFC 3339 time"),
    "alerts an object": (json.dumps({**valid(), "alerts": {"0": {}}}).encode(), JSON, None, 400, "'alerts' is not a list"),
    "truncatedAlerts true": (json.dumps({**valid(), "truncatedAlerts": True}).encode(), JSON, None, 400, "not a count"),
    "groupKey a list": (json.dumps({**valid(), "groupKey": [1]}).encode(), JSON, None, 400, "'groupKey' is not a string"),
    "a JSON string": (b'"version 4"', JSON, None, 400, "body is not a JSON object"),
    "over a MiB": (b" " * (2**20 + 1), JSON, b"", 413, "body over 1048576 bytes"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_webhook_bodies_get_a_4xx_and_a_log_line_never_a_dropped_connection(world, case):
    body, headers, send, code, why = HOSTILE[case]
    world.start()
    status, answer = raw_post(world.port, body, headers, send)
    assert (status, why in json.loads(answer)["error"]) == (code, True), answer[:300]
    assert any("webhook from 127.0.0.1 refused: " in line and why in line for line in world.log().splitlines())
    assert world.healthy() and world.send(valid())[0] == 200  # and the service still takes good ones
    assert "Traceback" not in world.log()


def test_a_client_resetting_its_kept_alive_connection_is_one_line_not_a_traceback(world):
    world.start()
    sock = socket.create_connection(("127.0.0.1", world.port), timeout=5)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: recovery\r\n\r\n")
    assert b" 200 " in sock.recv(4096)
    sock.sendall(b"GET /heal")  # half a request, then a reset (RST, SO_LINGER 0)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    wait_for(lambda: "http: connection from 127.0.0.1 ended: ConnectionResetError" in world.log(), what="the log line")
    assert "Traceback" not in world.log() and world.healthy()


def test_state_survives_restarts_with_every_attempt(world):
    world.pbs.run_outcomes[("sync", "s-offsite")] = [("OK", 0.1)]
    world.start()
    world.send(notification(sync_failed()))
    wait_for(lambda: world.decisions("verify", result="ok"), what="the re-run")
    world.proc.terminate()
    world.proc.wait(10)
    db = sqlite3.connect(world.tmp / "state.sqlite3")
    rows = db.execute("SELECT action, target, state, result, upids FROM attempts").fetchall()
    assert rows == [("pbs-job-rerun", "sync/homelab/s-offsite", "done", "ok", json.dumps([world.pbs.runs[0][2]]))]
    assert db.execute("SELECT status FROM occurrences").fetchall() == [("done",)]
