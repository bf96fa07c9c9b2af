"""Golden exposition of the PBS job exporter: the whole /metrics text it serves for a PBS world.

The exporter runs as the process the pbs host runs, against tests/fake_pbs.py on a fixed clock
(every task, job status and next run at fixed times), polling once. Its full answer, in the
Prometheus text format and in OpenMetrics, is compared with a reviewed file under
tests/services/golden/: any change of a name, label, value, help text, order or family fails.
Only values that cannot repeat are masked (as ``<volatile>``, after checking they are numbers):
the duration and end time of the poll and the exporter's own ``process_*`` figures.

A change of the exposition on purpose: ``PBS_GOLDEN_REGENERATE=1`` rewrites the files (and fails,
so that the new text is reviewed in the diff before it is committed).
"""

import os
import re
import time
from pathlib import Path

import pytest

from tests.fake_pbs import FakePBS, manual_worker_id
from tests.services.test_pbs_exporter import Exporter, seed_datastores

GOLDEN = Path(__file__).resolve().parent / "golden"
T = 1_764_547_200  # 2025-12-01 00:00:00 UTC: PBS's clock in every world below
# One poll, at start: no second poll can change the answer while it is read.
ONE_POLL = ["--interval", "3600", "--initial-lookback", "2000000000"]
VOLATILE = re.compile(
    r"^((?:process_\w+|pbs_exporter_scrape_duration_seconds|pbs_exporter_last_scrape_timestamp_seconds)"
    r"(?:\{[^}]*\})?) (\S+)$", re.M)
OPENMETRICS = "application/openmetrics-text; version=0.0.1"


def world(fake):
    """Two datastores with namespaces and snapshots; jobs of every type; every kind of task end."""
    fake.clock = lambda: T
    seed_datastores(fake, T)
    fake.add_job("sync", "s-offsite", "store1")
    if fake.version >= (3, 3):
        fake.add_job("sync", "s-push", "store2", next_run=T + 7200, **{"sync-direction": "push"})
    fake.add_job("verify", "v-weekly", "store1", next_run=T + 600)
    fake.add_job("verify", "v-old", "store2", status={"last-run-endtime": T - 30 * 86400, "last-run-state": "OK"})
    fake.add_job("prune", "p-root", "store1")
    fake.add_job("prune", "p-prod", "store1", ns="prod")
    fake.add_job("prune", "p-daily", "store2")
    add = fake.add_task
    add("backup", "store1:vm/101", T - 3000, T - 2900)
    add("backup", "store1:vm/101", T - 2000, T - 1990, "backup failed: connection reset by peer")
    add("backup", "store1:ct/200", T - 1900, T - 1700, "WARNINGS: 1")
    add("backup", "store2:host/pve1", T - 1500, T - 1400)
    crashed = add("backup", "store1:vm/103", T - 5000)
    fake.crash(crashed, last_log=T - 4800, noticed=T - 100)
    fake.run_job("sync", "s-offsite", T - 1300, T - 1200)
    fake.run_job("sync", "s-offsite", T - 900, T - 800)
    if fake.version >= (3, 3):
        fake.run_job("sync", "s-push", T - 1100, T - 1000)
    fake.run_job("verify", "v-weekly", T - 100000, T - 3600)  # longer than a day: the +Inf bucket
    fake.run_job("verify", "v-weekly", T - 1200, T - 1000, "verification failed - please check the log for details")
    fake.run_job("prune", "p-root", T - 700, T - 690)
    fake.run_job("prune", "p-prod", T - 680, T - 670, "WARNINGS: 2")
    fake.run_job("prune", "p-daily", T - 660, T - 655)
    fake.run_job("gc", "store1", T - 6000, T - 1000)
    add("verify_snapshot", manual_worker_id("verify_snapshot", "store1", group="vm/101", snapshot_time=T - 3000),
        T - 600, T - 550)
    add("prune", manual_worker_id("prune", "store2", group="vm/300"), T - 500, T - 499)
    add("sync", manual_worker_id("sync", "store2"), T - 480, T - 470, "sync failed: remote unreachable")
    add("reader", "store1:vm/101", T - 450, T - 400)  # not a job: unknown_type
    add("aptupdate", "", T - 350, T - 340)
    add("backup", "store1:no-group", T - 300, T - 290)  # no form PBS writes: malformed
    fake.run_job("gc", "store2", T - 60)  # running now
    add("backup", "store1:vm/102", T - 30)


def answers(exporter):
    """The text and the OpenMetrics answer to a scrape after the one poll, volatile values masked."""
    exporter.wait_until(lambda m: m.get("pbs_up") is not None, "the first poll")
    started = time.time()
    return {suffix: masked(exporter.get("/metrics", accept), started)
            for suffix, accept in (("prom", "text/plain"), ("openmetrics", OPENMETRICS))}


def masked(text, scraped_after):
    def mask(match):
        name, value = match.group(1), float(match.group(2))
        if name.startswith("pbs_exporter_last_scrape_timestamp_seconds"):
            assert scraped_after - 60 < value <= time.time(), match.group(0)
        else:
            assert value >= 0, match.group(0)
        return f"{name} <volatile>"
    return VOLATILE.sub(mask, text)


def check(prefix, texts):
    """Each answer against its golden file ``<prefix>.<format>``."""
    paths = {suffix: GOLDEN / f"{prefix}.{suffix}" for suffix in texts}
    if os.environ.get("PBS_GOLDEN_REGENERATE"):
        GOLDEN.mkdir(exist_ok=True)
        for suffix, path in paths.items():
            path.write_text(texts[suffix])
        pytest.fail(f"regenerated {', '.join(p.name for p in paths.values())}: review the diff, then run "
                    "without PBS_GOLDEN_REGENERATE")
    for suffix, path in paths.items():
        assert path.is_file(), f"{path} is missing: PBS_GOLDEN_REGENERATE=1 writes it"
        assert texts[suffix] == path.read_text(), f"the exposition differs from {path.name}"


@pytest.mark.parametrize("version", [(3, 3), (3, 1)], ids=["pbs-3.3", "pbs-3.1"])
def test_the_whole_exposition_of_a_pbs_world(version, tmp_path):
    fake = FakePBS(version=version)
    fake.start()
    exporter = Exporter(tmp_path, fake.url, ONE_POLL)
    try:
        world(fake)
        exporter.start()
        check(f"pbs-{version[0]}.{version[1]}", answers(exporter))
    finally:
        exporter.stop()
        fake.stop()


def test_the_whole_exposition_while_pbs_is_down(tmp_path):
    """Counted runs and last runs survive in the state file; the live gauges are left out."""
    fake = FakePBS()
    fake.start()
    first = Exporter(tmp_path, fake.url, ONE_POLL)
    second = Exporter(tmp_path, fake.url, ONE_POLL)
    try:
        world(fake)
        first.start().wait_until(lambda m: m.get("pbs_up") == 1, "the first poll")
        assert first.stop() == 0
        fake.stop()
        check("pbs-down", answers(second.start()))
    finally:
        for exporter in (first, second):
            exporter.stop()
        fake.stop()
