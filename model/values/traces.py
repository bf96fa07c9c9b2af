"""Tempo and the OpenTelemetry Collector: chart values derived from `traces` and `logs`.

The collector is the one entry point for telemetry. It runs as a DaemonSet, because pod logs
can only be read on the node that writes them:
- OTLP gRPC/HTTP (the API gateway's spans, and logs workloads push) on each node's hostPort;
- spans go to Tempo, and through the `spanmetrics` connector (before any sampling) become
  request, error and latency series that Prometheus scrapes;
- pod logs (file_log) go to Loki signed in as the kubernetes tenant, the NAS' syslog (hostPort on
  every node) as the syslog tenant: the gateway sets X-Scope-OrgID from the credential.
Pure: plain dicts, no Pulumi.
"""

from __future__ import annotations

from model.facts import secrets
from model.config import ObjectStorage, Role, StackConfig, Traces, TracesMode, duration_hours
from model.facts.endpoints import COLLECTOR_RELEASE, OTLP_GRPC_PORT, OTLP_HTTP_PORT
from model.values.helm import PROMETHEUS_SELECTOR_LABELS, resources
from model.hosts import K3S_LOCAL_PATH_STORAGE_CLASS, scheduling_for
from model.pod_security import RUNTIME_DEFAULT_SECCOMP, container_security_context

COLLECTOR_IMAGE = "otel/opentelemetry-collector-contrib"

COLLECTOR_METRICS_PORT = 8888  # the collector's own telemetry
SPAN_METRICS_PORT = 8889

# The spanmetrics connector's namespace; with the histogram unit in ms the Prometheus exporter
# names the series traces_span_metrics_calls_total and
# traces_span_metrics_duration_milliseconds_{bucket,sum,count}, labelled service_name,
# span_name, span_kind, status_code and the configured dimensions (dots become underscores).
SPAN_METRICS_NAMESPACE = "traces.span.metrics"
SPAN_METRICS_UNIT = "ms"
SPAN_METRICS_DURATION_BUCKET = "traces_span_metrics_duration_milliseconds_bucket"
SPAN_METRICS_CALLS = "traces_span_metrics_calls_total"
SPAN_ERROR_STATUS = "STATUS_CODE_ERROR"

TEMPO_OBJECT_STORAGE_SECRET = "tempo-object-storage"
TEMPO_ACCESS_KEY_ENV = "TEMPO_S3_ACCESS_KEY_ID"
TEMPO_SECRET_KEY_ENV = "TEMPO_S3_SECRET_ACCESS_KEY"
TEMPO_OBJECT_STORAGE_ENV = {TEMPO_ACCESS_KEY_ENV: secrets.TEMPO_S3_ACCESS_KEY_ID,
                            TEMPO_SECRET_KEY_ENV: secrets.TEMPO_S3_SECRET_ACCESS_KEY}

POD_LOGS_DIR = "/var/log/pods"
# file_log (Collector 0.158's name for filelog) keeps its read offsets here: no gap, no duplicates on restart.
CHECKPOINT_DIR = "/var/lib/otelcol"
# What the exporters have accepted but not delivered waits there too: a Tempo or Loki outage,
# or a Collector restart meanwhile, loses nothing (the in-memory default would lose it on restart).
PERSISTENT_QUEUE = {"storage": "file_storage"}


# The tenants' gateway passwords reach the collector as environment variables from this Secret.
LOKI_CREDENTIALS_SECRET = "loki-tenant-credentials"


def loki_exporter_name(tenant: str) -> str:
    return f"otlphttp/loki-{tenant}"


def loki_authenticator_name(tenant: str) -> str:
    return f"basicauth/loki-{tenant}"


def loki_password_env(tenant: str) -> str:
    return "LOKI_PASSWORD_" + "".join(c if c.isalnum() else "_" for c in tenant.upper())


def loki_writers(cfg: StackConfig) -> list[str]:
    """The tenants the collector writes to: the pod logs' and the syslog's."""
    assert cfg.logs is not None
    sources = cfg.logs.sources
    return list(dict.fromkeys([sources.kubernetes, *([sources.syslog.tenant] if sources.syslog else [])]))


# --- the collector ------------------------------------------------------------------------

