"""Interval-level validated results (billing.intervals): named cases on a 30-min profile series, the daily results
they must add up to, and the numba kernel against its plain-Python twin (tests/billing/interval_twin.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings

from amr.obis import STATUS_BITS
from amr.timebase import DAY_S, LOCAL_UTC_OFFSET_S, local_midnight_utc_s
from billing import flags as F
from billing.intervals import IntervalResults, IntervalSeries, interval_results, slot_quality
from billing.kernels import VeeInputError
from billing.rules import kernel_thresholds, read_vee_rules
from billing.synthetic import register_reads
from billing.vee import PeriodWindow, ReadingArrays, VeeResult, default_holiday_days, validate_estimate
from tests.billing.interval_twin import twin_intervals
from tests.billing.test_kernels import DAY0, HOLIDAYS, WINDOW, series

RULES = read_vee_rules()
THRESHOLDS = kernel_thresholds(RULES)
HALF_HOUR = 1800
PWINDOW = PeriodWindow(first_day=date(2026, 9, 1), n_days=14)
PHOLIDAYS = default_holiday_days(PWINDOW)


def _at(day: date, hh: int, mm: int = 0) -> int:
    return local_midnight_utc_s(day) + hh * 3600 + mm * 60


def _profile_reads(seed: int = 3) -> ReadingArrays:
    """Meter 7, channel 1, a read every 30 min from 2026-08-20 (12 history days) to the window's end."""
    return register_reads(meter_ids=np.array([7]), first_day=date(2026, 8, 20), n_days=26, interval_s=HALF_HOUR,
                          kwh_per_day=np.array([15.0]), rng=np.random.default_rng(seed))  # fmt: skip


def _run(
    r: ReadingArrays, window: PeriodWindow = PWINDOW, holidays: np.ndarray = PHOLIDAYS
) -> tuple[VeeResult, IntervalResults]:
    vee = validate_estimate(r, rules=RULES, window=window, meter_ids=np.array([7], np.int32),
                            register_digits=np.array([6]), holiday_days=holidays)  # fmt: skip
    n = vee.series_meter.shape[0]
    s = IntervalSeries(
        meter_id=vee.series_meter,
        channel_id=vee.series_channel,
        interval_s=vee.series_interval_s,
        modulus=np.full(n, 1e6),
        from_s=np.full(n, window.day0_s, np.int64),
        to_s=np.full(n, window.end_s, np.int64),
    )
    return vee, interval_results(r, vee.reading_flags, s, thresholds=THRESHOLDS, holiday_days=holidays)


def _slot(res: IntervalResults, end_s: int) -> int:
    k = int(np.flatnonzero(res.interval_end_s == end_s)[0])
    return k


def _day_sums(res: IntervalResults, window: PeriodWindow) -> np.ndarray:
    day = (res.interval_end_s - 1 - window.day0_s) // DAY_S
    return np.bincount(day, weights=res.energy, minlength=window.n_days)


def _value_at(r: ReadingArrays, t: int) -> float:
    return float(r.value[int(np.flatnonzero(r.ts_s == t)[0])])


def test_gaps_are_estimated_and_add_up_to_the_register_difference() -> None:
    r = _profile_reads()
    day = date(2026, 9, 5)
    short = (r.ts_s > _at(day, 10)) & (r.ts_s < _at(day, 13))  # 3 h: 6 slots, linear interpolation
    long_ = (r.ts_s > _at(day, 15)) & (r.ts_s < _at(day, 21))  # 6 h: 12 slots, like-day shape
    kept = r.take(~(short | long_))
    vee, res = _run(kept)
    quality, method = slot_quality(res.n_measured, res.n_estimated, res.methods)
    for a, b, aemo in ((_at(day, 10), _at(day, 13), 17), (_at(day, 15), _at(day, 21), 14)):
        ks = [_slot(res, e) for e in range(a + HALF_HOUR, b + 1, HALF_HOUR)]
        assert len(ks) == (b - a) // HALF_HOUR
        assert set(quality[ks]) == {"S"} and set(method[ks]) == {aemo}
        assert res.n_measured[ks].sum() == 0
        assert res.energy[ks].sum() == pytest.approx(_value_at(kept, b) - _value_at(kept, a), rel=1e-12)
    # the like-day estimate has the profile's shape, not a straight line
    like = res.energy[[_slot(res, e) for e in range(_at(day, 15, 30), _at(day, 21) + 1, HALF_HOUR)]]
    assert like.std() > 0.05 * like.mean()
    # every other slot of the window is an actual: the register difference of its two reads
    actual = quality == "A"
    assert actual.sum() == PWINDOW.n_days * 48 - 18
    k = _slot(res, _at(date(2026, 9, 3), 8))
    assert res.energy[k] == pytest.approx(
        _value_at(kept, _at(date(2026, 9, 3), 8)) - _value_at(kept, _at(date(2026, 9, 3), 7, 30))
    )
    # a day's slots add up to the day's measured + estimated energy of the daily results
    np.testing.assert_allclose(_day_sums(res, PWINDOW), vee.measured[0] + vee.estimated[0], rtol=1e-12, atol=1e-9)


