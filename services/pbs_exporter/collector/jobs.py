"""The configured sync, verify and prune jobs and each datastore's GC, with their job status; and
the job series a scrape serves, from what the ledger counted and what the job status says."""

import time
from urllib.parse import quote

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.utils import floatToGoString

from contracts.metrics import (PBS_JOB_ATTEMPT, PBS_JOB_DURATION, PBS_JOB_LABELS, PBS_JOB_LAST_DURATION,
                               PBS_JOB_LAST_RUN, PBS_JOB_LAST_SUCCESS, PBS_JOB_NEXT_RUN, PBS_JOB_RUNNING,
                               PBS_JOB_SUCCESS, PBS_JOB_WARNING)

from ..problems import PbsError, log
from ..shapes import UNMATCHED, is_int, label_ok, task_succeeded, upid_starttime
from ..state import DURATION_BUCKETS
from .base import family

# How often a PBS that refused sync-direction (before 3.3) is asked again.
SYNC_DIRECTION_RETRY = 3600
JOB_TYPES = ("sync", "verify", "prune", "gc")  # the ones with a job status


class JobCatalog:
    """The configured jobs and their status (pbs-api-types jobs.rs
    JobScheduleStatus: next-run, last-run-upid, last-run-state,
    last-run-endtime), by job type and job id."""

    def __init__(self, client, problems):
        self.client = client
        self.problems = problems
        self.configs = {job_type: {} for job_type in JOB_TYPES}
        self.unsupported = set()
        self.read_ok = set()  # job types whose status this poll read
        self.sync_all_retry = 0.0  # when to ask sync-direction=all again

    def read(self, stores):
        self.read_ok = set()
        for job_type, path, reader in (
                ("sync", "/admin/sync", self._sync),
                ("verify", "/admin/verify", None),
                ("prune", "/admin/prune", None),
                ("gc", "/admin/gc", self._gc)):
            source = f"job status {path}"
            try:
                if reader is not None:
                    data = reader(stores)
                elif path in self.unsupported:
                    continue
                else:
                    data = self._unless_missing(path)
            except PbsError as err:
                self.problems.report(source, err)
                continue
            self.problems.recovered(source)
            if data is None:  # not offered by this PBS
                self.configs[job_type] = {}
                continue
            configs = {}
            for item in data:
                if not isinstance(item, dict):
                    continue
                if job_type == "gc":  # one per datastore, named after it
                    item = dict(item, id=item.get("store"))
                job_id, store = item.get("id"), item.get("store")
                if isinstance(job_id, str) and isinstance(store, str) \
                        and label_ok(job_id) and label_ok(store):
                    configs[job_id] = item
            self.configs[job_type] = configs
            self.read_ok.add(job_type)

    def _unless_missing(self, path, params=None):
        try:
            return self.client.get_list(path, params)
        except PbsError as err:
            if err.status not in (404, 501):
                raise
        self.unsupported.add(path)
        log.info("%s: not offered by this PBS", path)
        return None

    def _sync(self, _stores):
        # PBS 3.3 lists push jobs only when asked for all directions (src/
        # api2/admin/sync.rs ListSyncDirection, default pull); 3.2 refuses
        # the parameter with 400 (proxmox-router: unknown property).
        if "/admin/sync" in self.unsupported:
            return None
        if time.monotonic() >= self.sync_all_retry:
            try:
                return self._unless_missing("/admin/sync",
                                            {"sync-direction": "all"})
            except PbsError as err:
                if err.status != 400:
                    raise
                if self.sync_all_retry == 0.0:
                    log.info("/admin/sync refuses sync-direction (PBS "
                             "before 3.3): listing pull jobs only")
                self.sync_all_retry = time.monotonic() + SYNC_DIRECTION_RETRY
        return self._unless_missing("/admin/sync")

    def _gc(self, stores):
        # /admin/gc came with PBS 3.2 (src/api2/admin/gc.rs); before, each
        # datastore's .../gc has the same item with fewer fields.
        if "/admin/gc" not in self.unsupported:
            data = self._unless_missing("/admin/gc")
            if data is not None:
                return data
        items = []
        for store in sorted(stores):
            item = self.client.get(f"/admin/datastore/{quote(store)}/gc")
            if isinstance(item, dict):
                items.append(dict(item, store=store))
        return items

    def sync_store(self, job_id):
        item = self.configs["sync"].get(job_id)
        return item["store"] if item else None

    def last_run_upids(self, job_type):
        """{last-run-upid: job_id} of the job type's jobs."""
        return {item["last-run-upid"]: job_id for job_id, item
                in self.configs[job_type].items()
                if upid_starttime(item.get("last-run-upid")) is not None}

    def prune_job(self, task, store, ns, prune_runs):
        """(job_id, note) of a prunejob task, by the rules in shapes.py's
        docstring."""
        job_id = prune_runs.get(task.upid)
        if job_id is not None:
            return job_id, None
        same = sorted(job_id for job_id, item in self.configs["prune"].items()
                      if item["store"] == store
                      and (item.get("ns") or "") == ns)
        if len(same) == 1:
            return same[0], None
        if not same:
            return UNMATCHED, "unmatched"
        later = [job_id for job_id in same if (upid_starttime(
            self.configs["prune"][job_id].get("last-run-upid")) or -1)
            >= task.starttime]
        if len(later) == 1:
            return later[0], None
        return (later or same)[0], "ambiguous"

    def next_runs(self):
        return {(job_type, job_id, item["store"]): item["next-run"]
                for job_type, configs in self.configs.items()
                for job_id, item in configs.items()
                if is_int(item.get("next-run"))}

    def last_runs(self):
        """{key: (last run, last success)} end times the job status
        reports."""
        result = {}
        for job_type, configs in self.configs.items():
            for job_id, item in configs.items():
                end, status = item.get("last-run-endtime"), \
                    item.get("last-run-state")
                if not is_int(end):
                    continue
                ok = end if isinstance(status, str) \
                    and task_succeeded(status) else None
                result[(job_type, job_id, item["store"])] = (end, ok)
        return result


