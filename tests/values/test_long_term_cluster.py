"""The long-term store as the chart deploys it: a VictoriaMetrics cluster (vminsert -> two vmstorage
-> vmselect, replicationFactor 2, the rendered extraArgs) at the chart's version, fed by the real
Prometheus with the stack's rendered remote-write (only the host:port of its URL changes).
One vmstorage stops mid-write: queries keep answering in full, and no sample is lost once it is back."""

from __future__ import annotations

import time
import urllib.parse
from pathlib import Path

import pytest
import yaml

from tests.conftest import FAKE_SECRETS, Rendered
from tests.long_term_world import APP_METRIC, SCRAPE_INTERVAL, LongTermWorld, _get
from tests.stacks import write_stack
from tools.drill.processes import ManagedProcess, free_port, wait_ready
from tools.offline_engine import run_program

OUTAGE_S = 20.0


def _two_copies(sections):
    sections["metrics"]["longTerm"] = {"storage": {"sizeGb": 100}, "vmstorageReplicas": 2, "replicationFactor": 2}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> Rendered:
    from tools.preview import render

    directory = tmp_path_factory.mktemp("long-term-cluster")
    recording = run_program(write_stack(directory, _two_copies, stack="ltcluster"), FAKE_SECRETS)
    return Rendered(recording, render(recording, directory / "build"))


def _flags(extra_args: dict) -> list[str]:
    return [f"-{k}={v}" for k, v in extra_args.items()]


class ClusterWorld(LongTermWorld):
    """LongTermWorld with the cluster as the store; vm_url is vmselect's Prometheus API of tenant 0."""

    def __init__(self, rendered: Path, work: Path):
        super().__init__(rendered, work)
        values = yaml.safe_load((rendered / "helm" / "victoria-metrics-cluster.values.yaml").read_text())
        self.args = {c: dict(values[c].get("extraArgs", {})) for c in ("vminsert", "vmselect", "vmstorage")}
        # The stack deduplicates to one sample per scrape interval (an HA pair writes each twice). This
        # test counts samples one by one, and a starved Prometheus may scrape twice within a second:
        # deduplication here only merges a sample with its own replica.
        for component in ("vmselect", "vmstorage"):
            self.args[component]["dedup.minScrapeInterval"] = "1ms"
        self.retention = values["vmstorage"]["retentionPeriod"]
        self.storage_ports = [{"http": free_port(), "insert": free_port(), "select": free_port()}
                              for _ in range(values["vmstorage"]["replicaCount"])]
        self.insert_port, self.select_port = free_port(), free_port()
        self.vm_url = f"http://127.0.0.1:{self.select_port}/select/0/prometheus"
        self.storages: list[ManagedProcess] = []

    def remote_write(self) -> list[dict]:
        doc = yaml.safe_load((self.rendered / "prometheus" / "remote-write.yaml").read_text())
        for entry in doc["remote_write"]:
            url = urllib.parse.urlsplit(entry["url"])
            entry["url"] = url._replace(netloc=f"127.0.0.1:{self.insert_port}").geturl()
        return doc["remote_write"]

    def start_storage(self, index: int) -> ManagedProcess:
        ports = self.storage_ports[index]
        process = self.supervisor.start(ManagedProcess(f"vmstorage-{index}", [
            "vmstorage", f"-storageDataPath={self.work / f'vmstorage-{index}'}",
            f"-httpListenAddr=127.0.0.1:{ports['http']}", f"-vminsertAddr=127.0.0.1:{ports['insert']}",
            f"-vmselectAddr=127.0.0.1:{ports['select']}", f"-retentionPeriod={self.retention}",
            "-loggerLevel=WARN", *_flags(self.args["vmstorage"])], self.work / f"vmstorage-{index}.log"))
        wait_ready(process, f"http://127.0.0.1:{ports['http']}/health")
        return process

    def start_store(self) -> None:
        self.storages = [self.start_storage(i) for i in range(len(self.storage_ports))]
        nodes = {kind: ",".join(f"127.0.0.1:{p[kind]}" for p in self.storage_ports) for kind in ("insert", "select")}
        vminsert = self.supervisor.start(ManagedProcess("vminsert", [
            "vminsert", f"-httpListenAddr=127.0.0.1:{self.insert_port}", f"-storageNode={nodes['insert']}",
            "-loggerLevel=WARN", *_flags(self.args["vminsert"])], self.work / "vminsert.log"))
        # latencyOffset: just-written samples answer /api/v1/query at once (default 30s).
        vmselect = self.supervisor.start(ManagedProcess("vmselect", [
            "vmselect", f"-httpListenAddr=127.0.0.1:{self.select_port}", f"-storageNode={nodes['select']}",
            "-search.latencyOffset=1s", "-loggerLevel=WARN", *_flags(self.args["vmselect"])],
            self.work / "vmselect.log"))
        wait_ready(vminsert, f"http://127.0.0.1:{self.insert_port}/health")
        wait_ready(vmselect, f"http://127.0.0.1:{self.select_port}/health")

    def answer(self, query: str) -> dict:
        return _get(f"{self.vm_url}/api/v1/query?{urllib.parse.urlencode({'query': query})}")


def test_the_rendered_cluster_keeps_two_copies(rendered):
    values = rendered.yaml("helm/victoria-metrics-cluster.values.yaml")
    assert values["vminsert"]["extraArgs"]["replicationFactor"] == 2
    assert values["vmselect"]["extraArgs"]["replicationFactor"] == 2
    assert values["vmstorage"]["replicaCount"] == 2


def test_a_vmstorage_stopped_mid_write_loses_nothing_and_queries_keep_answering(rendered, tmp_path):
    with ClusterWorld(rendered.out, tmp_path) as world:
        assert world.wait(lambda: world.vm_query(f"rate({APP_METRIC}[10s])"), 30), \
            (tmp_path / "prometheus.log").read_text()[-2000:]
        # Samples from 15s to 5s before the stop were sent to both (the queue sends within 5s).
        time.sleep(10)
        before = time.time() - 15
        world.storages[1].stop()
        answers = []
        down_until = time.monotonic() + OUTAGE_S
        while time.monotonic() < down_until:
            answers.append(world.answer(f"count_over_time({APP_METRIC}[1m])"))
            time.sleep(1)
        # With two copies of every sample, one vmstorage away: full answers, not partial ones.
        assert all(a["status"] == "success" and a["data"]["result"] for a in answers), answers[-1]
        assert not any(a.get("isPartial") for a in answers), answers[-1]
        world.storages[1] = world.start_storage(1)
        time.sleep(3)
        after = time.time()
        scraped = world.prom_timestamps(before, after)
        # No sample lost: the store holds every sample Prometheus scraped, before, during and after.
        world.wait(lambda: len(world.vm_timestamps(before, after)) >= len(scraped), 30)
        stored = world.vm_timestamps(before, after)
        assert len(scraped) > OUTAGE_S / SCRAPE_INTERVAL
        assert [round(t, 3) for t in stored] == [round(t, 3) for t in scraped]
        # And what was written while both ran has its second copy on the node that stayed: the
        # first node away, the samples from before the outage still answer in full.
        world.storages[0].stop()
        kept = world.vm_timestamps(before, before + 10)
        assert len(kept) >= 8
        assert [round(t, 3) for t in kept] == [round(t, 3) for t in scraped if t <= before + 10]
