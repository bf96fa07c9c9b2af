"""Loki's values: valid for the chart, and meaning what the stack config says."""

from __future__ import annotations

import re

import pytest

from model.config import required_secrets
from model.values.helm import LOKI_CHART
from model.values.logs import byte_size, loki_values, tenants
from tests.charts import effective_values, schema_errors
from tests.configs import homelab_config as config, problems_of

OBJECT_STORAGE = {"endpoint": "minio.home.arpa:9000", "insecure": True,
                  "buckets": {"chunks": "loki-chunks", "ruler": "loki-ruler"}}


def scalable(sections):
    sections["logs"]["mode"] = "scalable"
    sections["logs"]["objectStorage"] = OBJECT_STORAGE
    sections["metrics"]["alertmanager"]["replicas"] = 2  # a production-like stack (metrics.alertmanager.replicas)


def hours(duration: str) -> int:
    number, unit = re.fullmatch(r"(\d+)([hdw])", duration).groups()
    return int(number) * {"h": 1, "d": 24, "w": 168}[unit]


def mebibytes(size: str) -> float:
    number, unit = re.fullmatch(r"(\d+)(MB|KB)", size).groups()
    return int(number) / (1 if unit == "MB" else 1024)


def stream_retention(values: dict, tenant: str, namespace: str) -> str:
    """The period Loki's compactor applies to a stream of `namespace` in `tenant`.

    Loki's rule: the matching retention_stream with the highest priority, else the tenant's
    retention_period, else limits_config's. Only equality selectors are used here.
    """
    loki = values["loki"]
    override = loki["runtimeConfig"]["overrides"].get(tenant, {})
    matching = []
    for rule in override.get("retention_stream", []):
        label, value = re.fullmatch(r'\{(\w+)="([^"]*)"\}', rule["selector"]).groups()
        # Loki's OTLP endpoint stores the resource attribute k8s.namespace.name as this label.
        if label == "k8s_namespace_name" and value == namespace:
            matching.append(rule)
    if matching:
        return max(matching, key=lambda r: r["priority"])["period"]
    return override.get("retention_period", loki["limits_config"]["retention_period"])


@pytest.fixture(scope="module")
def homelab():
    return loki_values(config())


@pytest.mark.parametrize("change", [None, scalable], ids=["singleBinary", "scalable"])
def test_values_pass_the_charts_schema(change):
    assert schema_errors(LOKI_CHART, loki_values(config(change))) == []


def test_schema_check_catches_a_wrong_value():
    values = loki_values(config())
    values["chunksCache"]["allocatedMemory"] = "512Mi"
    assert any("allocatedMemory" in e for e in schema_errors(LOKI_CHART, values))


def test_each_namespace_keeps_its_logs_as_configured(homelab):
    # Pulumi.homelab.yaml: kube-system 7d, monitoring 14d, api-gateway 60d, the rest 31d; nas 90d.
    assert hours(stream_retention(homelab, "homelab", "kube-system")) == 7 * 24
    assert hours(stream_retention(homelab, "homelab", "logging")) == 7 * 24
    assert hours(stream_retention(homelab, "homelab", "monitoring")) == 14 * 24
    assert hours(stream_retention(homelab, "homelab", "api-gateway")) == 60 * 24
    assert hours(stream_retention(homelab, "homelab", "default")) == 31 * 24
    assert hours(stream_retention(homelab, "nas", "kube-system")) == 90 * 24
    # A tenant nobody configured falls back to the default retention.
    assert hours(stream_retention(homelab, "someone-else", "default")) == 31 * 24


def test_every_retention_is_at_least_lokis_minimum(homelab):
    loki = homelab["loki"]
    periods = [loki["limits_config"]["retention_period"]]
    for override in loki["runtimeConfig"]["overrides"].values():
        periods.append(override["retention_period"])
        periods += [rule["period"] for rule in override.get("retention_stream", [])]
    assert len(periods) == 1 + 2 + 4
    assert all(hours(p) >= 24 for p in periods)


