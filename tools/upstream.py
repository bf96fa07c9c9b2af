"""Upstream binaries at exactly the versions the charts deploy, built from the Go module proxy.

    python -m tools.upstream              # build what is missing, then one line per binary
    python -m tools.upstream --check      # only compare the pinned versions with the charts
    python -m tools.upstream --path       # print the PATH prefix (the bin directories), build nothing

Each tool has a pinning module in upstream/<tool>/ (go.mod with Go's `tool` directive, go.sum).
The version comes from the chart the stack installs (model/values/helm.py names it; the chart
mirror or a digest-checked `helm pull` holds it): a pin that disagrees with its chart stops the build and fails tests/test_upstream.py.
Builds land in ${XDG_CACHE_HOME:-~/.cache}/homelab-observability/upstream/<tool>-<version>-<pin>/,
keyed by the version and the pinning module's hash, so nothing is rebuilt until one of them moves.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import yaml

from model.values import helm
from model.values.helm import HelmChart
from tools import manifests
from tools.offline_engine import ROOT

PINS = ROOT / "upstream"
PROMETHEUS_COMMON_VERSION = "github.com/prometheus/common/version"
VM_BUILDINFO = "github.com/VictoriaMetrics/VictoriaMetrics/lib/buildinfo.Version"
# Bumped when the way a binary is built changes (flags, overlay), so old builds are not reused.
RECIPE = "1"


class UpstreamError(Exception):
    pass


def cache_root() -> Path:
    if os.environ.get("HOMELAB_UPSTREAM_CACHE"):
        return Path(os.environ["HOMELAB_UPSTREAM_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "homelab-observability" / "upstream"


# --- where each version comes from: the chart -------------------------------------------------

def chart_file(chart: HelmChart, name: str) -> dict:
    """A file of the chart: from the chart mirror when it holds the chart, else from the archive
    `helm pull` fetches and checks against its pinned digest (tools/manifests.py)."""
    mirror = manifests.default_mirror()
    path = mirror / f"{chart.name}-{chart.version}" / name if mirror else None
    if path is not None and path.is_file():
        return yaml.safe_load(path.read_text())
    try:
        archive = manifests.pulled_chart(manifests.Release.of(chart.name, chart.name, chart.version,
                                                              chart.repository, "default", None))
    except manifests.ChartUnavailable as exc:
        raise UpstreamError(f"the chart {chart.name} {chart.version}, where its version is read: {exc}") from None
    with tarfile.open(archive) as tar:
        member = tar.extractfile(f"{chart.name}/{name}")
        assert member is not None
        return yaml.safe_load(member.read())


def app_version(chart: HelmChart) -> str:
    return str(chart_file(chart, "Chart.yaml")["appVersion"]).removeprefix("v")


def image_tag(chart: HelmChart, *keys: str) -> Callable[[], str]:
    """The default image tag at values.yaml's keys, e.g. v3.14.0-distroless -> 3.14.0."""
    def read() -> str:
        node = chart_file(chart, "values.yaml")
        for key in keys:
            node = node[key]
        return str(node["tag"]).removeprefix("v").split("-")[0]
    return read


# --- the tools --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Binary:
    name: str
    package: str            # import path of its main package
    version_flag: str = "--version"


