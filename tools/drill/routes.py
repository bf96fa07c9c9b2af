"""Alertmanager's routing tree, read from alertmanager.yml, to know each alert's timers.

The drill does not decide *who* is notified from this (that is what it tests against its own
expectations); it needs the group_wait / group_interval / repeat_interval that apply to an
alert on its way to a receiver, to compute the theoretical time-to-notify bound. It walks the
rendered file on its own, to judge what Alertmanager got, but with the model's matcher parser.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from model.facts.durations import parse_seconds
from model.facts.matchers import Matcher, parse_matcher

DEFAULT_TIMERS = {"group_wait": 30.0, "group_interval": 300.0, "repeat_interval": 4 * 3600.0}


@dataclass(frozen=True)
class Delivery:
    """Where one alert goes and with which (unscaled) timers, in seconds."""

    receiver: str
    group_wait: float
    group_interval: float
    repeat_interval: float


@dataclass
class Route:
    receiver: str
    matchers: list[Matcher]
    continue_: bool
    timers: dict[str, float]
    routes: list["Route"] = field(default_factory=list)

    @classmethod
    def parse(cls, doc: Mapping[str, Any], parent: "Route | None" = None) -> "Route":
        matchers = [parse_matcher(m) for m in doc.get("matchers") or []]
        matchers += [Matcher(k, "=", str(v)) for k, v in (doc.get("match") or {}).items()]
        matchers += [Matcher(k, "=~", str(v)) for k, v in (doc.get("match_re") or {}).items()]
        timers = dict(parent.timers if parent else DEFAULT_TIMERS)
        for key in DEFAULT_TIMERS:
            if key in doc:
                timers[key] = parse_seconds(doc[key])
        receiver = doc.get("receiver") or (parent.receiver if parent else "")
        route = cls(receiver, matchers, bool(doc.get("continue", False)), timers)
        route.routes = [cls.parse(child, route) for child in doc.get("routes") or []]
        return route

    def deliveries(self, labels: Mapping[str, str]) -> list[Delivery]:
        """Alertmanager's walk: first matching child (more with `continue`), else this node."""
        if not all(m.matches(labels) for m in self.matchers):
            return []
        found: list[Delivery] = []
        for child in self.routes:
            sub = child.deliveries(labels)
            if sub:
                found += sub
                if not child.continue_:
                    break
        if found:
            return found
        return [Delivery(self.receiver, self.timers["group_wait"], self.timers["group_interval"],
                         self.timers["repeat_interval"])]


def routing_tree(alertmanager_config: Mapping[str, Any]) -> Route:
    return Route.parse(alertmanager_config["route"])


def delivery_to(tree: Route, labels: Mapping[str, str], receiver: str) -> Delivery | None:
    return next((d for d in tree.deliveries(labels) if d.receiver == receiver), None)
