"""The recovery service's PVE backup re-run ("Run now"), its escalation and NAS fallback, and the
disk playbook's snapshot prune over TrueNAS' JSON-RPC WebSocket API, all as a real process."""

from __future__ import annotations

import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
import yaml

from contracts.fallback import inventory
from services.recovery.notify import dedup_key
from tests.fake_pve import BACKUP_TOKEN, FALLBACK_TOKEN
from tests.recovery_world import PD_ROUTE_KEY, ROOT, World, alert, notification, wait_for

NOW = time.time()
DAY = 86400
BACKUP = {"job_type": "backup", "job_id": "vm/101", "datastore": "homelab", "service": "backups"}
GAVE_UP = {"job_type": "backup", "job_id": "vm/101", "datastore": "homelab"}
GAVE_UP_METRIC = "recovery_backup_job_gave_up_failure_timestamp_seconds"


def epoch(starts_at: str) -> float:
    return datetime.fromisoformat(starts_at).timestamp()


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    w.start_fakes()
    w.pbs.add_datastore("homelab", 8 * 2**40, 2**40)
    failed = w.pbs.add_task("backup", "homelab:vm/101", NOW - 900, NOW - 800, "backup failed: connection reset")
    w.pbs.logs[failed] = ["starting backup vm/101", "TASK ERROR: backup failed: connection reset"]
    pve = w.pve
    pve.add_guest(101, "pve1")
    pve.add_guest(102, "pve2")
    pve.add_guest(103, "pve2")
    pve.add_pbs_storage("pbs-homelab", "homelab")
    pve.add_job("backup-nightly", storage="pbs-homelab", vmid="101,102", comment="nightly to PBS", node=None)
    del pve.jobs["backup-nightly"]["node"]
    pve.add_job("backup-other", storage="local", vmid="101")  # not to PBS: not the job that failed
    pve.add_task("pve1", "vzdump", "", "root@pam", NOW - 900, NOW - 790, "job errors",
                 lines=["INFO: starting new backup job: vzdump 101 102", "ERROR: Backup of VM 101 failed - connection reset",
                        "INFO: Backup job finished with errors", "TASK ERROR: job errors"])
    yield w
    w.stop()


def backup_failed(severity="warning", starts_at="2026-12-01T10:00:00Z"):
    return alert("BackupJobFailed", {**BACKUP, "severity": severity}, starts_at=starts_at)


def test_a_failed_backup_is_rerun_as_pves_run_now_on_the_nodes_of_its_guests(world):
    world.pve.vzdump_outcomes["pve1"] = [("OK", 0.2)]
    world.pve.vzdump_outcomes["pve2"] = [("WARNINGS: 1", 0.3)]
    world.start()
    world.send(notification(backup_failed()))
    wait_for(lambda: any("failed → re-run → OK" in t for t in world.chat_texts()), what="the re-run")
    posts = sorted((node, params) for node, params, _ in world.pve.vzdump_posts)
    # The GUI's "Run now": the job without id, schedule, enabled, type, comment, repeat-missed...
    expected = {"storage": "pbs-homelab", "vmid": "101,102", "mode": "snapshot", "compress": "zstd",
                "notes-template": "{{guestname}}", "all": "0"}
    assert posts == [("pve1", expected), ("pve2", expected)]
    # ...posted with the backup token, and only to nodes that host its guests (not pve2's 103 alone).
    assert all(world.pve.tasks[upid]["user"] == "recovery@pve!backup" for _, _, upid in world.pve.vzdump_posts)
    report = world.chat_texts()[0]
    assert "ERROR: Backup of VM 101 failed - connection reset" in report  # the vzdump log
    assert "TASK ERROR: backup failed: connection reset" in report  # the PBS side
    assert "#v1:0:=node%2Fpve1:4:4" in report
    assert world.capture.pages() == []  # fixed by one re-run: nobody is paged
    assert world.metric(GAVE_UP_METRIC, **GAVE_UP) is None  # it never gave up on this job


