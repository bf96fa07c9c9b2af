"""The service's config file (YAML, rendered by the stack's preview), checked against a JSON Schema.

Every problem is reported at once with its key path; secrets are never in the file, only the
paths of the files that hold them. Durations are seconds, so tests can compress time.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import jsonschema
import yaml

from contracts.recovery import ACTION_DEFAULTS, ACTIONS, DEFAULTS, MODES, PLAYBOOKS, SECTION_DEFAULTS

PLAYBOOK_NAMES = sorted(PLAYBOOKS)

_seconds = {"type": "number", "exclusiveMinimum": 0}
_count = {"type": "integer", "minimum": 1}
_path = {"type": "string", "minLength": 1}
_url = {"type": "string", "pattern": "^(https?|wss?)://[^\\s/]+"}
_tls = {"verifyTls": {"type": "boolean"}, "caFile": _path}
_vmid = {"type": "integer", "minimum": 100, "maximum": 999999999}  # pve-common pve-vmid
_tag = {"type": "string", "pattern": "^[a-z0-9_][a-z0-9_+.-]*$"}  # pve-common pve-tag (lower case)
_storage = {"type": "string", "pattern": "^[a-z][a-z0-9\\-_.]*[a-z0-9]$"}  # pve-common pve-storage-id
_clock = {"type": "string", "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]$|^24:00$"}


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
        "mode": {"enum": list(MODES)}, "cooldownSeconds": {"type": "number", "minimum": 0}, "maxAttempts": _count,
        "windowSeconds": _seconds})},
    "triggers": {"type": "array", "minItems": 1, "items": _object({
        "alertname": {"type": "string", "minLength": 1},
        "matchers": {"type": "object", "additionalProperties": {"type": "string"}},
        "playbook": {"enum": PLAYBOOK_NAMES}}, ["alertname", "playbook"])},
    "pbs": _object({"url": _url, "uiUrl": _url, "node": {"type": "string", "minLength": 1}, **_tls,
                    "readTokenFile": _path,
                    "tokenFiles": _object({kind: _path for kind in ("sync", "verify", "prune", "gc")})},
                   ["url", "readTokenFile"]),
    "pve": _object({"url": _url, "uiUrl": _url, **_tls, "readTokenFile": _path, "backupTokenFile": _path,
                    "drillTokenFile": _path, "pbsServer": {"type": "string"}}, ["url", "readTokenFile"]),
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
                           "channels": {"type": "object", "propertyNames": {"enum": PLAYBOOK_NAMES},
                                        "additionalProperties": {"type": "string"}}}, ["webhookUrlFile"]),
    "pagerduty": _object({"url": _url, "routingKeyFile": _path, "routeKey": {"type": "string", "pattern": "^\\{"},
                          "groupBy": {"type": "array", "items": {"type": "string"}},
                          "matchers": {"type": "object", "additionalProperties": {"type": "string"}}},
                         ["routingKeyFile", "routeKey", "groupBy"]),
    # The restore drills of recovery/drills.py: which guests, how often, and the scratch space they may use.
    "restoreDrills": _object({
        "guests": {"type": "array", "items": _vmid, "uniqueItems": True},
        "tags": {"type": "array", "items": _tag, "uniqueItems": True},
        "intervals": {"type": "object", "propertyNames": _tag, "additionalProperties": _seconds, "required": ["default"]},
        "window": _object({"start": _clock, "end": _clock}, ["start", "end"]),
        "vmidRange": _object({"first": _vmid, "last": _vmid}, ["first", "last"]),
        "node": {"type": "string", "pattern": "^[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?$"},
        "storage": _storage, "pbsStorage": _storage,
        "pool": {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]*$"},
        "liveRestore": {"type": "array", "items": _vmid, "uniqueItems": True},  # VMs restored live (qemu only)
        "tag": _tag, "checkSeconds": _seconds, "maxDurationSeconds": _seconds, "agentTimeoutSeconds": _seconds,
        "storageHeadroom": {"type": "number", "minimum": 1}},
        ["intervals", "vmidRange", "storage", "pbsStorage", "pool"]),
}, ["listen", "webhookTokenFile", "stateFile", "actions", "triggers"])

class ConfigError(Exception):
    def __init__(self, source: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"{source} has {len(problems)} problem(s):\n" + "\n".join(f"  - {p}" for p in problems))


def _path_of(error: jsonschema.ValidationError) -> str:
    return ".".join(str(part) for part in error.absolute_path) or "(top level)"


def _at(document: dict, path: str):
    for key in path.split("."):
        document = document.get(key) if isinstance(document, dict) else None
    return document


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
        for index, trigger in enumerate(document["triggers"]):
            for section in PLAYBOOKS[trigger["playbook"]].needs:
                if section not in document:
                    problems.append(f"triggers.{index}: playbook {trigger['playbook']} needs the '{section}' section")
        for action, settings in document["actions"].items():
            if settings.get("mode", ACTION_DEFAULTS["mode"]) == "off":
                continue
            section = ACTIONS[action].section
            if section not in document:
                problems.append(f"actions.{action}: mode {settings.get('mode', ACTION_DEFAULTS['mode'])} needs the '{section}' section")
            needed = ACTIONS[action].enforce_needs
            if needed and settings.get("mode") == "enforce" and not _at(document, needed):
                problems.append(f"{needed}: required when actions.{action}.mode is enforce")
        if ("tlsCertFile" in document) != ("tlsKeyFile" in document):
            problems.append("tlsCertFile, tlsKeyFile: give both or neither")
        drills = document.get("restoreDrills")
        if drills:
            if not drills.get("guests") and not drills.get("tags"):
                problems.append("restoreDrills: give guests, tags or both: which guests to drill")
            if drills["vmidRange"]["first"] > drills["vmidRange"]["last"]:
                problems.append("restoreDrills.vmidRange: first is above last")
            overlap = [v for v in drills.get("guests", []) if drills["vmidRange"]["first"] <= v <= drills["vmidRange"]["last"]]
            if overlap:
                problems.append(f"restoreDrills.guests: {overlap} lie in the scratch vmidRange: a drill never restores a guest of its own range")
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
