"""A compliant stack of the resource kinds the other domains add (metrics, logs, traces, Grafana).

Run on the offline engine by tests/policy_harness.py so that the policies see these resources
exactly as the SDKs register them (type tokens, camelCase inputs, options). Values follow the
target charts' keys (shared/charts/*/values.yaml) and the design's routing table.
"""

import json

import pulumi
import pulumi_kubernetes as k8s
import pulumiverse_grafana as grafana

PROTECT = pulumi.ResourceOptions(protect=True)
SMALL = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"memory": "128Mi"}}
MEDIUM = {"requests": {"cpu": "250m", "memory": "512Mi"}, "limits": {"memory": "1Gi"}}
PROMETHEUS_COMMUNITY = "https://prometheus-community.github.io/helm-charts"
GRAFANA_COMMUNITY = "https://grafana-community.github.io/helm-charts"
RUNBOOKS = "https://runbooks.home.arpa"


def release(name, chart, version, namespace, repo, values, protect=False):
    return k8s.helm.v3.Release(name, chart=chart, version=version, namespace=namespace,
                               repository_opts={"repo": repo}, values=values,
                               opts=PROTECT if protect else None)

backup_rules = {
    "groups": [{
        "name": "backups",
        "rules": [
            {"record": "job:backup_success:ratio",
             "expr": "sum(rate(pbs_job_success_total[1h])) / sum(rate(pbs_job_attempt_total[1h]))",
             "labels": {"slo": "99.5"}},
            {"alert": "BackupJobFailed", "expr": "job:backup_success:ratio < 0.995", "for": "15m",
             "labels": {"severity": "critical", "service": "backups"},
             "annotations": {"summary": "PBS backup jobs are failing",
                             "description": "Backup success ratio is {{ $value | humanizePercentage }}.",
                             "runbook_url": f"{RUNBOOKS}/backup-job-failed"}},
        ],
    }],
}

alertmanager_config = {
    "route": {
        "receiver": "mattermost-backup-room",
        "group_by": ["alertname", "service"],
        "routes": [
            {"matchers": ['severity = "critical"'], "receiver": "pagerduty-primary", "continue": True},
            {"matchers": ['service = "backups"'], "receiver": "mattermost-backup-room", "group_interval": "5m"},
            {"matchers": ['alertname = "Watchdog"'], "receiver": "null"},
        ],
    },
    "receivers": [
        {"name": "null"},
        {"name": "pagerduty-primary",
         "pagerduty_configs": [{"routing_key_file": "/etc/alertmanager/secrets/pagerduty/routing-key",
                                "severity": "critical"}]},
        {"name": "mattermost-backup-room",
         "webhook_configs": [{"url_file": "/etc/alertmanager/secrets/mattermost/url"}]},
    ],
}

release("kube-prometheus-stack", "kube-prometheus-stack", "88.5.3", "monitoring", PROMETHEUS_COMMUNITY,
        {
        "prometheusOperator": {"resources": SMALL, "prometheusConfigReloader": {"resources": SMALL},
                               "admissionWebhooks": {"patch": {"resources": SMALL}}},
        "prometheus": {"prometheusSpec": {
            "resources": MEDIUM,
            "retention": "30d",
            "storageSpec": {"volumeClaimTemplate": {"spec": {"storageClassName": "local-path",
                                                             "resources": {"requests": {"storage": "150Gi"}}}}},
        }},
        "alertmanager": {
            "alertmanagerSpec": {"resources": SMALL, "secrets": ["alertmanager-receivers"],
                                 "image": {"tag": "v0.34.0"}},
            "config": alertmanager_config,
        },
        "grafana": {"enabled": False},
        "kube-state-metrics": {"resources": SMALL},
        "prometheus-node-exporter": {"resources": SMALL},
        "additionalPrometheusRulesMap": {"backups": backup_rules},
    },
        protect=True)

release("snmp-exporter", "prometheus-snmp-exporter", "9.17.1", "monitoring", PROMETHEUS_COMMUNITY,
        {"resources": SMALL, "image": {"repository": "quay.io/prometheus/snmp-exporter", "tag": "v0.30.1"}},
        protect=False)

release("loki", "loki", "18.11.0", "logging", GRAFANA_COMMUNITY,
        {
        "deploymentMode": "Monolithic",
        "loki": {
            "auth_enabled": True,
            "storage": {"type": "filesystem"},
            "schemaConfig": {"configs": [{"from": "2026-01-01", "store": "tsdb", "object_store": "filesystem",
                                          "schema": "v13", "index": {"prefix": "index_", "period": "24h"}}]},
            "limits_config": {"retention_period": "744h",
                              "retention_stream": [{"selector": '{namespace="nas"}', "priority": 1, "period": "336h"}]},
            "compactor": {"retention_enabled": True, "delete_request_store": "filesystem"},
            "runtimeConfig": {"overrides": {"homelab": {"retention_period": "2160h"}}},
        },
        "singleBinary": {"replicas": 1, "resources": MEDIUM},
        # The chart refuses to render monolithic with the simple-scalable targets' default replicas.
        "read": {"replicas": 0}, "write": {"replicas": 0}, "backend": {"replicas": 0},
        "gateway": {"resources": SMALL, "metrics": {"resources": SMALL}},
        "lokiCanary": {"resources": SMALL},
        "chunksCache": {"resources": MEDIUM},
        "resultsCache": {"resources": SMALL},
        "memcachedExporter": {"resources": SMALL},
        "sidecar": {"resources": SMALL},
    },
        protect=True)

