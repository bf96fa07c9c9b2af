"""The datastores: usage every poll, snapshot counts less often, and their series.

The snapshot read also gives per-guest coverage (one series per guest and datastore, over every
namespace): the newest backup, the newest snapshot whose verification is ok, the snapshot count,
and how many sync jobs copy the guest's group away from the datastore (a push job from it, or a
pull job of this PBS into another of its datastores), by their namespace and group filters
(pbs-api-types BackupGroup::apply_filters).
"""

import collections
import re
import time
from urllib.parse import quote

from prometheus_client.metrics_core import GaugeMetricFamily

from contracts.metrics import (PBS_GUEST_LABELS, PBS_GUEST_LAST_BACKUP, PBS_GUEST_LAST_VERIFIED, PBS_GUEST_SNAPSHOTS, PBS_GUEST_SYNC_JOBS,
                               PBS_DATASTORE_AVAILABLE, PBS_DATASTORE_SIZE, PBS_DATASTORE_SNAPSHOTS, PBS_DATASTORE_USED)

from ..problems import PbsError
from ..shapes import is_int, label_ok
from .base import family

BACKUP_TYPES = ("vm", "ct", "host")
GUEST_TYPES = ("vm", "ct")


def filter_matches(text, group):
    """One group filter (``type:vm``, ``group:vm/101``, ``regex:...``) against ``vm/101``."""
    kind, _, value = text.partition(":")
    if kind == "type":
        return group.split("/", 1)[0] == value
    if kind == "group":
        return group == value
    if kind == "regex":
        try:
            return re.search(value, group) is not None
        except re.error:
            return False
    return False


def group_selected(filters, group):
    """pbs-api-types BackupGroup::apply_filters: any include (all when none), and no exclude."""
    parsed = [(f.startswith("exclude:"), f.removeprefix("exclude:").removeprefix("include:"))
              for f in filters if isinstance(f, str)]
    includes = [f for exclude, f in parsed if not exclude]
    included = not includes or any(filter_matches(f, group) for f in includes)
    return included and not any(filter_matches(f, group) for exclude, f in parsed if exclude)


def ns_within(ns, top, max_depth):
    if top and ns != top and not ns.startswith(top + "/"):
        return False
    depth = ns.count("/") + 1 - (top.count("/") + 1 if top else 0) if ns else 0
    return max_depth is None or depth <= max_depth


def sync_copies(configs, store, ns, group):
    """The sync jobs that copy the group (in namespace ``ns`` of ``store``) away from the datastore."""
    count = 0
    for item in configs.values():
        direction = item.get("sync-direction", "pull")
        if direction == "push" and item.get("store") == store:
            top = item.get("ns") or ""
        elif direction == "pull" and not item.get("remote") and item.get("remote-store") == store \
                and item.get("store") != store:
            top = item.get("remote-ns") or ""
        else:
            continue
        depth = item.get("max-depth")
        filters = item.get("group-filter") or []
        if ns_within(ns, top, depth if is_int(depth) else None) and group_selected(
                filters if isinstance(filters, list) else [filters], group):
            count += 1
    return count


