"""dashboards/*.json of your own, no code: deployed to the folder the file names or the default one,
their data sources checked before any resource is registered (Grafana's schema: test_grafana_dashboards.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pulumi
import pytest

from model.grafana import dashboards
from tests.conftest import FAKE_SECRETS
from tools.offline_engine import ROOT, Recording, run_program

DASHBOARD = "grafana:oss/dashboard:Dashboard"
FOLDER = "grafana:oss/folder:Folder"


@pytest.fixture
def dashboards_dir(tmp_path, monkeypatch) -> Path:
    directory = tmp_path / "dashboards"
    shutil.copytree(dashboards.DASHBOARDS_DIR, directory)
    monkeypatch.setattr(dashboards, "DASHBOARDS_DIR", directory)
    return directory


def _ups(uid: str = "ups-power", datasource: str = "prometheus") -> dict:
    model = json.loads((dashboards.DASHBOARDS_DIR / "node-disk.json").read_text())
    text = json.dumps(model).replace('"uid": "prometheus"', f'"uid": "{datasource}"')
    return {**json.loads(text), "uid": uid, "title": "UPS"}


def _sent(recording) -> dict[str, tuple[str, dict]]:
    """dashboard uid -> (its folder's uid, the model sent)."""
    return {json.loads(r.inputs["configJson"])["uid"]: (r.inputs["folder"], json.loads(r.inputs["configJson"]))
            for r in recording.of_type(DASHBOARD)}


def test_a_dropped_dashboard_goes_to_the_default_folder(dashboards_dir):
    """Was `KeyError: None` in components/grafana.py: the folder had to be added in model/facts/links.py."""
    (dashboards_dir / "my-ups.json").write_text(json.dumps(_ups()))
    recording = run_program(ROOT / "Pulumi.homelab.yaml", FAKE_SECRETS)
    folder, model = _sent(recording)["ups-power"]
    assert folder == dashboards.DEFAULT_FOLDER == "platform"
    assert model["title"] == "UPS"


def test_a_dashboard_in_grafanas_api_shape_names_its_folder(dashboards_dir):
    # As GET /api/dashboards/uid/<uid> answers: the model under `dashboard`, the folder in `meta`.
    (dashboards_dir / "ups.json").write_text(json.dumps({"dashboard": _ups(), "meta": {"folderUid": "power",
                                                                                         "folderTitle": "Power"}}))
    # As POST /api/dashboards/db takes it: `folderUid` beside the model.
    (dashboards_dir / "nas.json").write_text(json.dumps({"dashboard": {**_ups("nas"), "title": "NAS"},
                                                         "folderUid": "backups", "overwrite": True}))
    recording = run_program(ROOT / "Pulumi.homelab.yaml", FAKE_SECRETS)
    folders = {r.inputs["uid"]: r.inputs["title"] for r in recording.of_type(FOLDER)}
    assert folders["power"] == "Power" and folders["backups"] == "Backups"
    sent = _sent(recording)
    assert sent["ups-power"][0] == "power" and sent["nas"][0] == "backups"
    assert "dashboard" not in sent["ups-power"][1], "Grafana gets the model, not the envelope"


def test_dashboard_mistakes_stop_the_preview_by_file(dashboards_dir):
    (dashboards_dir / "my-ups.json").write_text(json.dumps(_ups(datasource="prometheus-main")))
    (dashboards_dir / "copy.json").write_text(json.dumps({**_ups("backups"), "title": "Copy"}))
    (dashboards_dir / "no-uid.json").write_text(json.dumps({**_ups(), "uid": "", "title": "No uid"}))
    (dashboards_dir / "broken.json").write_text('{"title": "x",')
    recording = Recording("homelab-observability", "homelab")
    with pytest.raises(pulumi.RunError) as err:
        run_program(ROOT / "Pulumi.homelab.yaml", FAKE_SECRETS, recording=recording)
    problems = str(err.value).splitlines()[1:]
    assert "  - dashboards/broken.json: is not JSON: Expecting property name enclosed in double quotes: " \
           "line 1 column 15 (char 14)" in problems
    assert "  - dashboards/copy.json: uid: 'backups' is the uid of backups.json already" in problems
    assert "  - dashboards/no-uid.json: uid: must be 1 to 40 letters, digits, '-' or '_' (got ''): " \
           "Grafana links the dashboard by it" in problems
    (unknown,) = [p for p in problems if p.startswith("  - dashboards/my-ups.json: datasource")]
    assert unknown.startswith("  - dashboards/my-ups.json: datasource: 'prometheus-main' is no data source of this stack")
    assert unknown.endswith("; did you mean 'prometheus'?")
    assert recording.resources == []
