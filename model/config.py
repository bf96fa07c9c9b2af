"""The one typed schema of a stack's configuration.

Pulumi hands the program a flat map of `<project>:<key>` values; each top-level key is one
section below. Keys are written in camelCase in Pulumi.<stack>.yaml and every problem is
reported by the key path the user wrote (`hosts.pbs.memoryMb: must be >= 2048`), all of them
at once, before any resource exists.

Secrets never live in these models: model/facts/secrets.py names each secret key and what it is for;
the program reads them as Pulumi secrets and `required_secrets` says which ones a stack needs.
"""

from __future__ import annotations

import ipaddress
import re
import ssl
from dataclasses import dataclass
from enum import Enum
from types import UnionType
from typing import Annotated, Any, Iterable, Mapping, Union, get_args, get_origin

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel

from contracts import recovery as recovery_catalog
from contracts import services
from model.facts import secrets
from model.facts.durations import format_seconds, parse_seconds
from model.facts.endpoints import Endpoints
from model.facts.links import FOLDERS
from model.facts.matchers import Matcher, parse_matcher


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


class RunbookHub(ConfigModel):
    """The runbook hub at site.runbookHubUrl: served by the stack, or an existing forge.

    `serve: false` when runbookHubUrl points at a forge (Gitea, GitLab, GitHub) that renders
    this repository's runbooks/<AlertName>.md itself; nothing is deployed for it then.
    """

    serve: bool = True
    ingress_class: str = "traefik"
    # The ingress's certificate Secret for an https URL; with certManager, cert-manager's
    # ingress-shim issues it from the Ingress's annotation, otherwise it must already exist.
    tls_secret_name: str | None = Field(default=None, pattern=r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
    cert_manager: "CertManagerIssuer | None" = None


class Site(ConfigModel):
    """Facts about the homelab that every part of the stack shares."""

    name: str = Field(min_length=1)
    domain: str = Field(min_length=1)
    timezone: str = "Etc/UTC"
    ntp_servers: list[str] = Field(default_factory=lambda: ["0.debian.pool.ntp.org", "1.debian.pool.ntp.org"], min_length=1)
    # Every alert's runbook_url is <runbookHubUrl>/runbooks/<AlertName>.md.
    runbook_hub_url: str = Field(pattern=r"^https?://[^\s]+[^/\s]$")
    runbook_hub: RunbookHub = Field(default_factory=RunbookHub)

    def problems(self, root: "StackConfig") -> list[Problem]:
        hub = self.runbook_hub
        if not hub.serve:
            return []
        found = []
        if self.runbook_hub_url.startswith("https://") and not hub.tls_secret_name:
            found.append(Problem("site.runbookHub.tlsSecretName",
                                 "is required to serve an https runbookHubUrl (the ingress's certificate Secret); "
                                 "or serve: false when the URL is a forge"))
        if hub.cert_manager and not hub.tls_secret_name:
            found.append(Problem("site.runbookHub.certManager", "needs tlsSecretName: the Secret cert-manager issues into"))
        if not root.hosts_with_role(Role.PROMETHEUS):
            found.append(Problem("site.runbookHub.serve", "needs a prometheus host: the hub runs beside Prometheus"))
        return found


CHECKSUM_HEX_DIGITS = {"sha256": 64, "sha512": 128}


class CloudImage(ConfigModel):
    """The cloud image every VM boots from; read only when a VM is created."""

    url: str = Field(pattern=r"^https://")
    file_name: str = Field(pattern=r"^[A-Za-z0-9._-]+\.(img|iso)$")
    # Required (see problems); optional here only so that its absence gets a helpful message.
    checksum: str | None = Field(default=None, pattern=r"^[0-9a-f]{64,128}$")
    checksum_algorithm: str = Field(default="sha512", pattern=r"^(sha256|sha512)$")
    # How long Proxmox may take to download it (a few hundred MB over the homelab's uplink).
    download_timeout_seconds: int = Field(default=1800, ge=60, le=14_400)

    def problems(self, at: str = "proxmox.cloudImage") -> list[Problem]:
        found: list[Problem] = []
        if self.checksum is None:
            found.append(Problem(f"{at}.checksum", f"is required: Proxmox verifies the download against it "
                                                   f"(the {self.checksum_algorithm} line of the image's "
                                                   f"{self.checksum_algorithm.upper()}SUMS)"))
        elif len(self.checksum) != CHECKSUM_HEX_DIGITS[self.checksum_algorithm]:
            found.append(Problem(f"{at}.checksum", f"has {len(self.checksum)} hex digits; a {self.checksum_algorithm} "
                                                   f"has {CHECKSUM_HEX_DIGITS[self.checksum_algorithm]} "
                                                   f"(checksumAlgorithm: sha256 or sha512)"))
        if re.search(r"/(latest|current)/", self.url):
            found.append(Problem(f"{at}.url", "names a moving image: each new build replaces it, so its checksum stops "
                                              "matching and nodes added later boot another system; use the build's "
                                              "dated directory (e.g. .../bookworm/20250210-2019/...)"))
        return found


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
    # First boot of an agent VM (cloud-init, the k3s install, the join) until its node is Ready:
    # every Helm release waits for that, then Helm waits this long for the release's workloads
    # (first image pulls included).
    node_ready_timeout_seconds: int = Field(default=1200, ge=60, le=7200)
    release_timeout_seconds: int = Field(default=900, ge=60, le=7200)


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

LOKI_MIN_RETENTION_HOURS = 24  # the compactor works on 24h index tables; shorter periods never delete
TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def duration_hours(value: str) -> int:
    """Whole hours of a retention such as `744h`, `31d` or `4w` (Loki's and Tempo's periods)."""
    try:
        seconds = parse_seconds(value)
    except ValueError:
        seconds = -1
    if seconds < 0 or seconds % 3600:
        raise ValueError(f"must be a duration like 744h, 31d or 4w (got {value!r})")
    return int(seconds // 3600)


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


class IssuerKind(str, Enum):
    CLUSTER_ISSUER = "ClusterIssuer"
    ISSUER = "Issuer"  # in grafana.namespace


class CertManagerIssuer(ConfigModel):
    """A cert-manager issuer that already runs in the cluster (its chart is not part of this stack)."""

    issuer: str = Field(pattern=r"^[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?$")
    issuer_kind: IssuerKind = IssuerKind.CLUSTER_ISSUER


def _pem_certificates(value: str) -> str:
    blocks = re.findall(r"-----BEGIN CERTIFICATE-----\s+[A-Za-z0-9+/=\s]+?-----END CERTIFICATE-----", value)
    if not blocks:
        raise ValueError("must be one or more PEM certificates (-----BEGIN CERTIFICATE-----)")
    for block in blocks:
        try:
            ssl.PEM_cert_to_DER_cert(block)
        except ValueError as exc:
            raise ValueError(f"not a PEM certificate: {exc}") from None
    return value


class GrafanaTls(ConfigModel):
    """Where the certificate of grafana.url's host comes from, and what the Grafana provider trusts.

    Exactly one of: `certManager` (cert-manager issues it into grafana.tlsSecretName) or
    `fromSecrets: true` (the program writes that Secret from the grafanaTlsCertificate and
    grafanaTlsPrivateKey secrets).
    """

    cert_manager: CertManagerIssuer | None = None
    from_secrets: bool = False
    # The CA the Grafana provider verifies the certificate with, when it is not publicly trusted
    # (a private CA issuer, a self-signed certificate). Unset: the system's trust store.
    ca_certificate: Annotated[str, AfterValidator(_pem_certificates)] | None = None


class Grafana(ConfigModel):
    """Grafana: where users reach it, where it keeps its database, what it reads."""

    url: str = Field(pattern=HTTP_URL)
    admin_user: str = Field(default="admin", pattern=r"^[A-Za-z0-9_.@-]{1,64}$")
    namespace: str = Field(default="grafana", pattern=r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
    persistence_size_gi: int = Field(default=10, ge=1, le=1024)
    storage_class: str | None = None  # None: the cluster's default (k3s: local-path)
    ingress_class: str = "traefik"
    tls_secret_name: str | None = None
    tls: GrafanaTls | None = None
    # Folder uid -> title; only the titles of the known folders may be changed.
    folder_titles: dict[str, str] = Field(default_factory=dict)
    data_sources: GrafanaDataSourceUrls = Field(default_factory=GrafanaDataSourceUrls)

    def problems(self, root: "StackConfig") -> list[Problem]:
        found: list[Problem] = []
        if self.url.rstrip("/").count("/") > 2:
            found.append(Problem("grafana.url", "must be the root URL of Grafana, without a path"))
        if self.url.startswith("https://") and not self.tls_secret_name:
            found.append(Problem("grafana.tlsSecretName", "is required for an https url (the ingress's certificate Secret)"))
        if self.url.startswith("https://") and self.tls is None:
            found.append(Problem("grafana.tls", "is required for an https url: nothing else creates the certificate "
                                                "(Traefik would serve its own, and the Grafana provider fail on x509); "
                                                "certManager: {issuer: <name>} or fromSecrets: true"))
        if self.tls is not None and bool(self.tls.cert_manager) == self.tls.from_secrets:
            found.append(Problem("grafana.tls", "needs exactly one of certManager, fromSecrets: true"))
        if self.tls is not None and not self.url.startswith("https://"):
            found.append(Problem("grafana.tls", "is only used with an https grafana.url"))
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
    """The PBS job exporter on each pbs host (services/pbs_exporter/pbs_job_exporter.py)."""

    port: int = Field(default=9797, ge=1024, le=65535)
    poll_interval_seconds: int = Field(default=30, ge=5, le=600)


# --- metrics, SLOs and alert routing ------------------------------------------------------

SERVICE = r"^[a-z0-9][a-z0-9_-]*$"  # value of the `service` label that routes an alert
# A counter selector: `metric` or `metric{label="value",...}`; the SLO engine wraps it in rate().
SERIES_SELECTOR = r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^{}]*\})?$"


