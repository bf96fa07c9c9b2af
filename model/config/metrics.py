"""Section `metrics`: Prometheus, Alertmanager, long-term storage, federation, SNMP and the thresholds of the stack's own alerts."""

from __future__ import annotations

from pydantic import Field

from model.config.base import ConfigModel, Problem
from model.config.fields import SERVICE, GoDuration, PromDuration, duration_seconds


class PrometheusSettings(ConfigModel):
    retention: PromDuration = "30d"
    # Prometheus deletes the oldest blocks beyond this; keep it below the volume size (WAL headroom).
    retention_size_gb: int = Field(default=40, ge=1)
    storage_gb: int = Field(default=50, ge=5)
    storage_class: str | None = None
    # 2: an HA pair scraping and evaluating the same; each carries its own `prometheus_replica`
    # external label, dropped from alerts so Alertmanager sees one alert (model/values/metrics.py).
    replicas: int = Field(default=1, ge=1)


class AlertmanagerSettings(ConfigModel):
    retention: GoDuration = "120h"
    storage_gb: int = Field(default=2, ge=1)
    storage_class: str | None = None
    # > 1: a cluster gossiping its notification log and silences; Prometheus sends to every peer.
    replicas: int = Field(default=1, ge=1)


# VictoriaMetrics' -retentionPeriod: a whole number of days, weeks or years (no months, no minutes).
LONG_TERM_RETENTION = r"^[1-9][0-9]*[dwy]$"


class LongTermStorage(ConfigModel):
    """vmstorage's volumes: one claim per vmstorage pod."""

    size_gb: int = Field(ge=10)
    storage_class: str | None = None


class RemoteWriteQueue(ConfigModel):
    """Prometheus' remote-write queue_config: what it may buffer in memory per shard and send at once."""

    capacity: int = Field(default=10000, ge=100)
    max_shards: int = Field(default=10, ge=1, le=200)
    min_shards: int = Field(default=1, ge=1)
    max_samples_per_send: int = Field(default=2000, ge=100)
    batch_send_deadline: PromDuration = "5s"


class LongTermMetrics(ConfigModel):
    """Remote-write of every sample to a VictoriaMetrics cluster with its own, longer retention."""

    retention: str = Field(default="400d", pattern=LONG_TERM_RETENTION)
    storage: LongTermStorage  # required: no long-term store without data-safe volumes
    vmstorage_replicas: int = Field(default=2, ge=1)
    vminsert_replicas: int = Field(default=2, ge=1)
    vmselect_replicas: int = Field(default=2, ge=1)
    # Copies of each sample across vmstorage nodes (vminsert -replicationFactor).
    replication_factor: int = Field(default=1, ge=1)
    queue: RemoteWriteQueue = Field(default_factory=RemoteWriteQueue)
    # Remote-write lagging this long behind the newest sample raises RemoteWriteBehind.
    max_lag: PromDuration = "10m"


