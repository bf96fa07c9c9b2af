"""Section `site`: facts about the homelab that every part shares, and the runbook hub."""

from __future__ import annotations

from typing import Any

from pydantic import Field, model_validator

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


def served_hub_url(domain: str) -> str:
    """site.runbookHubUrl of a stack that serves the hub and names no URL."""
    return f"https://runbooks.{domain}"


class Site(ConfigModel):
    """Facts about the homelab that every part of the stack shares."""

    name: str = Field(min_length=1)
    domain: str = Field(min_length=1)
    timezone: str = "Etc/UTC"
    ntp_servers: list[str] = Field(default_factory=lambda: ["0.debian.pool.ntp.org", "1.debian.pool.ntp.org"], min_length=1)
    # Every alert's runbook_url is <runbookHubUrl>/runbooks/<AlertName>.md. Unset while the stack
    # serves the hub: https://runbooks.<domain> (a forge's URL cannot be derived: required then).
    runbook_hub_url: str | None = Field(default=None, pattern=r"^https?://[^\s]+[^/\s]$")
    runbook_hub: RunbookHub = Field(default_factory=RunbookHub)

    @model_validator(mode="before")
    @classmethod
    def _served_hub_url(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("runbookHubUrl") or data.get("runbook_hub_url"):
            return data
        hub = data.get("runbookHub", data.get("runbook_hub")) or {}
        served = not isinstance(hub, dict) or hub.get("serve", True) is not False
        if served and isinstance(data.get("domain"), str) and data["domain"].strip():
            return {**data, "runbookHubUrl": served_hub_url(data["domain"].strip())}
        return data

    def problems(self, has_prometheus_host: bool) -> list[Problem]:
        hub = self.runbook_hub
        if not hub.serve:
            return [] if self.runbook_hub_url else [Problem(
                "site.runbookHubUrl", "is required with runbookHub.serve: false: the URL of the forge that renders "
                                      "runbooks/<AlertName>.md (every alert's runbook_url points there)")]
        found = []
        if self.runbook_hub_url and self.runbook_hub_url.startswith("https://") and not hub.tls_secret_name:
            found.append(Problem("site.runbookHub.tlsSecretName",
                                 f"is required to serve an https runbookHubUrl ({self.runbook_hub_url}: the ingress's "
                                 "certificate Secret); "
                                 "or serve: false when the URL is a forge"))
        if hub.cert_manager and not hub.tls_secret_name:
            found.append(Problem("site.runbookHub.certManager", "needs tlsSecretName: the Secret cert-manager issues into"))
        if not has_prometheus_host:
            found.append(Problem("site.runbookHub.serve", "needs a prometheus host: the hub runs beside Prometheus"))
        return found
