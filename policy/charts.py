"""What the policy pack knows about the Helm charts this stack deploys.

The tables below are derived from the default values.yaml of the chart versions we target
(shared/charts/<chart>-<version>/values.yaml); tests/policy/test_policy_charts.py checks every path
and every default here against those files, so a chart upgrade that moves a key fails the
suite instead of silently weakening a policy.

Helm merges a release's values over the chart defaults (maps deep, lists replaced); a policy
that needs a default the release does not override reads it from these tables.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

MISSING = object()


def lookup(values: Any, path: str, default: Any = MISSING) -> Any:
    """values["a"]["b"] for path "a.b"; `default` when any step is absent or not a map."""
    current = values
    for part in path.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return default
        current = current[part]
    return current


# --- conditions on the merged values --------------------------------------------------------

@dataclass(frozen=True)
class Flag:
    """A values switch and the chart's default for it: holds when the switch is truthy."""

    path: str
    default: Any

    def holds(self, values: Mapping[str, Any]) -> bool:
        value = lookup(values, self.path, self.default)
        return bool(value) and value is not MISSING


@dataclass(frozen=True)
class OneOf:
    """A values key whose (defaulted) value is one of `choices`."""

    path: str
    default: Any
    choices: frozenset[str]

    def holds(self, values: Mapping[str, Any]) -> bool:
        return lookup(values, self.path, self.default) in self.choices


@dataclass(frozen=True)
class AnyOf:
    conditions: tuple[Any, ...]

    def holds(self, values: Mapping[str, Any]) -> bool:
        return any(c.holds(values) for c in self.conditions)


@dataclass(frozen=True)
class Workload:
    """A pod-running component of a chart: where its `resources` block lives, when it runs."""

    resources: str
    when: tuple[Any, ...] = ()
    # Lives in a subchart whose defaults are not part of the parent chart's values.yaml.
    subchart: str | None = None

    def deployed(self, values: Mapping[str, Any]) -> bool:
        return all(c.holds(values) for c in self.when)


