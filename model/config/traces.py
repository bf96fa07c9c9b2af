"""Section `traces`: Tempo and the OpenTelemetry Collector in front of it."""

from __future__ import annotations

from enum import Enum

from pydantic import Field, field_validator

from model.config.base import ConfigModel, Problem
from model.config.fields import ObjectStorage, Retention, duration_hours


class TempoObjectStorage(ObjectStorage):
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{2,62}$")


class TracesMode(str, Enum):
    SINGLE_BINARY = "singleBinary"
    DISTRIBUTED = "distributed"


class SpanMetrics(ConfigModel):
    """The spanmetrics connector: request, error and latency series per service for the latency SLO."""

    # Upper bounds of the latency histogram (ms): fine around an API's usual SLO thresholds.
    histogram_buckets_ms: list[float] = Field(
        default_factory=lambda: [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000], min_length=1)
    dimensions: list[str] = Field(default_factory=lambda: ["http.request.method", "http.response.status_code", "http.route"])

    @field_validator("histogram_buckets_ms")
    @classmethod
    def _ascending(cls, buckets: list[float]) -> list[float]:
        if any(b <= a for a, b in zip(buckets, buckets[1:])) or buckets[0] <= 0:
            raise ValueError("must be positive and strictly ascending")
        return buckets


class Traces(ConfigModel):
    """Tempo and the OpenTelemetry Collector in front of it."""

    mode: TracesMode = TracesMode.SINGLE_BINARY
    retention: Retention = "336h"
    storage_gb: int = Field(default=20, ge=5)
    span_metrics: SpanMetrics = Field(default_factory=SpanMetrics)
    object_storage: TempoObjectStorage | None = None

    def problems(self, has_logs: bool) -> list[Problem]:
        found: list[Problem] = []
        if duration_hours(self.retention) < 1:
            found.append(Problem("traces.retention", "must be at least 1h"))
        if self.mode == TracesMode.DISTRIBUTED and self.object_storage is None:
            found.append(Problem("traces.objectStorage", "is required when traces.mode is distributed: its ingesters, queriers and compactor share blocks through object storage"))
        if self.mode == TracesMode.SINGLE_BINARY and self.object_storage is not None:
            found.append(Problem("traces.objectStorage", "is only used when traces.mode is distributed (the single binary keeps blocks on its volume)"))
        if not has_logs:
            found.append(Problem("logs", "is required with traces: the collector ships pod logs and syslog to Loki"))
        return found