def test_each_tenant_gets_its_own_limits(homelab):
    overrides = homelab["loki"]["runtimeConfig"]["overrides"]
    assert set(overrides) == {"homelab", "nas"}
    nas, homelab_tenant = overrides["nas"], overrides["homelab"]
    assert (nas["ingestion_rate_mb"], nas["ingestion_burst_size_mb"]) == (4, 32)
    assert (mebibytes(nas["per_stream_rate_limit"]), mebibytes(nas["per_stream_rate_limit_burst"])) == (4, 24)
    assert nas["max_global_streams_per_user"] == 1000
    assert (homelab_tenant["ingestion_rate_mb"], homelab_tenant["ingestion_burst_size_mb"]) == (6, 12)
    assert homelab_tenant["max_global_streams_per_user"] == 10000
    # The NAS is tuned for bursts: it may burst to 8x its rate, the cluster to 2x.
    assert nas["ingestion_burst_size_mb"] / nas["ingestion_rate_mb"] > homelab_tenant["ingestion_burst_size_mb"] / homelab_tenant["ingestion_rate_mb"]


def test_fractional_megabytes_keep_their_size():
    assert mebibytes(byte_size(2.5)) == 2.5
    assert byte_size(3) == "3MB"


@pytest.mark.parametrize("change", [None, scalable], ids=["singleBinary", "scalable"])
def test_compactor_can_actually_delete(change):
    values = effective_values(LOKI_CHART, loki_values(config(change)))
    loki = values["loki"]
    assert loki["auth_enabled"] is True
    compactor = loki["compactor"]
    assert compactor["retention_enabled"] is True
    # Loki 3 refuses to start retention without a store for delete requests; it must be the chunks' store.
    schema = loki["schemaConfig"]["configs"][-1]
    assert compactor["delete_request_store"] == schema["object_store"] == loki["storage"]["type"]
    assert (schema["store"], schema["schema"], schema["index"]["period"]) == ("tsdb", "v13", "24h")
    assert compactor["working_directory"].startswith(loki["commonConfig"]["path_prefix"] + "/")


def test_single_binary_avoids_the_charts_traps(homelab):
    values = effective_values(LOKI_CHART, homelab)
    assert values["deploymentMode"] == "Monolithic"
    assert values["singleBinary"]["replicas"] == 1  # the chart's default is 0
    assert [values[t]["replicas"] for t in ("read", "write", "backend")] == [0, 0, 0]
    assert values["loki"]["commonConfig"]["replication_factor"] == 1  # default 3 never reaches quorum alone
    assert values["loki"]["storage"]["type"] == "filesystem"
    loki_host_mb = config().hosts["loki"].memory_mb
    cache_mb = values["chunksCache"]["allocatedMemory"] + values["resultsCache"]["allocatedMemory"]
    assert cache_mb <= loki_host_mb // 8, "the memcached caches must leave the Loki VM room for Loki and Tempo"


def test_loki_pods_land_on_the_loki_host_and_keep_their_volume(homelab):
    cfg = config()
    from model.cloud_init import user_data
    from model.hosts import plan_vms

    loki_vm = next(p for p in plan_vms(cfg) if p.name == "loki")
    agent_config = str(user_data(cfg, loki_vm, {"k3sToken": "x"}))
    for component in ("defaults", "gateway", "chunksCache", "resultsCache"):
        for key, value in homelab[component]["nodeSelector"].items():
            assert f"{key}={value}" in agent_config, f"{component} selects a label the Loki VM never gets"
        assert homelab[component]["tolerations"][0]["effect"] == "NoSchedule"
    persistence = homelab["singleBinary"]["persistence"]
    assert persistence["size"] == "200Gi"
    assert persistence["enableStatefulSetAutoDeletePVC"] is True
    assert (persistence["whenDeleted"], persistence["whenScaled"]) == ("Retain", "Retain")


