"""Loki in its namespace: one Helm release, plus its object-storage Secret when scalable."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_random as random

from components.helm import Cluster, ReleaseNamespace
from model import network_policies, pod_security
from model.values import logs as loki
from model.config import LogsMode, StackConfig
from model.values.helm import LOKI_CHART


@dataclass(frozen=True)
class LogsArgs:
    config: StackConfig
    secrets: dict[str, pulumi.Output[str]]
    # The release that installs the ServiceMonitor CRD the chart's monitors need.
    monitoring_crds: pulumi.Resource | None = None
    cluster: Cluster = Cluster()


class Loki(pulumi.ComponentResource):
    """Multi-tenant Loki: tenants, limits and retention from `logs` in the stack config."""

    def __init__(self, name: str, args: LogsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:logs:Loki", name, None, opts)
        config = args.config
        assert config.logs is not None
        endpoints = config.endpoints()
        ns = ReleaseNamespace(self, name, endpoints.loki.namespace, args.cluster, requires=[args.monitoring_crds],
                              formerly=endpoints.loki.namespace,
                              labels=pod_security.namespace_labels(config, endpoints.loki.namespace),
                              policies=network_policies.in_namespace(config, endpoints.loki.namespace))
        storage = ([ns.credentials(loki.OBJECT_STORAGE_SECRET, loki.OBJECT_STORAGE_ENV, args.secrets)]
                   if config.logs.mode == LogsMode.SCALABLE else [])
        # One generated password per tenant, a Pulumi secret from end to end; the gateway holds only hashes.
        self.tenant_passwords = {
            t.name: random.RandomPassword(f"{name}-tenant-{t.name}", length=40, special=False,
                                          opts=pulumi.ResourceOptions(parent=self)).result
            for t in loki.tenants(config.logs)}
        htpasswd = ns.secret(loki.GATEWAY_AUTH_SECRET, {loki.GATEWAY_HTPASSWD_KEY: pulumi.Output.all(
            **self.tenant_passwords).apply(loki.htpasswd)})
        self.release = ns.release(endpoints.loki.name, LOKI_CHART, loki.loki_values(config), protect=True,
                                  needs=[*storage, htpasswd])
        self.gateway_url = endpoints.loki_gateway_url
        self.tenants = [t.org_id for t in loki.tenants(config.logs)]
        self.register_outputs({"gatewayUrl": self.gateway_url, "tenants": self.tenants})