def collector_config(cfg: StackConfig) -> dict:
    """The collector's own configuration (the chart's `config`)."""
    traces, logs = cfg.traces, cfg.logs
    assert traces is not None and logs is not None
    endpoints = cfg.endpoints()
    pod_ip = "${env:MY_POD_IP}"
    receivers: dict = {
        "otlp": {"protocols": {"grpc": {"endpoint": f"{pod_ip}:{OTLP_GRPC_PORT}"},
                               "http": {"endpoint": f"{pod_ip}:{OTLP_HTTP_PORT}"}}},
        "file_log": {
            "include": [f"{POD_LOGS_DIR}/*/*/*.log"],
            # Its own logs would loop: an export error logged, shipped, failing again.
            "exclude": [f"{POD_LOGS_DIR}/{endpoints.collector.namespace}_{endpoints.collector.name}-*/*/*.log"],
            "start_at": "end",
            "include_file_path": True,
            "include_file_name": False,
            "storage": "file_storage",
            # Parses CRI/docker lines and sets k8s.namespace.name, k8s.pod.name,
            # k8s.container.name from the path; Loki indexes the namespace for retention.
            "operators": [{"type": "container", "id": "container-parser"}],
        },
    }
    processors: dict = {
        # First in every pipeline: refuses data before the pod is OOM-killed.
        "memory_limiter": {"check_interval": "1s", "limit_percentage": 80, "spike_limit_percentage": 25},
        # Last in every pipeline.
        "batch": {"send_batch_size": 8192, "timeout": "5s"},
        "resource/kubernetes": {"attributes": [
            {"key": "service.name", "from_attribute": "k8s.container.name", "action": "insert"}]},
    }
    exporters: dict = {
        "otlp/tempo": {"endpoint": endpoints.tempo_otlp_endpoint, "tls": {"insecure": True},
                       "sending_queue": dict(PERSISTENT_QUEUE)},
        "prometheus": {"endpoint": f"{pod_ip}:{SPAN_METRICS_PORT}"},
    }
    kubernetes_tenant = logs.sources.kubernetes
    # The chart's default pipelines are named traces, metrics and logs: ours take those names
    # so they replace them (the default receivers and the debug exporter stay defined but,
    # used by no pipeline, are never started).
    pipelines: dict = {
        "traces": {"receivers": ["otlp"], "processors": ["memory_limiter", "batch"],
                   "exporters": ["otlp/tempo", "spanmetrics"]},
        "metrics": {"receivers": ["spanmetrics"], "processors": ["memory_limiter", "batch"],
                                "exporters": ["prometheus"]},
        "logs": {"receivers": ["file_log", "otlp"],
                            "processors": ["memory_limiter", "resource/kubernetes", "batch"],
                            "exporters": [loki_exporter_name(kubernetes_tenant)]},
    }
    syslog = logs.sources.syslog
    if syslog:
        names = [f"syslog/{transport}" for transport in syslog.transports]
        for transport, name in zip(syslog.transports, names):
            receivers[name] = {transport: {"listen_address": f"{pod_ip}:{syslog.port}"}, "protocol": syslog.protocol}
        processors["resource/syslog"] = {"attributes": [{"key": "service.name", "value": "syslog", "action": "insert"}]}
        pipelines["logs/syslog"] = {"receivers": names, "processors": ["memory_limiter", "resource/syslog", "batch"],
                                    "exporters": [loki_exporter_name(syslog.tenant)]}
    # The gateway takes the tenant from the credential (model/values/logs.py), not from a header.
    authenticators = {}
    for tenant in loki_writers(cfg):
        authenticators[loki_authenticator_name(tenant)] = {
            "client_auth": {"username": tenant, "password": f"${{env:{loki_password_env(tenant)}}}"}}
        exporters[loki_exporter_name(tenant)] = {"endpoint": endpoints.loki_otlp_push_url,
                                                 "auth": {"authenticator": loki_authenticator_name(tenant)},
                                                 "sending_queue": dict(PERSISTENT_QUEUE)}
    span_metrics = traces.span_metrics
    return {
        "extensions": {"file_storage": {"directory": CHECKPOINT_DIR, "create_directory": True}, **authenticators},
        "receivers": receivers,
        "processors": processors,
        "connectors": {"spanmetrics": {
            "namespace": SPAN_METRICS_NAMESPACE,
            "histogram": {"unit": SPAN_METRICS_UNIT, "explicit": {"buckets": [f"{b:g}ms" for b in span_metrics.histogram_buckets_ms]}},
            "dimensions": [{"name": d} for d in span_metrics.dimensions],
            "aggregation_temporality": "AGGREGATION_TEMPORALITY_CUMULATIVE",
            "metrics_flush_interval": "15s",
        }},
        "exporters": exporters,
        "service": {"extensions": ["health_check", "file_storage", *authenticators], "pipelines": pipelines},
    }


