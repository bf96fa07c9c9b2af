"""The one typed schema of a stack's configuration.

Pulumi hands the program a flat map of `<project>:<key>` values; each top-level key is one
section below. Keys are written in camelCase in Pulumi.<stack>.yaml and every problem is
reported by the key path the user wrote (`hosts.pbs.memoryMb: must be >= 2048`), all of them
at once, before any resource exists.

Secrets never live in these models: `SECRETS` names each secret key and what it is for; the
program reads them as Pulumi secrets and the models only say which ones a stack needs.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from enum import Enum
from types import UnionType
from typing import Annotated, Any, Iterable, Mapping, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel


class ConfigModel(BaseModel):
    """Base of every config section: camelCase keys as written, unknown keys rejected."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        str_strip_whitespace=True,
    )


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """A stack config that cannot be deployed; carries every problem found."""

    def __init__(self, problems: Iterable[Problem], source: str = "stack config"):
        self.problems = sorted(set(problems), key=lambda p: (p.path, p.message))
        self.source = source
        lines = [f"{source} has {len(self.problems)} problem(s):"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))


# --- shared value types -------------------------------------------------------------------

PROXMOX_TAG = re.compile(r"^[a-z0-9][a-z0-9_.-]*$")
HOSTNAME = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")


class Site(ConfigModel):
    """Facts about the homelab that every part of the stack shares."""

    name: str = Field(min_length=1)
    domain: str = Field(min_length=1)
    timezone: str = "Etc/UTC"
    ntp_servers: list[str] = Field(default_factory=lambda: ["0.debian.pool.ntp.org", "1.debian.pool.ntp.org"], min_length=1)
    # Every alert's runbook_url is <runbookHubUrl>/runbooks/<AlertName>.md.
    runbook_hub_url: str = Field(pattern=r"^https?://[^\s]+[^/\s]$")


class CloudImage(ConfigModel):
    """The cloud image every VM boots from; read only when a VM is created."""

    url: str = Field(pattern=r"^https://")
    file_name: str = Field(pattern=r"^[A-Za-z0-9._-]+\.(img|iso)$")
    checksum: str | None = Field(default=None, pattern=r"^[0-9a-f]{64,128}$")
    checksum_algorithm: str = Field(default="sha512", pattern=r"^(sha256|sha512)$")


class Proxmox(ConfigModel):
    nodes: list[str] = Field(min_length=1)
    vm_datastore: str = "local-lvm"
    snippet_datastore: str = "local"
    image_datastore: str = "local"
    cloud_image: CloudImage


class Network(ConfigModel):
    bridge: str = "vmbr0"
    vlan_id: int | None = Field(default=None, ge=1, le=4094)
    cidr: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    dns_servers: list[ipaddress.IPv4Address] = Field(min_length=1)

    def problems(self, root: "StackConfig") -> list[Problem]:
        if self.gateway not in self.cidr:
            return [Problem("network.gateway", f"{self.gateway} is outside network.cidr {self.cidr}")]
        return []


def _public_keys(keys: list[str]) -> list[str]:
    for key in keys:
        if not re.match(r"^(ssh-(ed25519|rsa)|ecdsa-sha2-nistp(256|384|521)|sk-\S+) [A-Za-z0-9+/=]+( .*)?$", key):
            raise ValueError(f"not an OpenSSH public key: {key[:24]!r}...")
    return keys


PublicKeys = Annotated[list[str], AfterValidator(_public_keys)]


class Access(ConfigModel):
    admin_user: str = Field(default="ops", pattern=r"^[a-z_][a-z0-9_-]{0,31}$")
    ssh_authorized_keys: PublicKeys = Field(min_length=1)


class K3s(ConfigModel):
    """The homelab k3s cluster that the Prometheus and Loki hosts join as agents."""

    server_url: str = Field(pattern=r"^https://[^/]+:\d+$")
    version: str = Field(pattern=r"^v\d+\.\d+\.\d+\+k3s\d+$")


class Role(str, Enum):
    PBS = "pbs"
    PROMETHEUS = "prometheus"
    LOKI = "loki"


