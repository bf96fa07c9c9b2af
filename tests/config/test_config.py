"""The stack config schema: every bad config is refused with the key path the user wrote."""

from __future__ import annotations

import copy

import pytest

from model.config import ConfigError, load_stack_config
from tests.stacks import homelab_sections


def _set(path: str, value):
    def change(cfg):
        *parents, leaf = path.split(".")
        node = cfg
        for part in parents:
            node = node[part]
        node[leaf] = value
    return change


def _delete(path: str):
    def change(cfg):
        *parents, leaf = path.split(".")
        node = cfg
        for part in parents:
            node = node[part]
        del node[leaf]
    return change


def _second_host(**overrides):
    def change(cfg):
        extra = copy.deepcopy(cfg["hosts"]["loki"])
        extra.update(vmId=299, address="192.168.30.99")
        extra.update(overrides)
        cfg["hosts"]["loki2"] = extra
    return change


BAD_CONFIGS = [
    # (what is wrong, change, key path the error must name, words the message must contain)
    ("memory below the minimum", _set("hosts.pbs.memoryMb", 1024), "hosts.pbs.memoryMb", ">= 2048"),
    ("wrong type", _set("hosts.prom.cores", "four"), "hosts.prom.cores", "integer"),
    ("unknown key", _set("hosts.pbs.memoryGb", 8), "hosts.pbs.memoryGb", "unknown key"),
    ("unknown section", _set("prometheus", {"retention": "30d"}), "prometheus", "unknown key"),
    ("missing required value", _delete("hosts.loki.address"), "hosts.loki.address", "required"),
    ("missing section", _delete("network"), "network", "required"),
    ("node that does not exist", _set("hosts.loki.node", "pve9"), "hosts.loki.node", "pve9"),
    ("duplicate VM id", _second_host(vmId=212), "hosts.loki2.vmId", "hosts.loki"),
    ("duplicate address", _second_host(address="192.168.30.22"), "hosts.loki2.address", "hosts.loki"),
    ("address outside the network", _set("hosts.pbs.address", "10.0.0.5"), "hosts.pbs.address", "outside"),
    ("address is the gateway", _set("hosts.pbs.address", "192.168.30.1"), "hosts.pbs.address", "gateway"),
    ("gateway outside the network", _set("network.gateway", "192.168.31.1"), "network.gateway", "outside"),
    ("VLAN out of range", _set("network.vlanId", 5000), "network.vlanId", "<= 4094"),
    ("not an IP address", _set("network.dnsServers", ["dns.home.arpa"]), "network.dnsServers[0]", "IPv4"),
    ("PBS host without datastore", _delete("hosts.pbs.datastores"), "hosts.pbs.datastores", "required"),
    ("PBS host with no datastore", _set("hosts.pbs.datastores", []), "hosts.pbs.datastores", "required"),
    ("datastore on a non-PBS host", _set("hosts.prom.datastore", "extra"), "hosts.prom.datastore", "only a pbs host"),
    ("datastores on a non-PBS host", _set("hosts.prom.datastores", ["extra"]), "hosts.prom.datastores", "only a pbs host"),
    ("datastore and datastores at once", _set("hosts.pbs.datastore", "homelab"), "hosts.pbs.datastore",
     "give datastore or datastores, not both (datastore: homelab is datastores: [homelab])"),
    ("a datastore twice", _set("hosts.pbs.datastores", ["homelab", "archive", "homelab"]), "hosts.pbs.datastores",
     "'homelab' is listed twice"),
    ("a datastore name PBS refuses", _set("hosts.pbs.datastores", ["homelab", "off site"]), "hosts.pbs.datastores[1]",
     "must match"),
    ("invalid Proxmox tag", _set("hosts.pbs.tags", ["Backup Server"]), "hosts.pbs.tags", "lowercase"),
    ("bad hostname", lambda c: c["hosts"].__setitem__("PBS_1", c["hosts"].pop("pbs")), "hosts.PBS_1", "hostname"),
    ("k3s missing for agents", _delete("k3s"), "k3s", "required"),
    ("k3s version not pinned", _set("k3s.version", "latest"), "k3s.version", "must match"),
    ("bad per-host key", _set("hosts.pbs.sshAuthorizedKeys", ["ssh-dss AAAA"]), "hosts.pbs.sshAuthorizedKeys", "public key"),
    ("per-host VLAN out of range", _set("hosts.prom.vlanId", 0), "hosts.prom.vlanId", ">= 1"),
    ("no SSH key", _set("access.sshAuthorizedKeys", []), "access.sshAuthorizedKeys", "at least 1"),
    ("not a public key", _set("access.sshAuthorizedKeys", ["-----BEGIN OPENSSH PRIVATE KEY-----"]), "access.sshAuthorizedKeys", "public key"),
    ("role that does not exist", _set("hosts.loki.role", "mimir"), "hosts.loki.role", "mimir"),
    ("no host for a role", lambda c: c["hosts"].pop("loki"), "hosts", "'loki'"),
    ("plain http image", _set("proxmox.cloudImage.url", "http://example.org/x.img"), "proxmox.cloudImage.url", "must match"),
    ("image without checksum", _delete("proxmox.cloudImage.checksum"), "proxmox.cloudImage.checksum",
     "is required: Proxmox verifies the download against it (the sha512 line of the image's SHA512SUMS)"),
    ("sha256 digest for sha512", _set("proxmox.cloudImage.checksum", "ab" * 32), "proxmox.cloudImage.checksum",
     "has 64 hex digits; a sha512 has 128"),
    ("moving image", _set("proxmox.cloudImage.url",
                          "https://cloud.debian.org/images/cloud/bookworm/latest/debian-12-genericcloud-amd64.qcow2"),
     "proxmox.cloudImage.url", "names a moving image"),
    ("download timeout below a minute", _set("proxmox.cloudImage.downloadTimeoutSeconds", 30),
     "proxmox.cloudImage.downloadTimeoutSeconds", ">= 60"),
]


