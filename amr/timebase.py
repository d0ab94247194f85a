"""The platform's time base: instants are UTC, calendar days are local days in Viet Nam.

Instants are stored and computed in UTC (``timestamptz`` in the database, epoch seconds [s] in arrays). Billing
days, TOU windows, meter clocks and the dashboards' dates follow local time, Asia/Ho_Chi_Minh, which has been
UTC+7 without daylight saving since 1975. A fixed offset makes a local day plain arithmetic on epoch seconds:
``(t_s + LOCAL_UTC_OFFSET_S) // DAY_S`` is the local day number, with no time-zone database lookup, which the
numba kernels need (they import the int constants below as module globals; numba freezes them at compile time).

Day numbers count days since 1970-01-01 (the Unix epoch), local days counted from local midnight.
"""

from __future__ import annotations

import math
from datetime import date, datetime, timedelta, timezone
from typing import TypeVar

import numpy as np
import numpy.typing as npt

LOCAL_TZ_NAME = "Asia/Ho_Chi_Minh"  # the IANA name, for PostgreSQL sessions and pandas
LOCAL_UTC_OFFSET_S = 7 * 3600  # UTC+7, no DST since 1975 (tests/amr/test_timebase.py checks it against tzdata)
LOCAL_TZ = timezone(timedelta(seconds=LOCAL_UTC_OFFSET_S), "ICT")  # Indochina Time
DAY_S = 86_400  # a local day: no DST, and UTC leap seconds do not exist in epoch seconds
UNIX_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0, as datetime.weekday)

_Seconds = TypeVar("_Seconds", int, npt.NDArray[np.int64])


def local_midnight(day: date) -> datetime:
    """The instant local `day` begins, as an aware datetime in LOCAL_TZ (convert with ``.astimezone(UTC)``)."""
    return datetime(day.year, day.month, day.day, tzinfo=LOCAL_TZ)


def local_midnight_utc_s(day: date) -> int:
    """UTC epoch seconds [s] of the local midnight that begins `day`."""
    return int(local_midnight(day).timestamp())


def local_day_bounds(first: date, last: date) -> tuple[datetime, datetime]:
    """[start, end) of local days first..last inclusive: first's local midnight and the one after last."""
    return local_midnight(first), local_midnight(last + timedelta(days=1))


def local_date(instant: datetime) -> date:
    """The local calendar date of an aware instant (a naive one is refused: it has no place on the time line)."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"local_date needs an aware datetime, got naive {instant.isoformat()}")
    return instant.astimezone(LOCAL_TZ).date()


def local_today() -> date:
    """Today's local date."""
    return datetime.now(LOCAL_TZ).date()


def local_day_and_second_s(t_s: float) -> tuple[int, float]:
    """(local day number since 1970-01-01, seconds into that local day [s]) of UTC epoch seconds `t_s`."""
    local_s = float(t_s) + LOCAL_UTC_OFFSET_S
    day = math.floor(local_s / DAY_S)
    return day, local_s - day * DAY_S


def local_day_number(t_s: _Seconds) -> _Seconds:
    """Local day number since 1970-01-01 of UTC epoch seconds (int or int64 array; floor division, so instants
    before 1970 fall on the right day too)."""
    return (t_s + LOCAL_UTC_OFFSET_S) // DAY_S


def local_second_of_day_s(t_s: _Seconds) -> _Seconds:
    """Seconds since local midnight [s] of UTC epoch seconds (int or int64 array)."""
    return (t_s + LOCAL_UTC_OFFSET_S) % DAY_S


def local_weekday(t_s: _Seconds) -> _Seconds:
    """Local day of the week of UTC epoch seconds, Monday = 0 .. Sunday = 6 (as datetime.weekday)."""
    return (local_day_number(t_s) + UNIX_EPOCH_WEEKDAY) % 7
