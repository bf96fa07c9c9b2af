"""Prometheus durations compressed by the drill's time-scale factor (parsed by model/durations.py).

The drill keeps the deployed rules and routing but runs them `factor` times faster: every
duration that sets a window or a timer (PromQL range selectors, subquery steps, `offset`,
`for`, `keep_firing_for`, rule-group and scrape intervals, Alertmanager's group/repeat timers)
is divided by the factor. Numbers that are seconds in disguise (`time() - x > 86400`,
`predict_linear(x[6h], 3600)`) cannot be recognised safely; `unscalable_constructs` names them
so the report can say which rules the drill does not compress faithfully.
"""

from __future__ import annotations

import re

from model.facts.durations import format_seconds, parse_seconds

# A duration token inside PromQL (after `[`, `:` or `offset`); `ms` before `m`.
_TOKEN = r"(?:\d+(?:ms|y|w|d|h|m|s))+"


parse = parse_seconds  # seconds in '1h30m', '500ms', '0s'


def human(seconds: float) -> str:
    """Readable duration for reports: '17m17s', '2.5s', '120ms'."""
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s".replace(".0s", "s")
    return format_seconds(round(seconds))


def scale(text: str | int | float, factor: float, floor: float = 0.001) -> str:
    """`text` divided by `factor`, never below `floor` seconds; '0s' stays '0s'."""
    seconds = parse(text)
    if seconds == 0:
        return "0s"
    return format_seconds(max(seconds / factor, floor))


def _split_strings(expr: str) -> list[tuple[bool, str]]:
    """(is_string_literal, text) pieces, so that label values are never rewritten."""
    pieces: list[tuple[bool, str]] = []
    i = start = 0
    while i < len(expr):
        ch = expr[i]
        if ch == "#":  # comment to end of line
            end = expr.find("\n", i)
            end = len(expr) if end < 0 else end
            pieces.append((False, expr[start:i]))
            pieces.append((True, expr[i:end]))
            i = start = end
            continue
        if ch in "\"'`":
            pieces.append((False, expr[start:i]))
            j = i + 1
            while j < len(expr) and expr[j] != ch:
                j += 2 if expr[j] == "\\" and ch != "`" else 1
            pieces.append((True, expr[i:j + 1]))
            i = start = j + 1
            continue
        i += 1
    pieces.append((False, expr[start:]))
    return pieces


_RANGE_RE = re.compile(rf"\[\s*({_TOKEN})\s*(?::\s*({_TOKEN})?\s*)?\]")
_OFFSET_RE = re.compile(rf"(\boffset\s+-?)({_TOKEN})\b")


def scale_promql(expr: str, factor: float) -> str:
    """`expr` with every range, subquery step and offset divided by `factor`."""

    def range_sub(m: re.Match[str]) -> str:
        window = scale(m.group(1), factor)
        if ":" not in m.group(0):
            return f"[{window}]"
        step = f"{scale(m.group(2), factor)}" if m.group(2) else ""
        return f"[{window}:{step}]"

    out = []
    for is_literal, text in _split_strings(expr):
        if not is_literal:
            text = _RANGE_RE.sub(range_sub, text)
            text = _OFFSET_RE.sub(lambda m: m.group(1) + scale(m.group(2), factor), text)
        out.append(text)
    return "".join(out)


_SECONDS_CONSTRUCTS = {
    "time()": "compares against time(): absolute seconds are not compressed",
    "predict_linear": "predict_linear's horizon is in seconds and is not compressed",
    "holt_winters": "holt_winters smoothing factors depend on the sample count",
    "timestamp(": "timestamp() is in absolute seconds and is not compressed",
}


def unscalable_constructs(expr: str) -> list[str]:
    """Why `expr` behaves differently when compressed (empty when it scales faithfully)."""
    code = "".join(text for is_literal, text in _split_strings(expr) if not is_literal)
    return [why for token, why in _SECONDS_CONSTRUCTS.items() if token in code.replace(" (", "(")]


def smallest_range(expr: str) -> float | None:
    """Seconds of the shortest range selector in `expr`, None when it has none."""
    code = "".join(text for is_literal, text in _split_strings(expr) if not is_literal)
    ranges = [parse(m.group(1)) for m in _RANGE_RE.finditer(code)]
    return min(ranges) if ranges else None


def largest_range(expr: str) -> float | None:
    """Seconds of history `expr` reads: its longest range selector plus its longest offset."""
    code = "".join(text for is_literal, text in _split_strings(expr) if not is_literal)
    ranges = [parse(m.group(1)) for m in _RANGE_RE.finditer(code)]
    offsets = [abs(parse(m.group(2))) for m in _OFFSET_RE.finditer(code)]
    return max(ranges) + max(offsets, default=0.0) if ranges else None
