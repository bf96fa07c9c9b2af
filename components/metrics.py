"""Prometheus, Alertmanager, node-exporter and the SNMP exporter on the observability nodes."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.helm import chart_release
from components.kubernetes_objects import Namespace, Secret
from model import metrics
from model.alerts import rule_files
from model.config import StackConfig, required_secrets
from model.helm import KUBE_PROMETHEUS_STACK_CHART, SNMP_EXPORTER_CHART
from model.routing import SECRET_FILES, alertmanager_config


@dataclass(frozen=True)
class MetricsArgs:
    config: StackConfig
    secrets: dict[str, pulumi.Output[str]]


class MetricsStack(pulumi.ComponentResource):
    def __init__(self, name: str, args: MetricsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:observability:Metrics", name, None, opts)
        cfg = args.config
        endpoints = cfg.endpoints()
        namespace = endpoints.kube_prometheus.namespace
        # Deleting the namespace would delete the TSDB's volume claim with it.
        ns = Namespace(namespace, metadata={"name": namespace},
                       opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True))
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
        self.prometheus = chart_release(endpoints.kube_prometheus.name, KUBE_PROMETHEUS_STACK_CHART, namespace,
                                        values, parent=self, protect=True, depends_on=[ns, secret])
        self.snmp_exporter = chart_release(endpoints.snmp_exporter.name, SNMP_EXPORTER_CHART, namespace,
                                           metrics.snmp_exporter_values(cfg), parent=self, depends_on=[ns])
        self.namespace = namespace
        self.register_outputs({"namespace": namespace, "prometheusRelease": self.prometheus.name})
