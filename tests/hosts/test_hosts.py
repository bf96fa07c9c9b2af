"""The Proxmox hosts as the program registers them on Pulumi's mock engine."""

from __future__ import annotations

import pytest
import yaml

from tests.stacks import HOMELAB, homelab_sections, write_stack
from tools.offline_engine import run_program

VM = "proxmoxve:index/vmLegacy:VmLegacy"
SNIPPET = "proxmoxve:index/fileLegacy:FileLegacy"
IMAGE = "proxmoxve:download/file:File"
TOKEN = "K10abcdef0123456789::server:9f8e7d6c5b4a"


@pytest.fixture(scope="module")
def homelab():
    return run_program(HOMELAB, {"k3sToken": TOKEN})


@pytest.fixture(scope="module")
def sections():
    return homelab_sections()


def _user_data(recording, vm_name):
    snippet = recording.named(SNIPPET, f"hosts-{vm_name}-user-data")
    text = recording.raw_inputs[snippet.urn]["sourceRaw"]["data"]
    assert text.startswith("#cloud-config\n")
    return yaml.safe_load(text)


def test_one_vm_per_host_with_its_sizing(homelab, sections):
    vms = {r.inputs["name"]: r for r in homelab.of_type(VM)}
    assert set(vms) == set(sections["hosts"])
    for name, host in sections["hosts"].items():
        i = vms[name].inputs
        assert i["nodeName"] == host["node"]
        assert i["vmId"] == host["vmId"]
        assert i["cpu"]["cores"] == host["cores"]
        assert i["memory"]["dedicated"] == host["memoryMb"]
        assert i["agent"]["enabled"] is True


def test_system_and_data_disks(homelab, sections):
    for name, host in sections["hosts"].items():
        vm = homelab.named(VM, f"hosts-{name}")
        system, data = vm.inputs["disks"]
        assert (system["interface"], system["size"]) == ("scsi0", host["systemDiskGb"])
        assert (data["interface"], data["size"]) == ("scsi1", host["dataDiskGb"])
        assert system["datastoreId"] == data["datastoreId"] == sections["proxmox"]["vmDatastore"]
        image = homelab.named(IMAGE, f"hosts-cloud-image-{host['node']}")
        assert image.urn in vm.options["dependsOn"], "the system disk is imported from the node's cloud image"
        # The PBS datastore must not be backed up into itself by vzdump.
        assert data["backup"] is (host["role"] != "pbs")


def test_network_and_static_address(homelab, sections):
    net = sections["network"]
    prefix = net["cidr"].split("/")[1]
    # Left out of the stack file: the first address of 192.168.30.0/24, the DNS server too.
    gateway = net.get("gateway", "192.168.30.1")
    dns_servers = net.get("dnsServers", [gateway])
    for name, host in sections["hosts"].items():
        i = homelab.named(VM, f"hosts-{name}").inputs
        (nic,) = i["networkDevices"]
        assert (nic["bridge"], nic["vlanId"], nic["model"]) == (net["bridge"], net["vlanId"], "virtio")
        (ip,) = i["initialization"]["ipConfigs"]
        assert ip["ipv4"] == {"address": f"{host['address']}/{prefix}", "gateway": gateway}
        assert i["initialization"]["dns"]["servers"] == dns_servers


def test_tags_include_role_and_user_tags(homelab, sections):
    for name, host in sections["hosts"].items():
        tags = homelab.named(VM, f"hosts-{name}").inputs["tags"]
        assert host["role"] in tags and "data" in tags
        assert set(host.get("tags", [])) <= set(tags)
        assert tags == sorted(tags), "Proxmox sorts tags; unsorted input would show a diff on every run"


def test_data_bearing_vms_are_protected_twice(homelab):
    for vm in homelab.of_type(VM):
        assert vm.options["protect"] is True, f"{vm.name}: Pulumi must refuse to delete it"
        assert vm.inputs["protection"] is True, f"{vm.name}: Proxmox must refuse to remove it or its disks"
        assert set(vm.options["ignoreChanges"]) == {"initialization.userDataFileId", "disks[0].fileId"}