class Host(ConfigModel):
    """One Proxmox VM of the inventory. The map key is the VM's hostname."""

    role: Role
    node: str
    vm_id: int = Field(ge=100, le=999_999_999)
    cores: int = Field(ge=1, le=64)
    memory_mb: int = Field(ge=2048, le=262_144)
    system_disk_gb: int = Field(default=32, ge=16, le=1024)
    data_disk_gb: int = Field(ge=20, le=65_536)
    address: ipaddress.IPv4Address
    # Per-VM network and access, when a host differs from the `network` / `access` defaults.
    bridge: str | None = None
    vlan_id: int | None = Field(default=None, ge=1, le=4094)
    ssh_authorized_keys: PublicKeys = Field(default_factory=list)
    tags: list[str] = Field(default_factory=list)
    # PBS only: the datastore prepared on the data disk.
    datastore: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{2,31}$")

    @field_validator("tags")
    @classmethod
    def _proxmox_tags(cls, tags: list[str]) -> list[str]:
        for tag in tags:
            if not PROXMOX_TAG.match(tag):
                raise ValueError(f"tag {tag!r} must be lowercase letters, digits, '-', '_' or '.'")
        return tags


# --- logs and traces ----------------------------------------------------------------------

LOKI_DURATION = re.compile(r"^(\d+)(h|d|w)$")
_HOURS_PER_UNIT = {"h": 1, "d": 24, "w": 24 * 7}
LOKI_MIN_RETENTION_HOURS = 24  # the compactor works on 24h index tables; shorter periods never delete
TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def duration_hours(value: str) -> int:
    """Hours of a retention written as `<n>h`, `<n>d` or `<n>w` (Loki's own duration syntax)."""
    match = LOKI_DURATION.match(value)
    if not match:
        raise ValueError(f"must be a duration like 744h, 31d or 4w (got {value!r})")
    return int(match.group(1)) * _HOURS_PER_UNIT[match.group(2)]


def _retention(value: str) -> str:
    duration_hours(value)
    return value


def _loki_retention(value: str) -> str:
    if duration_hours(value) < LOKI_MIN_RETENTION_HOURS:
        raise ValueError(f"{value} is below Loki's minimum retention of 24h (the compactor would never delete it)")
    return value


Retention = Annotated[str, AfterValidator(_retention)]
LokiRetention = Annotated[str, AfterValidator(_loki_retention)]


class ObjectStorage(ConfigModel):
    """An S3-compatible bucket store (MinIO, Garage, Ceph RGW, a NAS' S3 service, AWS)."""

    endpoint: str = Field(pattern=r"^[A-Za-z0-9.-]+(:\d+)?$")  # host[:port], no scheme
    region: str = "us-east-1"
    insecure: bool = False  # plain HTTP, e.g. MinIO on the LAN without TLS
    force_path_style: bool = True  # most self-hosted S3 servers have no per-bucket DNS names


class LokiBuckets(ConfigModel):
    chunks: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{2,62}$")
    ruler: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{2,62}$")


class LokiObjectStorage(ObjectStorage):
    buckets: LokiBuckets


class TempoObjectStorage(ObjectStorage):
    bucket: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{2,62}$")


class LokiTenant(ConfigModel):
    """One Loki tenant (X-Scope-OrgID): its retention and ingestion limits. Defaults are Loki's."""

    retention: LokiRetention | None = None  # default: logs.defaultRetention
    ingestion_rate_mb: float = Field(default=4, gt=0)
    ingestion_burst_size_mb: float = Field(default=6, gt=0)
    per_stream_rate_limit_mb: float = Field(default=3, gt=0)
    per_stream_rate_limit_burst_mb: float = Field(default=15, gt=0)
    max_streams: int = Field(default=5000, ge=1)


