"""Prometheus, Alertmanager, node-exporter and the SNMP exporter on the observability nodes."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from components.kubernetes_objects import Namespace, Secret
from pulumi_kubernetes.helm.v3 import Release, RepositoryOptsArgs

from model import metrics
from model.alerts import rule_files
from model.config import StackConfig, required_secrets
from model.routing import SECRET_FILES, alertmanager_config


@dataclass(frozen=True)
class MetricsArgs:
    config: StackConfig
    secrets: dict[str, pulumi.Output[str]]


class MetricsStack(pulumi.ComponentResource):
    def __init__(self, name: str, args: MetricsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:observability:Metrics", name, None, opts)
        cfg = args.config
        namespace = cfg.metrics.namespace
        ns = Namespace(namespace, metadata={"name": namespace},
                       opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True))
        # Receiver credentials reach Alertmanager only as files of this Secret.
        receiver_secrets = {SECRET_FILES[k]: args.secrets[k] for k in required_secrets(cfg) if k in SECRET_FILES}
        secret = Secret(
            metrics.ALERTMANAGER_SECRET,
            metadata={"name": metrics.ALERTMANAGER_SECRET, "namespace": namespace},
            string_data={k: pulumi.Output.secret(v) for k, v in receiver_secrets.items()},
            opts=pulumi.ResourceOptions(parent=self, depends_on=[ns]),
        )
        values = metrics.kube_prometheus_stack_values(cfg, rule_files(cfg), alertmanager_config(cfg))
        # Protected: deleting the release would take the Prometheus StatefulSet and its TSDB with it.
        self.prometheus = self._release(metrics.KUBE_PROMETHEUS_RELEASE, metrics.KUBE_PROMETHEUS_STACK, namespace,
                                        values, depends_on=[ns, secret], protect=True)
        self.snmp_exporter = self._release(metrics.SNMP_EXPORTER_RELEASE, metrics.SNMP_EXPORTER, namespace,
                                           metrics.snmp_exporter_values(cfg), depends_on=[ns])
        self.namespace = namespace
        self.register_outputs({"namespace": namespace, "prometheusRelease": self.prometheus.name})

    def _release(self, name: str, chart: dict, namespace: str, values: dict, depends_on: list,
                 protect: bool = False) -> Release:
        return Release(
            name,
            name=name,  # a fixed name: a generated suffix would make every rename a new release
            chart=chart["chart"],
            version=chart["version"],
            repository_opts=RepositoryOptsArgs(repo=chart["repo"]),
            namespace=namespace,
            values=values,
            max_history=10,
            opts=pulumi.ResourceOptions(parent=self, depends_on=depends_on, protect=protect),
        )
