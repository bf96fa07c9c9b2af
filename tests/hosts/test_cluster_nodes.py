"""The node readiness check (components/cluster_nodes.py, components/nodes_ready.py) against a fake API server.

The real Kubernetes client reads a real kubeconfig and talks TLS to tests/fake_kubernetes.py on
127.0.0.1; nodes appear, turn Ready, or never do.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
import yaml

from components.cluster_nodes import ClusterRefused, NodesNotReady, kubernetes_lister, wait_for_nodes
from model.hosts import NodeGroup
from tests.fake_kubernetes import Certificates, FakeKubernetes
from tests.stacks import ROOT

PROM = NodeGroup({"observability.homelab/workload": "prometheus"}, {"prom": "192.168.30.21"})
LOKI = NodeGroup({"observability.homelab/workload": "loki"}, {"loki": "192.168.30.22"})
FAST = 0.02  # seconds between polls in these tests


@pytest.fixture(scope="module")
def certificates(tmp_path_factory):
    return Certificates(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def api(certificates):
    fake = FakeKubernetes(certificates)
    fake.start()
    yield fake
    fake.stop()


def kubeconfig(api, certificates, user: dict, ca: str | None = None, context: str = "homelab") -> str:
    ca_pem = ca if ca is not None else certificates.pem("ca.crt")
    return yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": "homelab", "cluster": {
            "server": api.url, "certificate-authority-data": base64.b64encode(ca_pem.encode()).decode()}}],
        "users": [{"name": "admin", "user": user}],
        "contexts": [{"name": context, "context": {"cluster": "homelab", "user": "admin"}}],
    })


def token(value="admin-token"):
    return {"token": value}


def client_certificate(certificates):
    return {"client-certificate-data": base64.b64encode(certificates.pem("admin.crt").encode()).decode(),
            "client-key-data": base64.b64encode(certificates.pem("admin.key").encode()).decode()}


def never_sleep(seconds):
    raise AssertionError("a refusal must fail at once, not be polled until the deadline")


def test_waits_while_nodes_join_and_turn_ready(api, certificates, tmp_path):
    api.add_node("prom", PROM.labels, registered_after=2, ready_after=6)
    api.add_node("loki", LOKI.labels, ready_after=4)
    api.add_node("k3s-server", {})  # not ours: never asked for
    path = tmp_path / "config"
    path.write_text(kubeconfig(api, certificates, client_certificate(certificates)))  # as k3s writes it

    ready = wait_for_nodes(kubernetes_lister(str(path), "homelab"), [PROM, LOKI], timeout_seconds=30, poll_seconds=FAST)

    assert ready == {PROM.selector: ["prom"], LOKI.selector: ["loki"]}
    selectors = [s for _, s, _ in api.requests]
    assert selectors[:2] == ["observability.homelab/workload=prometheus", "observability.homelab/workload=loki"]
    assert len(selectors) >= 8, "it polled until both were Ready"
    assert {who for _, _, who in api.requests} == {"system:admin"}


def test_kubeconfig_contents_and_a_token_work_too(api, certificates):
    api.add_node("prom", PROM.labels)
    ready = wait_for_nodes(kubernetes_lister(kubeconfig(api, certificates, token()), "homelab"), [PROM], 5, FAST)
    assert ready == {PROM.selector: ["prom"]}


def test_the_deadline_names_each_node_that_is_missing_or_not_ready(api, certificates):
    api.add_node("prom", PROM.labels, ready_after=10**9)
    lister = kubernetes_lister(kubeconfig(api, certificates, token()), "homelab")
    with pytest.raises(NodesNotReady) as caught:
        wait_for_nodes(lister, [PROM, LOKI], timeout_seconds=0.3, poll_seconds=FAST)
    message = str(caught.value)
    assert message.splitlines()[:3] == [
        "after 0.3 s, the k3s nodes the Helm releases need are not Ready:",
        "  - observability.homelab/workload=prometheus: 0 of 1 Ready (prom (192.168.30.21): NotReady, KubeletNotReady)",
        "  - observability.homelab/workload=loki: 0 of 1 Ready (loki (192.168.30.22): not registered)",
    ]
    assert "k3s.nodeReadyTimeoutSeconds" in message and "journalctl -u k3s-agent" in message


def test_an_unknown_ca_fails_at_once_with_what_to_fix(api, certificates, tmp_path):
    other = Certificates(tmp_path)  # another cluster's CA
    lister = kubernetes_lister(kubeconfig(api, certificates, token(), ca=other.pem("ca.crt")), "homelab")
    with pytest.raises(ClusterRefused) as caught:
        wait_for_nodes(lister, [PROM], timeout_seconds=600, poll_seconds=FAST, sleep=never_sleep)
    assert f"{api.url}: TLS verification failed" in str(caught.value)
    assert "certificate-authority must be the CA that signed the API server's certificate" in str(caught.value)
    assert api.requests == [], "no request got past the handshake"


def test_wrong_credentials_fail_at_once(api, certificates):
    lister = kubernetes_lister(kubeconfig(api, certificates, token("expired-token")), "homelab")
    with pytest.raises(ClusterRefused) as caught:
        wait_for_nodes(lister, [PROM], timeout_seconds=600, poll_seconds=FAST, sleep=never_sleep)
    assert str(caught.value).startswith(f"{api.url} refused the credentials of context homelab (401 Unauthorized)")


def test_a_user_who_may_not_list_nodes_is_told_so(api, certificates):
    api.tokens["viewer-token"] = "viewer"
    lister = kubernetes_lister(kubeconfig(api, certificates, token("viewer-token")), "homelab")
    with pytest.raises(ClusterRefused) as caught:
        wait_for_nodes(lister, [PROM], timeout_seconds=600, poll_seconds=FAST, sleep=never_sleep)
    assert "may not list nodes (403 Forbidden): it needs get/list on nodes" in str(caught.value)


def test_a_context_the_kubeconfig_lacks_fails_at_once(api, certificates, tmp_path):
    path = tmp_path / "config"
    path.write_text(kubeconfig(api, certificates, token()))
    with pytest.raises(ClusterRefused) as caught:
        kubernetes_lister(str(path), "production")
    assert str(caught.value).startswith(f"cannot use context production of {path}:")


def test_an_api_server_that_does_not_answer_is_polled_until_the_deadline(api, certificates):
    lister = kubernetes_lister(kubeconfig(api, certificates, token()), "homelab")
    api.stop()  # e.g. the k3s server restarting
    with pytest.raises(NodesNotReady) as caught:
        wait_for_nodes(lister, [PROM], timeout_seconds=0.3, poll_seconds=FAST)
    lines = str(caught.value).splitlines()
    assert lines[1] == "  - observability.homelab/workload=prometheus: unknown (no answer from the API)"
    assert lines[2].startswith(f"  last error: {api.url}: ")
    api.start()  # for the fixture's teardown


# --- the dynamic resource's provider --------------------------------------------------------

def _props(api, certificates, **extra):
    return {"groups": [{"labels": PROM.labels, "hosts": PROM.hosts}], "vmIds": ["211"], "timeoutSeconds": 5,
            "pollSeconds": FAST, "context": "homelab", "kubeconfig": kubeconfig(api, certificates, token()), **extra}


def test_the_provider_creates_by_waiting(api, certificates):
    from components.nodes_ready import NodesReadyProvider

    api.add_node("prom", PROM.labels, ready_after=2)
    result = NodesReadyProvider().create(_props(api, certificates))
    assert result.outs["readyNodes"] == {PROM.selector: ["prom"]}
    assert len(api.requests) == 3


def test_the_provider_waits_again_only_for_other_nodes(api, certificates):
    from components.nodes_ready import NodesReadyProvider

    provider = NodesReadyProvider()
    old = {**_props(api, certificates), "readyNodes": {PROM.selector: ["prom"]}}
    assert provider.diff("id", old, _props(api, certificates)).changes is False
    # A new timeout is saved without a wait (nothing is listening at this kubeconfig any more).
    api.stop()
    updated = provider.update("id", old, _props(api, certificates, timeoutSeconds=60))
    assert updated.outs["readyNodes"] == {PROM.selector: ["prom"]} and updated.outs["timeoutSeconds"] == 60
    api.start()
    api.add_node("prom2", PROM.labels)
    more = _props(api, certificates, groups=[{"labels": PROM.labels, "hosts": {**PROM.hosts, "prom2": "192.168.30.23"}}])
    assert provider.diff("id", old, more).changes is True
    api.add_node("prom", PROM.labels)
    assert provider.update("id", old, more).outs["readyNodes"] == {PROM.selector: ["prom", "prom2"]}


def test_the_provider_the_engine_would_run_is_the_one_the_program_serialized(api, certificates, homelab_recording):
    """The recorded `__provider`, unpickled in a fresh interpreter as the dynamic-provider host does, waits for real."""
    ready = homelab_recording.named("pulumi-python:dynamic/homelab:NodesReady", "hosts-k3s-nodes-ready")
    props = dict(homelab_recording.raw_inputs[ready.urn])
    props.update(kubeconfig=kubeconfig(api, certificates, token()), pollSeconds=FAST)
    for host in ("prom", "loki"):
        api.add_node(host, {"observability.homelab/workload": "prometheus" if host == "prom" else "loki"}, ready_after=2)
    script = ("import base64, json, sys, dill\n"
              "props = json.load(sys.stdin)\n"
              "provider = dill.loads(base64.b64decode(props.pop('__provider')))\n"
              "print(json.dumps(provider.create(props).outs['readyNodes']))\n")
    done = subprocess.run([sys.executable, "-c", script], input=json.dumps(props), cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"observability.homelab/workload=loki": ["loki"],
                                       "observability.homelab/workload=prometheus": ["prom"]}


@pytest.fixture(scope="module")
def homelab_recording():
    from tools.offline_engine import run_program

    return run_program(ROOT / "Pulumi.homelab.yaml")


# --- on the mock engine: what waits for it --------------------------------------------------

NODES_READY = "pulumi-python:dynamic/homelab:NodesReady"
RELEASE = "kubernetes:helm.sh/v3:Release"
VM = "proxmoxve:index/vmLegacy:VmLegacy"


def test_every_release_waits_until_the_observability_nodes_are_ready(homelab_recording):
    from tests.stacks import homelab_sections

    (ready,) = homelab_recording.of_type(NODES_READY)
    releases = homelab_recording.of_type(RELEASE)
    assert releases
    for release in releases:
        assert ready.urn in release.options["dependsOn"], release.name
        assert release.inputs["timeout"] == 900, "Helm waits for first image pulls longer than its 300 s"
    hosts = homelab_sections()["hosts"]
    agents = {name for name, h in hosts.items() if h["role"] != "pbs"}
    vms = {vm.urn: vm.inputs["name"] for vm in homelab_recording.of_type(VM)}
    assert {vms[urn] for urn in ready.options["dependsOn"]} == agents, "the PBS VM joins no cluster"
    groups = {g["labels"]["observability.homelab/workload"]: g["hosts"] for g in ready.inputs["groups"]}
    assert groups == {h["role"]: {name: h["address"]} for name, h in hosts.items() if name in agents}
    assert ready.inputs["timeoutSeconds"] == 1200 and ready.inputs["context"] == "homelab"
    assert ready.inputs["__provider"] == "[secret]"


def test_the_labels_waited_for_are_those_the_workloads_select(homelab_recording):
    from model.config import Role
    from model.hosts import scheduling_for

    (ready,) = homelab_recording.of_type(NODES_READY)
    assert [g["labels"] for g in ready.inputs["groups"]] == [
        scheduling_for(Role.LOKI).node_selector(), scheduling_for(Role.PROMETHEUS).node_selector()]


def test_without_kubernetes_context_the_stack_config_is_refused(tmp_path):
    import pulumi

    from tools.offline_engine import Recording, run_program

    doc = yaml.safe_load((ROOT / "Pulumi.homelab.yaml").read_text())
    del doc["config"]["kubernetes:context"]
    stack = tmp_path / "Pulumi.nocontext.yaml"
    stack.write_text(yaml.safe_dump(doc))
    recording = Recording("homelab-observability", "nocontext")
    with pytest.raises(pulumi.RunError) as caught:
        run_program(stack, recording=recording)
    assert "  - kubernetes:context: is required: the kubeconfig context of the k3s cluster" in str(caught.value)
    assert recording.resources == []
