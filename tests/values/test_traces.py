"""The collector's and Tempo's values: valid for the charts, pipelines whole, data reaching its store."""

from __future__ import annotations


import pytest

from model.config import required_secrets
from model.values.helm import COLLECTOR_CHART, TEMPO_CHART, TEMPO_DISTRIBUTED_CHART
from model.values.traces import SPAN_METRICS_CALLS, SPAN_METRICS_DURATION_BUCKET, collector_values, tempo_values
from tests.charts import effective_values, schema_errors
from tests.configs import homelab_config as config, problems_of

SIGNALS = ("traces", "metrics", "logs")
TEMPO_OTLP = "tempo.observability.svc.cluster.local:4317"
LOKI_OTLP = "http://loki-gateway.logging.svc.cluster.local/otlp"
TEMPO_STORAGE = {"endpoint": "minio.home.arpa:9000", "bucket": "tempo-traces"}


def distributed(sections):
    sections["traces"]["mode"] = "distributed"
    sections["traces"]["objectStorage"] = TEMPO_STORAGE
    sections["metrics"]["alertmanager"]["replicas"] = 2  # a production-like stack (metrics.alertmanager.replicas)


def signal(pipeline_id: str) -> str:
    return pipeline_id.split("/")[0]


@pytest.fixture(scope="module")
def values():
    return effective_values(COLLECTOR_CHART, collector_values(config()))


@pytest.fixture(scope="module")
def otel(values):
    """The collector configuration as the chart renders it: its default config under ours."""
    return values["config"]


def pipelines_exporting_to(otel, exporter: str) -> list[str]:
    return [pid for pid, p in otel["service"]["pipelines"].items() if exporter in p["exporters"]]


def test_values_pass_the_charts_schema():
    assert schema_errors(COLLECTOR_CHART, collector_values(config())) == []


def test_schema_check_catches_a_wrong_mode():
    wrong = collector_values(config()) | {"mode": "sidecar"}
    assert any("mode" in e for e in schema_errors(COLLECTOR_CHART, wrong))


def test_every_component_a_pipeline_names_is_defined(otel):
    pipelines = otel["service"]["pipelines"]
    assert set(map(signal, pipelines)) == set(SIGNALS)
    connectors = otel.get("connectors", {})
    for pid, pipeline in pipelines.items():
        assert signal(pid) in SIGNALS
        for name in pipeline["receivers"]:
            assert name in otel["receivers"] or name in connectors, f"{pid}: receiver {name} undefined"
        for name in pipeline["processors"]:
            assert name in otel["processors"], f"{pid}: processor {name} undefined"
        for name in pipeline["exporters"]:
            assert name in otel["exporters"] or name in connectors, f"{pid}: exporter {name} undefined"
    for name in otel["service"]["extensions"]:
        assert name in otel["extensions"]


def test_every_connector_joins_two_pipelines(otel):
    pipelines = otel["service"]["pipelines"]
    for name in otel["connectors"]:
        fed = [pid for pid, p in pipelines.items() if name in p["exporters"]]
        feeding = [pid for pid, p in pipelines.items() if name in p["receivers"]]
        assert fed and feeding, f"connector {name} is not both exporter and receiver"


def test_memory_limiter_first_and_batch_last_everywhere(otel):
    for pid, pipeline in otel["service"]["pipelines"].items():
        assert pipeline["processors"][0] == "memory_limiter", pid
        assert pipeline["processors"][-1] == "batch", pid


def test_traces_reach_tempo(otel):
    tempo_exporters = [n for n, e in otel["exporters"].items()
                       if n.split("/")[0] == "otlp" and e.get("endpoint") == TEMPO_OTLP]
    assert tempo_exporters
    traces = [pid for pid, p in otel["service"]["pipelines"].items()
              if signal(pid) == "traces" and "otlp" in p["receivers"]]
    assert traces and all(set(tempo_exporters) & set(otel["service"]["pipelines"][pid]["exporters"]) for pid in traces)
    # ... and Tempo listens where the exporter sends.
    tempo = effective_values(TEMPO_CHART, tempo_values(config()))
    assert tempo["tempo"]["receivers"]["otlp"]["protocols"]["grpc"]["endpoint"].endswith(":4317")


def test_span_metrics_are_computed_from_every_span_before_sampling(otel):
    feeding = pipelines_exporting_to(otel, "spanmetrics")
    assert feeding
    for pid in feeding:
        pipeline = otel["service"]["pipelines"][pid]
        assert signal(pid) == "traces" and "otlp" in pipeline["receivers"]
        assert not [p for p in pipeline["processors"] if "sampl" in p or "filter" in p]


