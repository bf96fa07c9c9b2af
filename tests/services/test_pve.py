"""The virtualization layer: config, routing, promtool tests of the Proxmox VE alerts, and the real
prometheus-pve-exporter (its pinned venv) against a fake PVE cluster on 127.0.0.1, its answers
fed to the same rules under promtool."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from model import pve
from model.rules import pve as pve_rules
from model.config import ConfigError, load_stack_config, required_secrets
from tests.conftest import FAKE_SECRETS, run_tool
from tests.configs import homelab_config
from tests.fake_pve_inventory import TOKEN, FakePveCluster, Guest, Replication, Storage, self_signed
from tests.stacks import homelab_sections
from tests.rules.test_alerts import _firing, _unit_test
from tools.drill.processes import ManagedProcess, free_port, wait_ready
from tools.offline_engine import ROOT

VENV = ROOT / ".venv-pve-exporter"
RULES = ("virtualization",)


def _problems(change) -> dict[str, str]:
    sections = homelab_sections()
    change(sections)
    with pytest.raises(ConfigError) as err:
        load_stack_config(sections)
    return {p.path: p.message for p in err.value.problems}


# --- config, secrets, scrape job, routing -----------------------------------------------------

def test_bad_exporter_settings_are_reported_by_key_path():
    def bad(s):
        s["pveExporter"].update(tokenId="prometheus@pve", nodeAddresses={"pve1": "https://pve1"})
        s["alerting"]["receivers"][1]["pagerduty"]["routingKeySecret"] = "someOtherKey"

    problems = _problems(bad)
    assert set(problems) == {"pveExporter.tokenId", "pveExporter.nodeAddresses.pve1",
                             "alerting.receivers[1].pagerduty.routingKeySecret"}
    assert "pagerdutyRoutingKey, virtualizationPagerdutyRoutingKey" in problems["alerting.receivers[1].pagerduty.routingKeySecret"]


def test_exporter_settings_that_contradict_the_stack_are_reported_by_key_path():
    problems = _problems(lambda s: s["pveExporter"].update(scrapeTimeout="2m", nodeAddresses={"pve9": "10.0.0.9"}))
    assert set(problems) == {"pveExporter.scrapeTimeout", "pveExporter.nodeAddresses.pve9"}
    assert "unknown Proxmox node" in problems["pveExporter.nodeAddresses.pve9"]


def test_the_token_and_the_oncall_key_are_required_secrets():
    needed = required_secrets(homelab_config())
    assert {"pveExporterToken", "virtualizationPagerdutyRoutingKey", "pagerdutyRoutingKey"} <= set(needed)

    def without(s):
        del s["pveExporter"]

    assert "pveExporterToken" not in required_secrets(homelab_config(without))
    assert pve_rules.rule_groups(homelab_config(without)) == []


def test_every_node_is_a_target_scraped_through_the_exporter(homelab):
    job = next(j for j in homelab.yaml("prometheus/scrape-configs.yaml")["scrape_configs"] if j["job_name"] == "pve")
    assert job["metrics_path"] == "/pve"
    assert job["params"] == {"module": ["default"], "cluster": ["1"], "node": ["1"]}
    assert [(s["targets"], s["labels"]["pve_node"]) for s in job["static_configs"]] == [
        (["pve1.home.arpa"], "pve1"), (["pve2.home.arpa"], "pve2")]
    assert {"target_label": "__address__", "replacement": "192.168.30.20:9221"} in job["relabel_configs"]

    cfg = homelab_config(lambda s: s["pveExporter"].update(nodeAddresses={"pve2": "10.0.5.2:8006"}))
    assert pve.node_targets(cfg) == [("pve1", "pve1.home.arpa"), ("pve2", "10.0.5.2:8006")]


def test_virtualization_pages_reach_the_oncall_with_its_own_key(homelab):
    am = homelab.out / "alertmanager" / "alertmanager.yml"
    result = run_tool("amtool", "config", "routes", "test", f"--config.file={am}", "service=virtualization", "severity=critical")
    assert result.returncode == 0, result.stderr
    assert "virtualization-oncall" in result.stdout.strip().split(",")
    receivers = {r["name"]: r for r in yaml.safe_load(am.read_text())["receivers"]}
    keys = {name: receivers[name]["pagerduty_configs"][0]["routing_key_file"] for name in ("pagerduty-primary", "virtualization-oncall")}
    assert keys["virtualization-oncall"].endswith("/virtualization-pagerduty-routing-key")
    assert keys["pagerduty-primary"].endswith("/pagerduty-routing-key")
    # Grafana's contact point carries the on-call's own key, never the primary's.
    points = {p["name"]: p["pagerduties"][0]["integrationKey"] for p in homelab.yaml("grafana/contact-points.json")
              if "pagerduties" in p}
    assert points == {"pagerduty-primary": "<secret pagerdutyRoutingKey>",
                      "virtualization-oncall": "<secret virtualizationPagerdutyRoutingKey>"}


def test_the_latency_runbook_escalates_to_the_receiver_virtualization_pages_reach(homelab):
    text = (ROOT / "runbooks" / "ApiGatewayLatencyBudgetBurn.md").read_text()
    mitigation = text.split("## Mitigation", 1)[1]
    am = homelab.out / "alertmanager" / "alertmanager.yml"
    reached = run_tool("amtool", "config", "routes", "test", f"--config.file={am}", "service=virtualization",
                       "severity=critical").stdout.strip().split(",")
    oncall = [r for r in reached if r != "pagerduty-primary"]
    assert oncall and f"`{oncall[0]}`" in mitigation
    for alert in ("PveNodeDown", "PveQuorumLost"):
        assert f"({alert}.md)" in mitigation and (ROOT / "runbooks" / f"{alert}.md").exists()


def test_the_pbs_host_installs_the_pinned_exporter_with_the_token_as_a_file(homelab):
    doc = homelab.yaml("hosts/pbs/user-data.yaml")
    files = {f["path"]: f for f in doc["write_files"]}
    assert files[pve.REQUIREMENTS_PATH]["content"] == pve.REQUIREMENTS.read_text()
    assert "prometheus-pve-exporter==3.10.2" in pve.REQUIREMENTS.read_text().splitlines()
    token = files[pve.TOKEN_ENV_PATH]
    assert (token["permissions"], token["owner"]) == ("0600", "root:root")
    unit = files[pve.UNIT_PATH]["content"]
    assert f"EnvironmentFile={pve.TOKEN_ENV_PATH}" in unit and "PVE_TOKEN_VALUE" not in unit
    assert "Environment=PVE_USER=prometheus@pve" in unit and "Environment=PVE_TOKEN_NAME=exporter" in unit
    assert ["sh", "-c", pve.install_script()] in doc["runcmd"]
    assert "python3-venv" in doc["packages"]
    text = (homelab.out / "hosts" / "pbs" / "user-data.yaml").read_text()
    assert FAKE_SECRETS["pveExporterToken"] not in text and "<secret pveExporterToken>" in text
    # Only the pbs host runs it.
    assert pve.UNIT_PATH not in (homelab.out / "hosts" / "prom" / "user-data.yaml").read_text()


def _pbs_user_data(cfg) -> dict:
    from model.cloud_init import user_data
    from model.hosts import plan_vms

    plans = {p.name: p for p in plan_vms(cfg)}
    return user_data(cfg, plans[cfg.placement("pveExporter")], {k: "x" for k in required_secrets(cfg)})


def _files(doc: dict) -> dict[str, str]:
    return {f["path"]: f["content"] for f in doc["write_files"]}


def _with_ca(ca: str):
    return homelab_config(lambda s: s["pveExporter"].update(caCertificate=ca))


def test_a_ca_certificate_is_the_only_one_the_exporter_trusts(tmp_path):
    from model.cloud_init import render

    ca = self_signed(tmp_path)[0].read_text()
    doc = _pbs_user_data(_with_ca(ca))
    files = _files(doc)
    assert files[pve.CA_PATH] == ca.strip() + "\n"
    assert f"Environment=REQUESTS_CA_BUNDLE={pve.CA_PATH}\n" in files[pve.UNIT_PATH]
    # Not added to the system store either: nothing else on the host trusts the cluster's CA.
    assert "ca_certs" not in doc
    # Without one, the system store (a publicly trusted certificate on the nodes).
    plain = _files(_pbs_user_data(homelab_config()))
    assert pve.CA_PATH not in plain and "Environment=REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt\n" in plain[pve.UNIT_PATH]
    (tmp_path / "user-data.yaml").write_text(render(doc))
    result = subprocess.run(["cloud-init", "schema", "--config-file", str(tmp_path / "user-data.yaml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "Valid cloud-config" in result.stdout, result.stdout + result.stderr
    assert _problems(lambda s: s["pveExporter"].update(caCertificate="not a pem")) == {
        "pveExporter.caCertificate": "must be one or more PEM certificates (-----BEGIN CERTIFICATE-----)"}


# --- who may reach the exporter ------------------------------------------------------------------

def _firewall(homelab) -> tuple[str, dict]:
    doc = homelab.yaml("hosts/pbs/user-data.yaml")
    return _files(doc)[pve.FIREWALL_PATH], doc


def test_the_exporter_starts_only_behind_its_firewall(homelab, tmp_path):
    ruleset, doc = _firewall(homelab)
    assert "nftables" in doc["packages"]
    unit = _files(doc)[pve.UNIT_PATH].splitlines()
    # Loaded with full privileges before the exporter, which does not start if it fails.
    assert unit.index(f"ExecStartPre=+/usr/sbin/nft -f {pve.FIREWALL_PATH}") < next(
        i for i, line in enumerate(unit) if line.startswith("ExecStart="))
    (tmp_path / "firewall.nft").write_text(ruleset)
    # nft's own check (parser and the kernel's netlink validation), in a private user and network namespace.
    check = subprocess.run(["unshare", "-rn", "nft", "--check", "--file", str(tmp_path / "firewall.nft")],
                           capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    (tmp_path / "broken.nft").write_text(ruleset.replace("priority filter", "priority nonsense"))
    broken = subprocess.run(["unshare", "-rn", "nft", "--check", "--file", str(tmp_path / "broken.nft")],
                            capture_output=True, text=True, timeout=60)
    assert broken.returncode != 0 and "nonsense" in broken.stderr


def test_only_the_hosts_prometheus_runs_on_reach_the_exporters_port(homelab, tmp_path):
    """The rendered ruleset loaded (twice, as on a restart) in a private network namespace that has
    the inventory's addresses: the exporter's port answers loopback and the prometheus role's hosts,
    and drops every other address (IPv6 included); another port (PBS' 8007) stays open to all."""
    ruleset, _ = _firewall(homelab)
    (tmp_path / "firewall.nft").write_text(ruleset)
    hosts = homelab_sections()["hosts"]
    prometheus = sorted(h["address"] for h in hosts.values() if h["role"] == "prometheus")
    others = sorted(h["address"] for h in hosts.values() if h["role"] != "prometheus")
    port = homelab_config().pve_exporter.port
    sources = ["127.0.0.1", "::1", *prometheus, *others, "192.168.99.7", "fd00::7"]
    addresses = [a for a in sources if a not in ("127.0.0.1", "::1")]
    setup = "; ".join(["ip link set lo up"] + [f"ip addr add {a}/{128 if ':' in a else 32} dev lo{' nodad' if ':' in a else ''}"
                                               for a in addresses + ["fd00::1"]])
    probe = shlex.join([sys.executable, str(ROOT / "tests" / "netns_probe.py"), str(port), "8007", others[0], "fd00::1", *sources])
    firewall = shlex.quote(str(tmp_path / "firewall.nft"))
    result = subprocess.run(["unshare", "-rn", "sh", "-ec", f"{setup}; {probe}; nft -f {firewall}; nft -f {firewall}; {probe}"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    before, after = (json.loads(line) for line in result.stdout.splitlines())
    assert set(before.values()) == {"open"}, before  # without the ruleset every source reaches both ports
    allowed = {"127.0.0.1", "::1", *prometheus}
    assert after == {f"{s}->{p}": "open" if p == 8007 or s in allowed else "dropped" for s in sources for p in (port, 8007)}


# --- the real exporter against the fake cluster -------------------------------------------------

def _venv_stamp() -> str:
    return hashlib.sha256(pve.REQUIREMENTS.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def exporter_venv() -> Path:
    """The exporter's own venv from services/pve_exporter/pve-exporter-requirements.txt (`make test` builds it first)."""
    stamp = VENV / ".requirements-sha256"
    if not (stamp.exists() and stamp.read_text() == _venv_stamp()):
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(VENV)], check=True, timeout=300)
        subprocess.run([str(VENV / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", "-r", str(pve.REQUIREMENTS)],
                       check=True, timeout=900)
        stamp.write_text(_venv_stamp())
    return VENV


def _unit_command(doc: dict) -> tuple[list[str], dict[str, str]]:
    """ExecStart and Environment= of the unit cloud-init installs, as systemd would run them."""
    lines = _files(doc)[pve.UNIT_PATH].splitlines()
    env = dict(line.removeprefix("Environment=").split("=", 1) for line in lines if line.startswith("Environment="))
    command = shlex.split(next(line for line in lines if line.startswith("ExecStart=")).removeprefix("ExecStart="))
    return command, env


def _start_exporter(venv: Path, ca: Path, token: str, work: Path, log) -> tuple[subprocess.Popen, int]:
    """The unit's command and environment of a stack whose caCertificate is `ca`, as systemd gives
    them: the token file's value, and the CA bundle the unit names, as cloud-init writes it, at a
    path of `work`; on a free port of 127.0.0.1. Returns once it answers."""
    doc = _pbs_user_data(_with_ca(ca.read_text()))
    command, env = _unit_command(doc)
    port = free_port()
    command = [str(venv / "bin" / "pve_exporter") if c.startswith(pve.VENV) else
               f"127.0.0.1:{port}" if c.startswith("0.0.0.0:") else c for c in command]
    bundle = work / "exporter-ca.pem"
    bundle.write_text(_files(doc)[env["REQUESTS_CA_BUNDLE"]])
    env = {**env, "PVE_TOKEN_VALUE": token, "REQUESTS_CA_BUNDLE": str(bundle), "PATH": os.environ["PATH"]}
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).read()
            return proc, port
        except OSError:
            assert proc.poll() is None and time.monotonic() < deadline, "the exporter did not start"
            time.sleep(0.2)


@pytest.fixture(scope="module")
def cluster(homelab, exporter_venv, tmp_path_factory):
    work = tmp_path_factory.mktemp("pve")
    cert, key = self_signed(work)
    fake = FakePveCluster()
    fake.guests = {g.vmid: g for g in [
        Guest(101, "pve1", "gateway", hastate="started"),
        Guest(102, "pve2", "k3s-agent", hastate="started"),
        Guest(105, "pve1", "scratch"),
        Guest(210, "pve1", "pbs"),
        Guest(300, "pve2", "dns", kind="lxc"),
    ]}
    fake.storages = [Storage("local-zfs", "zfspool", "images,rootdir", ("pve1", "pve2")),
                     Storage("nas-nfs", "nfs", "backup,iso", ("pve1", "pve2"), shared=1)]
    fake.replications = [Replication(101, "pve1", "pve2")]
    ports = {node: fake.start(node, cert, key) for node in ("pve1", "pve2")}
    log = (work / "exporter.log").open("w")
    proc, port = _start_exporter(exporter_venv, cert, TOKEN.split("=", 1)[1], work, log)
    job = next(j for j in homelab.yaml("prometheus/scrape-configs.yaml")["scrape_configs"] if j["job_name"] == "pve")
    yield fake, ports, port, job, work
    proc.terminate()
    proc.wait(timeout=10)
    fake.stop_all()


def _scrape(cluster, node: str) -> tuple[int, str]:
    fake, ports, port, job, _ = cluster
    params = {k: v[0] for k, v in job["params"].items()}
    url = f"http://127.0.0.1:{port}{job['metrics_path']}?{urlencode({**params, 'target': f'127.0.0.1:{ports[node]}'})}"
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _as_input_series(text: str, node: str, minutes: int) -> list[dict]:
    """The samples as Prometheus stores them after the pve job's relabelling, held for `minutes`."""
    out = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = {**sample.labels, "job": "pve", "instance": node, "pve_node": node, "service": "virtualization"}
            selector = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
            out.append({"series": f"{sample.name}{{{selector}}}", "values": f"{sample.value:g}x{minutes}"})
    return out


def test_a_healthy_cluster_exposes_what_the_rules_read_and_fires_nothing(homelab, cluster, tmp_path):
    fake = cluster[0]
    series = []
    for node in ("pve1", "pve2"):
        status, text = _scrape(cluster, node)
        assert status == 200, text
        series += _as_input_series(text, node, 90)
    names = {s["series"].split("{", 1)[0] for s in series}
    # pve_not_backed_up_info has a sample only per guest without a job: see the degraded cluster.
    read = {"pve_up", "pve_ha_state", "pve_replication_failed_syncs", "pve_replication_info", "pve_not_backed_up_total", "pve_guest_info", "pve_cpu_usage_ratio", "pve_memory_usage_bytes",
            "pve_memory_size_bytes", "pve_disk_usage_bytes", "pve_disk_size_bytes", "pve_replication_last_sync_timestamp_seconds"}
    assert read <= names, sorted(read - names)
    assert fake.unknown == []
    # What 3.10 asks a node for: nothing under /nodes/<node>/status.
    asked = {path for _, path in fake.requests}
    assert {"/cluster/status", "/cluster/resources", "/cluster/backup-info/not-backed-up", "/version",
            "/nodes/pve1/replication", "/nodes/pve1/replication/101-0/status", "/nodes/pve1/subscription",
            "/nodes/pve2/lxc", "/nodes/pve2/lxc/300/config"} <= asked
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        "input_series": series,
        "promql_expr_test": [
            {"expr": 'count(min by (id) (pve_up{id=~"node/.*"}))', "eval_time": "80m", "exp_samples": [{"labels": "{}", "value": 2}]},
            {"expr": 'ALERTS{service="virtualization"}', "eval_time": "80m", "exp_samples": []},
        ],
    }], files=RULES)


