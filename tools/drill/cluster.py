"""The drill beyond one node: an Alertmanager cluster of peers gossiping on 127.0.0.1, and the
configuration of each replica of an HA Prometheus pair.

A clustered Alertmanager deduplicates by its notification log: every peer receives every alert
(Prometheus sends to all of them), every peer's group flushes, and the peer at position p of the
sorted member list waits p x `--cluster.peer-timeout` before it notifies, then sends only what
the log, gossiped from the peers before it, does not already hold. The drill scales that wait
and the gossip timers with the scenario's factor, so that "the second peer waits for the first"
keeps its proportion to group_wait; the floors keep gossip faster than the wait on a busy
2-core machine.
"""

from __future__ import annotations

import copy
import json
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from model.long_term import REPLICA_LABEL
from tools.drill import durations
from tools.drill.processes import ManagedProcess, ProcessSupervisor, free_port, wait_ready

ALERTMANAGER = "alertmanager"  # built by `make upstream` at the chart's version (tools/upstream.py)
# Alertmanager's defaults (0.25 to 0.34 alike), in real seconds, and the drill's floors in wall seconds.
PEER_TIMEOUT_S, PEER_TIMEOUT_FLOOR = 15.0, 0.5
PUSHPULL_INTERVAL_S, PUSHPULL_FLOOR = 60.0, 0.5
# Gossip rounds (default 200ms) are not a duration of the stack; 20 ms gives the log ~25 rounds
# to reach the next peer within its wait.
GOSSIP_INTERVAL = 0.02


@dataclass(frozen=True)
class PeerTiming:
    peer_timeout_s: float  # wall seconds each later position waits
    pushpull_interval_s: float

    @classmethod
    def for_factor(cls, factor: float) -> "PeerTiming":
        return cls(max(PEER_TIMEOUT_S / factor, PEER_TIMEOUT_FLOOR), max(PUSHPULL_INTERVAL_S / factor, PUSHPULL_FLOOR))


@dataclass
class Peer:
    index: int
    web_port: int
    cluster_port: int
    process: ManagedProcess | None = None
    lives: int = 0  # how often it was started (each fresh storage gets its own directory)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.web_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running


class AlertmanagerCluster:
    """`size` peers sharing one configuration; a single one runs with clustering off."""

    def __init__(self, work: Path, config_file: Path, size: int, factor: float):
        if size < 1:
            raise ValueError(f"an Alertmanager cluster needs at least one peer (got {size})")
        self.supervisor: ProcessSupervisor | None = None
        self.work = work
        self.config_file = config_file
        self.timing = PeerTiming.for_factor(factor)
        ports: list[int] = []
        while len(ports) < 2 * size:  # the kernel may hand out a just-released port again
            port = free_port()
            if port not in ports:
                ports.append(port)
        self.peers = [Peer(i, ports[2 * i], ports[2 * i + 1]) for i in range(size)]

    @property
    def addresses(self) -> list[str]:
        return [p.address for p in self.peers]

    def _storage(self, peer: Peer, fresh: bool) -> Path:
        if fresh:
            peer.lives += 1
        suffix = f"-{peer.index}" if len(self.peers) > 1 else ""
        return self.work / f"alertmanager-data{suffix}{f'.{peer.lives}' if peer.lives else ''}"

    def argv(self, peer: Peer, storage: Path) -> list[str]:
        argv = [ALERTMANAGER, f"--config.file={self.config_file}", f"--storage.path={storage}",
                f"--web.listen-address={peer.address}", "--log.level=info"]
        if len(self.peers) == 1:
            return argv[:4] + ["--cluster.listen-address="] + argv[4:]
        own = f"127.0.0.1:{peer.cluster_port}"
        # Advertised explicitly: memberlist refuses to guess an address for a loopback bind.
        argv += [f"--cluster.listen-address={own}", f"--cluster.advertise-address={own}",
                 *(f"--cluster.peer=127.0.0.1:{p.cluster_port}" for p in self.peers if p is not peer),
                 f"--cluster.peer-timeout={durations.format_seconds(self.timing.peer_timeout_s)}",
                 f"--cluster.gossip-interval={durations.format_seconds(GOSSIP_INTERVAL)}",
                 f"--cluster.pushpull-interval={durations.format_seconds(self.timing.pushpull_interval_s)}"]
        return argv

    def start(self, peer: Peer, fresh_storage: bool = False) -> None:
        assert self.supervisor is not None, "start_all first"
        name = "alertmanager" if len(self.peers) == 1 else f"alertmanager-{peer.index}"
        log = self.work / f"{name}.log"
        peer.process = self.supervisor.start(ManagedProcess(name, self.argv(peer, self._storage(peer, fresh_storage)), log))
        wait_ready(peer.process, f"{peer.url}/-/ready")

    def start_all(self, supervisor: ProcessSupervisor) -> None:
        self.supervisor = supervisor
        for peer in self.peers:
            self.start(peer)

    def stop(self, peer: Peer, kill: bool = False) -> None:
        if peer.process is not None:
            peer.process.kill() if kill else peer.process.stop()

    def sender(self) -> Peer:
        """The running peer at position 0: the one that notifies first, so the one whose loss matters."""
        running = [p for p in self.peers if p.running]
        if len(self.peers) == 1:
            return self.peers[0]
        return min(running, key=self.position)

    def position(self, peer: Peer) -> float:
        with urllib.request.urlopen(f"{peer.url}/metrics", timeout=2) as response:
            for line in response.read().decode().splitlines():
                if line.startswith("alertmanager_peer_position "):
                    return float(line.split()[1])
        return float("inf")

    def formed(self) -> bool:
        """Every peer counts every other as a member (a single one has no cluster to form)."""
        return len(self.peers) == 1 or all(self.members_seen(p) == len(self.peers) for p in self.peers)

    @staticmethod
    def members_seen(peer: Peer) -> int:
        """How many members `peer` counts in its cluster (itself included)."""
        with urllib.request.urlopen(f"{peer.url}/api/v2/status", timeout=2) as response:
            return len((json.load(response).get("cluster") or {}).get("peers") or [])


def replica_doc(prometheus_doc: dict, index: int) -> dict:
    """prometheus.yml of replica `index` of a pair, as the operator writes it for replicas > 1: its
    own replica external label, dropped again from the alerts it sends, so that Alertmanager sees
    the pair's alerts as one."""
    doc = copy.deepcopy(prometheus_doc)
    doc["global"].setdefault("external_labels", {})[REPLICA_LABEL] = f"prometheus-{index}"
    doc["alerting"]["alert_relabel_configs"] = [{"action": "labeldrop", "regex": REPLICA_LABEL}]
    return doc
