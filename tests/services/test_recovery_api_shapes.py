"""The fakes answer as the real APIs do: each fake's answers against the shapes recorded from PVE's, PBS'
and TrueNAS' own source (tests/fixtures/api_shapes/*.yml, each naming its source files and versions)."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import websocket
import yaml

from tests.fake_pbs import TOKEN as PBS_TOKEN
from tests.fake_pbs import FakePBS, verify_new_worker_id
from tests.fake_pve import (BACKUP_TOKEN, DESTROY_PARAMS, DRILL_TOKEN, LXC_CREATE_PARAMS, QEMU_CREATE_PARAMS, READ_TOKEN,
                            FakePVE)
from tests.fake_truenas import API_KEY, FakeTrueNAS

SHAPES = Path(__file__).parent.parent / "fixtures" / "api_shapes"


def shapes(name: str) -> dict:
    return yaml.safe_load((SHAPES / f"{name}.yml").read_text())


def http(url: str, header: str, method: str = "GET", form: bytes | None = None) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, data=form, method=method, headers={"Authorization": header})
    try:
        with urllib.request.urlopen(request, timeout=5) as answer:
            return answer.status, answer.reason, answer.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.reason, exc.read()


# ------------------------------------------------------------------ PVE
@pytest.fixture
def pve():
    fake = FakePVE()
    fake.add_guest(101, "pve1")
    fake.add_pbs_storage("pbs-homelab", "homelab")
    fake.start()
    yield fake
    fake.stop()


def pve_get(fake: FakePVE, path: str, token: str = READ_TOKEN) -> tuple[int, str, bytes]:
    return http(f"{fake.url}/api2/json{path}", f"PVEAPIToken={token}")


def test_fake_pve_task_lists_and_status_have_pves_fields_and_values(pve):
    want = shapes("pve")
    now = time.time()
    running = pve.add_task("pve1", "vzdump", "101", "recovery@pve!backup", now - 60)
    ended = pve.add_task("pve1", "vzdump", "", "root@pam", now - 600)
    pve.finish(ended, "WARNINGS: 2", now - 300, archived=False)
    archived = pve.add_task("pve1", "vzdump", "101", "recovery@pve!backup", now - 900, now - 800, "job errors")
    for upid in (running, ended, archived):
        assert re.fullmatch(want["upid"], upid)
    _, _, body = pve_get(pve, "/nodes/pve1/tasks?source=active")
    active = {t["upid"]: t for t in json.loads(body)["data"]}
    shape = want["tasks"]["active_running"]
    assert sorted(active[running]) == sorted(shape["keys"])
    assert active[running]["status"] == shape["status"] and active[running]["saved"] == shape["saved"]
    assert active[running]["user"] == "recovery@pve!backup"  # the active list keeps the token in user
    assert sorted(active[ended]) == sorted(want["tasks"]["active_ended"]["keys"])
    assert archived not in active
    _, _, body = pve_get(pve, "/nodes/pve1/tasks")
    document = json.loads(body)
    listed = {t["upid"]: t for t in document["data"]}
    assert list(listed) == [archived] and document["total"] == 1
    shape = want["tasks"]["archived"]
    assert sorted(listed[archived]) == sorted(shape["keys"] + shape["token_keys"])
    assert (listed[archived]["user"], listed[archived]["tokenid"]) == ("recovery@pve", "backup")
    shape = want["task_status"]
    for upid, state in ((running, "running"), (archived, "stopped")):
        _, _, body = pve_get(pve, f"/nodes/pve1/tasks/{upid}/status")
        status = json.loads(body)["data"]
        assert sorted(status) == sorted(shape["keys"] + shape["token_keys"] + shape[state].get("keys", []))
        assert status["status"] == shape[state]["status"] and status["user"] == "recovery@pve"
    # errors=1 keeps a running task (no status yet: "unknown"), as node_tasks' statusfilter does
    _, _, body = pve_get(pve, "/nodes/pve1/tasks?source=all&errors=1")
    assert {t["upid"] for t in json.loads(body)["data"]} == {running, ended, archived}


def test_fake_pve_errors_have_pves_status_lines_and_bodies(pve):
    want = shapes("pve")["errors"]
    code, reason, body = pve_get(pve, "/nodes/pve1/tasks?bogus=1")
    assert (code, reason) == (want["parameter"]["status"], want["parameter"]["reason"])
    document = json.loads(body)
    assert sorted(document) == sorted(want["parameter"]["body_keys"]) and document["data"] is None
    assert "bogus" in document["errors"]
    pve.tokens[BACKUP_TOKEN] = set()
    code, reason, body = http(f"{pve.url}/api2/json/nodes/pve1/vzdump", f"PVEAPIToken={BACKUP_TOKEN}", "POST",
                              b"vmid=101&storage=pbs-homelab")
    assert code == want["permission"]["status"] and reason.startswith(want["permission"]["reason_starts"])
    assert sorted(json.loads(body)) == sorted(want["permission"]["body_keys"])
    assert json.loads(body)["message"].startswith(reason)  # the whole message; the status line its first line
    pve.http_server_version = (5, 1)
    code, _, body = http(f"{pve.url}/api2/json/nodes/pve1/vzdump", f"PVEAPIToken={BACKUP_TOKEN}", "POST", b"vmid=101")
    assert code == 403 and sorted(json.loads(body)) == want["before_5_2_body_keys"]
    code, reason, body = pve_get(pve, "/cluster/resources", token="nobody@pve!x=0")
    assert code == want["auth"]["status"] and body.decode() == want["auth"]["body"] and reason


# ------------------------------------------------------------------ PBS
def test_fake_pbs_tasks_have_pbs_fields_and_values():
    want = shapes("pbs")
    fake = FakePBS(node="pbs")
    fake.tokens = {"recovery@pbs!sync:s-0000": "recovery@pbs!sync"}
    now = time.time()
    running = fake.add_task("backup", "homelab:vm/101", now - 60, user="recovery@pbs!sync")
    ended = fake.add_task("verify", verify_new_worker_id("homelab", "vm/101", int(now - 600)), now - 600, now - 500)
    fake.start()
    try:
        _, _, body = http(f"{fake.url}/api2/json/nodes/pbs/tasks", f"PBSAPIToken={PBS_TOKEN}")
        listed = {t["upid"]: t for t in json.loads(body)["data"]}
        assert sorted(listed[running]) == sorted(want["tasks"]["running"]["keys"])
        assert listed[running]["user"] == "recovery@pbs!sync"
        assert sorted(listed[ended]) == sorted(want["tasks"]["ended"]["keys"])
        assert listed[ended]["worker_type"] == want["verify_new"]["worker_type"]
        assert re.fullmatch(want["verify_new"]["worker_id"], listed[ended]["worker_id"])
        shape = want["task_status"]
        for upid, state, token_keys in ((running, "running", shape["token_keys"]), (ended, "stopped", [])):
            _, _, body = http(f"{fake.url}/api2/json/nodes/pbs/tasks/{upid}/status", f"PBSAPIToken={PBS_TOKEN}")
            status = json.loads(body)["data"]
            assert sorted(status) == sorted(shape["keys"] + token_keys + shape[state].get("keys", []))
            assert status["status"] == shape[state]["status"]
    finally:
        fake.stop()


# ------------------------------------------------------------------ TrueNAS
def rpc(ws, method: str, params: list, ident: list = [0]):  # noqa: B006 (a request counter)
    ident[0] += 1
    ws.send(json.dumps({"jsonrpc": "2.0", "id": ident[0], "method": method, "params": params}))
    while True:
        message = json.loads(ws.recv())
        if message.get("id") == ident[0]:
            return message


@pytest.mark.parametrize("version", [(25, 4), (25, 10), (26, 0)])
def test_fake_truenas_snapshots_holds_and_busy_errors_per_version(version):
    want = shapes("truenas")
    per = want["versions"][f"{version[0]}.{version[1]}"]
    fake = FakeTrueNAS(version=version)
    fake.add_snapshot("tank/logs", "a", 1000, 10, held=True)
    fake.add_snapshot("tank/logs", "b", 2000, 20, tags=("keep",))
    fake.add_snapshot("tank/logs", "c", 3000, 30)
    fake.start()
    ws = websocket.create_connection(fake.url, timeout=5)
    try:
        assert rpc(ws, "auth.login_with_api_key", [API_KEY])["result"] is True
        namespace = per["namespace"]
        other = "zfs.snapshot" if namespace == "pool.snapshot" else "pool.snapshot"
        assert rpc(ws, f"{other}.query", [])["error"] == {**want["method_not_found"]}
        answer = rpc(ws, f"{namespace}.query", [[["dataset", "=", "tank/logs"]],
                                                 {"extra": {"holds": True, "properties": ["creation", "userrefs"]}}])
        entries = {e["snapshot_name"]: e for e in answer["result"]}
        for entry in entries.values():
            assert sorted(entry) == sorted(want["snapshot_keys"])
            assert all(sorted(p) == sorted(want["property_keys"]) for p in entry["properties"].values())
        assert {n: e["properties"]["userrefs"]["rawvalue"] for n, e in entries.items()} == {"a": "1", "b": "1", "c": "0"}
        assert entries["a"]["holds"] == {"truenas": 1} and entries["c"]["holds"] == {}
        assert entries["b"]["holds"] == ({} if per["holds"] == "truenas_only" else {"keep": 1})
        error = rpc(ws, f"{namespace}.delete", ["tank/logs@b"])["error"]
        assert error["code"] == per["busy_delete"]["code"]
        assert error["data"]["errname"] == per["busy_delete"]["errname"]
        assert error["data"]["reason"].startswith(per["busy_delete"]["reason_starts"])
        assert rpc(ws, f"{namespace}.delete", ["tank/logs@c"])["result"] is True
    finally:
        ws.close()
        fake.stop()


# ------------------------------------------------------------------ restore drills
def pve_call(fake: FakePVE, method: str, path: str, form: bytes | None = None, token: str = DRILL_TOKEN):
    return http(f"{fake.url}/api2/json{path}", f"PVEAPIToken={token}", method, form)


@pytest.mark.parametrize("kind", ["qemu", "lxc"])
def test_fake_pve_restore_start_agent_stop_destroy_answer_as_qemu_server_and_pve_container(pve, kind):
    want = shapes("pve")["restore_drills"]
    pve.add_guest(105, "pve1", kind="lxc")
    pve.add_storage("local-lvm", "pve1", 2**40, 2**39)
    source, archive = (101, "archive") if kind == "qemu" else (105, "ostemplate")
    volid = f"pbs-homelab:backup/{'vm' if kind == 'qemu' else 'ct'}/{source}/2026-12-01T02:00:00Z"
    assert re.fullmatch(want["pbs_volid"], volid)
    code, reason, body = pve_call(pve, "POST", f"/nodes/pve1/{kind}", b"vmid=9900&bogus=1&" + f"{archive}={volid}".encode())
    assert (code, reason) == (400, "Parameter verification failed.") and "bogus" in json.loads(body)["errors"]
    assert pve.restores == []
    known = {"qemu": QEMU_CREATE_PARAMS, "lxc": LXC_CREATE_PARAMS}[kind]
    assert known - {"tags"} == set(want["create_params"][kind]) and DESTROY_PARAMS[kind] == set(want["destroy_params"][kind])
    form = f"vmid=9900&{archive}={volid}&unique=1&storage=local-lvm&pool=restore-drills&tags=restore-drill"
    if kind == "lxc":
        form += "&restore=1"
    upids = {}
    _, _, body = pve_call(pve, "POST", f"/nodes/pve1/{kind}", form.encode())
    upids["restore"] = json.loads(body)["data"]
    _, reason, _ = pve_call(pve, "POST", f"/nodes/pve1/{kind}", form.encode())
    assert "9900 already exists" in reason  # never over an existing guest without force
    wait_for_stopped(pve, upids["restore"])
    _, _, body = pve_call(pve, "GET", f"/nodes/pve1/{kind}/9900/config")
    assert json.loads(body)["data"]["tags"] == "restore-drill"
    upids["start"] = json.loads(pve_call(pve, "POST", f"/nodes/pve1/{kind}/9900/status/start")[2])["data"]
    wait_for_stopped(pve, upids["start"])
    _, reason, _ = pve_call(pve, "DELETE", f"/nodes/pve1/{kind}/9900?purge=1")
    assert reason == want["errors"]["destroy_running"][kind].format(vmid=9900)
    if kind == "qemu":
        pve.agent_delay = 0
        code, _, body = pve_call(pve, "POST", "/nodes/pve1/qemu/9900/agent/ping")
        assert code == 200 and list(json.loads(body)["data"]) == [want["agent_ping"]["result_key"]]
    upids["stop"] = json.loads(pve_call(pve, "POST", f"/nodes/pve1/{kind}/9900/status/stop")[2])["data"]
    wait_for_stopped(pve, upids["stop"])
    if kind == "qemu":
        assert pve_call(pve, "POST", "/nodes/pve1/qemu/9900/agent/ping")[1] == want["errors"]["not_running"].format(vmid=9900)
    code, _, body = pve_call(pve, "DELETE", f"/nodes/pve1/{kind}/9900?purge=1&destroy-unreferenced-disks=1")
    upids["destroy"] = json.loads(body)["data"]
    wait_for_stopped(pve, upids["destroy"])
    for what, upid in upids.items():
        assert re.fullmatch(shapes("pve")["upid"], upid)
        assert upid.split(":")[5:7] == [want["tasks"][kind][what], "9900"]
    _, reason, _ = pve_call(pve, "GET", f"/nodes/pve1/{kind}/9900/config")
    assert reason == want["errors"]["no_config"].format(node="pve1", dir="qemu-server" if kind == "qemu" else "lxc", vmid=9900)


def test_fake_pve_agent_and_lock_errors_are_qemu_servers(pve):
    want = shapes("pve")["restore_drills"]["errors"]
    pve.restore_default = None
    pve.add_storage("local-lvm", "pve1", 2**40, 2**39)
    pve_call(pve, "POST", "/nodes/pve1/qemu", b"vmid=9900&archive=pbs-homelab:backup/vm/101/2026-12-01T02:00:00Z")
    assert pve_call(pve, "DELETE", "/nodes/pve1/qemu/9900")[1] == want["locked"].format(label="VM", lock="create")
    pve.add_guest(102, "pve1", config={"agent": None})
    del pve.guests[102]["config"]["agent"]
    assert pve_call(pve, "POST", "/nodes/pve1/qemu/102/agent/ping")[1] == want["no_agent"]
    pve.agent_delay = None
    assert pve_call(pve, "POST", "/nodes/pve1/qemu/101/agent/ping")[1] == want["agent_down"]


def wait_for_stopped(fake: FakePVE, upid: str) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if "endtime" in fake.tasks[upid]:
            assert fake.tasks[upid]["status"] == "OK"
            return
        time.sleep(0.02)
    raise AssertionError(f"{upid} did not end")


def test_fake_pbs_snapshots_have_pbs_fields_and_narrow_to_one_group():
    want = shapes("pbs")["snapshot"]
    fake = FakePBS(node="pbs")
    fake.add_datastore("homelab", 2**40, 2**39)
    fake.add_snapshot("homelab", "vm", "101", 1000)
    fake.add_snapshot("homelab", "ct", "105", 2000)
    fake.start()
    try:
        query = "backup-type=vm&backup-id=101"
        _, _, body = http(f"{fake.url}/api2/json/admin/datastore/homelab/snapshots?{query}", f"PBSAPIToken={PBS_TOKEN}")
        [item] = json.loads(body)["data"]
        assert set(want["keys"]) <= set(item) <= set(want["keys"] + want["optional_keys"])
        assert sorted(item["verification"]) == sorted(want["verification_keys"])
        assert item["verification"]["state"] in want["verification_states"]
        assert (item["backup-type"], item["backup-id"], item["backup-time"]) == ("vm", "101", 1000)
        code, _, _ = http(f"{fake.url}/api2/json/admin/datastore/homelab/snapshots?bogus=1", f"PBSAPIToken={PBS_TOKEN}")
        assert code == 400
    finally:
        fake.stop()