def _query(base: str, expr: str) -> list[dict]:
    with urllib.request.urlopen(f"{base}/api/v1/query?{urlencode({'query': expr})}", timeout=10) as response:
        return json.loads(response.read())["data"]["result"]


def test_a_real_prometheus_scrapes_every_node_with_the_rendered_job_and_evaluates_the_rules(homelab, cluster, tmp_path):
    """The rendered `pve` job as it is (path, params, relabelling), only its addresses moved to
    127.0.0.1 and its interval shortened; the rules evaluate on what it stores without an error."""
    _, ports, port, job, _ = cluster
    job = copy.deepcopy(job)
    job.update(scrape_interval="2s", scrape_timeout="2s")
    for static in job["static_configs"]:
        static["targets"] = [f"127.0.0.1:{ports[static['labels']['pve_node']]}"]
    for relabel in job["relabel_configs"]:
        if relabel.get("target_label") == "__address__":
            relabel["replacement"] = f"127.0.0.1:{port}"
    rules = yaml.safe_load((homelab.out / "prometheus" / "rules" / "virtualization.yaml").read_text())
    for group in rules["groups"]:
        group["interval"] = "1s"
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(rules))
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump({
        "global": {"evaluation_interval": "1s"}, "rule_files": [str(tmp_path / "rules.yaml")], "scrape_configs": [job]}))
    prom_port = free_port()
    process = ManagedProcess("prometheus", ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                                            f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{prom_port}"],
                             tmp_path / "prometheus.log").start()
    base = f"http://127.0.0.1:{prom_port}"
    try:
        wait_ready(process, f"{base}/-/ready")
        deadline = time.monotonic() + 60
        while len(_query(base, 'up{job="pve"} == 1')) < 2 or not _query(base, "pve_not_backed_up_total"):
            assert time.monotonic() < deadline, _query(base, 'up{job="pve"}')
            time.sleep(0.5)
        # Each node is its own target, labelled by its name; each answers for the whole cluster.
        assert {r["metric"]["instance"] for r in _query(base, 'pve_up{id="node/pve1"}')} == {"pve1", "pve2"}
        time.sleep(3)  # a few evaluations on the stored series
        with urllib.request.urlopen(f"{base}/api/v1/rules", timeout=10) as response:
            evaluated = [r for g in json.loads(response.read())["data"]["groups"] for r in g["rules"]]
        assert len(evaluated) == len(rules["groups"][0]["rules"])
        assert [(r["name"], r.get("lastError")) for r in evaluated if r["health"] != "ok"] == []
    finally:
        process.stop()


