"""The drill's scenario table: what fails when, and who must hear about it.

Everything that names the stack's alerts, receivers, scrape jobs and metrics is in the first
block below, so that re-pointing the drill at renamed rules is a change of this block only; the
fixed alert names, exporter metrics and recovery actions come from contracts/, the receivers, the
SLOs' alerts and the scrape jobs from the homelab stack config.
Times are real (uncompressed) seconds from the scenario's start; `m(10)` is ten minutes.
Each expectation's `at` is when the alert's condition becomes true (firing) or false
(resolved) in the synthetic data, worked out from the timeline with the helpers below; the
time-to-notify bound is added to it by the drill (scrape + evaluation + for + group_wait).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, replace
from typing import Callable

from contracts import alerts, metrics
from contracts import recovery as recovery_catalog
from model.rules import recovery as recovery_alerts
from tools.drill.timeline import Counter, Ramp, Series, Steps, Timestamp


def m(minutes: float) -> float:
    return minutes * 60.0


def h(hours: float) -> float:
    return hours * 3600.0


# --- names in the rendered configuration (adapt here when the rules change) ----------------
# Checked against build/homelab/ (prometheus/rules/*.yaml, scrape-configs.yaml, alertmanager.yml).

RECEIVER_PAGE = "pagerduty-primary"  # severity="critical", continue: true
RECEIVER_BACKUP_ROOM = "mattermost-backup-room"  # service="backups"
RECEIVER_TICKETS = "mattermost-ops-room"  # the root route's receiver: everything else
RECEIVER_HEARTBEAT = "watchdog-heartbeat"  # alertname="Watchdog", repeat_interval 1m

# warning from the failure on; critical (page) once the retry failed too or 30m passed without a
# success, then until a run succeeds; neither while the job flaps
ALERT_BACKUP_FAILED = alerts.BACKUP_JOB_FAILED.name
ALERT_BACKUP_FLAPPING = alerts.BACKUP_JOB_FLAPPING.name  # warning: failed, succeeded, failed again within 24h
ALERT_BACKUP_METRICS_ABSENT = alerts.BACKUP_METRICS_ABSENT.name  # critical: no backup job series for 1h
ALERT_TARGET_DOWN = alerts.TARGET_DOWN.name  # warning: up == 0 for 5m, service from the target
ALERT_LATENCY_BURN = "ApiGatewayLatencyBudgetBurn"  # critical 1h&5m > 14.4 or 6h&30m > 6; warning 1d&2h > 3 or 3d&6h > 1
ALERT_NODE_DISK = alerts.NODE_DISK_USAGE_HIGH.name  # service=nodes: warning > 85%, critical > 95%, for 15m
ALERT_DATASTORE = alerts.PBS_DATASTORE_USAGE_HIGH.name  # service=backups: warning > 85%, critical > 95%, for 15m
ALERT_WATCHDOG = alerts.WATCHDOG.name

JOB_PBS = "pbs-exporter"  # the PBS job exporter (services/pbs_exporter/, shipped as a zipapp)
JOB_NODE = "pbs-node"  # node_exporter on the PBS host
JOB_SPANS = "otel-collector-spanmetrics"
# Scraped in production through a ServiceMonitor (otel-collector chart, port spanmetrics), so not in
# scrape-configs.yaml: the drill adds it as a static job.
SERVICE_MONITOR_JOBS = {JOB_SPANS: "otel-collector.traces.svc:8889"}
# The Collector holds spans up to its batch timeout, then its span metrics move once per flush.
SPAN_BATCH_TIMEOUT = "5s"  # processors.batch.timeout
SPAN_METRICS_FLUSH = "15s"  # connectors.spanmetrics.metrics_flush_interval

# The synthetic API checks: the real blackbox exporter probes a local HTTP server (tools/drill/probes.py).
ALERT_PROBE_FAILING = alerts.SYNTHETIC_PROBE_FAILING.name  # critical: probe_success == 0 for probes.failingFor (5m)
ALERT_AVAILABILITY_BURN = "ApiGatewayAvailabilityBudgetBurn"  # the SLO on the health probe: as the latency SLO's
JOB_PROBE_HEALTH = "probe-api-gateway-health"  # every probe an event of api-gateway-availability
JOB_PROBE_OPENAPI = "probe-api-gateway-openapi"
AVAILABILITY_ERROR_BUDGET = 0.005  # 99.5% of the health probes succeed
AVAILABILITY_BURN = 'slo:burn_rate:{window}{{slo="api-gateway-availability"}}'

BACKUP_JOB_ID = "vm-nightly"
SECOND_BACKUP_JOB_ID = "ct-nightly"
DATASTORE = "homelab"


def pbs_labels(job_id: str = BACKUP_JOB_ID) -> tuple[tuple[str, str], ...]:
    return (("datastore", DATASTORE), ("job_id", job_id), ("job_type", "backup"))


PBS_LABELS = pbs_labels()
PBS_ATTEMPTS = metrics.PBS_JOB_ATTEMPT
PBS_SUCCESSES = metrics.PBS_JOB_SUCCESS
PBS_LAST_RUN = metrics.PBS_JOB_LAST_RUN
PBS_LAST_SUCCESS = metrics.PBS_JOB_LAST_SUCCESS
PBS_RUNNING = metrics.PBS_JOB_RUNNING
PBS_DATASTORE_SIZE = metrics.PBS_DATASTORE_SIZE
PBS_DATASTORE_USED = metrics.PBS_DATASTORE_USED
FS_AVAIL = "node_filesystem_avail_bytes"
FS_SIZE = "node_filesystem_size_bytes"
SPAN_SELECTOR = (("service_name", "api-gateway"), ("span_kind", "SPAN_KIND_SERVER"))
LATENCY_BUCKET = "traces_span_metrics_duration_milliseconds_bucket"
LATENCY_COUNT = "traces_span_metrics_duration_milliseconds_count"  # the SLO's total: _count, not le="+Inf"
LATENCY_OBJECTIVE_LE = "500"  # the rule matches le=~"500(\\.0)?"
LATENCY_ERROR_BUDGET = 0.01  # 99% of requests within 500 ms
# How the timeline picture shows each kind of signal: (label, PromQL, thresholds).
BURN_RATE = 'slo:burn_rate:{window}{{slo="api-gateway-latency"}}'
BACKUP_FAILED_NOW = (f'{PBS_LAST_RUN}{{job_type="backup"}} > bool on(job_id, job_type, datastore) '
                     f'{PBS_LAST_SUCCESS}')
DATASTORE_USED_PERCENT = f"100 * {PBS_DATASTORE_USED} / {PBS_DATASTORE_SIZE}"
ROOT_FS_USED_PERCENT = f'100 * (1 - {FS_AVAIL}{{mountpoint="/"}} / {FS_SIZE}{{mountpoint="/"}})'

# --- table types --------------------------------------------------------------------------


@dataclass(frozen=True)
class Expect:
    """One change of an alert's state that a receiver must hear exactly once (or, if `repeating`, at
    least once): the first notification that shows the alert firing (or resolved) there."""

    receiver: str
    alert: str
    severity: str
    status: str  # firing | resolved
    at: float  # real seconds: when the condition becomes true (firing) or false (resolved)
    repeating: bool = False
    job: str | None = None  # the alert's job_id, for alerts of one PBS job
    # The receiver's notification group for this alert is already open (another alert of the group
    # fired before): Alertmanager tells of it at the group's next group_interval, not after group_wait.
    joins: bool = False


@dataclass(frozen=True)
class Window:
    start: float
    end: float

    def contains(self, t: float) -> bool:
        return self.start <= t < self.end


@dataclass(frozen=True)
class ReceiverOutage(Window):
    receiver: str = ""
    status: int = 500


@dataclass(frozen=True)
class ExporterOutage(Window):
    job: str = ""


@dataclass(frozen=True)
class EndpointOutage(Window):
    """The API endpoint behind probe job `job` answers `status` instead of its healthy answer."""

    job: str = ""
    status: int = 503


@dataclass(frozen=True)
class SpanTraffic:
    """The API gateway's spans through the real Collector (tools/drill/spans.py): from each
    `(t, burn)` on, the share of requests slower than the objective spends the error budget at
    `burn` times its sustainable pace."""

    burns: tuple[tuple[float, float], ...]
    # Of scenario time (`factor` times as many per wall second). The history before t = 0 must
    # have the same rate, or its requests would dilute the live ones in every window spanning t = 0.
    requests_per_second: float = 2.0


@dataclass(frozen=True)
class PeerOutage(Window):
    """One peer of a clustered Alertmanager gone: the one at position 0 when it goes (the one that
    notifies). `killed`: SIGKILL, lost without leaving the cluster, else stopped (SIGTERM);
    `fresh_storage`: it comes back with an empty --storage.path, as a pod rescheduled without its
    volume, and must learn the notification log from its peers."""

    killed: bool = False
    fresh_storage: bool = False


@dataclass(frozen=True)
class PlotLine:
    label: str
    query: str
    thresholds: tuple[float, ...] = ()


@dataclass(frozen=True)
class Scenario:
    name: str
    story: str
    duration: float
    factor: float
    series: tuple[Series, ...] = ()
    expected: tuple[Expect, ...] = ()
    receiver_outages: tuple[ReceiverOutage, ...] = ()
    exporter_outages: tuple[ExporterOutage, ...] = ()
    alertmanager_down: tuple[Window, ...] = ()
    alertmanager_peers: int = 1  # > 1: a cluster gossiping on 127.0.0.1 (tools/drill/cluster.py)
    peer_outages: tuple[PeerOutage, ...] = ()
    prometheus_replicas: int = 1  # 2: an HA pair evaluating the same rules (metrics.prometheus.replicas)
    prometheus_lost_at: float | None = None  # replica 0 killed then, for good
    plot: tuple[PlotLine, ...] = ()
    notes: tuple[str, ...] = field(default=())
    # With any, the probe jobs go through the real blackbox exporter to a local API server.
    endpoint_outages: tuple[EndpointOutage, ...] = ()
    # The recovery service runs in the loop (tools/drill/recovery_loop.py); `expected` then comes from it.
    recovery: RecoveryInTheLoop | None = None
    # With it, the span-metrics job is the real Collector fed by a synthetic gateway (history stays synthetic).
    spans: SpanTraffic | None = None

    @property
    def pages(self) -> list[Expect]:
        return [e for e in self.expected if e.receiver == RECEIVER_PAGE and e.status == "firing"]

    @property
    def incidents_expected(self) -> int:
        """PagerDuty incidents: every page opens one, except a page that joins an open incident."""
        return sum(not e.joins for e in self.pages)


@dataclass(frozen=True)
class RestoreDrillPlay:
    """A restore drill of the recovery service in the loop: the guest the stack's tags select (tier-1), and
    how the fake PVE makes its drill fail: `agent` (its guest agent never answers) or `restore` (the task fails)."""

    fails_at_step: str
    planned_failure: float  # scenario seconds: when the drill is expected to have failed, for checks without a drill
    vmid: int = 101
    tags: str = "tier-1"


@dataclass(frozen=True)
class RecoveryInTheLoop:
    """A scenario with the real recovery service acting on the alerts of one PBS backup job, among a
    fake PVE and PBS: its re-runs become runs of the job in the exporter's series as they end."""

    runs: tuple[Run, ...]  # the job's scripted runs: the nightly failure, an operator's later run
    # Each vzdump re-run's exitstatus and duration (real seconds), in the order the service starts them.
    reruns: tuple[tuple[str, float], ...] = ()
    # What receivers must hear, given the re-runs that happened (when each began and ended) and when the
    # service gave up on the failure, or, with a restore drill, when the drill failed (scenario seconds; None: it did not).
    expect: Callable[[tuple[Run, ...], float | None], tuple[Expect, ...]] = lambda reruns, gave_up: ()  # noqa: E731
    service_up: bool = True
    deliveries: int = 1  # each webhook request reaches the service this many times (a redelivery)
    actions: tuple[tuple[str, str], ...] = ()  # (action, result) the service must record, in this order
    fallback: tuple[str, float] | None = None  # the fallback's vzdump to the NAS: exitstatus, real seconds
    room_says: tuple[str, ...] = ()  # what the service must post to the backup room
    log_on_incident: bool = False  # the service adds the task log to the page's incident
    job_id: str = "vm/101"
    pve_job_covers_guest: bool = True  # False: PVE's backup job lost the guest, there is nothing to re-run
    restore_drill: RestoreDrillPlay | None = None  # the service drills a guest's restore; `expect` gets its failure

    def failed_at(self) -> float | None:
        """When the scenario's trouble began: the end of the job's failed run, or the drill's planned failure."""
        if self.restore_drill:
            return self.restore_drill.planned_failure
        return next((r.end for r in self.runs if not r.ok), None)

    def planned_reruns(self) -> tuple[Run, ...]:
        """The re-runs as planned, back to back from the end of the failure; the drill judges by the real ones."""
        if not self.reruns:
            return ()
        start = next(r for r in self.runs if not r.ok).end
        planned = []
        for status, seconds in self.reruns:
            planned.append(Run(start, start + seconds, status == "OK" or status.startswith("WARNINGS")))
            start += seconds
        return tuple(planned)


