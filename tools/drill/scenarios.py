"""The drill's scenario table: what fails when, and who must hear about it.

Everything that names the stack's alerts, receivers, scrape jobs and metrics is in the first
block below, so that re-pointing the drill at renamed rules is a change of this block only.
Times are real (uncompressed) seconds from the scenario's start; `m(10)` is ten minutes.
Each expectation's `at` is when the alert's condition becomes true (firing) or false
(resolved) in the synthetic data, worked out from the timeline with the helpers below; the
time-to-notify bound is added to it by the drill (scrape + evaluation + for + group_wait).
"""

from __future__ import annotations

from dataclasses import dataclass, field

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

ALERT_BACKUP_FAILED = "BackupJobFailed"  # critical: last run > last success, not running, for 30m
ALERT_BACKUP_BUDGET = "BackupSuccessBudgetBurn"  # SLO backup-success: critical 1h&5m/6h&30m, warning 1d&2h/3d&6h; >= 2 bad runs
ALERT_BACKUP_METRICS_ABSENT = "BackupMetricsAbsent"  # critical: no backup job series for 1h
ALERT_TARGET_DOWN = "TargetDown"  # warning: up == 0 for 5m, service from the target
ALERT_LATENCY_BURN = "ApiGatewayLatencyBudgetBurn"  # critical 1h&5m > 14.4 or 6h&30m > 6; warning 1d&2h > 3 or 3d&6h > 1
ALERT_NODE_DISK = "NodeDiskUsageHigh"  # service=nodes: warning > 85%, critical > 95%, for 15m
ALERT_DATASTORE = "PbsDatastoreUsageHigh"  # service=backups: warning > 85%, critical > 95%, for 15m
ALERT_WATCHDOG = "Watchdog"

JOB_PBS = "pbs-exporter"  # the PBS job exporter (exporters/pbs_job_exporter.py)
JOB_NODE = "pbs-node"  # node_exporter on the PBS host
JOB_SPANS = "otel-collector-spanmetrics"
# Scraped in production through a ServiceMonitor (otel-collector chart, port spanmetrics), so not in
# scrape-configs.yaml: the drill adds it as a static job.
SERVICE_MONITOR_JOBS = {JOB_SPANS: "otel-collector.traces.svc:8889"}

BACKUP_JOB_ID = "vm-nightly"
DATASTORE = "homelab"
PBS_LABELS = (("datastore", DATASTORE), ("job_id", BACKUP_JOB_ID), ("job_type", "backup"))
PBS_ATTEMPTS = "pbs_job_attempt_total"
PBS_SUCCESSES = "pbs_job_success_total"
PBS_LAST_RUN = "pbs_job_last_run_timestamp_seconds"
PBS_LAST_SUCCESS = "pbs_job_last_success_timestamp_seconds"
PBS_RUNNING = "pbs_job_running"
PBS_DATASTORE_SIZE = "pbs_datastore_size_bytes"
PBS_DATASTORE_USED = "pbs_datastore_used_bytes"
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
    """One notification that must arrive exactly once (or, if `repeating`, at least once)."""

    receiver: str
    alert: str
    severity: str
    status: str  # firing | resolved
    at: float  # real seconds: when the condition becomes true (firing) or false (resolved)
    repeating: bool = False


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
    plot: tuple[PlotLine, ...] = ()
    notes: tuple[str, ...] = field(default=())

    @property
    def pages(self) -> list[Expect]:
        return [e for e in self.expected if e.receiver == RECEIVER_PAGE and e.status == "firing"]


# --- timeline helpers ---------------------------------------------------------------------

BASELINE_BURN = 0.1  # healthy traffic spends 10% of the error budget's pace
API_REQUESTS_PER_SECOND = 20.0


def burn_onset(start: float, burn: float, threshold: float, window: float, base: float = BASELINE_BURN) -> float:
    """When the burn rate averaged over `window` first exceeds `threshold`, a burn at `burn` starting at `start`."""
    return start + window * (threshold - base) / (burn - base)


