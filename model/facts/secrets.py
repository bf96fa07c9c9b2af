"""The stack's secrets by their Pulumi config key: what each is for, and how generators refer to one.

Secret values never enter the model: a generator names the key (a constant below, or a
SecretRef in plain data) and the component or the rendered file puts the Pulumi secret, or
the path of the file that holds it, in its place. Imports nothing of the model.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts.recovery import ACTIONS as RECOVERY_ACTIONS

K3S_TOKEN = "k3sToken"
LOKI_S3_ACCESS_KEY_ID = "lokiS3AccessKeyId"
LOKI_S3_SECRET_ACCESS_KEY = "lokiS3SecretAccessKey"
TEMPO_S3_ACCESS_KEY_ID = "tempoS3AccessKeyId"
TEMPO_S3_SECRET_ACCESS_KEY = "tempoS3SecretAccessKey"
PAGERDUTY_ROUTING_KEY = "pagerdutyRoutingKey"
MATTERMOST_WEBHOOK_URL = "mattermostWebhookUrl"
HEARTBEAT_TOKEN = "alertingHeartbeatToken"
RECOVERY_WEBHOOK_TOKEN = "recoveryWebhookToken"
RECOVERY_PVE_READ_TOKEN = "recoveryPveReadToken"
GRAFANA_TLS_CERTIFICATE = "grafanaTlsCertificate"
GRAFANA_TLS_PRIVATE_KEY = "grafanaTlsPrivateKey"
PVE_EXPORTER_TOKEN = "pveExporterToken"
VIRTUALIZATION_PAGERDUTY_ROUTING_KEY = "virtualizationPagerdutyRoutingKey"
# The secrets a pagerduty receiver may name as its `routingKeySecret`: one PagerDuty service each.
PAGERDUTY_KEYS = (PAGERDUTY_ROUTING_KEY, VIRTUALIZATION_PAGERDUTY_ROUTING_KEY)


@dataclass(frozen=True)
class SecretSpec:
    key: str
    purpose: str
    example: str


SECRETS: dict[str, SecretSpec] = {
    s.key: s
    for s in [
        SecretSpec(K3S_TOKEN, "join token of the homelab k3s cluster (/var/lib/rancher/k3s/server/node-token on a server)", "K10...::server:..."),
        SecretSpec(LOKI_S3_ACCESS_KEY_ID, "access key of Loki's object storage (logs.mode scalable)", "loki-writer"),
        SecretSpec(LOKI_S3_SECRET_ACCESS_KEY, "secret key of Loki's object storage (logs.mode scalable)", "..."),
        SecretSpec(TEMPO_S3_ACCESS_KEY_ID, "access key of Tempo's object storage (traces.mode distributed)", "tempo-writer"),
        SecretSpec(TEMPO_S3_SECRET_ACCESS_KEY, "secret key of Tempo's object storage (traces.mode distributed)", "..."),
        SecretSpec(PAGERDUTY_ROUTING_KEY, "PagerDuty Events API v2 integration key of the pagerduty receivers", "R0123456789abcdef0123456789abcdef"),
        SecretSpec(MATTERMOST_WEBHOOK_URL, "Mattermost incoming webhook URL of the mattermost receivers", "https://chat.internal/hooks/xxxxxxxx"),
        SecretSpec(HEARTBEAT_TOKEN, "bearer token of the Watchdog heartbeat receiver (heartbeat.bearerToken: true)", "hb_xxxxxxxx"),
        SecretSpec(RECOVERY_WEBHOOK_TOKEN, "bearer token Alertmanager sends to the recovery service (any long random string)",
                   "$(openssl rand -hex 32)"),
        SecretSpec(RECOVERY_PVE_READ_TOKEN, "PVE API token of the recovery service for reading (PVEAuditor on /)",
                   "recovery@pve!read=<uuid>"),
        # The secrets the recovery service's actions act with (contracts/recovery.py).
        *(SecretSpec(a.secret.key, a.secret.purpose, a.secret.example) for a in RECOVERY_ACTIONS.values() if a.secret),
        SecretSpec(GRAFANA_TLS_CERTIFICATE, "PEM certificate (chain) of grafana.url's host (grafana.tls.fromSecrets)", "-----BEGIN CERTIFICATE-----..."),
        SecretSpec(GRAFANA_TLS_PRIVATE_KEY, "PEM private key of that certificate (grafana.tls.fromSecrets)", "-----BEGIN PRIVATE KEY-----..."),
        SecretSpec(PVE_EXPORTER_TOKEN, "secret (UUID) of the read-only PVEAuditor API token pveExporter.tokenId",
                   "<uuid printed by pveum user token add>"),
        SecretSpec(VIRTUALIZATION_PAGERDUTY_ROUTING_KEY,
                   "PagerDuty Events API v2 integration key of the virtualization on-call (routingKeySecret of its receiver)",
                   "R0123456789abcdef0123456789abcdef"),
    ]
}


@dataclass(frozen=True)
class SecretRef:
    """A Pulumi secret by its config key; the component puts the secret Output in its place."""

    key: str