def planned(scenario: Scenario) -> Scenario:
    """The scenario with the expectations of its planned re-runs, for checks of the table without a drill."""
    if scenario.recovery is None:
        return scenario
    loop = scenario.recovery
    extra = loop.expect(loop.planned_reruns(), loop.failed_at())
    return dataclasses.replace(scenario, expected=(*scenario.expected, *extra))


# --- timeline helpers ---------------------------------------------------------------------

BASELINE_BURN = 0.1  # healthy traffic spends 10% of the error budget's pace
API_REQUESTS_PER_SECOND = 20.0


def burn_onset(start: float, burn: float, threshold: float, window: float, base: float = BASELINE_BURN) -> float:
    """When the burn rate averaged over `window` first exceeds `threshold`, a burn at `burn` starting at `start`."""
    return start + window * (threshold - base) / (burn - base)


def burn_clear(stop: float, burn: float, threshold: float, window: float, base: float = BASELINE_BURN) -> float:
    """When the window's average falls back to `threshold` after a long burn stopped at `stop`."""
    return stop + window * (burn - threshold) / (burn - base)


def latency_series(burns: tuple[tuple[float, float], ...], quiet_from: float | None = None,
                   requests_per_second: float = API_REQUESTS_PER_SECOND) -> tuple[Series, ...]:
    """The API gateway's span-metrics histogram for burn rates ((from t, burn), ...); from
    `quiet_from` on no request arrives at all (the counters stay where they are)."""
    total = requests_per_second
    good = tuple((t, total * (1 - burn * LATENCY_ERROR_BUDGET)) for t, burn in burns)
    requests = ((burns[0][0], total),)
    if quiet_from is not None:
        requests += ((quiet_from, 0.0),)
        good = tuple(g for g in good if g[0] < quiet_from) + ((quiet_from, 0.0),)
    return (
        Series(JOB_SPANS, LATENCY_COUNT, SPAN_SELECTOR, Counter(requests)),
        Series(JOB_SPANS, LATENCY_BUCKET, (*SPAN_SELECTOR, ("le", LATENCY_OBJECTIVE_LE)), Counter(good)),
        Series(JOB_SPANS, LATENCY_BUCKET, (*SPAN_SELECTOR, ("le", "+Inf")), Counter(requests)),
    )


