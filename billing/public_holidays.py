"""Viet Nam's public holidays (Tet included) as local day numbers, for the VEE kernels' like-day profile.

MDM rule-books estimate long gaps like-day, "same weekday, excluding holidays": a Tet week's very low use would
otherwise pull down the profile of the weeks after it. The days come from the ``holidays`` package
(``holidays.country_holidays('VN')``: the statutory days, Tet's eve and days off, the observed and substituted days
off), as day numbers in amr.timebase's sense (days since 1970-01-01, local calendar), so that a kernel compares
them with epoch seconds by plain arithmetic.
"""

from __future__ import annotations

from datetime import date
from functools import lru_cache

import holidays
import numpy as np

from amr.timebase import local_day_number, local_midnight_utc_s

HOLIDAY_COUNTRY = "VN"


def day_number(day: date) -> int:
    """Local day number (days since 1970-01-01, local calendar) of a calendar date."""
    return int(local_day_number(local_midnight_utc_s(day)))


@lru_cache(maxsize=64)
def _holiday_days(first_year: int, last_year: int) -> tuple[int, ...]:
    found = holidays.country_holidays(HOLIDAY_COUNTRY, years=range(first_year, last_year + 1))
    return tuple(sorted({day_number(d) for d in found}))


def holiday_days(first_year: int, last_year: int) -> np.ndarray:
    """Local day numbers of Viet Nam's public holidays in the years first_year..last_year inclusive: sorted,
    unique, int64 (a fresh array: the caller may keep it)."""
    if last_year < first_year:
        return np.zeros(0, np.int64)
    return np.array(_holiday_days(first_year, last_year), dtype=np.int64)
