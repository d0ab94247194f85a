"""Billing periods and cycles: each customer is read on its read day (meters.read_day); the cycle billed in period
YYYY-MM runs from the previous month's read day up to (not including) this month's read day, in local days. A read
day past a month's end falls on its last day. Daily register reads are taken at local midnight, so the read that
opens the read day closes the cycle.

A period is parsed once, where it enters (the command line: ``BillingPeriod.parse("2026-10")``), and passed on as
a BillingPeriod value."""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import date

import numpy as np

from amr.errors import ConfigError
from amr.timebase import local_midnight_utc_s

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
FIRST_READ_DAY = 1
LAST_READ_DAY = 31  # a read day past a month's end falls on its last day


def read_date(year: int, month: int, read_day: int) -> date:
    return date(year, month, min(read_day, calendar.monthrange(year, month)[1]))


@dataclass(frozen=True, order=True)
class BillingPeriod:
    """A billing month: the cycles that end on a read day in it."""

    year: int
    month: int

    def __post_init__(self) -> None:
        # the month before must exist too: the cycles start there
        if not (1 <= self.month <= 12 and 1 < self.year <= 9999):
            raise ConfigError(f"no billing period {self.year}-{self.month:02d}", key="period")

    @classmethod
    def parse(cls, text: str, *, source: str = "--period") -> BillingPeriod:
        """'2026-10' -> BillingPeriod(2026, 10); ConfigError naming `source` otherwise."""
        match = _PERIOD.match(text.strip())
        if not match:
            raise ConfigError(f"period {text!r} is not YYYY-MM", source=source)
        return cls(int(match[1]), int(match[2]))

    @property
    def label(self) -> str:
        """'YYYY-MM', as billing_runs.period and the export folder names hold it."""
        return f"{self.year:04d}-{self.month:02d}"

    def __str__(self) -> str:
        return self.label

    def cycle(self, read_day: int) -> tuple[date, date]:
        """(first local day billed, read date = first day not billed) for one read day."""
        prev_year, prev_month = (self.year, self.month - 1) if self.month > 1 else (self.year - 1, 12)
        return read_date(prev_year, prev_month, read_day), read_date(self.year, self.month, read_day)

    def cycles(self, read_day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Vectorized cycle(): (start, end) as datetime64[D] arrays."""
        table = np.array([self.cycle(d) for d in range(FIRST_READ_DAY, LAST_READ_DAY + 1)], dtype="datetime64[D]")
        idx = np.clip(np.asarray(read_day, dtype=np.int64), FIRST_READ_DAY, LAST_READ_DAY) - FIRST_READ_DAY
        return table[idx, 0], table[idx, 1]

    @property
    def start_day(self) -> date:
        """The first local day any cycle of the period bills (read day 1 of the month before)."""
        return self.cycle(FIRST_READ_DAY)[0]

    @property
    def end_day(self) -> date:
        """The last read date of the period (the month's last day): the latest cycle ends before it."""
        return self.cycle(LAST_READ_DAY)[1]

    @property
    def start_utc_s(self) -> int:
        """UTC epoch [s] of start_day's local midnight."""
        return local_midnight_utc_s(self.start_day)

    @property
    def end_utc_s(self) -> int:
        """UTC epoch [s] of end_day's local midnight (the latest cycle's closing read)."""
        return local_midnight_utc_s(self.end_day)
