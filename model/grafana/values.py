"""The Grafana chart's values: credentials from our Secret, data on our protected claim."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlparse

from model.config import Grafana, Role
from model.pod_security import RUNTIME_DEFAULT_SECCOMP
from model.hosts import scheduling_for

ADMIN_SECRET = "grafana-admin"
DATA_CLAIM = "grafana-data"
ADMIN_USER_KEY = "admin-user"
ADMIN_PASSWORD_KEY = "admin-password"


def certificate(cfg: Grafana) -> dict[str, Any] | None:
    """The cert-manager Certificate of grafana.url's host, issued into the ingress's TLS Secret."""
    if cfg.tls is None or cfg.tls.cert_manager is None:
        return None
    issuer = cfg.tls.cert_manager
    return {
        "apiVersion": "cert-manager.io/v1",
        "kind": "Certificate",
        "metadata": {"name": cfg.tls_secret_name, "namespace": cfg.namespace},
        "spec": {
            "secretName": cfg.tls_secret_name,
            "dnsNames": [urlparse(cfg.url).hostname],
            "issuerRef": {"group": "cert-manager.io", "kind": issuer.issuer_kind.value, "name": issuer.issuer},
        },
    }


def grafana_values(cfg: Grafana) -> dict[str, Any]:
    """The chart's values: credentials from our Secret, data on our protected claim."""
    scheduling = scheduling_for(Role.PROMETHEUS)  # Grafana shares the metrics host
    host = urlparse(cfg.url).hostname
    ingress: dict[str, Any] = {"enabled": True, "ingressClassName": cfg.ingress_class, "hosts": [host], "path": "/", "pathType": "Prefix"}
    if cfg.tls_secret_name:
        ingress["tls"] = [{"secretName": cfg.tls_secret_name, "hosts": [host]}]
    return {
        "admin": {"existingSecret": ADMIN_SECRET, "userKey": ADMIN_USER_KEY, "passwordKey": ADMIN_PASSWORD_KEY},
        # The claim is ours (protected, kept on delete), not the chart's.
        "persistence": {"enabled": True, "type": "pvc", "existingClaim": DATA_CLAIM},
        # A ReadWriteOnce volume cannot be mounted by old and new pod at once.
        "deploymentStrategy": {"type": "Recreate"},
        "nodeSelector": scheduling.node_selector(),
        "tolerations": scheduling.tolerations(),
        "ingress": ingress,
        "grafana.ini": {
            "server": {"root_url": cfg.url.rstrip("/") + "/", "domain": host},
            "analytics": {"check_for_updates": False, "reporting_enabled": False},
            "users": {"allow_sign_up": False},
            "unified_alerting": {"enabled": True},
        },
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        # Its chown runs as root with CHOWN and DAC_OVERRIDE, which `restricted` refuses; fsGroup
        # (472, the chart's) already gives Grafana the volume.
        "initChownData": {"enabled": False},
        "securityContext": {"seccompProfile": RUNTIME_DEFAULT_SECCOMP},
        # Grafana talks to its own API only; nothing in the pod reads the Kubernetes API.
        "automountServiceAccountToken": False,
    }
