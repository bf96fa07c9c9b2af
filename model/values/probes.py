"""The blackbox exporter chart's values: the probe modules of model/probes.py, beside Prometheus."""

from __future__ import annotations

from model.config import Role, StackConfig
from model.facts.endpoints import BLACKBOX_EXPORTER_PORT
from model.hosts import scheduling_for
from model.pod_security import NOBODY, container_security_context, pod_security_context
from model.probes import blackbox_config
from model.values.helm import resources


def blackbox_exporter_values(cfg: StackConfig) -> dict:
    """The chart's values: our modules, beside Prometheus on the observability nodes."""
    s = scheduling_for(Role.PROMETHEUS)
    return {
        "nodeSelector": s.node_selector(),
        "tolerations": s.tolerations(),
        # Helm merges maps, so the chart's own http_2xx (ip4 too) stays beside ours; a null
        # would remove it, but Pulumi drops nulls from a release's values before Helm sees them.
        "config": blackbox_config(cfg),
        "service": {"port": BLACKBOX_EXPORTER_PORT},
        # Scraped through the probe jobs above (one per target); no ServiceMonitor needed.
        "serviceMonitor": {"enabled": False, "selfMonitor": {"enabled": False}},
        "resources": resources("10m", "32Mi", "64Mi"),
        "podSecurityContext": pod_security_context(NOBODY),
        "securityContext": container_security_context(user=NOBODY),
    }
