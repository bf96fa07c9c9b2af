"""One drill: every chosen scenario against fresh Prometheus and Alertmanager processes.

Per scenario: scale the rendered rules, re-point scrape targets and receivers, backfill the
history the longest rule window needs, start Alertmanager and Prometheus on free ports with
their data in a temporary directory, play the timeline (exporter outages, receiver outages,
Alertmanager restarts), read back what Prometheus saw for the picture, stop everything, judge.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import json
import multiprocessing
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

from contracts.metrics import SCRAPE_JOB as RECOVERY_SCRAPE_JOB
from tools.drill import durations, recovery_loop
from tools.drill.cluster import ALERTMANAGER, AlertmanagerCluster, replica_doc
from tools.drill.deployed_config import (DeployedConfig, DrillConfigError, TimeScale, drill_alertmanager_config,
                                        drill_prometheus_config, scaled_rule_files, write_yaml)
from tools.drill.probes import RealProbes
from tools.drill.spans import RealSpans
from tools.drill.processes import ManagedProcess, ProcessSupervisor, free_port, wait_ready
from tools.drill.scenarios import BASELINE, SERVICE_MONITOR_JOBS, Scenario
from tools.drill.servers import CaptureServer, ScenarioClock, SyntheticExporter
from tools.drill.timeline import Series, Steps, backfill_openmetrics, merge
from tools.drill.verdict import Notification, ScenarioVerdict, decode, judge

PROMETHEUS = "prometheus"
PROMTOOL = "promtool"
AMTOOL = "amtool"
# Wall seconds from writing the history to the scenario's t = 0: promtool writes the blocks,
# Prometheus and Alertmanager start, Prometheus discovers its Alertmanager and targets (its
# discovery syncs every 5 s, which no flag of 3.14 shortens either) and scrapes every target once. Its
# rules run from the start, on the backfilled history. That history already reaches t = 0, so
# what is scraped or recorded during the lead-in is refused as older than its last block ("out of
# bounds", harmless) and the series run on from t = 0 without a gap: a gap would distort every
# window whose start later crosses it. (Loading the rules only at t = 0, by a reload, would
# restart the Alertmanager discovery: no notification could leave for the first 5 s.)
# 8 s did for Prometheus 2.42; 3.14 starts slower, and on the shared 2-core machine start-up outran 8 s.
LEAD_IN_SECONDS = 14.0
# Wall seconds after t = 0 the drill waits for the pipeline before it gives up (a peer that never joins).
WARM_UP_LIMIT_SECONDS = 30.0
UP_HISTORY = 3600.0  # scenario seconds of backfilled `up` before the lead-in (well beyond the lookback)
# Seconds of set-up and tear-down per scenario, for the progress estimate.
SCENARIO_OVERHEAD_ESTIMATE = 3.0 + LEAD_IN_SECONDS


@dataclass
class PlotSeries:
    label: str
    thresholds: tuple[float, ...]
    points: list[tuple[float, float]]  # (scenario seconds, value)


@dataclass
class ScenarioRun:
    scenario: Scenario
    scale: TimeScale
    verdict: ScenarioVerdict
    notifications: list[Notification]
    plot: list[PlotSeries]
    alert_states: dict[str, list[tuple[float, str]]]  # alertname -> [(scenario seconds, pending|firing)]
    wall_seconds: float
    notes: list[str] = field(default_factory=list)
    nan_recorded: list[str] = field(default_factory=list)  # recording rules that recorded NaN, and when
    recovery: recovery_loop.RecoveryRun | None = None  # the recovery service's actions, when it ran in the loop
    starved: list[str] = field(default_factory=list)  # signs the machine, not the stack, decided the verdict
    attempts: int = 1

    @property
    def passed(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> list[str]:
        machine = [f"starved of CPU ({'; '.join(self.starved)}): the machine's fault, not a verdict on the stack; "
                   "re-run on a quieter machine"] if self.starved else []
        return (machine + self.verdict.failures + [f"NaN recorded: {what}" for what in self.nan_recorded]
                + (self.recovery.failures if self.recovery else []))


class Progress:
    """One status line (rewritten in place on a terminal, every few seconds otherwise)."""

    def __init__(self, scenarios: list[Scenario], out: TextIO = sys.stderr, quiet: bool = False):
        self.remaining_wall = {s.name: s.duration / s.factor + SCENARIO_OVERHEAD_ESTIMATE for s in scenarios}
        self.total = len(scenarios)
        self.out = out
        self.quiet = quiet
        self.tty = out.isatty()
        self.started = time.monotonic()
        self._last = 0.0

    def update(self, index: int, scenario: Scenario, clock: ScenarioClock, state: str = "") -> None:
        if self.quiet:
            return
        now = time.monotonic()
        if not self.tty and now - self._last < 5:
            return
        self._last = now
        wall = scenario.duration / scenario.factor
        elapsed_wall = min(max(clock.wall_elapsed(), 0.0), wall)
        left = wall - elapsed_wall + sum(v for k, v in self.remaining_wall.items() if k != scenario.name)
        # Before t = 0 (history written, Prometheus warming up) the scenario has no time yet.
        line = (f"[{index}/{self.total}] {scenario.name}: {durations.human(max(clock.now(), 0.0))} of "
                f"{durations.human(scenario.duration)} scenario time ({elapsed_wall:.0f}s/{wall:.0f}s)"
                f"{' - ' + state if state else ''} | drill {durations.human(now - self.started)} elapsed, "
                f"~{durations.human(max(left, 0))} left")
        print(("\r\033[K" if self.tty else "") + line, end="" if self.tty else "\n", file=self.out, flush=True)

    def side_by_side(self, finished: int, total: int, jobs: int) -> None:
        """Scenarios running in workers report nothing on the way: one line on what is done."""
        if self.quiet:
            return
        now = time.monotonic()
        if now - self._last < 30:
            return
        self._last = now
        # What is left shared out over the workers, but never less than the longest scenario left.
        left = max(max(self.remaining_wall.values(), default=0.0), sum(self.remaining_wall.values()) / jobs)
        print(f"{finished} of {total} scenarios done | drill {durations.human(now - self.started)} elapsed, "
              f"~{durations.human(left)} left", file=self.out, flush=True)

    def retry(self, scenario: Scenario, run: ScenarioRun) -> None:
        self.remaining_wall[scenario.name] = scenario.duration / scenario.factor + SCENARIO_OVERHEAD_ESTIMATE
        if not self.quiet:
            print(f"{scenario.name}: starved of CPU ({'; '.join(run.starved)}), running it again alone",
                  file=self.out, flush=True)

    def done(self, scenario: Scenario, run: ScenarioRun) -> None:
        self.remaining_wall.pop(scenario.name, None)
        if self.quiet:
            return
        verdict = "PASS" if run.passed else "FAIL: " + "; ".join(run.failures)
        print(("\r\033[K" if self.tty else "") + f"{scenario.name}: {verdict} ({run.wall_seconds:.0f}s)",
              file=self.out, flush=True)


def _check(argv: list[str]) -> None:
    result = subprocess.run(argv, capture_output=True, text=True)
    if result.returncode != 0:
        raise DrillConfigError(f"{' '.join(argv[:3])} rejected the drill's configuration:\n{result.stdout}{result.stderr}")


def _query_range(prometheus_url: str, query: str, start: float, end: float, step: float) -> list[dict]:
    params = urllib.parse.urlencode({"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:.3f}"})
    with urllib.request.urlopen(f"{prometheus_url}/api/v1/query_range?{params}", timeout=10) as response:
        return json.load(response)["data"]["result"]


def _nan_recorded(prometheus_url: str, config: DeployedConfig, start: float, end: float, scale: TimeScale) -> list[str]:
    """Every recording rule's series over the scenario, read back: which recorded NaN, first when."""
    found = []
    names = sorted({name for name, _ in config.all_expressions() if name and ":" in name})
    for name in names:
        for result in _query_range(prometheus_url, name, start, end, scale.evaluation_interval_s):
            nan = next((ts for ts, value in result["values"] if value.lower() == "nan"), None)
            if nan is not None:
                labels = ",".join(f'{k}="{v}"' for k, v in sorted(result["metric"].items()) if k != "__name__")
                found.append(f"{name}{{{labels}}} from {durations.human(scale.real(nan - start))}")
    return found


