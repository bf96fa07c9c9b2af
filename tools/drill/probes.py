"""Synthetic API checks in the drill: the real blackbox exporter probing a local API server.

A scenario with endpoint outages runs the blackbox exporter (the chart's version) with the modules
the stack renders (build/<stack>/helm/prometheus-blackbox-exporter.values.yaml), each module's
timeout scaled like every other duration, and re-points every probe job of the scrape configs
(`metrics_path: /probe` with a `module` param) as the drill re-points other jobs:
  - `__address__` is the local exporter instead of the exporter's Service,
  - `__param_target` (what the exporter requests) is the local API server, one path per job
    (`/<job><path of the original URL>`), so an outage names the probe job it breaks,
  - `instance` stays the original URL, so the alerts read as in production.
The API server answers 200 `{"status": "ok"}` (HTTP/1.1, as the modules require), or the
outage's status while one of the job's outages lasts.

Only `probe_success` = 1 is backfilled as history, at each probe job's own interval: each probe
is one event of the availability SLO, so the history must have as many samples per window as
the live probes will.
"""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Iterable
from urllib.parse import urlparse

import yaml

from tools.drill import durations
from tools.drill.deployed_config import DeployedConfig, DrillConfigError, TimeScale, write_yaml
from tools.drill.processes import ManagedProcess, ProcessSupervisor, free_port, wait_ready
from tools.drill.scenarios import EndpointOutage
from tools.drill.servers import ScenarioClock, _QuietHandler, _Served
from tools.drill.timeline import Series, Steps, backfill_openmetrics

BLACKBOX_EXPORTER = "blackbox_exporter"  # built by `make upstream` at the chart's version
VALUES_FILE = Path("helm") / "prometheus-blackbox-exporter.values.yaml"
PROBE_SUCCESS = "probe_success"
# The exporter cuts a probe at the scrape timeout less this (its default 0.5 s is longer than a
# scaled scrape timeout): what is left goes to the probe.
TIMEOUT_OFFSET = 0.02


