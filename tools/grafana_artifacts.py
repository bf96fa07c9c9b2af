"""build/<stack>/grafana/: what the program would send to Grafana's API, for review in pull requests.

    dashboards/<uid>.json      each dashboard exactly as sent (runbook index filled in)
    datasources.json           the data sources with their fixed UIDs
    contact-points.json        contact points, secrets replaced by `<secret KEY>`
    notification-policy.json   the notification policy tree

Read from the recorded resource inputs (what the provider would receive), so the files show
the program's real output rather than a second rendering of the model.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tools.offline_engine import Recording

DASHBOARD = "grafana:oss/dashboard:Dashboard"
DATA_SOURCE = "grafana:oss/dataSource:DataSource"
CONTACT_POINT = "grafana:alerting/contactPoint:ContactPoint"
NOTIFICATION_POLICY = "grafana:alerting/notificationPolicy:NotificationPolicy"


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, sort_keys=True) + "\n"


def _inputs(recording: Recording, type_: str) -> list[dict[str, Any]]:
    return [recording.raw_inputs[r.urn] for r in recording.of_type(type_)]


def write_grafana(recording: Recording, out: Path) -> None:
    dashboards = _inputs(recording, DASHBOARD)
    if not dashboards and not recording.of_type(NOTIFICATION_POLICY):
        return  # the stack has no grafana section
    target = out / "grafana"
    (target / "dashboards").mkdir(parents=True)
    for inputs in dashboards:
        model = json.loads(inputs["configJson"])
        (target / "dashboards" / f"{model['uid']}.json").write_text(recording.redact_text(_dump(model)))

    sources = []
    for inputs in _inputs(recording, DATA_SOURCE):
        source = {k: v for k, v in inputs.items() if k != "jsonDataEncoded"}
        source["jsonData"] = json.loads(inputs.get("jsonDataEncoded") or "{}")
        sources.append(source)
    (target / "datasources.json").write_text(recording.redact_text(_dump(sorted(sources, key=lambda s: s["uid"]))))

    points = sorted(_inputs(recording, CONTACT_POINT), key=lambda p: p["name"])
    # Every secret of the run is a config value that redact_text knows and replaces.
    (target / "contact-points.json").write_text(recording.redact_text(_dump(points)))

    for inputs in _inputs(recording, NOTIFICATION_POLICY):
        (target / "notification-policy.json").write_text(recording.redact_text(_dump(inputs)))