def test_user_data_is_uploaded_as_a_snippet_the_vm_boots_with(homelab, sections):
    for name, host in sections["hosts"].items():
        vm = homelab.named(VM, f"hosts-{name}")
        snippet = homelab.named(SNIPPET, f"hosts-{name}-user-data")
        raw = homelab.raw_inputs[snippet.urn]
        assert raw["contentType"] == "snippets" and raw["nodeName"] == host["node"]
        file_id = f"{raw['datastoreId']}:snippets/{raw['sourceRaw']['fileName']}"
        assert vm.inputs["initialization"]["userDataFileId"] == file_id
        assert snippet.urn in vm.options["dependsOn"]
        assert snippet.options["deleteBeforeReplace"] is True


def test_common_cloud_init(homelab, sections):
    access = sections["access"]
    for name in sections["hosts"]:
        doc = _user_data(homelab, name)
        assert doc["hostname"] == name
        (user,) = doc["users"]
        assert user["name"] == access["adminUser"]
        assert user["ssh_authorized_keys"] == access["sshAuthorizedKeys"]
        assert doc["ssh_pwauth"] is False
        assert "qemu-guest-agent" in doc["packages"]
        assert ["systemctl", "enable", "--now", "qemu-guest-agent"] in doc["runcmd"]
        assert doc["ntp"]["enabled"] is True and doc["ntp"]["servers"] == sections["site"]["ntpServers"]
        (fs,) = doc["fs_setup"]
        assert fs["overwrite"] is False, "an existing filesystem on the data disk must never be reformatted"
        assert fs["device"].endswith("drive-scsi1")
        (mount,) = doc["mounts"]
        assert mount[0] == f"LABEL={fs['label']}"


def test_pbs_installs_backup_server_datastore_and_node_exporter(homelab, sections):
    host = sections["hosts"]["pbs"]
    doc = _user_data(homelab, "pbs")
    (store,) = host["datastores"]
    mount = doc["mounts"][0][1]
    assert mount == f"/mnt/datastore/{store}"
    assert "prometheus-node-exporter" in doc["packages"]
    sources = [f for f in doc["write_files"] if f["path"].startswith("/etc/apt/sources.list.d/")]
    assert any("pbs-no-subscription" in f["content"] for f in sources)
    script = " ".join(" ".join(c) for c in doc["runcmd"])
    assert "sha512sum --check" in script, "the repository key is verified before apt trusts it"
    assert "apt-get install -y proxmox-backup-server" in script
    assert f"datastore create {store} {mount}" in script
    assert "--reuse-datastore" in script, "a datastore already on the disk is adopted, not re-created"


@pytest.mark.parametrize("name,role", [("prom", "prometheus"), ("loki", "loki")])
def test_observability_hosts_join_k3s_dedicated(homelab, sections, name, role):
    doc = _user_data(homelab, name)
    files = {f["path"]: f for f in doc["write_files"]}
    agent = yaml.safe_load(files["/etc/rancher/k3s/config.yaml"]["content"])
    assert agent["server"] == sections["k3s"]["serverUrl"]
    assert any(label.endswith(f"={role}") for label in agent["node-label"])
    assert all(t.endswith(":NoSchedule") for t in agent["node-taint"]) and agent["node-taint"]
    token_file = files[agent["token-file"]]
    assert token_file["permissions"] == "0600" and token_file["content"].strip() == TOKEN
    script = " ".join(" ".join(c) for c in doc["runcmd"])
    assert sections["k3s"]["version"] in script and "INSTALL_K3S_EXEC=agent" in script
    assert doc["mounts"][0][1] == "/var/lib/rancher/k3s/storage"


def test_snippet_content_is_a_secret(homelab):
    for snippet in homelab.of_type(SNIPPET):
        assert snippet.inputs["sourceRaw"] == "[secret]"


REPLACE_TRIGGERS = ("nodeName", "vmId", "clone")


def _replace_relevant(recording):
    """The VM inputs whose change makes the provider replace a VM, less those the VM ignores."""
    out = {}
    for vm in recording.of_type(VM):
        i, ignored = vm.inputs, set(vm.options["ignoreChanges"])
        out[vm.name] = {
            **{k: i.get(k) for k in REPLACE_TRIGGERS},
            "disks": [(d["interface"], d["datastoreId"], None if f"disks[{n}].fileId" in ignored else d.get("fileId"))
                      for n, d in enumerate(i["disks"])],
            "userDataFileId": None if "initialization.userDataFileId" in ignored else i["initialization"]["userDataFileId"],
        }
    return out


