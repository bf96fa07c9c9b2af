"""What the exporter counted, kept across restarts in its state file.

Exactly-once counting
=====================

A task is counted when it is first seen finished (it has an ``endtime``);
running tasks only feed ``pbs_job_running`` and are remembered.  Tasks are
keyed by their UPID, which PBS makes unique.  The state file holds, written
atomically (temp file, fsync, rename) after every poll that changed it:

* the counters and histograms themselves, so a restart continues them
  instead of resetting them (no reset for ``rate()`` to guess about);
* the UPIDs already counted whose start time is within ``--overlap`` below
  the cursor (older ones can no longer be listed, so they can be forgotten);
* the cursor: the newest start time seen minus ``--overlap``, never ahead of
  this host's clock minus ``--overlap`` (a task stamped in the future by a
  skewed clock must not push the cursor past tasks still to come);
* the running tasks, with their start times.  When one of them is neither
  running any more nor in the listing (it started before the cursor: a long
  verify or GC), it is looked up with ``until=<its start>``;
* which prune job ran which task, as the job status showed it (below).

Counters and the counted UPIDs are saved together, so a kill at any moment
either keeps a task counted in both or in neither: after a restart every task
that finished while the exporter was down is counted once.  With no state
file (first run), tasks of the last ``--initial-lookback`` seconds are
counted; a corrupt state file is moved aside and treated the same way.
"""

import bisect
import dataclasses
import json
import math
import os
import tempfile
import time

from .problems import PbsError, log
from .shapes import is_int, task_succeeded

STATE_VERSION = 2
STATE_VERSIONS = (1, 2)  # version 1 had no prune job runs

DURATION_BUCKETS = (10, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400,
                    28800, 86400)


@dataclasses.dataclass
class JobStats:
    attempts: int = 0
    successes: int = 0
    warnings: int = 0
    last_run: object = None
    last_success: object = None
    last_duration: object = None
    buckets: list = dataclasses.field(
        default_factory=lambda: [0] * (len(DURATION_BUCKETS) + 1))
    duration_sum: float = 0.0

    def record(self, task):
        duration = float(max(0, task.endtime - task.starttime))
        self.attempts += 1
        if task_succeeded(task.status):
            self.successes += 1
            if self.last_success is None or task.endtime > self.last_success:
                self.last_success = task.endtime
        if task.status.startswith("WARNINGS"):
            self.warnings += 1
        if self.last_run is None or task.endtime >= self.last_run:
            self.last_run = task.endtime
            self.last_duration = duration
        self.buckets[bisect.bisect_left(DURATION_BUCKETS, duration)] += 1
        self.duration_sum += duration


class StateError(Exception):
    pass


def _is_number(value):
    return (is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _valid_stats(stats):
    counts = [stats.attempts, stats.successes, stats.warnings]
    return (all(is_int(n) and n >= 0 for n in counts)
            and isinstance(stats.buckets, list)
            and len(stats.buckets) == len(DURATION_BUCKETS) + 1
            and all(is_int(n) and n >= 0 for n in stats.buckets)
            and _is_number(stats.duration_sum)
            and all(v is None or _is_number(v) for v in (
                stats.last_run, stats.last_success, stats.last_duration)))


@dataclasses.dataclass
class State:
    cursor: int
    counted: dict = dataclasses.field(default_factory=dict)  # upid -> start
    running: dict = dataclasses.field(default_factory=dict)  # upid -> start
    jobs: dict = dataclasses.field(default_factory=dict)  # key -> JobStats
    # upid -> prune job id, from last-run-upid, until the task is counted
    prune_runs: dict = dataclasses.field(default_factory=dict)
    # False after version 1, which keyed namespaced prune jobs by namespace:
    # its prune series of no configured job go once the job status is read.
    prune_ids_checked: bool = True

    def to_json(self):
        jobs = []
        for (job_type, job_id, store), stats in sorted(self.jobs.items()):
            entry = dataclasses.asdict(stats)
            entry.update(job_type=job_type, job_id=job_id, datastore=store)
            jobs.append(entry)
        return json.dumps({"version": STATE_VERSION, "cursor": self.cursor,
                           "buckets": list(DURATION_BUCKETS),
                           "counted": self.counted, "running": self.running,
                           "prune_runs": self.prune_runs,
                           "prune_ids_checked": self.prune_ids_checked,
                           "jobs": jobs}, separators=(",", ":"))

    @classmethod
    def from_json(cls, text):
        try:
            doc = json.loads(text)
            version = doc.get("version")
            if version not in STATE_VERSIONS:
                raise StateError(f"unknown version {version!r}")
            state = cls(int(doc["cursor"]))
            for name in ("counted", "running"):
                for upid, start in doc[name].items():
                    if not (upid.startswith("UPID:") and is_int(start)):
                        raise StateError(f"bad {name} entry {upid!r}")
                    getattr(state, name)[upid] = start
            if version == 1:
                state.prune_ids_checked = False
            else:
                for upid, job_id in doc["prune_runs"].items():
                    if not (upid.startswith("UPID:")
                            and isinstance(job_id, str)):
                        raise StateError(f"bad prune run {upid!r}")
                    state.prune_runs[upid] = job_id
                state.prune_ids_checked = doc["prune_ids_checked"] is True
            same_buckets = doc["buckets"] == list(DURATION_BUCKETS)
            fields = {f.name for f in dataclasses.fields(JobStats)}
            for entry in doc["jobs"]:
                key = (entry.pop("job_type"), entry.pop("job_id"),
                       entry.pop("datastore"))
                if not all(isinstance(k, str) for k in key):
                    raise StateError(f"bad job key {key!r}")
                stats = JobStats(**{k: entry[k] for k in fields})
                if not _valid_stats(stats):
                    raise StateError(f"bad counters for {key!r}")
                if not same_buckets:  # bucket bounds changed: restart them
                    stats.buckets = JobStats().buckets
                    stats.duration_sum = 0.0
                state.jobs[key] = stats
            return state
        except StateError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StateError(f"{type(exc).__name__}: {exc}") from None


def write_atomically(path, text):
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".state-", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class StateFile:
    """Loads the state (a missing or corrupt file means a fresh start) and
    saves it atomically."""

    def __init__(self, path, initial_lookback, problems):
        self.path = path
        self.initial_lookback = initial_lookback
        self.problems = problems

    def load(self):
        path = self.path
        try:
            with open(path, encoding="utf-8") as handle:
                return State.from_json(handle.read())
        except FileNotFoundError:
            log.info("no state file %s: first run, counting tasks of the "
                     "last %gs", path, self.initial_lookback)
        except (OSError, UnicodeDecodeError, StateError) as exc:
            self.problems.errors["state"] += 1
            aside = f"{path}.corrupt-{int(time.time())}"
            try:
                os.replace(path, aside)
                where = f"moved to {aside}"
            except OSError as move_exc:
                where = f"could not move it aside: {move_exc.strerror}"
            log.error("state file %s unusable (%s); %s; starting afresh, "
                      "counting tasks of the last %gs", path, exc, where,
                      self.initial_lookback)
        return State(int(time.time() - self.initial_lookback))

    def save(self, state):
        try:
            write_atomically(self.path, state.to_json())
        except OSError as exc:
            self.problems.report("state file", PbsError(
                "state", f"cannot write {self.path}: {exc}"))
            return
        self.problems.recovered("state file")

