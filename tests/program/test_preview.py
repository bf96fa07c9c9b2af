"""The offline preview as a user runs it: table, build/<stack>/ artifacts, clean errors, no secrets."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.stacks import ROOT, homelab_sections, write_stack
from tools import preview
from tools.offline_engine import run_program

SECRET_VALUE = "K10sup3r-s3cret-join-token::server:do-not-leak"


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tools.preview", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("build")
    result = _run_cli("--stack", "homelab", "--out", str(out))
    assert result.returncode == 0, result.stderr
    return result, out / "homelab"


def test_table_lists_every_vm(rendered):
    result, _ = rendered
    for name, host in homelab_sections()["hosts"].items():
        line = next(line for line in result.stdout.splitlines() if line.startswith("proxmoxve:VmLegacy") and f" hosts-{name} " in line)
        assert f"id={host['vmId']}" in line and "protected" in line


def test_resources_json_has_every_resource_with_parent_and_inputs(rendered):
    result, out = rendered
    doc = json.loads((out / "resources.json").read_text())
    names = {(r["type"], r["name"]) for r in doc["resources"]}
    assert ("homelab:infra:ProxmoxHosts", "hosts") in names
    count = int(result.stdout.split(" resources would be created")[0].rsplit("\n", 1)[-1])
    assert count == len(doc["resources"])
    for r in doc["resources"]:
        assert r["urn"].startswith("urn:pulumi:homelab::")
        if r["type"].startswith("proxmoxve:"):
            assert r["parent"].endswith("::hosts")
    assert doc["outputs"]["vmAddresses"]["pbs"] == homelab_sections()["hosts"]["pbs"]["address"]


def test_unset_secret_is_a_marked_placeholder(rendered):
    _, out = rendered
    text = (out / "hosts" / "prom" / "user-data.yaml").read_text()
    assert "<secret k3sToken>" in text


def test_secret_values_never_reach_build_or_screen(tmp_path, capsys):
    recording = run_program(ROOT / "Pulumi.homelab.yaml", {"k3sToken": SECRET_VALUE})
    snippet = recording.named("proxmoxve:index/fileLegacy:FileLegacy", "hosts-prom-user-data")
    assert SECRET_VALUE in recording.raw_inputs[snippet.urn]["sourceRaw"]["data"], "the VM does get the token"
    out = preview.render(recording, tmp_path)
    preview.print_table(recording)
    printed = capsys.readouterr().out
    assert SECRET_VALUE not in printed
    files = [p for p in out.rglob("*") if p.is_file()]
    assert files
    for path in files:
        assert SECRET_VALUE not in path.read_text(), path


def test_stack_file_option_and_stack_name(tmp_path):
    stack_file = write_stack(tmp_path, stack="lab2")
    result = _run_cli("--stack-file", str(stack_file), "--out", str(tmp_path / "build"), "--quiet")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "build" / "lab2" / "resources.json").is_file()


def test_bad_config_fails_cleanly_before_any_resource(tmp_path):
    def broken(cfg):
        cfg["hosts"]["pbs"]["memoryMb"] = 1024
        cfg["hosts"]["loki"]["node"] = "nowhere"

    result = _run_cli("--stack-file", str(write_stack(tmp_path, broken)), "--out", str(tmp_path / "build"))
    assert result.returncode == 2
    assert "hosts.pbs.memoryMb: must be >= 2048" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "build").exists()


def test_program_registers_nothing_on_bad_config(tmp_path):
    import pulumi

    from tools.offline_engine import Recording

    stack_file = write_stack(tmp_path, lambda cfg: cfg["hosts"]["prom"].update(cores=0))
    recording = Recording("homelab-observability", "test")
    with pytest.raises(pulumi.RunError) as caught:
        run_program(stack_file, recording=recording)
    assert "hosts.prom.cores: must be >= 1" in str(caught.value)
    assert recording.resources == []


def test_secret_written_in_clear_is_refused(tmp_path):
    import pulumi

    stack_file = write_stack(tmp_path, lambda cfg: cfg.update(k3sToken="plain-text-token"))
    with pytest.raises(pulumi.RunError) as caught:
        run_program(stack_file)
    assert "k3sToken: is a secret" in str(caught.value)
    assert "plain-text-token" not in str(caught.value)


@pytest.mark.parametrize("name", ["homelab.yaml", "Pulumi.yml", "Pulumi..yaml", "stack-homelab.yaml"])
def test_a_misnamed_stack_file_is_a_clear_error(tmp_path, name):
    stack_file = write_stack(tmp_path).rename(tmp_path / name)
    result = _run_cli("--stack-file", str(stack_file), "--out", str(tmp_path / "build"))
    assert result.returncode == 2
    assert "must be named Pulumi.<stack>.yaml" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "build").exists()


PROVIDER_FIXTURE = ROOT / "tests" / "provider_fixtures" / "program.py"


def test_an_input_a_provider_would_refuse_fails_with_the_resource_and_the_problem():
    from tools.offline_engine import ProviderCheckError, Recording

    recording = Recording("homelab-observability", "homelab")
    with pytest.raises(ProviderCheckError) as caught:
        run_program(ROOT / "Pulumi.homelab.yaml", program=PROVIDER_FIXTURE, recording=recording)
    assert [str(f) for f in caught.value.findings] == [
        'refused-vm (proxmoxve:index/vmLegacy:VmLegacy): cpu.cores: must be an integer, not string "4"',
        "refused-vm (proxmoxve:index/vmLegacy:VmLegacy): disks[0].sizee: is not a property of this type "
        "(known: aio, backup, cache, datastoreId, discard, fileFormat, fileId, importFrom, interface, iothread, "
        "pathInDatastore, queues, replicate, serial, size, speed, ssd)",
    ]
    # A deprecation alone is no reason to fail: it is a warning, once for all its resources.
    assert recording.warnings() == [
        "proxmoxve:download/fileLegacy:FileLegacy is deprecated: Use `download.File` instead. This resource will "
        "be removed in v1.0. (deprecated-image-pve1, deprecated-image-pve2)"]


def test_the_preview_exits_2_on_a_refused_input_and_renders_nothing(tmp_path, monkeypatch, capsys):
    import functools

    monkeypatch.setattr(preview, "run_program", functools.partial(run_program, program=PROVIDER_FIXTURE))
    status = preview.main(["--stack", "homelab", "--out", str(tmp_path / "build")])
    err = capsys.readouterr().err
    assert status == 2
    assert err.startswith("error: the providers would refuse 2 input(s):\n")
    assert "  - refused-vm (proxmoxve:index/vmLegacy:VmLegacy): cpu.cores: must be an integer" in err
    assert "Traceback" not in err
    assert not (tmp_path / "build").exists()


def test_a_deprecation_is_a_warning_printed_once(tmp_path, monkeypatch, capsys):
    import functools

    # The refusals set aside, what is left of the fixture is its two deprecated images.
    monkeypatch.setattr(preview, "run_program",
                        functools.partial(run_program, program=PROVIDER_FIXTURE, check_inputs=False))
    status = preview.main(["--stack", "homelab", "--out", str(tmp_path / "build"), "--quiet"])
    err = capsys.readouterr().err
    assert status == 0
    assert err.count("warning: ") == 1
    assert "warning: proxmoxve:download/fileLegacy:FileLegacy is deprecated" in err
    assert "(deprecated-image-pve1, deprecated-image-pve2)" in err


def test_the_homelab_stack_is_what_its_providers_accept(rendered):
    result, _ = rendered
    assert "error" not in result.stderr and "warning" not in result.stderr, result.stderr


def test_the_same_stack_renders_the_same_bytes(tmp_path):
    """A preview is what a review diffs: nothing in build/ may depend on the run (a value unknown in a
    preview, such as a Loki tenant's generated password, once rendered as the SDK object's address)."""
    runs = []
    for i in range(2):
        recording = run_program(ROOT / "Pulumi.homelab.yaml")
        out = preview.render(recording, tmp_path / str(i))
        runs.append({p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()})
    assert runs[0].keys() == runs[1].keys()
    assert [path for path in runs[0] if runs[0][path] != runs[1][path]] == []
