"""Prometheus, Alertmanager, node-exporter and the SNMP exporter on the observability nodes."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.helm import Cluster, ReleaseNamespace
from model import network_policies, pod_security
from model.values import long_term, probes
from model.values import metrics
from model.rules.registry import rule_files
from model.config import StackConfig, required_secrets
from model.values.helm import (BLACKBOX_EXPORTER_CHART, KUBE_PROMETHEUS_STACK_CHART, SNMP_EXPORTER_CHART,
                        VICTORIA_METRICS_CLUSTER_CHART)
from model.values.routing import SECRET_FILES, alertmanager_config


@dataclass(frozen=True)
class MetricsArgs:
    config: StackConfig
    secrets: dict[str, pulumi.Output[str]]
    cluster: Cluster = Cluster()


class MetricsStack(pulumi.ComponentResource):
    def __init__(self, name: str, args: MetricsArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:observability:Metrics", name, None, opts)
        cfg = args.config
        endpoints = cfg.endpoints()
        namespace = endpoints.kube_prometheus.namespace
        # Retained: deleting the namespace would delete the TSDB's volume claim with it.
        ns = ReleaseNamespace(self, name, namespace, args.cluster, retain_on_delete=True, formerly=namespace,
                              labels=pod_security.namespace_labels(cfg, namespace),
                              policies=network_policies.in_namespace(cfg, namespace))
        # Receiver credentials reach Alertmanager only as files of this Secret.
        receiver_secrets = ns.secret(metrics.ALERTMANAGER_SECRET, {
            SECRET_FILES[k]: args.secrets[k] for k in required_secrets(cfg) if k in SECRET_FILES})
        values = metrics.kube_prometheus_stack_values(cfg, rule_files(cfg), alertmanager_config(cfg))
        # Protected: deleting the release would take the Prometheus StatefulSet and its TSDB with it.
        self.prometheus = ns.release(endpoints.kube_prometheus.name, KUBE_PROMETHEUS_STACK_CHART, values,
                                     protect=True, needs=[receiver_secrets])
        if cfg.metrics.snmp.targets:
            self.snmp_exporter = ns.release(endpoints.snmp_exporter.name, SNMP_EXPORTER_CHART,
                                            metrics.snmp_exporter_values(cfg))
        if cfg.probes:
            self.blackbox_exporter = ns.release(endpoints.blackbox_exporter.name, BLACKBOX_EXPORTER_CHART,
                                                probes.blackbox_exporter_values(cfg))
        if cfg.metrics.long_term:
            # Protected: vmstorage's StatefulSet holds the long-term data on its volumes.
            self.long_term = ns.release(endpoints.victoria_metrics.name, VICTORIA_METRICS_CLUSTER_CHART,
                                        long_term.victoria_metrics_values(cfg), protect=True)
        self.namespace = namespace
        self.register_outputs({"namespace": namespace, "prometheusRelease": self.prometheus.name})