def test_a_degraded_cluster_fires_every_virtualization_alert(homelab, cluster, tmp_path):
    fake = cluster[0]
    with fake.lock:
        fake.online["pve2"] = False
        fake.guests[101].hastate = "error"
        fake.guests[105].backed_up = False
        fake.storages[1].unavailable_on = {"pve1"}
        fake.replications[0].fail_count = 3
    fake.stop("pve2")  # a node that is down answers nothing
    status, text = _scrape(cluster, "pve2")
    assert status == 500, "the exporter answers an unreachable node with an error, and keeps serving"
    status, text = _scrape(cluster, "pve1")
    assert status == 200, text
    alert = 'alertstate="firing",service="virtualization"'
    _unit_test(homelab, tmp_path, [{
        "interval": "1m",
        "input_series": _as_input_series(text, "pve1", 90),
        "promql_expr_test": [
            _firing("PveNodeDown", "80m", [f'ALERTS{{alertname="PveNodeDown",{alert},id="node/pve2",node="pve2",severity="critical"}}']),
            _firing("PveQuorumLost", "80m", [f'ALERTS{{alertname="PveQuorumLost",{alert},id="cluster/homelab",severity="critical"}}']),
            # pve2's storages went with the node: only the NFS share of the online node is news.
            _firing("PveStorageUnavailable", "80m", [
                f'ALERTS{{alertname="PveStorageUnavailable",{alert},id="storage/pve1/nas-nfs",node="pve1",severity="critical"}}']),
            _firing("PveHaResourceNotStarted", "80m", [
                f'ALERTS{{alertname="PveHaResourceNotStarted",{alert},id="qemu/101",severity="critical",state="error"}}']),
            _firing("PveReplicationFailing", "80m", [
                f'ALERTS{{alertname="PveReplicationFailing",{alert},guest="qemu/101",id="101-0",severity="warning",'
                'source="node/pve1",target="node/pve2"}']),
            _firing("PveGuestNotBackedUp", "80m", [
                f'ALERTS{{alertname="PveGuestNotBackedUp",{alert},id="qemu/105",name="scratch",severity="warning"}}']),
        ],
    }], files=RULES)