def _missed_scrapes(prometheus_url: str, scenario: Scenario, start: float, end: float, scale: TimeScale) -> int:
    """Scrapes that failed (up == 0) while the scenario played no outage of that job. A step of the
    range query shows the scrape before it: one scrape interval either side of an outage is part of
    it. The recovery service's job is down by design where the scenario does not start it."""
    slack = scale.real(scale.scrape_interval_s)
    down_by_design = set() if scenario.recovery is None or scenario.recovery.service_up else {RECOVERY_SCRAPE_JOB}
    missed = 0
    for result in _query_range(prometheus_url, "up == 0", start, end, scale.scrape_interval_s):
        job = result["metric"].get("job")
        if job in down_by_design:
            continue
        missed += sum(1 for ts, _ in result["values"]
                      if not any(o.job == job and o.start - slack <= scale.real(float(ts) - start) < o.end + slack
                                 for o in scenario.exporter_outages))
    return missed


def _pipeline_warm(prometheus_url: str, target_count: int, alertmanagers: int = 1) -> bool:
    """Prometheus knows its Alertmanager(s) and has scraped every target at least once."""
    def get(path: str) -> dict:
        with urllib.request.urlopen(prometheus_url + path, timeout=2) as response:
            return json.load(response)["data"]

    if len(get("/api/v1/alertmanagers")["activeAlertmanagers"]) < alertmanagers:
        return False
    targets = get("/api/v1/targets?state=active")["activeTargets"]
    return len(targets) == target_count and all(t["health"] != "unknown" for t in targets)