def test_a_rerun_that_fails_gives_up_then_notes_the_log_and_the_fallback_on_the_page(world, tmp_path):
    # pve1: the re-run fails, the fallback's vzdump works, the same day's next re-run fails again
    world.pve.vzdump_outcomes["pve1"] = [("job errors", 0.2), ("OK", 0.2), ("job errors", 0.2)]
    world.pve.vzdump_outcomes["pve2"] = [("OK", 0.2), ("OK", 0.2)]
    token = world.secret("pve-fallback", FALLBACK_TOKEN)
    inv = tmp_path / "fallback-inventory.yml"
    inv.write_text(yaml.safe_dump(inventory(pve_url=world.pve.url, token_file=token, verify_tls=True, storage="nas-fallback",
                                            nas_server="192.168.30.5", nas_export="/mnt/tank/pve", poll_seconds=1)))
    fallback = {"playbook": str(ROOT / "playbooks" / "backup-fallback.yml"), "inventory": str(inv),
                "ansiblePlaybook": str(Path(sys.executable).parent / "ansible-playbook"), "resultDir": str(tmp_path / "fb"),
                "timeoutSeconds": 120}
    world.start(fallback=fallback, actions={**world.config()["actions"],
                                            "pve-backup-rerun": {"mode": "enforce", "cooldownSeconds": 0, "maxAttempts": 5,
                                                                 "windowSeconds": DAY},
                                            "backup-fallback": {"mode": "enforce", "cooldownSeconds": 0, "maxAttempts": 1,
                                                                "windowSeconds": DAY}})
    world.send(notification(backup_failed()))
    wait_for(lambda: world.decisions("escalate"), what="the service to give up")
    assert "ended 'job errors'" in world.decisions("escalate")[0]["why"]
    # It gives up through its metric, the start of the failure it gave up on (BackupJobFailed then pages at
    # once); it never pages itself.
    wait_for(lambda: world.metric(GAVE_UP_METRIC, **GAVE_UP) == epoch("2026-12-01T10:00:00Z"), what="the gave-up gauge")
    assert world.capture.pages() == []
    # Alertmanager's page reaches the service too: the log and what was tried go onto its incident.
    world.send(notification(backup_failed("critical")))
    wait_for(lambda: world.capture.pages(), what="the incident note")
    note = world.capture.pages()[0]
    labels = {**BACKUP, "severity": "critical", "alertname": "BackupJobFailed"}
    assert note["dedup_key"] == dedup_key(PD_ROUTE_KEY, ["service"], labels)
    details = note["payload"]["custom_details"]
    # the newest failed vzdump of the guest: the re-run's own task and its log
    rerun_upid = next(upid for node, _, upid in world.pve.vzdump_posts if node == "pve1")
    assert details["PVE task"] == rerun_upid and "TASK ERROR: job errors" in details["PVE log (last lines)"]
    assert any("pve-backup-rerun: failed" in t and "job errors" in t for t in details["tried"])
    wait_for(lambda: any("fallback backup to the NAS done" in t for t in world.chat_texts()), timeout=90, what="the fallback")
    wait_for(lambda: len(world.capture.pages()) == 2, timeout=20, what="the restore point on the incident")
    pages = world.capture.pages()
    assert {p["dedup_key"] for p in pages} == {note["dedup_key"]}  # one incident: the notes join the page
    assert "nas-fallback:backup/vzdump-qemu-101-" in pages[1]["payload"]["summary"]
    assert "nas-fallback:backup/vzdump-qemu-101-" in next(t for t in world.chat_texts() if "fallback" in t)
    # The page's occurrence re-ran nothing and told the room nothing new.
    assert len([p for p in world.pve.vzdump_posts if p[1].get("storage") != "nas-fallback"]) == 2
    # The same job fails again the same day: the re-run fails, no second fallback.
    world.send(notification(backup_failed(starts_at="2026-12-01T12:00:00Z")))
    wait_for(lambda: any("backup-fallback" == a["action"] for a in world.decisions("skip")), timeout=20, what="the daily limit")
    assert len([p for p in world.pve.vzdump_posts if p[1].get("storage") == "nas-fallback"]) == 1
    # It gave up on that failure too: the metric now tells of the latest one.
    wait_for(lambda: world.metric(GAVE_UP_METRIC, **GAVE_UP) == epoch("2026-12-01T12:00:00Z"), what="the newer give-up")


