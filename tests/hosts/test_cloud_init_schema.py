"""Every rendered cloud-config passes cloud-init's own schema validator (Debian's cloud-init)."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tests.stacks import ROOT, homelab_sections
from tools import preview
from tools.offline_engine import run_program

CLOUD_INIT = shutil.which("cloud-init") or "/usr/bin/cloud-init"


@pytest.fixture(scope="module")
def user_data_files(tmp_path_factory):
    out = preview.render(run_program(ROOT / "Pulumi.homelab.yaml"), tmp_path_factory.mktemp("build"))
    return {p.parent.name: p for p in (out / "hosts").glob("*/user-data.yaml")}


def test_a_cloud_config_per_vm(user_data_files):
    assert set(user_data_files) == set(homelab_sections()["hosts"])


@pytest.mark.parametrize("vm", sorted(homelab_sections()["hosts"]))
def test_cloud_init_schema_accepts(user_data_files, vm):
    result = subprocess.run([CLOUD_INIT, "schema", "--config-file", str(user_data_files[vm])],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Valid cloud-config" in result.stdout


def test_validator_rejects_a_broken_cloud_config(tmp_path, user_data_files):
    """The check is real: the same validator refuses a wrong type in our own document."""
    broken = tmp_path / "user-data.yaml"
    broken.write_text(user_data_files["pbs"].read_text().replace("ssh_pwauth: false", "ssh_pwauth: [no]"))
    result = subprocess.run([CLOUD_INIT, "schema", "--config-file", str(broken)], capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "ssh_pwauth" in result.stdout + result.stderr