def test_span_metrics_reach_prometheus(values, otel):
    spanmetrics = otel["connectors"]["spanmetrics"]
    # The latency SLO reads traces_span_metrics_duration_milliseconds_bucket: namespace + unit make that name.
    assert spanmetrics["namespace"] == "traces.span.metrics"
    assert spanmetrics["histogram"]["unit"] == "ms"
    # The names other modules (the SLO rules) import are the ones the exporter produces.
    assert SPAN_METRICS_DURATION_BUCKET == "traces_span_metrics_duration_milliseconds_bucket"
    assert SPAN_METRICS_CALLS == "traces_span_metrics_calls_total"
    metrics = [pid for pid, p in otel["service"]["pipelines"].items() if "spanmetrics" in p["receivers"]]
    assert metrics and all(signal(pid) == "metrics" for pid in metrics)
    for pid in metrics:
        assert "prometheus" in otel["service"]["pipelines"][pid]["exporters"]
    port = int(otel["exporters"]["prometheus"]["endpoint"].rsplit(":", 1)[1])
    exposed = {name: p for name, p in values["ports"].items() if p.get("enabled") and p["containerPort"] == port}
    assert len(exposed) == 1
    port_name = next(iter(exposed))
    monitor = values["serviceMonitor"]
    assert monitor["enabled"] and values["service"]["enabled"]
    assert port_name in [e["port"] for e in monitor["metricsEndpoints"]]
    assert monitor["extraLabels"] == {"release": "kube-prometheus-stack"}


def test_logs_reach_loki_with_the_right_tenant(otel):
    pipelines = otel["service"]["pipelines"]
    tenant_of_receiver = {}
    for pid, pipeline in pipelines.items():
        if signal(pid) != "logs":
            continue
        for name in pipeline["exporters"]:
            exporter = otel["exporters"][name]
            assert name.split("/")[0] == "otlphttp" and exporter["endpoint"] == LOKI_OTLP
            # The gateway takes the tenant from the credential, never from a header.
            assert "headers" not in exporter
            tenant = otel["extensions"][exporter["auth"]["authenticator"]]["client_auth"]["username"]
            for receiver in pipeline["receivers"]:
                tenant_of_receiver.setdefault(receiver, set()).add(tenant)
    assert tenant_of_receiver["file_log"] == {"homelab"}
    assert tenant_of_receiver["otlp"] == {"homelab"}
    assert tenant_of_receiver["syslog/udp"] == tenant_of_receiver["syslog/tcp"] == {"nas"}


def test_pod_logs_carry_the_namespace_loki_retains_by(otel):
    filelog = otel["receivers"]["file_log"]
    # The container parser sets k8s.namespace.name from the /var/log/pods/<ns>_<pod>_<uid>/ path.
    assert {"type": "container", "id": "container-parser"} in filelog["operators"]
    assert filelog["include"] == ["/var/log/pods/*/*/*.log"]
    assert filelog["storage"] in otel["extensions"]


def test_nas_syslog_listens_on_the_configured_port_of_every_node(values, otel):
    for transport in ("udp", "tcp"):
        receiver = otel["receivers"][f"syslog/{transport}"]
        assert receiver[transport]["listen_address"].endswith(":1514")
        assert receiver["protocol"] == "rfc5424"
        port = values["ports"][f"syslog-{transport}"]
        assert (port["hostPort"], port["containerPort"], port["protocol"]) == (1514, 1514, transport.upper())
    assert values["mode"] == "daemonset"


def test_collector_runs_on_the_dedicated_hosts_too(values):
    assert {"key": "observability.homelab/dedicated", "operator": "Equal", "value": "observability",
            "effect": "NoSchedule"} in values["tolerations"]
    mounts = {m["mountPath"]: m for m in values["extraVolumeMounts"]}
    assert mounts["/var/log/pods"]["readOnly"] is True


def test_contrib_image(values):
    assert values["image"]["repository"] == "otel/opentelemetry-collector-contrib"
    assert values["command"]["name"] == "otelcol-contrib"


def test_tempo_keeps_traces_as_configured_on_its_own_volume():
    tempo = effective_values(TEMPO_CHART, tempo_values(config()))
    assert tempo["tempo"]["retention"] == "336h"  # 14d; Tempo's Go durations know no days
    assert tempo["persistence"]["enabled"] is True and tempo["persistence"]["size"] == "30Gi"
    assert tempo["persistence"]["enableStatefulSetAutoDeletePVC"] is False
    assert tempo["nodeSelector"] == {"observability.homelab/workload": "loki"}


def test_tempo_distributed_uses_object_storage_without_credentials_in_values():
    tempo = effective_values(TEMPO_DISTRIBUTED_CHART, tempo_values(config(distributed)))
    s3 = tempo["storage"]["trace"]
    assert s3["backend"] == "s3" and s3["s3"]["bucket"] == "tempo-traces"
    assert s3["s3"]["access_key"] == "${TEMPO_S3_ACCESS_KEY_ID}"
    assert "-config.expand-env=true" in tempo["global"]["extraArgs"]
    assert tempo["compactor"]["config"]["compaction"]["block_retention"] == "336h"
    assert tempo["traces"]["otlp"]["grpc"]["enabled"] is True
    assert tempo["ingester"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] == "Retain"
    collector = collector_values(config(distributed))
    assert collector["config"]["exporters"]["otlp/tempo"]["endpoint"] == "tempo-distributor.observability.svc.cluster.local:4317"
    assert {"tempoS3AccessKeyId", "tempoS3SecretAccessKey"} <= set(required_secrets(config(distributed)))


def test_distributed_tempo_without_object_storage_is_refused():
    assert "traces.objectStorage" in problems_of(lambda s: s["traces"].update(mode="distributed"))


def test_histogram_buckets_must_ascend():
    assert "traces.spanMetrics.histogramBucketsMs" in problems_of(lambda s: s["traces"]["spanMetrics"].update(histogramBucketsMs=[100, 50]))
