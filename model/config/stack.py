"""The whole stack config: its sections, the checks that read across sections, the secrets it needs.

Each section checks itself (its module's `problems`); what one section requires of another
(a role's host, a receiver, a key an action needs) is checked here and handed to it.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from contracts import recovery as recovery_catalog
from contracts import services
from model.config.alerting import Alerting, Receiver
from model.config.base import ConfigModel, Problem, closest
from model.config.exporters import PbsExporter, PveExporter
from model.config.grafana import Grafana
from model.config.inventory import HOSTNAME, Access, Host, K3s, Network, Proxmox, Role
from model.config.logs import Logs, LogsMode
from model.config.metrics import Metrics
from model.config.probes import Probes
from model.config.recovery import Recovery
from model.config.reports import Reports
from model.config.site import Site
from model.config.slos import Slo, slo_key
from model.config.traces import Traces, TracesMode
from model.facts import secrets
from model.facts.endpoints import Endpoints


# The services a stack places on one of its pbs hosts: section -> what runs there.
PLACED = {"recovery": "the recovery service", "pveExporter": "the PVE exporter"}


def _value_at(section: BaseModel | None, path: str):
    """The value at a key path as the stack config writes it (``recovery.prometheusUrl``); None where unset."""
    for key in path.split("."):
        if section is None:
            return None
        name = next((n for n, f in type(section).model_fields.items() if key in (n, f.alias)), key)
        section = getattr(section, name, None)
    return section


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

    def has(self, key: str) -> bool:
        """Whether the section (or key path) the stack file writes as `key` is set."""
        return _value_at(self, key) is not None

    def parts_off(self) -> list[str]:
        """One line per optional part this stack leaves out: which, why, and what it therefore lacks."""
        off = []
        absent = [
            ("logs", "no Loki host, Loki release, Logs dashboard, Loki data sources or log alerts"),
            ("traces", "no Tempo, OpenTelemetry Collector, Tempo data source or trace links from metrics and logs"),
            ("recovery", "alerts are not acted on: no recovery service, no restore drills"),
            ("reports", "no quarterly PBS job report"),
            ("pveExporter", "no Proxmox VE node, guest and storage metrics, nor their alerts"),
            ("probes", "no synthetic checks (blackbox exporter)"),
            ("grafana", "no Grafana, dashboards or data sources"),
        ]
        for key, lacks in absent:
            if not self.has(key):
                off.append(f"{key}: off (no `{key}` section): {lacks}")
        if not self.slos:
            off.append("slos: off (no `slos` section): no SLO recording rules, burn-rate alerts or Latency Budget dashboard")
        if not self.metrics.snmp.targets:
            off.append("metrics.snmp: off (no metrics.snmp.targets): no SNMP exporter, no device metrics")
        off += self.alerting.parts_off() if self.alerting else []
        if self.metrics.long_term is None:
            off.append(f"metrics.longTerm: off (not set): metrics are kept for metrics.prometheus.retention "
                       f"({self.metrics.prometheus.retention}) only")
        return off

    def hosts_with_role(self, role: Role) -> dict[str, Host]:
        return {name: h for name, h in self.hosts.items() if h.role == role}

    def placement(self, section: str) -> str:
        """The pbs host that runs `section`'s service (PLACED: recovery, pveExporter): its `host`,
        else the only pbs host. The one answer every consumer reads (cloud-init, scrape jobs,
        network policies, the service's own config); _placement_problems refuses the rest."""
        placed = _value_at(self, f"{section}.host")
        return placed or next(iter(self.hosts_with_role(Role.PBS)))

    def pve_api_url(self) -> str:
        """recovery.pve.url, else the API of the first node of proxmox.nodes by its name in site.domain."""
        assert self.recovery is not None
        return (self.recovery.pve.url or f"https://{self.proxmox.nodes[0]}.{self.site.domain}:8006").rstrip("/")

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
        found += self.site.problems(has_prometheus_host=bool(self.hosts_with_role(Role.PROMETHEUS)))
        found += self.network.problems()
        found += self.grafana.problems() if self.grafana else []
        found += self.proxmox.cloud_image.problems()
        found += self._host_problems()
        found += self.logs.problems() if self.logs else []
        found += self.traces.problems(has_logs=self.logs is not None) if self.traces else []
        found += self._metrics_problems()
        found += self.recovery.problems(
            is_set=lambda path: _value_at(self, path) is not None, has_pbs_host=bool(self.hosts_with_role(Role.PBS)),
            alerting=self.alerting) if self.recovery else []
        found += self.recovery.restore_drills.problems(
            {name: h.vm_id for name, h in self.hosts.items()}, self.proxmox.nodes) if self.recovery and self.recovery.restore_drills else []
        found += self.reports.problems(
            timezone=self.site.timezone, metrics=self.metrics, has_backup_room=self.backup_room() is not None) if self.reports else []
        found += self.probes.problems() if self.probes else []
        found += self.pve_exporter.problems(self.proxmox.nodes) if self.pve_exporter else []
        found += self._placement_problems()
        return found

    def _placement_problems(self) -> list[Problem]:
        pbs = list(self.hosts_with_role(Role.PBS))
        found: list[Problem] = []
        if not pbs:
            return found  # _host_problems asks for one; recovery says it needs it
        listed = ", ".join(pbs)
        for section, service in PLACED.items():
            if not self.has(section):
                continue
            at, name = f"{section}.host", _value_at(self, f"{section}.host")
            if name is None:
                if len(pbs) > 1:
                    found.append(Problem(at, f"is required with several pbs hosts ({listed}): name the one that runs {service}"))
            elif name in self.hosts and name not in pbs:
                found.append(Problem(at, f"{name!r} is a {self.hosts[name].role.value} host; {service} runs on a pbs host "
                                         f"(pbs hosts: {listed})"))
            elif name not in self.hosts:
                meant = closest(name, pbs)
                hint = f"; did you mean {meant!r}?" if meant else ""
                found.append(Problem(at, f"unknown host {name!r}{hint} (pbs hosts: {listed})"))
        return found

    def _metrics_problems(self) -> list[Problem]:
        found = self.metrics.problems(self.scales_out())
        names = [slo.name for slo in self.slos]
        for i, slo in enumerate(self.slos):
            at = slo_key(names, i)
            if slo.name in names[:i]:
                found.append(Problem(f"{at}.name", f"{slo.name!r} is used twice (slos[{names.index(slo.name)}] has it)"))
            found += slo.problems(at)
            found += slo.probe_problems(at, self.probes)
        if self.alerting is None:
            if self.hosts_with_role(Role.PROMETHEUS):
                found.append(Problem("alerting", "is required: the routing table of Alertmanager"))
        else:
            found += self.alerting.problems()
        return found

    def _host_problems(self) -> list[Problem]:
        found: list[Problem] = []
        seen_ids: dict[int, str] = {}
        seen_addresses: dict[str, str] = {}
        stores: dict[str, str] = {}  # datastore -> its pbs host
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
            found += self._datastore_problems(name, host, stores)
        for role in (Role.PBS, Role.PROMETHEUS):
            if not self.hosts_with_role(role):
                found.append(Problem("hosts", f"needs at least one host with role {role.value!r}"))
        loki_users = " and ".join(s for s in ("logs", "traces") if getattr(self, s))
        if loki_users and not self.hosts_with_role(Role.LOKI):
            found.append(Problem("hosts", f"needs at least one host with role 'loki': {loki_users} run there"))
        for name in self.hosts_with_role(Role.LOKI) if not loki_users else ():
            found.append(Problem(f"hosts.{name}.role", "a loki host runs Loki and Tempo: without a logs or traces "
                                                       "section it would idle; remove it or add the section"))
        agents = [role.value for role in (Role.PROMETHEUS, Role.LOKI) if self.hosts_with_role(role)]
        if self.k3s is None and agents:
            found.append(Problem("k3s", f"is required: the {' and '.join(agents)} hosts join the k3s cluster"))
        return found

    @staticmethod
    def _datastore_problems(name: str, host: Host, stores: dict[str, str]) -> list[Problem]:
        """`stores`: the datastores of the pbs hosts before this one; this host's are added."""
        at = f"hosts.{name}"
        if host.role != Role.PBS:
            return [Problem(f"{at}.{key}", "only a pbs host has a datastore")
                    for key, value in (("datastore", host.datastore), ("datastores", host.datastores)) if value]
        if host.datastore and host.datastores:
            return [Problem(f"{at}.datastore", f"give datastore or datastores, not both (datastore: {host.datastore} "
                                               f"is datastores: [{host.datastore}])")]
        if not host.datastore_names():
            return [Problem(f"{at}.datastores", "is required for a pbs host: the PBS datastores on its data disk, "
                                                "e.g. datastores: [homelab]")]
        found = []
        key = f"{at}.datastores" if host.datastores else f"{at}.datastore"
        for store in host.datastore_names():
            if store in stores:
                where = "is listed twice" if stores[store] == name else f"is already a datastore of hosts.{stores[store]}"
                found.append(Problem(key, f"{store!r} {where}: a datastore's name is unique across the pbs hosts "
                                          "(alerts and the recovery service name a job by its datastore)"))
            stores.setdefault(store, name)
        return found


# --- the secrets a stack needs ---------------------------------------------------------------

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