@dataclass(frozen=True)
class Tool:
    name: str                                  # upstream/<name>/ and the cache directory
    chart: HelmChart | None                    # None: a test tool no chart deploys; its pin is its version
    chart_version: Callable[[], str]           # the version the chart deploys
    module: str                                # Go module that holds the binaries
    binaries: tuple[Binary, ...]
    ldflags: Callable[["Tool", str, str], list[str]]
    module_version: Callable[[str], str] = lambda v: f"v{v}"
    group: str = "metrics"
    note: str = ""
    extra_env: dict = field(default_factory=dict)

    @property
    def pin_dir(self) -> Path:
        return PINS / self.name

    def version(self) -> str:
        return self.chart_version()

    def pinned_module_version(self) -> str:
        text = (self.pin_dir / "go.mod").read_text()
        found = re.search(rf"^\s*(?:require\s+)?{re.escape(self.module)}\s+(\S+)", text, re.M)
        if found is None:
            raise UpstreamError(f"{self.pin_dir / 'go.mod'} does not require {self.module}")
        return found.group(1)

    def pin_hash(self) -> str:
        digest = hashlib.sha256(RECIPE.encode())
        for name in ("go.mod", "go.sum", "pin.json", "builder-config.yaml"):
            path = self.pin_dir / name
            if path.is_file():
                digest.update(name.encode() + b"\0" + path.read_bytes())
        return digest.hexdigest()[:12]

    def install_dir(self) -> Path:
        return cache_root() / f"{self.name}-{self.version()}-{self.pin_hash()}"

    def bin_dir(self) -> Path:
        return self.install_dir() / "bin"

    def built(self) -> bool:
        return (self.install_dir() / "built.json").is_file() and all(
            (self.bin_dir() / b.name).is_file() for b in self.binaries)


def pinned_version(pin: str, module: str) -> Callable[[], str]:
    """For a tool no chart deploys: the version its pinning module requires, without the v."""
    def read() -> str:
        found = re.search(rf"^\s*(?:require\s+)?{re.escape(module)}\s+v(\S+)", (PINS / pin / "go.mod").read_text(), re.M)
        if found is None:
            raise UpstreamError(f"{PINS / pin / 'go.mod'} does not require {module}")
        return found.group(1)
    return read


def prometheus_module_version(version: str) -> str:
    """Prometheus publishes v3.y.z as the Go module version v0.3yy.z (3.14.0 -> v0.314.0)."""
    major, minor, patch = (int(p) for p in version.split("."))
    return f"v0.{major * 100 + minor}.{patch}"


def _prometheus_ldflags(tool: Tool, version: str, revision: str) -> list[str]:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H:%M:%S")
    return [f"-X {PROMETHEUS_COMMON_VERSION}.{k}={v}" for k, v in (
        ("Version", version), ("Revision", revision), ("Branch", "HEAD"),
        ("BuildUser", "homelab-observability"), ("BuildDate", stamp))]


def _vm_ldflags(app: str) -> Callable[[Tool, str, str], list[str]]:
    def flags(tool: Tool, version: str, revision: str) -> list[str]:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
        return [f"-X {VM_BUILDINFO}={app}-{stamp}-tags-v{version}-0-g{revision[:10]}"]
    return flags


def _loki_ldflags(tool: Tool, version: str, revision: str) -> list[str]:
    # Loki hands its own build variables to Prometheus' version package.
    return [f.replace(PROMETHEUS_COMMON_VERSION, "github.com/grafana/loki/v3/pkg/util/build")
            for f in _prometheus_ldflags(tool, version, revision)]


KPS = helm.KUBE_PROMETHEUS_STACK_CHART
VM_CLUSTER = helm.VICTORIA_METRICS_CLUSTER_CHART

