"""The runbook hub: the rendered runbooks in a ConfigMap, served by nginx behind the ingress."""

from __future__ import annotations

import pulumi

from components.kubernetes_objects import ConfigMap, Deployment, Ingress, Service
from model import runbook_hub
from model.config import StackConfig


class RunbookHub(pulumi.ComponentResource):
    def __init__(self, name: str, config: StackConfig, files: dict[str, str], depends_on: list[pulumi.Resource],
                 opts: pulumi.ResourceOptions | None = None):
        """`files`: runbook_hub.site_files; `depends_on`: what creates the metrics namespace."""
        super().__init__("homelab:observability:RunbookHub", name, None, opts)
        namespace = config.metrics.namespace
        data = runbook_hub.config_map_data(config, files)

        def metadata(**extra) -> dict:
            return {"name": runbook_hub.NAME, "namespace": namespace, "labels": runbook_hub.labels(), **extra}

        def child(*needs: pulumi.Resource) -> pulumi.ResourceOptions:
            return pulumi.ResourceOptions(parent=self, depends_on=[*needs, *depends_on])

        pages = ConfigMap(f"{name}-pages", metadata=metadata(), data=data, opts=child())
        deployment = Deployment(f"{name}-nginx", metadata=metadata(),
                                spec=runbook_hub.deployment_spec(config, data, files), opts=child(pages))
        service = Service(f"{name}-service", metadata=metadata(), spec=runbook_hub.service_spec(), opts=child(deployment))
        Ingress(f"{name}-ingress", metadata=metadata(annotations=runbook_hub.ingress_annotations(config)),
                spec=runbook_hub.ingress_spec(config), opts=child(service))
        self.url = config.site.runbook_hub_url
        self.register_outputs({"url": self.url})
