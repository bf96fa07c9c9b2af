"""Counting: each finished task once into the state (state.py "Exactly-once counting"), under the
job shapes.py names; which jobs run now; the tasks that are no job."""

import collections
import json

from .problems import log
from .shapes import MANUAL, UNMATCHED, classify, parse_task, upid_starttime
from .state import JobStats

# A task stamped this far ahead of this host's clock counts as clock skew.
SKEW_TOLERANCE = 300
IGNORE_REASONS = ("unknown_type", "malformed")


class Ledger:
    """Counts every finished task once into the state, and knows which jobs
    run now."""

    def __init__(self, state, overlap, problems):
        self.state = state
        self.overlap = int(overlap)
        self.problems = problems
        self.ignored = dict.fromkeys(IGNORE_REASONS, 0)
        self.running_by_job = {}
        self.changed = False
        self.unknown_types = set()
        self.malformed_seen = set()

    def entries(self, raw_tasks):
        """{upid: Task} of a listing; a finished entry beats a running one."""
        entries = {}
        for raw in raw_tasks:
            task = parse_task(raw)
            if task is None:
                self.ignore_malformed(raw)
                continue
            seen = entries.get(task.upid)
            if seen is None or seen.endtime is None:
                entries[task.upid] = task
        return entries

    def waiting_for(self, entries):
        """(upid, start) of the running tasks the listing did not show."""
        return [(upid, start) for upid, start in self.state.running.items()
                if upid not in entries]

    def lost(self, upid):
        self.problems.errors["lost_task"] += 1
        log.warning("task %s was running but PBS no longer lists it; it "
                    "cannot be counted", upid)
        del self.state.running[upid]
        self.changed = True

    def adopt(self, catalog):
        """Series for every configured job; prune runs the status shows."""
        state = self.state
        for job_type, configs in catalog.configs.items():
            for job_id, item in configs.items():
                key = (job_type, job_id, item["store"])
                if key not in state.jobs:
                    state.jobs[key] = JobStats()
                    self.changed = True
        for upid, job_id in catalog.last_run_upids("prune").items():
            if upid not in state.counted \
                    and state.prune_runs.get(upid) != job_id:
                state.prune_runs[upid] = job_id
                self.changed = True
        if not state.prune_ids_checked and "prune" in catalog.read_ok:
            known = set(catalog.configs["prune"]) | {MANUAL, UNMATCHED}
            stale = [k for k in state.jobs if k[0] == "prune"
                     and k[1] not in known]
            for key in stale:
                del state.jobs[key]
            if stale:
                log.info("dropped prune series of no configured job, left "
                         "by an older exporter: %s", ", ".join(
                             f"{job_id} on {store}"
                             for _, job_id, store in sorted(stale)))
            state.prune_ids_checked = True
            self.changed = True

    def count(self, entries, catalog, now):
        state = self.state
        skewed = []
        for task in sorted((t for t in entries.values()
                            if t.endtime is not None),
                           key=lambda t: (t.endtime, t.upid)):
            if state.running.pop(task.upid, None) is not None:
                self.changed = True
            if task.upid in state.counted:
                continue
            state.counted[task.upid] = task.starttime
            self.changed = True
            key, note = classify(task, catalog, state.prune_runs)
            state.prune_runs.pop(task.upid, None)
            if key is None:
                self.ignore(task, note)
                continue
            if note is not None:
                log.warning("prune task %s: %s job, counted for %r", task.upid,
                            note, key[1])
            if task.endtime < task.starttime \
                    or task.starttime > now + SKEW_TOLERANCE:
                skewed.append(task)
            state.jobs.setdefault(key, JobStats()).record(task)
        if skewed:
            self.problems.errors["clock_skew"] += len(skewed)
            sample = skewed[0]
            log.warning("%d task(s) with clock skew, counted once (e.g. %s: "
                        "start %d, end %d, this host's clock %d)",
                        len(skewed), sample.upid, sample.starttime,
                        sample.endtime, now)
        self.track_running(entries, catalog)
        self.advance(entries, now)

    def track_running(self, entries, catalog):
        state = self.state
        running_by_job = collections.Counter()
        for task in entries.values():
            if task.endtime is not None:
                continue
            key, _ = classify(task, catalog, state.prune_runs)
            if key is None:
                continue
            running_by_job[key] += 1
            if key not in state.jobs:
                state.jobs[key] = JobStats()
                self.changed = True
            if state.running.get(task.upid) != task.starttime:
                state.running[task.upid] = task.starttime
                self.changed = True
        self.running_by_job = running_by_job

    def advance(self, entries, now):
        """Moves the cursor and forgets what can no longer be listed."""
        state, overlap = self.state, self.overlap
        cursor = state.cursor
        if entries:
            newest = max(t.starttime for t in entries.values())
            cursor = max(cursor, newest - overlap)
        cursor = min(cursor, int(now) - overlap)
        if cursor != state.cursor:
            state.cursor = cursor
            self.changed = True
        horizon = cursor - overlap
        for upid in [u for u, s in state.counted.items() if s < horizon]:
            del state.counted[upid]
            self.changed = True
        for upid in [u for u in state.prune_runs if u not in state.running
                     and (upid_starttime(u) or 0) < horizon]:
            del state.prune_runs[upid]
            self.changed = True

    def ignore(self, task, reason):
        self.ignored[reason] += 1
        if reason == "unknown_type":
            if task.worker_type not in self.unknown_types \
                    and len(self.unknown_types) < 100:
                self.unknown_types.add(task.worker_type)
                log.info("ignoring tasks of type %r: not a job type this "
                         "exporter counts", task.worker_type)
        else:
            log.warning("ignoring task %s: worker id %r is not a form PBS "
                        "writes for %r", task.upid, task.worker_id,
                        task.worker_type)

    def ignore_malformed(self, raw):
        key = json.dumps(raw, sort_keys=True, default=str)[:500]
        if key in self.malformed_seen:
            return
        if len(self.malformed_seen) > 10000:
            self.malformed_seen.clear()
        self.malformed_seen.add(key)
        self.ignored["malformed"] += 1
        log.warning("ignoring malformed task list entry: %s", key[:200])