@dataclass(frozen=True)
class Run:
    """One run of a PBS job: running from `start`, finished at `end`, OK or failed."""

    start: float
    end: float
    ok: bool


LAST_NIGHT = (Run(-h(20) - m(5), -h(20), True),)  # last night's run succeeded


def backup_job(runs: tuple[Run, ...], labels: tuple[tuple[str, str], ...] = PBS_LABELS,
               history: tuple[Run, ...] = LAST_NIGHT) -> tuple[Series, ...]:
    """The PBS job exporter's series for one job: the attempt/success counters, the last-run and
    last-success timestamps and pbs_job_running, as services/pbs_exporter/README.md describes them."""
    everything = history + runs
    origin = -h(24 * 30)
    last_run, last_success, running = [(origin, origin)], [(origin, origin)], [(origin, 0.0)]
    for r in everything:
        running += [(r.start, 1.0), (r.end, 0.0)]
        last_run.append((r.end, r.end))
        if r.ok:
            last_success.append((r.end, r.end))
    return (
        Series(JOB_PBS, PBS_ATTEMPTS, labels, Counter(jumps=tuple((r.end, 1.0) for r in everything))),
        Series(JOB_PBS, PBS_SUCCESSES, labels, Counter(jumps=tuple((r.end, 1.0) for r in everything if r.ok))),
        Series(JOB_PBS, PBS_LAST_RUN, labels, Timestamp(tuple(last_run))),
        Series(JOB_PBS, PBS_LAST_SUCCESS, labels, Timestamp(tuple(last_success))),
        Series(JOB_PBS, PBS_RUNNING, labels, Steps(tuple(running))),
    )


def datastore_usage(used_percent: Ramp) -> tuple[Series, ...]:
    """The PBS datastore's size and used bytes (from the PBS job exporter)."""
    size = 2e12
    labels = (("datastore", DATASTORE),)
    used = Ramp(tuple((t, size * p / 100) for t, p in used_percent.points))
    return (Series(JOB_PBS, PBS_DATASTORE_SIZE, labels, Steps(((0.0, size),))),
            Series(JOB_PBS, PBS_DATASTORE_USED, labels, used))


