"""tools/review.py: the pull request comment tells a reviewer what changed for whom."""

from __future__ import annotations

import json
import shutil

import pytest
import yaml

from tools import paging, review


@pytest.fixture
def base_and_head(homelab, tmp_path):
    base, head = tmp_path / "base" / "homelab", tmp_path / "head" / "homelab"
    shutil.copytree(homelab.out, base)
    shutil.copytree(homelab.out, head)
    return base, head


def test_no_change_says_so(base_and_head):
    text = review.review(*base_and_head)
    assert text.startswith(review.MARKER)
    for what in ("who gets paged", "the rules", "the dashboards' panels and queries"):
        assert f"No change to {what}." in text
    assert "<summary>Who gets paged for what (the whole table)</summary>" in text


def test_a_route_change_reads_as_who_now_gets_paged(base_and_head):
    base, head = base_and_head
    am_file = head / "alertmanager" / "alertmanager.yml"
    doc = yaml.safe_load(am_file.read_text())
    virtualization = next(r for r in doc["route"]["routes"][2]["routes"] if r["receiver"] == "virtualization-oncall")
    virtualization["matchers"] = ['service = "virtualization"']  # its warnings now page too
    virtualization["repeat_interval"] = "1h"
    am_file.write_text(yaml.safe_dump(doc))
    paging.write(head, "homelab")
    # The base branch predates the table: it is computed from the base's rendered files.
    (base / "alerting" / "paging.json").unlink()
    lines = review.paging_changes(review.paging_rows(base), review.paging_rows(head))
    assert "- **PveReplicationFailing** (warning; service=virtualization) now pages **virtualization-oncall**" in lines
    assert "- **PveReplicationFailing** (warning; service=virtualization) no longer pages **mattermost-ops-room**" in lines
    assert "- **PveNodeDown** (critical; service=virtualization) to **virtualization-oncall**: repeat_interval 4h -> 1h" in lines
    assert not any("BackupJobFailed" in line for line in lines)


def test_rules_dashboards_and_manifests_changes_are_named(base_and_head):
    base, head = base_and_head
    rules_file = head / "prometheus" / "rules" / "virtualization.yaml"
    doc = yaml.safe_load(rules_file.read_text())
    rule = next(r for g in doc["groups"] for r in g["rules"] if r.get("alert") == "PveNodeDown")
    rule["for"] = "10m"
    doc["groups"][0]["rules"].append({"alert": "UpsOnBattery", "expr": "upsOnBattery == 1",
                                      "labels": {"severity": "critical", "service": "power"}})
    rules_file.write_text(yaml.safe_dump(doc))
    dash_file = head / "grafana" / "dashboards" / "backups.json"
    dash = json.loads(dash_file.read_text())
    panel = next(p for p in dash["panels"] if p.get("targets"))
    old_expr = panel["targets"][0]["expr"]
    panel["targets"][0]["expr"] = "sum(pbs_job_success_total)"
    dash["panels"].append({"id": 999, "type": "stat", "title": "UPS runtime", "targets": []})
    dash_file.write_text(json.dumps(dash))
    manifests = head / "manifests"
    manifests.mkdir(exist_ok=True)
    (base / "manifests").mkdir(exist_ok=True)
    (base / "manifests" / "nut.yaml").write_text("---\nkind: ConfigMap\nmetadata:\n  name: nut\n  namespace: power\ndata:\n  a: '1'\n")
    (manifests / "nut.yaml").write_text("---\nkind: ConfigMap\nmetadata:\n  name: nut\n  namespace: power\ndata:\n  a: '2'\n")

    text = review.review(base, head)
    assert "- changed for: `PveNodeDown` (severity=critical) in virtualization.yaml" in text
    assert "-for: 5m\n+for: 10m" in text
    assert "- new: `UpsOnBattery` (severity=critical) in virtualization.yaml" in text
    assert "- **Backups**: new panel 'UPS runtime'" in text
    assert f"- **Backups** / '{panel['title']}' query {panel['targets'][0]['refId']}:" in text
    assert f"-{old_expr.splitlines()[0]}" in text and "+sum(pbs_job_success_total)" in text
    assert "- changed: ConfigMap `power/nut` of nut" in text and "-  a: '1'\n+  a: '2'" in text


def test_the_comment_fits_githubs_limit(base_and_head, monkeypatch):
    monkeypatch.setattr(review, "LIMIT", 2000)
    text = review.review(*base_and_head)
    assert len(text) < 2200 and text.rstrip().endswith("artifact.")
