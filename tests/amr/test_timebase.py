"""The time base: the fixed UTC+7 offset against the tz database, local day boundaries, instants either side of
local midnight."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from amr.timebase import (
    DAY_S,
    LOCAL_TZ,
    LOCAL_TZ_NAME,
    LOCAL_UTC_OFFSET_S,
    UNIX_EPOCH_WEEKDAY,
    local_date,
    local_day_and_second_s,
    local_day_bounds,
    local_day_number,
    local_midnight,
    local_midnight_utc_s,
    local_second_of_day_s,
    local_today,
    local_weekday,
)

# 2025-03-08 (a Saturday) begins in Viet Nam at 2025-03-07 17:00 UTC.
SATURDAY = date(2025, 3, 8)
SATURDAY_MIDNIGHT_UTC = datetime(2025, 3, 7, 17, 0, tzinfo=UTC)
ONE_US = timedelta(microseconds=1)


def test_the_fixed_offset_is_the_tz_database_offset_at_every_instant_since_1976() -> None:
    """A fixed offset is only right while Asia/Ho_Chi_Minh keeps UTC+7 without DST: check every week of 50 years."""
    zone = ZoneInfo(LOCAL_TZ_NAME)
    t = datetime(1976, 1, 1, tzinfo=UTC)
    while t.year < 2026:
        assert t.astimezone(zone).utcoffset() == timedelta(seconds=LOCAL_UTC_OFFSET_S), t
        assert t.astimezone(zone).replace(tzinfo=None) == t.astimezone(LOCAL_TZ).replace(tzinfo=None)
        t += timedelta(days=7, hours=5)
    assert LOCAL_UTC_OFFSET_S == 7 * 3600 and DAY_S == 24 * 3600
    assert date(1970, 1, 1).weekday() == UNIX_EPOCH_WEEKDAY


def test_local_midnight_is_17_00_utc_the_day_before() -> None:
    assert local_midnight(SATURDAY) == SATURDAY_MIDNIGHT_UTC
    assert local_midnight(SATURDAY).astimezone(UTC) == SATURDAY_MIDNIGHT_UTC
    assert local_midnight_utc_s(SATURDAY) == int(SATURDAY_MIDNIGHT_UTC.timestamp())
    assert local_midnight_utc_s(date(1970, 1, 1)) == -LOCAL_UTC_OFFSET_S


def test_an_instant_just_before_and_just_after_local_midnight() -> None:
    before, after = SATURDAY_MIDNIGHT_UTC - ONE_US, SATURDAY_MIDNIGHT_UTC
    assert local_date(before) == date(2025, 3, 7) and local_date(after) == SATURDAY
    # The same instants given in another offset are the same local days.
    assert local_date(before.astimezone(ZoneInfo("America/New_York"))) == date(2025, 3, 7)
    assert local_date(after.astimezone(ZoneInfo("Europe/Paris"))) == SATURDAY
    s = int(SATURDAY_MIDNIGHT_UTC.timestamp())
    saturday_number = (SATURDAY - date(1970, 1, 1)).days
    assert local_day_number(s - 1) == saturday_number - 1 and local_day_number(s) == saturday_number
    assert local_second_of_day_s(s - 1) == DAY_S - 1 and local_second_of_day_s(s) == 0
    assert local_weekday(s - 1) == 4 and local_weekday(s) == 5  # Friday, then Saturday
    assert local_day_and_second_s(s - 0.25) == (saturday_number - 1, DAY_S - 0.25)
    assert local_day_and_second_s(float(s)) == (saturday_number, 0.0)


def test_day_helpers_work_on_int64_arrays_and_before_1970() -> None:
    s = np.array([-LOCAL_UTC_OFFSET_S - 1, -LOCAL_UTC_OFFSET_S, 0, local_midnight_utc_s(SATURDAY)], dtype=np.int64)
    assert local_day_number(s).tolist() == [-1, 0, 0, (SATURDAY - date(1970, 1, 1)).days]
    assert local_second_of_day_s(s).tolist() == [DAY_S - 1, 0, LOCAL_UTC_OFFSET_S, 0]
    assert local_weekday(s).tolist() == [2, 3, 3, 5]  # 1969-12-31 Wednesday, 1970-01-01 Thursday, Saturday


def test_local_day_bounds_cover_whole_local_days() -> None:
    start, end = local_day_bounds(date(2025, 2, 27), date(2025, 3, 1))  # over the end of a short February
    assert start == datetime(2025, 2, 26, 17, tzinfo=UTC) and end == datetime(2025, 3, 1, 17, tzinfo=UTC)
    assert (end - start).total_seconds() == 3 * DAY_S
    assert local_date(start) == date(2025, 2, 27) and local_date(end - ONE_US) == date(2025, 3, 1)


def test_a_naive_datetime_is_refused() -> None:
    with pytest.raises(ValueError, match="naive 2025-03-08T00:00:00"):
        local_date(datetime(2025, 3, 8))


def test_local_today_is_the_local_date_of_now() -> None:
    before = local_date(datetime.now(UTC))
    today = local_today()
    assert today in (before, before + timedelta(days=1))  # the clock may cross local midnight in between


@given(st.integers(-60_000_000_000, 250_000_000_000))  # years ~68 .. ~9890
def test_arithmetic_day_matches_calendar_conversion(t_s: int) -> None:
    """Integer epoch arithmetic agrees with datetime's calendar conversion at any second (pre-1970 included)."""
    instant = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=t_s)
    local = local_date(instant)
    assert local_day_number(t_s) == (local - date(1970, 1, 1)).days
    assert local_weekday(t_s) == local.weekday()
    assert local_midnight_utc_s(local) + local_second_of_day_s(t_s) == t_s
