"""Field types more than one section uses: durations, URLs, the `service` label, S3 stores, certificates."""

from __future__ import annotations

import re
import ssl
from enum import Enum
from typing import Annotated

from pydantic import AfterValidator, Field

from model.config.base import ConfigModel
from model.facts.durations import parse_seconds

HTTP_URL = r"^https?://[A-Za-z0-9.-]+(:\d+)?(/[^\s]*)?$"
SERVICE = r"^[a-z0-9][a-z0-9_-]*$"  # value of the `service` label that routes an alert


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


Retention = Annotated[str, AfterValidator(_retention)]


class ObjectStorage(ConfigModel):
    """An S3-compatible bucket store (MinIO, Garage, Ceph RGW, a NAS' S3 service, AWS)."""

    endpoint: str = Field(pattern=r"^[A-Za-z0-9.-]+(:\d+)?$")  # host[:port], no scheme
    region: str = "us-east-1"
    insecure: bool = False  # plain HTTP, e.g. MinIO on the LAN without TLS
    force_path_style: bool = True  # most self-hosted S3 servers have no per-bucket DNS names


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


PemCertificates = Annotated[str, AfterValidator(_pem_certificates)]
