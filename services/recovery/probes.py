"""Customer impact, asked of the blackbox exporter on demand: the configured probes, run now.

When a latency SLO pages, the service runs the probes configured for the burning service
through the exporter's ``/probe?target=<url>&module=<module>`` (prometheus/blackbox_exporter)
and reads its answer, Prometheus' text format (``probe_success``, ``probe_http_status_code``,
``probe_duration_seconds``). Only the targets and modules of its config are ever requested:
the alert names a service, never a URL.
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from .rest import ApiError, Endpoint


@dataclass(frozen=True)
class ProbeAnswer:
    name: str
    url: str
    success: bool | None  # None: the exporter did not answer, or not with a probe result
    detail: str


def _samples(text: str) -> dict[str, float]:
    return {s.name: s.value for family in text_string_to_metric_families(text) for s in family.samples if not s.labels}


def run_probe(exporter: Endpoint, target: dict) -> ProbeAnswer:
    try:
        _, data = exporter.request("GET", "/probe", headers={}, params={"target": target["url"], "module": target["module"]},
                                   label=f"/probe of {target['name']}")
        values = _samples(data.decode("utf-8", "replace"))
    except ApiError as exc:
        return ProbeAnswer(target["name"], target["url"], None, f"no answer from the blackbox exporter: {exc}")
    except ValueError as exc:
        return ProbeAnswer(target["name"], target["url"], None, f"the blackbox exporter's answer is unreadable: {exc}")
    if "probe_success" not in values:
        return ProbeAnswer(target["name"], target["url"], None, "the blackbox exporter's answer has no probe_success")
    status = values.get("probe_http_status_code")
    took = values.get("probe_duration_seconds")
    detail = (f"HTTP {status:.0f}" if status else "no HTTP answer") + (f" in {took:.2f}s" if took is not None else "")
    return ProbeAnswer(target["name"], target["url"], values["probe_success"] == 1, detail)


def verdict(answers: list[ProbeAnswer]) -> tuple[str, str]:
    """(confirmed | not confirmed | unknown, one line for people)."""
    failing = [a for a in answers if a.success is False]
    unknown = [a for a in answers if a.success is None]
    listed = "; ".join(f"{a.name}: {'OK' if a.success else 'FAILS' if a.success is False else 'unknown'} ({a.detail})"
                       for a in answers)
    if failing:
        return "confirmed", f"customer impact confirmed: {len(failing)} of {len(answers)} probe(s) fail now — {listed}"
    if unknown:
        return "unknown", f"customer impact unknown: {len(unknown)} of {len(answers)} probe(s) could not run — {listed}"
    return "not confirmed", f"customer impact not confirmed: every probe passes now — {listed}"