def collector_values(cfg: StackConfig) -> dict:
    assert cfg.logs is not None
    ports: dict = {
        "otlp": {"enabled": True, "containerPort": OTLP_GRPC_PORT, "servicePort": OTLP_GRPC_PORT,
                 "hostPort": OTLP_GRPC_PORT, "protocol": "TCP", "appProtocol": "grpc"},
        "otlp-http": {"enabled": True, "containerPort": OTLP_HTTP_PORT, "servicePort": OTLP_HTTP_PORT,
                      "hostPort": OTLP_HTTP_PORT, "protocol": "TCP"},
        "jaeger-compact": {"enabled": False},
        "jaeger-thrift": {"enabled": False},
        "jaeger-grpc": {"enabled": False},
        "zipkin": {"enabled": False},
        "metrics": {"enabled": True, "containerPort": COLLECTOR_METRICS_PORT, "servicePort": COLLECTOR_METRICS_PORT, "protocol": "TCP"},
        "spanmetrics": {"enabled": True, "containerPort": SPAN_METRICS_PORT, "servicePort": SPAN_METRICS_PORT, "protocol": "TCP"},
    }
    syslog = cfg.logs.sources.syslog
    if syslog:
        for transport in syslog.transports:
            ports[f"syslog-{transport}"] = {"enabled": True, "containerPort": syslog.port, "servicePort": syslog.port,
                                            "hostPort": syslog.port, "protocol": transport.upper()}
    return {
        "mode": "daemonset",
        "fullnameOverride": COLLECTOR_RELEASE,  # the Service the OTLP endpoints name
        "image": {"repository": COLLECTOR_IMAGE},
        "command": {"name": "otelcol-contrib"},
        "config": collector_config(cfg),
        "ports": ports,
        # A DaemonSet gets no Service unless asked; Local keeps OTLP on the sender's node.
        "service": {"enabled": True, "internalTrafficPolicy": "Local"},
        "serviceMonitor": {
            "enabled": True,
            "metricsEndpoints": [{"port": "metrics", "interval": "30s"}, {"port": "spanmetrics", "interval": "15s"}],
            "extraLabels": dict(PROMETHEUS_SELECTOR_LABELS),
        },
        # Every node, the dedicated observability hosts included: their pods log too.
        "tolerations": scheduling_for(Role.LOKI).tolerations(),
        # /var/log/pods is root's; the collector only reads it (mounted read-only). Root as the
        # files' owner, not by capability: every capability is dropped (model/pod_security.py).
        "podSecurityContext": {"seccompProfile": RUNTIME_DEFAULT_SECCOMP},
        "securityContext": {**container_security_context(), "runAsUser": 0, "runAsGroup": 0},
        "extraVolumes": [
            {"name": "varlogpods", "hostPath": {"path": POD_LOGS_DIR}},
            {"name": "checkpoints", "hostPath": {"path": CHECKPOINT_DIR, "type": "DirectoryOrCreate"}},
        ],
        "extraVolumeMounts": [
            {"name": "varlogpods", "mountPath": POD_LOGS_DIR, "readOnly": True},
            {"name": "checkpoints", "mountPath": CHECKPOINT_DIR},
        ],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        # Nothing in the collector's pipelines reads the Kubernetes API.
        "serviceAccount": {"automountServiceAccountToken": False},
        "extraEnvs": [{"name": loki_password_env(tenant),
                       "valueFrom": {"secretKeyRef": {"name": LOKI_CREDENTIALS_SECRET, "key": tenant}}}
                      for tenant in loki_writers(cfg)],
    }


# --- Tempo --------------------------------------------------------------------------------