def _rules_loaded(prometheus_url: str, group_count: int) -> bool:
    with urllib.request.urlopen(prometheus_url + "/api/v1/rules", timeout=2) as response:
        return len(json.load(response)["data"]["groups"]) == group_count


def _resolve_targets(series: list[Series], config: DeployedConfig) -> list[Series]:
    targets = config.targets()
    first = {}
    for job, target in targets:
        first.setdefault(job, target)
    resolved = []
    for s in series:
        if s.job not in first:
            raise DrillConfigError(f"the scenario table plays scrape job {s.job!r} ({s.metric}) but the rendered "
                                   f"scrape configs have only: {', '.join(first)}")
        resolved.append(dataclasses.replace(s, target=s.target or first[s.job]))
    return resolved


def _prometheus_argv(config_file: Path, data: Path, port: int, scale: TimeScale) -> list[str]:
    return [PROMETHEUS, f"--config.file={config_file}", f"--storage.tsdb.path={data}",
            f"--web.listen-address=127.0.0.1:{port}",
            f"--rules.alert.resend-delay={durations.format_seconds(scale.resend_delay_s)}",
            f"--query.lookback-delta={durations.format_seconds(scale.lookback_delta_s)}",
            "--log.level=info"]


@dataclass
class Stage:
    """One scenario set up on disk (the scale phase): scaled rules, the drill's Prometheus and
    Alertmanager configuration, synthetic exporters and capture server, the backfilled history."""

    scenario: Scenario
    config: DeployedConfig
    scale: TimeScale
    work: Path
    series: list[Series]
    clock: ScenarioClock
    exporters: dict[tuple[str, str], SyntheticExporter]
    capture: CaptureServer
    cluster: AlertmanagerCluster
    replicas: list[ManagedProcess]
    replica_urls: list[str]
    probes: RealProbes | None
    loop: recovery_loop.RecoveryLoop | None
    notes: list[str]
    late_start: str = ""
    spans: RealSpans | None = None

    @property
    def servers(self) -> list:
        return [*self.exporters.values(), self.capture]

    @property
    def prom_url(self) -> str:
        """The replica that lives through the scenario: what is read back."""
        return self.replica_urls[-1]


