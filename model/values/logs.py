"""Loki: chart values derived from `logs` in the stack config.

The tenants are the one source of truth for everything multi-tenant: Loki's per-tenant
runtime overrides (limits, retention, per-namespace `retention_stream` rules), the gateway's
credentials (`htpasswd()`), the collector's sign-ins (model/values/traces.py) and Grafana's data
sources (`tenants()`). Pure: plain dicts, no Pulumi.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from model.facts import secrets
from model.config import Logs, LogsMode, Role, StackConfig
from model.values.helm import PROMETHEUS_SELECTOR_LABELS, resources
from model.hosts import K3S_LOCAL_PATH_STORAGE_CLASS, scheduling_for

TENANT_HEADER = "X-Scope-OrgID"

# Each tenant signs in at the gateway (basic auth, its name and a generated password); nginx then
# sets X-Scope-OrgID to the name it authenticated, replacing whatever header the client sent. The
# htpasswd file is this Secret's key, mounted by the chart at /etc/nginx/secrets/.htpasswd.
GATEWAY_AUTH_SECRET = "loki-gateway-htpasswd"
GATEWAY_HTPASSWD_KEY = ".htpasswd"
GATEWAY_TENANT_FROM_CREDENTIAL = f"proxy_set_header {TENANT_HEADER} $remote_user;"

# Loki's OTLP ingestion turns the resource attribute k8s.namespace.name into this index
# label; the retention rules select on it and the collector's file_log receiver sets it.
NAMESPACE_LABEL = "k8s_namespace_name"

# The object storage credentials reach Loki as environment variables from this Secret;
# the config holds only `${VAR}` references, expanded by Loki at start (-config.expand-env).
OBJECT_STORAGE_SECRET = "loki-object-storage"
ACCESS_KEY_ENV = "LOKI_S3_ACCESS_KEY_ID"
SECRET_KEY_ENV = "LOKI_S3_SECRET_ACCESS_KEY"
OBJECT_STORAGE_ENV = {ACCESS_KEY_ENV: secrets.LOKI_S3_ACCESS_KEY_ID, SECRET_KEY_ENV: secrets.LOKI_S3_SECRET_ACCESS_KEY}

# tsdb + v13 is what OTLP ingestion and structured metadata need. A later change of the
# store or object store must add a new period with a future `from` date, never edit this one.
SCHEMA_START = "2025-01-01"
COMPACTOR_DIR = "/var/loki/compactor"
# How often the compactor compacts and, with retention on, applies retention and deletes.
COMPACTION_INTERVAL = "10m"


@dataclass(frozen=True)
class Tenant:
    """A Loki tenant as clients address it."""

    name: str
    org_id: str  # the X-Scope-OrgID header value


RESULTS_CACHE_MB = 128


def tenants(logs: Logs) -> list[Tenant]:
    """Every tenant of the stack, for the collector's exporters and Grafana's data sources."""
    return [Tenant(name, name) for name in logs.tenants]


def htpasswd(passwords: dict[str, str]) -> str:
    """The gateway's htpasswd file: one `tenant:{SSHA}...` line per tenant (a scheme nginx verifies
    itself, whatever the image's crypt(3) supports). The salt comes from the password, so the file
    changes only when a password does."""
    lines = []
    for tenant, password in sorted(passwords.items()):
        if ":" in tenant or "\n" in tenant + password:
            raise ValueError(f"tenant {tenant!r}: a name or password with ':' or a newline cannot be an htpasswd line")
        salt = hashlib.sha256(f"{tenant}\0{password}".encode()).digest()[:8]
        digest = hashlib.sha1(password.encode() + salt).digest()
        lines.append(f"{tenant}:{{SSHA}}{base64.b64encode(digest + salt).decode()}\n")
    return "".join(lines)


def byte_size(megabytes: float) -> str:
    """Loki's byte-size syntax; whole megabytes stay readable, fractions go to KB."""
    return f"{int(megabytes)}MB" if float(megabytes).is_integer() else f"{round(megabytes * 1024)}KB"


def retention_streams(logs: Logs, tenant: str) -> list[dict]:
    return [
        {"selector": f'{{{NAMESPACE_LABEL}="{rule.namespace}"}}', "priority": 1, "period": rule.retention}
        for rule in logs.namespace_retention
        if rule.tenant == tenant
    ]


def tenant_overrides(logs: Logs) -> dict[str, dict]:
    """Loki's runtime overrides: each tenant's limits and retention (reloaded without restart)."""
    overrides = {}
    for name, t in logs.tenants.items():
        entry = {
            "ingestion_rate_mb": t.ingestion_rate_mb,
            "ingestion_burst_size_mb": t.ingestion_burst_size_mb,
            "per_stream_rate_limit": byte_size(t.per_stream_rate_limit_mb),
            "per_stream_rate_limit_burst": byte_size(t.per_stream_rate_limit_burst_mb),
            "max_global_streams_per_user": t.max_streams,
            "retention_period": t.retention or logs.default_retention,
        }
        streams = retention_streams(logs, name)
        if streams:
            entry["retention_stream"] = streams
        overrides[name] = entry
    return overrides


def _memcached_resources(allocated_mb: int) -> dict:
    # memcached needs its item memory plus connection buffers; a limit at the allocation OOMs it.
    return resources("100m", f"{allocated_mb + 64}Mi", f"{int(allocated_mb * 1.2) + 64}Mi")


def _pinned(selector: dict, tolerations: list) -> dict:
    return {"nodeSelector": selector, "tolerations": tolerations}


