"""Finds secret-looking values in plain configuration (Helm values, ConfigMaps, dashboard JSON).

Three signals, each with few false positives on this stack's configuration:
- a key named like a credential (password, token, apiKey, routing_key, webhook_url, ...) with
  a literal value that is not a reference or a placeholder;
- a known token format anywhere in any string (GitHub, Slack, AWS, Grafana, k3s, JWT,
  private keys, credentials inside a URL, Mattermost/Discord/Slack webhook URLs);
- a long high-entropy token (random-looking mixed-case + digits), anywhere.

References are what the stack uses instead: `*_file` paths, `existingSecret`/`secretName`,
`secretKeyRef`, `${ENV}` expansion, `$__file{...}`/`$__env{...}` in Grafana, templates.
"""

from __future__ import annotations

import json
import math
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import yaml

_CREDENTIAL_NAME = re.compile(
    r"(password|passwd|passphrase|secret|token|apikey|routingkey|servicekey|integrationkey|"
    r"webhook|accesskey|privatekey|authorization|bearer|credential)"
)
# Names that hold a reference to a secret, never the secret itself.
_REFERENCE_NAME = re.compile(
    r"(file|path|files|paths|name|names|secrets|selector|ref|secretref|keyref|existingsecret|envvar|env|mountpath|"
    r"(password|user|username|token|apikey|ca|cert)key|enabled|create|usesecret|annotations|"
    r"secretkeyname|secretkeyselector|template|templates|header|headername|type|length|expiry|ttl)$"
)
_REFERENCE_VALUE = re.compile(
    r"^(\$\{[^}]+\}|\$[A-Z_][A-Z0-9_]*|\$__(file|env|vault)\{[^}]*\}|\{\{.*\}\}|<[^<>]+>|\[secret\]|"
    r"/[^\s]*|file://\S+|secretKeyRef:.*|env:[A-Z_][A-Z0-9_]*)$",
    re.DOTALL,
)

KNOWN_FORMATS: list[tuple[str, re.Pattern[str]]] = [
    ("private key", re.compile(r"-----BEGIN ([A-Z]+ )*PRIVATE KEY-----")),
    ("GitHub token", re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})\b")),
    ("Slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}")),
    ("Slack webhook URL", re.compile(r"hooks\.slack\.com/services/T[A-Z0-9]+/B[A-Z0-9]+/[A-Za-z0-9]+")),
    ("Discord webhook URL", re.compile(r"discord(app)?\.com/api/webhooks/\d+/[\w-]{20,}")),
    ("Mattermost webhook URL", re.compile(r"/hooks/[a-z0-9]{26}\b")),
    ("AWS access key id", re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b")),
    ("Grafana service account token", re.compile(r"\bglsa_[A-Za-z0-9]{32}_[0-9a-f]{8}\b")),
    ("Grafana Cloud token", re.compile(r"\bglc_[A-Za-z0-9+/=]{32,}")),
    ("k3s join token", re.compile(r"\bK10[0-9a-f]{32,}::")),
    ("Proxmox API token", re.compile(r"[\w.-]+@[\w.-]+![\w.-]+=[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")),
    ("JSON web token", re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}")),
    ("credentials in a URL", re.compile(r"\b[a-z][a-z0-9+.-]*://[^/\s:@]+:[^/\s@]+@")),
]

_TOKEN = re.compile(r"[A-Za-z0-9+=_-]{24,}")
ENTROPY_BITS = 4.0


@dataclass(frozen=True)
class Finding:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def _normalize(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


def credential_named(key: str) -> bool:
    name = _normalize(key)
    return bool(_CREDENTIAL_NAME.search(name)) and not _REFERENCE_NAME.search(name)


def is_reference(value: str) -> bool:
    return not value.strip() or bool(_REFERENCE_VALUE.match(value.strip()))


def shannon_entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def high_entropy_tokens(text: str) -> list[str]:
    found = []
    for token in _TOKEN.findall(text):
        mixed = (any(c.islower() for c in token) and any(c.isupper() for c in token)
                 and any(c.isdigit() for c in token))
        if mixed and shannon_entropy(token) >= ENTROPY_BITS:
            found.append(token)
    return found


def _preview(value: str) -> str:
    # Never echo a secret into CI logs: the first characters are enough to find it.
    return repr(value[:4] + "...") if len(value) > 4 else "a short literal"


def scan_text(text: str, path: str) -> list[Finding]:
    findings = [Finding(path, f"contains a {label}") for label, rx in KNOWN_FORMATS if rx.search(text)]
    if not findings:
        findings += [Finding(path, f"contains a high-entropy string {_preview(t)}") for t in high_entropy_tokens(text)[:1]]
    return findings


_ASSIGNMENT = re.compile(r"^\s*([A-Za-z_][\w.-]*)\s*[:=]\s*['\"]?([^'\"#\s][^'\"#]*?)['\"]?\s*$")


def _structured(text: str) -> Any:
    if "\n" not in text.strip() and not text.lstrip().startswith(("{", "[")):
        return None
    try:
        doc = json.loads(text)
    except ValueError:
        try:
            doc = yaml.safe_load(text)
        except yaml.YAMLError:
            return None
    return doc if isinstance(doc, (dict, list)) else None


def scan(value: Any, path: str = "") -> list[Finding]:
    """Every secret-looking value inside a plain JSON-like document (walks embedded YAML/JSON)."""
    return list(_walk(value, path, None))


def _join(path: str, key: Any) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else str(key)


def _walk(value: Any, path: str, key: str | None) -> Iterator[Finding]:
    if isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk(v, _join(path, k), str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk(v, _join(path, i), key)
    elif isinstance(value, str):
        if key is not None and credential_named(key) and not is_reference(value):
            yield Finding(path, f"a credential-named key holds the literal {_preview(value)}")
            return
        doc = _structured(value)
        if doc is not None:
            yield from _walk(doc, path, None)
            return
        if "\n" in value:
            for line in value.splitlines():
                m = _ASSIGNMENT.match(line)
                if m and credential_named(m.group(1)) and not is_reference(m.group(2)):
                    yield Finding(f"{path} ({m.group(1)})", f"assigns the literal {_preview(m.group(2))}")
                    return
        yield from scan_text(value, path)
