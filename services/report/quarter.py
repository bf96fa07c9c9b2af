"""Calendar quarters in the site's time zone: `2026Q3` runs from 1 July 00:00 to 1 October 00:00 local."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, tzinfo

from . import USAGE, ReportError

QUARTER = re.compile(r"^(\d{4})Q([1-4])$")
MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True, order=True)
class Quarter:
    year: int
    number: int

    @classmethod
    def parse(cls, text: str) -> "Quarter":
        match = QUARTER.match(text.strip().upper())
        if not match:
            raise ReportError(f"unknown quarter {text!r}: write it as <year>Q<1-4>, e.g. 2026Q3", USAGE)
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def containing(cls, moment: datetime, tz: tzinfo) -> "Quarter":
        local = moment.astimezone(tz)
        return cls(local.year, (local.month - 1) // 3 + 1)

    def __str__(self) -> str:
        return f"{self.year}Q{self.number}"

    @property
    def title(self) -> str:
        return f"{self.year} Q{self.number}"

    def previous(self) -> "Quarter":
        return Quarter(self.year - 1, 4) if self.number == 1 else Quarter(self.year, self.number - 1)

    def next(self) -> "Quarter":
        return Quarter(self.year + 1, 1) if self.number == 4 else Quarter(self.year, self.number + 1)

    def start(self, tz: tzinfo) -> datetime:
        """Local midnight of the quarter's first day (a zone's midnight always exists at quarter starts)."""
        return datetime(self.year, 3 * self.number - 2, 1, tzinfo=tz)

    def end(self, tz: tzinfo) -> datetime:
        return self.next().start(tz)

    def span(self, tz: tzinfo) -> str:
        last_month = MONTH_NAMES[3 * self.number - 1]
        days = {1: 31, 2: 30, 3: 30, 4: 31}[self.number]
        return f"1 {MONTH_NAMES[3 * self.number - 3]} – {days} {last_month} {self.year}"


def last_finished(now: datetime, tz: tzinfo) -> Quarter:
    return Quarter.containing(now, tz).previous()


def check_finished(quarter: Quarter, now: datetime, tz: tzinfo) -> None:
    """A report of a quarter that has not ended would present part of it as the whole."""
    end = quarter.end(tz)
    if end > now:
        when = "is in the future" if quarter.start(tz) > now else "has not ended yet"
        raise ReportError(f"quarter {quarter} {when}: it ends {end:%Y-%m-%d %H:%M} {tz}; "
                          f"the last finished quarter is {last_finished(now, tz)}", USAGE)
