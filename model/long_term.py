"""Long-term metrics (`metrics.longTerm`): Prometheus remote-writes every sample to a VictoriaMetrics
cluster, which keeps them for its own, longer retention.

One remote-write definition in Prometheus' own format (`remote_write`) is the truth: the chart gets
it as the operator's RemoteWriteSpec (the same keys in camelCase), the tests hand it to Debian's
Prometheus as it is. vminsert takes the writes, vmstorage keeps the data on its volumes,
vmselect answers PromQL for Grafana's long-range data source and the quarterly report.
"""

from __future__ import annotations

import re
from typing import Any

from model.config import StackConfig

# The external label each replica of an HA Prometheus pair carries (the operator's default name).
REPLICA_LABEL = "prometheus_replica"
# vmstorage's volume claim name (the chart's default): PVC names must never change.
VMSTORAGE_VOLUME = "vmstorage-volume"


def remote_write(cfg: StackConfig) -> list[dict[str, Any]]:
    """Prometheus' `remote_write` for the long-term store ([] without metrics.longTerm)."""
    lt = cfg.metrics.long_term
    if lt is None:
        return []
    q = lt.queue
    return [{
        "name": "long-term",
        "url": cfg.endpoints().long_term_write_url,
        # Sized per shard: capacity >= max_samples_per_send keeps a full batch ready; max_shards
        # caps the parallel sends (and the memory, shards x capacity samples) a catch-up may use.
        "queue_config": {"capacity": q.capacity, "min_shards": q.min_shards, "max_shards": q.max_shards,
                         "max_samples_per_send": q.max_samples_per_send,
                         "batch_send_deadline": q.batch_send_deadline},
        # The pair's replicas write the same series: without their replica label they are one
        # series in VictoriaMetrics, deduplicated by -dedup.minScrapeInterval.
        "write_relabel_configs": [{"action": "labeldrop", "regex": REPLICA_LABEL}],
    }]


def _camel(key: str) -> str:
    head, *rest = key.split("_")
    return head + "".join(part.title() for part in rest)


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", lambda m: "_" + m.group(1).lower(), key)


def _rekey(value: Any, how) -> Any:
    if isinstance(value, dict):
        return {how(k): _rekey(v, how) for k, v in value.items()}
    if isinstance(value, list):
        return [_rekey(v, how) for v in value]
    return value


def remote_write_spec(cfg: StackConfig) -> list[dict[str, Any]]:
    """The same remote-write as the operator's RemoteWriteSpec (prometheusSpec.remoteWrite)."""
    return _rekey(remote_write(cfg), _camel)


def prometheus_remote_write(spec: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A RemoteWriteSpec list back in prometheus.yml's keys: what the operator writes for it."""
    return _rekey(spec, _snake)