@dataclass
class Collected:
    plot: list[PlotSeries]
    alert_states: dict[str, list[tuple[float, str]]]
    nan_recorded: list[str]
    starved: list[str]


def _write_rules(config: DeployedConfig, scale: TimeScale, work: Path, notes: list[str]) -> list[Path]:
    rule_texts, rule_notes = scaled_rule_files(config, scale)
    notes += rule_notes
    rule_paths = []
    for name, text in rule_texts.items():
        path = work / "rules" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        rule_paths.append(path)
    _check([PROMTOOL, "check", "rules", *map(str, rule_paths)])
    return rule_paths


def _write_history(stage: Stage, prom_doc: dict, prom_data: Path) -> None:
    """History: long enough for the longest window, sampled at the drill's scrape interval, up to t = 0,
    with `up` = 1 for every target: Prometheus evaluates its rules from the start, and during the
    lead-in they read this history as production's rules read the past (no absent(up) while the
    first scrapes are pending). What they write before t = 0 is refused as older than the history."""
    scale, clock, exporters = stage.scale, stage.clock, stage.exporters
    history = stage.config.longest_window() + scale.real(scale.scrape_interval_s) * 2
    target_labels = {(job, target): next(sc["labels"] for sc in job_doc["static_configs"]
                                         if sc["targets"][0] == exporters[(job, target)].address)
                     | {"job": job}
                     for job_doc in prom_doc["scrape_configs"] for (job, target) in exporters if job == job_doc["job_name"]}
    step = scale.real(scale.scrape_interval_s)
    lead_in = scale.real(LEAD_IN_SECONDS)
    metrics = backfill_openmetrics(stage.series, -lead_in - history, 0.0, step, clock.epoch_of, target_labels)
    # `up` only needs to cover the lead-in and the lookback before it: a short family of its own.
    ups = [Series(job, "up", (), Steps(((-lead_in - UP_HISTORY, 1.0),)), target) for job, target in exporters]
    up_history = backfill_openmetrics(ups, -lead_in - UP_HISTORY, 0.0, step, clock.epoch_of, target_labels)
    probe_history = stage.probes.history(prom_doc, -lead_in - history, clock, target_labels) if stage.probes else ""
    backfill = stage.work / "history.om"
    backfill.write_text(metrics.removesuffix("# EOF\n") + probe_history + up_history)
    subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(backfill), str(prom_data)],
                   check=True, capture_output=True)


