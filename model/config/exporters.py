"""Sections `pbsExporter` and `pveExporter`: the exporters on the pbs hosts."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from model.config.base import ConfigModel, Problem
from model.config.fields import PemCertificates, PromDuration, duration_seconds


class PbsExporter(ConfigModel):
    """The PBS job exporter on each pbs host (services/pbs_exporter/, shipped as a zipapp)."""

    port: int = Field(default=9797, ge=1024, le=65535)
    poll_interval_seconds: int = Field(default=30, ge=5, le=600)


class PveExporter(ConfigModel):
    """prometheus-pve-exporter on one pbs host (model/pve.py), scraping every node of proxmox.nodes."""

    # The pbs host it runs on; default: the only pbs host (required with several: StackConfig.placement).
    host: str | None = None
    # The read-only API token (PVEAuditor on /) as user@realm!name; its secret is pveExporterToken.
    token_id: str = Field(pattern=r"^[^\s:/@!]+@[A-Za-z0-9._-]+![A-Za-z][A-Za-z0-9._-]*$")
    port: int = Field(default=9221, ge=1024, le=65535)
    scrape_interval: PromDuration = "1m"
    scrape_timeout: PromDuration = "30s"
    verify_tls: bool = True
    # The CA of the nodes' API certificates when it is not publicly trusted (PVE's own:
    # /etc/pve/pve-root-ca.pem); cloud-init adds it to the pbs host's trust store.
    ca_certificate: PemCertificates | None = None
    # Where the exporter reaches a node's API (host or host:port); default <node>.<site.domain>.
    node_addresses: dict[str, Annotated[str, Field(pattern=r"^[A-Za-z0-9.-]+(:\d+)?$")]] = Field(default_factory=dict)

    def problems(self, nodes: list[str]) -> list[Problem]:
        found = [Problem(f"pveExporter.nodeAddresses.{node}", f"unknown Proxmox node (proxmox.nodes: {', '.join(nodes)})")
                 for node in self.node_addresses if node not in nodes]
        if duration_seconds(self.scrape_timeout) > duration_seconds(self.scrape_interval):
            found.append(Problem("pveExporter.scrapeTimeout", f"must not exceed pveExporter.scrapeInterval ({self.scrape_interval})"))
        return found
