"""Section `alerting`: the routing table, one source for Alertmanager's route tree and Grafana's policy."""

from __future__ import annotations

from typing import Any

from pydantic import Field, field_validator

from model.config.base import ConfigModel, Problem
from model.config.fields import PromDuration
from model.facts import secrets
from model.facts.matchers import Matcher, parse_matcher


class PagerDutyReceiver(ConfigModel):
    severity: str = "critical"
    # The secret with this receiver's integration key: each PagerDuty service has its own.
    routing_key_secret: str = secrets.PAGERDUTY_ROUTING_KEY

    @field_validator("routing_key_secret")
    @classmethod
    def _known_key(cls, key: str) -> str:
        if key not in secrets.PAGERDUTY_KEYS:
            raise ValueError(f"must be one of {', '.join(secrets.PAGERDUTY_KEYS)} (got {key!r})")
        return key


class MattermostReceiver(ConfigModel):
    channel: str | None = Field(default=None, pattern=r"^[a-z0-9_-]+$")
    username: str = "alertmanager"


class HeartbeatReceiver(ConfigModel):
    # Alertmanager 0.25 has no url_file for webhooks: the URL itself must not hold a token;
    # a bearer token, when the service wants one, comes from the alertingHeartbeatToken secret.
    url: str = Field(pattern=r"^https?://[^\s@]+$")
    bearer_token: bool = False


class Receiver(ConfigModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    pagerduty: PagerDutyReceiver | None = None
    mattermost: MattermostReceiver | None = None
    heartbeat: HeartbeatReceiver | None = None

    def kind(self) -> str | None:
        kinds = [k for k in ("pagerduty", "mattermost", "heartbeat") if getattr(self, k) is not None]
        return kinds[0] if len(kinds) == 1 else None


class Route(ConfigModel):
    matchers: list[Matcher] = Field(min_length=1)
    receiver: str
    continue_: bool = Field(default=False, alias="continue")
    group_by: list[str] | None = None
    group_wait: PromDuration | None = None
    group_interval: PromDuration | None = None
    repeat_interval: PromDuration | None = None

    @field_validator("matchers", mode="before")
    @classmethod
    def _parse_matchers(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [parse_matcher(v) if isinstance(v, str) else v for v in value]
        return value


class Alerting(ConfigModel):
    """The routing table: one source for Alertmanager's route tree and Grafana's policy."""

    receiver: str  # the root route's receiver: whatever no route below claims
    group_by: list[str] = Field(default_factory=lambda: ["alertname", "service"])
    group_wait: PromDuration = "30s"
    group_interval: PromDuration = "5m"
    repeat_interval: PromDuration = "4h"
    routes: list[Route] = Field(default_factory=list)
    receivers: list[Receiver] = Field(min_length=1)
    # The Watchdog always fires; its route sends it here every watchdogInterval. Unset: no Watchdog
    # alert (with no heartbeat to reach it would only fall to the root's receiver).
    watchdog_receiver: str | None = None
    watchdog_interval: PromDuration = "1m"

    def receiver_named(self, name: str) -> Receiver | None:
        return next((r for r in self.receivers if r.name == name), None)

    def parts_off(self) -> list[str]:
        """What the stack's preview says is off in the routing table, one line each (StackConfig.parts_off)."""
        if self.watchdog_receiver:
            return []
        return ["alerting.watchdogReceiver: off (not set): no Watchdog alert and no heartbeat: nothing outside "
                "the stack notices when Prometheus or Alertmanager stop sending alerts"]

    def problems(self) -> list[Problem]:
        found = []
        seen: set[str] = set()
        for i, receiver in enumerate(self.receivers):
            if receiver.name in seen:
                found.append(Problem(f"alerting.receivers[{i}].name", f"{receiver.name!r} is used twice"))
            seen.add(receiver.name)
            if receiver.kind() is None:
                found.append(Problem(f"alerting.receivers[{i}]", "needs exactly one of pagerduty, mattermost, heartbeat"))
        refs = [("alerting.receiver", self.receiver)]
        refs += [("alerting.watchdogReceiver", self.watchdog_receiver)] if self.watchdog_receiver else []
        refs += [(f"alerting.routes[{i}].receiver", r.receiver) for i, r in enumerate(self.routes)]
        for path, name in refs:
            if name not in seen:
                found.append(Problem(path, f"unknown receiver {name!r} (alerting.receivers: {', '.join(sorted(seen))})"))
        watchdog = self.receiver_named(self.watchdog_receiver) if self.watchdog_receiver else None
        if watchdog and watchdog.kind() != "heartbeat":
            found.append(Problem("alerting.watchdogReceiver", "must be a heartbeat receiver: the Watchdog must never page"))
        for i, r in enumerate(self.routes):
            target = self.receiver_named(r.receiver)
            if target and target.kind() == "heartbeat":
                found.append(Problem(f"alerting.routes[{i}].receiver", "a heartbeat receiver only takes the Watchdog"))
        return found
