"""Section `site`: facts about the homelab that every part shares, and the runbook hub."""

from __future__ import annotations

from pydantic import Field

from model.config.base import ConfigModel, Problem
from model.config.fields import CertManagerIssuer


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
    cert_manager: CertManagerIssuer | None = None


class Site(ConfigModel):
    """Facts about the homelab that every part of the stack shares."""

    name: str = Field(min_length=1)
    domain: str = Field(min_length=1)
    timezone: str = "Etc/UTC"
    ntp_servers: list[str] = Field(default_factory=lambda: ["0.debian.pool.ntp.org", "1.debian.pool.ntp.org"], min_length=1)
    # Every alert's runbook_url is <runbookHubUrl>/runbooks/<AlertName>.md.
    runbook_hub_url: str = Field(pattern=r"^https?://[^\s]+[^/\s]$")
    runbook_hub: RunbookHub = Field(default_factory=RunbookHub)

    def problems(self, has_prometheus_host: bool) -> list[Problem]:
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
        if not has_prometheus_host:
            found.append(Problem("site.runbookHub.serve", "needs a prometheus host: the hub runs beside Prometheus"))
        return found
