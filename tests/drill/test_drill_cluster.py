"""The drill's Alertmanager cluster (tools/drill/cluster.py): the flags each peer starts with, checked
by the real Alertmanager, and a real three-peer cluster that forms on 127.0.0.1."""

import subprocess
import time

import pytest

from tools.drill.cluster import ALERTMANAGER, AlertmanagerCluster, PeerTiming
from tools.drill.processes import ProcessSupervisor

CONFIG = "route:\n  receiver: nobody\nreceivers:\n- name: nobody\n"


def _flags(argv, name):
    return [a.split("=", 1)[1] for a in argv if a.startswith(f"--{name}=")]


def test_a_single_alertmanager_runs_with_clustering_off(tmp_path):
    cluster = AlertmanagerCluster(tmp_path, tmp_path / "am.yml", 1, 120)
    argv = cluster.argv(cluster.peers[0], tmp_path / "data")
    assert _flags(argv, "cluster.listen-address") == [""]
    assert not _flags(argv, "cluster.peer")


def test_each_peer_listens_advertises_itself_and_names_every_other(tmp_path):
    cluster = AlertmanagerCluster(tmp_path, tmp_path / "am.yml", 3, 120)
    ports = [p.cluster_port for p in cluster.peers]
    assert len(set(ports) | {p.web_port for p in cluster.peers}) == 6
    for peer in cluster.peers:
        argv = cluster.argv(peer, tmp_path / "data")
        own = f"127.0.0.1:{peer.cluster_port}"
        assert _flags(argv, "cluster.listen-address") == _flags(argv, "cluster.advertise-address") == [own]
        assert sorted(_flags(argv, "cluster.peer")) == sorted(f"127.0.0.1:{p}" for p in ports if p != peer.cluster_port)
    # Every flag is one the real Alertmanager 0.25 knows.
    help_text = subprocess.run([ALERTMANAGER, "--help-long"], capture_output=True, text=True).stdout
    for flag in {a.split("=", 1)[0] for a in cluster.argv(cluster.peers[0], tmp_path) if a.startswith("--")}:
        assert flag in help_text, flag


def test_peer_timers_scale_with_the_factor_down_to_their_floors():
    assert PeerTiming.for_factor(1) == PeerTiming(15.0, 60.0)  # Alertmanager's defaults
    assert PeerTiming.for_factor(20) == PeerTiming(0.75, 3.0)
    assert PeerTiming.for_factor(480) == PeerTiming(0.5, 0.5)


def test_three_peers_form_one_cluster_and_the_lost_sender_is_replaced(tmp_path):
    (tmp_path / "am.yml").write_text(CONFIG)
    cluster = AlertmanagerCluster(tmp_path, tmp_path / "am.yml", 3, 120)
    with ProcessSupervisor() as supervisor:
        cluster.start_all(supervisor)
        deadline = time.monotonic() + 20
        while not cluster.formed():
            assert time.monotonic() < deadline, [p.process.log_tail() for p in cluster.peers]
            time.sleep(0.1)
        positions = sorted(cluster.position(p) for p in cluster.peers)
        assert positions == [0, 1, 2]
        sender = cluster.sender()
        assert cluster.position(sender) == 0
        cluster.stop(sender, kill=True)
        assert not sender.running
        # The survivors keep counting the lost peer until memberlist declares it dead; then one of them is first.
        deadline = time.monotonic() + 20
        while cluster.position(cluster.sender()) != 0 or any(cluster.members_seen(p) != 2 for p in cluster.peers if p.running):
            assert time.monotonic() < deadline
            time.sleep(0.1)
        cluster.start(sender, fresh_storage=True)
        assert (tmp_path / "alertmanager-data-{}.1".format(sender.index)).is_dir()
        deadline = time.monotonic() + 20
        while not cluster.formed():
            assert time.monotonic() < deadline
            time.sleep(0.1)


def test_a_cluster_needs_a_peer(tmp_path):
    with pytest.raises(ValueError, match="at least one peer"):
        AlertmanagerCluster(tmp_path, tmp_path / "am.yml", 0, 120)
