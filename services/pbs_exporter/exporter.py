"""One poll of PBS after another, through the collectors, in order."""

import time

from .client import PbsClient
from .collector import PollStatus, build_families
from .collector.datastores import Datastores
from .collector.jobs import JobCatalog
from .collector.tasks import TaskReader
from .ledger import Ledger
from .problems import Cancelled, PbsError, Problems, log
from .shapes import parse_task
from .state import StateFile


class Exporter:
    """One poll of PBS after another; a scrape serves what the last one
    published (``families``)."""

    def __init__(self, args, cancel):
        self.problems = Problems()
        self.client = PbsClient(args.pbs, args.token, args.timeout,
                                args.ssl_context, cancel)
        self.tasks = TaskReader(self.client, args.node)
        self.catalog = JobCatalog(self.client, self.problems)
        self.datastores = Datastores(self.client, self.problems,
                                     args.snapshot_interval)
        self.state_file = StateFile(args.state_file, args.initial_lookback,
                                    self.problems)
        self.ledger = Ledger(self.state_file.load(), args.overlap,
                             self.problems)
        self.status = PollStatus()
        self.families = ()
        self.publish()

    def poll(self):
        started = time.monotonic()
        self.status.polls += 1
        try:
            self.status.up = self.poll_pbs()
        except Cancelled:
            return
        except Exception:  # a bug must not stop the exporter
            self.problems.errors["internal"] += 1
            log.exception("internal error during poll")
            self.status.up = False
        self.status.duration = time.monotonic() - started
        self.status.ended = time.time()
        self.publish()

    def poll_pbs(self):
        ledger = self.ledger
        ledger.changed = False
        try:
            listing = self.tasks.running() + self.tasks.recent(
                ledger.state.cursor, ledger.state.running)
        except PbsError as err:
            self.problems.report("PBS task list", err)
            ledger.running_by_job = {}
            return False
        self.problems.recovered("PBS task list")
        self.datastores.read_usage()
        self.catalog.read(self.datastores.usage)
        entries = ledger.entries(listing)
        for upid, start in ledger.waiting_for(entries):
            try:
                raw = self.tasks.find(upid, start)
            except PbsError as err:
                # PBS went away mid-poll: don't wait out a timeout per task;
                # the rest stay tracked and are looked up next poll.
                self.problems.report("PBS task lookup", err)
                break
            task = parse_task(raw) if raw is not None else None
            if task is None:
                ledger.lost(upid)
            else:
                entries[upid] = task
        ledger.adopt(self.catalog)
        ledger.count(entries, self.catalog, time.time())
        if ledger.changed:
            self.state_file.save(ledger.state)
        self.datastores.read_snapshots()
        return True

    def publish(self):
        """Swaps in the families a scrape serves, as one object."""
        try:
            self.families = build_families(self.status, self.problems,
                                           self.ledger, self.catalog,
                                           self.datastores)
        except Exception:  # keep serving the previous families
            self.problems.errors["internal"] += 1
            log.exception("internal error while building metrics")

