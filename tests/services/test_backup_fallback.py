"""playbooks/backup-fallback.yml: linted, syntax-checked, and run for real against the fake PVE API."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml

from contracts.fallback import inventory
from tests.conftest import run_tool
from tests.fake_pve import FALLBACK_TOKEN, READ_TOKEN, FakePVE

ROOT = Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "backup-fallback.yml"
BIN = Path(sys.executable).parent


@pytest.fixture
def pve(tmp_path):
    fake = FakePVE()
    fake.add_guest(101, "pve1")
    fake.add_guest(102, "pve2", kind="lxc")
    fake.start()
    yield fake
    fake.stop()


def write_inventory(tmp_path: Path, pve: FakePVE, token: str = FALLBACK_TOKEN) -> Path:
    token_file = tmp_path / "pve-fallback-token"
    token_file.write_text(token + "\n")
    path = tmp_path / "inventory.yml"
    path.write_text(yaml.safe_dump(inventory(pve_url=pve.url, token_file=str(token_file), verify_tls=True, storage="nas-fallback",
                                             nas_server="192.168.30.5", nas_export="/mnt/tank/pve-fallback", poll_seconds=1,
                                             poll_retries=20)))
    return path


def play(tmp_path: Path, inv: Path, guests: list[int]):
    extra = {"recovery_job": "backup/homelab/vm/101", "recovery_guests": guests,
             "recovery_result_file": str(tmp_path / "result.json"), "hide_secrets": False}
    return run_tool(BIN / "ansible-playbook", "-i", inv, PLAYBOOK, "-e", json.dumps(extra), cwd=ROOT)


def test_ansible_lint_passes_the_production_profile():
    done = run_tool(BIN / "ansible-lint", "--offline", "--nocolor", "--profile", "production", PLAYBOOK, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_syntax_check(tmp_path, pve):
    done = run_tool(BIN / "ansible-playbook", "-i", write_inventory(tmp_path, pve), PLAYBOOK, "--syntax-check", cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def test_backs_the_guests_up_to_a_new_nfs_storage_and_reports_the_restore_points(tmp_path, pve):
    pve.vzdump_outcomes["pve1"] = [("OK", 0.3)]
    pve.vzdump_outcomes["pve2"] = [("WARNINGS: 1", 0.3)]
    inv = write_inventory(tmp_path, pve)
    done = play(tmp_path, inv, [101, 102])
    assert done.returncode == 0, done.stdout + done.stderr
    assert pve.storages["nas-fallback"] == {"storage": "nas-fallback", "type": "nfs", "server": "192.168.30.5",
                                            "export": "/mnt/tank/pve-fallback", "content": "backup", "path": "/mnt/pve/nas-fallback"}
    posts = [(node, params) for node, params, _ in pve.vzdump_posts]
    assert posts == [("pve1", {"vmid": "101", "storage": "nas-fallback", "mode": "snapshot", "compress": "zstd"}),
                     ("pve2", {"vmid": "102", "storage": "nas-fallback", "mode": "snapshot", "compress": "zstd"})]
    result = json.loads((tmp_path / "result.json").read_text())
    points = {p["vmid"]: (p["node"], p["volid"]) for p in result["restore_points"]}
    assert points[101][0] == "pve1" and points[101][1].startswith("nas-fallback:backup/vzdump-qemu-101-")
    assert points[102][0] == "pve2" and points[102][1].startswith("nas-fallback:backup/vzdump-lxc-102-")


def test_a_failed_vzdump_fails_the_play_with_its_exitstatus(tmp_path, pve):
    pve.storages["nas-fallback"] = {"storage": "nas-fallback", "type": "nfs", "server": "192.168.30.5", "export": "/x"}
    pve.vzdump_outcomes["pve1"] = [("job errors", 0.2)]
    done = play(tmp_path, write_inventory(tmp_path, pve), [101])
    assert done.returncode != 0
    assert not [r for r in pve.requests if r[0] == "POST" and r[1] == "/api2/json/storage"]  # it existed already
    assert "vzdump of guest 101 ended job errors" in done.stdout
    assert not (tmp_path / "result.json").exists()


def test_a_token_without_storage_rights_fails_clearly(tmp_path, pve):
    done = play(tmp_path, write_inventory(tmp_path, pve, token=READ_TOKEN), [101])
    assert done.returncode != 0
    assert "Permission check failed (/storage, Datastore.Allocate)" in done.stdout
