"""Section `logs`: Loki's deployment mode, storage, tenants with their limits, retention rules."""

from __future__ import annotations

import re
from enum import Enum
from typing import Annotated

from pydantic import AfterValidator, Field, field_validator
from pydantic.alias_generators import to_camel

from model.config.base import ConfigModel, Problem
from model.config.fields import ObjectStorage, duration_hours

LOKI_MIN_RETENTION_HOURS = 24  # the compactor works on 24h index tables; shorter periods never delete
TENANT_ID = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


def _loki_retention(value: str) -> str:
    if duration_hours(value) < LOKI_MIN_RETENTION_HOURS:
        raise ValueError(f"{value} is below Loki's minimum retention of 24h (the compactor would never delete it)")
    return value


LokiRetention = Annotated[str, AfterValidator(_loki_retention)]


class LokiBuckets(ConfigModel):
    chunks: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{2,62}$")
    ruler: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{2,62}$")


class LokiObjectStorage(ObjectStorage):
    buckets: LokiBuckets


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

    def problems(self) -> list[Problem]:
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