TOOLS: tuple[Tool, ...] = (
    Tool("prometheus", KPS, image_tag(KPS, "prometheus", "prometheusSpec", "image"),
         "github.com/prometheus/prometheus",
         (Binary("prometheus", "github.com/prometheus/prometheus/cmd/prometheus"),
          Binary("promtool", "github.com/prometheus/prometheus/cmd/promtool")),
         _prometheus_ldflags, module_version=prometheus_module_version),
    Tool("alertmanager", KPS, image_tag(KPS, "alertmanager", "alertmanagerSpec", "image"),
         "github.com/prometheus/alertmanager",
         (Binary("alertmanager", "github.com/prometheus/alertmanager/cmd/alertmanager"),
          Binary("amtool", "github.com/prometheus/alertmanager/cmd/amtool")),
         _prometheus_ldflags, note="API only: the module has no built web UI"),
    Tool("blackbox_exporter", helm.BLACKBOX_EXPORTER_CHART, lambda: app_version(helm.BLACKBOX_EXPORTER_CHART),
         "github.com/prometheus/blackbox_exporter",
         (Binary("blackbox_exporter", "github.com/prometheus/blackbox_exporter"),), _prometheus_ldflags),
    Tool("snmp_exporter", helm.SNMP_EXPORTER_CHART, lambda: app_version(helm.SNMP_EXPORTER_CHART),
         "github.com/prometheus/snmp_exporter",
         (Binary("snmp_exporter", "github.com/prometheus/snmp_exporter"),), _prometheus_ldflags),
    # The single node is not in the chart; it is the same release as the cluster the chart deploys.
    Tool("victoriametrics", VM_CLUSTER, lambda: app_version(VM_CLUSTER),
         "github.com/VictoriaMetrics/VictoriaMetrics",
         (Binary("victoria-metrics", "github.com/VictoriaMetrics/VictoriaMetrics/app/victoria-metrics",
                 "-version"),), _vm_ldflags("victoria-metrics")),
    # Logs and traces: the longest builds (a cold Loki or Collector takes most of an hour on 2 cores).
    Tool("loki", helm.LOKI_CHART, lambda: app_version(helm.LOKI_CHART), "github.com/grafana/loki/v3",
         (Binary("loki", "github.com/grafana/loki/v3/cmd/loki", "-version"),),
         _loki_ldflags, group="logs-traces"),
    # The Collector: its builder (ocb) at the chart's version, with exactly the components the rendered
    # config names (upstream/otelcol/builder-config.yaml, tools/collector_distribution.py).
    Tool("otelcol", helm.COLLECTOR_CHART, lambda: app_version(helm.COLLECTOR_CHART),
         "go.opentelemetry.io/collector/cmd/builder", (Binary("otelcol-homelab", "", "--version"),),
         lambda tool, version, revision: [], group="logs-traces"),
    # Not deployed: the NetworkPolicy engine that proves the stack's walls (tests/walls).
    Tool("cyclonus", None, pinned_version("cyclonus", "github.com/mattfenwick/cyclonus"),
         "github.com/mattfenwick/cyclonus", (Binary("cyclonus", "github.com/mattfenwick/cyclonus/cmd/cyclonus", "version"),),
         lambda tool, version, revision: [f"-X github.com/mattfenwick/cyclonus/pkg/cli.{k}={v}" for k, v in (
             ("version", version), ("gitSHA", revision), ("buildTime", datetime.now(timezone.utc).isoformat()))],
         group="walls"),
)


def tools(group: str | None = None) -> list[Tool]:
    return [t for t in TOOLS if group is None or t.group == group]


# --- the checks -------------------------------------------------------------------------------

def version_problems(selected: list[Tool]) -> list[str]:
    """Every pin that disagrees with the chart it stands for."""
    problems = []
    for tool in selected:
        if tool.chart is None:
            continue
        version = tool.version()
        expected = tool.module_version(version)
        pinned = tool.pinned_module_version()
        if pinned != expected:
            problems.append(f"{tool.name}: the chart {tool.chart.name} {tool.chart.version} deploys {version}, "
                            f"upstream/{tool.name} pins {tool.module} {pinned} (expected {expected})")
    return problems


def reported_version(bin_dir: Path, binary: Binary) -> str:
    done = subprocess.run([str(bin_dir / binary.name), binary.version_flag],
                          capture_output=True, text=True, timeout=60)
    return (done.stdout + done.stderr).strip()


def version_reported(tool: Tool, output: str) -> bool:
    version = tool.version()
    return (f"version {version} " in output or f"-v{version}-" in output or output.endswith(f"version {version}")
            or f'"Version": "{version}"' in output)


# --- building ---------------------------------------------------------------------------------

def _go(args: list[str], cwd: Path, env: dict | None = None, log=None) -> subprocess.CompletedProcess:
    return subprocess.run(["go", *args], cwd=cwd, env={**os.environ, **(env or {})}, text=True,
                          stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT if log else subprocess.PIPE)


def _module_info(tool: Tool) -> dict:
    done = _go(["mod", "download", "-json", f"{tool.module}@{tool.pinned_module_version()}"], tool.pin_dir)
    if done.returncode != 0:
        raise UpstreamError(f"go mod download {tool.module}: {done.stdout}{done.stderr}")
    return json.loads(done.stdout)


