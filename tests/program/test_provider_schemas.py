"""Every registered resource against its provider's published schema (tools/provider_schemas.py)."""

from __future__ import annotations

import importlib
import inspect
import json
import re

import pytest

from tests.program.test_requirements import requirement_pins
from tools import provider_schemas as ps

# What the providers would say about the program: nothing, not even a deprecation.
KNOWN: set[tuple[str, str, str]] = set()


def _problems(recording, inputs_of) -> set[tuple[str, str, str]]:
    return {(r.type, p.path, p.message) for r in recording.resources
            for p in ps.check_registration(r.type, r.name, inputs_of(r), r.custom)}


def test_every_registration_is_what_its_provider_accepts(stack_manifests):
    recording = stack_manifests.rendered.recording
    checked = {r.type for r in recording.resources if r.custom}
    assert {"proxmoxve:index/vmLegacy:VmLegacy", "proxmoxve:download/file:File", "kubernetes:helm.sh/v3:Release",
            "kubernetes:core/v1:Secret",
            "grafana:oss/dashboard:Dashboard", "pulumi:providers:grafana", "random:index/randomPassword:RandomPassword"} \
        <= checked
    # The inputs the provider would receive: secrets in clear, as the engine hands them over.
    assert _problems(recording, lambda r: recording.raw_inputs[r.urn]) == KNOWN
    assert recording.findings == [], "the offline engine judged the same registrations"


def test_resources_json_is_judged_the_same_with_secrets_redacted(stack_manifests):
    doc = json.loads((stack_manifests.rendered.out / "resources.json").read_text())
    found = ps.check_resources(doc)
    assert {(r["type"], str(p)) for r in doc["resources"] for p in found.get(r["urn"], [])} == \
           {(t, m) for t, _, m in KNOWN}


@pytest.mark.parametrize("type_, inputs, expected", [
    ("proxmoxve:index/vmLegacy:VmLegacy", {"nodeName": "pve1", "cpu": {"cores": "4"}},
     'cpu.cores: must be an integer, not string "4"'),
    ("proxmoxve:index/vmLegacy:VmLegacy", {"nodeName": "pve1", "memroy": {}}, "memroy: is not a property"),
    ("proxmoxve:index/vmLegacy:VmLegacy", {"disks": [{"interface": "scsi0"}]}, "nodeName: is required"),
    ("proxmoxve:index/vmLegacy:VmLegacy", {"nodeName": "pve1", "disks": [{"interface": "scsi0", "sizee": 8}]},
     "disks[0].sizee: is not a property of this type (known: aio, backup,"),
    ("proxmoxve:index/vmLegacy:VmLegacy", {"nodeName": "pve1", "timeoutMoveDisk": 60}, "timeoutMoveDisk: is deprecated"),
    ("proxmoxve:index/nope:Nope", {}, "is not a resource of the proxmoxve provider's schema"),
    ("grafana:oss/folder:Folder", {"titel": "Backups"}, "title: is required"),
    # A provider's non-string inputs travel JSON-encoded: this is retries="3" in the program.
    ("pulumi:providers:grafana", {"url": "https://grafana.home.arpa", "retries": json.dumps("3")},
     'retries: must be an integer, not string "3"'),
    ("pulumi:providers:grafana", {"url": "https://grafana.home.arpa", "retryWait": "ten"},
     'retryWait: must be an integer, not string "ten"'),
    ("random:index/randomPassword:RandomPassword", {"length": 40, "number": False}, "number: is deprecated"),
    ("kubernetes:core/v1:Secret", {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "a", "labelz": {}}},
     "metadata.labelz: is not a property of this type"),
    ("kubernetes:core/v1:Secret", {"apiVersion": "v1", "kind": "Secret", "stringData": {"key": 1}},
     "stringData.key: must be a string, not integer 1"),
    ("kubernetes:core/v1:Namespace", {"apiVersion": "v2", "kind": "Namespace"}, "apiVersion: must be 'v1'"),
    ("kubernetes:core/v1:PersistentVolumeClaim",
     {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "spec": {"accessModes": "ReadWriteOnce"}},
     'spec.accessModes: must be an array, not string "ReadWriteOnce"'),
    ("kubernetes:helm.sh/v3:Release", {"version": "1.0.0"}, "chart: is required"),
    ("kubernetes:helm.sh/v3:Release", {"chart": "loki", "compat": "false"}, 'compat: must be "true", not "false"'),
    ("kubernetes:helm.sh/v3:Release", {"chart": "loki", "repositoryOpts": {"url": "https://x"}},
     "repositoryOpts.url: is not a property of this type (known: caFile, certFile, keyFile, password, repo, username)"),
    ("kubernetes:helm.sh/v3:Release", {"chart": "loki", "maxHistory": 1.5}, "maxHistory: must be an integer"),
])
def test_what_a_provider_would_refuse_is_named_by_its_path(type_, inputs, expected):
    found = [str(p) for p in ps.check_registration(type_, "x", inputs)]
    assert any(expected in f for f in found), found


