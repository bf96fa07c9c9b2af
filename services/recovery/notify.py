"""Telling people: the chat room (a Mattermost incoming webhook) and the PagerDuty incident.

PagerDuty Events API v2: a ``trigger`` with the ``dedup_key`` of an open alert is appended to
that alert instead of opening another; ``custom_details`` and ``links`` carry the log and the
task link. Alertmanager's PagerDuty integration uses as ``dedup_key`` the SHA-256 (hex) of the
notification group's key, ``<route key>:<group labels>`` (alertmanager notify/util.go
``Key.Hash``, dispatch ``aggrGroup.GroupKey``, route ``Key``): computing the same key from the
alert's labels makes the service's events land on the incident Alertmanager opened, so one
incident stays one page whether the service or Alertmanager speaks first.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from urllib.parse import urlsplit

from .rest import ApiError, Endpoint

log = logging.getLogger("recovery")
LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
SUMMARY_MAX = 1024


def label_set(labels: dict[str, str]) -> str:
    """Prometheus model.LabelSet.String(): sorted, ``name="value"`` joined by ", "."""
    return "{" + ", ".join(f"{name}={json.dumps(labels[name])}" for name in sorted(labels)) + "}"


def group_key(route_key: str, group_by: list[str], labels: dict[str, str]) -> str:
    return f"{route_key}:{label_set({n: labels[n] for n in group_by if labels.get(n)})}"


def dedup_key(route_key: str, group_by: list[str], labels: dict[str, str]) -> str:
    return hashlib.sha256(group_key(route_key, group_by, labels).encode()).hexdigest()


class Chat:
    """Posts to a Mattermost incoming webhook (``text``, ``channel``, ``username``)."""

    def __init__(self, webhook_url: str, timeout: float, username: str, context=None):
        url = urlsplit(webhook_url)
        self.endpoint = Endpoint("mattermost", f"{url.scheme}://{url.netloc}", timeout, context)
        self.path = url.path
        self.username = username

    def post(self, channel: str | None, text: str) -> bool:
        message = {"text": text, "username": self.username}
        if channel:
            message["channel"] = channel
        try:
            self.endpoint.request("POST", self.path, headers={}, body=json.dumps(message).encode(),
                                  content_type="application/json", label="incoming webhook")
            return True
        except ApiError as exc:
            log.error("chat post to channel %s failed: %s", channel or "(default)", exc)
            return False


class Pager:
    """PagerDuty Events API v2."""

    def __init__(self, url: str, routing_key: str, timeout: float, route_key: str, group_by: list[str], matchers: dict[str, str],
                 context=None):
        parts = urlsplit(url)
        self.endpoint = Endpoint("pagerduty", f"{parts.scheme}://{parts.netloc}", timeout, context)
        self.path = parts.path or "/v2/enqueue"
        self.routing_key = routing_key
        self.route_key = route_key
        self.group_by = group_by
        self.matchers = matchers

    def pages(self, labels: dict[str, str]) -> bool:
        """Whether Alertmanager pages for an alert with these labels (its PagerDuty route matches)."""
        return all(labels.get(name) == value for name, value in self.matchers.items())

    def key_for(self, labels: dict[str, str]) -> str:
        return dedup_key(self.route_key, self.group_by, labels)

    def trigger(self, labels: dict[str, str], summary: str, source: str, details: dict, links: list[dict]) -> str | None:
        """Sends a trigger onto the alert's incident; returns the dedup_key, None when it failed."""
        key = self.key_for(labels)
        event = {
            "routing_key": self.routing_key,
            "event_action": "trigger",
            "dedup_key": key,
            "payload": {"summary": summary[:SUMMARY_MAX], "source": source, "severity": "critical",
                        "component": labels.get("job_id") or labels.get("alertname", ""),
                        "group": labels.get("service", ""), "class": labels.get("alertname", ""),
                        "custom_details": details},
            "links": links,
            "client": "homelab recovery service",
        }
        for attempt in (1, 2):
            try:
                self.endpoint.request("POST", self.path, headers={}, body=json.dumps(event).encode(),
                                      content_type="application/json", label="events v2")
                return key
            except ApiError as exc:
                log.error("PagerDuty event (try %d of 2, dedup_key %s) failed: %s", attempt, key, exc)
                if exc.kind in ("auth", "forbidden") or (exc.status and 400 <= exc.status < 429):
                    break
        return None
