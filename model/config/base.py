"""What every section shares: the base model, and a problem reported by the key path the user wrote."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Iterable

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel


class ConfigModel(BaseModel):
    """Base of every config section: camelCase keys as written, unknown keys rejected."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        str_strip_whitespace=True,
    )


def closest(key: str, allowed: list[str]) -> str | None:
    """The name a user most likely meant: the same but for case (memoryMB), else the closest spelling."""
    same = [a for a in allowed if a.lower() == key.lower()]
    close = same or difflib.get_close_matches(key, allowed, n=1, cutoff=0.7)
    return close[0] if close else None


@dataclass(frozen=True)
class Problem:
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class ConfigError(Exception):
    """A stack config that cannot be deployed; carries every problem found."""

    def __init__(self, problems: Iterable[Problem], source: str = "stack config"):
        self.problems = sorted(set(problems), key=lambda p: (p.path, p.message))
        self.source = source
        lines = [f"{source} has {len(self.problems)} problem(s):"]
        lines += [f"  - {p}" for p in self.problems]
        super().__init__("\n".join(lines))
