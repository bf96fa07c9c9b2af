"""The pure rules of the recovery service: what "Run now" posts, which guests a job covers, which
NAS snapshots may go, what counts as a successful task."""

from __future__ import annotations

from services.recovery.proxmox import included_guests, run_now_params, task_succeeded
from services.recovery.truenas import Snapshot, prune_plan

RESOURCES = [
    {"type": "node", "node": "pve1", "status": "online"},
    {"type": "qemu", "vmid": 100, "node": "pve1", "pool": "prod"},
    {"type": "lxc", "vmid": 101, "node": "pve2"},
    {"type": "qemu", "vmid": 102, "node": "pve2", "pool": "prod"},
]


def test_run_now_drops_the_schedule_and_prints_property_strings():
    job = {"id": "backup-1", "type": "vzdump", "schedule": "21:00", "enabled": 1, "node": "pve1", "comment": "x",
           "next-run": 1, "repeat-missed": 0, "starttime": "21:00", "dow": "mon", "storage": "pbs", "vmid": "100",
           "prune-backups": {"keep-last": 3, "keep-daily": 7}, "all": True}
    assert run_now_params(job) == {"storage": "pbs", "vmid": "100", "prune-backups": "keep-last=3,keep-daily=7", "all": 1}
    assert run_now_params({"vmid": "100"})["all"] == 0


def test_included_guests_by_vmid_all_pool_and_node():
    assert included_guests({"vmid": "100,101,999"}, RESOURCES) == ({"pve1": [100], "pve2": [101]}, [999])
    assert included_guests({"all": 1, "exclude": "101"}, RESOURCES) == ({"pve1": [100], "pve2": [102]}, [])
    assert included_guests({"pool": "prod"}, RESOURCES) == ({"pve1": [100], "pve2": [102]}, [])
    assert included_guests({"all": 1, "node": "pve2"}, RESOURCES) == ({"pve2": [101, 102]}, [])


def test_task_success_is_ok_or_warnings():
    assert task_succeeded("OK") and task_succeeded("WARNINGS: 3")
    for status in ("job errors", "unknown", "WARNINGS", "WARNINGS: x", "", None, "backup failed: connection reset"):
        assert not task_succeeded(status)


DAY = 86400


def snap(name, day, txg, held=False, dataset="tank/logs"):
    return Snapshot(f"{dataset}@{name}", dataset, 100 * DAY - day * DAY, txg, held)


def test_prune_keeps_holds_replication_bases_and_the_newest():
    snapshots = [snap("a", 50, 1), snap("b", 40, 2, held=True), snap("c", 30, 3), snap("d", 25, 4), snap("e", 1, 5),
                 snap("f", 0, 6), snap("x", 60, 1, dataset="tank/other")]
    tasks = [{"name": "r1", "direction": "PUSH", "source_datasets": ["tank"], "recursive": True, "enabled": True,
              "state": {"last_snapshot": "tank@d"}}]
    delete, kept = prune_plan(snapshots, tasks, "tank/logs", 100 * DAY - 21 * DAY, keep_newest=2)
    assert [s.id for s in delete] == ["tank/logs@c", "tank/logs@a"]
    assert kept["tank/logs@b"] == "has a hold"
    assert kept["tank/logs@d"].startswith("replication task r1 still needs it")
    assert kept["tank/logs@f"] == "one of the newest 2"


def test_a_replication_task_that_never_sent_the_dataset_keeps_everything():
    snapshots = [snap("a", 50, 1), snap("b", 40, 2)]
    tasks = [{"name": "r1", "source_datasets": ["tank/logs"], "state": {}}]
    assert prune_plan(snapshots, tasks, "tank/logs", 100 * DAY, keep_newest=1)[0] == []
    pulls = [{"name": "r2", "direction": "PULL", "source_datasets": ["tank/logs"], "state": {}},
             {"name": "r3", "source_datasets": ["tank/logs"], "enabled": False, "state": {}}]
    assert [s.id for s in prune_plan(snapshots, pulls, "tank/logs", 100 * DAY, keep_newest=1)[0]] == ["tank/logs@a"]