@contextlib.contextmanager
def _exporter_before_one_node(venv: Path, work: Path, fake: FakePveCluster, ca: Path | None = None,
                              token: str = TOKEN.split("=", 1)[1]):
    """Node pve1 of `fake` with a certificate of its own, and the exporter with the stack's CA
    `ca` (default: the node's certificate); yields the exporter's /pve URL for that node."""
    cert, key = self_signed(work)
    target = fake.start("pve1", cert, key)
    log = (work / "exporter.log").open("w")
    proc, port = _start_exporter(venv, ca or cert, token, work, log)
    try:
        yield f"http://127.0.0.1:{port}/pve?target=127.0.0.1:{target}&cluster=1&node=1"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()
        fake.stop_all()


def test_a_wrong_token_is_an_error_not_empty_metrics(exporter_venv, tmp_path):
    fake = FakePveCluster()
    with _exporter_before_one_node(exporter_venv, tmp_path, fake, token="not-the-token") as url:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url, timeout=30)
        assert err.value.code == 500
        assert fake.requests, "the exporter did ask the node"


def test_a_node_certificate_another_ca_signed_gets_no_request(exporter_venv, tmp_path):
    """With caCertificate set, a certificate valid for the address but from any other CA (as a
    publicly trusted one for a foreign host would be) fails the handshake: the token is never sent."""
    (tmp_path / "ours").mkdir()
    ours, _ = self_signed(tmp_path / "ours")
    fake = FakePveCluster()
    with _exporter_before_one_node(exporter_venv, tmp_path, fake, ca=ours) as url:
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(url, timeout=30)
        assert err.value.code == 500
        assert fake.requests == []
    assert "CERTIFICATE_VERIFY_FAILED" in (tmp_path / "exporter.log").read_text()


class _StaleResources(FakePveCluster):
    """A cluster whose /cluster/resources says every node is online, whatever /cluster/status says."""

    def resources(self, kind):
        return [{**r, "status": "online"} if r["type"] == "node" else r for r in super().resources(kind)]


def test_a_nodes_pve_up_is_its_online_in_cluster_status_not_resources(exporter_venv, tmp_path):
    """What PveNodeDown's runbook says it reads: pve_up{id="node/..."} follows /cluster/status."""
    fake = _StaleResources()
    fake.online["pve2"] = False
    with _exporter_before_one_node(exporter_venv, tmp_path, fake) as url:
        with urllib.request.urlopen(url, timeout=30) as response:
            text = response.read().decode()
        assert [r["status"] for r in fake.resources("node") if r["id"] == "node/pve2"] == ["online"]
        up = {s.labels["id"]: s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == "pve_up"}
        assert (up["node/pve1"], up["node/pve2"]) == (1, 0)
        assert ("pve1", "/cluster/status") in fake.requests