class NamespaceRetention(ConfigModel):
    """Keeps a Kubernetes namespace's logs of one tenant for a different period."""

    tenant: str
    namespace: str = Field(pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    retention: LokiRetention


class SyslogSource(ConfigModel):
    tenant: str
    port: int = Field(default=1514, ge=1024, le=65535)  # unprivileged: the collector is not root on the port
    protocol: str = Field(default="rfc5424", pattern=r"^(rfc5424|rfc3164)$")
    transports: list[str] = Field(default_factory=lambda: ["udp", "tcp"], min_length=1)

    @field_validator("transports")
    @classmethod
    def _transports(cls, transports: list[str]) -> list[str]:
        if set(transports) - {"udp", "tcp"} or len(set(transports)) != len(transports):
            raise ValueError(f"must be distinct entries of udp, tcp (got {transports})")
        return transports


class LogSources(ConfigModel):
    """Which tenant each stream of logs the collector receives is written to."""

    kubernetes: str  # pod logs of every node, and logs that workloads push over OTLP
    syslog: SyslogSource | None = None


class LogsMode(str, Enum):
    SINGLE_BINARY = "singleBinary"
    SCALABLE = "scalable"


class Logs(ConfigModel):
    """Loki: deployment mode, storage, tenants with their limits, retention rules."""

    mode: LogsMode = LogsMode.SINGLE_BINARY
    storage_gb: int = Field(default=50, ge=5)  # the PVC of the single binary (or of each write/backend pod)
    chunks_cache_mb: int = Field(default=512, ge=0)  # 0 turns the memcached chunk cache off
    default_retention: LokiRetention = "744h"
    tenants: dict[str, LokiTenant] = Field(min_length=1)
    namespace_retention: list[NamespaceRetention] = Field(default_factory=list)
    sources: LogSources
    object_storage: LokiObjectStorage | None = None

    def problems(self, root: "StackConfig") -> list[Problem]:
        found: list[Problem] = []
        for name, tenant in self.tenants.items():
            at = f"logs.tenants.{name}"
            if not TENANT_ID.match(name):
                found.append(Problem(at, "a tenant ID is lowercase letters, digits, '-' or '_' (at most 64)"))
            for rate, burst in (("ingestion_rate_mb", "ingestion_burst_size_mb"),
                                ("per_stream_rate_limit_mb", "per_stream_rate_limit_burst_mb")):
                rate_mb, burst_mb = getattr(tenant, rate), getattr(tenant, burst)
                if burst_mb < rate_mb:
                    found.append(Problem(f"{at}.{to_camel(burst)}", f"{burst_mb:g} is smaller than {to_camel(rate)} "
                                                                    f"{rate_mb:g}: a burst must allow at least the rate"))
        seen: dict[tuple[str, str], int] = {}
        for i, rule in enumerate(self.namespace_retention):
            at = f"logs.namespaceRetention[{i}]"
            if rule.tenant not in self.tenants:
                found.append(Problem(f"{at}.tenant", f"unknown tenant {rule.tenant!r} (logs.tenants: {', '.join(self.tenants)})"))
            key = (rule.tenant, rule.namespace)
            if key in seen:
                found.append(Problem(f"{at}.namespace", f"{rule.namespace!r} of tenant {rule.tenant!r} already has a rule "
                                                        f"(logs.namespaceRetention[{seen[key]}])"))
            seen.setdefault(key, i)
        if self.sources.kubernetes not in self.tenants:
            found.append(Problem("logs.sources.kubernetes", f"unknown tenant {self.sources.kubernetes!r} (logs.tenants: {', '.join(self.tenants)})"))
        if self.sources.syslog and self.sources.syslog.tenant not in self.tenants:
            found.append(Problem("logs.sources.syslog.tenant", f"unknown tenant {self.sources.syslog.tenant!r} (logs.tenants: {', '.join(self.tenants)})"))
        if self.mode == LogsMode.SCALABLE and self.object_storage is None:
            found.append(Problem("logs.objectStorage", "is required when logs.mode is scalable: the read, write and backend pods share their chunks through object storage"))
        if self.mode == LogsMode.SINGLE_BINARY and self.object_storage is not None:
            found.append(Problem("logs.objectStorage", "is only used when logs.mode is scalable (the single binary keeps chunks on its volume)"))
        return found


class TracesMode(str, Enum):
    SINGLE_BINARY = "singleBinary"
    DISTRIBUTED = "distributed"


class SpanMetrics(ConfigModel):
    """The spanmetrics connector: request, error and latency series per service for the latency SLO."""

    # Upper bounds of the latency histogram (ms): fine around an API's usual SLO thresholds.
    histogram_buckets_ms: list[float] = Field(
        default_factory=lambda: [5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000], min_length=1)
    dimensions: list[str] = Field(default_factory=lambda: ["http.request.method", "http.response.status_code", "http.route"])

    @field_validator("histogram_buckets_ms")
    @classmethod
    def _ascending(cls, buckets: list[float]) -> list[float]:
        if any(b <= a for a, b in zip(buckets, buckets[1:])) or buckets[0] <= 0:
            raise ValueError("must be positive and strictly ascending")
        return buckets


class Traces(ConfigModel):
    """Tempo and the OpenTelemetry Collector in front of it."""

    mode: TracesMode = TracesMode.SINGLE_BINARY
    retention: Retention = "336h"
    storage_gb: int = Field(default=20, ge=5)
    span_metrics: SpanMetrics = Field(default_factory=SpanMetrics)
    object_storage: TempoObjectStorage | None = None

    def problems(self, root: "StackConfig") -> list[Problem]:
        found: list[Problem] = []
        if duration_hours(self.retention) < 1:
            found.append(Problem("traces.retention", "must be at least 1h"))
        if self.mode == TracesMode.DISTRIBUTED and self.object_storage is None:
            found.append(Problem("traces.objectStorage", "is required when traces.mode is distributed: its ingesters, queriers and compactor share blocks through object storage"))
        if self.mode == TracesMode.SINGLE_BINARY and self.object_storage is not None:
            found.append(Problem("traces.objectStorage", "is only used when traces.mode is distributed (the single binary keeps blocks on its volume)"))
        if root.logs is None:
            found.append(Problem("logs", "is required with traces: the collector ships pod logs and syslog to Loki"))
        return found



HTTP_URL = r"^https?://[A-Za-z0-9.-]+(:\d+)?(/[^\s]*)?$"


class GrafanaDataSourceUrls(ConfigModel):
    """Backends Grafana reaches elsewhere than the stack's own services (unset: derived)."""

    prometheus: str | None = Field(default=None, pattern=HTTP_URL)
    alertmanager: str | None = Field(default=None, pattern=HTTP_URL)
    loki: str | None = Field(default=None, pattern=HTTP_URL)
    tempo: str | None = Field(default=None, pattern=HTTP_URL)


class Grafana(ConfigModel):
    """Grafana: where users reach it, where it keeps its database, what it reads."""

    url: str = Field(pattern=HTTP_URL)
    admin_user: str = Field(default="admin", pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    namespace: str = Field(default="grafana", pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    persistence_size_gi: int = Field(default=10, ge=1, le=1024)
    storage_class: str | None = None  # None: the cluster's default (k3s: local-path)
    ingress_class: str = "traefik"
    tls_secret_name: str | None = None
    # Folder uid -> title; only the titles of the known folders may be changed.
    folder_titles: dict[str, str] = Field(default_factory=dict)
    data_sources: GrafanaDataSourceUrls = Field(default_factory=GrafanaDataSourceUrls)

    def problems(self, root: "StackConfig") -> list[Problem]:
        from model.grafana import FOLDERS  # the folder list lives with the dashboards

        found: list[Problem] = []
        if self.url.rstrip("/").count("/") > 2:
            found.append(Problem("grafana.url", "must be the root URL of Grafana, without a path"))
        if self.url.startswith("https://") and not self.tls_secret_name:
            found.append(Problem("grafana.tlsSecretName", "is required for an https url (the ingress's certificate Secret)"))
        for uid, title in self.folder_titles.items():
            if uid not in FOLDERS:
                found.append(Problem(f"grafana.folderTitles.{uid}", f"unknown folder (known: {', '.join(FOLDERS)})"))
            elif not title.strip():
                found.append(Problem(f"grafana.folderTitles.{uid}", "must not be empty"))
        titles = [self.folder_titles.get(uid, default) for uid, default in FOLDERS.items()]
        for title in sorted({t for t in titles if titles.count(t) > 1}):
            found.append(Problem("grafana.folderTitles", f"two folders are titled {title!r}"))
        return found


class PbsExporter(ConfigModel):
    """The PBS job exporter on each pbs host (exporters/pbs_job_exporter.py)."""

    port: int = Field(default=9797, ge=1024, le=65535)
    poll_interval_seconds: int = Field(default=30, ge=5, le=600)


# --- metrics, SLOs and alert routing ------------------------------------------------------

# Durations as Prometheus and Alertmanager both parse them (2.42/0.25 and 3.x/0.34).
PROM_DURATION = r"^([0-9]+(ms|s|m|h|d|w|y))+$"
LABEL_NAME = r"^[a-zA-Z_][a-zA-Z0-9_]*$"
# A counter selector: `metric` or `metric{label="value",...}`; the SLO engine wraps it in rate().
SERVICE = r"^[a-z0-9][a-z0-9_-]*$"  # value of the `service` label that routes an alert
SERIES_SELECTOR = r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^{}]*\})?$"


