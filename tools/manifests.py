"""What Helm will deploy: `helm template` of every release the offline preview recorded.

    python -m tools.manifests --stack-file Pulumi.homelab.yaml     # after tools.preview
    python -m tools.manifests --stack homelab --charts path/to/chart-mirror

Reads the releases (chart, version, repository, release name, namespace, values) from
build/<stack>/resources.json, the one record of what the program registers, and writes
build/<stack>/manifests/<release>.yaml plus index.json (objects per kind, subcharts that could
not be rendered). A chart is taken from the chart mirror, <mirror>/<chart>-<version>/, when that
directory exists (--charts, else $CHART_MIRROR, else ../shared/charts beside the repository when
present); otherwise `helm pull` fetches the release's version from its repository into
build/charts/ and the archive must carry the sha256 vendor/charts.json pins.

A local chart whose Chart.yaml names a subchart that is not vendored under charts/ is rendered
from a copy: the subchart is vendored from --charts/<name>-<version>/ when that exists, else
dropped from the copy's Chart.yaml. Dropping a subchart that is switched off changes nothing
(Helm removes disabled subcharts before rendering); one that is switched on is rendered with
its condition set to false, and every such gap is named in the file's header, index.json and
the command's output: never silently.
"""

from __future__ import annotations

import argparse
import copy
import fnmatch
import functools
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
# The chart mirror of this team's machines, used when present; CHART_MIRROR names another.
CHARTS = ROOT.parent / "shared" / "charts"
# sha256 of each chart archive, as its repository's index.yaml publishes it: what `helm pull` must bring.
CHART_DIGESTS = ROOT / "vendor" / "charts.json"
PULLED_CHARTS = ROOT / "build" / "charts"
HELM_RELEASE_TYPE = "kubernetes:helm.sh/v3:Release"
# The Kubernetes version the manifests are rendered (Capabilities.KubeVersion) and validated for.
KUBERNETES_VERSION = "1.35.0"


class _Loader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml: the CRDs are megabytes
    pass


# YAML 1.1's "value" type: PyYAML has no constructor for a plain `=` (CRDs list it in enums).
_Loader.add_constructor("tag:yaml.org,2002:value", lambda loader, node: loader.construct_scalar(node))


def helm_binary() -> str:
    """The Helm that `make helm` installs beside the venv's python, else one on PATH."""
    beside = Path(sys.executable).parent / "helm"
    found = str(beside) if beside.is_file() else shutil.which("helm")
    if not found:
        raise RenderError("helm is not installed: run `make helm` (scripts/install-helm.sh)")
    return found


class RenderError(Exception):
    pass


class ChartUnavailable(RenderError):
    """A chart is in no mirror and cannot be pulled (or is not the archive pinned): one line, how to get it."""


