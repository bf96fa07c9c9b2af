"""Grafana: the Helm release, its admin credentials and data, and everything inside it as code."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_random as random
import pulumiverse_grafana as grafana_provider

from components.helm import Cluster, ReleaseNamespace
from components.kubernetes_objects import CustomObject, PersistentVolumeClaim, Secret
from model import network_policies, pod_security
from model.runbook_hub import stack_runbook_list
from model.grafana import values
from model.grafana.alerting import alert_routing_tree, contact_points, notification_policy
from model.grafana.dashboards import Dashboard, folders, load_dashboards, render_dashboard, stack_dashboards
from model.grafana.data_sources import data_sources
from model.facts.secrets import GRAFANA_TLS_CERTIFICATE, GRAFANA_TLS_PRIVATE_KEY, SecretRef
from model.values.helm import GRAFANA_CHART
from model.config import Grafana as GrafanaConfig, StackConfig


@dataclass
class GrafanaArgs:
    config: StackConfig
    secrets: dict[str, pulumi.Output[str]]
    dashboards: list[Dashboard] = field(default_factory=load_dashboards)
    cluster: Cluster = Cluster()
    # Each Loki tenant's gateway password (components/logs.py), for its data source.
    loki_passwords: dict[str, pulumi.Output[str]] = field(default_factory=dict)


def _policy_args(policy: dict[str, Any]) -> dict[str, Any]:
    """notification_policy's Grafana field names -> the SDK's argument names."""
    renamed = {"group_by": "group_bies", "continue": "continue_"}
    out: dict[str, Any] = {}
    for key, value in policy.items():
        if key == "policies":
            value = [_policy_args(p) for p in value]
        out[renamed.get(key, key)] = value
    return out


class Grafana(pulumi.ComponentResource):
    """Grafana on the cluster, with folders, data sources, dashboards and alert routing managed through its API."""

    def __init__(self, name: str, args: GrafanaArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:observability:Grafana", name, None, opts)
        stack = args.config
        cfg = stack.grafana
        assert cfg is not None
        child = pulumi.ResourceOptions(parent=self)
        endpoints = stack.endpoints()

        ns = ReleaseNamespace(self, name, cfg.namespace, args.cluster,
                              labels=pod_security.namespace_labels(stack, cfg.namespace),
                              policies=network_policies.in_namespace(stack, cfg.namespace))
        in_ns = pulumi.ResourceOptions(parent=self, depends_on=[ns.namespace])
        password = random.RandomPassword(
            f"{name}-admin-password", length=40, special=False,  # no ':' to split basic auth on
            opts=child,
        )
        admin_secret = Secret(
            f"{name}-admin",
            metadata={"name": values.ADMIN_SECRET, "namespace": cfg.namespace},
            string_data={values.ADMIN_USER_KEY: cfg.admin_user, values.ADMIN_PASSWORD_KEY: password.result},
            opts=in_ns,
        )
        claim = PersistentVolumeClaim(
            f"{name}-data",
            metadata={"name": values.DATA_CLAIM, "namespace": cfg.namespace},
            spec={
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": cfg.storage_class,
                "resources": {"requests": {"storage": f"{cfg.persistence_size_gi}Gi"}},
            },
            # Dashboards' version history, annotations and alert state live here.
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns.namespace], protect=True, retain_on_delete=True),
        )
        # Protected like the claim: the release mounts the dashboards' history.
        self.release = ns.release(endpoints.grafana.name, GRAFANA_CHART, values.grafana_values(cfg), protect=True,
                                  needs=[admin_secret, claim])

        self.certificate = self._certificate(name, cfg, ns, args.secrets)

        self.provider = grafana_provider.Provider(
            f"{name}-api",
            url=cfg.url,
            auth=pulumi.Output.secret(pulumi.Output.concat(cfg.admin_user, ":", password.result)),
            ca_cert=cfg.tls.ca_certificate if cfg.tls else None,
            # Right after the release is Ready, Traefik may still lack the route (404) or the pod
            # behind it (502/503) for a few seconds.
            retries=6,
            retry_wait=10,
            retry_status_codes=["404", "429", "5xx"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[self.release, *self.certificate]),
        )
        api = pulumi.ResourceOptions(parent=self, provider=self.provider)

        self.folders = {
            f["uid"]: grafana_provider.oss.Folder(f"{name}-folder-{f['uid']}", uid=f["uid"], title=f["title"], opts=api)
            for f in folders(cfg, args.dashboards)
        }
        self.data_sources = [self._data_source(name, ds, api, args.loki_passwords) for ds in data_sources(stack)]
        runbooks = stack_runbook_list(stack)
        self.dashboards = [
            grafana_provider.oss.Dashboard(
                f"{name}-dashboard-{d.uid}",
                folder=self.folders[d.folder].uid,
                config_json=json.dumps(render_dashboard(d, runbooks, stack.site.runbook_hub_url,
                                                             long_term=stack.metrics.long_term is not None), sort_keys=True),
                overwrite=True,  # the file is the truth; edits made in the UI are replaced
                message="Managed by Pulumi from dashboards/",
                opts=pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=self.data_sources),
            )
            for d in stack_dashboards(stack, args.dashboards)
        ]
        self.contact_points = {
            point["name"]: grafana_provider.alerting.ContactPoint(
                f"{name}-contact-{point['name']}", **self._with_secrets(point, args.secrets), opts=api)
            for point in contact_points(stack)
        }
        self.notification_policy = grafana_provider.alerting.NotificationPolicy(
            f"{name}-notification-policy",
            **_policy_args(notification_policy(alert_routing_tree(stack))),
            opts=pulumi.ResourceOptions(parent=self, provider=self.provider, depends_on=list(self.contact_points.values())),
        )
        self.url = cfg.url
        self.admin_password = password.result
        self.register_outputs({"url": self.url, "adminPassword": self.admin_password})

    def _certificate(self, name: str, cfg: GrafanaConfig, ns: ReleaseNamespace,
                     secrets: dict[str, pulumi.Output[str]]) -> list[pulumi.Resource]:
        """The ingress's TLS Secret, issued by cert-manager or written from the stack's secrets."""
        if cfg.tls is None:
            return []
        manifest = values.certificate(cfg)
        if manifest is not None:
            manifest = {**manifest, "metadata": {**manifest["metadata"], "annotations": {
                # Created means issued: the provider must not meet Traefik's default certificate.
                "pulumi.com/waitFor": "condition=Ready", "pulumi.com/timeoutSeconds": "600"}}}
            return [CustomObject(f"{name}-certificate", manifest,
                                 opts=pulumi.ResourceOptions(parent=self, depends_on=[ns.namespace]))]
        assert cfg.tls_secret_name
        return [ns.secret(cfg.tls_secret_name, {"tls.crt": secrets[GRAFANA_TLS_CERTIFICATE],
                                                "tls.key": secrets[GRAFANA_TLS_PRIVATE_KEY]}, type="kubernetes.io/tls")]

    def _data_source(self, name: str, ds: dict[str, Any], opts: pulumi.ResourceOptions,
                     loki_passwords: dict[str, pulumi.Output[str]]) -> grafana_provider.oss.DataSource:
        user = ds.get("basic_auth_user")
        password = (pulumi.Output.secret(loki_passwords[user]).apply(lambda p: json.dumps({"basicAuthPassword": p}))
                    if user else None)
        return grafana_provider.oss.DataSource(
            f"{name}-datasource-{ds['uid']}",
            uid=ds["uid"],
            name=ds["name"],
            type=ds["type"],
            url=ds["url"],
            access_mode="proxy",
            is_default=ds.get("is_default", False),
            json_data_encoded=json.dumps(ds["json_data"], sort_keys=True),
            http_headers=ds.get("http_headers"),
            basic_auth_enabled=True if user else None,
            basic_auth_username=user,
            secure_json_data_encoded=password,
            opts=opts,
        )

    @staticmethod
    def _with_secrets(value: Any, secrets: dict[str, pulumi.Output[str]]) -> Any:
        if isinstance(value, SecretRef):
            return secrets[value.key]
        if isinstance(value, dict):
            return {k: Grafana._with_secrets(v, secrets) for k, v in value.items()}
        if isinstance(value, list):
            return [Grafana._with_secrets(v, secrets) for v in value]
        return value
