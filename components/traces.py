"""Tempo and the OpenTelemetry Collector in their namespace."""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi

from components.helm import Cluster, ReleaseNamespace
from model import network_policies, pod_security
from model.values import traces
from model.config import Role, StackConfig, TracesMode
from model.values.helm import COLLECTOR_CHART, TEMPO_CHART, TEMPO_DISTRIBUTED_CHART


@dataclass(frozen=True)
class TracesArgs:
    config: StackConfig
    secrets: dict[str, pulumi.Output[str]]
    # The release that installs the ServiceMonitor CRD the charts' monitors need.
    monitoring_crds: pulumi.Resource | None = None
    # Each Loki tenant's gateway password (components/logs.py): the collector signs in with its tenants'.
    loki_passwords: dict[str, pulumi.Output[str]] = field(default_factory=dict)
    cluster: Cluster = Cluster()


class Tracing(pulumi.ComponentResource):
    """Tempo (protected: it holds the trace blocks) and the collector DaemonSet in front of it."""

    def __init__(self, name: str, args: TracesArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("homelab:traces:Tracing", name, None, opts)
        config = args.config
        assert config.traces is not None
        endpoints = config.endpoints()
        ns = ReleaseNamespace(self, name, endpoints.tempo.namespace, args.cluster, requires=[args.monitoring_crds],
                              formerly=endpoints.tempo.namespace,
                              labels=pod_security.namespace_labels(config, endpoints.tempo.namespace),
                              policies=network_policies.in_namespace(config, endpoints.tempo.namespace))
        distributed = config.traces.mode == TracesMode.DISTRIBUTED
        storage = ([ns.credentials(traces.TEMPO_OBJECT_STORAGE_SECRET, traces.TEMPO_OBJECT_STORAGE_ENV, args.secrets)]
                   if distributed else [])
        self.tempo = ns.release(endpoints.tempo.name, TEMPO_DISTRIBUTED_CHART if distributed else TEMPO_CHART,
                                traces.tempo_values(config), protect=True, needs=storage)
        credentials = ns.secret(traces.LOKI_CREDENTIALS_SECRET,
                                {tenant: args.loki_passwords[tenant] for tenant in traces.loki_writers(config)}, type="Opaque")
        self.collector = ns.release(endpoints.collector.name, COLLECTOR_CHART, traces.collector_values(config),
                                    needs=[credentials])
        self.otlp_endpoints = endpoints.collector_otlp_endpoints
        self.tempo_url = endpoints.tempo_query_url
        syslog = config.logs.sources.syslog if config.logs else None
        loki_host = next(iter(config.hosts_with_role(Role.LOKI).values()))
        # The collector listens on every node; the Loki host's address is the one that never moves.
        self.syslog_endpoint = f"{loki_host.address}:{syslog.port}" if syslog else None
        self.register_outputs({"otlpEndpoints": self.otlp_endpoints, "tempoUrl": self.tempo_url,
                               "syslogEndpoint": self.syslog_endpoint})