def test_no_pve_job_for_the_guest_is_reported_and_the_service_gives_up(world):
    world.pve.jobs["backup-nightly"]["vmid"] = "102"
    world.start()
    world.send(notification(backup_failed()))
    wait_for(lambda: world.decisions("escalate"), what="the escalation")
    assert any("no PVE backup job writes guest 101 to a storage of datastore homelab" in t and "gives up" in t
               for t in world.chat_texts())
    wait_for(lambda: world.metric(GAVE_UP_METRIC, **GAVE_UP) == epoch("2026-12-01T10:00:00Z"), what="the gave-up gauge")
    assert world.pve.vzdump_posts == [] and world.capture.pages() == []


def test_a_busy_node_waits_for_its_running_vzdump(world):
    # PVE lists the running task as "RUNNING" (a token's with its full id as user); an ended task
    # waits in the active list until it is archived, with its endtime: that node is not busy (else
    # the re-run would wait for verifyTimeoutSeconds).
    ended = world.pve.add_task("pve2", "vzdump", "103", "root@pam", time.time() - 60)
    world.pve.finish(ended, "OK", archived=False)
    running = world.pve.add_task("pve1", "vzdump", "150", "ops@pve!nightly", time.time())
    world.pve.vzdump_outcomes["pve1"] = [("OK", 0.1)]
    world.pve.vzdump_outcomes["pve2"] = [("OK", 0.1)]
    world.start()
    world.send(notification(backup_failed()))
    time.sleep(1.0)
    assert world.pve.vzdump_posts == []  # one vzdump per node: the service waits
    world.pve.finish(running, "OK")
    wait_for(lambda: any("failed → re-run → OK" in t for t in world.chat_texts()), what="the re-run after the wait")


def test_the_kill_switch_engaged_during_the_wait_for_a_running_vzdump_stops_the_start(world):
    running = world.pve.add_task("pve1", "vzdump", "150", "root@pam", time.time())
    world.start()
    world.send(notification(backup_failed()))
    wait_for(lambda: world.decisions("act", action="pve-backup-rerun"), what="the action to wait for the node")
    world.kill_switch.write_text("maintenance\n")
    world.pve.finish(running, "OK")
    wait_for(lambda: world.decisions("verify", action="pve-backup-rerun"), what="the outcome")
    outcome = world.decisions("verify", action="pve-backup-rerun")[-1]
    assert outcome["result"] == "skipped" and "kill switch" in outcome["why"]
    time.sleep(0.3)
    assert world.pve.vzdump_posts == []


def test_a_lost_vzdump_answer_is_found_by_the_tokens_task_and_verified(world):
    # The answer to the POST is lost; PVE archives a token's task as user recovery@pve + tokenid backup.
    world.pve.post_fault = "lost"
    world.pve.slow_seconds = 2
    world.pve.vzdump_outcomes["pve1"] = [("OK", 0.1)]
    world.pve.vzdump_outcomes["pve2"] = [("OK", 0.1)]
    world.start()
    world.send(notification(backup_failed()))
    wait_for(lambda: world.decisions("verify", action="pve-backup-rerun"), timeout=20, what="the verification")
    outcome = world.decisions("verify", action="pve-backup-rerun")[-1]
    assert outcome["result"] == "ok", outcome["why"]
    assert sorted(outcome["upid"].split(",")) == sorted(upid for _, _, upid in world.pve.vzdump_posts)
    assert len(world.pve.vzdump_posts) == 2  # one per node, never started twice
    assert not any("gives up" in t for t in world.chat_texts())
    assert not world.metric("recovery_actions_total", action="pve-backup-rerun", result="unknown")


@pytest.mark.parametrize("http_server", [(6, 0), (5, 1)])  # "message" in the body from 5.2; the status line always
def test_pves_error_reason_reaches_the_log_and_the_room(world, http_server):
    world.pve.http_server_version = http_server
    world.pve.tokens[BACKUP_TOKEN] = {"read"}  # no VM.Backup
    world.start()
    world.send(notification(backup_failed()))
    wait_for(lambda: world.decisions("escalate"), what="the give-up")
    reason = "HTTP 403: Permission check failed (/vms/101, VM.Backup)"
    assert reason in world.log()
    assert any(reason in t for t in world.chat_texts())


