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

from tools.drill.timeline import Counter, Ramp, Series, Steps


def m(minutes: float) -> float:
    return minutes * 60.0


def h(hours: float) -> float:
    return hours * 3600.0


# --- names in the rendered configuration (adapt here when the rules change) ----------------

RECEIVER_PAGE = "pagerduty-primary"
RECEIVER_BACKUP_ROOM = "mattermost-backup-room"
RECEIVER_TICKETS = "mattermost-ops"  # the root route's receiver: warnings without a service room
RECEIVER_HEARTBEAT = "heartbeat"

ALERT_BACKUP_FAILED_ONCE = "BackupJobFailedOnce"  # warning, service=backups
ALERT_BACKUP_FAILED = "BackupJobFailed"  # critical, service=backups: playbook 1
ALERT_PBS_EXPORTER_DOWN = "PBSExporterDown"  # critical, service=backups
ALERT_BURN_FAST = "LatencyBudgetBurnFast"  # critical: 1h/5m > 14.4x or 6h/30m > 6x
ALERT_BURN_SLOW = "LatencyBudgetBurnSlow"  # warning (ticket): 1d/2h > 3x or 3d/6h > 1x
ALERT_DISK = "DiskUsageHigh"  # warning: > 85% for 10m
ALERT_WATCHDOG = "Watchdog"

JOB_PBS = "pbs"
JOB_NODE = "node"
JOB_API = "api-gateway"

PBS_CONSECUTIVE_FAILURES = "pbs_job_consecutive_failures"
PBS_ATTEMPTS = "pbs_job_attempt_total"
PBS_SUCCESSES = "pbs_job_success_total"
FS_AVAIL = "node_filesystem_avail_bytes"
FS_SIZE = "node_filesystem_size_bytes"
LATENCY_BUCKET = "http_request_duration_seconds_bucket"
LATENCY_COUNT = "http_request_duration_seconds_count"
LATENCY_OBJECTIVE_LE = "0.3"
LATENCY_ERROR_BUDGET = 0.01  # 99% of requests within 300 ms
# How the timeline picture shows each kind of signal: (label, PromQL, thresholds).
BURN_RATE_1H = f"slo:api_latency:error_ratio_rate1h / {LATENCY_ERROR_BUDGET}"
BURN_RATE_5M = f"slo:api_latency:error_ratio_rate5m / {LATENCY_ERROR_BUDGET}"
BURN_RATE_1D = f"slo:api_latency:error_ratio_rate1d / {LATENCY_ERROR_BUDGET}"
BURN_RATE_6H = f"slo:api_latency:error_ratio_rate6h / {LATENCY_ERROR_BUDGET}"
DISK_USED_PERCENT = f'100 * (1 - {FS_AVAIL}{{mountpoint="/mnt/datastore"}} / {FS_SIZE}{{mountpoint="/mnt/datastore"}})'

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
    """The API gateway's latency histogram for burn rates ((from t, burn), ...)."""
    total = API_REQUESTS_PER_SECOND
    good = tuple((t, total * (1 - burn * LATENCY_ERROR_BUDGET)) for t, burn in burns)
    return (
        Series(JOB_API, LATENCY_COUNT, (), Counter(((burns[0][0], total),))),
        Series(JOB_API, LATENCY_BUCKET, (("le", LATENCY_OBJECTIVE_LE),), Counter(good)),
        Series(JOB_API, LATENCY_BUCKET, (("le", "+Inf"),), Counter(((burns[0][0], total),))),
    )


def backup_job(job_id: str, runs: tuple[tuple[float, bool], ...]) -> tuple[Series, ...]:
    """A PBS job's counters and consecutive-failure gauge for runs ((t, succeeded), ...)."""
    labels = (("job_id", job_id),)
    failures, streak = [(-h(24 * 30), 0.0)], 0
    for t, ok in runs:
        streak = 0 if ok else streak + 1
        failures.append((t, float(streak)))
    # yesterday's nightly run succeeded
    history = ((-h(20), True),)
    return (
        Series(JOB_PBS, PBS_CONSECUTIVE_FAILURES, labels, Steps(tuple(failures))),
        Series(JOB_PBS, PBS_ATTEMPTS, labels, Counter(jumps=tuple((t, 1.0) for t, _ in history + runs))),
        Series(JOB_PBS, PBS_SUCCESSES, labels, Counter(jumps=tuple((t, 1.0) for t, ok in history + runs if ok))),
    )


