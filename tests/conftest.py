"""Shared fixtures: the homelab stack rendered once per session, with recognisable fake secrets."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tools import upstream
from tools.offline_engine import ROOT, Recording, run_program

# Values no rendered file may contain.
FAKE_SECRETS = {
    "k3sToken": "K10fake-join-token::server:0f0f0f0f",
    "pagerdutyRoutingKey": "pd-routing-key-6f1c2b9e8a7d4c3b",
    "mattermostWebhookUrl": "https://chat.internal/hooks/mm-webhook-secret-93b1d0",
    "alertingHeartbeatToken": "heartbeat-token-51e0aa2c",
    "recoveryWebhookToken": "recovery-webhook-token-7d2e91",
    "recoveryPveReadToken": "recovery@pve!read=fake-read-3c1f",
    "recoveryPveBackupToken": "recovery@pve!backup=fake-backup-8a2b",
    "recoveryPveFallbackToken": "recovery@pve!fallback=fake-fallback-5e4d",
    "recoveryPveDrillToken": "recovery@pve!drill=fake-drill-9c7a",
    "recoveryTrueNasApiKey": "7-fake-truenas-key-0b9c",
    "pveExporterToken": "fake-pve-exporter-token-4d7a",
    "virtualizationPagerdutyRoutingKey": "pd-virtualization-key-2c8e5f1a",
}


def pytest_configure(config):
    """Tests run promtool, amtool, Prometheus, Alertmanager... at the charts' versions, by name."""
    try:
        upstream.put_on_path()
    except upstream.UpstreamError as exc:
        raise pytest.UsageError(str(exc)) from None


@dataclass
class Rendered:
    recording: Recording
    out: Path

    def yaml(self, relative: str):
        return yaml.safe_load((self.out / relative).read_text())

    @property
    def rule_files(self) -> list[Path]:
        return sorted((self.out / "prometheus" / "rules").glob("*.yaml"))


@pytest.fixture(scope="session")
def homelab(tmp_path_factory) -> Rendered:
    from tools.preview import render

    recording = run_program(ROOT / "Pulumi.homelab.yaml", FAKE_SECRETS)
    return Rendered(recording, render(recording, tmp_path_factory.mktemp("build")))


@pytest.fixture(scope="session")
def minimal(tmp_path_factory) -> Rendered:
    """The second example stack: one PVE node, one PBS host, none of the optional parts."""
    from tools.preview import render

    recording = run_program(ROOT / "Pulumi.minimal.yaml", FAKE_SECRETS)
    return Rendered(recording, render(recording, tmp_path_factory.mktemp("build")))


def run_tool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300)


def scale_out(sections) -> None:
    """The homelab stack in its scale-out modes: Loki simple-scalable, Tempo distributed, and metrics
    beyond one node: an Alertmanager cluster, an HA Prometheus pair, long-term metrics."""
    sections["logs"]["mode"] = "scalable"
    sections["logs"]["objectStorage"] = {"endpoint": "minio.home.arpa:9000",
                                         "buckets": {"chunks": "loki-chunks", "ruler": "loki-ruler"}}
    sections["traces"]["mode"] = "distributed"
    sections["traces"]["objectStorage"] = {"endpoint": "minio.home.arpa:9000", "bucket": "tempo-traces"}
    sections["metrics"]["alertmanager"]["replicas"] = 3
    sections["metrics"]["prometheus"]["replicas"] = 2
    sections["metrics"]["longTerm"] = {"retention": "2y", "storage": {"sizeGb": 100, "storageClass": "local-path"}}


@dataclass
class StackManifests:
    """A stack's preview and the `helm template` of each of its releases (tools/manifests.py)."""

    rendered: Rendered
    releases: dict  # release name -> tools.manifests.RenderedRelease
    scale_out: bool

    def objects(self, kind: str | None = None) -> list[tuple[str, dict]]:
        return [(name, m.object) for name, r in self.releases.items() for m in r.manifests
                if kind is None or m.kind == kind]


@pytest.fixture(scope="session", params=["homelab", "scale-out"])
def stack_manifests(request, homelab, tmp_path_factory) -> StackManifests:
    """Rendered once per session and stack: Helm is the slow part of the suite."""
    import json

    from tests.stacks import write_stack
    from tools import manifests
    from tools.preview import render

    if request.param == "homelab":
        rendered = homelab
    else:
        directory = tmp_path_factory.mktemp("scale-out")
        recording = run_program(write_stack(directory, scale_out, stack="scaleout"), FAKE_SECRETS)
        rendered = Rendered(recording, render(recording, directory / "build"))
    releases = manifests.releases_of(json.loads((rendered.out / "resources.json").read_text()))
    result = manifests.render_all(releases)
    manifests.write_manifests(result, rendered.out)
    return StackManifests(rendered, {r.release.name: r for r in result}, request.param == "scale-out")