def scale_scenario(scenario: Scenario, config: DeployedConfig, work: Path) -> Stage:
    """Scale: everything the scenario needs written and checked by promtool and amtool, nothing started."""
    scale = TimeScale.for_config(config, scenario.factor)
    work.mkdir(parents=True)
    notes: list[str] = []
    rule_paths = _write_rules(config, scale, work, notes)

    series = _resolve_targets(merge(BASELINE, scenario.series), config)
    clock = ScenarioClock(scenario.factor)
    exporters = {
        (job, target): SyntheticExporter(job, target, [s for s in series if (s.job, s.target) == (job, target)],
                                         clock, scenario.exporter_outages)
        for job, target in config.targets()
    }
    loop = recovery_loop.RecoveryLoop(scenario, config, clock, scale, work) if scenario.recovery else None
    if loop:
        loop.adopt_exporters(exporters)
    capture = CaptureServer(clock, scenario.receiver_outages)

    am_config = drill_alertmanager_config(config, scale, capture.url, work / "secrets")
    capture.endpoints = {e.path: e for e in am_config.endpoints}
    if loop:
        loop.wire(am_config, capture.endpoints)
    for path, content in am_config.secret_files.items():
        path.parent.mkdir(mode=0o700, exist_ok=True)
        path.write_text(content)
        path.chmod(0o600)
    am_file = write_yaml(work / "alertmanager.yml", am_config.doc)
    _check([AMTOOL, "check-config", str(am_file)])
    cluster = AlertmanagerCluster(work, am_file, scenario.alertmanager_peers, scenario.factor)

    prom_doc, prom_notes = drill_prometheus_config(
        config, scale, {key: server.address for key, server in exporters.items()}, rule_paths, cluster.addresses)
    notes += prom_notes
    # The synthetic API checks: the real blackbox exporter, probing a local API server.
    probes = RealProbes(config, scale, clock, scenario.endpoint_outages, work) if scenario.endpoint_outages else None
    if probes:
        notes += probes.repoint(prom_doc)
    # The API gateway's spans through the real Collector: its span metrics, not synthetic ones.
    spans = RealSpans(config, scale, clock, scenario.spans, work) if scenario.spans else None
    if spans:
        notes += spans.repoint(prom_doc)
    prom_file = write_yaml(work / "prometheus.yml", prom_doc)
    _check([PROMTOOL, "check", "config", str(prom_file)])

    clock.start_now(LEAD_IN_SECONDS)
    stage = Stage(scenario, config, scale, work, series, clock, exporters, capture, cluster, [], [], probes, loop, notes,
                  spans=spans)
    prom_data = work / "prometheus-data"
    _write_history(stage, prom_doc, prom_data)

    # An HA pair (prometheus-pair): each replica its own copy of the history, its replica label.
    prom_port = free_port()
    stage.replicas.append(ManagedProcess("prometheus", _prometheus_argv(prom_file, prom_data, prom_port, scale),
                                         work / "prometheus.log"))
    stage.replica_urls.append(f"http://127.0.0.1:{prom_port}")
    if scenario.prometheus_replicas > 1:
        _check([PROMTOOL, "check", "config", str(write_yaml(prom_file, replica_doc(prom_doc, 0)))])
    for i in range(1, scenario.prometheus_replicas):
        port, data = free_port(), work / f"prometheus-data-{i}"
        shutil.copytree(prom_data, data)
        file = write_yaml(work / f"prometheus-{i}.yml", replica_doc(prom_doc, i))
        _check([PROMTOOL, "check", "config", str(file)])
        stage.replicas.append(ManagedProcess(f"prometheus-{i}", _prometheus_argv(file, data, port, scale),
                                             work / f"prometheus-{i}.log"))
        stage.replica_urls.append(f"http://127.0.0.1:{port}")
    return stage


def start_scenario(stage: Stage, supervisor: ProcessSupervisor, progress: Progress, index: int) -> None:
    """Start: servers, Alertmanager peers, Prometheus replicas, the recovery service; wait until the
    pipeline is warm and the lead-in has run out (t = 0)."""
    scenario, scale, clock, cluster = stage.scenario, stage.scale, stage.clock, stage.cluster
    for server in stage.servers:
        server.start()
    if stage.probes:
        stage.probes.start(supervisor)
    if stage.spans:
        stage.spans.start(supervisor)
    cluster.start_all(supervisor)
    for replica, url in zip(stage.replicas, stage.replica_urls):
        wait_ready(supervisor.start(replica), f"{url}/-/ready")
    if stage.loop:
        stage.loop.start(supervisor, stage.capture.url, stage.prom_url)
    groups = sum(len(doc.get("groups") or []) for doc in stage.config.rule_files.values())
    while not (all(_pipeline_warm(url, len(stage.exporters), len(cluster.peers)) and _rules_loaded(url, groups)
                   for url in stage.replica_urls) and cluster.formed()):
        if clock.now() > scale.real(WARM_UP_LIMIT_SECONDS):
            raise RuntimeError(f"not warm {WARM_UP_LIMIT_SECONDS:g}s after the lead-in: Prometheus sees "
                               f"{len(stage.exporters)} target(s) and {len(cluster.peers)} Alertmanager(s)? the "
                               f"Alertmanager cluster formed? (logs in {stage.work}, kept with --keep)")
        progress.update(index, scenario, clock, "warming up")
        time.sleep(0.02)
    if clock.now() > scale.real(1.0):
        # The scenario has begun without its first scrapes: the series have a hole from t = 0.
        stage.late_start = (f"start-up outran the {LEAD_IN_SECONDS:g}s lead-in: Prometheus reached its targets and "
                            f"Alertmanager at {durations.human(clock.now())} of scenario time")
    while clock.now() < 0:
        progress.update(index, scenario, clock, "warming up")
        time.sleep(0.02)