def burn_clear(stop: float, burn: float, threshold: float, window: float, base: float = BASELINE_BURN) -> float:
    """When the window's average falls back to `threshold` after a long burn stopped at `stop`."""
    return stop + window * (burn - threshold) / (burn - base)


def latency_series(burns: tuple[tuple[float, float], ...]) -> tuple[Series, ...]:
    """The API gateway's span-metrics histogram for burn rates ((from t, burn), ...)."""
    total = API_REQUESTS_PER_SECOND
    good = tuple((t, total * (1 - burn * LATENCY_ERROR_BUDGET)) for t, burn in burns)
    return (
        Series(JOB_SPANS, LATENCY_COUNT, SPAN_SELECTOR, Counter(((burns[0][0], total),))),
        Series(JOB_SPANS, LATENCY_BUCKET, (*SPAN_SELECTOR, ("le", LATENCY_OBJECTIVE_LE)), Counter(good)),
        Series(JOB_SPANS, LATENCY_BUCKET, (*SPAN_SELECTOR, ("le", "+Inf")), Counter(((burns[0][0], total),))),
    )


@dataclass(frozen=True)
class Run:
    """One run of a PBS job: running from `start`, finished at `end`, OK or failed."""

    start: float
    end: float
    ok: bool


def backup_job(runs: tuple[Run, ...], labels: tuple[tuple[str, str], ...] = PBS_LABELS) -> tuple[Series, ...]:
    """The PBS job exporter's series for one job: the attempt/success counters, the last-run and
    last-success timestamps and pbs_job_running, as exporters/README.md describes them."""
    history = (Run(-h(20) - m(5), -h(20), True),)  # last night's run succeeded
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


def _backup_room_and_page(alert: str, fires: float, resolves: float | None) -> tuple[Expect, ...]:
    """A critical backups alert: PagerDuty (continue: true) and the backup room, then both resolved."""
    out = [Expect(RECEIVER_PAGE, alert, "critical", "firing", fires),
           Expect(RECEIVER_BACKUP_ROOM, alert, "critical", "firing", fires)]
    if resolves is not None:
        out += [Expect(RECEIVER_PAGE, alert, "critical", "resolved", resolves),
                Expect(RECEIVER_BACKUP_ROOM, alert, "critical", "resolved", resolves)]
    return tuple(out)


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
SLOW_BURN = 5.0  # below the page's 6x, above the ticket's 3x and 1x
SLOW_BURN_START = h(1)

# Playbook 1: the nightly job fails, its retry fails too; the operator's manual resume succeeds.
FAILS_TWICE = (Run(m(2), m(5), False), Run(m(8), m(10), False), Run(m(45), m(47), True))
SECOND_FAILURE = FAILS_TWICE[1].end
# BackupJobFailed's `for: 30m` counts from the last failure (a running retry resets it), and the
# SLO's 30m window lets go of that failure at the same moment: the SLO page resolves as the
# BackupJobFailed page fires. The resume resolves BackupJobFailed when it starts (`unless running`).
BUDGET_30M_CLEAR = SECOND_FAILURE + m(30)