def _persistence(size_gb: int) -> dict:
    # A PVC outlives its pod, the StatefulSet and a scale-down: local-path deletes the data
    # with the claim, so the claim must never be deleted by Kubernetes on our behalf.
    return {
        "enabled": True,
        "size": f"{size_gb}Gi",
        "storageClass": K3S_LOCAL_PATH_STORAGE_CLASS,
        "enableStatefulSetAutoDeletePVC": True,
        "whenDeleted": "Retain",
        "whenScaled": "Retain",
    }


def loki_values(cfg: StackConfig) -> dict:
    logs = cfg.logs
    assert logs is not None
    scalable = logs.mode == LogsMode.SCALABLE
    store = "s3" if scalable else "filesystem"
    scheduling = scheduling_for(Role.LOKI)
    # One node holds every Loki pod in single-binary mode; the scale-out mode spreads over the cluster.
    pin = _pinned(scheduling.node_selector(), scheduling.tolerations()) if not scalable else {}
    chunks_cache_mb = max(logs.chunks_cache_mb, 64)

    values: dict = {
        "deploymentMode": "SimpleScalable" if scalable else "Monolithic",
        "loki": {
            "auth_enabled": True,
            "schemaConfig": {
                "configs": [{
                    "from": SCHEMA_START, "store": "tsdb", "object_store": store, "schema": "v13",
                    "index": {"prefix": "index_", "period": "24h"},
                }]
            },
            "storage": _storage(logs),
            "limits_config": {
                "retention_period": logs.default_retention,
                "allow_structured_metadata": True,
                "reject_old_samples": True,
                "reject_old_samples_max_age": "168h",
            },
            "runtimeConfig": {"overrides": tenant_overrides(logs)},
            "compactor": {
                "working_directory": COMPACTOR_DIR,
                "compaction_interval": COMPACTION_INTERVAL,
                "retention_enabled": True,
                # Deletion waits this long after marking, so a wrong rule can still be reverted.
                "retention_delete_delay": "2h",
                "retention_delete_worker_count": 150,
                "delete_request_store": store,
            },
        },
        "defaults": {**pin, "automountServiceAccountToken": False},
        "singleBinary": {"replicas": 0 if scalable else 1},
        # The chart starts 3 of each scalable target unless told otherwise.
        "read": {"replicas": 2 if scalable else 0},
        "write": {"replicas": 3 if scalable else 0},
        # The backend's own rules sidecar and token, off like the others' (see `sidecar` below).
        "backend": {"replicas": 2 if scalable else 0, "sidecar": False, "automountServiceAccountToken": False},
        "gateway": {
            "replicas": 1, **pin,
            "basicAuth": {"enabled": True, "existingSecret": GATEWAY_AUTH_SECRET},
            # The chart writes this directive only with loki.tenants in its values (passwords in
            # clear); ours live in the Secret above, so the snippet is set here, in every location.
            "nginxConfig": {"locationSnippet": GATEWAY_TENANT_FROM_CREDENTIAL},
            "resources": resources("50m", "64Mi", "256Mi"),
            "metrics": {"resources": resources("10m", "32Mi", "64Mi")},
            # nginx answers `/` itself (200, no auth): a hung worker is restarted.
            "livenessProbe": {"httpGet": {"path": "/", "port": "http"}, "periodSeconds": 30},
        },
        # The chart asks memcached for 8 GiB by default: more than the whole Loki VM.
        "chunksCache": {"enabled": logs.chunks_cache_mb > 0, "allocatedMemory": chunks_cache_mb,
                        "resources": _memcached_resources(chunks_cache_mb), **pin},
        "resultsCache": {"enabled": True, "allocatedMemory": RESULTS_CACHE_MB,
                         "resources": _memcached_resources(RESULTS_CACHE_MB), **pin},
        "memcachedExporter": {"resources": resources("10m", "32Mi", "64Mi")},
        # The sidecar would load ruler rules from ConfigMaps, of which the stack has none, through a
        # ClusterRole reading every Secret of the cluster; off, no pod of Loki needs an API token.
        "sidecar": {"rules": {"enabled": False}},
        "serviceAccount": {"automountServiceAccountToken": False},
        # The canary and its helm test push to a tenant of their own and need an agent; off.
        "lokiCanary": {"enabled": False},
        "test": {"enabled": False},
        "monitoring": {"serviceMonitor": {"enabled": True, "labels": dict(PROMETHEUS_SELECTOR_LABELS)}},
    }
    if scalable:
        values["defaults"]["extraArgs"] = ["-config.expand-env=true"]
        values["defaults"]["extraEnvFrom"] = [{"secretRef": {"name": OBJECT_STORAGE_SECRET}}]
        for target in ("write", "backend"):
            values[target]["persistence"] = _persistence(logs.storage_gb)
        for target in ("read", "write", "backend"):
            values[target]["resources"] = resources("250m", "512Mi", "2Gi")
    else:
        values["loki"]["commonConfig"] = {"replication_factor": 1}
        values["singleBinary"].update({
            "persistence": _persistence(logs.storage_gb),
            "resources": resources("500m", "1Gi", "3Gi"),
        })
    return values


def _storage(logs: Logs) -> dict:
    if logs.object_storage is None:
        return {"type": "filesystem"}
    s3 = logs.object_storage
    return {
        "type": "s3",
        "bucketNames": {"chunks": s3.buckets.chunks, "ruler": s3.buckets.ruler},
        "s3": {
            "endpoint": s3.endpoint,
            "region": s3.region,
            "accessKeyId": f"${{{ACCESS_KEY_ENV}}}",
            "secretAccessKey": f"${{{SECRET_KEY_ENV}}}",
            "s3ForcePathStyle": s3.force_path_style,
            "insecure": s3.insecure,
        },
    }