PLAY_TICK = 0.05  # wall seconds between two looks at the timeline


def play_scenario(stage: Stage, progress: Progress, index: int) -> float:
    """Play the timeline: Alertmanager restarts, replica and peer losses. Returns the longest wall gap
    between two ticks: a drill that could not look at its clock for long was starved of CPU."""
    scenario, clock, cluster, notes = stage.scenario, stage.clock, stage.cluster, stage.notes
    alertmanager = cluster.peers[0]
    restarts = list(scenario.alertmanager_down)
    peer_outages = list(scenario.peer_outages)
    lost = None  # the peer of the current peer outage
    state = ""
    longest_gap, last = 0.0, time.monotonic()
    while clock.now() < scenario.duration:
        t = clock.now()
        if restarts and t >= restarts[0].start and alertmanager.running:
            cluster.stop(alertmanager)
            state = "Alertmanager stopped"
        if restarts and t >= restarts[0].end and not alertmanager.running:
            cluster.start(alertmanager)
            notes.append(f"Alertmanager restarted at {durations.human(clock.now())} with the same --storage.path")
            restarts.pop(0)
            state = ""
        if scenario.prometheus_lost_at is not None and t >= scenario.prometheus_lost_at and stage.replicas[0].running:
            stage.replicas[0].kill()
            notes.append(f"Prometheus replica 0 killed at {durations.human(clock.now())}, for good")
        if peer_outages and lost is None and t >= peer_outages[0].start:
            lost = cluster.sender()
            cluster.stop(lost, kill=peer_outages[0].killed)
            state = f"Alertmanager peer {lost.index} {'killed' if peer_outages[0].killed else 'stopped'}"
            notes.append(f"{state} at {durations.human(clock.now())} (it was at position 0: the one notifying)")
        if peer_outages and lost is not None and t >= peer_outages[0].end:
            outage = peer_outages.pop(0)
            cluster.start(lost, fresh_storage=outage.fresh_storage)
            notes.append(f"Alertmanager peer {lost.index} back at {durations.human(clock.now())} with "
                         + ("an empty --storage.path: it learns the notification log from its peers"
                            if outage.fresh_storage else "the same --storage.path"))
            lost, state = None, ""
        progress.update(index, scenario, clock, state)
        time.sleep(PLAY_TICK)
        now = time.monotonic()
        longest_gap, last = max(longest_gap, now - last), now
    return longest_gap


def _missed_evaluations(prometheus_url: str) -> tuple[float, float]:
    """Rule group iterations Prometheus skipped because the previous one had not finished, and all
    it was due to run."""
    with urllib.request.urlopen(f"{prometheus_url}/metrics", timeout=5) as response:
        text = response.read().decode()

    def total(name: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))
    return (total("prometheus_rule_group_iterations_missed_total"),
            total("prometheus_rule_group_iterations_total"))


def _scrapes(prometheus_url: str, start: float, end: float, scale: TimeScale) -> int:
    return sum(len(r["values"]) for r in _query_range(prometheus_url, "up", start, end, scale.scrape_interval_s))


