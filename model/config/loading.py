"""Loading: the project's config map validated into a StackConfig, every problem by the key path the user wrote."""

from __future__ import annotations

from types import UnionType
from typing import Any, Mapping, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError

from model.config.base import ConfigError, Problem, closest
from model.config.recovery import nas_nfs_server
from model.config.slos import slo_key
from model.config.stack import StackConfig


def _path(loc: tuple[Any, ...], raw: Mapping[str, Any] | None = None) -> str:
    out = ""
    for i, part in enumerate(loc):
        if i == 1 and loc[0] == "slos" and isinstance(part, int) and raw and isinstance(raw.get("slos"), list):
            out = slo_key([s.get("name") if isinstance(s, dict) else None for s in raw["slos"]], part)
        elif isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _problems(errors: list[Mapping[str, Any]], raw: Mapping[str, Any]) -> list[Problem]:
    """Pydantic's errors as problems by key path; an unknown key that is a near-miss of a known one
    is one line with the key meant, and the same key's "is required" is not repeated beside it."""
    meant: dict[tuple, str] = {}
    for e in errors:
        if e["type"] == "extra_forbidden":
            loc = tuple(e["loc"])
            key = closest(str(loc[-1]), _keys_at(StackConfig, loc[:-1]))
            if key:
                meant[loc] = key
    answered = {loc[:-1] + (key,) for loc, key in meant.items()}
    found = []
    for e in errors:
        loc = tuple(e["loc"])
        if e["type"] == "missing" and loc in answered:
            continue
        if e["type"] == "extra_forbidden" and loc in meant:
            allowed = ", ".join(_keys_at(StackConfig, loc[:-1]))
            found.append(Problem(_path(loc, raw), f"unknown key; did you mean {meant[loc]!r}? (expected one of: {allowed})"))
        else:
            found.append(Problem(_path(loc, raw), _message(e, StackConfig)))
    return found


def _keys_at(model: Any, loc: tuple[Any, ...]) -> list[str]:
    """The keys a user may write at `loc`, for the hint on an unknown key."""
    current: Any = model
    for part in loc:
        while get_origin(current) in (Union, UnionType):
            current = next(a for a in get_args(current) if a is not type(None))
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = next((f for n, f in current.model_fields.items() if (f.alias or n) == part), None)
            if field is None:
                return []
            current = field.annotation
        elif get_origin(current) in (dict, list):
            current = get_args(current)[-1]
        else:
            return []
    while get_origin(current) in (Union, UnionType):
        current = next(a for a in get_args(current) if a is not type(None))
    if isinstance(current, type) and issubclass(current, BaseModel):
        return [f.alias or n for n, f in current.model_fields.items()]
    return []


def _message(error: Mapping[str, Any], model: type[BaseModel]) -> str:
    ctx = error.get("ctx") or {}
    kind = error["type"]
    if kind == "missing":
        return "is required"
    if kind == "extra_forbidden":
        allowed = _keys_at(model, error["loc"][:-1])
        return f"unknown key (expected one of: {', '.join(allowed)})" if allowed else "unknown key"
    if kind == "greater_than_equal":
        return f"must be >= {ctx['ge']}"
    if kind == "less_than_equal":
        return f"must be <= {ctx['le']}"
    if kind == "too_short":
        return f"must have at least {ctx.get('min_length')} item(s)"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx['pattern']} (got {error.get('input')!r})"
    if kind == "enum":
        return f"must be one of {ctx['expected']} (got {error.get('input')!r})"
    msg = str(error["msg"])
    return msg[len("Value error, "):] if msg.startswith("Value error, ") else msg[0].lower() + msg[1:]


def with_derived_defaults(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The config map with what one section derives from another filled in where unset:
    `grafana.url` https://grafana.<site.domain>, an SNMP target's `address` <name>.<site.domain>,
    `reports.archive.nfs.server` the recovery NAS's NFS server (recovery.nas.nfsServer or its default). A value of the wrong
    type is left for the schema to name."""
    out = dict(raw)
    site = out.get("site")
    domain = site.get("domain") if isinstance(site, dict) else None
    domain = domain.strip() if isinstance(domain, str) and domain.strip() else None
    grafana = out.get("grafana")
    if domain and isinstance(grafana, dict) and "url" not in grafana:
        out["grafana"] = {**grafana, "url": f"https://grafana.{domain}"}
    metrics = out.get("metrics")
    snmp = metrics.get("snmp") if isinstance(metrics, dict) else None
    targets = snmp.get("targets") if isinstance(snmp, dict) else None
    if domain and isinstance(targets, list):
        targets = [{**t, "address": f"{t['name']}.{domain}"}
                   if isinstance(t, dict) and "address" not in t and isinstance(t.get("name"), str) else t
                   for t in targets]
        out["metrics"] = {**metrics, "snmp": {**snmp, "targets": targets}}
    reports, recovery = out.get("reports"), out.get("recovery")
    archive = reports.get("archive") if isinstance(reports, dict) else None
    nfs = archive.get("nfs") if isinstance(archive, dict) else None
    nas = recovery.get("nas") if isinstance(recovery, dict) else None
    server = nas_nfs_server(nas) if isinstance(nas, dict) else None
    if isinstance(nfs, dict) and "server" not in nfs and server:
        out["reports"] = {**reports, "archive": {**archive, "nfs": {**nfs, "server": server}}}
    return out


def load_stack_config(raw: Mapping[str, Any], source: str = "stack config") -> StackConfig:
    """Validate the project's config map (key -> decoded value); raise ConfigError with all problems."""
    raw = with_derived_defaults(raw)
    try:
        cfg = StackConfig.model_validate(dict(raw))
    except ValidationError as exc:
        raise ConfigError(_problems(exc.errors(), raw), source) from None
    problems = cfg.problems()
    if problems:
        raise ConfigError(problems, source)
    return cfg