def datastore_disk(used_percent: Ramp) -> tuple[Series, ...]:
    size = 4e12
    labels = (("device", "/dev/sdb1"), ("fstype", "ext4"), ("mountpoint", "/mnt/datastore"))
    avail = Ramp(tuple((t, size * (1 - used / 100)) for t, used in used_percent.points))
    return (Series(JOB_NODE, FS_SIZE, labels, Steps(((0.0, size),))), Series(JOB_NODE, FS_AVAIL, labels, avail))


# Healthy metrics for every scrape job; each scenario replaces the series it plays with.
BASELINE: tuple[Series, ...] = (
    *backup_job("vm-100-nightly", ()),
    *datastore_disk(Ramp(((0.0, 62.0),))),
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


def _failed_once(fails: float, clears: float) -> tuple[Expect, ...]:
    return (Expect(RECEIVER_BACKUP_ROOM, ALERT_BACKUP_FAILED_ONCE, "warning", "firing", fails),
            Expect(RECEIVER_BACKUP_ROOM, ALERT_BACKUP_FAILED_ONCE, "warning", "resolved", clears))


BACKUP_PLOT = (PlotLine("consecutive failures", PBS_CONSECUTIVE_FAILURES, (1, 2)),)
BURN_PLOT = (PlotLine("burn rate 1h", BURN_RATE_1H, (14.4,)), PlotLine("burn rate 5m", BURN_RATE_5M, (14.4,)))

FAST_BURN = 50.0  # half the requests slower than 300 ms
FAST_BURN_START, FAST_BURN_STOP = m(10), m(40)
SLOW_BURN = 5.0  # below the page's 6x, above the ticket's 3x
SLOW_BURN_START = h(1)

# --- the table ----------------------------------------------------------------------------

SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "backup-retry-succeeds",
        "The nightly PBS job fails once and its retry succeeds: the backup room hears of it, nobody is paged.",
        duration=m(40), factor=120,
        series=backup_job("vm-100-nightly", ((m(10), False), (m(25), True))),
        expected=_with_watchdog(*_failed_once(m(10), m(25))),
        plot=BACKUP_PLOT,
    ),
    Scenario(
        "backup-fails-twice",
        "The nightly PBS job fails and its retry fails too (playbook 1): PagerDuty pages and the backup "
        "room is told; the operator's manual resume succeeds and both hear it resolved.",
        duration=m(60), factor=120,
        series=backup_job("vm-100-nightly", ((m(10), False), (m(20), False), (m(40), True))),
        expected=_with_watchdog(*_failed_once(m(10), m(20)),
                                *_backup_room_and_page(ALERT_BACKUP_FAILED, m(20), m(40))),
        plot=BACKUP_PLOT,
    ),
    Scenario(
        "latency-fast-burn",
        f"Half the API requests exceed 300 ms ({FAST_BURN:g}x burn) for 30 minutes: the fast-burn page fires "
        "once the 1h window passes 14.4x and resolves when the 5m window recovers.",
        duration=m(55), factor=120,
        series=latency_series(((-h(24 * 30), BASELINE_BURN), (FAST_BURN_START, FAST_BURN), (FAST_BURN_STOP, BASELINE_BURN))),
        expected=_with_watchdog(
            Expect(RECEIVER_PAGE, ALERT_BURN_FAST, "critical", "firing",
                   max(burn_onset(FAST_BURN_START, FAST_BURN, 14.4, h(1)), burn_onset(FAST_BURN_START, FAST_BURN, 14.4, m(5)))),
            Expect(RECEIVER_PAGE, ALERT_BURN_FAST, "critical", "resolved", burn_clear(FAST_BURN_STOP, FAST_BURN, 14.4, m(5))),
        ),
        plot=BURN_PLOT,
    ),
    Scenario(
        "latency-slow-burn",
        f"A steady {SLOW_BURN:g}x burn for hours: a ticket (warning to the ops room) once the 1d and 3d windows "
        "catch up, and never a page.",
        duration=h(17), factor=720,
        series=latency_series(((-h(24 * 30), BASELINE_BURN), (SLOW_BURN_START, SLOW_BURN))),
        expected=_with_watchdog(
            Expect(RECEIVER_TICKETS, ALERT_BURN_SLOW, "warning", "firing",
                   min(max(burn_onset(SLOW_BURN_START, SLOW_BURN, 3, h(24)), burn_onset(SLOW_BURN_START, SLOW_BURN, 3, h(2))),
                       max(burn_onset(SLOW_BURN_START, SLOW_BURN, 1, h(72)), burn_onset(SLOW_BURN_START, SLOW_BURN, 1, h(6))))),
        ),
        plot=(PlotLine("burn rate 1d", BURN_RATE_1D, (3,)), PlotLine("burn rate 6h", BURN_RATE_6H, (1, 6))),
        notes=("Ticket alerts repeat every repeat_interval (4h, scaled) while the burn lasts; repeats are allowed.",),
    ),
    Scenario(
        "disk-crossing-85",
        "The PBS datastore fills from 80% to 90% over 40 minutes, then a prune frees it: a warning after 10 "
        "minutes above 85%, resolved after the prune; no page.",
        duration=m(55), factor=120,
        series=datastore_disk(Ramp(((0.0, 80.0), (m(40), 90.0), (m(40) + 1, 60.0)))),
        expected=_with_watchdog(
            Expect(RECEIVER_TICKETS, ALERT_DISK, "warning", "firing", m(20)),
            Expect(RECEIVER_TICKETS, ALERT_DISK, "warning", "resolved", m(40)),
        ),
        plot=(PlotLine("datastore used %", DISK_USED_PERCENT, (85,)),),
    ),
    Scenario(
        "pbs-exporter-disappears",
        "The PBS job exporter stops answering for 15 minutes: backup failures would go unseen, so it pages "
        "and tells the backup room, and resolves when the exporter is back.",
        duration=m(35), factor=120,
        exporter_outages=(ExporterOutage(m(10), m(25), job=JOB_PBS),),
        expected=_with_watchdog(*_backup_room_and_page(ALERT_PBS_EXPORTER_DOWN, m(10), m(25))),
        plot=(PlotLine("PBS exporter up", f'up{{job="{JOB_PBS}"}}', (1,)),),
    ),
    Scenario(
        "mattermost-outage",
        "Mattermost answers 500 from minute 5 to 20 while a backup job fails once: Alertmanager retries and "
        "the backup room gets the message once, after Mattermost recovers.",
        duration=m(40), factor=120,
        series=backup_job("vm-100-nightly", ((m(10), False), (m(28), True))),
        receiver_outages=(ReceiverOutage(m(5), m(20), receiver=RECEIVER_BACKUP_ROOM, status=500),),
        expected=_with_watchdog(*_failed_once(m(10), m(28))),
        plot=BACKUP_PLOT,
    ),
    Scenario(
        "alertmanager-restart",
        "The backup job fails twice (page), then Alertmanager restarts with its storage (minute 26 to 34) while "
        "the API latency burns: the backup page is not sent again and the latency page, due while "
        "Alertmanager is down, arrives once after it is back.",
        duration=m(60), factor=120,
        series=(*backup_job("vm-100-nightly", ((m(10), False), (m(20), False), (m(50), True))),
                *latency_series(((-h(24 * 30), BASELINE_BURN), (m(12), FAST_BURN), (m(42), BASELINE_BURN)))),
        alertmanager_down=(Window(m(26), m(34)),),
        expected=_with_watchdog(
            *_failed_once(m(10), m(20)),
            *_backup_room_and_page(ALERT_BACKUP_FAILED, m(20), m(50)),
            Expect(RECEIVER_PAGE, ALERT_BURN_FAST, "critical", "firing",
                   max(burn_onset(m(12), FAST_BURN, 14.4, h(1)), burn_onset(m(12), FAST_BURN, 14.4, m(5)))),
            Expect(RECEIVER_PAGE, ALERT_BURN_FAST, "critical", "resolved", burn_clear(m(42), FAST_BURN, 14.4, m(5))),
        ),
        plot=(*BACKUP_PLOT, *BURN_PLOT),
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
