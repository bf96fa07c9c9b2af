"""What the service has seen and done, in sqlite3, so that a restart forgets nothing.

* ``occurrences``: one row per alert occurrence (fingerprint + startsAt), the durable work queue.
  A webhook's alerts are written here before the 2xx goes out; a re-sent group finds its rows
  and adds nothing. ``context`` holds what each playbook step found and did, so a playbook
  interrupted by a restart continues where it stood instead of acting twice.
* ``attempts``: every action tried, on which target and node, when, its task UPIDs and result.
  The guards (cooldown, attempts per window, one action per node) read them.

One connection, serialised by a lock: the service does a handful of writes a minute.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field

SCHEMA = """
CREATE TABLE IF NOT EXISTS occurrences (
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    alertname TEXT NOT NULL,
    playbook TEXT NOT NULL,
    labels TEXT NOT NULL,
    annotations TEXT NOT NULL,
    received_at REAL NOT NULL,
    status TEXT NOT NULL DEFAULT 'queued',   -- queued | running | done
    not_before REAL NOT NULL DEFAULT 0,
    context TEXT NOT NULL DEFAULT '{}',
    updated_at REAL NOT NULL,
    PRIMARY KEY (fingerprint, starts_at)
);
CREATE TABLE IF NOT EXISTS attempts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    action TEXT NOT NULL,
    target TEXT NOT NULL,
    node TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    starts_at TEXT NOT NULL,
    step TEXT NOT NULL,
    started_at REAL NOT NULL,
    finished_at REAL,
    state TEXT NOT NULL,                     -- starting | running | done
    upids TEXT NOT NULL DEFAULT '[]',
    result TEXT,                             -- ok | failed | unknown | dry-run | skipped
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS attempts_by_target ON attempts (action, target, started_at);
CREATE INDEX IF NOT EXISTS occurrences_gave_up ON occurrences (playbook) WHERE json_extract(context, '$.gave_up');
"""


@dataclass
class Occurrence:
    fingerprint: str
    starts_at: str
    alertname: str
    playbook: str
    labels: dict
    annotations: dict
    received_at: float
    status: str = "queued"
    context: dict = field(default_factory=dict)

    @property
    def key(self) -> tuple[str, str]:
        return (self.fingerprint, self.starts_at)


@dataclass
class Attempt:
    id: int
    action: str
    target: str
    node: str
    step: str
    started_at: float
    finished_at: float | None
    state: str
    upids: list
    result: str | None
    detail: str


class State:
    def __init__(self, path: str):
        self.lock = threading.Lock()
        self.db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA)

    def close(self) -> None:
        with self.lock:
            self.db.close()

    # --- occurrences
    def add(self, occ: Occurrence) -> bool:
        """Queues an occurrence; False when it was already known (a duplicate or re-sent webhook)."""
        with self.lock:
            cursor = self.db.execute(
                "INSERT OR IGNORE INTO occurrences (fingerprint, starts_at, alertname, playbook, labels, annotations,"
                " received_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (occ.fingerprint, occ.starts_at, occ.alertname, occ.playbook, json.dumps(occ.labels, sort_keys=True),
                 json.dumps(occ.annotations, sort_keys=True), occ.received_at, occ.received_at))
            return cursor.rowcount == 1

    def known(self, key: tuple[str, str]) -> bool:
        with self.lock:
            return self.db.execute("SELECT 1 FROM occurrences WHERE fingerprint = ? AND starts_at = ?", key).fetchone() is not None

    def requeue_interrupted(self) -> int:
        """After a restart no thread owns a running occurrence: queue them again."""
        with self.lock:
            return self.db.execute("UPDATE occurrences SET status = 'queued' WHERE status = 'running'").rowcount

    def claim(self, now: float) -> Occurrence | None:
        """The oldest queued occurrence that is due, marked running."""
        with self.lock:
            row = self.db.execute(
                "SELECT fingerprint, starts_at, alertname, playbook, labels, annotations, received_at, status, context"
                " FROM occurrences WHERE status = 'queued' AND not_before <= ? ORDER BY received_at LIMIT 1", (now,)).fetchone()
            if row is None:
                return None
            self.db.execute("UPDATE occurrences SET status = 'running', updated_at = ? WHERE fingerprint = ? AND starts_at = ?",
                            (now, row[0], row[1]))
        return Occurrence(row[0], row[1], row[2], row[3], json.loads(row[4]), json.loads(row[5]), row[6], "running", json.loads(row[8]))

    def save_context(self, occ: Occurrence) -> None:
        with self.lock:
            self.db.execute("UPDATE occurrences SET context = ?, updated_at = ? WHERE fingerprint = ? AND starts_at = ?",
                            (json.dumps(occ.context, sort_keys=True), time.time(), *occ.key))

    def finish(self, occ: Occurrence, status: str = "done", not_before: float = 0) -> None:
        with self.lock:
            self.db.execute("UPDATE occurrences SET status = ?, not_before = ?, context = ?, updated_at = ?"
                            " WHERE fingerprint = ? AND starts_at = ?",
                            (status, not_before, json.dumps(occ.context, sort_keys=True), time.time(), *occ.key))

    def queue_depth(self) -> int:
        with self.lock:
            return self.db.execute("SELECT count(*) FROM occurrences WHERE status != 'done'").fetchone()[0]

    def occurrences(self) -> list[dict]:
        with self.lock:
            rows = self.db.execute("SELECT fingerprint, starts_at, alertname, playbook, status, context FROM occurrences"
                                   " ORDER BY received_at").fetchall()
        return [{"fingerprint": r[0], "startsAt": r[1], "alertname": r[2], "playbook": r[3], "status": r[4],
                 "context": json.loads(r[5])} for r in rows]

    def latest_by_fingerprint(self, playbook: str) -> dict[str, float]:
        """Per fingerprint of a playbook's occurrences, when the newest was received (the drills' schedule)."""
        with self.lock:
            rows = self.db.execute("SELECT fingerprint, max(received_at) FROM occurrences WHERE playbook = ? GROUP BY fingerprint",
                                   (playbook,)).fetchall()
        return dict(rows)

    def open_occurrences(self, playbook: str) -> list[Occurrence]:
        with self.lock:
            rows = self.db.execute(
                "SELECT fingerprint, starts_at, alertname, playbook, labels, annotations, received_at, status, context"
                " FROM occurrences WHERE playbook = ? AND status != 'done' ORDER BY received_at", (playbook,)).fetchall()
        return [Occurrence(r[0], r[1], r[2], r[3], json.loads(r[4]), json.loads(r[5]), r[6], r[7], json.loads(r[8])) for r in rows]

    def outcomes(self, playbook: str, key: str) -> list[tuple[dict, dict]]:
        """(labels, context[key]) of a playbook's occurrences that recorded ``key``, oldest first."""
        with self.lock:
            rows = self.db.execute("SELECT labels, json_extract(context, ?) FROM occurrences WHERE playbook = ?"
                                   " AND json_extract(context, ?) IS NOT NULL ORDER BY received_at",
                                   (f"$.{key}", playbook, f"$.{key}")).fetchall()
        return [(json.loads(r[0]), json.loads(r[1])) for r in rows]

    # --- attempts
    def _attempt(self, row) -> Attempt:
        return Attempt(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7], json.loads(row[8]), row[9], row[10])

    COLUMNS = "id, action, target, node, step, started_at, finished_at, state, upids, result, detail"

    def start_attempt(self, occ: Occurrence, step: str, action: str, target: str, node: str, now: float,
                      state: str = "starting") -> int:
        with self.lock:
            return self.db.execute(
                "INSERT INTO attempts (action, target, node, fingerprint, starts_at, step, started_at, state)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)", (action, target, node, *occ.key, step, now, state)).lastrowid

    def update_attempt(self, attempt_id: int, *, state: str | None = None, upids: list | None = None,
                       result: str | None = None, detail: str | None = None, finished_at: float | None = None) -> None:
        sets, values = [], []
        for column, value in (("state", state), ("result", result), ("detail", detail), ("finished_at", finished_at)):
            if value is not None:
                sets.append(f"{column} = ?")
                values.append(value)
        if upids is not None:
            sets.append("upids = ?")
            values.append(json.dumps(upids))
        with self.lock:
            self.db.execute(f"UPDATE attempts SET {', '.join(sets)} WHERE id = ?", (*values, attempt_id))

    def attempt_of(self, occ: Occurrence, step: str) -> Attempt | None:
        with self.lock:
            row = self.db.execute(f"SELECT {self.COLUMNS} FROM attempts WHERE fingerprint = ? AND starts_at = ? AND step = ?"
                                  " ORDER BY id DESC LIMIT 1", (*occ.key, step)).fetchone()
        return self._attempt(row) if row else None

    def attempts(self, action: str, target: str, since: float, counted_only: bool = True) -> list[Attempt]:
        """Attempts of an action on a target since a time; dry runs and skips never count."""
        extra = " AND (result IS NULL OR result NOT IN ('dry-run', 'skipped'))" if counted_only else ""
        with self.lock:
            rows = self.db.execute(f"SELECT {self.COLUMNS} FROM attempts WHERE action = ? AND target = ? AND started_at >= ?{extra}"
                                   " ORDER BY started_at", (action, target, since)).fetchall()
        return [self._attempt(r) for r in rows]

    def in_flight_on(self, node: str, occ: Occurrence) -> Attempt | None:
        """An unfinished attempt of another occurrence on the node."""
        with self.lock:
            row = self.db.execute(f"SELECT {self.COLUMNS} FROM attempts WHERE node = ? AND state != 'done'"
                                  " AND NOT (fingerprint = ? AND starts_at = ?) LIMIT 1", (node, *occ.key)).fetchone()
        return self._attempt(row) if row else None

    def in_flight(self) -> dict[str, int]:
        with self.lock:
            rows = self.db.execute("SELECT action, count(*) FROM attempts WHERE state != 'done' GROUP BY action").fetchall()
        return dict(rows)

    def targets_over(self, limits: dict[str, tuple[int, float]], now: float) -> dict[str, int]:
        """Per action, the targets whose counted attempts within the window reached the maximum."""
        out = {}
        with self.lock:
            for action, (maximum, window) in limits.items():
                rows = self.db.execute(
                    "SELECT target FROM attempts WHERE action = ? AND started_at >= ?"
                    " AND (result IS NULL OR result NOT IN ('dry-run', 'skipped')) GROUP BY target HAVING count(*) >= ?",
                    (action, now - window, maximum)).fetchall()
                out[action] = len(rows)
        return out

    # A job's give-ups: few rows among all occurrences, so the gauge refresh reads only them.
    GAVE_UP = "json_extract(context, '$.gave_up')"

    def gave_up(self, playbook: str, label_names: tuple[str, ...]) -> dict[tuple[str, ...], float]:
        """Per target (the values of label_names), the start (the alert's startsAt, unix seconds) of the
        latest failure the service gave up on. The start, not the moment of giving up: the alert rule
        compares it with the job's last success, so a give-up counts only for the failure it was about."""
        columns = ", ".join("coalesce(json_extract(labels, ?), '')" for _ in label_names)
        with self.lock:
            rows = self.db.execute(
                f"SELECT {columns}, max(unixepoch(starts_at)) FROM occurrences WHERE playbook = ? AND {self.GAVE_UP}"
                f" GROUP BY {', '.join(str(i + 1) for i in range(len(label_names)))}",
                (*(f'$."{n}"' for n in label_names), playbook)).fetchall()
        return {tuple(row[:-1]): float(row[-1]) for row in rows if row[-1] is not None}

    def all_attempts(self) -> list[dict]:
        with self.lock:
            rows = self.db.execute(f"SELECT {self.COLUMNS} FROM attempts ORDER BY id").fetchall()
        return [vars(self._attempt(r)) for r in rows]
