"""Policies over what a Helm release really deploys: its `helm template` output, not its values.

The values-level policies (policy/policies.py) see only what we override; a chart's own
defaults (kube-prometheus-stack's CRD upgrade job pulls busybox:latest) reach the cluster
unseen. `rendered_manifests` renders each release with the real chart (tools/manifests.py)
and checks every object the release would create:
- every container image carries a version tag or a digest, never `latest` or no tag at all;
- every container has requests.cpu, requests.memory and limits.memory, as do the pods the
  Prometheus operator creates (Prometheus, Alertmanager, ThanosRuler: spec.resources);
- no ConfigMap and no literal container env value holds a secret-looking value.

Charts come from `chartsDir` (default: ../shared/charts beside the repository) when the
chart's directory is there; with `fetchCharts` (default true, for the real engine, which
fetches the chart anyway) Helm downloads it from the release's repository. Offline callers
(the tests) set fetchCharts to false; a chart that can then not be rendered is a violation.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pulumi_policy import PolicyConfigSchema, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy

from policy import credentials
from policy.policies import HELM_TYPES, UNKNOWN, Unknown, _config, _image_string_problem, _resources_problem, plain
from tools import manifests

POD_TEMPLATE_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
# Custom resources the Prometheus operator turns into pods: image and resources in their spec.
OPERATOR_WORKLOAD_KINDS = {"Prometheus", "Alertmanager", "ThanosRuler", "PrometheusAgent"}
CONTAINER_LISTS = ("initContainers", "containers", "ephemeralContainers")
CHECKED_KINDS = POD_TEMPLATE_KINDS | OPERATOR_WORKLOAD_KINDS | {"Pod", "CronJob", "ConfigMap"}
DEFAULTS = {"chartsDir": str(manifests.CHARTS), "fetchCharts": True}


def pod_spec(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    """The pod spec of a workload object, None for objects that run no pods."""
    spec = obj.get("spec") if isinstance(obj.get("spec"), Mapping) else {}
    kind = obj.get("kind")
    if kind == "Pod":
        return spec
    if kind == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
        kind = "Job"
    if kind in POD_TEMPLATE_KINDS:
        return ((spec.get("template") or {}).get("spec")) or {}
    return None


def containers(obj: Mapping[str, Any]) -> Iterator[tuple[str, Mapping[str, Any]]]:
    """(path, container) of every container an object runs, the operator's CRs included."""
    spec = pod_spec(obj)
    prefix = "spec.template.spec" if obj.get("kind") != "Pod" else "spec"
    if spec is None and obj.get("kind") in OPERATOR_WORKLOAD_KINDS:
        spec, prefix = obj.get("spec") or {}, "spec"
    if obj.get("kind") == "CronJob":
        prefix = "spec.jobTemplate.spec.template.spec"
    for key in CONTAINER_LISTS:
        for i, container in enumerate((spec or {}).get(key) or []):
            if isinstance(container, Mapping):
                yield f"{prefix}.{key}[{i}]", container


def object_label(obj: Mapping[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{obj.get('kind')} {meta.get('name')}"


def object_problems(obj: Mapping[str, Any]) -> Iterator[str]:
    """What is wrong with one rendered object, each problem with its path and fix."""
    for path, container in containers(obj):
        image = container.get("image")
        if isinstance(image, str) and image.strip():
            for where, problem in _image_string_problem(image.strip(), f"{path}.image"):
                yield f"{where}: {problem}. Fix: pin the image's tag in the release's values."
        elif obj.get("kind") not in OPERATOR_WORKLOAD_KINDS:  # the operator fills its own images in
            yield f"{path}: has no image"
        problem = _resources_problem(container.get("resources"))
        if problem and obj.get("kind") not in OPERATOR_WORKLOAD_KINDS:
            yield f"{path}.resources {problem}. Fix: set them in the release's values."
        env = {e.get("name"): e.get("value") for e in container.get("env") or []
               if isinstance(e, Mapping) and isinstance(e.get("value"), str)}
        for finding in credentials.scan(env, f"{path}.env"):
            yield f"{finding}. Fix: use valueFrom.secretKeyRef."
    if obj.get("kind") in OPERATOR_WORKLOAD_KINDS:
        spec = obj.get("spec") or {}
        image = spec.get("image")
        if isinstance(image, str):
            for where, problem in _image_string_problem(image, "spec.image"):
                yield f"{where}: {problem}. Fix: pin the image's tag in the release's values."
        problem = _resources_problem(spec.get("resources"))
        if problem:
            yield f"spec.resources {problem}. Fix: set them in the release's values."
    if obj.get("kind") == "ConfigMap":
        for finding in credentials.scan(obj.get("data") or {}, "data"):
            yield f"{finding}. Fix: move it into a Secret and reference it by path."


def manifest_problems(objects: list[Mapping[str, Any]]) -> Iterator[tuple[str, str]]:
    """(object, problem) for every problem of every rendered object."""
    for obj in objects:
        for problem in object_problems(obj):
            yield object_label(obj), problem


def _has_unknown(value: Any) -> bool:
    if isinstance(value, Unknown):
        return True
    if isinstance(value, Mapping):
        return any(_has_unknown(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_unknown(v) for v in value)
    return False


def rendered_manifests(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
    if args.resource_type not in HELM_TYPES:
        return
    props = plain(args.props)
    if _has_unknown(props) or props is UNKNOWN:
        return  # rendered once the engine knows every input
    cfg = _config(args, DEFAULTS)
    chart, version = props.get("chart"), props.get("version")
    if not isinstance(chart, str) or not isinstance(version, str):
        return  # helm-chart-pinned reports a release without a pinned chart
    name = props.get("name") if isinstance(props.get("name"), str) else args.name
    repository = (props.get("repositoryOpts") or {}).get("repo") if isinstance(props.get("repositoryOpts"), Mapping) else None
    release = manifests.Release.of(name, chart, version, repository, props.get("namespace") or "default",
                                   props.get("values") if isinstance(props.get("values"), dict) else {})
    label = f"Helm release '{name}' (chart {chart} {version})"
    try:
        # Positional, as render_all calls it: one cache entry per release for both.
        rendered = manifests.render(release, Path(cfg["chartsDir"]), bool(cfg["fetchCharts"]))
    except manifests.RenderError as error:
        report_violation(f"{label} cannot be rendered, so what it deploys is unchecked: {error}")
        return
    for what, problem in manifest_problems(rendered.objects_of(CHECKED_KINDS)):
        report_violation(f"{label} deploys {what}: {problem}")


def rendered_manifests_policy() -> ResourceValidationPolicy:
    return ResourceValidationPolicy(
        name="rendered-manifests", validate=rendered_manifests,
        description="What each Helm release renders: pinned images, requests and limits, no secrets in ConfigMaps or env.",
        config_schema=PolicyConfigSchema(properties={
            "chartsDir": {"type": "string", "default": DEFAULTS["chartsDir"],
                          "description": "Directory of local charts as <chart>-<version>/."},
            "fetchCharts": {"type": "boolean", "default": DEFAULTS["fetchCharts"],
                            "description": "Let Helm fetch a chart that is not in chartsDir from its repository."}}))