def families(ledger, catalog, live):
    """The job series: counters and last runs always (they persist), running tasks and next runs
    only while PBS answers (``live``).  Labels in the order of a ledger key, PBS_JOB_LABELS."""
    jobs = sorted(ledger.state.jobs.items())
    labels = list(PBS_JOB_LABELS)
    out = [family(CounterMetricFamily, name, doc, labels, [(list(k), getattr(s, attr)) for k, s in jobs])
           for name, attr, doc in (
               (PBS_JOB_ATTEMPT, "attempts", "Finished runs of the job."),
               (PBS_JOB_SUCCESS, "successes", "Runs of the job that ended OK or with warnings."),
               (PBS_JOB_WARNING, "warnings", "Runs of the job that ended with warnings."))]

    status_last = catalog.last_runs()
    last_run, last_ok = [], []
    for key, stats in jobs:
        run, ok = status_last.get(key, (None, None))
        run = max((v for v in (stats.last_run, run) if v is not None), default=None)
        ok = max((v for v in (stats.last_success, ok) if v is not None), default=None)
        if run is not None:
            last_run.append((list(key), run))
        if ok is not None:
            last_ok.append((list(key), ok))
    out += [
        family(GaugeMetricFamily, PBS_JOB_LAST_RUN, "End time of the job's last finished run.", labels, last_run),
        family(GaugeMetricFamily, PBS_JOB_LAST_SUCCESS, "End time of the job's last successful run.", labels,
               last_ok),
        family(GaugeMetricFamily, PBS_JOB_LAST_DURATION, "Duration of the job's last finished run.", labels,
               [(list(k), s.last_duration) for k, s in jobs if s.last_duration is not None]),
    ]
    hist = HistogramMetricFamily(PBS_JOB_DURATION, "Durations of finished job runs.", labels=labels)
    bounds = [floatToGoString(b) for b in DURATION_BUCKETS] + ["+Inf"]
    for key, stats in jobs:
        cumulative, total = [], 0
        for bound, count in zip(bounds, stats.buckets):
            total += count
            cumulative.append((bound, total))
        hist.add_metric(list(key), cumulative, stats.duration_sum)
    out.append(hist)

    if live:
        out += [
            family(GaugeMetricFamily, PBS_JOB_RUNNING, "Tasks of the job running now.", labels,
                   [(list(k), ledger.running_by_job.get(k, 0)) for k, _ in jobs]),
            family(GaugeMetricFamily, PBS_JOB_NEXT_RUN, "Next scheduled run of the job, from its job status.",
                   labels, [(list(k), v) for k, v in sorted(catalog.next_runs().items())]),
        ]
    return out
