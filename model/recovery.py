"""The recovery service's files on the pbs host, from the stack config (section `recovery`).

One source: which alerts trigger which playbook, each action's mode and guard, where the APIs
are, and the PagerDuty route whose dedup_key the service must use, all derived from the stack
config and the routing table. Secrets are file paths: systemd hands each root-only file under
SECRETS_DIR to the service as a credential (CREDENTIALS_DIR); values never appear here.
"""

from __future__ import annotations

from dataclasses import dataclass

from contracts import recovery as catalog
from contracts.alerts import PERSISTENT_VOLUME_USAGE_HIGH
from contracts.fallback import inventory
from model import probes
from model.facts import secrets
from model.config import RECOVERY_RECEIVER, RestoreDrills, Role, Route, StackConfig
from model.facts.durations import parse_seconds
from model.facts.endpoints import BLACKBOX_EXPORTER_PORT, LOGS_NAMESPACE

CONFIG_PATH = "/etc/recovery/recovery.yml"
INVENTORY_PATH = "/etc/recovery/fallback-inventory.yml"
SECRETS_DIR = "/etc/recovery/secrets"
CREDENTIALS_DIR = "/run/credentials/recovery.service"
INSTALL_DIR = "/usr/local/lib/recovery"
STATE_DIR = "/var/lib/recovery"
PBS_AUTH_ID = "recovery@pbs"
WEBHOOK_PATH = "/webhook"

# The label matchers that narrow a trigger alert of the catalog: only the Loki volume's usage
# starts the disk playbook, not every persistent volume's.
TRIGGER_MATCHERS = {PERSISTENT_VOLUME_USAGE_HIGH.name: {"namespace": LOGS_NAMESPACE}}
# Alerts the service acts on: (alertname, label matchers, playbook); see triggers() for the SLO pages.
TRIGGERS = [(alert, TRIGGER_MATCHERS.get(alert, {}), playbook.name)
            for playbook in catalog.PLAYBOOKS.values() for alert in playbook.alerts]
# The route key of the routing table's routes: below the root ({}) and the route holding them ({}).
SEED_ROUTES_KEY = "{}/{}"
RECEIVER = RECOVERY_RECEIVER


@dataclass(frozen=True)
class Credential:
    """One secret file of the service: its name, the stack secret it holds (None: made on the
    host, like the PBS tokens) and where the service reads it."""

    name: str
    secret_key: str | None = None
    source: str | None = None  # a file the host already has (PBS' certificate)

    @property
    def host_path(self) -> str:
        return self.source or f"{SECRETS_DIR}/{self.name}"

    @property
    def path(self) -> str:
        return f"{CREDENTIALS_DIR}/{self.name}"


PBS_KINDS = ("read", "sync", "verify", "prune", "gc")
# The PBS ACL of each token (role, path); the user gets the same, a token's rights being the
# intersection of both. Datastore paths get the datastore's name appended.
PBS_ACLS = {
    "read": [("Audit", "/"), ("RemoteAudit", "/remote")],
    "sync": [("DatastoreBackup", "/datastore"), ("RemoteSyncOperator", "/remote")],
    "verify": [("DatastoreReader", "/datastore")],
    "prune": [("DatastoreAdmin", "/datastore")],
    "gc": [("DatastoreAdmin", "/datastore")],
}


def credentials(cfg: StackConfig) -> list[Credential]:
    rec = cfg.recovery
    assert rec is not None
    out = [Credential("webhook-token", secrets.RECOVERY_WEBHOOK_TOKEN), Credential("pve-read-token", secrets.RECOVERY_PVE_READ_TOKEN),
           Credential("pbs-ca.pem", source="/etc/proxmox-backup/proxy.pem")]
    out += [Credential(f"pbs-{kind}-token") for kind in PBS_KINDS]
    out += [Credential(a.secret.credential, a.secret.key) for a in catalog.ACTIONS.values() if a.secret and rec.mode(a.name) != "off"]
    receivers = cfg.alerting.receivers if cfg.alerting else []
    if any(r.mattermost for r in receivers):
        out.append(Credential("mattermost-webhook-url", secrets.MATTERMOST_WEBHOOK_URL))
    if any(r.pagerduty for r in receivers):
        out.append(Credential("pagerduty-routing-key", secrets.PAGERDUTY_ROUTING_KEY))
    return out