def test_a_spike_and_an_invalid_read_are_not_actuals() -> None:
    r = _profile_reads()
    spike_t, invalid_t = _at(date(2026, 9, 8), 19), _at(date(2026, 9, 9), 3)
    value, quality = r.value.copy(), r.quality.copy()
    value[r.ts_s == spike_t] += 5000.0  # the register comes back down at the next read: a bad read
    quality[r.ts_s == invalid_t] = STATUS_BITS["DATA_NOT_VALID"]
    bad = ReadingArrays(meter_id=r.meter_id, channel_id=r.channel_id, ts_s=r.ts_s, value=value, quality=quality)
    vee, res = _run(bad)
    assert vee.reading_flags[r.ts_s == spike_t][0] & F.SPIKE
    assert vee.reading_flags[r.ts_s == invalid_t][0] & F.STATUS_INVALID
    quality_code, method = slot_quality(res.n_measured, res.n_estimated, res.methods)
    for t in (spike_t, invalid_t):
        for end in (t, t + HALF_HOUR):  # the bad read's slot and the next: one gap between valid reads
            k = _slot(res, end)
            assert quality_code[k] == "S" and method[k] == 17 and res.n_measured[k] == 0
        both = res.energy[[_slot(res, t), _slot(res, t + HALF_HOUR)]].sum()
        assert both == pytest.approx(_value_at(r, t + HALF_HOUR) - _value_at(r, t - HALF_HOUR), rel=1e-12)
        assert res.energy[_slot(res, t)] < 100.0  # not the spike's 5000 kWh
    np.testing.assert_allclose(_day_sums(res, PWINDOW), vee.measured[0] + vee.estimated[0], rtol=1e-12, atol=1e-9)


def test_an_open_gap_is_not_written() -> None:
    r = _profile_reads()
    last = _at(date(2026, 9, 13), 12)
    vee, res = _run(r.take(r.ts_s <= last))
    written = (res.n_measured + res.n_estimated) > 0
    assert written[res.interval_end_s <= last].all()
    assert not written[res.interval_end_s > last].any()
    assert vee.estimated[0, -2:].sum() > 0  # the daily results estimate the tail (E): the slots do not


def test_a_meter_replacement_is_a_flat_forward_estimate() -> None:
    r = _profile_reads()
    t = _at(date(2026, 9, 6), 9)
    value = r.value.copy()
    value[r.ts_s >= t] = value[r.ts_s >= t] - value[r.ts_s == t][0] + 0.5  # a new register from 0.5 kWh
    vee, res = _run(ReadingArrays(meter_id=r.meter_id, channel_id=r.channel_id, ts_s=r.ts_s, value=value,
                                  quality=r.quality))  # fmt: skip
    assert vee.reading_flags[r.ts_s == t][0] & F.REPLACEMENT
    quality, method = slot_quality(res.n_measured, res.n_estimated, res.methods)
    k = _slot(res, t)
    assert (quality[k], method[k]) == ("E", 25)
    np.testing.assert_allclose(_day_sums(res, PWINDOW), vee.measured[0] + vee.estimated[0], rtol=1e-12, atol=1e-9)


