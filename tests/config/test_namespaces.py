"""A config key in a namespace nothing reads is an error with the namespace meant, not a dropped section."""

from __future__ import annotations

import pulumi
import pytest
import yaml

from tests.conftest import FAKE_SECRETS
from tests.stacks import HOMELAB
from tools.offline_engine import Recording, run_program


def _preview_problems(tmp_path, change) -> list[str]:
    doc = yaml.safe_load(HOMELAB.read_text())
    change(doc["config"])
    path = tmp_path / "Pulumi.typo.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    recording = Recording("homelab-observability", "typo")
    with pytest.raises(pulumi.RunError) as err:
        run_program(path, FAKE_SECRETS, recording=recording)
    assert recording.resources == []
    return str(err.value).splitlines()[1:]


def test_a_misspelled_project_namespace_names_the_key_meant(tmp_path):
    """Was: 61 resources would be created, and every SLO quietly dropped."""
    def typo(config):
        config["homelab-observabilty:slos"] = config.pop("homelab-observability:slos")

    assert _preview_problems(tmp_path, typo) == [
        "  - homelab-observabilty:slos: unknown namespace 'homelab-observabilty': nothing reads it (the program reads "
        "homelab-observability:, proxmoxve:, kubernetes:, grafana:, random:, pulumi:); did you mean "
        "'homelab-observability:slos'?"]


def test_a_provider_namespace_near_miss_and_a_stray_one(tmp_path):
    def typo(config):
        config["proxmox:insecure"] = config.pop("proxmoxve:insecure")
        config["aws:region"] = "eu-west-1"

    problems = _preview_problems(tmp_path, typo)
    assert len(problems) == 2
    assert problems[0].startswith("  - aws:region: unknown namespace 'aws': nothing reads it") and "did you mean" not in problems[0]
    assert problems[1].endswith("did you mean 'proxmoxve:insecure'?")