def test_one_rerun_of_a_pve_job_covers_every_guest_that_failed_in_it(world):
    # Guests 101 (pve1) and 102 (pve2) of backup-nightly failed the same night: one "Run now" of the job.
    failed = world.pbs.add_task("backup", "homelab:vm/102", NOW - 700, NOW - 650, "backup failed: connection reset")
    world.pbs.logs[failed] = ["TASK ERROR: backup failed: connection reset"]
    world.pve.add_task("pve2", "vzdump", "", "root@pam", NOW - 900, NOW - 640, "job errors")
    world.pve.vzdump_outcomes["pve1"] = [("OK", 0.5)]
    world.pve.vzdump_outcomes["pve2"] = [("OK", 0.5)]
    world.start(actions={**world.config()["actions"],
                         "pve-backup-rerun": {"mode": "enforce", "cooldownSeconds": 0, "maxAttempts": 5, "windowSeconds": DAY}})
    guest_102 = alert("BackupJobFailed", {**BACKUP, "job_id": "vm/102", "severity": "warning"})
    world.send(notification(backup_failed(), guest_102))
    wait_for(lambda: len([t for t in world.chat_texts() if "failed → re-run → OK" in t]) == 2, what="both guests' outcome")
    assert sorted(node for node, _, _ in world.pve.vzdump_posts) == ["pve1", "pve2"]  # one run of the job
    covered = [a for a in world.decisions("skip", action="pve-backup-rerun") if "already re-run" in a["why"]]
    assert len(covered) == 1 and covered[0]["target"] == "pve-job/backup-nightly"
    # The job ran again after the failure: a re-sent alert of the same failure re-runs nothing.
    world.send(notification(alert("BackupJobFailed", {**BACKUP, "job_id": "vm/102", "severity": "warning"},
                                  starts_at="2026-12-01T10:05:00Z")))
    wait_for(lambda: len([t for t in world.chat_texts() if "failed → re-run → OK" in t]) == 3, what="the third outcome")
    assert len(world.pve.vzdump_posts) == 2
    # A failure after that run is a new one: the job runs again.
    world.pve.vzdump_outcomes["pve1"] = [("OK", 0.1)]
    world.pve.vzdump_outcomes["pve2"] = [("OK", 0.1)]
    world.pve.add_task("pve1", "vzdump", "", "root@pam", time.time() + 1, time.time() + 2, "job errors")
    world.send(notification(backup_failed(starts_at="2026-12-01T12:00:00Z")))
    wait_for(lambda: len(world.pve.vzdump_posts) == 4, what="the new failure's re-run")


# ------------------------------------------------------------------ disk usage: NAS snapshots
DATASET = "tank/observability/logs"


@pytest.fixture
def nas_world(tmp_path):
    w = World(tmp_path)
    w.start_fakes(truenas=True)
    nas = w.nas
    for day, txg, held in ((40, 100, False), (35, 110, True), (30, 120, False), (25, 130, False), (22, 140, False),
                           (10, 150, False), (1, 160, False), (0, 170, False)):
        nas.add_snapshot(DATASET, f"auto-{day:02d}d", int(NOW - day * DAY), txg, held)
    nas.add_snapshot("tank/other", "auto-40d", int(NOW - 40 * DAY), 101)
    nas.add_replication("offsite", ["tank/observability"], "tank/observability@auto-25d", recursive=True)
    yield w
    w.stop()


PV_FULL = {"persistentvolumeclaim": "storage-loki-0", "namespace": "logging", "severity": "warning", "service": "observability"}


