"""The collectors, one per part of PBS, and the families a scrape serves, in their order.

* ``tasks`` - which tasks a poll reads from the task list;
* ``jobs`` - the configured jobs and their status; the job series;
* ``datastores`` - usage and snapshot counts; the datastore series;
* here - the exporter's own health: whether PBS answered, its polls, its problems.
"""

import dataclasses

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

from contracts.metrics import (PBS_EXPORTER_LAST_POLL, PBS_EXPORTER_POLL_DURATION, PBS_EXPORTER_POLL_ERRORS,
                               PBS_EXPORTER_POLLS, PBS_EXPORTER_TASKS_IGNORED, PBS_UP)

from . import jobs
from .base import family


@dataclasses.dataclass
class PollStatus:
    up: object = None  # None before the first poll, then True or False
    polls: int = 0
    duration: object = None
    ended: object = None


def health_families(status, problems, ignored):
    out = []
    if status.up is not None:
        out.append(family(GaugeMetricFamily, PBS_UP, "1 if the last poll read the PBS task list, else 0.", [],
                          [([], int(status.up))]))
    out += [
        family(CounterMetricFamily, PBS_EXPORTER_POLLS, "Polls of the PBS API.", [], [([], status.polls)]),
        family(CounterMetricFamily, PBS_EXPORTER_POLL_ERRORS, "Failed PBS API calls and data problems, by kind.",
               ["kind"], [([k], v) for k, v in problems.errors.items()]),
        family(CounterMetricFamily, PBS_EXPORTER_TASKS_IGNORED, "Finished tasks not counted as a job run, by reason.",
               ["reason"], [([k], v) for k, v in ignored.items()]),
    ]
    if status.duration is not None:
        out += [
            family(GaugeMetricFamily, PBS_EXPORTER_POLL_DURATION, "Duration of the last poll of the PBS API.", [],
                   [([], status.duration)]),
            family(GaugeMetricFamily, PBS_EXPORTER_LAST_POLL, "When the last poll of the PBS API ended.", [],
                   [([], status.ended)]),
        ]
    return out


def build_families(status, problems, ledger, catalog, datastores):
    """The metric families a scrape serves, from the last poll's results."""
    families = health_families(status, problems, ledger.ignored) + jobs.families(ledger, catalog, bool(status.up))
    if status.up:
        families += datastores.families(catalog.configs["sync"])
    return tuple(families)
