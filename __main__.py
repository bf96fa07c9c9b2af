"""The homelab observability & backups stack: `pulumi up -s <stack>`."""

import pulumi

from components.helm import Cluster
from components.hosts import HostsArgs, ProxmoxHosts
from components.metrics import MetricsArgs, MetricsStack
from components.settings import load_settings
from model.config import ConfigError

try:
    settings = load_settings()
except ConfigError as exc:
    # RunError ends the program with this message and no Python traceback.
    raise pulumi.RunError(str(exc)) from None
config, secrets = settings.config, settings.secrets
for warning in settings.warnings:
    pulumi.log.warn(warning)
for part in config.parts_off():
    pulumi.log.info(part)

if config.site.runbook_hub.serve:
    from model.runbook_hub import SiteTooLarge, build_site

    # Rendered before any resource is registered: pages that cannot be served stop the program here.
    try:
        hub_files = build_site(config)
    except SiteTooLarge as exc:
        raise pulumi.RunError(str(exc)) from None

hosts = ProxmoxHosts("hosts", HostsArgs(config, secrets, settings.kubernetes_context, settings.kubeconfig))
pulumi.export("vmAddresses", hosts.addresses)
pulumi.export("vmIds", {p.name: p.host.vm_id for p in hosts.plans})

# Every release waits until the observability nodes have joined k3s and are Ready.
cluster = Cluster(hosts.k3s_nodes_ready, config.k3s.release_timeout_seconds if config.k3s else None)

# kube-prometheus-stack first: it installs the CRDs of the ServiceMonitors the other charts create.
metrics = MetricsStack("metrics", MetricsArgs(config, secrets, cluster))
pulumi.export("metricsNamespace", metrics.namespace)

if config.reports:
    from components.reports import PbsReports

    reports = PbsReports("reports", config, pulumi.get_stack(), depends_on=[metrics])
    pulumi.export("pbsReportSchedule", reports.schedule)
    pulumi.export("pbsReportArchive", reports.archive)

if config.site.runbook_hub.serve:
    from components.runbook_hub import RunbookHub

    hub = RunbookHub("runbook-hub", config, hub_files, depends_on=[metrics])
    pulumi.export("runbookHubUrl", hub.url)

if config.logs:
    from components.logs import LogsArgs, Loki

    logs = Loki("logs", LogsArgs(config, secrets, monitoring_crds=metrics.prometheus, cluster=cluster))
    pulumi.export("lokiUrl", logs.gateway_url)
    pulumi.export("lokiTenants", logs.tenants)
if config.traces:
    from components.traces import TracesArgs, Tracing

    tracing = Tracing("traces", TracesArgs(config, secrets, monitoring_crds=metrics.prometheus, cluster=cluster,
                                           loki_passwords=logs.tenant_passwords))
    pulumi.export("otlpEndpoints", tracing.otlp_endpoints)
    pulumi.export("tempoUrl", tracing.tempo_url)
    pulumi.export("syslogEndpoint", tracing.syslog_endpoint)
if config.grafana is not None:
    from components.grafana import Grafana, GrafanaArgs

    grafana = Grafana("grafana", GrafanaArgs(config, secrets, cluster=cluster,
                                             loki_passwords=logs.tenant_passwords if config.logs else {}))
    pulumi.export("grafanaUrl", grafana.url)
    # `pulumi stack output grafanaAdminPassword --show-secrets` for the first login.
    pulumi.export("grafanaAdminPassword", pulumi.Output.secret(grafana.admin_password))
