"""Billing cycles: each customer is read on its read day (meters.read_day); the cycle billed in period YYYY-MM
runs from the previous month's read day up to (not including) this month's read day, in local days. A read day
past a month's end falls on its last day. Daily register reads are taken at local midnight, so the read that
opens the read day closes the cycle."""

from __future__ import annotations

import calendar
import re
from datetime import date

import numpy as np

from amr.errors import ConfigError

_PERIOD = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def parse_period(text: str) -> tuple[int, int]:
    match = _PERIOD.match(text.strip())
    if not match:
        raise ConfigError(f"period {text!r} is not YYYY-MM", source="--period")
    return int(match[1]), int(match[2])


def read_date(year: int, month: int, read_day: int) -> date:
    return date(year, month, min(read_day, calendar.monthrange(year, month)[1]))


def cycle(period: str, read_day: int) -> tuple[date, date]:
    """(first local day billed, read date = first day not billed) for one read day."""
    year, month = parse_period(period)
    prev_year, prev_month = (year, month - 1) if month > 1 else (year - 1, 12)
    return read_date(prev_year, prev_month, read_day), read_date(year, month, read_day)


def cycles(period: str, read_day: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectorized cycle(): (start, end) as datetime64[D] arrays."""
    table = np.array([cycle(period, d) for d in range(1, 32)], dtype="datetime64[D]")
    idx = np.clip(np.asarray(read_day, dtype=np.int64), 1, 31) - 1
    return table[idx, 0], table[idx, 1]