# The blackbox exporter beside the service on the pbs host (Debian's), with the stack's probe modules.
BLACKBOX_LISTEN = f"127.0.0.1:{BLACKBOX_EXPORTER_PORT}"
BLACKBOX_CONFIG_PATH = "/etc/prometheus/blackbox.yml"


def probing(cfg: StackConfig) -> bool:
    return bool(cfg.recovery and cfg.probes and cfg.recovery.mode(catalog.CUSTOMER_IMPACT_PROBE) != "off")


def _on_datastores(trigger: tuple[str, dict, str], stores: list[str]) -> list[tuple[str, dict, str]]:
    name, matchers, playbook = trigger
    if playbook != catalog.BACKUP_FAILURE:
        return [trigger]
    return [(name, {**matchers, "datastore": store}, playbook) for store in stores]


def triggers(cfg: StackConfig) -> list[tuple[str, dict, str]]:
    """TRIGGERS and, while the service runs probes, the page of every SLO of a service with probes
    (save an SLO made of those probes: its page is already their answer). With several pbs hosts
    the backup failures are those of its own host's datastores: the PBS it acts on is its host's,
    and another host's failed job pages after metrics.backupRetryGrace, as without the service."""
    out = list(TRIGGERS)
    if len(cfg.hosts_with_role(Role.PBS)) > 1:
        stores = cfg.hosts[cfg.placement("recovery")].datastore_names()
        out = [narrowed for trigger in out for narrowed in _on_datastores(trigger, stores)]
    if probing(cfg):
        probed = {p.service for p in probes.probe_targets(cfg)}
        out += [(s.alert_name, {"severity": "critical"}, catalog.CUSTOMER_IMPACT)
                for s in cfg.slos if s.alerts and s.service in probed and s.sli.probe is None]
    return out


def _cred(cfg: StackConfig, name: str) -> str:
    return next(c.path for c in credentials(cfg) if c.name == name)


def pagerduty_route(cfg: StackConfig) -> tuple[Route, str] | None:
    """The first of the stack config's routes to a pagerduty receiver and its Alertmanager route key
    (dispatch/route.go Key: the matchers from the root, each ``name="value"``). With the service,
    the stack config's routes sit below a route without matchers (model/values/routing.py): ``{}/{}/...``."""
    alerting = cfg.alerting
    for route in alerting.routes:
        receiver = alerting.receiver_named(route.receiver)
        if receiver and receiver.pagerduty:
            matchers = ",".join(f'{m.label}{m.op}"{m.value}"' for m in route.matchers)
            return route, SEED_ROUTES_KEY + "/{" + matchers + "}"
    return None


def _ops_room(cfg: StackConfig) -> str | None:
    """The chat channel of the root receiver: where disk alerts without a route of their own go."""
    root = cfg.alerting.receiver_named(cfg.alerting.receiver)
    return root.mattermost.channel if root and root.mattermost else None