def probe_jobs(scrape_configs: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The scrape jobs that go through a blackbox exporter: /probe with a module."""
    return [job for job in scrape_configs if job.get("metrics_path") == "/probe" and (job.get("params") or {}).get("module")]


class _ApiHandler(_QuietHandler):
    protocol_version = "HTTP/1.1"  # the modules accept HTTP/1.1 and HTTP/2.0 only

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        api: ApiServer = self.server.owner  # type: ignore[attr-defined]
        job = self.path.split("/")[1] if self.path.count("/") >= 1 else ""
        t = api.clock.now()
        api.requests[job] = api.requests.get(job, 0) + 1
        outage = next((o for o in api.outages if o.job == job and o.contains(t)), None)
        if outage is not None:
            self.reply(outage.status, json.dumps({"status": "unavailable"}).encode(), "application/json")
        else:
            self.reply(200, json.dumps({"status": "ok"}).encode(), "application/json")


class ApiServer(_Served):
    """The API gateway as the probes see it: every job's path healthy, except during its outages."""

    def __init__(self, clock: ScenarioClock, outages: Iterable[EndpointOutage]):
        self.clock = clock
        self.outages = list(outages)
        self.requests: dict[str, int] = {}
        super().__init__(_ApiHandler)

    def url_for(self, job: str, original: str) -> str:
        parsed = urlparse(original)
        return f"http://{self.address}/{job}{parsed.path or '/'}" + (f"?{parsed.query}" if parsed.query else "")


def blackbox_config(config: DeployedConfig, scale: TimeScale) -> dict[str, Any]:
    """The rendered modules, each timeout scaled (never below the drill's shortest interval)."""
    values_file = config.root / VALUES_FILE
    if not values_file.is_file():
        raise DrillConfigError(f"{values_file} not found: the stack renders no blackbox exporter (probes)")
    doc = copy.deepcopy((yaml.safe_load(values_file.read_text()) or {}).get("config") or {})
    modules = doc.get("modules") or {}
    if not modules:
        raise DrillConfigError(f"{values_file}: no modules under config")
    for module in modules.values():
        if "timeout" in module:
            module["timeout"] = scale.interval(module["timeout"])
    return doc


class RealProbes:
    """The blackbox exporter process, the API server it probes, and the probe jobs' re-pointing."""

    def __init__(self, config: DeployedConfig, scale: TimeScale, clock: ScenarioClock,
                 outages: Iterable[EndpointOutage], work: Path):
        self.scale = scale
        self.jobs = [job["job_name"] for job in probe_jobs(config.scrape_configs)]
        outages = list(outages)
        unknown = sorted({o.job for o in outages} - set(self.jobs))
        if unknown:
            raise DrillConfigError(f"endpoint outage of {', '.join(unknown)}: not a probe job of the rendered scrape "
                                   f"configs ({', '.join(self.jobs) or 'none'})")
        if shutil.which(BLACKBOX_EXPORTER) is None:
            raise DrillConfigError(f"{BLACKBOX_EXPORTER} not found: run scripts/install-system-tools.sh")
        self.api = ApiServer(clock, outages)
        self.port = free_port()
        self.config_file = write_yaml(work / "blackbox.yml", blackbox_config(config, scale))
        check = subprocess.run([BLACKBOX_EXPORTER, f"--config.file={self.config_file}", "--config.check"],
                               capture_output=True, text=True)
        if check.returncode != 0:
            raise DrillConfigError(f"{BLACKBOX_EXPORTER} rejected the drill's modules:\n{check.stdout}{check.stderr}")
        self.log = work / "blackbox-exporter.log"
        self._serving = False

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def repoint(self, prom_doc: dict[str, Any]) -> list[str]:
        """Send every probe job of the drill's prometheus.yml through the local exporter to the API server."""
        notes = []
        for job in probe_jobs(prom_doc["scrape_configs"]):
            name = job["job_name"]
            statics = job.get("static_configs") or []
            if len(statics) != 1 or len(statics[0].get("targets") or []) != 1:
                raise DrillConfigError(f"probe job {name}: expected one target, as the stack renders them")
            original = statics[0]["labels"]["instance"]
            local = self.api.url_for(name, original)
            job["relabel_configs"] = [
                {"target_label": "__param_target", "replacement": local},
                {"target_label": "instance", "replacement": original},
                {"target_label": "__address__", "replacement": self.address},
            ]
            notes.append(f"probe job {name}: the real blackbox exporter requests {urlparse(local).path} of a local "
                         f"server instead of {original} (instance unchanged)")
        return notes

    def history(self, prom_doc: dict[str, Any], start: float, clock: ScenarioClock,
                target_labels: dict[tuple[str, str], dict[str, str]]) -> str:
        """OpenMetrics samples of probe_success = 1 from `start` to t = 0, at each probe job's interval."""
        chunks = []
        for job in probe_jobs(prom_doc["scrape_configs"]):
            name = job["job_name"]
            (target,) = [t for (j, t) in target_labels if j == name]
            step = self.scale.real(durations.parse(job.get("scrape_interval") or "0s")) or self.scale.real(
                self.scale.scrape_interval_s)
            series = Series(name, PROBE_SUCCESS, (), Steps(((start, 1.0),)), target)
            text = backfill_openmetrics([series], start, 0.0, step, clock.epoch_of, target_labels)
            lines = text.removesuffix("# EOF\n").splitlines()
            chunks += lines[1:] if chunks else lines  # one TYPE line for the family
        return "\n".join(chunks) + "\n" if chunks else ""

    def start(self, supervisor: ProcessSupervisor) -> None:
        self.api.start()
        self._serving = True
        process = supervisor.start(ManagedProcess("blackbox-exporter", [
            BLACKBOX_EXPORTER, f"--config.file={self.config_file}", f"--web.listen-address={self.address}",
            f"--timeout-offset={TIMEOUT_OFFSET}", "--log.level=info"], self.log))
        wait_ready(process, f"http://{self.address}/-/healthy")

    def stop(self) -> None:
        if self._serving:  # shutdown() would wait forever for a server that never ran
            self.api.stop()
            self._serving = False

    def summary(self) -> str:
        counts = ", ".join(f"{job} {n}" for job, n in sorted(self.api.requests.items()))
        return f"the blackbox exporter probed the local API server: {counts or 'never'}"
