"""The victoria-metrics-cluster chart's values for metrics.longTerm (model/long_term.py: the remote-write)."""

from __future__ import annotations

from typing import Any

from model.config import LongTermMetrics, Role, StackConfig, duration_seconds
from model.hosts import scheduling_for
from model.long_term import VMSTORAGE_VOLUME
from model.values.helm import resources
from model.pod_security import NOBODY, container_security_context, pod_security_context


def _component(cfg: StackConfig, replicas: int, cpu: str, memory: str, memory_limit: str, **extra: Any) -> dict:
    s = scheduling_for(Role.PROMETHEUS)
    return {"replicaCount": replicas, "nodeSelector": s.node_selector(), "tolerations": s.tolerations(),
            "resources": resources(cpu, memory, memory_limit),
            # The images run as root unless told; nobody, with the volume's group (fsGroup) for vmstorage.
            "podSecurityContext": {"enabled": True, **pod_security_context(NOBODY, fs_group=NOBODY)},
            "securityContext": {"enabled": True, **container_security_context(user=NOBODY)}, **extra}


def _spread(cfg: StackConfig, component: str) -> dict:
    """Preferred, not required: the homelab may have one metrics host, a larger site several."""
    labels = {"app.kubernetes.io/instance": cfg.endpoints().victoria_metrics.name, "app.kubernetes.io/component": component}
    return {"affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{
        "weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname",
                                           "labelSelector": {"matchLabels": labels}}}]}}}


def victoria_metrics_values(cfg: StackConfig) -> dict:
    """Values of the victoria-metrics-cluster chart for metrics.longTerm."""
    lt: LongTermMetrics = cfg.metrics.long_term  # type: ignore[assignment]
    # Both replicas of a pair write every sample: one per scrape interval is kept.
    dedup = {"dedup.minScrapeInterval": f"{duration_seconds(cfg.metrics.scrape_interval)}s"}
    volume: dict[str, Any] = {"enabled": True, "name": VMSTORAGE_VOLUME, "size": f"{lt.storage.size_gb}Gi"}
    if lt.storage.storage_class:
        volume["storageClassName"] = lt.storage.storage_class
    return {
        # No component reads the Kubernetes API.
        "serviceAccount": {"automountToken": False},
        "vminsert": _component(cfg, lt.vminsert_replicas, "100m", "256Mi", "1Gi",
                               extraArgs={"replicationFactor": lt.replication_factor}, **_spread(cfg, "vminsert")),
        "vmselect": _component(cfg, lt.vmselect_replicas, "100m", "256Mi", "2Gi",
                               extraArgs={**dedup, "replicationFactor": lt.replication_factor},
                               **_spread(cfg, "vmselect")),
        "vmstorage": _component(
            cfg, lt.vmstorage_replicas, "250m", "1Gi", "4Gi", retentionPeriod=lt.retention,
            persistentVolume=volume, extraArgs=dedup,
            # One vmstorage at a time during node drains: with replicationFactor 1 its series are
            # unreadable meanwhile, but never lost (the data stays on its volume).
            podDisruptionBudget={"enabled": True, "maxUnavailable": 1},
            **_spread(cfg, "vmstorage")),
    }