def _block_retention(traces: Traces) -> str:
    return f"{duration_hours(traces.retention)}h"  # Tempo parses Go durations: no `d` or `w`


def _s3(storage: ObjectStorage, bucket: str) -> dict:
    return {
        "bucket": bucket,
        "endpoint": storage.endpoint,
        "region": storage.region,
        "access_key": f"${{{TEMPO_ACCESS_KEY_ENV}}}",
        "secret_key": f"${{{TEMPO_SECRET_KEY_ENV}}}",
        "insecure": storage.insecure,
        "forcepathstyle": storage.force_path_style,
    }


def tempo_values(cfg: StackConfig) -> dict:
    traces = cfg.traces
    assert traces is not None
    if traces.mode == TracesMode.DISTRIBUTED:
        return _tempo_distributed_values(traces)
    scheduling = scheduling_for(Role.LOKI)
    return {
        "tempo": {
            "retention": _block_retention(traces),
            "reportingEnabled": False,
            "receivers": {
                "otlp": {"protocols": {"grpc": {"endpoint": f"0.0.0.0:{OTLP_GRPC_PORT}"},
                                       "http": {"endpoint": f"0.0.0.0:{OTLP_HTTP_PORT}"}}},
            },
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1536Mi"}},
            # The chart warns a read-only root breaks Tempo (docs/cluster-walls.md, waivers).
            "securityContext": container_security_context(read_only_root=False),
        },
        # No auto-delete policy on the StatefulSet: the trace blocks' claim outlives it.
        "persistence": {"enabled": True, "enableStatefulSetAutoDeletePVC": False, "size": f"{traces.storage_gb}Gi",
                        "storageClassName": K3S_LOCAL_PATH_STORAGE_CLASS, "accessModes": ["ReadWriteOnce"]},
        "nodeSelector": scheduling.node_selector(),
        "tolerations": scheduling.tolerations(),
        "serviceMonitor": {"enabled": True, "additionalLabels": dict(PROMETHEUS_SELECTOR_LABELS)},
        # The chart's pod context (uid 10001) plus the runtime's seccomp profile.
        "securityContext": {"seccompProfile": RUNTIME_DEFAULT_SECCOMP},
        # Tempo reads no Kubernetes API.
        "serviceAccount": {"automountServiceAccountToken": False},
    }


def _tempo_distributed_values(traces: Traces) -> dict:
    storage = traces.object_storage
    assert storage is not None
    retention = _block_retention(traces)
    return {
        "reportingEnabled": False,
        # The chart's contexts (non-root, no escalation, read-only, drop ALL) plus seccomp.
        "tempo": {"securityContext": {"seccompProfile": RUNTIME_DEFAULT_SECCOMP},
                  "podSecurityContext": {"seccompProfile": RUNTIME_DEFAULT_SECCOMP}},
        "global": {
            "extraArgs": ["-config.expand-env=true"],
            "extraEnvFrom": [{"secretRef": {"name": TEMPO_OBJECT_STORAGE_SECRET}}],
        },
        "storage": {"trace": {"backend": "s3", "s3": _s3(storage, storage.bucket)}},
        "traces": {"otlp": {"grpc": {"enabled": True}, "http": {"enabled": True}}},
        # The chart sets no requests or limits for any component (seen in its rendered manifests).
        "distributor": {"resources": resources("100m", "256Mi", "512Mi")},
        "ingester": {
            "persistence": {"enabled": True, "size": f"{traces.storage_gb}Gi"},
            "persistentVolumeClaimRetentionPolicy": {"enabled": True, "whenDeleted": "Retain", "whenScaled": "Retain"},
            "resources": resources("250m", "512Mi", "2Gi"),
        },
        "querier": {"resources": resources("100m", "256Mi", "1Gi")},
        "queryFrontend": {"resources": resources("100m", "128Mi", "512Mi")},
        "compactor": {"config": {"compaction": {"block_retention": retention}},
                      "resources": resources("100m", "256Mi", "1Gi")},
        # memcached's default cache is 64 MB (-m 64).
        "memcached": {"resources": resources("50m", "96Mi", "128Mi")},
        "metaMonitoring": {"serviceMonitor": {"enabled": True, "labels": dict(PROMETHEUS_SELECTOR_LABELS)}},
    }