class FederationSource(ConfigModel):
    """An upstream Prometheus whose recording-rule series this one pulls over /federate."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    url: str = Field(pattern=r"^https?://[^/\s]+(/[^\s]*)?$")
    # Recording rules are named level:metric:operations, so a colon selects them and nothing raw.
    match: list[str] = Field(default_factory=lambda: ['{__name__=~"[a-zA-Z_]+:[a-zA-Z0-9_:]+"}'], min_length=1)
    scrape_interval: PromDuration = "1m"


class SnmpTarget(ConfigModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    # What the exporter polls (a host name or address); unset: <name>.<site.domain> (model/config/loading.py).
    address: str = Field(min_length=1)
    modules: list[str] = Field(min_length=1)
    auth: str = "public_v2"
    # The `service` label of this target's alerts (e.g. network, storage, power).
    service: str = Field(pattern=SERVICE)
    # Set on the NAS: its HOST-RESOURCES-MIB storage table (module hrStorage) feeds the disk usage alert.
    has_storage: bool = False


class Snmp(ConfigModel):
    targets: list[SnmpTarget] = Field(default_factory=list)
    scrape_interval: PromDuration = "1m"
    scrape_timeout: PromDuration = "30s"


class Metrics(ConfigModel):
    namespace: str = Field(default="monitoring", pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
    scrape_interval: PromDuration = "30s"
    evaluation_interval: PromDuration = "1m"
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    alertmanager: AlertmanagerSettings = Field(default_factory=AlertmanagerSettings)
    node_exporter_port: int = Field(default=9100, ge=1, le=65535)
    federation: list[FederationSource] = Field(default_factory=list)
    snmp: Snmp = Field(default_factory=Snmp)
    # Disk utilisation alerts: warning above, critical above (percent used).
    disk_warning_percent: int = Field(default=85, ge=1, le=99)
    disk_critical_percent: int = Field(default=95, ge=1, le=100)
    # A failed backup job pages only when no retry succeeded within this time.
    backup_retry_grace: PromDuration = "30m"
    # Longest time without a successful run before a job counts as stale; per job_id overrides.
    backup_max_age: PromDuration = "26h"
    backup_max_age_by_job: dict[str, PromDuration] = Field(default_factory=dict)
    long_term: LongTermMetrics | None = None

    def problems(self, scales_out: str) -> list[Problem]:
        """`scales_out`: why the stack counts as production-like (StackConfig.scales_out), or ''."""
        found = self._scale_out_problems(scales_out)
        if self.disk_critical_percent <= self.disk_warning_percent:
            found.append(Problem("metrics.diskCriticalPercent", f"must be above metrics.diskWarningPercent ({self.disk_warning_percent})"))
        if self.prometheus.retention_size_gb >= self.prometheus.storage_gb:
            found.append(Problem("metrics.prometheus.retentionSizeGb", f"must be below metrics.prometheus.storageGb ({self.prometheus.storage_gb}) to leave room for the WAL"))
        for kind, items in (("federation", self.federation), ("snmp.targets", self.snmp.targets)):
            seen: set[str] = set()
            for i, item in enumerate(items):
                if item.name in seen:
                    found.append(Problem(f"metrics.{kind}[{i}].name", f"{item.name!r} is used twice"))
                seen.add(item.name)
        return found

    def _scale_out_problems(self, scales_out: str) -> list[Problem]:
        found = []
        if scales_out and self.alertmanager.replicas < 2:
            found.append(Problem("metrics.alertmanager.replicas",
                                 f"must be >= 2 when the stack scales out ({scales_out}): one Alertmanager "
                                 "loses its notification log and silences when it restarts"))
        lt = self.long_term
        if lt is None:
            return found
        if lt.replication_factor > lt.vmstorage_replicas:
            found.append(Problem("metrics.longTerm.replicationFactor",
                                 f"{lt.replication_factor} is more than metrics.longTerm.vmstorageReplicas "
                                 f"({lt.vmstorage_replicas}): each copy needs its own vmstorage node"))
        if lt.queue.min_shards > lt.queue.max_shards:
            found.append(Problem("metrics.longTerm.queue.minShards", f"must be <= metrics.longTerm.queue.maxShards ({lt.queue.max_shards})"))
        if lt.queue.max_samples_per_send > lt.queue.capacity:
            found.append(Problem("metrics.longTerm.queue.maxSamplesPerSend",
                                 f"must be <= metrics.longTerm.queue.capacity ({lt.queue.capacity}): a send takes samples from the queue"))
        if long_term_days(lt.retention) <= duration_seconds(self.prometheus.retention) / 86400:
            found.append(Problem("metrics.longTerm.retention",
                                 f"{lt.retention} is not longer than metrics.prometheus.retention ({self.prometheus.retention})"))
        return found


def long_term_days(retention: str) -> float:
    """VictoriaMetrics' retention (LONG_TERM_RETENTION) in days."""
    return int(retention[:-1]) * {"d": 1, "w": 7, "y": 365}[retention[-1]]