@dataclass(frozen=True)
class ChartFacts:
    workloads: tuple[Workload, ...]
    # Conditions under which a release of the chart creates PersistentVolumeClaims.
    persistence: tuple[Any, ...] = ()
    always_persistent: bool = False
    # Image tags the chart itself defaults to 'latest' (path, default tag, when it is deployed).
    latest_by_default: tuple[tuple[str, str, tuple[Any, ...]], ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


# --- kube-prometheus-stack 88.5.3 -----------------------------------------------------------

_OPERATOR = Flag("prometheusOperator.enabled", True)
_WEBHOOKS = Flag("prometheusOperator.admissionWebhooks.enabled", True)
_GRAFANA_IN_KPS = Flag("grafana.enabled", True)

KUBE_PROMETHEUS_STACK = ChartFacts(
    workloads=(
        Workload("prometheusOperator.resources", (_OPERATOR,)),
        # Sidecar the operator injects into every Prometheus and Alertmanager pod.
        Workload("prometheusOperator.prometheusConfigReloader.resources", (_OPERATOR,)),
        Workload("prometheusOperator.admissionWebhooks.patch.resources",
                 (_OPERATOR, _WEBHOOKS, Flag("prometheusOperator.admissionWebhooks.patch.enabled", True))),
        Workload("prometheusOperator.admissionWebhooks.deployment.resources",
                 (_OPERATOR, _WEBHOOKS, Flag("prometheusOperator.admissionWebhooks.deployment.enabled", False))),
        Workload("prometheus.prometheusSpec.resources", (Flag("prometheus.enabled", True),)),
        Workload("alertmanager.alertmanagerSpec.resources", (Flag("alertmanager.enabled", True),)),
        Workload("thanosRuler.thanosRulerSpec.resources", (Flag("thanosRuler.enabled", False),)),
        Workload("crds.upgradeJob.resources", (Flag("crds.enabled", True), Flag("crds.upgradeJob.enabled", False))),
        Workload("grafana.resources", (_GRAFANA_IN_KPS,), subchart="grafana"),
        # kube-prometheus-stack turns the dashboard and datasource sidecars on for its Grafana.
        Workload("grafana.sidecar.resources",
                 (_GRAFANA_IN_KPS, AnyOf((Flag("grafana.sidecar.dashboards.enabled", True),
                                          Flag("grafana.sidecar.datasources.enabled", True)))),
                 subchart="grafana"),
        Workload("kube-state-metrics.resources", (Flag("kubeStateMetrics.enabled", True),), subchart="kube-state-metrics"),
        Workload("prometheus-node-exporter.resources", (Flag("nodeExporter.enabled", True),),
                 subchart="prometheus-node-exporter"),
    ),
    persistence=(
        Flag("prometheus.prometheusSpec.storageSpec", {}),
        Flag("alertmanager.alertmanagerSpec.storage", {}),
        Flag("thanosRuler.thanosRulerSpec.storage", {}),
        Flag("grafana.persistence.enabled", False),
    ),
    # The routing part of alertmanager.config as the chart ships it: Helm deep-merges a
    # release's config over it, so a release that sets only `receivers` still routes to "null".
    extra={"alertmanager_default_config": {
        "route": {"receiver": "null", "routes": [{"receiver": "null", "matchers": ['alertname = "Watchdog"']}]},
        "receivers": [{"name": "null"}],
    }},
)

# --- loki 18.11.0 (grafana-community) -------------------------------------------------------

_MONOLITHIC = frozenset({"Monolithic", "SingleBinary", "Monolithic<->SimpleScalable", "SingleBinary<->SimpleScalable"})
_SIMPLE_SCALABLE = frozenset({"SimpleScalable", "Monolithic<->SimpleScalable", "SingleBinary<->SimpleScalable",
                              "SimpleScalable<->Distributed"})
_DISTRIBUTED = frozenset({"Distributed", "SimpleScalable<->Distributed"})


def _loki_mode(modes: frozenset[str]) -> OneOf:
    return OneOf("deploymentMode", "Monolithic", modes)


def _loki_component(name: str, modes: frozenset[str], enabled: bool) -> Workload:
    return Workload(f"{name}.resources", (_loki_mode(modes), Flag(f"{name}.enabled", enabled)))


LOKI = ChartFacts(
    workloads=(
        _loki_component("singleBinary", _MONOLITHIC, True),
        *(_loki_component(c, _SIMPLE_SCALABLE, True) for c in ("write", "read", "backend")),
        *(_loki_component(c, _DISTRIBUTED, True) for c in
          ("ingester", "distributor", "querier", "queryFrontend", "queryScheduler", "indexGateway", "compactor", "ruler")),
        *(_loki_component(c, _DISTRIBUTED, False) for c in
          ("bloomGateway", "bloomPlanner", "bloomBuilder", "patternIngester", "overridesExporter")),
        Workload("gateway.resources", (Flag("gateway.enabled", True),)),
        Workload("gateway.metrics.resources", (Flag("gateway.enabled", True), Flag("gateway.metrics.enabled", True))),
        Workload("lokiCanary.resources", (Flag("lokiCanary.enabled", True),)),
        Workload("chunksCache.resources", (Flag("chunksCache.enabled", True),)),
        Workload("chunksCache.l2.resources", (Flag("chunksCache.enabled", True), Flag("chunksCache.l2.enabled", False))),
        Workload("resultsCache.resources", (Flag("resultsCache.enabled", True),)),
        Workload("memcachedExporter.resources",
                 (Flag("memcachedExporter.enabled", True),
                  AnyOf((Flag("chunksCache.enabled", True), Flag("resultsCache.enabled", True))))),
        # The rules sidecar runs in the backend / single-binary / ruler pods.
        Workload("sidecar.resources", (Flag("sidecar.rules.enabled", True),)),
        Workload("tableManager.resources", (Flag("tableManager.enabled", False),)),
        Workload("minio.resources", (Flag("minio.enabled", False),)),
    ),
    # Every deployment mode keeps the WAL, chunks or the compactor's working set on PVCs.
    always_persistent=True,
)

# --- grafana 12.11.1 (grafana-community) ----------------------------------------------------

GRAFANA = ChartFacts(
    workloads=(
        Workload("resources"),
        Workload("sidecar.resources", (AnyOf(tuple(Flag(f"sidecar.{s}.enabled", False) for s in
                                                   ("dashboards", "datasources", "alerts", "notifiers", "plugins"))),)),
        Workload("initChownData.resources", (Flag("persistence.enabled", False), Flag("initChownData.enabled", True))),
        Workload("imageRenderer.resources", (Flag("imageRenderer.enabled", False),)),
        Workload("downloadDashboards.resources", (Flag("dashboards", {}),)),
    ),
    persistence=(Flag("persistence.enabled", False),),
    latest_by_default=(("imageRenderer.image.tag", "latest", (Flag("imageRenderer.enabled", False),)),),
)

# --- opentelemetry-collector 0.170.0, prometheus-snmp-exporter 9.17.1, tempo 2.2.4 ----------

OPENTELEMETRY_COLLECTOR = ChartFacts(workloads=(Workload("resources"),))

PROMETHEUS_SNMP_EXPORTER = ChartFacts(
    workloads=(Workload("resources"), Workload("configmapReload.resources", (Flag("configmapReload.enabled", False),))),
)

# prometheus-blackbox-exporter 11.17.2
PROMETHEUS_BLACKBOX_EXPORTER = ChartFacts(
    workloads=(Workload("resources"), Workload("configReloader.resources", (Flag("configReloader.enabled", False),))),
)

TEMPO = ChartFacts(
    workloads=(Workload("tempo.resources"), Workload("tempoQuery.resources", (Flag("tempoQuery.enabled", False),))),
    persistence=(Flag("persistence.enabled", False),),
)

CHARTS: dict[str, ChartFacts] = {
    "kube-prometheus-stack": KUBE_PROMETHEUS_STACK,
    "loki": LOKI,
    "grafana": GRAFANA,
    "opentelemetry-collector": OPENTELEMETRY_COLLECTOR,
    "prometheus-snmp-exporter": PROMETHEUS_SNMP_EXPORTER,
    "prometheus-blackbox-exporter": PROMETHEUS_BLACKBOX_EXPORTER,
    "tempo": TEMPO,
}

# The chart versions the tables above were derived from.
TARGET_VERSIONS = {
    "kube-prometheus-stack": "88.5.3",
    "loki": "18.11.0",
    "grafana": "12.11.1",
    "opentelemetry-collector": "0.170.0",
    "prometheus-snmp-exporter": "9.17.1",
    "prometheus-blackbox-exporter": "11.17.2",
    "tempo": "2.2.4",
}

DEFAULT_ALLOWED_REPOSITORIES = [
    "https://prometheus-community.github.io/helm-charts",
    "https://grafana-community.github.io/helm-charts",
    "https://grafana.github.io/helm-charts",
    "https://open-telemetry.github.io/opentelemetry-helm-charts",
    "oci://ghcr.io/prometheus-community/charts",
]