def test_scalable_mode_uses_object_storage_and_keeps_credentials_out_of_values():
    values = loki_values(config(scalable))
    assert values["deploymentMode"] == "SimpleScalable"
    assert values["singleBinary"]["replicas"] == 0
    assert all(values[t]["replicas"] > 0 for t in ("read", "write", "backend"))
    s3 = values["loki"]["storage"]["s3"]
    assert s3["endpoint"] == "minio.home.arpa:9000"
    assert values["loki"]["storage"]["bucketNames"] == {"chunks": "loki-chunks", "ruler": "loki-ruler"}
    # Only references, expanded by Loki from the Secret's environment at start.
    assert re.fullmatch(r"\$\{[A-Z0-9_]+\}", s3["accessKeyId"]) and re.fullmatch(r"\$\{[A-Z0-9_]+\}", s3["secretAccessKey"])
    assert "-config.expand-env=true" in values["defaults"]["extraArgs"]
    assert values["defaults"]["extraEnvFrom"] == [{"secretRef": {"name": "loki-object-storage"}}]
    assert "nodeSelector" not in values["defaults"]  # the scale-out mode spreads over the cluster
    assert {"lokiS3AccessKeyId", "lokiS3SecretAccessKey"} <= set(required_secrets(config(scalable)))
    assert not {"lokiS3AccessKeyId", "lokiS3SecretAccessKey"} & set(required_secrets(config()))


def test_tenants_list_name_and_org_id():
    assert [(t.name, t.org_id) for t in tenants(config().logs)] == [("homelab", "homelab"), ("nas", "nas")]


# --- bad input --------------------------------------------------------------------------------

def test_retention_below_24h_is_refused():
    def short(sections):
        sections["logs"]["tenants"]["nas"]["retention"] = "12h"
        sections["logs"]["namespaceRetention"][0]["retention"] = "1h"
        sections["logs"]["defaultRetention"] = "23h"
    found = problems_of(short)
    assert "24h" in found["logs.tenants.nas.retention"]
    assert "24h" in found["logs.namespaceRetention[0].retention"]
    assert "24h" in found["logs.defaultRetention"]


def test_retention_that_is_not_a_duration_is_refused():
    found = problems_of(lambda s: s["logs"].update(defaultRetention="a month"))
    assert "31d" in found["logs.defaultRetention"]


def test_namespace_rule_for_an_unknown_tenant_is_refused():
    found = problems_of(lambda s: s["logs"]["namespaceRetention"].append(
        {"tenant": "media", "namespace": "jellyfin", "retention": "7d"}))
    assert found["logs.namespaceRetention[4].tenant"].startswith("unknown tenant 'media'")
    assert "homelab, nas" in found["logs.namespaceRetention[4].tenant"]


def test_a_second_rule_for_the_same_namespace_is_refused():
    found = problems_of(lambda s: s["logs"]["namespaceRetention"].append(
        {"tenant": "homelab", "namespace": "kube-system", "retention": "3d"}))
    assert "logs.namespaceRetention[0]" in found["logs.namespaceRetention[4].namespace"]


def test_burst_smaller_than_its_rate_is_refused():
    def small_bursts(sections):
        sections["logs"]["tenants"]["nas"]["ingestionBurstSizeMb"] = 2
        sections["logs"]["tenants"]["homelab"]["perStreamRateLimitBurstMb"] = 1
    found = problems_of(small_bursts)
    assert "smaller than ingestionRateMb 4" in found["logs.tenants.nas.ingestionBurstSizeMb"]
    assert "smaller than perStreamRateLimitMb 3" in found["logs.tenants.homelab.perStreamRateLimitBurstMb"]


def test_scalable_mode_without_object_storage_is_refused():
    found = problems_of(lambda s: s["logs"].update(mode="scalable"))
    assert "required when logs.mode is scalable" in found["logs.objectStorage"]


def test_object_storage_without_scalable_mode_is_refused():
    found = problems_of(lambda s: s["logs"].update(objectStorage=OBJECT_STORAGE))
    assert "only used when logs.mode is scalable" in found["logs.objectStorage"]


def test_log_sources_must_name_known_tenants():
    def unknown_sources(sections):
        sections["logs"]["sources"]["kubernetes"] = "cluster"
        sections["logs"]["sources"]["syslog"]["tenant"] = "storage"
    found = problems_of(unknown_sources)
    assert "unknown tenant 'cluster'" in found["logs.sources.kubernetes"]
    assert "unknown tenant 'storage'" in found["logs.sources.syslog.tenant"]


def test_unknown_key_in_a_tenant_names_the_allowed_keys():
    found = problems_of(lambda s: s["logs"]["tenants"]["nas"].update(ingestionRate=4))
    assert "ingestionBurstSizeMb" in found["logs.tenants.nas.ingestionRate"]
