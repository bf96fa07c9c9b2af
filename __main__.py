"""The homelab observability & backups stack: `pulumi up -s <stack>`."""

import pulumi

from components.hosts import ProxmoxHosts
from components.settings import load_settings
from model.config import ConfigError

try:
    settings = load_settings()
except ConfigError as exc:
    # RunError ends the program with this message and no Python traceback.
    raise pulumi.RunError(str(exc)) from None

hosts = ProxmoxHosts("hosts", settings.config, settings.secrets)

pulumi.export("vmAddresses", hosts.addresses)
pulumi.export("vmIds", {p.name: p.host.vm_id for p in hosts.plans})

if settings.config.logs:
    from components.logs import Loki

    logs = Loki("logs", settings.config, settings.secrets)
    pulumi.export("lokiUrl", logs.gateway_url)
    pulumi.export("lokiTenants", logs.tenants)
if settings.config.traces:
    from components.traces import Tracing

    tracing = Tracing("traces", settings.config, settings.secrets)
    pulumi.export("otlpEndpoints", tracing.otlp_endpoints)
    pulumi.export("tempoUrl", tracing.tempo_url)
    pulumi.export("syslogEndpoint", tracing.syslog_endpoint)
if settings.config.grafana is not None:
    from components.grafana import Grafana, GrafanaArgs

    grafana = Grafana("grafana", GrafanaArgs(settings.config, settings.secrets))
    pulumi.export("grafanaUrl", grafana.url)
    # `pulumi stack output grafanaAdminPassword --show-secrets` for the first login.
    pulumi.export("grafanaAdminPassword", pulumi.Output.secret(grafana.admin_password))