def _revision(info: dict) -> str:
    origin_file = Path(info.get("Info", ""))
    if origin_file.is_file():
        return json.loads(origin_file.read_text()).get("Origin", {}).get("Hash", "unknown")
    return "unknown"


def _alertmanager_without_ui(module_dir: Path, work: Path, tool: Tool) -> list[str]:
    """Alertmanager's ui/web.go embeds app/dist, the built web UI, which the module zip lacks (it
    is built by npm in a release). Go refuses overlays of the module cache, so the build uses a
    copy of the verified module with that one line removed, through a go.mod of its own (-modfile)
    that replaces the module by the copy: the API is complete, the web UI is not built."""
    copy = work / "alertmanager-module"
    shutil.copytree(module_dir, copy)
    for path in [copy, *copy.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o200)
    web = copy / "ui" / "web.go"
    source = web.read_text()
    if "//go:embed app/dist\n" not in source:
        raise UpstreamError(f"{module_dir / 'ui' / 'web.go'}: the embed line the build removes is gone; review it")
    web.write_text(source.replace("//go:embed app/dist\n", ""))
    modfile = work / "go.mod"
    modfile.write_text((tool.pin_dir / "go.mod").read_text() + f"\nreplace {tool.module} => {copy}\n")
    shutil.copy2(tool.pin_dir / "go.sum", work / "go.sum")
    return [f"-modfile={modfile}"]


def _build_collector(staging: Path, bin_dir: Path, log) -> subprocess.CompletedProcess:
    """ocb generates the distribution's sources (go.mod resolved from the proxy) and compiles them."""
    config = yaml.safe_load((PINS / "otelcol" / "builder-config.yaml").read_text())
    config["dist"]["output_path"] = str(staging / "distribution")
    generated = staging / "builder-config.yaml"
    generated.write_text(yaml.safe_dump(config, sort_keys=False))
    done = _go(["tool", "builder", f"--config={generated}"], PINS / "otelcol", log=log)
    if done.returncode == 0:
        shutil.copy2(staging / "distribution" / config["dist"]["name"], bin_dir / config["dist"]["name"])
    return done


def build(tool: Tool, log=sys.stdout) -> float:
    """Build the tool's binaries into its cache directory; the seconds it took."""
    started = time.monotonic()
    version = tool.version()
    target = tool.install_dir()
    staging = Path(tempfile.mkdtemp(prefix=f".{tool.name}-", dir=cache_root()))
    staging.chmod(0o755)
    try:
        flags: list[str] = []
        cwd, packages = tool.pin_dir, ["tool"]
        info = _module_info(tool)
        revision = _revision(info)
        if tool.name == "alertmanager":
            flags += _alertmanager_without_ui(Path(info["Dir"]), staging, tool)
        bin_dir = staging / "bin"
        bin_dir.mkdir()
        ldflags = " ".join(tool.ldflags(tool, version, revision))
        print(f"  go build {tool.name} {version} ({tool.pinned_module_version()}) ...", file=log, flush=True)
        if tool.name == "otelcol":
            done = _build_collector(staging, bin_dir, log)
        else:
            done = _go(["build", *flags, f"-ldflags={ldflags}", "-o", f"{bin_dir}/", *packages], cwd, tool.extra_env,
                       log=log)
        if done.returncode != 0:
            raise UpstreamError(f"go build of {tool.name} failed (exit {done.returncode}); output above")
        for binary in tool.binaries:
            output = reported_version(bin_dir, binary)
            if not version_reported(tool, output):
                raise UpstreamError(f"{binary.name} reports {output!r}, expected version {version}")
        seconds = time.monotonic() - started
        (staging / "built.json").write_text(json.dumps({
            "tool": tool.name, "version": version, "module": tool.module,
            "module_version": tool.pinned_module_version(), "revision": revision, "seconds": round(seconds, 1),
            "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds")}, indent=2) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
        staging = None
        return seconds
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)


