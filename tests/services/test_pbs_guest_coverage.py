"""Per-guest coverage from the PBS job exporter (services/pbs_exporter/collector/datastores.py): one series
per guest and datastore over every namespace, and the sync jobs that copy a guest away, by their
namespace and group filters (pbs-api-types BackupGroup::apply_filters), against the fake PBS."""

from __future__ import annotations

import time

from contracts import metrics
from services.pbs_exporter.collector.datastores import group_selected, ns_within
from tests.fake_pbs import FakePBS
from tests.services.test_pbs_exporter import Exporter

T = int(time.time()) - 60


def test_each_guest_has_its_newest_backup_verified_snapshot_count_and_copies(tmp_path):
    fake = FakePBS(version=(3, 3))
    fake.add_datastore("store1", 2**40, 2**39, namespaces=("", "prod"))
    fake.add_datastore("store2", 2**40, 2**39)
    fake.add_snapshot("store1", "vm", "101", T - 86400)  # verified ok
    fake.add_snapshot("store1", "vm", "101", T - 3000, verification="failed")
    fake.add_snapshot("store1", "vm", "101", T - 1000, ns="prod", verification=None)  # newest, in a namespace
    fake.add_snapshot("store1", "ct", "200", T - 500, verification=None)  # never verified
    fake.add_snapshot("store1", "host", "pve1", T - 400)  # no guest
    fake.add_job("sync", "p-vms", "store1", remote="offsite", **{"sync-direction": "push", "group-filter": ["type:vm"]})
    fake.add_job("sync", "p-prod", "store1", remote="offsite", ns="prod", **{
        "sync-direction": "push", "max-depth": 0, "group-filter": ["exclude:type:vm"]})
    fake.add_job("sync", "l-copy", "store2", remote=None, **{"remote-store": "store1", "group-filter": ["regex:^ct/"]})
    fake.add_job("sync", "s-in", "store1")  # pulls from a remote into store1: no copy of store1's guests
    fake.start()
    exporter = Exporter(tmp_path, fake.url, ["--interval", "3600"])
    try:
        exporter.start()
        m = exporter.wait_until(lambda m: m.get("pbs_up") == 1, "the first poll")

        def value(name, guest):
            return m.get(name, {"guest": guest, "datastore": "store1"})
        assert value(metrics.PBS_GUEST_LAST_BACKUP, "vm/101") == T - 1000
        assert value(metrics.PBS_GUEST_LAST_VERIFIED, "vm/101") == T - 86400  # the failed one is no verification
        assert value(metrics.PBS_GUEST_SNAPSHOTS, "vm/101") == 3
        assert value(metrics.PBS_GUEST_SYNC_JOBS, "vm/101") == 1  # p-vms
        assert value(metrics.PBS_GUEST_LAST_BACKUP, "ct/200") == T - 500
        assert value(metrics.PBS_GUEST_LAST_VERIFIED, "ct/200") is None
        assert value(metrics.PBS_GUEST_SYNC_JOBS, "ct/200") == 1  # l-copy; p-prod covers prod alone
        guests = {dict(k)["guest"] for k in m.series(metrics.PBS_GUEST_SNAPSHOTS)}
        assert guests == {"vm/101", "ct/200"}  # one series per guest and datastore: no host, no snapshot
    finally:
        exporter.stop()
        fake.stop()


def test_group_filters_and_namespaces_select_as_pbs_does():
    assert group_selected([], "vm/101")
    assert group_selected(["type:ct", "group:vm/101"], "vm/101")
    assert not group_selected(["type:ct"], "vm/101")
    assert not group_selected(["type:vm", "exclude:regex:^vm/1"], "vm/101")
    assert group_selected(["include:regex:01$"], "vm/101")  # a search, as Regex::is_match
    assert not group_selected(["regex:("], "vm/101")  # a filter PBS would refuse matches nothing
    assert ns_within("prod/eu", "prod", None) and ns_within("prod", "prod", 0)
    assert not ns_within("prod/eu", "prod", 0) and not ns_within("production", "prod", None)
    assert ns_within("a", "", 1) and not ns_within("a/b", "", 1)