def root_filesystem(used_percent: Ramp) -> tuple[Series, ...]:
    """The PBS host's root filesystem, from node_exporter."""
    size = 32e9
    labels = (("device", "/dev/sda1"), ("fstype", "ext4"), ("mountpoint", "/"))
    avail = Ramp(tuple((t, size * (1 - used / 100)) for t, used in used_percent.points))
    return (Series(JOB_NODE, FS_SIZE, labels, Steps(((0.0, size),))), Series(JOB_NODE, FS_AVAIL, labels, avail))


# Healthy metrics for every job the rules read; each scenario replaces the series it plays with.
# Every other rendered target (SNMP, federation) is served by an exporter with no series: `up`
# is 1, ScrapeJobAbsent stays quiet, and no rule reads anything from it.
BASELINE: tuple[Series, ...] = (
    *backup_job(()),
    *datastore_usage(Ramp(((0.0, 62.0),))),
    *root_filesystem(Ramp(((0.0, 40.0),))),
    *latency_series(((-h(24 * 30), BASELINE_BURN),)),
)

WATCHDOG = Expect(RECEIVER_HEARTBEAT, ALERT_WATCHDOG, "none", "firing", 0.0, repeating=True)


def _with_watchdog(*expected: Expect) -> tuple[Expect, ...]:
    return (WATCHDOG, *expected)


def _backup_room_and_page(alert: str, fires: float, resolves: float | None, job: str | None = None,
                          joins_page: bool = False, joins_room: bool = False) -> tuple[Expect, ...]:
    """A critical backups alert: PagerDuty (continue: true) and the backup room, then both resolved."""
    out = [Expect(RECEIVER_PAGE, alert, "critical", "firing", fires, job=job, joins=joins_page),
           Expect(RECEIVER_BACKUP_ROOM, alert, "critical", "firing", fires, job=job, joins=joins_room)]
    if resolves is not None:
        out += [Expect(RECEIVER_PAGE, alert, "critical", "resolved", resolves, job=job),
                Expect(RECEIVER_BACKUP_ROOM, alert, "critical", "resolved", resolves, job=job)]
    return tuple(out)


def _failed_job(job: str, fails: float, pages: float | None, recovers: float, joins: bool = False) -> tuple[Expect, ...]:
    """One failed backup job as the backup room and PagerDuty hear it: the warning from the failure on,
    the page beside it once the retry did not fix it (it joins the room's group, opened by the
    warning), both resolved in one message when a run succeeds. `joins`: another job's alerts opened
    both groups already."""
    warned = (Expect(RECEIVER_BACKUP_ROOM, ALERT_BACKUP_FAILED, "warning", "firing", fails, job=job, joins=joins),
              Expect(RECEIVER_BACKUP_ROOM, ALERT_BACKUP_FAILED, "warning", "resolved", recovers, job=job))
    if pages is None:
        return warned
    return (*warned, *_backup_room_and_page(ALERT_BACKUP_FAILED, pages, recovers, job=job, joins_page=joins,
                                            joins_room=True))


BACKUP_PLOT = (
    PlotLine("last run failed (0/1)", BACKUP_FAILED_NOW),
    PlotLine("job running (0/1)", PBS_RUNNING),
    PlotLine("failed runs in the last 1h (SLO minBadEvents 2)",
             f"sum(increase({PBS_ATTEMPTS}[1h])) - sum(increase({PBS_SUCCESSES}[1h]))", (2,)),
)
BURN_PLOT = (PlotLine("burn rate 1h", BURN_RATE.format(window="1h"), (14.4,)),
             PlotLine("burn rate 5m", BURN_RATE.format(window="5m"), (14.4,)))

FAST_BURN = 50.0  # half the requests slower than 500 ms
FAST_BURN_START, FAST_BURN_STOP = m(10), m(40)
FAST_BURN_PROFILE = ((-h(24 * 30), BASELINE_BURN), (FAST_BURN_START, FAST_BURN), (FAST_BURN_STOP, BASELINE_BURN))
FAST_BURN_SPANS = SpanTraffic(FAST_BURN_PROFILE)
FAST_BURN_PAGES = (
    Expect(RECEIVER_PAGE, ALERT_LATENCY_BURN, "critical", "firing",
           max(burn_onset(FAST_BURN_START, FAST_BURN, 14.4, h(1)), burn_onset(FAST_BURN_START, FAST_BURN, 14.4, m(5)))),
    Expect(RECEIVER_PAGE, ALERT_LATENCY_BURN, "critical", "resolved", burn_clear(FAST_BURN_STOP, FAST_BURN, 14.4, m(5))),
)
SLOW_BURN = 5.0  # below the page's 6x, above the ticket's 3x and 1x
SLOW_BURN_START = h(1)

GRACE = m(30)  # metrics.backupRetryGrace

RETRY_SUCCEEDS = (Run(m(5), m(10), False), Run(m(20), m(25), True))
# Playbook 1: the nightly job fails, its retry fails too; the operator's manual resume succeeds.
FAILS_TWICE = (Run(m(2), m(5), False), Run(m(8), m(10), False), Run(m(45), m(47), True))
# The retry's failure pages at once (two failed runs within the grace); the page holds until the
# resume succeeds, whatever a window does meanwhile.
RETRY_FAILED = FAILS_TWICE[1].end
# Two jobs the same night: vm-nightly's retry fails (page); ct-nightly fails once and nothing fixes
# it within the grace, so it joins the open incident; its retry fixes it; the resume fixes vm-nightly.
TWO_JOBS_FIRST = (Run(m(2), m(5), False), Run(m(8), m(10), False), Run(m(60), m(62), True))
TWO_JOBS_SECOND = (Run(m(12), m(15), False), Run(m(50), m(53), True))
# Every two hours the job fails, then succeeds, over a day: the first failure pages (nothing shows
# yet that it flaps), the second one makes it flapping, and no failure pages again that day.
FLAPPING_RUNS = tuple(Run(h(1 + 2 * i), h(1 + 2 * i) + m(5), i % 2 == 1) for i in range(12))
# A day without runs, right after last night's success (BackupsStale's 26h are not reached).
JUST_RAN = (Run(-h(1) - m(5), -h(1), True),)