def _prom_duration(value: str) -> str:
    try:
        parse_seconds(value)
    except ValueError:
        raise ValueError(f"must be a duration like 30s, 5m or 1h30m (got {value!r})") from None
    return value


def _go_duration(value: str) -> str:
    # Alertmanager's --data.retention is a Go duration: no days, weeks or years.
    _prom_duration(value)
    if any(unit in value for unit in "dwy"):
        raise ValueError(f"must be a duration in hours at most, like 120h (got {value!r})")
    return value


# Durations as Prometheus and Alertmanager both parse them (2.42/0.25 and 3.x/0.34).
PromDuration = Annotated[str, AfterValidator(_prom_duration)]
GoDuration = Annotated[str, AfterValidator(_go_duration)]


def duration_seconds(text: str) -> int:
    return int(parse_seconds(text))


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
    address: str = Field(min_length=1)
    modules: list[str] = Field(min_length=1)
    auth: str = "public_v2"
    # The `service` label of this target's alerts (e.g. network, storage, power).
    service: str = Field(pattern=SERVICE)
    # Set on the NAS: its HOST-RESOURCES-MIB storage table feeds the disk usage alert.
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

    def problems(self, root: "StackConfig") -> list[Problem]:
        found = self._scale_out_problems(root)
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

    def _scale_out_problems(self, root: "StackConfig") -> list[Problem]:
        found = []
        if root.scales_out() and self.alertmanager.replicas < 2:
            found.append(Problem("metrics.alertmanager.replicas",
                                 f"must be >= 2 when the stack scales out ({root.scales_out()}): one Alertmanager "
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


class LatencySli(ConfigModel):
    """Good events are requests faster than the threshold: one bucket of a classic histogram."""

    histogram: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")  # base name, without _bucket
    selector: dict[str, str] = Field(default_factory=dict)
    threshold: float = Field(gt=0)  # in the histogram's unit; must be one of its bucket bounds


class Sli(ConfigModel):
    """Exactly one of: goodEvents/totalEvents, badEvents/totalEvents (counter selectors), latency,
    probe (a configured probe target: each of its probes is an event, good when it succeeded)."""

    good_events: str | None = Field(default=None, pattern=SERIES_SELECTOR)
    bad_events: str | None = Field(default=None, pattern=SERIES_SELECTOR)
    total_events: str | None = Field(default=None, pattern=SERIES_SELECTOR)
    latency: LatencySli | None = None
    probe: str | None = Field(default=None, min_length=1)


class Slo(ConfigModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    service: str = Field(pattern=SERVICE)
    description: str = Field(min_length=1)
    objective: float = Field(gt=0, lt=100)  # percent of good events over the period
    period: PromDuration = "30d"
    sli: Sli
    # Low-traffic guard: a burn-rate alert also needs this many bad events in its long window.
    min_bad_events: int = Field(default=1, ge=1)
    page_for: PromDuration = "2m"
    ticket_for: PromDuration = "15m"
    # False: recording rules only (burn rates, budget), for an SLO whose failures other alerts
    # already page one by one (the backup jobs).
    alerts: bool = True

    @property
    def alert_name(self) -> str:
        """The name of this SLO's burn-rate alerts (model/rules/slo.py); the recovery service's trigger too."""
        return "".join(part.capitalize() for part in self.name.split("-")) + "BudgetBurn"

    def problems(self, at: str) -> list[Problem]:
        found = []
        if not self.alerts and self.min_bad_events > 1:
            found.append(Problem(f"{at}.minBadEvents", "has no effect with alerts: false (the SLO raises no alert)"))
        sli = self.sli
        kinds = [k for k, set_ in (("goodEvents", sli.good_events), ("badEvents", sli.bad_events), ("latency", sli.latency),
                                   ("probe", sli.probe)) if set_]
        if len(kinds) != 1:
            found.append(Problem(f"{at}.sli", f"needs exactly one of goodEvents, badEvents, latency or probe (got {', '.join(kinds) or 'none'})"))
        elif kinds[0] in ("goodEvents", "badEvents") and not sli.total_events:
            found.append(Problem(f"{at}.sli.totalEvents", f"is required with {kinds[0]}"))
        elif kinds[0] == "latency" and sli.total_events:
            found.append(Problem(f"{at}.sli.totalEvents", "is not used with latency (the histogram's _count is the total)"))
        elif kinds[0] == "probe" and sli.total_events:
            found.append(Problem(f"{at}.sli.totalEvents", "is not used with probe (every probe is an event)"))
        return found

    def probe_problems(self, at: str, probes: "Probes | None") -> list[Problem]:
        """A probe SLI names a configured probe target (probes.targets[].name)."""
        names = [t.name for t in probes.targets] if probes else []
        if self.sli.probe and self.sli.probe not in names:
            return [Problem(f"{at}.sli.probe", f"unknown probe {self.sli.probe!r} (probes.targets: {', '.join(names) or 'none'})")]
        return []


class PagerDutyReceiver(ConfigModel):
    severity: str = "critical"
    # The secret with this receiver's integration key: each PagerDuty service has its own.
    routing_key_secret: str = secrets.PAGERDUTY_ROUTING_KEY

    @field_validator("routing_key_secret")
    @classmethod
    def _known_key(cls, key: str) -> str:
        if key not in secrets.PAGERDUTY_KEYS:
            raise ValueError(f"must be one of {', '.join(secrets.PAGERDUTY_KEYS)} (got {key!r})")
        return key


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
    group_wait: PromDuration | None = None
    group_interval: PromDuration | None = None
    repeat_interval: PromDuration | None = None

    @field_validator("matchers", mode="before")
    @classmethod
    def _parse_matchers(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [parse_matcher(v) if isinstance(v, str) else v for v in value]
        return value


class Alerting(ConfigModel):
    """The routing table: one source for Alertmanager's route tree and Grafana's policy."""

    receiver: str  # the root route's receiver: whatever no route below claims
    group_by: list[str] = Field(default_factory=lambda: ["alertname", "service"])
    group_wait: PromDuration = "30s"
    group_interval: PromDuration = "5m"
    repeat_interval: PromDuration = "4h"
    routes: list[Route] = Field(default_factory=list)
    receivers: list[Receiver] = Field(min_length=1)
    # The Watchdog always fires; its route sends it here every watchdogInterval.
    watchdog_receiver: str
    watchdog_interval: PromDuration = "1m"

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


# --- recovery automation ------------------------------------------------------------------

class RecoveryAction(ConfigModel):
    """One action of the recovery service (contracts/recovery.py ACTIONS): its mode and its guard."""

    mode: str = Field(default=recovery_catalog.ACTION_DEFAULTS["mode"], pattern=f"^({'|'.join(recovery_catalog.MODES)})$")
    cooldown: PromDuration = format_seconds(recovery_catalog.ACTION_DEFAULTS["cooldownSeconds"])
    max_attempts: int = Field(default=recovery_catalog.ACTION_DEFAULTS["maxAttempts"], ge=1, le=20)
    window: PromDuration = format_seconds(recovery_catalog.ACTION_DEFAULTS["windowSeconds"])


def _value_at(section: BaseModel | None, path: str):
    """The value at a key path as the stack config writes it (``recovery.prometheusUrl``); None where unset."""
    for key in path.split("."):
        if section is None:
            return None
        name = next((n for n, f in type(section).model_fields.items() if key in (n, f.alias)), key)
        section = getattr(section, name, None)
    return section


class RecoveryPve(ConfigModel):
    """The Proxmox VE API the service re-runs backup jobs through (from the PBS VM)."""

    url: str = Field(pattern=r"^https://[^/\s]+(:\d+)?/?$")
    verify_tls: bool = True
    # The PBS server as PVE's PBS storages name it, when several servers have a datastore of that name.
    pbs_server: str | None = None


class RecoveryNas(ConfigModel):
    """The TrueNAS the disk playbook prunes snapshots on and the backup fallback writes to."""

    url: str = Field(pattern=r"^wss?://[^/\s]+/api/(current|v\d+(\.\d+)*)$")
    verify_tls: bool = True
    dataset: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:/-]*[A-Za-z0-9_.:-]$")
    retention: PromDuration = "21d"
    keep_newest: int = Field(default=3, ge=1)
    # The export PVE mounts as an NFS storage for the fallback backups.
    nfs_server: str = Field(pattern=r"^[A-Za-z0-9.:-]+$")
    fallback_export: str = Field(default="/mnt/tank/pve-fallback", pattern=r"^/[^\s]*$")
    fallback_storage: str = Field(default="nas-fallback", pattern=r"^[a-z][a-z0-9_-]*$")


# The routing table's receiver for the recovery service, added beside alerting.receivers (model/values/routing.py).
RECOVERY_RECEIVER = "recovery-service"


class Recovery(ConfigModel):
    """The recovery service (recovery/, docs/recovery.md) on the pbs host."""

    port: int = Field(default=9847, ge=1024, le=65535)
    enabled: bool = True  # the global kill switch, off when false
    actions: dict[str, RecoveryAction] = Field(default_factory=dict)
    pve: RecoveryPve
    nas: RecoveryNas | None = None
    # How the pbs host reaches Prometheus' HTTP API (an ingress or NodePort): Loki's compactor health.
    prometheus_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+[^/\s]$")

    def mode(self, action: str) -> str:
        return self.actions[action].mode if action in self.actions else "off"

    def problems(self, root: "StackConfig") -> list[Problem]:
        known = recovery_catalog.ACTIONS
        found = []
        for name in self.actions:
            if name not in known:
                found.append(Problem(f"recovery.actions.{name}", f"unknown action (known: {', '.join(sorted(known))})"))
        for action in known.values():
            if action.stack_needs and self.mode(action.name) != "off" and _value_at(root, action.stack_needs) is None:
                found.append(Problem(action.stack_needs, f"is required while recovery.actions.{action.name} is not off"))
        if not root.hosts_with_role(Role.PBS):
            found.append(Problem("recovery", "needs a pbs host: the service runs there"))
        if root.alerting is None:
            found.append(Problem("recovery", "needs alerting: Alertmanager notifies the service"))
        else:
            for i, receiver in enumerate(root.alerting.receivers):
                if receiver.name == RECOVERY_RECEIVER:
                    found.append(Problem(f"alerting.receivers[{i}].name", f"{RECOVERY_RECEIVER!r} is the recovery service's receiver "
                                         "(added to the routing table with recovery): pick another name"))
        return found


# --- reports ------------------------------------------------------------------------------

class NfsShare(ConfigModel):
    server: str = Field(pattern=r"^[A-Za-z0-9.-]+$")  # host name or address of the NAS
    path: str = Field(pattern=r"^/[^\s]*$")


class ReportArchive(ConfigModel):
    nfs: NfsShare
    retention_years: int = Field(default=5, ge=1, le=100)


# A quarter is at most 92 days; the report also reads the day before it began.
REPORT_MIN_RETENTION_DAYS = 93


class Reports(ConfigModel):
    """The quarterly PBS job report (tools/report): when it is made, where it is kept, who hears of it."""

    run_at: str = Field(default="06:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")  # on each quarter's first day
    archive: ReportArchive
    # A mattermost receiver; unset: the one the routing table sends service="backups" alerts to.
    announce_to: str | None = None

    def problems(self, root: "StackConfig") -> list[Problem]:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        found = []
        try:
            ZoneInfo(root.site.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            found.append(Problem("site.timezone", f"unknown time zone {root.site.timezone!r} (the reports' quarters run in it)"))
        retention = duration_seconds(root.metrics.prometheus.retention)
        long_term = root.metrics.long_term
        if long_term is not None:
            # The report reads the long-term store then (model/reports.py), whatever Prometheus keeps.
            if long_term_days(long_term.retention) < REPORT_MIN_RETENTION_DAYS:
                found.append(Problem("metrics.longTerm.retention", f"must be at least {REPORT_MIN_RETENTION_DAYS}d with "
                                     "reports: the quarterly report reads a whole quarter from the long-term store"))
        elif retention < REPORT_MIN_RETENTION_DAYS * 86400:
            found.append(Problem("metrics.prometheus.retention", f"must be at least {REPORT_MIN_RETENTION_DAYS}d with "
                                 "reports: the quarterly report reads a whole quarter from Prometheus"))
        if root.backup_room() is None:
            found.append(Problem("reports.announceTo", f"{self.announce_to!r} is not a mattermost receiver of alerting.receivers"
                                 if self.announce_to else
                                 'no route sends service = "backups" to a mattermost receiver: name the room\'s receiver'))
        return found


# --- synthetic API checks ------------------------------------------------------------------

class ProbeTarget(ConfigModel):
    """One endpoint the blackbox exporter requests, as a customer would."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,40}$")
    url: str = Field(pattern=HTTP_URL)
    # The `service` label of the probe's alerts: whose customers it speaks for.
    service: str = Field(default="api-gateway", pattern=SERVICE)
    expected_status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    # A regular expression (Go RE2) the body must match, e.g. '"status":\\s*"ok"'.
    body_match: str | None = Field(default=None, min_length=1)
    interval: PromDuration = "1m"
    timeout: PromDuration = "10s"

    @field_validator("expected_status")
    @classmethod
    def _statuses(cls, codes: list[int]) -> list[int]:
        bad = [c for c in codes if not 100 <= c <= 599]
        if bad:
            raise ValueError(f"HTTP status codes are 100..599 (got {bad})")
        return codes

    @field_validator("body_match")
    @classmethod
    def _regex(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return pattern


class Probes(ConfigModel):
    """Synthetic API checks: the blackbox exporter probes each target; alerts when they fail."""

    targets: list[ProbeTarget] = Field(min_length=1)
    # A probe must fail this long before anyone is paged: one lost request is not an outage.
    failing_for: PromDuration = "5m"
    certificate_warning_days: int = Field(default=21, ge=1)
    certificate_critical_days: int = Field(default=7, ge=1)

    def problems(self, root: "StackConfig") -> list[Problem]:
        found = []
        seen: set[str] = set()
        for i, target in enumerate(self.targets):
            at = f"probes.targets[{i}]"
            if target.name in seen:
                found.append(Problem(f"{at}.name", f"{target.name!r} is used twice"))
            seen.add(target.name)
            # Prometheus' scrape timeout is the probe's plus a second, and may not exceed the interval.
            if duration_seconds(target.timeout) + 1 > duration_seconds(target.interval):
                found.append(Problem(f"{at}.timeout", f"{target.timeout} leaves no second within interval {target.interval}"))
        if self.certificate_critical_days >= self.certificate_warning_days:
            found.append(Problem("probes.certificateCriticalDays",
                                 f"must be below probes.certificateWarningDays ({self.certificate_warning_days})"))
        return found


# --- the virtualization layer ---------------------------------------------------------------

class PveExporter(ConfigModel):
    """prometheus-pve-exporter on the pbs host (model/pve.py), scraping every node of proxmox.nodes."""

    # The read-only API token (PVEAuditor on /) as user@realm!name; its secret is pveExporterToken.
    token_id: str = Field(pattern=r"^[^\s:/@!]+@[A-Za-z0-9._-]+![A-Za-z][A-Za-z0-9._-]*$")
    port: int = Field(default=9221, ge=1024, le=65535)
    scrape_interval: PromDuration = "1m"
    scrape_timeout: PromDuration = "30s"
    verify_tls: bool = True
    # The CA of the nodes' API certificates when it is not publicly trusted (PVE's own:
    # /etc/pve/pve-root-ca.pem); cloud-init adds it to the pbs host's trust store.
    ca_certificate: Annotated[str, AfterValidator(_pem_certificates)] | None = None
    # Where the exporter reaches a node's API (host or host:port); default <node>.<site.domain>.
    node_addresses: dict[str, Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]+(:\d+)?$")]] = Field(default_factory=dict)

    def problems(self, root: "StackConfig") -> list[Problem]:
        found = [Problem(f"pveExporter.nodeAddresses.{node}", f"unknown Proxmox node (proxmox.nodes: {', '.join(root.proxmox.nodes)})")
                 for node in self.node_addresses if node not in root.proxmox.nodes]
        if duration_seconds(self.scrape_timeout) > duration_seconds(self.scrape_interval):
            found.append(Problem("pveExporter.scrapeTimeout", f"must not exceed pveExporter.scrapeInterval ({self.scrape_interval})"))
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
    recovery: Recovery | None = None
    reports: Reports | None = None
    probes: Probes | None = None
    pve_exporter: PveExporter | None = None

    def backup_room(self) -> Receiver | None:
        """The mattermost receiver the backup service's news goes to: `reports.announceTo`, or
        else the one the routing table sends `service = "backups"` alerts to."""
        alerting = self.alerting
        if alerting is None:
            return None
        if self.reports and self.reports.announce_to:
            chosen = alerting.receiver_named(self.reports.announce_to)
            return chosen if chosen and chosen.mattermost else None
        for route in alerting.routes:
            receiver = alerting.receiver_named(route.receiver)
            if receiver and receiver.mattermost and any(
                    (m.label, m.op, m.value) == ("service", "=", services.BACKUPS) for m in route.matchers):
                return receiver
        return None

    def scales_out(self) -> str:
        """Why this stack counts as production-like (its logs or traces on a distributed engine), or ''."""
        why = []
        if self.logs and self.logs.mode == LogsMode.SCALABLE:
            why.append("logs.mode scalable")
        if self.traces and self.traces.mode == TracesMode.DISTRIBUTED:
            why.append("traces.mode distributed")
        return ", ".join(why)

    def hosts_with_role(self, role: Role) -> dict[str, Host]:
        return {name: h for name, h in self.hosts.items() if h.role == role}

    def endpoints(self) -> Endpoints:
        """Where this stack's releases run and the addresses their clients use."""
        return Endpoints(
            metrics_namespace=self.metrics.namespace,
            grafana_namespace=self.grafana.namespace if self.grafana else None,
            tempo_distributed=bool(self.traces and self.traces.mode == TracesMode.DISTRIBUTED),
        )

    def problems(self) -> list[Problem]:
        """Everything a field alone cannot know: references, uniqueness, role rules."""
        found: list[Problem] = []
        found += self.site.problems(self)
        for section in (self.network, self.grafana):
            if section is not None:
                found += section.problems(self)
        found += self.proxmox.cloud_image.problems()
        found += self._host_problems()
        found += self.logs.problems(self) if self.logs else []
        found += self.traces.problems(self) if self.traces else []
        found += self._metrics_problems()
        found += self.recovery.problems(self) if self.recovery else []
        found += self.reports.problems(self) if self.reports else []
        found += self.probes.problems(self) if self.probes else []
        found += self.pve_exporter.problems(self) if self.pve_exporter else []
        return found

    def _metrics_problems(self) -> list[Problem]:
        found = self.metrics.problems(self)
        names: set[str] = set()
        for i, slo in enumerate(self.slos):
            if slo.name in names:
                found.append(Problem(f"slos[{i}].name", f"{slo.name!r} is used twice"))
            names.add(slo.name)
            found += slo.problems(f"slos[{i}]")
            found += slo.probe_problems(f"slos[{i}]", self.probes)
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

def required_secrets(cfg: StackConfig) -> list[str]:
    needed = []
    if any(h.role != Role.PBS for h in cfg.hosts.values()):
        needed.append(secrets.K3S_TOKEN)
    if cfg.logs and cfg.logs.mode == LogsMode.SCALABLE:
        needed += [secrets.LOKI_S3_ACCESS_KEY_ID, secrets.LOKI_S3_SECRET_ACCESS_KEY]
    if cfg.traces and cfg.traces.mode == TracesMode.DISTRIBUTED:
        needed += [secrets.TEMPO_S3_ACCESS_KEY_ID, secrets.TEMPO_S3_SECRET_ACCESS_KEY]
    receivers = cfg.alerting.receivers if cfg.alerting else []
    if any(r.pagerduty for r in receivers):
        needed.append(secrets.PAGERDUTY_ROUTING_KEY)
    needed += [r.pagerduty.routing_key_secret for r in receivers if r.pagerduty]
    if any(r.mattermost for r in receivers):
        needed.append(secrets.MATTERMOST_WEBHOOK_URL)
    if any(r.heartbeat and r.heartbeat.bearer_token for r in receivers):
        needed.append(secrets.HEARTBEAT_TOKEN)
    if cfg.grafana and cfg.grafana.tls and cfg.grafana.tls.from_secrets:
        needed += [secrets.GRAFANA_TLS_CERTIFICATE, secrets.GRAFANA_TLS_PRIVATE_KEY]
    if cfg.pve_exporter:
        needed.append(secrets.PVE_EXPORTER_TOKEN)
    if cfg.recovery:
        needed += [secrets.RECOVERY_WEBHOOK_TOKEN, secrets.RECOVERY_PVE_READ_TOKEN]
        needed += [a.secret.key for a in recovery_catalog.ACTIONS.values() if a.secret and cfg.recovery.mode(a.name) != "off"]
    return sorted(set(needed), key=needed.index)


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
