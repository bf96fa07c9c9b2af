"""A stack with two pbs hosts and two datastores on each, previewed end to end: the recovery service
and the PVE exporter run where recovery.host and pveExporter.host say (the second host, `archive`,
sorts first: it took both, silently, before placement was a key), every datastore is created on
its host's data disk without moving the first, and the alerts cover every datastore of both hosts."""

from __future__ import annotations

import copy
import subprocess

import pytest
import yaml

from model import network_policies
from model.config import load_stack_config
from tests.conftest import FAKE_SECRETS, run_tool
from tests.hosts.test_cloud_init_schema import CLOUD_INIT
from tests.stacks import homelab_sections, write_stack
from tools import preview
from tools.offline_engine import run_program

PBS, ARCHIVE = "192.168.30.20", "192.168.30.23"
STORES = {"pbs": ["homelab", "scratch"], "archive": ["archive", "offsite"]}


def two_pbs_hosts(recovery: str = "pbs", exporter: str = "pbs"):
    def change(sections):
        sections["hosts"]["pbs"]["datastores"] = STORES["pbs"]
        archive = copy.deepcopy(sections["hosts"]["pbs"])
        archive.update(vmId=213, address=ARCHIVE, datastores=STORES["archive"])
        sections["hosts"]["archive"] = archive
        sections["recovery"]["host"] = recovery
        sections["pveExporter"]["host"] = exporter
    return change


def _render(tmp_path_factory, change):
    directory = tmp_path_factory.mktemp("several-pbs")
    return preview.render(run_program(write_stack(directory, change), FAKE_SECRETS), directory / "build")


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    return _render(tmp_path_factory, two_pbs_hosts())


@pytest.fixture(scope="module")
def moved(tmp_path_factory):
    """Both services placed on the other pbs host."""
    return _render(tmp_path_factory, two_pbs_hosts(recovery="archive", exporter="archive"))


def _user_data(out, vm: str) -> dict:
    return yaml.safe_load((out / "hosts" / vm / "user-data.yaml").read_text())


def _commands(doc: dict) -> list[str]:
    return [" ".join(c) if isinstance(c, list) else c for c in doc["runcmd"]]


def _files(doc: dict) -> set[str]:
    return {f["path"] for f in doc["write_files"]}


def _scrape_job(out, name: str) -> dict:
    return next(j for j in yaml.safe_load((out / "prometheus" / "scrape-configs.yaml").read_text())["scrape_configs"] if j["job_name"] == name)


@pytest.mark.parametrize("build,host,other", [("out", "pbs", "archive"), ("moved", "archive", "pbs")])
def test_the_services_run_on_the_pbs_host_the_stack_names(request, build, host, other):
    out = request.getfixturevalue(build)
    address = {"pbs": PBS, "archive": ARCHIVE}
    here, there = _files(_user_data(out, host)), _files(_user_data(out, other))
    for service in ("/etc/recovery/recovery.yml", "/etc/systemd/system/prometheus-pve-exporter.service"):
        assert service in here and service not in there, service
    assert _scrape_job(out, "recovery")["static_configs"][0]["targets"] == [f"{address[host]}:9847"]
    assert {"target_label": "__address__", "replacement": f"{address[host]}:9221"} in _scrape_job(out, "pve")["relabel_configs"]
    recovery = yaml.safe_load((out / "recovery" / "recovery.yml").read_text())
    assert recovery["pbs"]["uiUrl"] == f"https://{host}.home.arpa:8007"


def test_every_pbs_host_exporter_and_node_is_scraped(out):
    for job in ("pbs-exporter", "pbs-node"):
        targets = {c["labels"]["instance"]: c["targets"] for c in _scrape_job(out, job)["static_configs"]}
        assert sorted(targets) == ["archive.home.arpa", "pbs.home.arpa"], job


def test_only_the_recovery_host_reads_prometheus():
    sections = copy.deepcopy(homelab_sections())
    two_pbs_hosts(recovery="archive")(sections)
    flows = [f for f in network_policies.flows(load_stack_config(sections)) if "compactor" in f.why]
    assert [f.source.rules() for f in flows] == [[{"ipBlock": {"cidr": f"{ARCHIVE}/32"}}]]


def test_the_first_datastore_stays_at_the_root_of_the_data_disk(out, homelab):
    """The pbs host's first datastore is created exactly as in a stack with that one datastore: its
    path, the data disk's mount point, never moves when a datastore is added."""
    doc, single = _user_data(out, "pbs"), yaml.safe_load((homelab.out / "hosts" / "pbs" / "user-data.yaml").read_text())
    assert doc["mounts"] == single["mounts"] == [["LABEL=pbs-data", "/mnt/datastore/homelab", "ext4", "defaults,nofail", "0", "2"]]
    creates = [c for c in _commands(doc) if "datastore create" in c]
    assert creates[0] == next(c for c in _commands(single) if "datastore create" in c)
    assert len(creates) == 2