def _fails_twice_expectations() -> tuple[Expect, ...]:
    """What the real rules and routes do with FAILS_TWICE (see docs/drill.md): one warning in the
    backup room at the first failure, one page (and its copy in the room) when the retry fails too,
    one resolution when the resume succeeds. An Alertmanager restart changes none of it: the warning
    and the page never exist together, so there is nothing for a restarted Alertmanager to inhibit."""
    return _failed_job(BACKUP_JOB_ID, FAILS_TWICE[0].end, RETRY_FAILED, FAILS_TWICE[2].end)


# The gateway's health endpoint answers 503 for 15 minutes; the OpenAPI document stays served.
PROBE_FAIL_START, PROBE_FAIL_STOP = m(10), m(25)
PROBE_FAILING_BURN = 1 / AVAILABILITY_ERROR_BUDGET  # every probe failing: 200x the sustainable rate


# --- the table ----------------------------------------------------------------------------

SINGLE_NODE_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "backup-retry-succeeds",
        "The nightly PBS job fails and its retry succeeds 15 minutes later: the backup room hears of the failure "
        "(BackupJobFailed warning) and of the recovery; nobody is paged.",
        duration=m(40), factor=120,
        series=backup_job(RETRY_SUCCEEDS),
        expected=_with_watchdog(*_failed_job(BACKUP_JOB_ID, RETRY_SUCCEEDS[0].end, None, RETRY_SUCCEEDS[1].end)),
        plot=BACKUP_PLOT,
    ),
    Scenario(
        "backup-fails-twice",
        "The nightly PBS job fails and its retry fails too (playbook 1): the backup room hears of the failure, "
        "BackupJobFailed pages when the retry fails (and tells the room, continue: true), and resolves when "
        "the operator's resume succeeds: one incident, one page.",
        duration=m(58), factor=120,
        series=backup_job(FAILS_TWICE),
        expected=_with_watchdog(*_fails_twice_expectations()),
        plot=BACKUP_PLOT,
    ),
    Scenario(
        "two-jobs-fail",
        f"Two jobs fail the same night: {BACKUP_JOB_ID}'s retry fails too (page), {SECOND_BACKUP_JOB_ID} fails "
        "once and no run fixes it within the 30m grace, so it joins the open incident (named in it); its retry "
        f"fixes it, and the incident resolves when {BACKUP_JOB_ID}'s resume succeeds.",
        duration=m(75), factor=120,
        series=(*backup_job(TWO_JOBS_FIRST), *backup_job(TWO_JOBS_SECOND, pbs_labels(SECOND_BACKUP_JOB_ID))),
        expected=_with_watchdog(
            *_failed_job(BACKUP_JOB_ID, TWO_JOBS_FIRST[0].end, TWO_JOBS_FIRST[1].end, TWO_JOBS_FIRST[2].end),
            *_failed_job(SECOND_BACKUP_JOB_ID, TWO_JOBS_SECOND[0].end, TWO_JOBS_SECOND[0].end + GRACE,
                         TWO_JOBS_SECOND[1].end, joins=True),
        ),
        plot=BACKUP_PLOT,
    ),
    Scenario(
        "backup-flapping",
        "Every two hours the nightly job fails, then succeeds, over a day: the first failure pages (it lasts "
        "beyond the 30m grace) and resolves on the next success; from the second failure on the job is "
        "flapping: BackupJobFlapping tells the backup room once, and no failure pages again that day.",
        duration=h(24), factor=480,
        series=backup_job(FLAPPING_RUNS),
        expected=_with_watchdog(
            *_failed_job(BACKUP_JOB_ID, FLAPPING_RUNS[0].end, FLAPPING_RUNS[0].end + GRACE, FLAPPING_RUNS[1].end),
            Expect(RECEIVER_BACKUP_ROOM, ALERT_BACKUP_FLAPPING, "warning", "firing", FLAPPING_RUNS[2].end,
                   job=BACKUP_JOB_ID),
        ),
        plot=BACKUP_PLOT,
    ),
    Scenario(
        "no-jobs-scheduled",
        "A day without a single backup run or API request, right after last night's success: nothing pages, "
        "nothing reaches a room, and no recording rule records NaN.",
        duration=h(24), factor=480,
        series=(*backup_job((), history=JUST_RAN),
                *latency_series(((-h(24 * 30), BASELINE_BURN),), quiet_from=0.0)),
        expected=_with_watchdog(),
        plot=(*BACKUP_PLOT[2:], PlotLine("burn rate 1h", BURN_RATE.format(window="1h"), (14.4,))),
    ),
    Scenario(
        "latency-fast-burn",
        f"Half the API requests exceed 500 ms ({FAST_BURN:g}x burn) for 30 minutes: the fast-burn page fires "
        "once the 1h window passes 14.4x and resolves when the 5m window recovers.",
        duration=m(55), factor=120,
        series=latency_series(FAST_BURN_PROFILE),
        expected=_with_watchdog(*FAST_BURN_PAGES),
        plot=BURN_PLOT,
    ),
    Scenario(
        "latency-burn-from-spans",
        "latency-fast-burn from real spans: a synthetic API gateway sends its server spans through the stack's "
        "Collector, half of them slower than 500 ms for 30 minutes; the span metrics it makes are what Prometheus "
        "scrapes, and the page arrives once, on time, and resolves.",
        duration=m(55), factor=60,
        # The history before t = 0, at the generator's rate; the Collector's series after.
        series=latency_series(FAST_BURN_PROFILE[:1], requests_per_second=FAST_BURN_SPANS.requests_per_second),
        spans=FAST_BURN_SPANS,
        expected=_with_watchdog(*FAST_BURN_PAGES),
        plot=BURN_PLOT,
    ),
    Scenario(
        "latency-slow-burn",
        f"A steady {SLOW_BURN:g}x burn for hours: a ticket (the warning rule, to the ops room) once the 3d window "
        "passes 1x, and never a page.",
        duration=h(17), factor=480,
        series=latency_series(((-h(24 * 30), BASELINE_BURN), (SLOW_BURN_START, SLOW_BURN))),
        expected=_with_watchdog(
            Expect(RECEIVER_TICKETS, ALERT_LATENCY_BURN, "warning", "firing",
                   min(max(burn_onset(SLOW_BURN_START, SLOW_BURN, 3, h(24)), burn_onset(SLOW_BURN_START, SLOW_BURN, 3, h(2))),
                       max(burn_onset(SLOW_BURN_START, SLOW_BURN, 1, h(72)), burn_onset(SLOW_BURN_START, SLOW_BURN, 1, h(6))))),
        ),
        plot=(PlotLine("burn rate 3d", BURN_RATE.format(window="3d"), (1,)),
              PlotLine("burn rate 1d", BURN_RATE.format(window="1d"), (3,)),
              PlotLine("burn rate 6h", BURN_RATE.format(window="6h"), (1, 6))),
        notes=("Ticket alerts repeat every repeat_interval (4h, scaled) while the burn lasts; repeats are allowed.",),
    ),
    Scenario(
        "disk-crossing-85",
        "The PBS host's root filesystem fills from 80% to 90% over 40 minutes, then is cleaned up: "
        "NodeDiskUsageHigh (service=nodes) warns the ops room 15 minutes after crossing 85%, then resolves; no page.",
        duration=m(50), factor=120,
        series=root_filesystem(Ramp(((0.0, 80.0), (m(40), 90.0), (m(40) + 1, 60.0)))),
        expected=_with_watchdog(
            Expect(RECEIVER_TICKETS, ALERT_NODE_DISK, "warning", "firing", m(20)),
            Expect(RECEIVER_TICKETS, ALERT_NODE_DISK, "warning", "resolved", m(40)),
        ),
        plot=(PlotLine("root filesystem used %", ROOT_FS_USED_PERCENT, (85, 95)),),
    ),
    Scenario(
        "pbs-exporter-disappears",
        "The PBS job exporter stops answering for 70 minutes: TargetDown warns the backup room after 5 "
        "minutes; BackupMetricsAbsent pages (and tells the backup room) after 1 hour; all resolve when it is back.",
        duration=m(90), factor=120,
        exporter_outages=(ExporterOutage(m(10), m(80), job=JOB_PBS),),
        expected=_with_watchdog(
            Expect(RECEIVER_BACKUP_ROOM, ALERT_TARGET_DOWN, "warning", "firing", m(10)),
            Expect(RECEIVER_BACKUP_ROOM, ALERT_TARGET_DOWN, "warning", "resolved", m(80)),
            *_backup_room_and_page(ALERT_BACKUP_METRICS_ABSENT, m(10), m(80))),
        plot=(PlotLine("PBS exporter up", f'up{{job="{JOB_PBS}"}}', (1,)),),
    ),
    Scenario(
        "mattermost-outage",
        "Mattermost answers 500 from minute 15 to 30 while the PBS datastore passes 85%: Alertmanager "
        "retries and the backup room gets PbsDatastoreUsageHigh once, after Mattermost recovers.",
        duration=m(45), factor=120,
        series=datastore_usage(Ramp(((0.0, 82.0), (m(10), 88.0), (m(35), 88.0), (m(35) + 1, 70.0)))),
        receiver_outages=(ReceiverOutage(m(15), m(30), receiver=RECEIVER_BACKUP_ROOM, status=500),),
        expected=_with_watchdog(
            Expect(RECEIVER_BACKUP_ROOM, ALERT_DATASTORE, "warning", "firing", m(5)),
            Expect(RECEIVER_BACKUP_ROOM, ALERT_DATASTORE, "warning", "resolved", m(35)),
        ),
        plot=(PlotLine("PBS datastore used %", DATASTORE_USED_PERCENT, (85, 95)),),
    ),
    Scenario(
        "alertmanager-restart",
        "The backup job fails twice (pages), then Alertmanager restarts with its storage (minute 26 to 34) while "
        "the API latency burns: the backup pages are not sent again and the latency page, due while "
        "Alertmanager is down, arrives once after it is back.",
        duration=m(58), factor=120,
        series=(*backup_job(FAILS_TWICE),
                *latency_series(((-h(24 * 30), BASELINE_BURN), (m(12), FAST_BURN), (m(42), BASELINE_BURN)))),
        alertmanager_down=(Window(m(26), m(34)),),
        expected=_with_watchdog(
            *_fails_twice_expectations(),
            Expect(RECEIVER_PAGE, ALERT_LATENCY_BURN, "critical", "firing",
                   max(burn_onset(m(12), FAST_BURN, 14.4, h(1)), burn_onset(m(12), FAST_BURN, 14.4, m(5)))),
            Expect(RECEIVER_PAGE, ALERT_LATENCY_BURN, "critical", "resolved", burn_clear(m(42), FAST_BURN, 14.4, m(5))),
        ),
        plot=(*BACKUP_PLOT[:1], *BURN_PLOT),
    ),
    Scenario(
        "api-probe-failing",
        "The API gateway's health endpoint answers 503 for 15 minutes, probed by the real blackbox exporter "
        "with the rendered modules: SyntheticProbeFailing pages after 5 minutes, the availability SLO's fast "
        "burn joins the same incident; the probe alert resolves with the endpoint, the burn once its 30m window "
        "is clean. The OpenAPI probe keeps succeeding and nothing tickets.",
        duration=m(65), factor=120,
        endpoint_outages=(EndpointOutage(PROBE_FAIL_START, PROBE_FAIL_STOP, job=JOB_PROBE_HEALTH, status=503),),
        expected=_with_watchdog(
            Expect(RECEIVER_PAGE, ALERT_PROBE_FAILING, "critical", "firing", PROBE_FAIL_START),
            Expect(RECEIVER_PAGE, ALERT_PROBE_FAILING, "critical", "resolved", PROBE_FAIL_STOP),
            Expect(RECEIVER_PAGE, ALERT_AVAILABILITY_BURN, "critical", "firing",
                   max(burn_onset(PROBE_FAIL_START, PROBE_FAILING_BURN, 14.4, h(1), base=0),
                       burn_onset(PROBE_FAIL_START, PROBE_FAILING_BURN, 14.4, m(5), base=0)), joins=True),
            # 1h & 5m clear within minutes; 6h & 30m hold the page until the 30m window is clean.
            Expect(RECEIVER_PAGE, ALERT_AVAILABILITY_BURN, "critical", "resolved",
                   burn_clear(PROBE_FAIL_STOP, PROBE_FAILING_BURN, 6, m(30), base=0)),
        ),
        plot=(PlotLine("health probe succeeded (0/1)", f'probe_success{{job="{JOB_PROBE_HEALTH}"}}'),
              PlotLine("availability burn rate 1h", AVAILABILITY_BURN.format(window="1h"), (14.4,)),
              PlotLine("availability burn rate 30m", AVAILABILITY_BURN.format(window="30m"), (6,))),
        notes=("The probe jobs scrape a real prometheus-blackbox-exporter (the rendered modules, timeouts scaled) "
               "that requests a local HTTP server; only their history (probe_success 1) is backfilled.",),
    ),
)

