"""What the report needs to know about its stack, as plain data.

model/reports.py derives this from the stack config (one source of truth); the scheduled job
reads it from a JSON file, so that it needs neither the stack config nor pydantic.
"""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass, fields
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from . import USAGE, ReportError


@dataclass(frozen=True)
class Archive:
    directory: str  # where the job sees the archive (the mounted share)
    location: str  # where people find it, for the announcement (e.g. nas.home.arpa:/mnt/tank/pbs-reports)
    retention_years: int


@dataclass(frozen=True)
class Announce:
    webhook_url_file: str  # Mattermost incoming webhook URL, read from this file (a secret)
    channel: str | None
    username: str


@dataclass(frozen=True)
class ReportSettings:
    stack: str
    site: str
    timezone: str
    prometheus_url: str
    slo_objective_percent: float
    evaluation_interval_seconds: float
    incident_selector: str
    archive: Archive | None = None
    announce: Announce | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = value.__dict__.copy() if hasattr(value, "__dict__") else value
        return out

    @classmethod
    def from_dict(cls, doc: Any, source: str = "report settings") -> "ReportSettings":
        def typed(cls_, value: Any, at: str):
            if not isinstance(value, dict):
                raise ReportError(f"{source}: {at or 'the document'} must be a JSON object", USAGE)
            names = {f.name: f for f in fields(cls_)}
            unknown = sorted(set(value) - set(names))
            if unknown:
                raise ReportError(f"{source}: unknown key {at}{unknown[0]!r}", USAGE)
            args = {}
            for name, f in names.items():
                if name not in value:
                    if f.default is not MISSING:
                        continue
                    raise ReportError(f"{source}: {at}{name} is required", USAGE)
                wanted = f.type.split(" | ")[0]
                plain = {"str": (str,), "int": (int,), "float": (int, float)}.get(wanted)
                given = value[name]
                if plain and not (isinstance(given, plain) and not isinstance(given, bool)) and not (
                        given is None and "None" in f.type):
                    raise ReportError(f"{source}: {at}{name} must be a {wanted} (got {given!r})", USAGE)
                args[name] = given
            return args

        args = typed(cls, doc, "")
        for name, sub in (("archive", Archive), ("announce", Announce)):
            if args.get(name) is not None:
                args[name] = sub(**typed(sub, args[name], f"{name}."))
        try:
            ZoneInfo(str(args["timezone"]))
        except (ZoneInfoNotFoundError, ValueError):
            raise ReportError(f"{source}: unknown time zone {args['timezone']!r}", USAGE) from None
        if not 0 < float(args["slo_objective_percent"]) < 100:
            raise ReportError(f"{source}: slo_objective_percent must be between 0 and 100", USAGE)
        return cls(**args)

    @classmethod
    def load(cls, path: Path) -> "ReportSettings":
        try:
            doc = json.loads(path.read_text())
        except OSError as exc:
            raise ReportError(f"cannot read {path}: {exc.strerror}", USAGE) from None
        except ValueError as exc:
            raise ReportError(f"{path} is not JSON: {exc}", USAGE) from None
        return cls.from_dict(doc, str(path))
