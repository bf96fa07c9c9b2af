"""Loki in the `logging` namespace: one Helm release, plus its object-storage Secret when scalable."""

from __future__ import annotations

import pulumi
from components.kubernetes_objects import Namespace

from components.helm import chart_release, credentials_secret
from model import logs as loki
from model.config import LogsMode, StackConfig
from model.helm import LOKI_CHART


class Loki(pulumi.ComponentResource):
    """Multi-tenant Loki: tenants, limits and retention from `logs` in the stack config."""

    def __init__(self, name: str, config: StackConfig, secrets: dict[str, pulumi.Output[str]],
                 monitoring_crds: pulumi.Resource | None = None, opts: pulumi.ResourceOptions | None = None):
        """`monitoring_crds`: the release that installs the ServiceMonitor CRD the charts' monitors need."""
        super().__init__("homelab:logs:Loki", name, None, opts)
        assert config.logs is not None
        # Deleting the namespace would delete the PVCs in it.
        endpoints = config.endpoints()
        namespace = Namespace(endpoints.loki.namespace, metadata={"name": endpoints.loki.namespace},
                              opts=pulumi.ResourceOptions(parent=self, protect=True))
        depends_on: list[pulumi.Resource] = [namespace, *([monitoring_crds] if monitoring_crds else [])]
        if config.logs.mode == LogsMode.SCALABLE:
            depends_on.append(credentials_secret(loki.OBJECT_STORAGE_SECRET, namespace, loki.OBJECT_STORAGE_ENV, secrets, self))
        self.release = chart_release(endpoints.loki.name, LOKI_CHART, namespace.metadata["name"], loki.loki_values(config),
                                     parent=self, protect=True, depends_on=depends_on)
        self.gateway_url = endpoints.loki_gateway_url
        self.tenants = [t.org_id for t in loki.tenants(config.logs)]
        self.register_outputs({"gatewayUrl": self.gateway_url, "tenants": self.tenants})