release("tempo", "tempo", "2.2.4", "tracing", GRAFANA_COMMUNITY,
        {"tempo": {"resources": MEDIUM, "retention": "72h"}},
        protect=False)

release("otel-collector", "opentelemetry-collector", "0.170.0", "tracing", "https://open-telemetry.github.io/opentelemetry-helm-charts",
        {"mode": "deployment", "resources": SMALL,
            "image": {"repository": "otel/opentelemetry-collector-k8s", "tag": "0.158.0"}},
        protect=False)

release("grafana", "grafana", "12.11.1", "monitoring", GRAFANA_COMMUNITY,
        {
        "resources": MEDIUM,
        "admin": {"existingSecret": "grafana-admin", "userKey": "admin-user", "passwordKey": "admin-password"},
        "persistence": {"enabled": True, "size": "5Gi"},
        "initChownData": {"resources": SMALL},
        "sidecar": {"dashboards": {"enabled": True}, "resources": SMALL},
        "grafana.ini": {"server": {"root_url": "https://grafana.home.arpa"},
                        "smtp": {"password": "$__file{/etc/secrets/smtp/password}"}},
    },
        protect=True)

k8s.core.v1.PersistentVolumeClaim(
    "pbs-exports",
    metadata={"namespace": "backups"},
    spec={"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "20Gi"}}},
    opts=PROTECT,
)

k8s.apiextensions.CustomResource(
    "nas-rules",
    api_version="monitoring.coreos.com/v1",
    kind="PrometheusRule",
    metadata={"namespace": "monitoring", "labels": {"release": "kube-prometheus-stack"}},
    spec={"groups": [{"name": "nas", "rules": [
        {"alert": "NasDiskFilling", "expr": "snmp_disk_used_ratio > 0.85", "for": "30m",
         "labels": {"severity": "warning"},
         "annotations": {"summary": "NAS volume over 85%", "description": "{{ $labels.volume }} is filling up.",
                         "runbook_url": f"{RUNBOOKS}/disk-utilization#nas"}},
    ]}]},
)

dashboard = {
    "uid": "backups-overview", "title": "Backups", "schemaVersion": 41,
    "panels": [{"type": "timeseries", "title": "Backup success", "gridPos": {"h": 8, "w": 12, "x": 0, "y": 0},
                "datasource": {"type": "prometheus", "uid": "prometheus"},
                "targets": [{"refId": "A", "expr": "job:backup_success:ratio"}]}],
}

k8s.core.v1.ConfigMap(
    "dashboard-backups",
    metadata={"namespace": "monitoring", "labels": {"grafana_dashboard": "1"}},
    data={"backups.json": json.dumps(dashboard)},
)

k8s.core.v1.Secret(
    "alertmanager-receivers",
    metadata={"namespace": "monitoring"},
    string_data={"routing-key": pulumi.Output.secret("0123456789abcdef0123456789abcdef")},
)

folder = grafana.oss.Folder("observability", title="Observability", uid="observability")
grafana.oss.Dashboard("backups", folder=folder.uid, config_json=json.dumps(dashboard))

pagerduty = grafana.alerting.ContactPoint(
    "pagerduty-primary", name="pagerduty-primary",
    pagerduties=[{"integration_key": pulumi.Output.secret("0123456789abcdef0123456789abcdef")}])
mattermost = grafana.alerting.ContactPoint(
    "mattermost-backup-room", name="mattermost-backup-room",
    webhooks=[{"url": pulumi.Output.secret("https://chat.internal/hooks/pbs")}])

grafana.alerting.NotificationPolicy(
    "policy",
    contact_point="mattermost-backup-room",
    group_bies=["alertname"],
    policies=[
        {"matchers": [{"label": "severity", "match": "=", "value": "critical"}],
         "contact_point": "pagerduty-primary", "continue_": True},
        {"matchers": [{"label": "service", "match": "=", "value": "backups"}],
         "contact_point": "mattermost-backup-room"},
    ],
    opts=pulumi.ResourceOptions(depends_on=[pagerduty, mattermost]),
)

grafana.alerting.RuleGroup(
    "backup-freshness",
    name="backup-freshness",
    folder_uid=folder.uid,
    interval_seconds=60,
    rules=[{
        "name": "BackupTooOld",
        "condition": "A",
        "datas": [{"ref_id": "A", "datasource_uid": "prometheus", "model": json.dumps({"expr": "time() - pbs_last_backup > 86400"}),
                   "relative_time_range": {"from_": 600, "to": 0}}],
        "labels": {"severity": "warning"},
        "annotations": {"summary": "No backup in 24h", "description": "The last PBS backup is older than a day.",
                        "runbook_url": f"{RUNBOOKS}/backup-job-failed"},
        "notification_settings": {"contact_point": "mattermost-backup-room"},
    }],
)
