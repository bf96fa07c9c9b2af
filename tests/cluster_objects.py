"""The stack's Kubernetes objects as a cluster would hold them: what Helm renders for each release,
what the program creates itself (recorded by the offline preview), and the pods they make."""

from __future__ import annotations

from dataclasses import dataclass, field

from tools.manifests import HELM_RELEASE_TYPE

WORKLOAD_KINDS = ("Deployment", "StatefulSet", "DaemonSet", "CronJob", "Job")


def own_objects(recording) -> list[dict]:
    """Every Kubernetes object the program registers itself (not through a Helm release), as a manifest.
    Secrets keep their keys, never their values."""
    found = []
    for resource in recording.resources:
        if not resource.custom or not resource.type.startswith("kubernetes:") or resource.type == HELM_RELEASE_TYPE:
            continue
        manifest = dict(resource.inputs)
        for key in ("stringData", "data"):
            if manifest.get("kind") == "Secret" and isinstance(manifest.get(key), dict):
                manifest[key] = {k: "redacted" for k in manifest[key]}
        found.append(manifest)
    return found


def chart_objects(stack_manifests) -> list[dict]:
    """Every object Helm renders, with the namespace the release installs it in where it names none."""
    found = []
    for name, release in stack_manifests.releases.items():
        for m in release.manifests:
            obj = dict(m.object)
            obj["metadata"] = {"namespace": release.release.namespace, **obj.get("metadata", {})}
            found.append(obj)
    return found


@dataclass(frozen=True)
class Pod:
    """A workload's pods: where they run, their labels, their containers' named ports."""

    name: str
    namespace: str
    labels: dict = field(hash=False)
    ports: dict = field(hash=False, default_factory=dict)  # port name -> (number, protocol)
    host_network: bool = False


def pod_spec(obj: dict) -> tuple[dict, dict] | None:
    """(pod template metadata, pod spec) of a workload object."""
    if obj.get("kind") not in WORKLOAD_KINDS:
        return None
    spec = obj["spec"]
    if obj["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    template = spec["template"]
    return template.get("metadata") or {}, template["spec"]


def pods(objects: list[dict]) -> dict[str, Pod]:
    found = {}
    for obj in objects:
        found_spec = pod_spec(obj)
        if not found_spec:
            continue
        metadata, spec = found_spec
        ports = {p.get("name", str(p["containerPort"])): (p["containerPort"], p.get("protocol", "TCP"))
                 for c in spec.get("containers", []) for p in c.get("ports", [])}
        found[obj["metadata"]["name"]] = Pod(obj["metadata"]["name"], obj["metadata"]["namespace"],
                                             dict(metadata.get("labels") or {}), ports, bool(spec.get("hostNetwork")))
    return found
