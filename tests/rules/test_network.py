"""Network saturation: the latency dashboard draws the alert's threshold (the rules' own tests: network.test.yaml)."""

from __future__ import annotations

import json

from model.grafana.dashboards import DASHBOARDS_DIR
from model.rules.network import SATURATION_RATIO, UTILISATION


def test_the_latency_budget_panel_draws_the_alert_threshold():
    model = json.loads((DASHBOARDS_DIR / "latency-budget.json").read_text())
    panels = [p for p in model["panels"] if any(UTILISATION in t.get("expr", "") for t in p.get("targets", []))]
    assert len(panels) == 1
    steps = panels[0]["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[-1]["value"] == SATURATION_RATIO
    # Beside the burn rates: directly below their row, above the error budget.
    burn_row = next(p for p in model["panels"] if p["title"].startswith("Burn rate per window"))
    budget_row = next(p for p in model["panels"] if p["type"] == "row" and p["title"] == "Error budget")
    assert burn_row["gridPos"]["y"] < panels[0]["gridPos"]["y"] < budget_row["gridPos"]["y"]
