"""The service's durable state: what it exports about the jobs it gave up on (recovery/state.py)."""

from __future__ import annotations

from datetime import datetime

from contracts.metrics import GAVE_UP_LABELS
from services.recovery.state import Occurrence, State

VM101 = {"job_type": "backup", "job_id": "vm/101", "datastore": "homelab"}
VM102 = {**VM101, "job_id": "vm/102"}


def _occurrence(state: State, labels: dict, starts_at: str, context: dict, playbook: str = "backup-failure") -> None:
    occ = Occurrence(f"fp-{labels['job_id']}", starts_at, "BackupJobFailed", playbook, {**labels, "severity": "warning"}, {},
                     received_at=0)
    assert state.add(occ)
    occ.context = context
    state.finish(occ)


def test_gave_up_is_the_start_of_the_latest_failure_given_up_on_per_job(tmp_path):
    state = State(str(tmp_path / "state.db"))
    _occurrence(state, VM101, "2026-11-30T02:05:00Z", {"gave_up": True})
    _occurrence(state, VM101, "2026-12-01T02:05:00.123456789+01:00", {"gave_up": True})  # later, in another zone
    _occurrence(state, VM101, "2026-12-01T03:00:00Z", {"told": True})  # a re-run that worked: no give-up
    _occurrence(state, VM101, "2026-12-01T04:00:00Z", {"gave_up": True, "notes_only": True}, playbook="loki-report")
    _occurrence(state, VM102, "2026-11-29T02:05:00Z", {"gave_up": True})
    _occurrence(state, {**VM102, "job_id": "vm/103"}, "2026-12-01T02:05:00Z", {"reported": True})
    assert state.gave_up("backup-failure", GAVE_UP_LABELS) == {
        ("backup", "vm/101", "homelab"): datetime.fromisoformat("2026-12-01T01:05:00Z").timestamp(),
        ("backup", "vm/102", "homelab"): datetime.fromisoformat("2026-11-29T02:05:00Z").timestamp(),
    }


def test_the_gauge_refresh_reads_only_the_give_ups(tmp_path):
    # The refresh runs every poll, the occurrences only grow: the partial index keeps it to the give-ups.
    state = State(str(tmp_path / "state.db"))
    statements: list[str] = []
    state.db.set_trace_callback(statements.append)
    state.gave_up("backup-failure", GAVE_UP_LABELS)
    state.db.set_trace_callback(None)
    (query,) = [s for s in statements if s.startswith("SELECT")]
    plan = [row[-1] for row in state.db.execute(f"EXPLAIN QUERY PLAN {query}")]
    assert any("USING INDEX occurrences_gave_up" in step for step in plan), plan
    assert not any(step.startswith("SCAN occurrences") for step in plan), plan
