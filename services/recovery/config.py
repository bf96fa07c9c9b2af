"""The service's config file (YAML, rendered by the stack's preview), checked against a JSON Schema.

Every problem is reported at once with its key path; secrets are never in the file, only the
paths of the files that hold them. Durations are seconds, so tests can compress time.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import jsonschema
import yaml

MODES = ["off", "dry-run", "enforce"]
ACTIONS = {
    # action: (what it does, playbook)
    "pbs-job-rerun": ("re-run a failed PBS sync, verify or prune job, or a datastore's GC", "backup-failure"),
    "pve-backup-rerun": ("re-run a failed vzdump backup job as PVE's 'Run now' does", "backup-failure"),
    "backup-fallback": ("back the failed job's guests up to the NAS with ansible-playbook", "backup-failure"),
    "loki-compactor-report": ("post Loki's compactor health from Prometheus", "disk-usage"),
    "nas-snapshot-prune": ("delete NAS snapshots older than the retention", "disk-usage"),
    "customer-impact-probe": ("run the burning service's configured blackbox probes now and report", "customer-impact"),
}
PLAYBOOKS = sorted({playbook for _, playbook in ACTIONS.values()})
ACTION_DEFAULTS = {"mode": "dry-run", "cooldownSeconds": 3600, "maxAttempts": 2, "windowSeconds": 86400}

_seconds = {"type": "number", "exclusiveMinimum": 0}
_count = {"type": "integer", "minimum": 1}
_path = {"type": "string", "minLength": 1}
_url = {"type": "string", "pattern": "^(https?|wss?)://[^\\s/]+"}
_tls = {"verifyTls": {"type": "boolean"}, "caFile": _path}


def _object(properties: dict, required: list[str] = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), "additionalProperties": False}


SCHEMA = _object({
    "listen": {"type": "string", "pattern": "^(\\[[0-9a-fA-F:]+\\]|[^\\s:\\[\\]]+):\\d{1,5}$"},
    "webhookTokenFile": _path,
    "tlsCertFile": _path, "tlsKeyFile": _path,
    "stateFile": _path,
    "auditLog": _path,
    "killSwitchFile": _path,
    "enabled": {"type": "boolean"},
    "workers": {"type": "integer", "minimum": 1, "maximum": 16},
    "requestTimeoutSeconds": _seconds,
    "pollSeconds": _seconds,
    "verifyTimeoutSeconds": _seconds,
    "deferSeconds": _seconds,
    "logLines": {"type": "integer", "minimum": 1, "maximum": 200},
    "actions": {"type": "object", "propertyNames": {"enum": sorted(ACTIONS)}, "additionalProperties": _object({
        "mode": {"enum": MODES}, "cooldownSeconds": {"type": "number", "minimum": 0}, "maxAttempts": _count,
        "windowSeconds": _seconds})},
    "triggers": {"type": "array", "minItems": 1, "items": _object({
        "alertname": {"type": "string", "minLength": 1},
        "matchers": {"type": "object", "additionalProperties": {"type": "string"}},
        "playbook": {"enum": PLAYBOOKS}}, ["alertname", "playbook"])},
    "pbs": _object({"url": _url, "uiUrl": _url, "node": {"type": "string", "minLength": 1}, **_tls,
                    "readTokenFile": _path,
                    "tokenFiles": _object({kind: _path for kind in ("sync", "verify", "prune", "gc")})},
                   ["url", "readTokenFile"]),
    "pve": _object({"url": _url, "uiUrl": _url, **_tls, "readTokenFile": _path, "backupTokenFile": _path,
                    "pbsServer": {"type": "string"}}, ["url", "readTokenFile"]),
    "fallback": _object({"playbook": _path, "inventory": _path, "ansiblePlaybook": _path, "timeoutSeconds": _seconds,
                         "resultDir": _path}, ["playbook", "inventory"]),
    "truenas": _object({"url": {"type": "string", "pattern": "^wss?://[^\\s/]+"}, **_tls, "apiKeyFile": _path,
                        "dataset": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.:/-]*[A-Za-z0-9_.:-]$"},
                        "retentionDays": {"type": "number", "exclusiveMinimum": 0}, "keepNewest": {"type": "integer", "minimum": 1}},
                       ["url", "apiKeyFile", "dataset", "retentionDays"]),
    "prometheus": _object({"url": _url, **_tls}, ["url"]),
    # The probes of recovery/probes.py: only these targets and modules are ever requested.
    "probes": _object({"exporterUrl": _url, "timeoutSeconds": _seconds, "targets": {"type": "array", "items": _object({
        "name": {"type": "string", "minLength": 1}, "service": {"type": "string", "minLength": 1}, "url": _url,
        "module": {"type": "string", "pattern": "^[A-Za-z0-9_]+$"}}, ["name", "service", "url", "module"])}},
                      ["exporterUrl", "targets"]),
    "mattermost": _object({"webhookUrlFile": _path, "username": {"type": "string"}, **_tls,
                           "channels": {"type": "object", "propertyNames": {"enum": PLAYBOOKS},
                                        "additionalProperties": {"type": "string"}}}, ["webhookUrlFile"]),
    "pagerduty": _object({"url": _url, "routingKeyFile": _path, "routeKey": {"type": "string", "pattern": "^\\{"},
                          "groupBy": {"type": "array", "items": {"type": "string"}},
                          "matchers": {"type": "object", "additionalProperties": {"type": "string"}}},
                         ["routingKeyFile", "routeKey", "groupBy"]),
}, ["listen", "webhookTokenFile", "stateFile", "actions", "triggers"])

DEFAULTS = {
    "enabled": True, "workers": 2, "requestTimeoutSeconds": 10, "pollSeconds": 10, "verifyTimeoutSeconds": 6 * 3600,
    "deferSeconds": 60, "logLines": 20, "killSwitchFile": "/etc/recovery/disabled",
}
SECTION_DEFAULTS = {
    "pbs": {"node": "localhost", "verifyTls": True, "tokenFiles": {}},
    "pve": {"verifyTls": True},
    "fallback": {"ansiblePlaybook": "ansible-playbook", "timeoutSeconds": 4 * 3600, "resultDir": "/var/lib/recovery/fallback"},
    "truenas": {"verifyTls": True, "keepNewest": 3},
    "prometheus": {"verifyTls": True},
    "probes": {"timeoutSeconds": 15},
    "mattermost": {"username": "recovery", "channels": {}, "verifyTls": True},
    "pagerduty": {"url": "https://events.pagerduty.com/v2/enqueue", "matchers": {}},
}


class ConfigError(Exception):
    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{source} has {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems))


def _path_of(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "(top level)"


@dataclass(frozen=True)
class Trigger:
    alertname: str
    matchers: dict
    playbook: str

    def matches(self, labels: dict) -> bool:
        return labels.get("alertname") == self.alertname and all(labels.get(k) == v for k, v in self.matchers.items())


class Config:
    def __init__(self, document: dict, source: str = "recovery config"):
        errors = sorted(jsonschema.Draft202012Validator(SCHEMA).iter_errors(document), key=lambda e: list(map(str, e.absolute_path)))
        problems = [f"{_path_of(e)}: {e.message}" for e in errors]
        if not errors:
            problems += self._cross_checks(document)
        if problems:
            raise ConfigError(source, problems)
        self.raw = copy.deepcopy(document)
        self.doc = {**DEFAULTS, **document}
        for section, defaults in SECTION_DEFAULTS.items():
            if section in document:
                self.doc[section] = {**defaults, **document[section]}
        self.triggers = [Trigger(t["alertname"], t.get("matchers", {}), t["playbook"]) for t in document["triggers"]]

    @staticmethod
    def _cross_checks(document: dict) -> list[str]:
        problems = []
        needs = {"backup-failure": ["pbs", "pve"], "disk-usage": [], "customer-impact": ["probes"]}
        for index, trigger in enumerate(document["triggers"]):
            for section in needs[trigger["playbook"]]:
                if section not in document:
                    problems.append(f"triggers.{index}: playbook {trigger['playbook']} needs the '{section}' section")
        for action, settings in document["actions"].items():
            if settings.get("mode", ACTION_DEFAULTS["mode"]) == "off":
                continue
            section = {"backup-fallback": "fallback", "nas-snapshot-prune": "truenas", "loki-compactor-report": "prometheus",
                       "pve-backup-rerun": "pve", "pbs-job-rerun": "pbs", "customer-impact-probe": "probes"}[action]
            if section not in document:
                problems.append(f"actions.{action}: mode {settings.get('mode', ACTION_DEFAULTS['mode'])} needs the '{section}' section")
            if action == "pve-backup-rerun" and settings.get("mode") == "enforce" and "backupTokenFile" not in document.get("pve", {}):
                problems.append("pve.backupTokenFile: required when actions.pve-backup-rerun.mode is enforce")
            if action == "pbs-job-rerun" and settings.get("mode") == "enforce" and not document.get("pbs", {}).get("tokenFiles"):
                problems.append("pbs.tokenFiles: required when actions.pbs-job-rerun.mode is enforce")
        if ("tlsCertFile" in document) != ("tlsKeyFile" in document):
            problems.append("tlsCertFile, tlsKeyFile: give both or neither")
        return problems

    @classmethod
    def load(cls, path: str) -> "Config":
        try:
            with open(path, encoding="utf-8") as handle:
                document = yaml.safe_load(handle)
        except OSError as exc:
            raise ConfigError(path, [f"cannot read: {exc.strerror}"]) from None
        except yaml.YAMLError as exc:
            raise ConfigError(path, [f"not YAML: {exc}"]) from None
        if not isinstance(document, dict):
            raise ConfigError(path, ["(top level): must be a mapping"])
        return cls(document, path)

    def __getitem__(self, key: str):
        return self.doc[key]

    def get(self, key: str, default=None):
        return self.doc.get(key, default)

    def action(self, name: str) -> dict:
        return {**ACTION_DEFAULTS, **self.doc["actions"].get(name, {"mode": "off"})}

    def trigger_for(self, labels: dict) -> Trigger | None:
        return next((t for t in self.triggers if t.matches(labels)), None)

    def limits(self) -> dict[str, tuple[int, float]]:
        return {name: (self.action(name)["maxAttempts"], self.action(name)["windowSeconds"]) for name in self.doc["actions"]}
