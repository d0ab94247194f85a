"""Like-day estimation skips Viet Nam's public holidays: Tet 2026 (02-16..20) is not the reference for the days
after it, but is still validated and measured; the kernel and the plain-Python twin agree on it."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pytest

from amr.timebase import local_day_number, local_midnight_utc_s
from billing import flags as F
from billing.public_holidays import day_number, holiday_days
from billing.rules import read_vee_rules
from billing.vee import PeriodWindow, ReadingArrays, VeeInputError, VeeResult, default_holiday_days, validate_estimate
from tests.billing.twin import twin_series

RULES = read_vee_rules()
TET_2026 = [date(2026, 2, 16) + timedelta(days=k) for k in range(5)]  # Mon 16 .. Fri 20
FIRST = date(2026, 2, 2)  # a Monday: two ordinary weeks before Tet
HOURS = 27 * 24  # hourly reads 2026-02-02 00:00 .. 2026-03-01 00:00 (local)
# An ordinary day: low at night, high in working hours. A Tet day: almost nothing, all day.
ORDINARY_KWH = [0.4] * 6 + [1.0] * 2 + [1.8] * 10 + [1.0] * 4 + [0.4] * 2
ORDINARY_DAY_KWH = sum(ORDINARY_KWH)  # 27.2
TET_KWH = 0.05
# After Tet: reads missing from Sun 02-22 00:00 to Wed 02-25 00:00 (72 h, between valid reads: like-day, scaled
# to the register delta), and none after Thu 02-26 12:00 (the period's tail: like-day energy, unscaled).
GAP = (local_midnight_utc_s(date(2026, 2, 22)), local_midnight_utc_s(date(2026, 2, 25)))
LAST_READ = local_midnight_utc_s(date(2026, 2, 26)) + 12 * 3600
WINDOW = PeriodWindow(first_day=date(2026, 2, 21), n_days=7)  # Sat 02-21 .. Fri 02-27


def _tet_series() -> tuple[list[int], list[float]]:
    t0 = local_midnight_utc_s(FIRST)
    tet = {day_number(d) for d in TET_2026}
    ts, values = [t0], [1000.0]
    for h in range(HOURS):
        start = t0 + h * 3600
        use = TET_KWH if local_day_number(start) in tet else ORDINARY_KWH[h % 24]
        ts.append(start + 3600)
        values.append(values[-1] + use)
    keep = [k for k, t in enumerate(ts) if not GAP[0] < t < GAP[1] and t <= LAST_READ]
    return [ts[k] for k in keep], [values[k] for k in keep]


def _readings(ts: list[int], values: list[float]) -> ReadingArrays:
    n = len(ts)
    return ReadingArrays(
        meter_id=np.full(n, 7, np.int32),
        channel_id=np.full(n, 1, np.int16),
        ts_s=np.asarray(ts, np.int64),
        value=np.asarray(values, np.float64),
        quality=np.zeros(n, np.int16),
    )


def _run(window: PeriodWindow, holidays: np.ndarray | None = None) -> VeeResult:
    ts, values = _tet_series()
    return validate_estimate(_readings(ts, values), rules=RULES, window=window, holiday_days=holidays)


def test_holiday_days_are_viet_nam_public_holidays_as_local_day_numbers() -> None:
    days = holiday_days(2026, 2026)
    assert days.dtype == np.int64 and days.flags.c_contiguous
    assert (np.diff(days) > 0).all()
    for d in [*TET_2026, date(2026, 1, 1), date(2026, 4, 30), date(2026, 9, 2)]:
        n = day_number(d)
        assert n == (d - date(1970, 1, 1)).days and n in days, d
    assert day_number(date(2026, 2, 21)) not in days and day_number(date(2026, 2, 15)) not in days
    assert holiday_days(2026, 2025).size == 0
    # validate_estimate's default: the year before the window (its history) through the window's last year
    assert default_holiday_days(WINDOW).tolist() == holiday_days(2025, 2026).tolist()


def test_like_day_estimate_of_a_day_after_tet_skips_tet() -> None:
    res = _run(WINDOW)
    day = {d: k for k, d in enumerate(WINDOW.days().astype(object))}
    sun, mon, tue, thu, fri = (day[date(2026, 2, k)] for k in (22, 23, 24, 26, 27))
    scaled = F.METHOD_HISTORICAL | F.METHOD_SCALED
    # Between reads: the 72 h delta is three ordinary days; Monday's and Tuesday's references (02-02/09 and
    # 02-03/10, not Tet's 02-16/17) have the ordinary shape, so each day gets an ordinary day, not Sunday more.
    for d in (sun, mon, tue):
        assert res.day_methods[0, d] == scaled
        assert res.n_estimated[0, d] == 24 and res.n_measured[0, d] == 0
        assert res.estimated[0, d] == pytest.approx(ORDINARY_DAY_KWH, rel=1e-9)
    # The tail after Thu 12:00: like-day energy unscaled from the Thursdays and Fridays before, without Tet's 02-19
    # and 02-20 (with them, two thirds of an ordinary day).
    assert res.day_methods[0, thu] == F.METHOD_HISTORICAL and res.day_methods[0, fri] == F.METHOD_HISTORICAL
    assert res.measured[0, thu] + res.estimated[0, thu] == pytest.approx(ORDINARY_DAY_KWH, rel=1e-9)
    assert res.estimated[0, fri] == pytest.approx(ORDINARY_DAY_KWH, rel=1e-9)
    assert res.n_estimated[0, fri] == 24


def test_without_holidays_tet_is_the_reference() -> None:
    """The same series with no holidays given: the pre-holiday behaviour, Tet's low days pull the estimates down."""
    res = _run(WINDOW, np.zeros(0, np.int64))
    fri = WINDOW.n_days - 1
    assert res.estimated[0, fri] == pytest.approx((2 * ORDINARY_DAY_KWH + 24 * TET_KWH) / 3, rel=1e-9)
    sun, mon = 1, 2
    assert res.estimated[0, sun] > res.estimated[0, mon] + 1.0