def ensure(selected: list[Tool], log=sys.stdout) -> dict[str, float]:
    """Build each tool that is missing; seconds per tool built."""
    problems = version_problems(selected)
    if problems:
        raise UpstreamError("pins disagree with the charts:\n  " + "\n  ".join(problems))
    cache_root().mkdir(parents=True, exist_ok=True)
    missing = [t for t in selected if not t.built()]
    if missing and shutil.which("go") is None:
        raise UpstreamError("go not found: the builds need Go 1.26 or later (https://go.dev/dl/; Debian's is older)")
    times = {}
    for number, tool in enumerate(missing, 1):
        print(f"[{number}/{len(missing)}] {tool.name} {tool.version()}: building into {tool.install_dir()} "
              f"(a cold build takes minutes)", file=log, flush=True)
        times[tool.name] = build(tool, log)
        print(f"[{number}/{len(missing)}] {tool.name}: built in {times[tool.name]:.0f}s", file=log, flush=True)
    return times


# --- what callers use -------------------------------------------------------------------------

def bin_dirs(group: str | None = "metrics") -> list[Path]:
    return [t.bin_dir() for t in tools(group)]


def missing(group: str | None = "metrics") -> list[str]:
    return [f"{t.name} {t.version()}" for t in tools(group) if not t.built()]


def put_on_path(group: str | None = "metrics", environ=os.environ) -> None:
    """The cache's bin directories first on PATH; a one-line error when `make upstream` did not run."""
    absent = missing(group)
    if absent:
        raise UpstreamError(f"upstream binaries not built ({', '.join(absent)}): run `make upstream`")
    prefix = os.pathsep.join(str(d) for d in bin_dirs(group))
    if not environ.get("PATH", "").startswith(prefix):
        environ["PATH"] = prefix + os.pathsep + environ.get("PATH", "")


def built_binary(name: str) -> Path:
    """The path of one upstream binary (amtool, promtool, ...); UpstreamError naming `make upstream` if not built.

    Found by the pin's hash alone: reading the chart's version (a large values.yaml) would cost the
    preview a second; the pin equals the chart's version (version_problems, tests/ci/test_upstream.py)."""
    tool = next(t for t in TOOLS for b in t.binaries if b.name == name)
    for directory in sorted(cache_root().glob(f"{tool.name}-*-{tool.pin_hash()}")):
        if (directory / "built.json").is_file() and (directory / "bin" / name).is_file():
            return directory / "bin" / name
    raise UpstreamError(f"{name} is not built (upstream/{tool.name} pins {tool.module} {tool.pinned_module_version()}): "
                        "run `make upstream`")


def versions(group: str | None = "metrics") -> dict[str, str]:
    """binary name -> version, for reports."""
    return {b.name: t.version() for t in tools(group) for b in t.binaries}


def reported_versions(names: list[str]) -> dict[str, str]:
    """binary name -> the first line of what it says its version is (for the drill's report)."""
    found = {b.name: (t, b) for t in TOOLS for b in t.binaries}
    return {name: reported_version(found[name][0].bin_dir(), found[name][1]).splitlines()[0] for name in names}


def listing(selected: list[Tool]) -> list[str]:
    return [f"{b.name:18} {t.version():9} {t.bin_dir() / b.name}" for t in selected for b in t.binaries]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.upstream", description=__doc__.split("\n\n")[0])
    parser.add_argument("--group", choices=sorted({t.group for t in TOOLS}), action="append",
                        help="only this group of tools (repeatable; default: every tool)")
    parser.add_argument("--tool", choices=[t.name for t in TOOLS], action="append",
                        help="only this tool (repeatable), e.g. alertmanager for amtool alone")
    parser.add_argument("--check", action="store_true", help="compare the pins with the charts, build nothing")
    parser.add_argument("--path", action="store_true", help="print the bin directories as a PATH prefix")
    args = parser.parse_args(argv)
    selected = [t for t in TOOLS if (args.group is None or t.group in args.group)
                and (args.tool is None or t.name in args.tool)]
    try:
        if args.path:
            print(os.pathsep.join(str(t.bin_dir()) for t in selected))
            return 0
        problems = version_problems(selected)
        if args.check or problems:
            for problem in problems:
                print(f"error: {problem}", file=sys.stderr)
            return 1 if problems else 0
        ensure(selected)
    except UpstreamError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(listing(selected)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
