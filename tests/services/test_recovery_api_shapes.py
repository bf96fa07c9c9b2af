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
from tests.fake_pve import BACKUP_TOKEN, READ_TOKEN, FakePVE
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