def default_mirror() -> Path | None:
    """$CHART_MIRROR when set, else ../shared/charts when it exists, else none (charts are pulled)."""
    if os.environ.get("CHART_MIRROR"):
        return Path(os.environ["CHART_MIRROR"])
    return CHARTS if CHARTS.is_dir() else None


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pulled_chart(release: "Release", cache: Path | None = None) -> Path:
    """The release's chart archive, pulled once by Helm into `cache` (build/charts/) and checked
    against its pinned digest."""
    cache = cache or PULLED_CHARTS
    archive = f"{release.chart}-{release.version}.tgz"
    how = f"set CHART_MIRROR to a directory holding {release.chart}-{release.version}/"
    pinned = json.loads(CHART_DIGESTS.read_text()).get(archive)
    if pinned is None:
        raise ChartUnavailable(f"chart {archive} is in no chart mirror and has no digest pinned in "
                               f"{CHART_DIGESTS.relative_to(ROOT)} to verify a pull against: {how}, or pin the "
                               f"sha256 its repository's index.yaml publishes")
    target = cache / archive
    if target.is_file() and _sha256(target) == pinned:
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache, prefix="pull-") as workdir:
        result = subprocess.run([helm_binary(), "pull", release.chart, "--repo", str(release.repository),
                                 "--version", release.version, "--destination", workdir],
                                capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            reason = (result.stderr.strip().splitlines() or [f"exit status {result.returncode}"])[-1]
            raise ChartUnavailable(f"chart {release.chart} {release.version} is in no chart mirror and `helm pull` "
                                   f"from {release.repository} failed ({reason.removeprefix('Error: ')}): {how}, "
                                   f"or let this machine reach the repository")
        pulled = Path(workdir) / archive
        digest = _sha256(pulled) if pulled.is_file() else "no archive"
        if digest != pinned:
            raise ChartUnavailable(f"chart {archive} from {release.repository} is not the archive pinned in "
                                   f"{CHART_DIGESTS.relative_to(ROOT)} (sha256 {digest}, pinned {pinned}): refusing it")
        os.replace(pulled, target)
    return target


# --- Helm's values semantics ----------------------------------------------------------------

def coalesce(defaults: Any, overrides: Any) -> Any:
    """Helm's merge of user values over chart defaults: maps merge, anything else is replaced."""
    if isinstance(defaults, dict) and isinstance(overrides, dict):
        merged = copy.deepcopy(defaults)
        for key, value in overrides.items():
            if value is None:
                merged.pop(key, None)  # a null deletes the default
            else:
                merged[key] = coalesce(defaults.get(key), value)
        return merged
    return copy.deepcopy(overrides)


def _lookup(values: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(values, dict) or part not in values:
            return None
        values = values[part]
    return values


def condition_holds(condition: str | None, values: dict) -> bool:
    """Helm's `condition:` of a dependency: the first of its comma-separated paths that is a bool."""
    for path in (condition or "").split(","):
        value = _lookup(values, path.strip()) if path.strip() else None
        if isinstance(value, bool):
            return value
    return True


def _nested(path: str, value: Any) -> dict:
    doc: Any = value
    for part in reversed(path.split(".")):
        doc = {part: doc}
    return doc


# --- releases and charts --------------------------------------------------------------------

@dataclass(frozen=True)
class Release:
    name: str
    chart: str
    version: str
    repository: str | None
    namespace: str
    values_json: str  # canonical JSON, so a Release is hashable (one render per distinct release)

    @property
    def values(self) -> dict:
        return json.loads(self.values_json)

    @classmethod
    def of(cls, name: str, chart: str, version: str, repository: str | None, namespace: str,
           values: dict | None) -> "Release":
        return cls(name, chart, version, repository, namespace, json.dumps(values or {}, sort_keys=True))


def releases_of(resources: dict) -> list[Release]:
    """The Helm releases in a resources.json document (tools.preview), in its stable order."""
    found = []
    for resource in resources["resources"]:
        if resource["type"] != HELM_RELEASE_TYPE:
            continue
        i = resource["inputs"]
        found.append(Release.of(i.get("name") or resource["name"], i["chart"], i["version"],
                                (i.get("repositoryOpts") or {}).get("repo"), i.get("namespace") or "default",
                                i.get("values")))
    return found


@dataclass(frozen=True)
class Subchart:
    """A dependency in Chart.yaml that is not vendored in the chart's charts/ directory."""

    name: str
    version: str
    condition: str | None
    enabled: bool  # by the release's values (and the chart's defaults)
    vendored_from: str | None  # the directory it was taken from, None when it is absent

    @property
    def not_rendered(self) -> bool:
        return self.enabled and self.vendored_from is None


def _chart_yaml(directory: Path) -> dict:
    return yaml.load((directory / "Chart.yaml").read_text(), Loader=_Loader)


def _vendored_names(chart_dir: Path) -> set[str]:
    names = set()
    for entry in (chart_dir / "charts").glob("*") if (chart_dir / "charts").is_dir() else ():
        if entry.is_dir() and (entry / "Chart.yaml").is_file():
            names.add(_chart_yaml(entry)["name"])
        elif entry.name.endswith(".tgz"):
            names.add(entry.name[:-4].rsplit("-", 1)[0])
    return names


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else -1 for p in version.split("-")[0].split("."))


def find_chart(charts: Path, name: str, constraint: str) -> Path | None:
    """charts/<name>-<version>/ for an exact version or a wildcard such as 0.12.* (highest wins)."""
    pattern = constraint.replace(".x", ".*")
    matches = [d for d in charts.glob(f"{name}-*") if (d / "Chart.yaml").is_file()
               and d.name[len(name) + 1:][:1].isdigit() and fnmatch.fnmatchcase(d.name[len(name) + 1:], pattern)]
    return max(matches, key=lambda d: _version_key(d.name[len(name) + 1:]), default=None)


def missing_subcharts(chart_dir: Path, values: dict, charts: Path) -> list[Subchart]:
    meta = _chart_yaml(chart_dir)
    present = _vendored_names(chart_dir)
    effective = coalesce(yaml.load((chart_dir / "values.yaml").read_text(), Loader=_Loader) or {}, values)
    found = []
    for dep in meta.get("dependencies") or []:
        if dep["name"] in present:
            continue
        source = find_chart(charts, dep["name"], str(dep.get("version", "")))
        found.append(Subchart(dep["name"], str(dep.get("version", "")), dep.get("condition"),
                              condition_holds(dep.get("condition"), effective),
                              os.path.relpath(source, ROOT) if source else None))
    return found


def _prepared_copy(chart_dir: Path, subcharts: list[Subchart], workdir: Path) -> Path:
    """The chart with vendorable subcharts copied in and absent ones removed from Chart.yaml."""
    # Links, not copies: the chart directories are megabytes, and Helm follows links.
    copy_dir = workdir / chart_dir.name
    (copy_dir / "charts").mkdir(parents=True)
    for entry in chart_dir.iterdir():
        if entry.name not in ("Chart.yaml", "charts"):
            (copy_dir / entry.name).symlink_to(entry)
    for entry in (chart_dir / "charts").iterdir() if (chart_dir / "charts").is_dir() else ():
        (copy_dir / "charts" / entry.name).symlink_to(entry)
    for sub in subcharts:
        if sub.vendored_from:
            (copy_dir / "charts" / sub.name).symlink_to((ROOT / sub.vendored_from).resolve())
    absent = {s.name for s in subcharts if not s.vendored_from}
    meta = _chart_yaml(chart_dir)
    meta["dependencies"] = [d for d in meta.get("dependencies") or [] if d["name"] not in absent]
    (copy_dir / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return copy_dir


# --- rendering ------------------------------------------------------------------------------

@dataclass
class Manifest:
    """One object of a rendered release and the template it came from."""

    source: str
    object: dict

    @property
    def kind(self) -> str:
        return self.object.get("kind", "")

    @property
    def label(self) -> str:
        meta = self.object.get("metadata") or {}
        namespace = f"{meta['namespace']}/" if meta.get("namespace") else ""
        return f"{self.kind} {namespace}{meta.get('name')} ({self.source})"


@dataclass
class RenderedRelease:
    release: Release
    text: str
    command: list[str]
    chart_source: str
    subcharts: list[Subchart] = field(default_factory=list)

    @functools.cached_property
    def documents(self) -> list[tuple[str, str, str]]:
        """(source template, kind, text) of every non-empty document, unparsed."""
        found, source = [], "?"
        for document in re.split(r"(?m)^---[ \t]*\n", self.text):  # keeps each block scalar's newline
            # A template file may hold several documents; its Source comment heads the first.
            source = next((line[len("# Source: "):] for line in document.splitlines()
                           if line.startswith("# Source: ")), source)
            kind = _TOP_LEVEL_KIND.search(document)
            if kind or any(line.strip() and not line.startswith("#") for line in document.splitlines()):
                found.append((source, kind.group(1) if kind else "", document))  # kindless: tests fail on it
        return found

    @functools.cached_property
    def manifests(self) -> list[Manifest]:
        return [Manifest(source, obj) for source, _, text in self.documents
                if (obj := yaml.load(text, Loader=_Loader))]

    def objects_of(self, kinds: set[str]) -> list[dict]:
        """The objects of these kinds only: parsing megabytes of CRDs is most of the cost."""
        if "manifests" in self.__dict__:
            return [m.object for m in self.manifests if m.kind in kinds]
        return [obj for _, kind, text in self.documents if kind in kinds and (obj := yaml.load(text, Loader=_Loader))]

    @property
    def objects(self) -> list[dict]:
        return [m.object for m in self.manifests]

    @property
    def not_rendered(self) -> list[Subchart]:
        return [s for s in self.subcharts if s.not_rendered]

    def counts(self) -> dict[str, int]:
        """Objects per kind, from each document's top-level `kind:` line (no YAML parse). Helm
        writes top-level keys at column 0, and a block scalar's lines never start there."""
        counts: dict[str, int] = {}
        for _, kind, _ in self.documents:
            counts[kind] = counts.get(kind, 0) + 1
        return dict(sorted(counts.items()))


_TOP_LEVEL_KIND = re.compile(r"^kind:[ \t]*['\"]?([\w.-]+)", re.M)


def _display(command: list[str], workdir: str) -> list[str]:
    shown = [Path(c).name if i == 0 else c for i, c in enumerate(command)]
    return [c.replace(workdir, "<tmp>") for c in shown]


@functools.lru_cache(maxsize=64)
def render(release: Release, charts: Path | None = CHARTS, fetch: bool = False,
           kube_version: str = KUBERNETES_VERSION) -> RenderedRelease:
    """`helm template` of one release as Helm would install it (CRDs included, test hooks not).

    A chart not in the mirror `charts` is pulled from the release's repository and verified
    (pulled_chart) only when `fetch`; offline callers get a RenderError instead. Cached per release.
    """
    helm = helm_binary()
    with tempfile.TemporaryDirectory(prefix=f"manifests-{release.name}-") as workdir:
        values_file = Path(workdir) / "values.json"  # JSON is YAML: the values exactly as recorded
        values_file.write_text(release.values_json)
        local = charts / f"{release.chart}-{release.version}" if charts else None
        subcharts: list[Subchart] = []
        overrides: dict = {}
        if local is not None and local.is_dir():
            chart_ref, chart_source = str(local), os.path.relpath(local, ROOT)
            subcharts = missing_subcharts(local, release.values, charts)
            if subcharts:
                chart_ref = str(_prepared_copy(local, subcharts, Path(workdir)))
            for sub in subcharts:
                if sub.not_rendered and sub.condition:
                    overrides = coalesce(overrides, _nested(sub.condition.split(",")[0].strip(), False))
            extra: list[str] = []
        elif release.repository and fetch:
            archive = pulled_chart(release)
            chart_ref, chart_source = str(archive), f"{release.repository} (helm pull, sha256 verified)"
            extra = []
        else:
            raise RenderError(f"release {release.name}: no chart directory {local or 'in a chart mirror'}"
                              + ("" if release.repository else " and no repository to fetch it from")
                              + ("" if fetch else " (fetching from the repository is off)"))
        command = [helm, "template", release.name, chart_ref, "--namespace", release.namespace,
                   "--include-crds", "--skip-tests", "--kube-version", kube_version, *extra, "--values", str(values_file)]
        if overrides:
            override_file = Path(workdir) / "absent-subcharts.json"
            override_file.write_text(json.dumps(overrides))
            command += ["--values", str(override_file)]
        result = subprocess.run(command, capture_output=True, text=True, timeout=300)
        if result.returncode != 0:
            # Helm notes every link of a prepared copy; only its error says what went wrong.
            stderr = "\n".join(line for line in result.stderr.splitlines() if "found symbolic link" not in line)
            raise RenderError(f"helm template of release {release.name} ({release.chart} {release.version}) "
                              f"failed:\n{stderr.strip()}")
        return RenderedRelease(release, result.stdout, _display(command, workdir), chart_source, subcharts)


def render_all(releases: list[Release], charts: Path | None = CHARTS, fetch: bool = False,
               jobs: int | None = None) -> list[RenderedRelease]:
    """Every release, Helm processes in parallel (one per core); results in the releases' order."""
    with ThreadPoolExecutor(max_workers=jobs or os.cpu_count() or 2) as pool:
        return list(pool.map(lambda r: render(r, charts, fetch), releases))


# --- artifacts ------------------------------------------------------------------------------

def _header(rendered: RenderedRelease) -> str:
    r = rendered.release
    lines = [f"# Release {r.name}: chart {r.chart} {r.version} from {r.repository}, namespace {r.namespace}",
             f"# Chart: {rendered.chart_source}",
             "# Rendered by: " + " ".join(rendered.command),
             "# Objects: " + ", ".join(f"{n} {k}" for k, n in rendered.counts().items())]
    for sub in rendered.not_rendered:
        lines.append(f"# NOT RENDERED: subchart {sub.name} {sub.version} (switched on by {sub.condition}) is not "
                     f"in the chart directory; rendered with {sub.condition.split(',')[0]}=false, so its objects "
                     f"and what the parent chart gates on that switch are missing from this file.")
    return "\n".join(lines) + "\n"


def index_of(rendered: list[RenderedRelease]) -> dict:
    return {r.release.name: {
        "chart": r.release.chart, "version": r.release.version, "namespace": r.release.namespace,
        "chartSource": r.chart_source, "objects": r.counts(),
        "notRendered": [{"subchart": s.name, "version": s.version, "condition": s.condition}
                        for s in r.not_rendered],
        "droppedDisabled": [s.name for s in r.subcharts if not s.enabled and not s.vendored_from],
        "vendored": {s.name: s.vendored_from for s in r.subcharts if s.vendored_from},
    } for r in rendered}


def write_manifests(rendered: list[RenderedRelease], out: Path) -> Path:
    target = out / "manifests"
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(parents=True)
    for r in rendered:
        (target / f"{r.release.name}.yaml").write_text(_header(r) + r.text)
    (target / "index.json").write_text(json.dumps(index_of(rendered), indent=2, sort_keys=True) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default="homelab", help="stack name (build/<stack>/)")
    parser.add_argument("--stack-file", type=Path, help="Pulumi.<stack>.yaml: takes the stack name from it")
    parser.add_argument("--build", type=Path, default=ROOT / "build", help="build directory (default: build/)")
    parser.add_argument("--charts", type=Path, default=default_mirror(),
                        help="chart mirror: <chart>-<version>/ directories (default: $CHART_MIRROR, else "
                             "../shared/charts when it exists, else none: every chart is pulled)")
    parser.add_argument("--offline", action="store_true", help="never pull a chart that is not in the mirror")
    args = parser.parse_args(argv)
    stack = args.stack_file.name[len("Pulumi."):-len(".yaml")] if args.stack_file else args.stack
    out = args.build / stack
    resources = out / "resources.json"
    if not resources.is_file():
        print(f"error: {resources} is missing: run the offline preview first (make manifests does)", file=sys.stderr)
        return 2
    if args.charts is not None and not args.charts.is_dir():
        print(f"error: chart mirror {args.charts} does not exist (CHART_MIRROR or --charts)", file=sys.stderr)
        return 2
    started = time.perf_counter()
    try:
        rendered = render_all(releases_of(json.loads(resources.read_text())), args.charts, fetch=not args.offline)
    except ChartUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    target = write_manifests(rendered, out)
    for r in rendered:
        print(f"{r.release.name}: {sum(r.counts().values())} objects")
        for sub in r.not_rendered:
            print(f"  NOT RENDERED: subchart {sub.name} {sub.version} ({sub.condition}): not in {args.charts}")
    print(f"Wrote {target} in {time.perf_counter() - started:.2f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