def test_the_snapshot_prune_is_a_dry_run_by_default_and_lists_what_it_would_delete(nas_world):
    nas_world.start()
    nas_world.send(notification(alert("PersistentVolumeUsageHigh", PV_FULL)))
    wait_for(lambda: nas_world.decisions("dry-run"), what="the dry run")
    why = nas_world.decisions("dry-run")[0]["why"]
    # Older than 21 days, no hold, not needed by replication (base auto-25d and newer), not the newest 2.
    assert why == f"would delete 2 snapshot(s) of {DATASET}: {DATASET}@auto-30d, {DATASET}@auto-40d"
    assert nas_world.nas.deleted == []
    post = next(t for t in nas_world.chat_texts() if "NAS snapshot prune" in t)
    assert "has a hold" in post and "replication task offsite still needs it" in post


@pytest.mark.parametrize("version", [(25, 10), (25, 4)])
def test_enforce_deletes_exactly_those_and_verifies(nas_world, version):
    nas_world.nas.version = version  # zfs.snapshot.* before 25.10
    nas_world.start(actions={**nas_world.config()["actions"],
                             "nas-snapshot-prune": {"mode": "enforce", "cooldownSeconds": 0, "maxAttempts": 3, "windowSeconds": 60}})
    nas_world.send(notification(alert("NasStorageUsageHigh", {"hrStorageDescr": "tank", "severity": "warning",
                                                              "service": "storage"})))
    wait_for(lambda: nas_world.decisions("verify", action="nas-snapshot-prune"), what="the prune")
    assert nas_world.decisions("verify", action="nas-snapshot-prune")[0]["result"] == "ok"
    assert sorted(nas_world.nas.deleted) == [f"{DATASET}@auto-30d", f"{DATASET}@auto-40d"]
    namespace = "pool.snapshot" if version >= (25, 10) else "zfs.snapshot"
    assert (f"{namespace}.delete", [f"{DATASET}@auto-40d"]) in nas_world.nas.calls


ENFORCE_PRUNE = {"mode": "enforce", "cooldownSeconds": 0, "maxAttempts": 3, "windowSeconds": 60}
NAS_FULL = {"hrStorageDescr": "tank", "severity": "warning", "service": "storage"}


@pytest.mark.parametrize("version", [(25, 10), (26, 0)])
def test_a_snapshot_held_between_plan_and_delete_is_skipped_and_the_prune_carries_on(nas_world, version):
    nas_world.nas.version = version
    nas_world.nas.hold_on_delete = {f"{DATASET}@auto-30d": "keep"}  # someone holds it after the query
    nas_world.start(actions={**nas_world.config()["actions"], "nas-snapshot-prune": ENFORCE_PRUNE})
    nas_world.send(notification(alert("NasStorageUsageHigh", NAS_FULL)))
    wait_for(lambda: nas_world.decisions("verify", action="nas-snapshot-prune"), what="the prune")
    outcome = nas_world.decisions("verify", action="nas-snapshot-prune")[0]
    assert nas_world.nas.deleted == [f"{DATASET}@auto-40d"]  # the one after the busy one was still deleted
    assert outcome["result"] == "ok"
    assert f"deleted 1 of 2 snapshot(s): {DATASET}@auto-40d" in outcome["why"]
    assert f"skipped 1 busy (held or in use since the plan): {DATASET}@auto-30d" in outcome["why"]
    assert f"skipping {DATASET}@auto-30d, TrueNAS says it is busy" in nas_world.log()
    wait_for(lambda: any("deleted 1 of 2" in t for t in nas_world.chat_texts()), what="the room to hear it")


def test_a_hold_of_any_tag_keeps_a_snapshot_on_truenas_26(nas_world):
    # 26.0 lists only the "truenas" hold tag; a `zfs hold keep` shows in userrefs alone.
    nas_world.nas.version = (26, 0)
    nas_world.nas.snapshots[f"{DATASET}@auto-30d"]["tags"].append("keep")
    nas_world.start()
    nas_world.send(notification(alert("PersistentVolumeUsageHigh", PV_FULL)))
    wait_for(lambda: nas_world.decisions("dry-run"), what="the dry run")
    assert nas_world.decisions("dry-run")[0]["why"] == f"would delete 1 snapshot(s) of {DATASET}: {DATASET}@auto-40d"