def service_config(cfg: StackConfig) -> dict:
    rec = cfg.recovery
    assert rec is not None and cfg.alerting is not None
    fqdn = f"{cfg.placement('recovery')}.{cfg.site.domain}"
    doc: dict = {
        "listen": f"0.0.0.0:{rec.port}",
        "webhookTokenFile": _cred(cfg, "webhook-token"),
        "stateFile": f"{STATE_DIR}/state.sqlite3",
        "auditLog": "/var/log/recovery/audit.jsonl",
        "killSwitchFile": catalog.DEFAULTS["killSwitchFile"],
        "enabled": rec.enabled,
        "actions": {name: {"mode": a.mode, "cooldownSeconds": parse_seconds(a.cooldown), "maxAttempts": a.max_attempts,
                           "windowSeconds": parse_seconds(a.window)} for name, a in sorted(rec.actions.items())},
        "triggers": [{"alertname": name, **({"matchers": matchers} if matchers else {}), "playbook": playbook}
                     for name, matchers, playbook in triggers(cfg)],
        "pbs": {"url": "https://localhost:8007", "uiUrl": f"https://{fqdn}:8007", "node": "localhost",
                "caFile": _cred(cfg, "pbs-ca.pem"), "readTokenFile": _cred(cfg, "pbs-read-token"),
                "tokenFiles": {kind: _cred(cfg, f"pbs-{kind}-token") for kind in PBS_KINDS if kind != "read"}},
        "pve": {"url": cfg.pve_api_url(), "uiUrl": cfg.pve_api_url(), "verifyTls": rec.pve.verify_tls,
                "readTokenFile": _cred(cfg, "pve-read-token")},
    }
    if rec.pve.pbs_server:
        doc["pve"]["pbsServer"] = rec.pve.pbs_server
    if rec.mode(catalog.PVE_BACKUP_RERUN) != "off":
        doc["pve"]["backupTokenFile"] = _cred(cfg, "pve-backup-token")
    if rec.restore_drills and rec.mode(catalog.RESTORE_DRILL_RUN) != "off":
        doc["pve"]["drillTokenFile"] = _cred(cfg, "pve-drill-token")
        doc["restoreDrills"] = restore_drills(rec.restore_drills)
    if rec.mode(catalog.BACKUP_FALLBACK) != "off":
        doc["fallback"] = {"playbook": f"{INSTALL_DIR}/playbooks/backup-fallback.yml", "inventory": INVENTORY_PATH,
                           "ansiblePlaybook": "/usr/bin/ansible-playbook", "resultDir": f"{STATE_DIR}/fallback"}
    if rec.nas and rec.mode(catalog.NAS_SNAPSHOT_PRUNE) != "off":
        doc["truenas"] = {"url": rec.nas.url, "verifyTls": rec.nas.verify_tls, "apiKeyFile": _cred(cfg, "truenas-api-key"),
                          "dataset": rec.nas.dataset, "retentionDays": parse_seconds(rec.nas.retention) / 86400,
                          "keepNewest": rec.nas.keep_newest}
    if rec.prometheus_url:
        doc["prometheus"] = {"url": rec.prometheus_url}
    if probing(cfg):
        doc["probes"] = {"exporterUrl": f"http://{BLACKBOX_LISTEN}",
                         "targets": [{"name": p.name, "service": p.service, "url": p.url, "module": p.module}
                                     for p in probes.probe_targets(cfg)]}
    names = {c.name for c in credentials(cfg)}
    if "mattermost-webhook-url" in names:
        backup_room = cfg.backup_room()
        rooms = {"backup": backup_room.mattermost.channel if backup_room else None, "ops": _ops_room(cfg)}
        channels = {name: rooms[playbook.room] for name, playbook in catalog.PLAYBOOKS.items()}
        doc["mattermost"] = {"webhookUrlFile": _cred(cfg, "mattermost-webhook-url"),
                             "username": catalog.SECTION_DEFAULTS["mattermost"]["username"],
                             "channels": {k: v for k, v in channels.items() if v}}
    pd = pagerduty_route(cfg)
    if pd and "pagerduty-routing-key" in names:
        route, key = pd
        doc["pagerduty"] = {"routingKeyFile": _cred(cfg, "pagerduty-routing-key"), "routeKey": key,
                            "groupBy": list(route.group_by or cfg.alerting.group_by),
                            "matchers": {m.label: m.value for m in route.matchers if m.op == "="}}
    return doc