# --- the recovery service in the loop --------------------------------------------------------

ALERT_RECOVERY_DOWN = alerts.RECOVERY_SERVICE_DOWN.name  # warning to the backup room: up{job="recovery"} == 0 for 5m
RECOVERY_JOB_ID = "vm/101"  # the backup group of guest 101, which the fake PVE's backup job covers
NIGHTLY_FAILS = Run(m(2), m(5), False)
OPERATOR_RUN = Run(m(48), m(50), True)  # the operator's run after the page, once the cause is fixed
RERUN_SECONDS = m(5)


def _fixed_by_rerun(reruns: tuple[Run, ...], gave_up: float | None) -> tuple[Expect, ...]:
    return _with_watchdog(*_failed_job(RECOVERY_JOB_ID, NIGHTLY_FAILS.end, None, reruns[0].end))


def _rerun_failed(reruns: tuple[Run, ...], gave_up: float | None) -> tuple[Expect, ...]:
    # The re-run's failure is the retry that failed too, and the service gives up: the page at once.
    return _with_watchdog(*_failed_job(RECOVERY_JOB_ID, NIGHTLY_FAILS.end, reruns[0].end, OPERATOR_RUN.end))


def _gives_up_at_once(reruns: tuple[Run, ...], gave_up: float | None) -> tuple[Expect, ...]:
    # No second run ends: only the service's giving up opens the page, not the grace.
    return _with_watchdog(*_failed_job(RECOVERY_JOB_ID, NIGHTLY_FAILS.end, gave_up, OPERATOR_RUN.end))