def test_the_wrapper_refuses_what_the_kernel_cannot_take() -> None:
    r = _profile_reads()
    vee, _ = _run(r)
    s = IntervalSeries(meter_id=vee.series_meter, channel_id=vee.series_channel, interval_s=vee.series_interval_s,
                       modulus=np.full(1, 1e6), from_s=np.full(1, PWINDOW.day0_s, np.int64),
                       to_s=np.full(1, PWINDOW.end_s, np.int64))  # fmt: skip
    with pytest.raises(VeeInputError, match="reading_flags"):
        interval_results(r, vee.reading_flags.astype(np.int64), s, thresholds=THRESHOLDS, holiday_days=PHOLIDAYS)
    other = IntervalSeries(**{**s.__dict__, "meter_id": np.full(1, 8, np.int32)})
    with pytest.raises(VeeInputError, match="one entry per series"):
        interval_results(r, vee.reading_flags, other, thresholds=THRESHOLDS, holiday_days=PHOLIDAYS)
    daily = IntervalSeries(**{**s.__dict__, "interval_s": np.full(1, DAY_S, np.int64)})
    with pytest.raises(VeeInputError, match="divide a day"):
        interval_results(r, vee.reading_flags, daily, thresholds=THRESHOLDS, holiday_days=PHOLIDAYS)
    off_grid = IntervalSeries(**{**s.__dict__, "from_s": s.from_s + 60, "to_s": s.to_s + 60})
    with pytest.raises(VeeInputError, match="grid"):
        interval_results(r, vee.reading_flags, off_grid, thresholds=THRESHOLDS, holiday_days=PHOLIDAYS)


@given(series())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_interval_kernel_matches_python_twin(data: tuple[list[int], list[float], list[int], int]) -> None:
    """test_kernels' random series (gaps, duplicates, negative reads, spikes, replacements, bad status, jitter) at
    an hourly interval: the kernel on the validation kernel's flags against the twin on the twin's validation."""
    ts, values, quality, digits = data
    n = len(ts)
    r = ReadingArrays(meter_id=np.full(n, 42, np.int32), channel_id=np.full(n, 1, np.int16),
                      ts_s=np.asarray(ts, np.int64), value=np.asarray(values, np.float64),
                      quality=np.asarray(quality, np.int16))  # fmt: skip
    vee = validate_estimate(r, rules=RULES, window=WINDOW, meter_ids=np.array([42], np.int32),
                            register_digits=np.array([digits]), holiday_days=HOLIDAYS)  # fmt: skip
    assume(vee.series_interval_s.shape[0] == 1 and vee.series_interval_s[0] < DAY_S)
    from_s, to_s = DAY0 - 2 * DAY_S, WINDOW.end_s
    s = IntervalSeries(meter_id=vee.series_meter, channel_id=vee.series_channel, interval_s=vee.series_interval_s,
                       modulus=np.full(1, 10.0**digits), from_s=np.full(1, from_s, np.int64),
                       to_s=np.full(1, to_s, np.int64))  # fmt: skip
    res = interval_results(r, vee.reading_flags, s, thresholds=THRESHOLDS, holiday_days=HOLIDAYS)
    interval, twin = twin_intervals(ts, values, quality, modulus=10.0**digits, rules=RULES, day0=DAY0,
                                    from_s=from_s, to_s=to_s, holidays=HOLIDAYS.tolist())  # fmt: skip
    assert interval == vee.series_interval_s[0]
    written = (res.n_measured + res.n_estimated) > 0
    assert sorted(twin) == res.interval_end_s[written].tolist()
    for k in np.flatnonzero(written):
        energy, n_meas, n_est, methods = twin[int(res.interval_end_s[k])]
        assert res.energy[k] == pytest.approx(energy, rel=1e-9, abs=1e-6)
        assert (res.n_measured[k], res.n_estimated[k], res.methods[k]) == (n_meas, n_est, methods)


def test_slot_times_are_the_local_grid() -> None:
    _, res = _run(_profile_reads())
    ends = [datetime.fromtimestamp(int(e) + LOCAL_UTC_OFFSET_S, tz=UTC) for e in res.interval_end_s[:3]]
    assert [e.strftime("%H:%M") for e in ends] == ["00:30", "01:00", "01:30"]
    assert res.interval_end_s[-1] == PWINDOW.end_s
    assert timedelta(seconds=int(np.diff(res.interval_end_s).max())) == timedelta(minutes=30)
