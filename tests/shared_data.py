"""The team's reference data in ../shared, beside the repository: charts, Grafana's schemas."""

from __future__ import annotations

from pathlib import Path

SHARED = Path(__file__).resolve().parents[2] / "shared"
CHARTS = SHARED / "charts"
GRAFANA_SCHEMA = SHARED / "grafana-schema"
