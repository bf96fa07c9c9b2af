"""Pod Security Admission: the level each namespace of the stack enforces, and the container
security context every workload of ours runs with.

`restricted` is the rule. A namespace holds a lower level only because one of its workloads
needs the host, and HOST_ACCESS says which workload and why: that is the one place a waiver of
Pod Security is written. Every namespace also warns and audits at `restricted`, so a pod that
falls short of it is named by the API server even where the enforced level lets it run.
Pure: plain dicts, no Pulumi.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.config import StackConfig
from model.facts.endpoints import COLLECTOR_RELEASE, KUBE_PROMETHEUS_RELEASE, TRACES_NAMESPACE

RESTRICTED, BASELINE, PRIVILEGED = "restricted", "baseline", "privileged"
_ORDER = (RESTRICTED, BASELINE, PRIVILEGED)
LABEL_PREFIX = "pod-security.kubernetes.io"
# The policy version follows the cluster's Kubernetes: the level means what the running API server says.
LEVEL_VERSION = "latest"


@dataclass(frozen=True)
class HostAccess:
    """A workload (its DaemonSet's name) that cannot run `restricted`, the level it needs and why."""

    workload: str
    level: str
    reason: str


def host_access(cfg: StackConfig) -> dict[str, list[HostAccess]]:
    """Namespace -> the workloads in it that need more than `restricted`."""
    found: dict[str, list[HostAccess]] = {}

    def add(namespace: str, access: HostAccess) -> None:
        found.setdefault(namespace, []).append(access)

    # kube-prometheus-stack always deploys node-exporter beside Prometheus.
    add(cfg.metrics.namespace, HostAccess(
        f"{KUBE_PROMETHEUS_RELEASE}-prometheus-node-exporter", PRIVILEGED,
        "reads the node's /proc, /sys and root filesystem (hostPath) in the host's network and PID "
        "namespaces: the node's own metrics exist nowhere else"))
    if cfg.traces:
        add(TRACES_NAMESPACE, HostAccess(
            f"{COLLECTOR_RELEASE}-agent", PRIVILEGED,
            "reads every pod's log files from the node (hostPath /var/log/pods, as root: the kubelet writes "
            "them 0640 root), keeps its read offsets on the node (hostPath) and takes OTLP and the NAS' "
            "syslog on each node's hostPort"))
    return found


def level(cfg: StackConfig, namespace: str) -> str:
    needs = [access.level for access in host_access(cfg).get(namespace, [])]
    return max([RESTRICTED, *needs], key=_ORDER.index)


def namespace_labels(cfg: StackConfig, namespace: str) -> dict[str, str]:
    """The Pod Security Admission labels of one of the stack's namespaces."""
    labels = {f"{LABEL_PREFIX}/enforce": level(cfg, namespace), f"{LABEL_PREFIX}/enforce-version": LEVEL_VERSION}
    for mode in ("warn", "audit"):
        labels[f"{LABEL_PREFIX}/{mode}"] = RESTRICTED
        labels[f"{LABEL_PREFIX}/{mode}-version"] = LEVEL_VERSION
    return labels


# --- the security context of a container that needs nothing of the host ----------------------

RUNTIME_DEFAULT_SECCOMP = {"type": "RuntimeDefault"}
# `nobody`, the user the exporters' busybox and distroless images run as; the charts' 1000 is
# a user of no image. Set on the container too, where a chart's default would override the pod's.
NOBODY = 65534


def pod_security_context(user: int, group: int | None = None, fs_group: int | None = None) -> dict:
    context = {"runAsNonRoot": True, "runAsUser": user, "runAsGroup": user if group is None else group,
               "seccompProfile": RUNTIME_DEFAULT_SECCOMP}
    if fs_group is not None:
        context["fsGroup"] = fs_group
    return context


def with_cpu_limit(resources: dict, cpu: str) -> dict:
    """The stack's own workloads carry a CPU limit as well (checkov CKV_K8S_11): they are small and
    bursty, and a limit keeps a runaway off the node Prometheus shares."""
    return {**resources, "limits": {**resources.get("limits", {}), "cpu": cpu}}


def container_security_context(read_only_root: bool = True, user: int | None = None) -> dict:
    """`restricted` and then some: no privilege escalation, no capability, a read-only image."""
    context: dict = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": read_only_root,
                     "capabilities": {"drop": ["ALL"]}, "seccompProfile": RUNTIME_DEFAULT_SECCOMP}
    if user is not None:
        context.update(runAsNonRoot=True, runAsUser=user, runAsGroup=user)
    return context