def _fails_twice_expectations(restart: bool = False) -> tuple[Expect, ...]:
    """What the real rules and routes do with FAILS_TWICE (see docs/drill.md).

    With an Alertmanager restart while the SLO's critical fires, the inhibited warning may reach the
    backup room at the restart: a restarted Alertmanager holds no alerts, and whether the warning or
    its inhibiting critical comes back first from Prometheus's resend is a race. When the warning
    wins, the room's group (alertname, service) is then sent the critical again once it is back:
    the room may hear of the SLO burn again after a restart; PagerDuty, whose group holds only
    the critical, must not (its expectation is not repeating)."""
    return (
        # Two bad runs in 1h (minBadEvents 2) at 200x burn: the SLO's fast branch pages 2m later ...
        Expect(RECEIVER_PAGE, ALERT_BACKUP_BUDGET, "critical", "firing", SECOND_FAILURE),
        Expect(RECEIVER_BACKUP_ROOM, ALERT_BACKUP_BUDGET, "critical", "firing", SECOND_FAILURE, repeating=restart),
        # ... and resolves when the 30m window empties. Its warning (1d&2h, 3d&6h: fires 15m after the
        # failure) is inhibited by the critical until then; the backup room's group (alertname,
        # service) then shows the firing warning beside the resolved critical, and keeps it for 6h.
        Expect(RECEIVER_PAGE, ALERT_BACKUP_BUDGET, "critical", "resolved", BUDGET_30M_CLEAR),
        Expect(RECEIVER_BACKUP_ROOM, ALERT_BACKUP_BUDGET, "warning", "firing", BUDGET_30M_CLEAR, repeating=restart),
        *_backup_room_and_page(ALERT_BACKUP_FAILED, SECOND_FAILURE, FAILS_TWICE[2].start),
    )


# --- the table ----------------------------------------------------------------------------

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "backup-retry-succeeds",
        "The nightly PBS job fails and its retry succeeds 15 minutes later: BackupJobFailed stays pending "
        "(for: 30m) and is dropped, one bad run is below the SLO's minBadEvents 2: nobody hears of it.",
        duration=m(40), factor=120,
        series=backup_job((Run(m(5), m(10), False), Run(m(20), m(25), True))),
        expected=_with_watchdog(),
        plot=BACKUP_PLOT,
    ),
    Scenario(
        "backup-fails-twice",
        "The nightly PBS job fails and its retry fails too (playbook 1): the backup SLO pages at once, "
        "BackupJobFailed pages 30 minutes after the retry, both also in the backup room (continue: true); "
        "the operator's resume resolves them.",
        duration=m(58), factor=120,
        series=backup_job(FAILS_TWICE),
        expected=_with_watchdog(*_fails_twice_expectations()),
        plot=BACKUP_PLOT,
    ),
    Scenario(
        "latency-fast-burn",
        f"Half the API requests exceed 500 ms ({FAST_BURN:g}x burn) for 30 minutes: the fast-burn page fires "
        "once the 1h window passes 14.4x and resolves when the 5m window recovers.",
        duration=m(55), factor=120,
        series=latency_series(((-h(24 * 30), BASELINE_BURN), (FAST_BURN_START, FAST_BURN), (FAST_BURN_STOP, BASELINE_BURN))),
        expected=_with_watchdog(
            Expect(RECEIVER_PAGE, ALERT_LATENCY_BURN, "critical", "firing",
                   max(burn_onset(FAST_BURN_START, FAST_BURN, 14.4, h(1)), burn_onset(FAST_BURN_START, FAST_BURN, 14.4, m(5)))),
            Expect(RECEIVER_PAGE, ALERT_LATENCY_BURN, "critical", "resolved", burn_clear(FAST_BURN_STOP, FAST_BURN, 14.4, m(5))),
        ),
        plot=BURN_PLOT,
    ),
    Scenario(
        "latency-slow-burn",
        f"A steady {SLOW_BURN:g}x burn for hours: a ticket (the warning rule, to the ops room) once the 3d window "
        "passes 1x, and never a page.",
        duration=h(17), factor=720,
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
            *_fails_twice_expectations(restart=True),
            Expect(RECEIVER_PAGE, ALERT_LATENCY_BURN, "critical", "firing",
                   max(burn_onset(m(12), FAST_BURN, 14.4, h(1)), burn_onset(m(12), FAST_BURN, 14.4, m(5)))),
            Expect(RECEIVER_PAGE, ALERT_LATENCY_BURN, "critical", "resolved", burn_clear(m(42), FAST_BURN, 14.4, m(5))),
        ),
        plot=(*BACKUP_PLOT[:1], *BURN_PLOT),
    ),
)

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