@pytest.mark.parametrize("type_, inputs", [
    ("kubernetes:core/v1:PersistentVolumeClaim",  # a Quantity may be a number, an IntOrString either
     {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "spec": {"resources": {"requests": {"storage": 10}}}}),
    ("kubernetes:monitoring.coreos.com/v1:PrometheusRule", {"spec": {"anything": True}}),  # any custom resource
    ("proxmoxve:index/vmLegacy:VmLegacy", {"nodeName": "pve1", "vmId": 200.0}),  # the wire's doubles
    # What the grafana SDK sends for retries=6, retry_status_codes=["404", "5xx"], insecure_skip_verify=False.
    ("pulumi:providers:grafana", {"url": "https://grafana.home.arpa", "retries": "6",
                                  "retryStatusCodes": '["404", "5xx"]', "insecureSkipVerify": "false"}),
    ("kubernetes:core/v1:Secret", {"apiVersion": "v1", "kind": "Secret", "stringData": "[secret]"}),
    ("kubernetes:core/v1:Secret", {"apiVersion": "v1", "kind": "Secret", "stringData": ps.UNKNOWN_SENTINEL}),
    ("homelab:logs:Loki", {"whatever": 1}),
])
def test_what_a_provider_accepts_passes(type_, inputs):
    assert ps.check_registration(type_, "x", inputs, custom=not type_.startswith("homelab:")) == []


def _sdk_inputs(module: str, cls: str) -> set[str]:
    source = inspect.getsource(getattr(importlib.import_module(module), cls))
    return {name or attr for name, attr in re.findall(r'@pulumi\.getter(?:\(name="(\w+)"\))?\n    def (\w+)', source)}


def test_the_release_parsed_from_overlays_go_is_what_the_pinned_sdk_sends():
    release = ps.kubernetes_schema().resources["kubernetes:helm.sh/v3:Release"]
    sdk = _sdk_inputs("pulumi_kubernetes.helm.v3.Release", "ReleaseArgs")
    # The SDK (4.34.2) is newer than the overlays snapshot; it is the tie-breaker (shared README).
    assert set(release["properties"]) <= sdk
    assert sdk - set(release["properties"]) == {"takeOwnership"}
    assert release["required"] == ["chart"]
    repo = ps.kubernetes_schema().types["kubernetes:helm.sh/v3:RepositoryOpts"]
    assert set(repo["properties"]) == _sdk_inputs("pulumi_kubernetes.helm.v3._inputs", "RepositoryOptsArgs")


def test_go_literals_are_read_as_data():
    overlays = ps.parse_overlays('''
var spec = pschema.ResourceSpec{
	InputProperties: map[string]pschema.PropertySpec{
		"name": {TypeSpec: pschema.TypeSpec{Type: "string"}, Description: "a " + "b"},  // comment
		"items": {TypeSpec: pschema.TypeSpec{Type: "array", Items: &pschema.TypeSpec{Ref: "#/types/x"}}},
	},
	RequiredInputs: []string{"name"},
}
func init() {
	ResourceOverlays["p:m:R"] = spec
}''')
    spec = overlays["ResourceOverlays"]["p:m:R"]
    assert spec["RequiredInputs"] == ["name"]
    assert spec["InputProperties"]["name"]["Description"] == "a b"
    assert ps.go_spec(spec["InputProperties"]["items"]) == {"type": "array", "items": {"$ref": "#/types/x"}}


# --- the vendored files ---------------------------------------------------------------------

def test_every_vendored_schema_is_the_file_its_source_pins_for_the_pinned_sdk():
    sources = json.loads((ps.SCHEMAS / "SOURCES.json").read_text())
    pins = requirement_pins(ps.ROOT / "requirements.txt")
    assert sorted(sources) == sorted(p.name for p in ps.SCHEMAS.glob("*.gz"))
    for name, source in sources.items():
        assert re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+/blob/[0-9a-f]{40}/\S+", source["source"]), name
        ps.read_schema_file(name[:-len(".gz")])  # raises unless the sha256 matches
        # An SDK bump without a look at its schema fails here: re-vendor, then update checkedSdk.
        sdk, version = source["checkedSdk"].split("==")
        assert pins.get(sdk) == version, f"{name} was checked against {source['checkedSdk']}, requirements.txt pins {sdk}=={pins.get(sdk)}"


def _copy_of_schemas(tmp_path):
    import shutil

    target = tmp_path / "provider-schemas"
    shutil.copytree(ps.SCHEMAS, target)
    return target


def test_a_missing_schema_file_is_named(tmp_path):
    directory = _copy_of_schemas(tmp_path)
    (directory / "random.json.gz").unlink()
    with pytest.raises(ps.SchemaDataError, match=r"provider schema .*random\.json\.gz is missing"):
        ps.check_schema_files(directory)


def test_an_altered_schema_file_is_refused(tmp_path):
    import gzip

    directory = _copy_of_schemas(tmp_path)
    doc = json.loads(gzip.decompress((directory / "random.json.gz").read_bytes()))
    doc["resources"].pop("random:index/randomPassword:RandomPassword")
    (directory / "random.json.gz").write_bytes(gzip.compress(json.dumps(doc).encode()))
    with pytest.raises(ps.SchemaDataError, match=r"random\.json\.gz is not the file SOURCES\.json pins"):
        ps.check_schema_files(directory)


def test_the_preview_names_a_missing_schema_in_one_line_and_exits_2(tmp_path, monkeypatch, capsys):
    import functools

    from tools import preview

    directory = _copy_of_schemas(tmp_path)
    (directory / "k8s-swagger.json.gz").unlink()
    monkeypatch.setattr(preview, "check_schema_files", functools.partial(ps.check_schema_files, directory))
    status = preview.main(["--stack", "homelab", "--out", str(tmp_path / "build"), "--quiet"])
    err = capsys.readouterr().err
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("error: provider schema ") and "k8s-swagger.json.gz is missing" in err
    assert not (tmp_path / "build").exists()