@pytest.mark.parametrize("vm", sorted(STORES))
def test_each_further_datastore_is_a_directory_of_the_data_disk(out, vm):
    first, second = STORES[vm]
    creates = [c for c in _commands(_user_data(out, vm)) if "datastore create" in c]
    assert [c.split("datastore create ")[1].split(" $reuse")[0] for c in creates] == [
        f"{first} /mnt/datastore/{first}", f"{second} /mnt/datastore/{second}"]
    directory = f"/mnt/datastore/{first}/.datastores/{second}"
    # on the mounted data disk only, linked where PBS finds it, adopted when it is there already
    assert f"mountpoint -q /mnt/datastore/{first} || " in creates[1]
    assert f"mkdir -p {directory}; [ -L /mnt/datastore/{second} ] || ln -sT {directory} /mnt/datastore/{second};" in creates[1]
    assert f"if [ -d /mnt/datastore/{second}/.chunks ]; then reuse='--reuse-datastore true'" in creates[1]


@pytest.mark.parametrize("vm", sorted(STORES))
def test_cloud_init_accepts_each_pbs_host(out, vm):
    result = subprocess.run([CLOUD_INIT, "schema", "--config-file", str(out / "hosts" / vm / "user-data.yaml")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("build,host", [("out", "pbs"), ("moved", "archive")])
def test_the_recovery_tokens_reach_every_datastore_of_its_host_and_its_triggers_only_those(request, build, host):
    out = request.getfixturevalue(build)
    script = next(c for c in _commands(_user_data(out, host)) if "recovery@pbs" in c)
    granted = {word for word in script.split() if word.startswith("/datastore/")}
    assert granted == {f"/datastore/{store}" for store in STORES[host]}
    triggers = yaml.safe_load((out / "recovery" / "recovery.yml").read_text())["triggers"]
    backup = [(t["alertname"], t["matchers"]) for t in triggers if t["playbook"] == "backup-failure"]
    assert backup == [(alert, {"datastore": store}) for alert in ("BackupJobFailed", "BackupMaintenanceJobFailed")
                      for store in STORES[host]]


# --- the alerts cover every datastore of every pbs host ------------------------------------------

def _series(metric: str, instance: str, value: str, **labels: str) -> dict:
    selector = ",".join(f'{k}="{v}"' for k, v in {**labels, "instance": f"{instance}.home.arpa", "job": "pbs-exporter"}.items())
    return {"series": f"{metric}{{{selector}}}", "values": value}


def test_alerts_fire_for_every_datastore_of_both_hosts(out, tmp_path):
    """Each datastore 99% full and one failed backup job on each, the same job id on every datastore."""
    stores = [(host, store) for host, names in STORES.items() for store in names]
    series = []
    for host, store in stores:
        series += [_series("pbs_datastore_size_bytes", host, "100x40", datastore=store),
                   _series("pbs_datastore_used_bytes", host, "99x40", datastore=store)]
        job = {"datastore": store, "job_id": "nightly", "job_type": "backup"}
        series += [_series("pbs_job_last_run_timestamp_seconds", host, "600x40", **job),
                   _series("pbs_job_last_success_timestamp_seconds", host, "0x40", **job)]
    rules = out / "prometheus" / "rules"
    firing = [{"expr": f'ALERTS{{alertname="{name}",alertstate="firing",severity="{severity}"}}', "eval_time": "30m",
               "exp_samples": [{"labels": f'ALERTS{{alertname="{name}",alertstate="firing",{labels(host, store)},'
                                          f'service="backups",severity="{severity}"}}', "value": 1}
                               for host, store in sorted(stores, key=lambda s: s[1])]}
              for name, severity, labels in (
                  ("PbsDatastoreUsageHigh", "critical",
                   lambda host, store: f'datastore="{store}",instance="{host}.home.arpa",job="pbs-exporter"'),
                  ("BackupJobFailed", "warning", lambda host, store: f'datastore="{store}",job_id="nightly",job_type="backup"'))]
    doc = {"rule_files": [str(rules / "backups.yaml"), str(rules / "disks.yaml")], "evaluation_interval": "1m",
           "tests": [{"interval": "1m", "input_series": series, "promql_expr_test": firing}]}
    path = tmp_path / "test.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = run_tool("promtool", "test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
