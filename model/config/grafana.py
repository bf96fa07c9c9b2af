"""Section `grafana`: where users reach Grafana, where it keeps its database, what it reads."""

from __future__ import annotations

from pydantic import Field

from model.config.base import ConfigModel, Problem
from model.config.fields import HTTP_URL, CertManagerIssuer, PemCertificates
from model.facts.links import FOLDERS


class GrafanaDataSourceUrls(ConfigModel):
    """Backends Grafana reaches elsewhere than the stack's own services (unset: derived)."""

    prometheus: str | None = Field(default=None, pattern=HTTP_URL)
    alertmanager: str | None = Field(default=None, pattern=HTTP_URL)
    loki: str | None = Field(default=None, pattern=HTTP_URL)
    tempo: str | None = Field(default=None, pattern=HTTP_URL)


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
    ca_certificate: PemCertificates | None = None


class Grafana(ConfigModel):
    """Grafana: where users reach it, where it keeps its database, what it reads."""

    url: str = Field(pattern=HTTP_URL)  # unset: https://grafana.<site.domain> (model/config/loading.py)
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

    def problems(self) -> list[Problem]:
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