def collect_scenario(stage: Stage, longest_gap: float) -> Collected:
    """Collect: what Prometheus saw, for the picture and the NaN check, and whether CPU starvation
    (failed scrapes outside an outage, skipped rule evaluations, a drill late on its own clock)
    makes the scenario's verdict the machine's rather than the stack's."""
    scenario, scale, clock, prom_url = stage.scenario, stage.scale, stage.clock, stage.prom_url
    end = time.time()
    step = max(scale.scrape_interval_s, (end - clock.origin_epoch) / 600)
    plot: list[PlotSeries] = []
    for line in scenario.plot:
        query = durations.scale_promql(line.query, scale.factor)
        for result in _query_range(prom_url, query, clock.origin_epoch, end, step):
            plot.append(PlotSeries(line.label, line.thresholds,
                                   [(scale.real(ts - clock.origin_epoch), float(v)) for ts, v in result["values"]]))
    alert_states: dict[str, list[tuple[float, str]]] = {}
    for result in _query_range(prom_url, "ALERTS", clock.origin_epoch, end, step):
        name = result["metric"]["alertname"]
        alert_states.setdefault(name, []).extend(
            (scale.real(ts - clock.origin_epoch), result["metric"]["alertstate"]) for ts, _ in result["values"])
    nan_recorded = _nan_recorded(prom_url, stage.config, clock.origin_epoch, end, scale)
    starved = [stage.late_start] if stage.late_start else []
    # A stray failed scrape or skipped evaluation in thousands is a hiccup the verdict itself judges
    # (a TargetDown nobody expected fails it); more than STARVED_SHARE of them is starvation.
    missed = _missed_scrapes(prom_url, scenario, clock.origin_epoch, end, scale)
    if missed > STARVED_SHARE * _scrapes(prom_url, clock.origin_epoch, end, scale):
        starved.append(f"{missed} scrape(s) of the synthetic exporters failed outside any played outage")
    skipped, iterations = _missed_evaluations(prom_url)
    if skipped > STARVED_SHARE * iterations:
        starved.append(f"Prometheus skipped {skipped:g} rule evaluation(s)")
    if longest_gap > max(STARVED_TICK_S, 2 * scale.evaluation_interval_s):
        starved.append(f"the drill could not look at its clock for {longest_gap:.2f}s")
    return Collected(plot, alert_states, nan_recorded, starved)


# A tick this late (wall seconds, or two evaluation intervals when longer) means the drill was starved.
STARVED_TICK_S = 0.5
# Failed scrapes, or skipped rule evaluations, above this share of all of them: starvation.
STARVED_SHARE = 0.01


def judge_scenario(stage: Stage, collected: Collected, started: float) -> ScenarioRun:
    """Judge: every captured request decoded and held against the scenario's expectations."""
    scenario, config, notes = stage.scenario, stage.config, stage.notes
    rules = config.alert_rule_variants()
    captured = stage.capture.captured()
    # Kept with --keep: every request as the capture server received it.
    (stage.work / "notifications.jsonl").write_text("".join(
        json.dumps({"wall": c.wall, "receiver": c.receiver, "answered": c.answered, "body": c.body}) + "\n"
        for c in captured))
    # The recovery service's webhook, posts and notes are judged by the loop, not as notifications to people.
    automation = recovery_loop.automation_receivers()
    delivered = [c for c in captured if 200 <= c.answered < 300 and c.receiver not in automation]
    jobs = sorted({v for s in stage.series for k, v in s.labels if k == "job_id"})
    notifications = [decode(c, rules, jobs) for c in delivered]
    failed = sum(1 for c in captured if not 200 <= c.answered < 300 and c.receiver not in automation)
    if failed:
        notes.append(f"{failed} notification attempt(s) answered with an error by the capture server, as the scenario plays")
    if stage.loop:
        scenario = stage.loop.expected(scenario)
    verdict = judge(scenario, notifications, rules, config.routing(), stage.scale, failed)
    recovery = stage.loop.judge(captured, notifications) if stage.loop else None
    return ScenarioRun(scenario, stage.scale, verdict, notifications, collected.plot, collected.alert_states,
                       time.monotonic() - started, notes, collected.nan_recorded, recovery, collected.starved)


def run_scenario(scenario: Scenario, config: DeployedConfig, work: Path, index: int, progress: Progress,
                 factor: float | None = None) -> ScenarioRun:
    started = time.monotonic()
    stage = scale_scenario(dataclasses.replace(scenario, factor=factor or scenario.factor), config, work)
    with ProcessSupervisor() as supervisor:
        try:
            start_scenario(stage, supervisor, progress, index)
            longest_gap = play_scenario(stage, progress, index)
            collected = collect_scenario(stage, longest_gap)
        finally:
            for server in stage.servers:
                server.stop()
            if stage.probes:
                stage.probes.stop()
                stage.notes.append(stage.probes.summary())
            if stage.spans:
                stage.spans.stop()
                stage.notes.append(stage.spans.summary())
            if stage.loop:
                stage.loop.stop()
    return judge_scenario(stage, collected, started)