def restore_drills(drills: RestoreDrills) -> dict:
    start, end = drills.window.split("-")
    doc = {"intervals": {tier: parse_seconds(every) for tier, every in sorted(drills.intervals.items())},
           "window": {"start": start, "end": end}, "vmidRange": {"first": drills.vmid_first, "last": drills.vmid_last},
           "storage": drills.storage, "pbsStorage": drills.pbs_storage, "pool": drills.pool,
           "maxDurationSeconds": parse_seconds(drills.max_duration), "agentTimeoutSeconds": parse_seconds(drills.agent_timeout)}
    for key, value in (("guests", drills.guests), ("tags", drills.tags), ("node", drills.node),
                       ("liveRestore", drills.live_restore)):
        if value:
            doc[key] = value
    return doc


def fallback_inventory(cfg: StackConfig) -> dict | None:
    rec = cfg.recovery
    if rec is None or rec.nas is None or rec.mode(catalog.BACKUP_FALLBACK) == "off":
        return None
    return inventory(pve_url=cfg.pve_api_url(), token_file=_cred(cfg, "pve-fallback-token"), verify_tls=rec.pve.verify_tls,
                     storage=rec.nas.fallback_storage, nas_server=rec.nas.nfs_server, nas_export=rec.nas.fallback_export)


def pbs_token_script(stores: list[str]) -> str:
    """Shell: creates the service's PBS user and one token per action on the host, each with its
    ACL on every datastore of the host (the service acts on its own PBS only), and writes each
    secret to a root-only file. Idempotent: an existing file is kept."""
    lines = ["set -eu; umask 077; mkdir -p " + SECRETS_DIR,
             f"proxmox-backup-manager user list --output-format json | grep -q '\"userid\":\"{PBS_AUTH_ID}\"' || "
             f"proxmox-backup-manager user create {PBS_AUTH_ID} --comment 'recovery service (one token per action)'"]
    for kind in PBS_KINDS:
        token_id = f"{PBS_AUTH_ID}!{kind}"
        path = f"{SECRETS_DIR}/pbs-{kind}-token"
        acls = "; ".join(f"proxmox-backup-manager acl update {path} {role} --auth-id {who}"
                         for role, p in PBS_ACLS[kind] for path in ([f"{p}/{s}" for s in stores] if p == "/datastore" else [p])
                         for who in (PBS_AUTH_ID, f"'{token_id}'"))
        lines.append(f"if [ ! -s {path} ]; then secret=$(proxmox-backup-manager user generate-token {PBS_AUTH_ID} {kind} "
                     "--output-format json | python3 -c 'import json,sys; print(json.load(sys.stdin)[\"value\"])'); "
                     f"{acls}; printf '%s:%s\\n' '{token_id}' \"$secret\" > {path}; fi")
    return "; ".join(lines)


# --- the routing table's entry --------------------------------------------------------------

def webhook_url(cfg: StackConfig) -> str:
    """Where Alertmanager (in the cluster) reaches the service: the pbs host's address on the VLAN."""
    assert cfg.recovery is not None
    return f"http://{cfg.hosts[cfg.placement('recovery')].address}:{cfg.recovery.port}{WEBHOOK_PATH}"


def route_matchers(cfg: StackConfig) -> list[str]:
    """Every alert of the trigger table, by name; the service checks the triggers' label matchers
    itself (an alert the route lets through and the table does not hold is audited as ignored)."""
    names = "|".join(dict.fromkeys(name for name, _, _ in triggers(cfg)))
    return [f'alertname =~ "{names}"']


def route(cfg: StackConfig) -> dict:
    """The service's route, first below the Watchdog's and `continue`: it sees every alert of its table
    whatever the seed's routes do with it, and they still see every alert. Each alert is a group of its
    own (`...`) sent at once: a re-sent group is one alert again, and nothing waits for a neighbour."""
    return {"matchers": route_matchers(cfg), "receiver": RECEIVER, "continue": True,
            "group_by": ["..."], "group_wait": "0s"}