def test_tet_days_are_still_validated_and_measured() -> None:
    window = PeriodWindow(first_day=date(2026, 2, 14), n_days=7)  # Sat 02-14 .. Fri 02-20
    res = _run(window)
    tet = slice(2, 7)
    assert res.n_measured[0, tet].tolist() == [24] * 5 and res.n_estimated[0, tet].tolist() == [0] * 5
    np.testing.assert_allclose(res.measured[0, tet], 24 * TET_KWH, rtol=1e-9)
    assert res.measured[0, 0] == pytest.approx(ORDINARY_DAY_KWH, rel=1e-9)
    assert not (res.reading_flags & ~np.uint32(F.GAP)).any()  # only the later gap's closing read has a flag


@pytest.mark.parametrize("holidays", [True, False])
def test_kernel_matches_twin_around_tet(holidays: bool) -> None:
    days = default_holiday_days(WINDOW) if holidays else np.zeros(0, np.int64)
    ts, values = _tet_series()
    res = validate_estimate(_readings(ts, values), rules=RULES, window=WINDOW, holiday_days=days)
    twin = twin_series(
        ts,
        values,
        [0] * len(ts),
        modulus=1e6,
        rules=RULES,
        day0=WINDOW.day0_s,
        n_days=WINDOW.n_days,
        end_s=WINDOW.end_s,
        holidays=days.tolist(),
    )
    assert res.reading_flags.tolist() == twin.flags
    assert res.series_flags[0] == twin.series_flags
    for d in range(WINDOW.n_days):
        assert res.measured[0, d] == pytest.approx(twin.measured.get(d, 0.0), rel=1e-9, abs=1e-9)
        assert res.estimated[0, d] == pytest.approx(twin.estimated.get(d, 0.0), rel=1e-9, abs=1e-9)
        assert res.n_estimated[0, d] == twin.n_est.get(d, 0)
        assert res.day_methods[0, d] == twin.methods.get(d, 0)
        assert res.day_flags[0, d] == twin.day_flags.get(d, 0), d


def test_validate_estimate_refuses_bad_holiday_days() -> None:
    ts, values = _tet_series()
    r = _readings(ts, values)
    days = default_holiday_days(WINDOW)
    with pytest.raises(VeeInputError, match="holiday_days: dtype float64"):
        validate_estimate(r, rules=RULES, window=WINDOW, holiday_days=days.astype(np.float64))
    with pytest.raises(VeeInputError, match="strictly ascending"):
        validate_estimate(r, rules=RULES, window=WINDOW, holiday_days=np.repeat(days, 2))
    with pytest.raises(VeeInputError, match="holiday_days: not C-contiguous"):
        validate_estimate(r, rules=RULES, window=WINDOW, holiday_days=np.repeat(days, 2)[::2])
