"""Section `probes`: synthetic API checks, the blackbox exporter requesting each target as a customer would."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from model.config.base import ConfigModel, Problem
from model.config.fields import HTTP_URL, SERVICE, PromDuration, duration_seconds


class ProbeTarget(ConfigModel):
    """One endpoint the blackbox exporter requests, as a customer would."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")
    url: str = Field(pattern=HTTP_URL)
    # The `service` label of the probe's alerts: whose customers it speaks for.
    service: str = Field(default="api-gateway", pattern=SERVICE)
    expected_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    # A regular expression (Go RE2) the body must match, e.g. '"status":\\s*"ok"'.
    body_match: str | None = Field(default=None, min_length=1)
    interval: PromDuration = "1m"
    timeout: PromDuration = "10s"

    @field_validator("expected_status")
    @classmethod
    def _statuses(cls, codes: list[int]) -> list[int]:
        bad = [c for c in codes if not 100 <= c <= 599]
        if bad:
            raise ValueError(f"HTTP status codes are 100..599 (got {bad})")
        return codes

    @field_validator("body_match")
    @classmethod
    def _regex(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return pattern


class Probes(ConfigModel):
    """Synthetic API checks: the blackbox exporter probes each target; alerts when they fail."""

    targets: list[ProbeTarget] = Field(min_length=1)
    # A probe must fail this long before anyone is paged: one lost request is not an outage.
    failing_for: PromDuration = "5m"
    certificate_warning_days: int = Field(default=21, ge=1)
    certificate_critical_days: int = Field(default=7, ge=1)

    def problems(self) -> list[Problem]:
        found = []
        seen: set[str] = set()
        for i, target in enumerate(self.targets):
            at = f"probes.targets[{i}]"
            if target.name in seen:
                found.append(Problem(f"{at}.name", f"{target.name!r} is used twice"))
            seen.add(target.name)
            # Prometheus' scrape timeout is the probe's plus a second, and may not exceed the interval.
            if duration_seconds(target.timeout) + 1 > duration_seconds(target.interval):
                found.append(Problem(f"{at}.timeout", f"{target.timeout} leaves no second within interval {target.interval}"))
        if self.certificate_critical_days >= self.certificate_warning_days:
            found.append(Problem("probes.certificateCriticalDays",
                                 f"must be below probes.certificateWarningDays ({self.certificate_warning_days})"))
        return found
