"""The homelab observability & backups stack: `pulumi up -s <stack>`."""

import pulumi

from components.hosts import ProxmoxHosts
from components.metrics import MetricsArgs, MetricsStack
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

metrics = MetricsStack("metrics", MetricsArgs(settings.config, settings.secrets))
pulumi.export("metricsNamespace", metrics.namespace)