def _nobody_reruns(reruns: tuple[Run, ...], gave_up: float | None) -> tuple[Expect, ...]:
    return _with_watchdog(
        *_failed_job(RECOVERY_JOB_ID, NIGHTLY_FAILS.end, NIGHTLY_FAILS.end + GRACE, OPERATOR_RUN.end),
        Expect(RECEIVER_BACKUP_ROOM, ALERT_RECOVERY_DOWN, "warning", "firing", 0.0))


# The page rule's own reading of the service's give-up: one on the job's current failure.
RECOVERY_PLOT = (BACKUP_PLOT[0], BACKUP_PLOT[1],
                 PlotLine("recovery service gave up on this failure (0/1)",
                          "count(" + recovery_alerts.gave_up('{job_type="backup"}') + ") or vector(0)"))

ALERT_RESTORE_DRILL_FAILED = alerts.RESTORE_DRILL_FAILED.name  # warning to the backup room: the newest drill of a guest failed
# The drill starts at once (the guest was never drilled); its agent wait (agentTimeout 10m) ends it.
DRILL_FAILS = m(11)


def _drill_failed(reruns: tuple[Run, ...], failed_at: float | None) -> tuple[Expect, ...]:
    return _with_watchdog(Expect(RECEIVER_BACKUP_ROOM, ALERT_RESTORE_DRILL_FAILED, "warning", "firing",
                                 DRILL_FAILS if failed_at is None else failed_at))


RERUN_WORKS = RecoveryInTheLoop(runs=(NIGHTLY_FAILS,), reruns=(("OK", RERUN_SECONDS),), expect=_fixed_by_rerun,
                                actions=((recovery_catalog.PVE_BACKUP_RERUN, "ok"),), room_says=("failed → re-run → OK",))