@pytest.mark.parametrize("what,change,path,words", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_bad_config_names_the_key(what, change, path, words):
    cfg = copy.deepcopy(homelab_sections())
    change(cfg)
    with pytest.raises(ConfigError) as caught:
        load_stack_config(cfg)
    lines = [str(p) for p in caught.value.problems]
    matching = [line for line in lines if line.startswith(f"{path}: ")]
    assert matching, f"no problem reported at {path}; got {lines}"
    assert any(words in line for line in matching), f"{words!r} not in {matching}"


def test_every_problem_is_reported_at_once():
    cfg = copy.deepcopy(homelab_sections())
    cfg["hosts"]["pbs"]["memoryMb"] = 512
    cfg["hosts"]["prom"]["cores"] = 0
    cfg["network"]["vlanId"] = 0
    cfg["bogus"] = True
    with pytest.raises(ConfigError) as caught:
        load_stack_config(cfg)
    paths = {p.path for p in caught.value.problems}
    assert {"hosts.pbs.memoryMb", "hosts.prom.cores", "network.vlanId", "bogus"} <= paths
    text = str(caught.value)
    assert "4 problem(s)" in text and "hosts.pbs.memoryMb: must be >= 2048" in text


def test_reference_problems_are_all_reported():
    cfg = copy.deepcopy(homelab_sections())
    cfg["hosts"]["prom"]["node"] = "pve7"
    cfg["hosts"]["loki"]["vmId"] = cfg["hosts"]["pbs"]["vmId"]
    cfg["hosts"]["loki"]["address"] = cfg["hosts"]["pbs"]["address"]
    with pytest.raises(ConfigError) as caught:
        load_stack_config(cfg)
    paths = sorted(p.path for p in caught.value.problems)
    assert paths == ["hosts.loki.address", "hosts.loki.vmId", "hosts.prom.node"]


def test_unknown_key_lists_the_keys_that_exist():
    cfg = copy.deepcopy(homelab_sections())
    cfg["hosts"]["pbs"]["ram"] = 8192
    with pytest.raises(ConfigError) as caught:
        load_stack_config(cfg)
    (problem,) = caught.value.problems
    assert problem.path == "hosts.pbs.ram" and "memoryMb" in problem.message


def test_homelab_stack_is_valid():
    cfg = load_stack_config(homelab_sections())
    assert {h.role.value for h in cfg.hosts.values()} == {"pbs", "prometheus", "loki"}


def _without_logs_and_traces(cfg):
    del cfg["logs"], cfg["traces"]
    # the SLO on span metrics needs traces; the recovery service's Loki action needs logs
    cfg["slos"] = [s for s in cfg["slos"] if s["name"] != "api-gateway-latency"]
    cfg["recovery"]["actions"].pop("loki-compactor-report")


def test_without_logs_and_traces_no_loki_host_is_needed():
    cfg = copy.deepcopy(homelab_sections())
    _without_logs_and_traces(cfg)
    del cfg["hosts"]["loki"]
    stack = load_stack_config(cfg)
    assert {h.role.value for h in stack.hosts.values()} == {"pbs", "prometheus"}
    assert [line.split(":")[0] for line in stack.parts_off()][:2] == ["logs", "traces"]


def test_a_loki_host_without_logs_or_traces_is_an_idle_vm():
    cfg = copy.deepcopy(homelab_sections())
    _without_logs_and_traces(cfg)
    with pytest.raises(ConfigError) as caught:
        load_stack_config(cfg)
    assert [str(p) for p in caught.value.problems] == [
        "hosts.loki.role: a loki host runs Loki and Tempo: without a logs or traces section it would idle; "
        "remove it or add the section"]


def test_logs_and_traces_name_themselves_when_the_loki_host_is_missing():
    cfg = copy.deepcopy(homelab_sections())
    del cfg["hosts"]["loki"]
    with pytest.raises(ConfigError) as caught:
        load_stack_config(cfg)
    assert "hosts: needs at least one host with role 'loki': logs and traces run there" in map(str, caught.value.problems)


def test_per_host_network_and_keys_override_the_defaults():
    from model.hosts import plan_vms

    cfg = copy.deepcopy(homelab_sections())
    extra_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBackupOperatorKeyForThePbsHostOnly00 backup@desk"
    cfg["hosts"]["pbs"].update(bridge="vmbr1", vlanId=40, sshAuthorizedKeys=[extra_key])
    plans = {p.name: p for p in plan_vms(load_stack_config(cfg))}
    assert (plans["pbs"].bridge, plans["pbs"].vlan_id) == ("vmbr1", 40)
    assert plans["pbs"].ssh_authorized_keys == cfg["access"]["sshAuthorizedKeys"] + [extra_key]
    assert (plans["prom"].bridge, plans["prom"].vlan_id) == (cfg["network"]["bridge"], cfg["network"]["vlanId"])


def _only_problems(change) -> list[str]:
    cfg = copy.deepcopy(homelab_sections())
    change(cfg)
    with pytest.raises(ConfigError) as caught:
        load_stack_config(cfg)
    return [str(p) for p in caught.value.problems]


HOST_KEYS = ("role, node, vmId, cores, memoryMb, systemDiskGb, dataDiskGb, address, bridge, vlanId, "
             "sshAuthorizedKeys, tags, datastores, datastore")


def test_a_key_typo_is_one_line_with_the_key_meant():
    """Was two lines: `unknown key` for memoryMB and `is required` for memoryMb."""
    assert _only_problems(lambda c: c["hosts"]["pbs"].__setitem__("memoryMB", c["hosts"]["pbs"].pop("memoryMb"))) == [
        f"hosts.pbs.memoryMB: unknown key; did you mean 'memoryMb'? (expected one of: {HOST_KEYS})"]
    assert _only_problems(lambda c: c["hosts"]["pbs"].__setitem__("memoryMbs", 4096)) == [
        f"hosts.pbs.memoryMbs: unknown key; did you mean 'memoryMb'? (expected one of: {HOST_KEYS})"]


def test_a_section_typo_names_the_section_meant():
    (problem,) = _only_problems(lambda c: c.__setitem__("slo", c.pop("slos")))
    assert problem.startswith("slo: unknown key; did you mean 'slos'? (expected one of: site, proxmox, ")


def test_slo_problems_name_the_slo():
    def too_high(c):
        next(s for s in c["slos"] if s["name"] == "api-gateway-latency")["objective"] = 100

    assert _only_problems(too_high) == ["slos[api-gateway-latency].objective: input should be less than 100"]


# --- what derives from other keys, and where the services of a pbs host run -------------------

def test_gateway_and_dns_servers_default_to_the_first_address_of_the_network():
    cfg = copy.deepcopy(homelab_sections())
    cfg["network"] = {"cidr": "10.20.0.0/22"}
    network = load_stack_config({**cfg, "hosts": {name: {**h, "address": h["address"].replace("192.168.30.", "10.20.1.")}
                                                  for name, h in cfg["hosts"].items()}}).network
    assert (str(network.gateway), [str(s) for s in network.dns_servers]) == ("10.20.0.1", ["10.20.0.1"])


def test_written_gateway_and_dns_servers_stay():
    cfg = copy.deepcopy(homelab_sections())
    cfg["network"].update(gateway="192.168.30.254", dnsServers=["192.168.30.53", "192.168.30.54"])
    network = load_stack_config(cfg).network
    assert (str(network.gateway), [str(s) for s in network.dns_servers]) == ("192.168.30.254", ["192.168.30.53", "192.168.30.54"])
    cfg["network"] = {"cidr": "192.168.30.0/24", "gateway": "192.168.30.254"}
    assert [str(s) for s in load_stack_config(cfg).network.dns_servers] == ["192.168.30.254"]


def test_the_pve_api_and_the_nfs_server_default_from_the_site_and_the_nas():
    stack = load_stack_config(homelab_sections())
    assert stack.pve_api_url() == "https://pve1.home.arpa:8006"
    assert stack.recovery.nas.nfs_server == "nas.home.arpa"


def test_a_written_pve_api_and_nfs_server_stay():
    cfg = copy.deepcopy(homelab_sections())
    cfg["recovery"]["pve"] = {"url": "https://pve.home.arpa:8006/", "verifyTls": False}
    cfg["recovery"]["nas"]["nfsServer"] = "192.168.30.5"
    stack = load_stack_config(cfg)
    assert (stack.pve_api_url(), stack.recovery.pve.verify_tls) == ("https://pve.home.arpa:8006", False)
    assert stack.recovery.nas.nfs_server == "192.168.30.5"


def test_k3s_names_only_the_roles_the_stack_has():
    def without_loki(c):
        _without_logs_and_traces(c)
        del c["hosts"]["loki"], c["k3s"]

    assert _only_problems(without_loki) == ["k3s: is required: the prometheus hosts join the k3s cluster"]
    assert _only_problems(_delete("k3s")) == ["k3s: is required: the prometheus and loki hosts join the k3s cluster"]


def _second_pbs_host(**overrides):
    """A pbs host named to sort before `pbs`: where the services went silently before placement was a key."""
    def change(cfg):
        archive = copy.deepcopy(cfg["hosts"]["pbs"])
        archive.update(vmId=213, address="192.168.30.23", datastores=["archive"])
        archive.update(overrides)
        cfg["hosts"]["archive"] = archive
    return change


def _and(*changes):
    def change(cfg):
        for each in changes:
            each(cfg)
    return change


def test_the_only_pbs_host_runs_the_recovery_service_and_the_pve_exporter():
    stack = load_stack_config(homelab_sections())
    assert (stack.placement("recovery"), stack.placement("pveExporter")) == ("pbs", "pbs")


def test_several_pbs_hosts_need_the_placement_named():
    assert _only_problems(_second_pbs_host()) == [
        "pveExporter.host: is required with several pbs hosts (pbs, archive): name the one that runs the PVE exporter",
        "recovery.host: is required with several pbs hosts (pbs, archive): name the one that runs the recovery service"]


def test_the_named_pbs_host_runs_them():
    cfg = copy.deepcopy(homelab_sections())
    _second_pbs_host()(cfg)
    cfg["recovery"]["host"], cfg["pveExporter"]["host"] = "pbs", "archive"
    stack = load_stack_config(cfg)
    assert (stack.placement("recovery"), stack.placement("pveExporter")) == ("pbs", "archive")


def test_a_placement_typo_is_one_line_with_the_host_meant():
    assert _only_problems(_and(_second_pbs_host(), _set("recovery.host", "pbss"), _set("pveExporter.host", "pbs"))) == [
        "recovery.host: unknown host 'pbss'; did you mean 'pbs'? (pbs hosts: pbs, archive)"]
    assert _only_problems(_set("pveExporter.host", "nas")) == ["pveExporter.host: unknown host 'nas' (pbs hosts: pbs)"]


def test_a_placement_on_a_host_of_another_role_is_refused():
    assert _only_problems(_set("recovery.host", "prom")) == [
        "recovery.host: 'prom' is a prometheus host; the recovery service runs on a pbs host (pbs hosts: pbs)"]


def test_a_datastore_name_is_unique_across_the_pbs_hosts():
    assert _only_problems(_and(_second_pbs_host(datastores=["offsite", "homelab"]), _set("recovery.host", "pbs"),
                               _set("pveExporter.host", "pbs"))) == [
        "hosts.archive.datastores: 'homelab' is already a datastore of hosts.pbs: a datastore's name is unique across "
        "the pbs hosts (alerts and the recovery service name a job by its datastore)"]


def test_the_single_datastore_key_still_works():
    cfg = copy.deepcopy(homelab_sections())
    cfg["hosts"]["pbs"]["datastore"] = cfg["hosts"]["pbs"].pop("datastores")[0]
    assert load_stack_config(cfg).hosts["pbs"].datastore_names() == ["homelab"]