def _run_in_worker(scenario_name: str, config: DeployedConfig, work: Path, index: int,
                   factor: float | None) -> ScenarioRun:
    from tools.drill.scenarios import by_name

    [scenario] = by_name([scenario_name])
    return run_scenario(scenario, config, work, index, Progress([scenario], quiet=True), factor)


def _longest_first(scenarios: list[Scenario], factor: float | None) -> list[Scenario]:
    return sorted(scenarios, key=lambda s: -s.duration / (factor or s.factor))


def run_drill(config: DeployedConfig, scenarios: list[Scenario], factor: float | None = None,
              progress: Progress | None = None, keep: Path | None = None, jobs: int = 1,
              on_done: Callable[[ScenarioRun], None] | None = None) -> list[ScenarioRun]:
    """Run `scenarios`, `jobs` at a time (each in a worker process of its own), longest first; a run
    starved of CPU is run again alone. Their data lives in a temporary directory (copied to `keep`)."""
    for tool in (PROMETHEUS, ALERTMANAGER, PROMTOOL, AMTOOL):
        if shutil.which(tool) is None:
            raise DrillConfigError(f"{tool} not found: run `make upstream`")
    progress = progress or Progress(scenarios)
    # Jobs production scrapes through ServiceMonitors (not in scrape-configs.yaml) but the rules read.
    config = config.with_scrape_jobs(SERVICE_MONITOR_JOBS)
    runs: dict[str, ScenarioRun] = {}
    index = {s.name: i for i, s in enumerate(scenarios, 1)}

    def done(run: ScenarioRun) -> None:
        runs[run.scenario.name] = run
        progress.done(run.scenario, run)
        if on_done:
            on_done(run)

    with tempfile.TemporaryDirectory(prefix="alert-drill-") as tmp:
        try:
            if jobs > 1 and len(scenarios) > 1:
                with ProcessSupervisor():  # SIGTERM/SIGHUP become DrillInterrupted here too
                    _run_side_by_side(scenarios, config, Path(tmp), index, factor, jobs, progress, done)
            else:
                for scenario in scenarios:
                    done(run_scenario(scenario, config, Path(tmp) / scenario.name, index[scenario.name], progress, factor))
            # Alone now, the machine's whole CPU for it: a starved run gets its second chance.
            for scenario in [s for s in scenarios if runs[s.name].starved]:
                first = runs[scenario.name]
                progress.retry(scenario, first)
                run = run_scenario(scenario, config, Path(tmp) / f"{scenario.name}-again", index[scenario.name],
                                   progress, factor)
                run.attempts = first.attempts + 1
                run.notes.insert(0, f"attempt 1 was starved of CPU ({'; '.join(first.starved)}); this is attempt 2, "
                                    "run alone")
                done(run)
        finally:
            if keep is not None:
                shutil.copytree(tmp, keep, dirs_exist_ok=True)
    return [runs[s.name] for s in scenarios]


def _run_side_by_side(scenarios: list[Scenario], config: DeployedConfig, tmp: Path, index: dict[str, int],
                      factor: float | None, jobs: int, progress: Progress, done: Callable[[ScenarioRun], None]) -> None:
    # forkserver: workers start from a clean interpreter, not a copy of this one's threads and handlers.
    context = multiprocessing.get_context("forkserver")
    with concurrent.futures.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
        futures = {}
        try:
            for scenario in _longest_first(scenarios, factor):
                futures[pool.submit(_run_in_worker, scenario.name, config, tmp / scenario.name,
                                    index[scenario.name], factor)] = scenario
            pending = set(futures)
            while pending:
                finished, pending = concurrent.futures.wait(pending, timeout=5,
                                                            return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    done(future.result())
                progress.side_by_side(len(scenarios) - len(pending), len(scenarios), jobs)
        except BaseException:
            # Ctrl-C or SIGTERM: every worker stops its scenario's processes on its own way out.
            for process in list(getattr(pool, "_processes", {}).values()):
                if process.is_alive():
                    process.terminate()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
