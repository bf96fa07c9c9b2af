"""Shared fixtures: the homelab stack rendered once per session, with recognisable fake secrets."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tools.offline_engine import ROOT, Recording, run_program

# Values no rendered file may contain.
FAKE_SECRETS = {
    "k3sToken": "K10fake-join-token::server:0f0f0f0f",
    "pagerdutyRoutingKey": "pd-routing-key-6f1c2b9e8a7d4c3b",
    "mattermostWebhookUrl": "https://chat.internal/hooks/mm-webhook-secret-93b1d0",
    "alertingHeartbeatToken": "heartbeat-token-51e0aa2c",
}


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


def run_tool(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True, timeout=300)