class Datastores:
    """Usage of every datastore each poll; snapshot counts less often."""

    def __init__(self, client, problems, snapshot_interval):
        self.client = client
        self.problems = problems
        self.snapshot_interval = snapshot_interval
        self.usage = {}      # store -> [total, used, avail]
        self.snapshots = {}  # store -> Counter of backup types
        self.guests = {}  # store -> {(ns, "vm/101"): [newest backup, newest verified or None, snapshots]}
        self.snapshots_due = 0.0

    def read_usage(self):
        source = "datastore usage"
        try:
            data = self.client.get_list("/status/datastore-usage")
        except PbsError as err:
            self.problems.report(source, err)
            self.usage = {}
            return
        self.problems.recovered(source)
        usage = {}
        for item in data:
            if not isinstance(item, dict) or not isinstance(
                    item.get("store"), str) or not label_ok(item["store"]):
                continue
            values = [item.get(k) for k in ("total", "used", "avail")]
            if item.get("error") or not all(
                    is_int(v) and v >= 0 for v in values):
                # PBS's own word on the datastore (e.g. not mounted): log it
                # once, it is no fault of the exporter.
                self.problems.report(f"datastore {item['store']}", PbsError(
                    "http", f"no usage: {item.get('error') or 'bad values'}"),
                    count=False)
                continue
            self.problems.recovered(f"datastore {item['store']}")
            usage[item["store"]] = values
        self.usage = usage

    def read_snapshots(self):
        if time.monotonic() < self.snapshots_due:
            self.snapshots = {s: c for s, c in self.snapshots.items()
                              if s in self.usage}
            self.guests = {s: g for s, g in self.guests.items() if s in self.usage}
            return
        self.snapshots_due = time.monotonic() + self.snapshot_interval
        snapshots, guests = {}, {}
        for store in self.usage:
            source = f"snapshots of {store}"
            try:
                snapshots[store], guests[store] = self.count_snapshots(store)
            except PbsError as err:
                self.problems.report(source, err)
                if store in self.snapshots:
                    snapshots[store] = self.snapshots[store]
                    guests[store] = self.guests.get(store, {})
                continue
            self.problems.recovered(source)
        self.snapshots, self.guests = snapshots, guests

    def count_snapshots(self, store):
        base = f"/admin/datastore/{quote(store)}"
        try:
            namespaces = [n.get("ns") for n in self.client.get_list(
                base + "/namespace") if isinstance(n, dict)]
        except PbsError as err:
            if err.status != 404:  # PBS before 2.2: only the root namespace
                raise
            namespaces = [""]
        counts = collections.Counter({t: 0 for t in BACKUP_TYPES})
        guests = {}
        for ns in namespaces:
            if not isinstance(ns, str):
                continue
            for snap in self.client.get_list(base + "/snapshots",
                                             {"ns": ns} if ns else None):
                kind = snap.get("backup-type") if isinstance(snap, dict) \
                    else None
                counts[kind if kind in BACKUP_TYPES else "other"] += 1
                if kind in GUEST_TYPES and is_int(snap.get("backup-time")) \
                        and isinstance(snap.get("backup-id"), str) \
                        and label_ok(snap["backup-id"]):
                    self.add_guest(guests, ns, snap)
        return counts, guests

    @staticmethod
    def add_guest(guests, ns, snap):
        when = snap["backup-time"]
        verified = isinstance(snap.get("verification"), dict) and \
            snap["verification"].get("state") == "ok"
        entry = guests.setdefault(
            (ns, f"{snap['backup-type']}/{snap['backup-id']}"), [when, None, 0])
        entry[0] = max(entry[0], when)
        if verified:
            entry[1] = when if entry[1] is None else max(entry[1], when)
        entry[2] += 1

    def guest_rows(self, sync_configs):
        """Per (datastore, guest), over its namespaces: newest backup, newest verified, snapshots, sync jobs."""
        rows = {}
        for store, groups in self.guests.items():
            for (ns, guest), (newest, verified, count) in groups.items():
                row = rows.setdefault((store, guest), [newest, verified, 0, 0])
                row[0] = max(row[0], newest)
                if verified is not None:
                    row[1] = verified if row[1] is None else max(row[1], verified)
                row[2] += count
                row[3] = max(row[3], sync_copies(sync_configs, store, ns, guest))
        return sorted(rows.items())

    def families(self, sync_configs=None):
        usage = sorted(self.usage.items())
        out = [family(GaugeMetricFamily, name, doc, ["datastore"], [([s], v[index]) for s, v in usage])
               for name, index, doc in ((PBS_DATASTORE_SIZE, 0, "Size of the datastore."),
                                        (PBS_DATASTORE_USED, 1, "Used bytes."),
                                        (PBS_DATASTORE_AVAILABLE, 2, "Available bytes."))]
        out.append(family(GaugeMetricFamily, PBS_DATASTORE_SNAPSHOTS,
                          "Backup snapshots in the datastore (all namespaces).", ["datastore", "backup_type"],
                          [([s, t], n) for s, counts in sorted(self.snapshots.items())
                           for t, n in sorted(counts.items())]))
        rows = self.guest_rows(sync_configs or {})
        for name, index, doc in (
                (PBS_GUEST_LAST_BACKUP, 0, "Time of the guest's newest snapshot on the datastore (all namespaces)."),
                (PBS_GUEST_LAST_VERIFIED, 1, "Time of the guest's newest snapshot whose verification is ok."),
                (PBS_GUEST_SNAPSHOTS, 2, "Snapshots of the guest on the datastore (all namespaces)."),
                (PBS_GUEST_SYNC_JOBS, 3, "Sync jobs that copy the guest's group to another datastore or a remote.")):
            out.append(family(GaugeMetricFamily, name, doc, list(PBS_GUEST_LABELS),
                              [([guest, store], row[index]) for (store, guest), row in rows if row[index] is not None]))
        return out