RECOVERY_SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "backup-retried-by-automation",
        "The nightly backup of guest 101 fails; the recovery service hears the warning, re-runs the PVE backup job "
        "(\"Run now\") and the re-run succeeds: the backup room hears \"failed → re-run → OK\", nobody is paged.",
        duration=m(30), factor=120,
        series=backup_job((NIGHTLY_FAILS,), pbs_labels(RECOVERY_JOB_ID)),
        recovery=RERUN_WORKS,
        plot=RECOVERY_PLOT,
    ),
    Scenario(
        "backup-automation-exhausted",
        "The nightly backup fails and the service's re-run fails too: it gives up, BackupJobFailed pages at once "
        "(one incident), the service backs the guest up to the NAS (ansible-playbook, for real, against the fake PVE) "
        "and adds the task log, what it tried and the restore point to the incident; the operator's run fixes the job.",
        duration=m(60), factor=120,
        series=backup_job((NIGHTLY_FAILS, OPERATOR_RUN), pbs_labels(RECOVERY_JOB_ID)),
        recovery=RecoveryInTheLoop(runs=(NIGHTLY_FAILS, OPERATOR_RUN), reruns=(("job errors", RERUN_SECONDS),),
                                   expect=_rerun_failed, fallback=("OK", m(2)),
                                   actions=((recovery_catalog.PVE_BACKUP_RERUN, "failed"), (recovery_catalog.BACKUP_FALLBACK, "ok")),
                                   room_says=("failed → re-run → failed again", "gives up", "fallback backup to the NAS done"),
                                   log_on_incident=True),
        plot=RECOVERY_PLOT,
    ),
    Scenario(
        "backup-nothing-to-rerun",
        "The nightly backup of guest 101 fails, and PVE's backup job no longer covers the guest: the service has "
        "nothing to re-run and gives up at once, so BackupJobFailed pages now instead of after the 30m grace; the "
        "guest still gets a restore point on the NAS (the fallback), noted on the incident.",
        duration=m(60), factor=120,
        series=backup_job((NIGHTLY_FAILS, OPERATOR_RUN), pbs_labels(RECOVERY_JOB_ID)),
        recovery=RecoveryInTheLoop(runs=(NIGHTLY_FAILS, OPERATOR_RUN), expect=_gives_up_at_once, fallback=("OK", m(2)),
                                   pve_job_covers_guest=False, actions=((recovery_catalog.PVE_BACKUP_RERUN, "failed"), (recovery_catalog.BACKUP_FALLBACK, "ok")),
                                   room_says=("no PVE backup job writes guest 101", "gives up", "fallback backup to the NAS done"),
                                   log_on_incident=True),
        plot=RECOVERY_PLOT,
    ),
    Scenario(
        "recovery-service-down",
        "The recovery service is down all night when the nightly backup fails: nothing re-runs it, "
        "RecoveryServiceDown warns the backup room, and BackupJobFailed pages on time, after the 30m grace.",
        duration=m(55), factor=120,
        series=backup_job((NIGHTLY_FAILS, OPERATOR_RUN), pbs_labels(RECOVERY_JOB_ID)),
        recovery=RecoveryInTheLoop(runs=(NIGHTLY_FAILS, OPERATOR_RUN), expect=_nobody_reruns, service_up=False),
        plot=RECOVERY_PLOT,
    ),
    Scenario(
        "restore-drill-fails",
        "The first restore drill of guest 101 (tier-1) restores its newest PBS snapshot into a scratch VMID, isolated, and "
        "starts it; its guest agent never answers. The service tears the scratch guest down and posts the failed step with "
        "the task log to the backup room; RestoreDrillFailed tells the backup room once; nobody is paged; no scratch guest "
        "is left and nothing outside the scratch range was touched.",
        duration=m(30), factor=120,
        series=backup_job((), pbs_labels(RECOVERY_JOB_ID)),
        recovery=RecoveryInTheLoop(runs=(), expect=_drill_failed, restore_drill=RestoreDrillPlay("agent", DRILL_FAILS),
                                   actions=((recovery_catalog.RESTORE_DRILL_RUN, "failed"),),
                                   room_says=("Restore drill of vm/101 failed", "`agent`", "qmstart")),
    ),
    Scenario(
        "webhook-redelivered",
        "The nightly backup fails and every webhook reaches the service three times (Alertmanager delivers at "
        "least once): one re-run, which succeeds; nobody is paged.",
        duration=m(30), factor=120,
        series=backup_job((NIGHTLY_FAILS,), pbs_labels(RECOVERY_JOB_ID)),
        recovery=dataclasses.replace(RERUN_WORKS, deliveries=3),
        plot=RECOVERY_PLOT,
    ),
)

# A clustered Alertmanager (metrics.alertmanager.replicas): three peers, Prometheus sending to every
# one. The incident of alertmanager-restart (two backup pages, a latency page due while a peer is
# gone); the cluster is never down, so no notification waits for a restart.
CLUSTER_PEERS = 3
_RESTART = next(s for s in SINGLE_NODE_SCENARIOS if s.name == "alertmanager-restart")
BEYOND_ONE_NODE_SCENARIOS: tuple[Scenario, ...] = (
    replace(_RESTART, name="alertmanager-peer-lost", story=(
        f"{CLUSTER_PEERS} Alertmanager peers; the backup job fails twice (pages), then the peer that notifies is "
        "killed (minute 20 to 36, it comes back with its storage) while the API latency burns: every page arrives "
        "exactly once, the latency page on time from the next peer, and the backup room is told once."),
        alertmanager_down=(), alertmanager_peers=CLUSTER_PEERS, peer_outages=(PeerOutage(m(20), m(36), killed=True),)),
    replace(_RESTART, name="alertmanager-restart-clustered", story=(
        f"alertmanager-restart with {CLUSTER_PEERS} peers: the peer that notifies restarts (minute 26 to 34) with an "
        "empty storage and learns the notification log from the others: nothing is told again (no leaked "
        "warning, no second page), and the latency page, due while it is down, arrives on time from its peers."),
        alertmanager_down=(), alertmanager_peers=CLUSTER_PEERS,
        peer_outages=(PeerOutage(m(26), m(34), fresh_storage=True),)),
    replace(_RESTART, name="prometheus-pair", story=(
        "Two Prometheus replicas evaluate the same rules and send to the same Alertmanager; the backup job fails "
        "twice (one page, though both replicas fire it), then replica 0 is killed at minute 20, for good, while the "
        "API latency burns: the latency page arrives on time from the other replica, once."),
        alertmanager_down=(), prometheus_replicas=2, prometheus_lost_at=m(20)),
)

SCENARIOS: tuple[Scenario, ...] = (*SINGLE_NODE_SCENARIOS, *RECOVERY_SCENARIOS, *BEYOND_ONE_NODE_SCENARIOS)

# The short drill `make test` runs end to end: a page with its chat copy, a receiver outage
# and an Alertmanager restart.
SHORT_DRILL = ("backup-fails-twice", "mattermost-outage", "alertmanager-restart")


def by_name(names: list[str] | tuple[str, ...] | None = None) -> list[Scenario]:
    if not names:
        return list(SCENARIOS)
    known = {s.name: s for s in SCENARIOS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise KeyError(f"unknown scenario(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]
