"""Restore drills (services/recovery/drills.py): the service as a real process restores, boots, times and
destroys a guest's newest backup against the fake PVE and PBS. The fake PVE refuses, and the fixture
fails the test on, any state-changing call to a VMID outside the scratch range or to a foreign guest."""

from __future__ import annotations

import time
from datetime import datetime, timezone

import pytest

from tests.recovery_world import DRILL_ACTION as ACTION
from tests.recovery_world import SCRATCH, World, wait_for

NOW = time.time()
NEWEST = int(NOW - 3600)
GiB = 2**30
FIRST, LAST = SCRATCH


@pytest.fixture
def world(tmp_path):
    w = World(tmp_path)
    w.start_fakes()
    w.stage_restore_drills(NOW, NEWEST)
    yield w
    w.stop()
    assert w.pve.violations == [], "state-changing calls outside the scratch range or to a foreign guest"


def writes(world: World) -> list[tuple[str, str]]:
    return [(method, path) for method, path, _, _ in world.pve.requests if method != "GET"]


def result(world: World, step: str, guest: str = "vm/101", tier: str = "tier-1") -> float | None:
    return world.metric("recovery_restore_drill_last_result", guest=guest, tier=tier, step=step)


def test_a_drill_restores_the_newest_snapshot_isolated_boots_it_times_it_and_destroys_it(world):
    world.start_drills()
    done = world.drill_outcome()
    assert done["result"] == "ok", done
    [(node, kind, params, _)] = world.pve.restores
    stamp = datetime.fromtimestamp(NEWEST, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert (node, kind) == ("pve1", "qemu")
    assert params == {"vmid": str(FIRST), "archive": f"pbs-homelab:backup/vm/101/{stamp}", "unique": "1",
                      "storage": "local-lvm", "pool": "restore-drills", "tags": "restore-drill"}
    assert FIRST not in world.pve.guests
    # isolated before it ever ran: the NIC change comes before the start
    paths = [p for _, p in writes(world)]
    config = next(i for i, p in enumerate(paths) if p.endswith(f"/qemu/{FIRST}/config"))
    assert config < next(i for i, p in enumerate(paths) if p.endswith("/status/start"))
    put = next(form for method, path, _, form in world.pve.requests if method == "PUT")
    assert put == {"net0": "virtio=BC:24:11:00:00:01,bridge=vmbr0,firewall=1,link_down=1"}
    assert [m for m, p in writes(world)][-2:] == ["POST", "DELETE"]  # stop, then destroy
    destroy = next(q for method, _, q, _ in world.pve.requests if method == "DELETE")
    assert destroy == {"purge": ["1"], "destroy-unreferenced-disks": ["1"]}
    assert "QEMU guest agent answered" in done["why"]
    wait_for(lambda: result(world, "none") == 1, what="the result gauge")
    rto = world.metric("recovery_restore_drill_last_duration_seconds", guest="vm/101", tier="tier-1")
    assert 0 < rto < 10
    assert world.metric("recovery_restore_drill_interval_seconds", guest="vm/101", tier="tier-1") == 3600
    assert world.metric("recovery_restore_drill_last_success_timestamp_seconds", guest="vm/101", tier="tier-1") >= NOW
    logs = [a for a in world.decisions("report", action=ACTION) if a["why"].startswith("task log of step")]
    assert [a["why"].split(":")[0] for a in logs] == [f"task log of step {s}" for s in ("restore", "start", "stop", "destroy")]
    assert world.chat_texts() == []  # a drill that passes stays out of the room
    time.sleep(0.5)
    assert len(world.pve.restores) == 1  # the next one is due after the tier's interval


def test_a_live_restore_is_isolated_from_its_first_moment_and_up_before_its_data_is(world):
    world.pve.restore_default = ("OK", 1.0)
    world.start_drills(liveRestore=[101])
    done = world.drill_outcome()
    assert done["result"] == "ok" and "live-restore" in done["why"], done
    [(_, _, params, _)] = world.pve.restores
    assert params["live-restore"] == "1"
    assert params["net0"] == "virtio,bridge=vmbr0,firewall=1,link_down=1"  # no MAC: PVE makes a new one
    assert not any(p.endswith("/status/start") or p.endswith("/config") for _, p in writes(world))  # PVE starts it
    rto = world.metric("recovery_restore_drill_last_duration_seconds", guest="vm/101", tier="tier-1")
    assert rto < 1.0  # up while its data still streamed in: the restore task ran 1s
    assert FIRST not in world.pve.guests


def test_a_container_is_restored_with_restore_1_and_up_when_running(world):
    world.start_drills(guests=[105], intervals={"default": 3600})
    done = world.drill_outcome()
    assert done["result"] == "ok", done
    [(_, kind, params, _)] = world.pve.restores
    assert kind == "lxc" and params["restore"] == "1" and params["ostemplate"].startswith("pbs-homelab:backup/ct/105/")
    assert "running" in done["why"] and FIRST not in world.pve.guests


def test_the_agent_never_answering_times_out_destroys_the_guest_and_tells_the_room_with_the_log(world):
    world.pve.agent_delay = None
    world.start_drills()
    done = world.drill_outcome()
    assert done["result"] == "failed" and "at step agent" in done["why"]
    assert "no answer from the QEMU guest agent within 1.5s" in done["why"]
    assert FIRST not in world.pve.guests
    wait_for(lambda: result(world, "agent") == 0, what="the failed result")
    [text] = world.chat_texts()
    assert "Restore drill of vm/101 failed" in text and "`agent`" in text
    assert world.capture.pages() == []


def test_a_failing_restore_task_is_reported_with_its_log_and_what_it_left_is_destroyed(world):
    world.pve.restore_outcomes = [("command '/usr/bin/pbs-restore' failed: exit code 255", 0.2)]
    world.start_drills()
    done = world.drill_outcome()
    assert done["result"] == "failed" and "at step restore" in done["why"] and "exit code 255" in done["why"]
    assert FIRST not in world.pve.guests  # qemu-server leaves the VM of a failed restore ("NOT cleaned up")
    assert not any(p.endswith("/status/start") for _, p in writes(world))
    [text] = world.chat_texts()
    assert "TASK ERROR: command '/usr/bin/pbs-restore' failed" in text and "restore proxmox backup image" in text
    wait_for(lambda: result(world, "restore") == 0, what="the failed result")


def test_killed_mid_restore_the_restarted_service_destroys_the_scratch_guest_and_restores_nothing_again(world):
    world.pve.restore_default = None  # the restore runs until the test ends it
    world.start_drills()
    wait_for(lambda: world.pve.restores, what="the restore to start")
    wait_for(lambda: world.decisions("act", action=ACTION), what="the start to be recorded")
    time.sleep(0.3)
    world.kill()
    world.start()
    done = world.drill_outcome()
    assert done["result"] == "unknown" and "interrupted at step restore by a restart" in done["why"], done
    upid = world.pve.restores[0][3]
    assert world.pve.tasks[upid]["status"] == "interrupted by signal"  # its restore stopped, then the guest destroyed
    assert FIRST not in world.pve.guests
    assert len(world.pve.restores) == 1
    time.sleep(0.5)
    assert len(world.pve.restores) == 1


def test_a_foreign_guest_in_the_scratch_range_is_left_alone_and_the_drill_takes_the_next_vmid(world):
    world.pve.add_guest(FIRST, "pve1", status="running")
    world.pve.foreign = {FIRST}
    world.start_drills()
    done = world.drill_outcome()
    assert done["result"] == "ok", done
    assert world.pve.restores[0][2]["vmid"] == str(LAST)
    assert FIRST in world.pve.guests and LAST not in world.pve.guests
    assert any(f"VMID {FIRST} lies in the scratch range but is not ours" in a["why"] for a in world.decisions("skip"))


def test_no_free_scratch_vmid_refuses_the_drill(world):
    world.pve.add_guest(FIRST, "pve1")
    world.pve.foreign = {FIRST}
    world.start_drills(vmidRange={"first": FIRST, "last": FIRST})
    done = world.drill_outcome()
    assert done["result"] == "failed" and "at step vmid" in done["why"]
    assert writes(world) == [] and FIRST in world.pve.guests


def test_a_scratch_storage_too_small_for_the_snapshot_refuses_the_drill(world):
    world.pve.add_storage("local-lvm", "pve1", 100 * GiB, 3 * GiB)  # the snapshot is 3 GiB; 3.6 needed
    world.start_drills()
    done = world.drill_outcome()
    assert done["result"] == "failed" and "at step storage" in done["why"] and "refused" in done["why"]
    assert writes(world) == []
    wait_for(lambda: result(world, "storage") == 0, what="the failed result")


def test_dry_run_plans_the_drill_and_changes_nothing(world):
    world.start_drills(mode="dry-run")
    dry = wait_for(lambda: world.decisions("dry-run", action=ACTION), what="the dry run")
    assert "would restore pbs-homelab:backup/vm/101/" in dry[0]["why"] and f"into VMID {FIRST}" in dry[0]["why"]
    time.sleep(0.5)
    assert writes(world) == []
    assert world.metric("recovery_actions_total", action=ACTION, result="dry-run") == 1


def test_a_scratch_guest_left_behind_is_destroyed_at_start_and_a_foreign_one_is_not(world):
    world.pve.add_guest(LAST, "pve1", pool="restore-drills", tags="restore-drill", status="running")
    world.pve.add_guest(FIRST, "pve1", status="running")  # in the range, not ours
    world.pve.foreign = {FIRST}
    world.start_drills(guests=[105], intervals={"default": 3600}, vmidRange={"first": FIRST, "last": LAST})
    wait_for(lambda: LAST not in world.pve.guests, what="the leftover to be destroyed")
    wait_for(lambda: any("left behind: torn down" in a["why"] for a in world.decisions("verify", action=ACTION)),
             what="the teardown's audit line")
    assert FIRST in world.pve.guests


def test_a_drill_over_its_maximum_duration_is_stopped_and_torn_down(world):
    world.pve.restore_default = None  # the restore never ends by itself
    world.start_drills(maxDurationSeconds=1)
    done = world.drill_outcome()
    assert done["result"] == "failed" and "at step restore" in done["why"] and "maximum duration (1s)" in done["why"]
    assert world.pve.tasks[world.pve.restores[0][3]]["status"] == "interrupted by signal"
    assert FIRST not in world.pve.guests


def test_the_kill_switch_stops_the_drills(world):
    world.kill_switch.write_text("maintenance\n")
    world.start_drills()
    time.sleep(1)
    assert writes(world) == [] and world.decisions("queued") == []


def test_no_drill_starts_while_a_backup_runs_on_the_node(world):
    running = world.pve.add_task("pve1", "vzdump", "101", "root@pam", time.time())
    world.start_drills()
    wait_for(lambda: any("a backup runs on pve1" in a["why"] for a in world.decisions("defer")), what="the drill to wait")
    assert writes(world) == []
    world.pve.finish(running, "OK")
    assert world.drill_outcome()["result"] == "ok"
