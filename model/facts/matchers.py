"""Alertmanager matchers (`service = "backups"`, `severity=~"critical|page"`): parse, write, match.

The one matcher parser of the stack: the routing table in the config, Grafana's notification
policy and the alert drill's route walk all read matchers through it. It follows
Alertmanager's own (UTF-8) parser: the value may be quoted or bare; `\\"`, `\\\\` and `\\n` are
escapes, any other backslash is literal, a quote is only allowed around the value, and a bare
value holds none of the runes its lexer reserves (spaces, `{}!=~,"'` and backquote), so
`service == backups` is refused rather than read as the value "= backups".
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping

_MATCHER = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$", re.DOTALL)
_ESCAPES = {"n": "\n", '"': '"', "\\": "\\"}
# Alertmanager's matcher/parse/lexer.go isReserved: what ends a bare (unquoted) value.
_RESERVED = re.compile(r"[\s{}!=~,\\\"'`]")


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str
    value: str

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        return f'{self.label} {self.op} "{escaped}"'

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Alertmanager's semantics: a missing label is the empty string, regexes are anchored."""
        actual = labels.get(self.label, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = re.fullmatch(self.value, actual) is not None
        return found if self.op == "=~" else not found


def parse_matcher(text: str) -> Matcher:
    """'name="value"' (or =~, !=, !~; quoting optional) -> Matcher; ValueError on anything else."""
    m = _MATCHER.match(text)
    if not m:
        raise ValueError(f'matcher {text!r} must look like: label = "value" (=, !=, =~, !~)')
    label, op, raw = m.groups()
    quoted = raw.startswith('"')
    if quoted:
        if len(raw) < 2 or not raw.endswith('"') or _escaped_at_end(raw[1:-1]):
            raise ValueError(f"badly quoted value in matcher {text!r}")
        raw = raw[1:-1]
    elif not raw:
        raise ValueError(f'no value in matcher {text!r} (an empty one is written {str(Matcher(label, op, ""))!r})')
    elif reserved := _RESERVED.search(raw):
        bare = raw.lstrip("=~!").strip()
        hint = f'; did you mean {str(Matcher(label, op, bare))!r}?' if bare and not _RESERVED.search(bare) else ""
        raise ValueError(f"unexpected {reserved.group()!r} in the bare value of matcher {text!r} "
                         f"(quote a value that holds it){hint}")
    value, i = [], 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\" and i + 1 < len(raw):
            nxt = raw[i + 1]
            value.append(_ESCAPES.get(nxt, "\\" + nxt))
            i += 2
            continue
        if ch == '"':
            raise ValueError(f"stray quote in matcher {text!r}")
        value.append(ch)
        i += 1
    return Matcher(label, op, "".join(value))


def _escaped_at_end(body: str) -> bool:
    """True when the closing quote is itself escaped (`"abc\\"`): the value never ends."""
    trailing = len(body) - len(body.rstrip("\\"))
    return trailing % 2 == 1