def test_a_connection_lost_mid_prune_is_unknown_and_what_was_deleted_is_read_again(nas_world):
    nas_world.nas.lose_after_deletes = 0  # the first deletion is carried out, its answer lost
    nas_world.start(actions={**nas_world.config()["actions"], "nas-snapshot-prune": ENFORCE_PRUNE})
    nas_world.send(notification(alert("NasStorageUsageHigh", NAS_FULL)))
    wait_for(lambda: nas_world.decisions("verify", action="nas-snapshot-prune"), what="the prune")
    outcome = nas_world.decisions("verify", action="nas-snapshot-prune")[0]
    assert nas_world.nas.deleted == [f"{DATASET}@auto-30d"]
    assert outcome["result"] == "unknown"
    assert outcome["why"].startswith(f"deleted 1 of 2 snapshot(s): {DATASET}@auto-30d; stopped after 1 deletion request(s)")
    assert f"not tried: {DATASET}@auto-40d" in outcome["why"]


@pytest.mark.parametrize("fault, expected", [("refuse", "refused: HTTP 403"), ("garbage", "answer is not JSON"),
                                             ("slow", "no answer within 1s"), ("wrongkey", "refused the API key")])
def test_truenas_trouble_is_reported_without_a_crash(nas_world, fault, expected):
    nas_world.nas.slow_seconds = 2
    overrides = {}
    if fault == "wrongkey":
        overrides["truenas"] = {**nas_world.config()["truenas"], "apiKeyFile": nas_world.secret("badkey", "1-wrong")}
    else:
        nas_world.nas.fault = fault
    nas_world.start(**overrides)
    nas_world.send(notification(alert("NasStorageUsageHigh", {"hrStorageDescr": "tank", "severity": "warning",
                                                              "service": "storage"})))
    wait_for(lambda: any(expected in t for t in nas_world.chat_texts()), what="the report")
    assert nas_world.healthy() and nas_world.nas.deleted == []
    assert expected in nas_world.log()


# ------------------------------------------------------------------ disk usage: Loki's compactor, real Prometheus
def test_the_compactor_health_comes_from_a_real_prometheus(tmp_path):
    from http.server import BaseHTTPRequestHandler

    from tests.loopback import start_http, stop_http
    from tools.drill.processes import ManagedProcess, free_port, wait_ready

    now = time.time()
    exposition = (f"loki_compactor_apply_retention_last_successful_run_timestamp_seconds {now - 3 * 3600}\n"
                  f"loki_boltdb_shipper_compact_tables_operation_last_successful_run_timestamp_seconds {now - 3600}\n"
                  "loki_compactor_pending_delete_requests_count 2\n"
                  "loki_compactor_oldest_pending_delete_request_age_seconds 7200\n").encode()

    class Loki(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(exposition)

        def log_message(self, *args):
            pass

    loki = start_http(Loki)
    port = free_port()
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [{"job_name": "loki", "static_configs": [{"targets": [f"127.0.0.1:{loki.server_address[1]}"]}]}]}))
    prometheus = ManagedProcess("prometheus", ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                                               f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{port}"],
                                tmp_path / "prometheus.log").start()
    w = World(tmp_path)
    w.start_fakes()
    try:
        wait_ready(prometheus, f"http://127.0.0.1:{port}/-/ready")
        query = f"http://127.0.0.1:{port}/api/v1/query?query=loki_compactor_pending_delete_requests_count"
        wait_for(lambda: b'"result":[{' in urllib.request.urlopen(query).read(), 20, "the first scrape")
        w.start(prometheus={"url": f"http://127.0.0.1:{port}"},
                actions={**w.config()["actions"], "loki-compactor-report": {"mode": "enforce"}})
        w.send(notification(alert("PersistentVolumeUsageHigh", PV_FULL)))
        text = wait_for(lambda: next((t for t in w.chat_texts() if "Loki compactor health" in t), None), what="the report")
        assert "- retention last ran: 3.0h ago" in text
        assert "- compaction last ran: 1.0h ago" in text
        assert "- pending delete requests: 2" in text
        assert "- oldest pending delete request: 2.0h" in text
    finally:
        w.stop()
        prometheus.stop()
        stop_http(loki)
