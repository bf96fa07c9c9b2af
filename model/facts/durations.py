"""Durations as Prometheus, Alertmanager and Loki write them: `1h30m`, `31d`, `500ms`.

The one parser of the stack: the config schema, the rule generators, the policy pack and the
alert drill all read durations through it. Units run from years down to milliseconds, each at
most once and in that order, as Prometheus' model.ParseDuration requires.
"""

from __future__ import annotations

import re

UNIT_SECONDS = {"y": 365 * 86400, "w": 7 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1, "ms": 0.001}
_UNIT_ORDER = ["y", "w", "d", "h", "m", "s", "ms"]
_DURATION = re.compile(r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$")

def parse_seconds(text: str | int | float) -> float:
    """Seconds in a duration such as '1h30m', '500ms' or '0s'; a number is taken as seconds."""
    if isinstance(text, bool):
        raise ValueError(f"not a Prometheus duration: {text!r}")
    if isinstance(text, (int, float)):
        return float(text)
    text = text.strip()
    match = _DURATION.match(text)
    if not text or not match or not any(match.groups()):
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(v) * UNIT_SECONDS[u] for v, u in zip(match.groups(), _UNIT_ORDER) if v)


def format_seconds(seconds: float) -> str:
    """The shortest exact duration for `seconds`, rounded to whole milliseconds (>= 1ms)."""
    millis = max(1, round(seconds * 1000))
    out = []
    for unit in _UNIT_ORDER:
        size = round(UNIT_SECONDS[unit] * 1000)
        if millis >= size:
            count, millis = divmod(millis, size)
            out.append(f"{count}{unit}")
    return "".join(out)