def duration_seconds(text: str) -> int:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
    return int(sum(int(n) * units[u] for n, u in re.findall(r"([0-9]+)(ms|s|m|h|d|w|y)", text)))


class PrometheusSettings(ConfigModel):
    retention: str = Field(default="30d", pattern=PROM_DURATION)
    # Prometheus deletes the oldest blocks beyond this; keep it below the volume size (WAL headroom).
    retention_size_gb: int = Field(default=40, ge=1)
    storage_gb: int = Field(default=50, ge=5)
    storage_class: str | None = None


class AlertmanagerSettings(ConfigModel):
    retention: str = Field(default="120h", pattern=r"^[0-9]+(ms|s|m|h)$")
    storage_gb: int = Field(default=2, ge=1)
    storage_class: str | None = None


class FederationSource(ConfigModel):
    """An upstream Prometheus whose recording-rule series this one pulls over /federate."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    url: str = Field(pattern=r"^https?://[^/\s]+(/[^\s]*)?$")
    # Recording rules are named level:metric:operations, so a colon selects them and nothing raw.
    match: list[str] = Field(default_factory=lambda: ['{__name__=~"[a-zA-Z_]+:[a-zA-Z0-9_:]+"}'], min_length=1)
    scrape_interval: str = Field(default="1m", pattern=PROM_DURATION)


class SnmpTarget(ConfigModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    address: str = Field(min_length=1)
    modules: list[str] = Field(min_length=1)
    auth: str = "public_v2"
    # The `service` label of this target's alerts (e.g. network, storage, power).
    service: str = Field(pattern=SERVICE)
    # Set on the NAS: its HOST-RESOURCES-MIB storage table feeds the disk usage alert.
    has_storage: bool = False


class Snmp(ConfigModel):
    targets: list[SnmpTarget] = Field(default_factory=list)
    scrape_interval: str = Field(default="1m", pattern=PROM_DURATION)
    scrape_timeout: str = Field(default="30s", pattern=PROM_DURATION)


class Metrics(ConfigModel):
    namespace: str = Field(default="monitoring", pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
    scrape_interval: str = Field(default="30s", pattern=PROM_DURATION)
    evaluation_interval: str = Field(default="1m", pattern=PROM_DURATION)
    prometheus: PrometheusSettings = Field(default_factory=PrometheusSettings)
    alertmanager: AlertmanagerSettings = Field(default_factory=AlertmanagerSettings)
    node_exporter_port: int = Field(default=9100, ge=1, le=65535)
    federation: list[FederationSource] = Field(default_factory=list)
    snmp: Snmp = Field(default_factory=Snmp)
    # Disk utilisation alerts: warning above, critical above (percent used).
    disk_warning_percent: int = Field(default=85, ge=1, le=99)
    disk_critical_percent: int = Field(default=95, ge=1, le=100)
    # A failed backup job pages only when no retry succeeded within this time.
    backup_retry_grace: str = Field(default="30m", pattern=PROM_DURATION)
    # Longest time without a successful run before a job counts as stale; per job_id overrides.
    backup_max_age: str = Field(default="26h", pattern=PROM_DURATION)
    backup_max_age_by_job: dict[str, str] = Field(default_factory=dict)

    @field_validator("backup_max_age_by_job")
    @classmethod
    def _durations(cls, ages: dict[str, str]) -> dict[str, str]:
        for job, age in ages.items():
            if not re.match(PROM_DURATION, age):
                raise ValueError(f"{job}: {age!r} is not a duration like 26h or 8d")
        return ages

    def problems(self, root: "StackConfig") -> list[Problem]:
        found = []
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


class LatencySli(ConfigModel):
    """Good events are requests faster than the threshold: one bucket of a classic histogram."""

    histogram: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")  # base name, without _bucket
    selector: dict[str, str] = Field(default_factory=dict)
    threshold: float = Field(gt=0)  # in the histogram's unit; must be one of its bucket bounds


class Sli(ConfigModel):
    """Exactly one of: goodEvents/totalEvents, badEvents/totalEvents (counter selectors), latency."""

    good_events: str | None = Field(default=None, pattern=SERIES_SELECTOR)
    bad_events: str | None = Field(default=None, pattern=SERIES_SELECTOR)
    total_events: str | None = Field(default=None, pattern=SERIES_SELECTOR)
    latency: LatencySli | None = None


class Slo(ConfigModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    service: str = Field(pattern=SERVICE)
    description: str = Field(min_length=1)
    objective: float = Field(gt=0, lt=100)  # percent of good events over the period
    period: str = Field(default="30d", pattern=PROM_DURATION)
    sli: Sli
    # Low-traffic guard: a burn-rate alert also needs this many bad events in its long window.
    min_bad_events: int = Field(default=1, ge=1)
    page_for: str = Field(default="2m", pattern=PROM_DURATION)
    ticket_for: str = Field(default="15m", pattern=PROM_DURATION)
    # False: recording rules only (burn rates, budget), for an SLO whose failures other alerts
    # already page one by one (the backup jobs).
    alerts: bool = True

    def problems(self, at: str) -> list[Problem]:
        found = []
        if not self.alerts and self.min_bad_events > 1:
            found.append(Problem(f"{at}.minBadEvents", "has no effect with alerts: false (the SLO raises no alert)"))
        sli = self.sli
        kinds = [k for k, set_ in (("goodEvents", sli.good_events), ("badEvents", sli.bad_events), ("latency", sli.latency)) if set_]
        if len(kinds) != 1:
            found.append(Problem(f"{at}.sli", f"needs exactly one of goodEvents, badEvents or latency (got {', '.join(kinds) or 'none'})"))
        elif kinds[0] != "latency" and not sli.total_events:
            found.append(Problem(f"{at}.sli.totalEvents", f"is required with {kinds[0]}"))
        elif kinds[0] == "latency" and sli.total_events:
            found.append(Problem(f"{at}.sli.totalEvents", "is not used with latency (the histogram's _count is the total)"))
        return found


class Matcher(ConfigModel):
    """One Alertmanager matcher, written as in Alertmanager: `service = "backups"`."""

    label: str = Field(pattern=LABEL_NAME)
    op: str = Field(pattern=r"^(=|!=|=~|!~)$")
    value: str

    @classmethod
    def parse(cls, text: str) -> "Matcher":
        m = re.match(r'^\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"((?:[^"\\]|\\.)*)"\s*$', text)
        if not m:
            raise ValueError(f'matcher {text!r} must look like: label = "value" (=, !=, =~, !~)')
        return cls(label=m.group(1), op=m.group(2), value=m.group(3))

    def __str__(self) -> str:
        return f'{self.label} {self.op} "{self.value}"'


class PagerDutyReceiver(ConfigModel):
    severity: str = "critical"


class MattermostReceiver(ConfigModel):
    channel: str | None = Field(default=None, pattern=r"^[a-z0-9_-]+$")
    username: str = "alertmanager"


class HeartbeatReceiver(ConfigModel):
    # Alertmanager 0.25 has no url_file for webhooks: the URL itself must not hold a token;
    # a bearer token, when the service wants one, comes from the alertingHeartbeatToken secret.
    url: str = Field(pattern=r"^https?://[^\s@]+$")
    bearer_token: bool = False


class Receiver(ConfigModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    pagerduty: PagerDutyReceiver | None = None
    mattermost: MattermostReceiver | None = None
    heartbeat: HeartbeatReceiver | None = None

    def kind(self) -> str | None:
        kinds = [k for k in ("pagerduty", "mattermost", "heartbeat") if getattr(self, k) is not None]
        return kinds[0] if len(kinds) == 1 else None


class Route(ConfigModel):
    matchers: list[Matcher] = Field(min_length=1)
    receiver: str
    continue_: bool = Field(default=False, alias="continue")
    group_by: list[str] | None = None
    group_wait: str | None = Field(default=None, pattern=PROM_DURATION)
    group_interval: str | None = Field(default=None, pattern=PROM_DURATION)
    repeat_interval: str | None = Field(default=None, pattern=PROM_DURATION)

    @field_validator("matchers", mode="before")
    @classmethod
    def _parse_matchers(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [Matcher.parse(v) if isinstance(v, str) else v for v in value]
        return value


class Alerting(ConfigModel):
    """The routing table: one source for Alertmanager's route tree and Grafana's policy."""

    receiver: str  # the root route's receiver: whatever no route below claims
    group_by: list[str] = Field(default_factory=lambda: ["alertname", "service"])
    group_wait: str = Field(default="30s", pattern=PROM_DURATION)
    group_interval: str = Field(default="5m", pattern=PROM_DURATION)
    repeat_interval: str = Field(default="4h", pattern=PROM_DURATION)
    routes: list[Route] = Field(default_factory=list)
    receivers: list[Receiver] = Field(min_length=1)
    # The Watchdog always fires; its route sends it here every watchdogInterval.
    watchdog_receiver: str
    watchdog_interval: str = Field(default="1m", pattern=PROM_DURATION)

    def receiver_named(self, name: str) -> Receiver | None:
        return next((r for r in self.receivers if r.name == name), None)

    def problems(self, root: "StackConfig") -> list[Problem]:
        found = []
        seen: set[str] = set()
        for i, receiver in enumerate(self.receivers):
            if receiver.name in seen:
                found.append(Problem(f"alerting.receivers[{i}].name", f"{receiver.name!r} is used twice"))
            seen.add(receiver.name)
            if receiver.kind() is None:
                found.append(Problem(f"alerting.receivers[{i}]", "needs exactly one of pagerduty, mattermost, heartbeat"))
        refs = [("alerting.receiver", self.receiver), ("alerting.watchdogReceiver", self.watchdog_receiver)]
        refs += [(f"alerting.routes[{i}].receiver", r.receiver) for i, r in enumerate(self.routes)]
        for path, name in refs:
            if name not in seen:
                found.append(Problem(path, f"unknown receiver {name!r} (alerting.receivers: {', '.join(sorted(seen))})"))
        watchdog = self.receiver_named(self.watchdog_receiver)
        if watchdog and watchdog.kind() != "heartbeat":
            found.append(Problem("alerting.watchdogReceiver", "must be a heartbeat receiver: the Watchdog must never page"))
        for i, r in enumerate(self.routes):
            target = self.receiver_named(r.receiver)
            if target and target.kind() == "heartbeat":
                found.append(Problem(f"alerting.routes[{i}].receiver", "a heartbeat receiver only takes the Watchdog"))
        return found


class StackConfig(ConfigModel):
    site: Site
    proxmox: Proxmox
    network: Network
    access: Access
    k3s: K3s | None = None
    hosts: dict[str, Host] = Field(min_length=1)
    pbs_exporter: PbsExporter = Field(default_factory=PbsExporter)
    logs: Logs | None = None
    traces: Traces | None = None
    grafana: Grafana | None = None
    metrics: Metrics = Field(default_factory=Metrics)
    slos: list[Slo] = Field(default_factory=list)
    alerting: Alerting | None = None

    def hosts_with_role(self, role: Role) -> dict[str, Host]:
        return {name: h for name, h in self.hosts.items() if h.role == role}

    def problems(self) -> list[Problem]:
        """Everything a field alone cannot know: references, uniqueness, role rules."""
        found: list[Problem] = []
        for section in (self.network, self.grafana):
            if section is not None:
                found += section.problems(self)
        found += self._host_problems()
        found += self.logs.problems(self) if self.logs else []
        found += self.traces.problems(self) if self.traces else []
        found += self._metrics_problems()
        return found

    def _metrics_problems(self) -> list[Problem]:
        found = self.metrics.problems(self)
        names: set[str] = set()
        for i, slo in enumerate(self.slos):
            if slo.name in names:
                found.append(Problem(f"slos[{i}].name", f"{slo.name!r} is used twice"))
            names.add(slo.name)
            found += slo.problems(f"slos[{i}]")
        if self.alerting is None:
            if self.hosts_with_role(Role.PROMETHEUS):
                found.append(Problem("alerting", "is required: the routing table of Alertmanager"))
        else:
            found += self.alerting.problems(self)
        return found

    def _host_problems(self) -> list[Problem]:
        found: list[Problem] = []
        seen_ids: dict[int, str] = {}
        seen_addresses: dict[str, str] = {}
        reserved = {str(self.network.gateway): "network.gateway"}
        for name, host in self.hosts.items():
            at = f"hosts.{name}"
            if not HOSTNAME.match(name):
                found.append(Problem(at, "the key is the VM's hostname: lowercase letters, digits and '-'"))
            if host.node not in self.proxmox.nodes:
                found.append(Problem(f"{at}.node", f"unknown Proxmox node {host.node!r} (proxmox.nodes: {', '.join(self.proxmox.nodes)})"))
            if host.vm_id in seen_ids:
                found.append(Problem(f"{at}.vmId", f"{host.vm_id} is already used by hosts.{seen_ids[host.vm_id]}"))
            seen_ids.setdefault(host.vm_id, name)
            address = str(host.address)
            if host.address not in self.network.cidr:
                found.append(Problem(f"{at}.address", f"{address} is outside network.cidr {self.network.cidr}"))
            elif host.address in (self.network.cidr.network_address, self.network.cidr.broadcast_address):
                found.append(Problem(f"{at}.address", f"{address} is not a usable host address of {self.network.cidr}"))
            if address in seen_addresses:
                found.append(Problem(f"{at}.address", f"{address} is already used by {seen_addresses[address]}"))
            seen_addresses.setdefault(address, f"hosts.{name}")
            if address in reserved:
                found.append(Problem(f"{at}.address", f"{address} is the {reserved[address]}"))
            if host.role == Role.PBS and not host.datastore:
                found.append(Problem(f"{at}.datastore", "is required for a pbs host (the PBS datastore on the data disk)"))
            if host.role != Role.PBS and host.datastore:
                found.append(Problem(f"{at}.datastore", "only a pbs host has a datastore"))
        for role in Role:
            if not self.hosts_with_role(role):
                found.append(Problem("hosts", f"needs at least one host with role {role.value!r}"))
        if self.k3s is None and any(h.role != Role.PBS for h in self.hosts.values()):
            found.append(Problem("k3s", "is required: the prometheus and loki hosts join the k3s cluster"))
        return found


# --- secrets ------------------------------------------------------------------------------

@dataclass(frozen=True)
class SecretSpec:
    key: str
    purpose: str
    example: str


SECRETS: dict[str, SecretSpec] = {
    s.key: s
    for s in [
        SecretSpec("k3sToken", "join token of the homelab k3s cluster (/var/lib/rancher/k3s/server/node-token on a server)", "K10...::server:..."),
        SecretSpec("lokiS3AccessKeyId", "access key of Loki's object storage (logs.mode scalable)", "loki-writer"),
        SecretSpec("lokiS3SecretAccessKey", "secret key of Loki's object storage (logs.mode scalable)", "..."),
        SecretSpec("tempoS3AccessKeyId", "access key of Tempo's object storage (traces.mode distributed)", "tempo-writer"),
        SecretSpec("tempoS3SecretAccessKey", "secret key of Tempo's object storage (traces.mode distributed)", "..."),
        SecretSpec("pagerdutyRoutingKey", "PagerDuty Events API v2 integration key of the pagerduty receivers", "R0123456789abcdef0123456789abcdef"),
        SecretSpec("mattermostWebhookUrl", "Mattermost incoming webhook URL of the mattermost receivers", "https://chat.internal/hooks/xxxxxxxx"),
        SecretSpec("alertingHeartbeatToken", "bearer token of the Watchdog heartbeat receiver (heartbeat.bearerToken: true)", "hb_xxxxxxxx"),
    ]
}


def required_secrets(cfg: StackConfig) -> list[str]:
    needed = []
    if any(h.role != Role.PBS for h in cfg.hosts.values()):
        needed.append("k3sToken")
    if cfg.logs and cfg.logs.mode == LogsMode.SCALABLE:
        needed += ["lokiS3AccessKeyId", "lokiS3SecretAccessKey"]
    if cfg.traces and cfg.traces.mode == TracesMode.DISTRIBUTED:
        needed += ["tempoS3AccessKeyId", "tempoS3SecretAccessKey"]
    receivers = cfg.alerting.receivers if cfg.alerting else []
    if any(r.pagerduty for r in receivers):
        needed.append("pagerdutyRoutingKey")
    if any(r.mattermost for r in receivers):
        needed.append("mattermostWebhookUrl")
    if any(r.heartbeat and r.heartbeat.bearer_token for r in receivers):
        needed.append("alertingHeartbeatToken")
    return needed


# --- loading ------------------------------------------------------------------------------

def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _keys_at(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """The keys a user may write at `loc`, for the hint on an unknown key."""
    current: Any = model
    for part in loc:
        while get_origin(current) in (Union, UnionType):
            current = next(a for a in get_args(current) if a is not type(None))
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
            if field is None:
                return []
            current = field.annotation
        elif get_origin(current) in (dict, list):
            current = get_args(current)[-1]
        else:
            return []
    while get_origin(current) in (Union, UnionType):
        current = next(a for a in get_args(current) if a is not type(None))
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _message(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        allowed = _keys_at(model, error["loc"][:-1])
        return f"unknown key (expected one of: {', '.join(allowed)})" if allowed else "unknown key"
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']}"
    if kind == "less_than_equal":
        return f"must be <= {ctx['le']}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern']} (got {error.get('input')!r})"
    if kind == "enum":
        return f"must be one of {ctx['expected']} (got {error.get('input')!r})"
    msg = str(error["msg"])
    return msg[len("Value error, "):] if msg.startswith("Value error, ") else msg[0].lower() + msg[1:]


def load_stack_config(raw: Mapping[str, Any], source: str = "stack config") -> StackConfig:
    """Validate the project's config map (key -> decoded value); raise ConfigError with all problems."""
    try:
        cfg = StackConfig.model_validate(dict(raw))
    except ValidationError as exc:
        raise ConfigError(
            (Problem(_path(e["loc"]), _message(e, StackConfig)) for e in exc.errors()), source
        ) from None
    problems = cfg.problems()
    if problems:
        raise ConfigError(problems, source)
    return cfg
