"""One audit line per decision, and the service's metrics.

An audit line is one JSON object: ``ts``, ``alert``, ``fingerprint``, ``startsAt``, ``target``,
``decision`` (queued, duplicate, ignored, act, dry-run, skip, defer, verify, escalate, report),
``action``, ``upid``, ``result`` and ``why``. It goes to the audit file (when configured) and to
the service log, so journald has it too.
"""

from __future__ import annotations

import json
import logging
import threading
import time

from prometheus_client import CollectorRegistry, Counter, Gauge

from contracts.recovery import ACTIONS
from contracts.metrics import (ACTIONS_METRIC, EXHAUSTED_METRIC, GAVE_UP_LABELS, GAVE_UP_METRIC, LIMIT_REACHED_METRIC,
                               RESTORE_DRILL_INTERVAL, RESTORE_DRILL_LABELS, RESTORE_DRILL_LAST_DURATION,
                               RESTORE_DRILL_LAST_RESULT, RESTORE_DRILL_LAST_RUN, RESTORE_DRILL_LAST_SUCCESS)

log = logging.getLogger("recovery")
RESULTS = ("ok", "failed", "unknown", "skipped", "dry-run")


class Audit:
    def __init__(self, path: str | None):
        self.path = path
        self.lock = threading.Lock()

    def __call__(self, decision: str, *, alert: str = "", fingerprint: str = "", starts_at: str = "", target: str = "",
                 action: str = "", upid: str = "", result: str = "", why: str = "") -> dict:
        line = {"ts": round(time.time(), 3), "alert": alert, "fingerprint": fingerprint, "startsAt": starts_at,
                "target": target, "decision": decision, "action": action, "upid": upid, "result": result, "why": why}
        text = json.dumps(line, sort_keys=False)
        log.info("audit %s", text)
        if self.path:
            with self.lock, open(self.path, "a", encoding="utf-8") as handle:
                handle.write(text + "\n")
        return line


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        r = self.registry
        self.actions = Counter(ACTIONS_METRIC.removesuffix("_total"), "Actions by action and result (ok, failed, unknown, skipped, dry-run)",
                               ["action", "result"], registry=r)
        self.in_flight = Gauge("recovery_actions_in_flight", "Actions started and not yet verified", ["action"], registry=r)
        self.exhausted = Gauge(EXHAUSTED_METRIC,
                               "Targets whose attempts within the window reached the maximum: the service escalates instead of acting",
                               ["action"], registry=r)
        self.limit_reached = Counter(LIMIT_REACHED_METRIC.removesuffix("_total"),
                                     "Times the attempt guard refused another attempt on a target: a remediation loop stopped",
                                     ["action"], registry=r)
        self.alerts = Counter("recovery_alerts", "Alerts received, by what became of them", ["outcome"], registry=r)
        self.webhooks = Counter("recovery_webhook_requests", "Webhook requests by HTTP status", ["code"], registry=r)
        self.truncated = Counter("recovery_webhook_truncated_alerts",
                                 "Alerts Alertmanager left out of a notification (truncatedAlerts)", registry=r)
        self.escalations = Counter("recovery_escalations", "Pages and incident notes sent to PagerDuty", ["kind", "outcome"], registry=r)
        self.api_errors = Counter("recovery_api_errors", "Failed API calls", ["api", "kind"], registry=r)
        self.kill_switch = Gauge("recovery_kill_switch_engaged", "1 while the global kill switch stops every action", registry=r)
        self.queue = Gauge("recovery_queue_depth", "Alert occurrences not yet handled to the end", registry=r)
        self.modes = Gauge("recovery_action_mode", "1 for each action's configured mode", ["action", "mode"], registry=r)
        # BackupJobFailed pages at once while this is newer than the job's last success (model/alerts.py).
        self.gave_up = Gauge(GAVE_UP_METRIC,
                             "Start (alert startsAt) of the latest failure of the job the service gave up on (re-run failed, "
                             "unknown or attempts exhausted): the page for that failure must not wait for the retry grace",
                             list(GAVE_UP_LABELS), registry=r)
        self.up = Gauge("recovery_last_loop_timestamp_seconds", "When the worker loop last ran", registry=r)
        # Restore drills (recovery/drills.py): one series per guest, from the state file.
        labels = list(RESTORE_DRILL_LABELS)
        self.drill_last_run = Gauge(RESTORE_DRILL_LAST_RUN, "Start of the guest's newest finished restore drill", labels, registry=r)
        self.drill_last_success = Gauge(RESTORE_DRILL_LAST_SUCCESS, "End of the guest's newest restore drill that passed",
                                        labels, registry=r)
        self.drill_duration = Gauge(RESTORE_DRILL_LAST_DURATION,
                                    "The guest's RTO in its newest passed drill: from the restore's start until it was up",
                                    labels, registry=r)
        self.drill_result = Gauge(RESTORE_DRILL_LAST_RESULT, "1 when the guest's newest restore drill passed, 0 when it failed "
                                  "(step: where; none when it passed)", [*labels, "step"], registry=r)
        self.drill_interval = Gauge(RESTORE_DRILL_INTERVAL, "How often the guest is drilled (its tier's interval)", labels,
                                    registry=r)
        self.drill_steps: dict[tuple[str, str], set[str]] = {}  # the step label each guest's result series has now
        for action in ACTIONS:
            for result in RESULTS:
                self.actions.labels(action, result)
            self.in_flight.labels(action)
            self.exhausted.labels(action)
            self.limit_reached.labels(action)
