"""Section `reports`: the quarterly PBS job report, when it is made, where it is kept, who hears of it."""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field

from model.config.base import ConfigModel, Problem
from model.config.fields import duration_seconds
from model.config.metrics import Metrics, long_term_days


class NfsShare(ConfigModel):
    # Host name or address of the NAS; unset: recovery.nas.nfsServer, if set (model/config/loading.py).
    server: str | None = Field(default=None, pattern=r"^[A-Za-z0-9.-]+$")
    path: str = Field(pattern=r"^/[^\s]*$")


class ReportArchive(ConfigModel):
    """Where the reports are kept: a share of the NAS, or without `nfs` a volume of the cluster
    (a PersistentVolumeClaim beside Prometheus, protected like any data)."""

    nfs: NfsShare | None = None
    retention_years: int = Field(default=5, ge=1, le=100)
    # Without nfs: the claim's size and class (unset: the cluster's default class).
    volume_gb: int = Field(default=1, ge=1, le=1024)
    storage_class: str | None = None


# A quarter is at most 92 days; the report also reads the day before it began.
REPORT_MIN_RETENTION_DAYS = 93


class Reports(ConfigModel):
    """The quarterly PBS job report (tools/report): when it is made, where it is kept, who hears of it."""

    run_at: str = Field(default="06:00", pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")  # on each quarter's first day
    archive: ReportArchive = Field(default_factory=ReportArchive)
    # A mattermost receiver; unset: the one the routing table sends service="backups" alerts to.
    announce_to: str | None = None

    def problems(self, timezone: str, metrics: Metrics, has_backup_room: bool) -> list[Problem]:
        """`has_backup_room`: whether StackConfig.backup_room finds the room to announce the report in."""
        found = []
        if self.archive.nfs and not self.archive.nfs.server:
            found.append(Problem("reports.archive.nfs.server", "is required without recovery.nas (whose nfsServer it "
                                                               "defaults to): the NAS's host name or address"))
        if self.archive.nfs:
            found += [Problem(f"reports.archive.{key}", "is for a volume of the cluster; with archive.nfs the reports "
                                                        "are kept on the share: remove one of the two")
                      for key, name in (("volumeGb", "volume_gb"), ("storageClass", "storage_class"))
                      if name in self.archive.model_fields_set]
        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            found.append(Problem("site.timezone", f"unknown time zone {timezone!r} (the reports' quarters run in it)"))
        retention = duration_seconds(metrics.prometheus.retention)
        long_term = metrics.long_term
        if long_term is not None:
            # The report reads the long-term store then (model/reports.py), whatever Prometheus keeps.
            if long_term_days(long_term.retention) < REPORT_MIN_RETENTION_DAYS:
                found.append(Problem("metrics.longTerm.retention", f"must be at least {REPORT_MIN_RETENTION_DAYS}d with "
                                     "reports: the quarterly report reads a whole quarter from the long-term store"))
        elif retention < REPORT_MIN_RETENTION_DAYS * 86400:
            found.append(Problem("metrics.prometheus.retention", f"must be at least {REPORT_MIN_RETENTION_DAYS}d with "
                                 "reports: the quarterly report reads a whole quarter from Prometheus"))
        if not has_backup_room:
            found.append(Problem("reports.announceTo", f"{self.announce_to!r} is not a mattermost receiver of alerting.receivers"
                                 if self.announce_to else
                                 'no route sends service = "backups" to a mattermost receiver: name the room\'s receiver'))
        return found
