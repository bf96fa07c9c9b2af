"""Tempo and the OpenTelemetry Collector in the `observability` namespace."""

from __future__ import annotations

import pulumi
from components.kubernetes_objects import Namespace

from components.helm import chart_release, credentials_secret
from model import traces
from model.config import Role, StackConfig, TracesMode
from model.helm import COLLECTOR_CHART, TEMPO_CHART, TEMPO_DISTRIBUTED_CHART


class Tracing(pulumi.ComponentResource):
    """Tempo (protected: it holds the trace blocks) and the collector DaemonSet in front of it."""

    def __init__(self, name: str, config: StackConfig, secrets: dict[str, pulumi.Output[str]],
                 monitoring_crds: pulumi.Resource | None = None, opts: pulumi.ResourceOptions | None = None):
        """`monitoring_crds`: the release that installs the ServiceMonitor CRD the charts' monitors need."""
        super().__init__("homelab:traces:Tracing", name, None, opts)
        assert config.traces is not None
        endpoints = config.endpoints()
        namespace = Namespace(endpoints.tempo.namespace, metadata={"name": endpoints.tempo.namespace},
                              opts=pulumi.ResourceOptions(parent=self, protect=True))
        depends_on: list[pulumi.Resource] = [namespace, *([monitoring_crds] if monitoring_crds else [])]
        distributed = config.traces.mode == TracesMode.DISTRIBUTED
        if distributed:
            depends_on.append(credentials_secret(traces.TEMPO_OBJECT_STORAGE_SECRET, namespace,
                                                 traces.TEMPO_OBJECT_STORAGE_ENV, secrets, self))
        ns = namespace.metadata["name"]
        self.tempo = chart_release(endpoints.tempo.name, TEMPO_DISTRIBUTED_CHART if distributed else TEMPO_CHART, ns,
                                   traces.tempo_values(config), parent=self, protect=True, depends_on=depends_on)
        self.collector = chart_release(endpoints.collector.name, COLLECTOR_CHART, ns, traces.collector_values(config),
                                       parent=self, depends_on=[namespace, *([monitoring_crds] if monitoring_crds else [])])
        self.otlp_endpoints = endpoints.collector_otlp_endpoints
        self.tempo_url = endpoints.tempo_query_url
        syslog = config.logs.sources.syslog if config.logs else None
        loki_host = next(iter(config.hosts_with_role(Role.LOKI).values()))
        # The collector listens on every node; the Loki host's address is the one that never moves.
        self.syslog_endpoint = f"{loki_host.address}:{syslog.port}" if syslog else None
        self.register_outputs({"otlpEndpoints": self.otlp_endpoints, "tempoUrl": self.tempo_url,
                               "syslogEndpoint": self.syslog_endpoint})
