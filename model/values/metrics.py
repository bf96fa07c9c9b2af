"""Prometheus' side of the stack: scrape jobs and the values of the metrics Helm releases.

The scrape jobs outside Kubernetes (PBS exporters, SNMP targets, federation) are plain
Prometheus scrape configs: the same list goes into the chart's additionalScrapeConfigs and
into build/<stack>/prometheus/scrape-configs.yaml, which the alert drill loads as it is.
The rule files ride in the chart's additionalPrometheusRulesMap, so the PrometheusRule
objects are created by the release that also installs their CRDs, with its `release` label.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from model import long_term, probes, pve
from model.config import Role, StackConfig
from model.facts.endpoints import SNMP_EXPORTER_PORT
from model.hosts import scheduling_for
from model.pod_security import NOBODY, RUNTIME_DEFAULT_SECCOMP, container_security_context, pod_security_context
from model.values.helm import resources

# The Kubernetes Secret with the receivers' credentials; the operator mounts every secret
# listed in alertmanagerSpec.secrets at /etc/alertmanager/secrets/<name>/<key>.
ALERTMANAGER_SECRET = "alertmanager-receivers"
ALERTMANAGER_SECRET_DIR = f"/etc/alertmanager/secrets/{ALERTMANAGER_SECRET}"

# Chart rules that model/rules/registry.py replaces with its own (one alert per condition, our runbooks).
REPLACED_CHART_RULES = (
    "Watchdog", "InfoInhibitor", "TargetDown",
    "PrometheusNotConnectedToAlertmanagers", "PrometheusErrorSendingAlertsToSomeAlertmanagers",
    "PrometheusErrorSendingAlertsToAnyAlertmanager",
    "AlertmanagerFailedToSendAlerts", "AlertmanagerClusterFailedToSendAlerts",
    # model/long_term.py's, with the thresholds of metrics.longTerm (the chart's failure alert pages).
    "PrometheusRemoteWriteBehind", "PrometheusRemoteStorageFailures",
)

# Target label that tells the routing table whose target it is.
SCRAPED_JOBS_SERVICE = "service"


@dataclass(frozen=True)
class ScrapeJob:
    name: str
    service: str
    config: dict
    has_storage: bool = False


def _static(targets: list[str], service: str, **labels: str) -> list[dict]:
    return [{"targets": targets, "labels": {SCRAPED_JOBS_SERVICE: service, **labels}}]


def static_scrape_jobs(cfg: StackConfig) -> list[ScrapeJob]:
    m = cfg.metrics
    jobs: list[ScrapeJob] = []
    pbs_hosts = sorted(cfg.hosts_with_role(Role.PBS).items())
    if pbs_hosts:
        for job, port in (("pbs-exporter", cfg.pbs_exporter.port), ("pbs-node", m.node_exporter_port)):
            jobs.append(ScrapeJob(job, "backups", {
                "job_name": job,
                "static_configs": [
                    {"targets": [f"{host.address}:{port}"],
                     "labels": {SCRAPED_JOBS_SERVICE: "backups", "instance": f"{name}.{cfg.site.domain}"}}
                    for name, host in pbs_hosts
                ],
            }))
    if pbs_hosts and cfg.recovery:
        name = cfg.placement("recovery")
        host = cfg.hosts[name]
        jobs.append(ScrapeJob("recovery", "backups", {
            "job_name": "recovery",
            "static_configs": [{"targets": [f"{host.address}:{cfg.recovery.port}"],
                                "labels": {SCRAPED_JOBS_SERVICE: "backups", "instance": f"{name}.{cfg.site.domain}"}}],
        }))
    exporter = cfg.endpoints().snmp_exporter_address
    for target in m.snmp.targets:
        name = f"snmp-{target.name}"
        jobs.append(ScrapeJob(name, target.service, {
            "job_name": name,
            "scrape_interval": m.snmp.scrape_interval,
            "scrape_timeout": m.snmp.scrape_timeout,
            "metrics_path": "/snmp",
            "params": {"module": [",".join(target.modules)], "auth": [target.auth]},
            "static_configs": _static([target.address], target.service),
            # The device is the exporter's ?target=; the scrape goes to the exporter.
            "relabel_configs": [
                {"source_labels": ["__address__"], "target_label": "__param_target"},
                {"target_label": "instance", "replacement": target.name},
                {"target_label": "__address__", "replacement": exporter},
            ],
        }, has_storage=target.has_storage))
    for source in m.federation:
        url = urlsplit(source.url)
        name = f"federate-{source.name}"
        jobs.append(ScrapeJob(name, "metrics", {
            "job_name": name,
            "scrape_interval": source.scrape_interval,
            "scheme": url.scheme,
            "metrics_path": (url.path.rstrip("/") or "") + "/federate",
            # Keep the upstream's job/instance labels: they name where a series comes from.
            "honor_labels": True,
            "params": {"match[]": list(source.match)},
            "static_configs": _static([url.netloc], "metrics", federated_from=source.name),
        }))
    jobs += [ScrapeJob(config["job_name"], target.service, config) for target, config in probes.scrape_configs(cfg)]
    jobs += [ScrapeJob(config["job_name"], pve.SERVICE, config) for config in pve.scrape_configs(cfg)]
    return jobs


def scrape_configs(cfg: StackConfig) -> list[dict]:
    return [job.config for job in static_scrape_jobs(cfg)]


def _scheduling() -> dict:
    s = scheduling_for(Role.PROMETHEUS)
    return {"nodeSelector": s.node_selector(), "tolerations": s.tolerations()}


def _volume_claim(size_gb: int, storage_class: str | None) -> dict:
    spec: dict = {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": f"{size_gb}Gi"}}}
    if storage_class:
        spec["storageClassName"] = storage_class
    return {"volumeClaimTemplate": {"spec": spec}}


def kube_prometheus_stack_values(cfg: StackConfig, rule_files: dict[str, dict], alertmanager_config: dict) -> dict:
    m = cfg.metrics
    pinned = _scheduling()
    return {
        # helm upgrade never touches CRDs; this hook job server-side-applies the chart's CRDs first.
        "crds": {"enabled": True, "upgradeJob": {"enabled": True, "forceConflicts": True, **pinned,
                                                 "resources": resources("50m", "64Mi", "256Mi"),
                                                 # The chart's default is busybox:latest (seen in its
                                                 # rendered Job); the Grafana chart pins this release.
                                                 "image": {"busybox": {"tag": "1.38.0"}}}},
        "defaultRules": {
            "create": True,
            # k3s runs these inside the server binary: no targets, so their rules only misfire.
            "rules": {"etcd": False, "kubeControllerManager": False, "kubeProxy": False,
                      "kubeSchedulerAlerting": False, "kubeSchedulerRecording": False, "windows": False,
                      # Its three alerts are all in REPLACED_CHART_RULES: it would render an empty group.
                      "general": False},
            "disabled": {name: True for name in REPLACED_CHART_RULES},
            "additionalRuleLabels": {"service": "kubernetes"},
        },
        "kubeControllerManager": {"enabled": False},
        "kubeScheduler": {"enabled": False},
        "kubeProxy": {"enabled": False},
        "kubeEtcd": {"enabled": False},
        "windowsMonitoring": {"enabled": False},
        # Grafana is its own release (grafana chart), provisioned through its API.
        "grafana": {"enabled": False},
        "additionalPrometheusRulesMap": rule_files,
        "prometheusOperator": {
            **pinned,
            "resources": resources("50m", "128Mi", "256Mi"),
            "prometheusConfigReloader": {"resources": resources("10m", "32Mi", "64Mi")},
            # The certificate jobs as nobody, not the chart's 2000 (a UID some host may have).
            "admissionWebhooks": {"patch": {**pinned, "resources": resources("10m", "32Mi", "64Mi"),
                                            "securityContext": pod_security_context(NOBODY)},
                                  "deployment": pinned},
        },
        "kube-state-metrics": {**pinned, "resources": resources("20m", "64Mi", "256Mi")},
        # node-exporter must run on every node, the tainted observability agents included.
        "prometheus-node-exporter": {"tolerations": [{"operator": "Exists"}],
                                     "resources": resources("20m", "32Mi", "128Mi"),
                                     # Host access it has by the host's namespaces and mounts
                                     # (model/pod_security.py); no privilege or capability on top.
                                     "securityContext": {"seccompProfile": RUNTIME_DEFAULT_SECCOMP},
                                     "containerSecurityContext": container_security_context()},
        "prometheus": {
            # A pair: each client (Grafana, the report) sticks to one replica, so a panel never
            # alternates between two TSDBs' restart gaps; the Service fails over when that pod goes.
            **({"service": {"sessionAffinity": "ClientIP"}} if m.prometheus.replicas > 1 else {}),
            "prometheusSpec": {
                **pinned,
                "scrapeInterval": m.scrape_interval,
                "evaluationInterval": m.evaluation_interval,
                "externalLabels": {"site": cfg.site.name},
                "retention": m.prometheus.retention,
                "retentionSize": f"{m.prometheus.retention_size_gb}GB",
                "storageSpec": _volume_claim(m.prometheus.storage_gb, m.prometheus.storage_class),
                # The TSDB head grows with active series; the limit keeps it off the Grafana pod's memory.
                "resources": resources("250m", "1Gi", "4Gi"),
                # Pick up every rule, monitor and probe in the cluster, not only this release's.
                "ruleSelectorNilUsesHelmValues": False,
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "podMonitorSelectorNilUsesHelmValues": False,
                "probeSelectorNilUsesHelmValues": False,
                "scrapeConfigSelectorNilUsesHelmValues": False,
                "additionalScrapeConfigs": scrape_configs(cfg),
                **_replicas(cfg, m.prometheus.replicas),
                **({"replicaExternalLabelName": long_term.REPLICA_LABEL} if m.prometheus.replicas > 1 else {}),
                **({"remoteWrite": long_term.remote_write_spec(cfg)} if m.long_term else {}),
            },
        },
        "alertmanager": {
            "config": alertmanager_config,
            "alertmanagerSpec": {
                **pinned,
                **_replicas(cfg, m.alertmanager.replicas),
                "retention": m.alertmanager.retention,
                "storage": _volume_claim(m.alertmanager.storage_gb, m.alertmanager.storage_class),
                "secrets": [ALERTMANAGER_SECRET],
                "resources": resources("20m", "64Mi", "256Mi"),
            },
        },
    }


def _replicas(cfg: StackConfig, replicas: int) -> dict:
    """`replicas` of the operator's Prometheus or Alertmanager, spread over the metrics hosts: one per
    host when there are enough (hard anti-affinity), else as far as they go (soft). The operator
    peers Alertmanager's pods (--cluster.peer per pod) and gives each Prometheus replica its
    replica label; Prometheus finds every Alertmanager pod through the Service's endpoints."""
    if replicas == 1:
        return {}
    hosts = len(cfg.hosts_with_role(Role.PROMETHEUS))
    return {"replicas": replicas, "podAntiAffinity": "hard" if hosts >= replicas else "soft",
            "podAntiAffinityTopologyKey": "kubernetes.io/hostname"}


def snmp_exporter_values(cfg: StackConfig) -> dict:
    # Scraped through the static jobs above (one per device); no ServiceMonitor needed.
    return {
        **_scheduling(),
        "service": {"port": SNMP_EXPORTER_PORT},
        "serviceMonitor": {"enabled": False},
        "resources": resources("20m", "32Mi", "128Mi"),
        "securityContext": pod_security_context(NOBODY),
        "containerSecurityContext": container_security_context(user=NOBODY),
    }
