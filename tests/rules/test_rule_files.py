"""The standing promtool unit tests (tests/rules/*.test.yaml) against the rules the homelab renders.

Each file names its rule files as `make preview` writes them (../../build/homelab/...), so a reader runs
one by hand with promtool; here they run against this session's render of the same stack."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.conftest import run_tool

STANDING = sorted(Path(__file__).resolve().parent.glob("*.test.yaml"))
BUILD_RULES = "../../build/homelab/prometheus/rules/"


def test_every_rendered_rule_file_has_its_standing_tests(homelab):
    """One file per domain, named after the rule file it tests: a new domain's rules come with theirs."""
    assert {p.name.removesuffix(".test.yaml") for p in STANDING} == {p.stem for p in homelab.rule_files}


@pytest.mark.parametrize("standing", STANDING, ids=lambda p: p.name)
def test_standing_rule_tests_pass_on_the_rendered_rules(standing, homelab, tmp_path):
    doc = yaml.safe_load(standing.read_text())
    assert doc["rule_files"] and all(f.startswith(BUILD_RULES) for f in doc["rule_files"]), doc["rule_files"]
    doc["rule_files"] = [str(homelab.out / "prometheus" / "rules" / f.removeprefix(BUILD_RULES)) for f in doc["rule_files"]]
    path = tmp_path / standing.name
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    result = run_tool("promtool", "test", "rules", path)
    assert result.returncode == 0, result.stdout + result.stderr
