"""Section `slos`: each service level objective and the events its indicator counts."""

from __future__ import annotations

from pydantic import Field

from model.config.base import ConfigModel, Problem
from model.config.fields import SERVICE, PromDuration
from model.config.probes import Probes

# A counter selector: `metric` or `metric{label="value",...}`; the SLO engine wraps it in rate().
SERIES_SELECTOR = r"^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[^{}]*\})?$"


def slo_key(names: list, index: int) -> str:
    """`slos[api-gateway-latency]`: an SLO's problems name it, not its place in the list (the index
    where its name is missing or not unique)."""
    name = names[index] if index < len(names) else None
    return f"slos[{name}]" if isinstance(name, str) and name and names.count(name) == 1 else f"slos[{index}]"


class LatencySli(ConfigModel):
    """Good events are requests faster than the threshold: one bucket of a classic histogram."""

    histogram: str = Field(pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")  # base name, without _bucket
    selector: dict[str, str] = Field(default_factory=dict)
    threshold: float = Field(gt=0)  # in the histogram's unit; must be one of its bucket bounds


class Sli(ConfigModel):
    """Exactly one of: goodEvents/totalEvents, badEvents/totalEvents (counter selectors), latency,
    probe (a configured probe target: each of its probes is an event, good when it succeeded)."""

    good_events: str | None = Field(default=None, pattern=SERIES_SELECTOR)
    bad_events: str | None = Field(default=None, pattern=SERIES_SELECTOR)
    total_events: str | None = Field(default=None, pattern=SERIES_SELECTOR)
    latency: LatencySli | None = None
    probe: str | None = Field(default=None, min_length=1)


class Slo(ConfigModel):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]*$")
    service: str = Field(pattern=SERVICE)
    description: str = Field(min_length=1)
    objective: float = Field(gt=0, lt=100)  # percent of good events over the period
    period: PromDuration = "30d"
    sli: Sli
    # Low-traffic guard: a burn-rate alert also needs this many bad events in its long window.
    min_bad_events: int = Field(default=1, ge=1)
    page_for: PromDuration = "2m"
    ticket_for: PromDuration = "15m"
    # False: recording rules only (burn rates, budget), for an SLO whose failures other alerts
    # already page one by one (the backup jobs).
    alerts: bool = True

    @property
    def alert_name(self) -> str:
        """The name of this SLO's burn-rate alerts (model/rules/slo.py); the recovery service's trigger too."""
        return "".join(part.capitalize() for part in self.name.split("-")) + "BudgetBurn"

    def problems(self, at: str) -> list[Problem]:
        found = []
        if not self.alerts and self.min_bad_events > 1:
            found.append(Problem(f"{at}.minBadEvents", "has no effect with alerts: false (the SLO raises no alert)"))
        sli = self.sli
        kinds = [k for k, set_ in (("goodEvents", sli.good_events), ("badEvents", sli.bad_events), ("latency", sli.latency),
                                   ("probe", sli.probe)) if set_]
        if len(kinds) != 1:
            found.append(Problem(f"{at}.sli", f"needs exactly one of goodEvents, badEvents, latency or probe (got {', '.join(kinds) or 'none'})"))
        elif kinds[0] in ("goodEvents", "badEvents") and not sli.total_events:
            found.append(Problem(f"{at}.sli.totalEvents", f"is required with {kinds[0]}"))
        elif kinds[0] == "latency" and sli.total_events:
            found.append(Problem(f"{at}.sli.totalEvents", "is not used with latency (the histogram's _count is the total)"))
        elif kinds[0] == "probe" and sli.total_events:
            found.append(Problem(f"{at}.sli.totalEvents", "is not used with probe (every probe is an event)"))
        return found

    def probe_problems(self, at: str, probes: Probes | None) -> list[Problem]:
        """A probe SLI names a configured probe target (probes.targets[].name)."""
        names = [t.name for t in probes.targets] if probes else []
        if self.sli.probe and self.sli.probe not in names:
            return [Problem(f"{at}.sli.probe", f"unknown probe {self.sli.probe!r} (probes.targets: {', '.join(names) or 'none'})")]
        return []