def _changed_inputs(before, after):
    """Per VM, the paths of the inputs that differ between two recordings."""
    def leaves(value, path=""):
        if isinstance(value, dict):
            return {k: v for key, child in value.items() for k, v in leaves(child, f"{path}.{key}" if path else key).items()}
        if isinstance(value, list):
            return {k: v for n, child in enumerate(value) for k, v in leaves(child, f"{path}[{n}]").items()}
        return {path: value}

    changed = {}
    for vm in after.of_type(VM):
        old, new = leaves(before.named(VM, vm.name).inputs), leaves(vm.inputs)
        changed[vm.name] = {k for k in old.keys() | new.keys() if old.get(k) != new.get(k)}
    return changed


def test_cosmetic_changes_touch_no_replace_trigger(tmp_path, homelab):
    """A tag or a package added must not change any input the provider replaces a VM for."""

    def cosmetic(cfg):
        cfg["hosts"]["pbs"]["tags"].append("offsite")
        cfg["site"]["ntpServers"].append("2.debian.pool.ntp.org")  # changes every user-data

    changed = run_program(write_stack(tmp_path, cosmetic), {"k3sToken": TOKEN})
    assert _replace_relevant(changed) == _replace_relevant(homelab)
    before = _user_data(homelab, "pbs")
    after = _user_data(changed, "pbs")
    assert before != after, "the change did reach the cloud-init snippet"
    assert "offsite" in changed.named(VM, "hosts-pbs").inputs["tags"]


def test_pbs_installs_the_job_exporter_from_this_repository(homelab, sections):
    import base64
    import gzip
    import io
    import zipfile

    from tests.stacks import ROOT

    doc = _user_data(homelab, "pbs")
    files = {f["path"]: f for f in doc["write_files"]}
    shipped = files["/usr/local/lib/pbs-job-exporter/pbs-job-exporter.pyz"]
    assert shipped["encoding"] == "gz+b64" and shipped["permissions"] == "0755"
    archive = zipfile.ZipFile(io.BytesIO(gzip.decompress(base64.b64decode(shipped["content"]))))
    package = ROOT / "services" / "pbs_exporter"
    for source in package.rglob("*.py"):
        assert archive.read(f"pbs_exporter/{source.relative_to(package).as_posix()}") == source.read_bytes(), source
    assert archive.read("contracts/metrics.py") == (ROOT / "contracts" / "metrics.py").read_bytes()
    unit = files["/etc/systemd/system/pbs-job-exporter.service"]["content"]
    assert "ExecStart=/usr/bin/python3 /usr/local/lib/pbs-job-exporter/pbs-job-exporter.pyz " in unit
    port = sections.get("pbsExporter", {}).get("port", 9797)
    assert f"--listen 0.0.0.0:{port}" in unit and "@LISTEN@" not in unit
    assert "python3-prometheus-client" in doc["packages"]
    assert ["systemctl", "enable", "--now", "pbs-job-exporter.service"] in doc["runcmd"]
    steps = [" ".join(c) for c in doc["runcmd"]]
    assert steps.index("systemctl enable --now pbs-job-exporter.service") > next(
        i for i, s in enumerate(steps) if "generate-token" in s), "the token exists before the exporter starts"


def test_the_exporter_zipapp_is_the_same_bytes_on_every_render(tmp_path):
    """Built in two processes with different time zones and umasks: nothing of the build host leaks in."""
    import hashlib
    import os
    import subprocess
    import sys
    import zipfile

    from model.cloud_init import exporter_zipapp
    from tests.stacks import ROOT

    build = "import sys; from model.cloud_init import exporter_zipapp; sys.stdout.buffer.write(exporter_zipapp())"
    digests = {hashlib.sha256(subprocess.run(
        ["sh", "-c", f'umask {umask}; exec "$0" -c "$1"', sys.executable, build], cwd=ROOT, check=True,
        capture_output=True, env=dict(os.environ, TZ=tz)).stdout).hexdigest()
        for tz, umask in (("UTC", "022"), ("Pacific/Kiritimati", "077"))}
    assert digests == {hashlib.sha256(exporter_zipapp()).hexdigest()}
    path = tmp_path / "exporter.pyz"
    path.write_bytes(exporter_zipapp())
    assert {info.date_time for info in zipfile.ZipFile(path).infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_exporter_token_script_writes_a_root_only_token_once(homelab, tmp_path):
    """Runs the first-boot token script with a stand-in proxmox-backup-manager that answers as PBS does."""
    import os
    import stat
    import subprocess

    doc = _user_data(homelab, "pbs")
    script = next(c[2] for c in doc["runcmd"] if "generate-token" in " ".join(c))
    etc = tmp_path / "etc"
    script = script.replace("/etc/pbs-job-exporter", str(etc))
    calls = tmp_path / "calls.log"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "proxmox-backup-manager"
    fake.write_text(
        "#!/bin/sh\n"
        f'echo "$*" >> {calls}\n'
        'case "$1 $2" in\n'
        '  "user list") echo \'[{"userid":"root@pam","enable":true}]\' ;;\n'
        '  "user generate-token") echo \'{"tokenid":"pbs-exporter@pbs!metrics","value":"0b7c2a1e-5d4f-4c3b-9a8e-7f6d5c4b3a21"}\' ;;\n'
        "esac\n"
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    subprocess.run(["sh", "-c", script], check=True, env=env, timeout=30)
    token = etc / "token"
    assert token.read_text() == "pbs-exporter@pbs!metrics:0b7c2a1e-5d4f-4c3b-9a8e-7f6d5c4b3a21\n"
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    log = calls.read_text().splitlines()
    assert "user create pbs-exporter@pbs --comment Prometheus PBS job exporter (read-only)" in log
    assert "acl update / Audit --auth-id pbs-exporter@pbs!metrics" in log
    # A second boot of the same disk keeps the token it has.
    subprocess.run(["sh", "-c", script], check=True, env=env, timeout=30)
    assert sum("generate-token" in line for line in calls.read_text().splitlines()) == 1


def test_vms_keep_the_state_of_their_former_names(homelab, sections):
    """VM resources were named after the host before they were named after the component."""
    for name in sections["hosts"]:
        assert homelab.named(VM, f"hosts-{name}").options["aliases"] == [name]
        assert homelab.named(SNIPPET, f"hosts-{name}-user-data").options["aliases"] == [f"{name}-user-data"]


def test_the_cloud_image_is_downloaded_once_per_node_and_verified(homelab, sections):
    image = sections["proxmox"]["cloudImage"]
    nodes = sorted({h["node"] for h in sections["hosts"].values()})
    downloads = {r.inputs["nodeName"]: r for r in homelab.of_type(IMAGE)}
    assert sorted(downloads) == nodes
    for node, download in downloads.items():
        i = download.inputs
        assert (i["url"], i["checksum"], i["checksumAlgorithm"]) == (image["url"], image["checksum"], "sha512")
        assert (i["contentType"], i["datastoreId"]) == ("iso", sections["proxmox"]["imageDatastore"])
        # Named after its checksum: never the name of a file the stack did not download.
        stem, extension = image["fileName"].rsplit(".", 1)
        assert i["fileName"] == f"{stem}-{image['checksum'][:12]}.{extension}"
        assert i["overwrite"] is False and i["overwriteUnmanaged"] is False
        assert i["uploadTimeout"] == 1800
        # Create-before-delete: a replaced image never makes Pulumi compute replacements of the VMs.
        assert download.options["deleteBeforeReplace"] is False
        for vm in homelab.of_type(VM):
            if vm.inputs["nodeName"] == node:
                assert vm.inputs["disks"][0]["fileId"] == f"local:iso/{i['fileName']}"
                assert download.urn in vm.options["dependsOn"]


def test_a_new_cloud_image_changes_only_what_the_vms_ignore(tmp_path, homelab):
    """A new image (url and checksum) replaces the download, never a VM: the change stops at disks[0].fileId."""

    def new_image(cfg):
        cfg["proxmox"]["cloudImage"].update(
            url="https://cloud.debian.org/images/cloud/bookworm/20250416-2084/debian-12-genericcloud-amd64-20250416-2084.qcow2",
            checksum="72ef23f399ceff56f7e0c213db796d655aaaea833bc18838210a1ab40e531e6acf9b21adc1954b902db8c9b2255bff7a08aed816250e6afc2821550533df457d")

    changed = run_program(write_stack(tmp_path, new_image), {"k3sToken": TOKEN})
    assert {i.inputs["fileName"] for i in changed.of_type(IMAGE)} == {"debian-12-genericcloud-amd64-72ef23f399ce.img"}
    for vm, paths in _changed_inputs(homelab, changed).items():
        assert paths == {"disks[0].fileId"}, vm  # the test sees the change...
        assert paths <= set(changed.named(VM, vm).options["ignoreChanges"])  # ...and the VM ignores it
    assert _replace_relevant(changed) == _replace_relevant(homelab)
