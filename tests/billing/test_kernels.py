"""The numba VEE kernels against the plain-Python twin on random series, and on named cases."""

from __future__ import annotations

import math
from datetime import date

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amr.obis import STATUS_BITS
from amr.timebase import DAY_S
from billing import flags as F
from billing import kernels as K
from billing.rules import kernel_thresholds, read_vee_rules
from billing.synthetic import register_reads
from billing.vee import (
    PeriodWindow,
    ReadingArrays,
    VeeInputError,
    VeeResult,
    default_holiday_days,
    validate_estimate,
)
from tests.billing.twin import TwinValidation, twin_days, twin_series, twin_tou_sum, twin_validate

RULES = read_vee_rules()
THRESHOLDS = kernel_thresholds(RULES)
ALLOWED_S = np.asarray(RULES.interval.allowed_s, np.int64)
WINDOW = PeriodWindow(first_day=date(2026, 9, 1), n_days=10)
DAY0 = WINDOW.day0_s
# what validate_estimate skips by default: Viet Nam's holidays, here 2026-08-31 (a day off) and 09-01/02 (National
# Day) among the random series' days, so the kernel-twin tests cover the like-day profile without them
HOLIDAYS = default_holiday_days(WINDOW)


def _one_series(
    ts: list[int], values: list[float], quality: list[int] | None = None, *, channel: int = 1, digits: int = 6
) -> ReadingArrays:
    n = len(ts)
    return ReadingArrays(
        meter_id=np.full(n, 42, np.int32),
        channel_id=np.full(n, channel, np.int16),
        ts_s=np.asarray(ts, np.int64),
        value=np.asarray(values, np.float64),
        quality=np.asarray(quality or [0] * n, np.int16),
    )


def _run(ts: list[int], values: list[float], quality: list[int] | None = None, digits: int = 6) -> VeeResult:
    r = _one_series(ts, values, quality)
    return validate_estimate(
        r, rules=RULES, window=WINDOW, meter_ids=np.array([42], np.int32), register_digits=np.array([digits])
    )


@st.composite
def series(draw: st.DrawFn) -> tuple[list[int], list[float], list[int], int]:
    interval = draw(st.sampled_from([3600, DAY_S]))
    digits = draw(st.sampled_from([4, 6]))
    modulus = 10.0**digits
    span_days = 10 + 5  # 5 history days before the window
    n = span_days * DAY_S // interval + 1
    t0 = DAY0 - 5 * DAY_S
    rate = draw(st.floats(0.0, 3.0 if interval == 3600 else 60.0))
    value = draw(st.floats(0, modulus - 1)) // 1
    ts, values, quality = [], [], []
    i = 0
    while i < n:
        t = t0 + i * interval
        action = draw(
            st.sampled_from(
                ["ok"] * 12 + ["skip", "skip_run", "dup", "neg", "spike", "repl", "flat", "status", "jitter"]
            )
        )
        inc = round(rate * draw(st.floats(0.0, 2.0)), 2)
        if action == "skip":
            value = (value + inc) % modulus
            i += 1
            continue
        if action == "skip_run":
            k = draw(st.integers(2, 12))
            value = (value + inc * k) % modulus
            i += k
            continue
        if action == "flat":
            for _ in range(draw(st.integers(2, 60))):
                if i >= n:
                    break
                ts.append(t0 + i * interval)
                values.append(value)
                quality.append(0)
                i += 1
            continue
        value = (value + inc) % modulus
        v = value
        q = 0
        if action == "neg":
            v = max(value - draw(st.floats(1, 500)), 0.0)
        elif action == "spike":
            v = value + draw(st.floats(100, 5000))
        elif action == "repl":
            value = draw(st.floats(0, 50)) // 1
            v = value
        elif action == "status":
            q = draw(st.sampled_from(list(STATUS_BITS.values())))
        elif action == "jitter":
            t += draw(st.integers(-600, 600))
        ts.append(t)
        values.append(round(v, 2))
        quality.append(q)
        if action == "dup":
            ts.append(t)
            values.append(round(v + draw(st.floats(0, 5)), 2))
            quality.append(0)
        i += 1
    order = sorted(range(len(ts)), key=lambda k: ts[k])  # jitter may reorder neighbours
    return [ts[k] for k in order], [values[k] for k in order], [quality[k] for k in order], digits


@given(series())
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_kernel_matches_python_twin(data: tuple[list[int], list[float], list[int], int]) -> None:
    ts, values, quality, digits = data
    if not ts:
        return
    res = _run(ts, values, quality, digits)
    twin = twin_series(
        ts,
        values,
        quality,
        modulus=10.0**digits,
        rules=RULES,
        day0=DAY0,
        n_days=WINDOW.n_days,
        end_s=WINDOW.end_s,
        holidays=HOLIDAYS.tolist(),
    )
    assert res.series_interval_s[0] == twin.interval
    assert res.reading_flags.tolist() == twin.flags
    assert res.series_flags[0] == twin.series_flags
    if math.isnan(twin.hist):
        assert math.isnan(res.hist_kwh_per_day[0])
    else:
        assert res.hist_kwh_per_day[0] == pytest.approx(twin.hist, rel=1e-9, abs=1e-9)
    for d in range(WINDOW.n_days):
        assert res.measured[0, d] == pytest.approx(twin.measured.get(d, 0.0), rel=1e-9, abs=1e-6)
        assert res.estimated[0, d] == pytest.approx(twin.estimated.get(d, 0.0), rel=1e-9, abs=1e-6)
        assert res.n_measured[0, d] == twin.n_meas.get(d, 0)
        assert res.n_estimated[0, d] == twin.n_est.get(d, 0)
        assert res.day_methods[0, d] == twin.methods.get(d, 0)
        assert res.day_flags[0, d] == twin.day_flags.get(d, 0), (
            d,
            F.flag_codes(int(res.day_flags[0, d])),
            F.flag_codes(twin.day_flags.get(d, 0)),
        )


@given(series())
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_each_kernel_pass_matches_its_twin(data: tuple[list[int], list[float], list[int], int]) -> None:
    """The validation and the daily aggregation kernels, each through its public wrapper, against the twin's pass
    on the same input: the validation on the reads; the aggregation (kernel and twin) on the kernel's validation."""
    ts, values, quality, digits = data
    if not ts:
        return
    ts_s = np.asarray(ts, np.int64)
    val = K.validate_series(
        ts_s,
        np.asarray(values, np.float64),
        np.asarray(quality, np.int16),
        modulus=10.0**digits,
        thresholds=THRESHOLDS,
        allowed_s=ALLOWED_S,
        day0_s=DAY0,
        holiday_days=HOLIDAYS,
    )
    twin = twin_validate(ts, values, quality, modulus=10.0**digits, rules=RULES, day0=DAY0)
    assert val.profile.interval_s == twin.interval
    assert val.verdicts.flags.tolist() == twin.flags
    assert val.verdicts.start_s.tolist() == twin.start
    # the same float operations in the same order: equal, not approximately (NaN where the read is not valid)
    np.testing.assert_array_equal(val.verdicts.delta_kwh, np.asarray(twin.delta, np.float64))
    assert val.first_valid_s == twin.first_valid
    if twin.state is None:
        assert val.state_s == -1
    else:
        assert (val.state_s, *val.state.tolist()) == pytest.approx(twin.state, rel=0, abs=0, nan_ok=True)
    if math.isnan(twin.hist):
        assert math.isnan(val.hist_kwh_per_day)
    else:
        assert val.hist_kwh_per_day == pytest.approx(twin.hist, rel=1e-9, abs=1e-9)

    flags_before = val.verdicts.flags.copy()
    got = K.aggregate_series(
        ts_s, val, thresholds=THRESHOLDS, day0_s=DAY0, n_days=WINDOW.n_days, period_end_s=WINDOW.end_s
    )
    same = TwinValidation(
        interval=val.profile.interval_s,
        flags=val.verdicts.flags.tolist(),
        start=val.verdicts.start_s.tolist(),
        delta=val.verdicts.delta_kwh.tolist(),
        hist=val.hist_kwh_per_day,
        first_valid=val.first_valid_s,
    )
    want = twin_days(
        ts, same, rules=RULES, day0=DAY0, n_days=WINDOW.n_days, end_s=WINDOW.end_s, holidays=HOLIDAYS.tolist()
    )
    np.testing.assert_array_equal(val.verdicts.flags, flags_before)  # the wrapper leaves its input alone
    assert got.flags.tolist() == want.flags
    assert got.series_flags == want.series_flags
    assert got.last_valid_s == want.last_valid
    days = got.days
    for d in range(WINDOW.n_days):
        assert days.measured_kwh[0, d] == pytest.approx(want.measured.get(d, 0.0), rel=1e-9, abs=1e-6)
        assert days.estimated_kwh[0, d] == pytest.approx(want.estimated.get(d, 0.0), rel=1e-9, abs=1e-6)
        assert days.n_measured[0, d] == want.n_meas.get(d, 0)
        assert days.n_estimated[0, d] == want.n_est.get(d, 0)
        assert days.methods[0, d] == want.methods.get(d, 0)
        assert days.flags[0, d] == want.day_flags.get(d, 0), d


@given(series(), st.integers(1, 14))
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
def test_a_series_resumed_from_its_state_is_validated_as_in_one_run(
    data: tuple[list[int], list[float], list[int], int], split_day: int
) -> None:
    """Validated up to a local midnight, then resumed from the state it left (its read at that midnight and the
    seed) with only the later reads: every later read gets the verdict of one run over all the reads, and the
    state after them is the same. This is what lets a VEE pass read a day's readings without their history."""
    ts, values, quality, digits = data
    kw = {"modulus": 10.0**digits, "thresholds": THRESHOLDS, "allowed_s": ALLOWED_S, "day0_s": DAY0,
          "holiday_days": HOLIDAYS}  # fmt: skip
    ts_s, value, q = np.asarray(ts, np.int64), np.asarray(values, np.float64), np.asarray(quality, np.int16)
    whole = K.validate_series(ts_s, value, q, **kw)  # type: ignore[arg-type]
    cut = DAY0 - 5 * DAY_S + split_day * DAY_S
    head = ts_s <= cut
    first = K.validate_series(ts_s[head], value[head], q[head], **kw)  # type: ignore[arg-type]
    if first.state_s < 0:
        return  # no valid read at a midnight up to the cut: nothing to resume from
    c = first.state_s
    rest = ts_s > c
    seed_kwh, rate, zero_since, avg = first.state.tolist()
    resumed = K.validate_series(
        np.r_[c, ts_s[rest]], np.r_[seed_kwh, value[rest]], np.r_[np.int16(0), q[rest]],
        seed_rate=rate, seed_zero_since_s=int(zero_since), seed_avg_kwh_per_day=avg, **kw,  # type: ignore[arg-type]
    )  # fmt: skip
    if resumed.profile.interval_s != whole.profile.interval_s:
        return  # too few reads after the cut to tell the interval: the pass takes it from the state's day too
    np.testing.assert_array_equal(resumed.verdicts.flags[1:], whole.verdicts.flags[rest])
    np.testing.assert_array_equal(resumed.verdicts.start_s[1:], whole.verdicts.start_s[rest])
    np.testing.assert_array_equal(resumed.verdicts.delta_kwh[1:], whole.verdicts.delta_kwh[rest])
    if resumed.state_s >= 0:
        assert resumed.state_s == whole.state_s
        np.testing.assert_array_equal(resumed.state, whole.state)
    else:
        assert whole.state_s == c


def test_series_wrappers_refuse_what_the_kernels_cannot_take() -> None:
    ts = np.array([DAY0, DAY0 + DAY_S, DAY0 + 2 * DAY_S], np.int64)
    value = np.array([1.0, 2.0, 3.0])
    quality = np.zeros(3, np.int16)
    kw = {"modulus": 1e6, "thresholds": THRESHOLDS, "allowed_s": ALLOWED_S, "day0_s": DAY0, "holiday_days": HOLIDAYS}
    with pytest.raises(VeeInputError, match="ts_s: dtype float64, expected int64"):
        K.validate_series(ts.astype(np.float64), value, quality, **kw)  # type: ignore[arg-type]
    with pytest.raises(VeeInputError, match="quality: length 2, expected 3"):
        K.validate_series(ts, value, quality[:2], **kw)  # type: ignore[arg-type]
    with pytest.raises(VeeInputError, match="value: not C-contiguous"):
        K.validate_series(ts, np.repeat(value, 2)[::2], quality, **kw)  # type: ignore[arg-type]
    with pytest.raises(VeeInputError, match="sorted"):
        K.validate_series(ts[::-1].copy(), value, quality, **kw)  # type: ignore[arg-type]
    with pytest.raises(VeeInputError, match="allowed_s: at least one"):
        K.validate_series(ts, value, quality, **(kw | {"allowed_s": np.zeros(0, np.int64)}))  # type: ignore[arg-type]
    with pytest.raises(VeeInputError, match="holiday_days: dtype int32"):
        K.validate_series(ts, value, quality, **(kw | {"holiday_days": HOLIDAYS.astype(np.int32)}))  # type: ignore[arg-type]
    with pytest.raises(VeeInputError, match="holiday_days: local day numbers must be strictly ascending"):
        K.validate_series(ts, value, quality, **(kw | {"holiday_days": HOLIDAYS[::-1].copy()}))  # type: ignore[arg-type]
    val = K.validate_series(ts, value, quality, **kw)  # type: ignore[arg-type]
    assert val.profile.interval_s == DAY_S and val.verdicts.delta_kwh[1:].tolist() == [1.0, 1.0]
    end = DAY0 + 2 * DAY_S
    with pytest.raises(VeeInputError, match="flags: length 3, expected 2"):
        K.aggregate_series(ts[:2], val, thresholds=THRESHOLDS, day0_s=DAY0, n_days=2, period_end_s=end)
    with pytest.raises(VeeInputError, match="n_days"):
        K.aggregate_series(ts, val, thresholds=THRESHOLDS, day0_s=DAY0, n_days=0, period_end_s=end)
    got = K.aggregate_series(ts, val, thresholds=THRESHOLDS, day0_s=DAY0, n_days=2, period_end_s=end)
    assert got.days.measured_kwh.tolist() == [[1.0, 1.0]] and got.series_flags == 0


@given(
    st.lists(st.tuples(st.floats(0, 50), st.floats(0, 20), st.floats(0, 20), st.floats(0, 20)), min_size=1, max_size=10)
)
@settings(max_examples=60, deadline=None)
def test_tou_sum_matches_twin(days: list[tuple[float, float, float, float]]) -> None:
    n = len(days) + 1
    ts = [DAY0 + k * DAY_S for k in range(n)]
    series = []
    for ch in range(4):
        cum = [1000.0]
        for d in days:
            cum.append(round(cum[-1] + d[ch], 3))
        series.append(_one_series(ts, cum, channel=ch + 1))
    r = ReadingArrays(
        **{
            k: np.concatenate([getattr(s, k) for s in series])
            for k in ("meter_id", "channel_id", "ts_s", "value", "quality")
        }
    )
    window = PeriodWindow(first_day=WINDOW.first_day, n_days=len(days))
    res = validate_estimate(r, rules=RULES, window=window)
    got = [(int(f) & F.TOU_SUM) != 0 for f in res.day_flags[res.series_index(42, 1)]]
    per_day: list[list[float | None]] = [
        [float(res.measured[res.series_index(42, ch), d]) for d in range(len(days))] for ch in (1, 2, 3, 4)
    ]
    want = twin_tou_sum(
        per_day[0], per_day[1:], tol_kwh=RULES.tou_sum.tolerance_kwh, tol_ratio=RULES.tou_sum.tolerance_ratio
    )
    assert got == want


def _daily(values: list[float], start: int = -3) -> tuple[list[int], list[float]]:
    return [DAY0 + (start + k) * DAY_S for k in range(len(values))], values


def test_rollover_replacement_and_negative_are_told_apart() -> None:
    ts, values = _daily([999_960.0, 999_980.0, 999_995.0, 8.0, 30.0, 51.0, 12.0, 125.0, 238.0, 200.0, 251.0, 270.0])
    res = _run(ts, values)
    f = res.reading_flags
    assert f[3] & F.ROLLOVER and not f[3] & (F.NEGATIVE | F.REPLACEMENT)
    assert f[6] & F.REPLACEMENT  # 51 -> 12: a new meter counting from near zero
    assert f[9] & F.NEGATIVE  # 238 -> 200: backwards, neither near the dial count nor near zero ...
    assert f[10] == 0  # ... and the next read is judged against the last valid one (238)
    # rollover energy counts: 999,995 -> 8 is 13 kWh on the day before 2026-09-01 ... and the series goes on
    assert res.measured[0, 0] == pytest.approx(22.0)  # 8 -> 30


def test_big_backwards_jump_is_negative_not_replacement() -> None:
    ts, values = _daily([5000.0, 5010.0, 5020.0, 4000.0, 5030.0, 5040.0])
    f = _run(ts, values).reading_flags
    assert f[3] & F.NEGATIVE and not f[3] & (F.ROLLOVER | F.REPLACEMENT)
    assert f[4] == 0


def test_short_gap_interpolated_long_gap_like_day_and_scaled() -> None:
    # hourly reads, 1 kWh/h; two reads missing (3 h span): linear; 10 missing: like-day, scaled to 11 kWh
    ts = [DAY0 + h * 3600 for h in range(-48, 48)]
    values = [1000.0 + k for k in range(len(ts))]
    drop = {50, 51} | set(range(74, 84))  # index 48 is the window start; day 1 holds ends 73..96
    ts = [t for k, t in enumerate(ts) if k not in drop]
    values = [v for k, v in enumerate(values) if k not in drop]
    res = _run(ts, values)
    day0, day1 = res.estimated[0, 0], res.estimated[0, 1]
    assert day0 == pytest.approx(3.0) and res.day_methods[0, 0] == F.METHOD_LINEAR | F.METHOD_SCALED
    assert day1 == pytest.approx(11.0) and res.day_methods[0, 1] == F.METHOD_HISTORICAL | F.METHOD_SCALED
    assert res.measured[0, 0] + day0 == pytest.approx(24.0)


def test_gap_over_the_maximum_is_an_exception_not_an_estimate() -> None:
    ts, values = _daily([100.0, 110.0, 120.0, 130.0, 240.0, 250.0])
    ts[4] = ts[3] + 11 * DAY_S  # 11 days without a read (maximum 8)
    ts[5] = ts[4] + DAY_S
    res = _run(ts, values)
    assert res.reading_flags[4] & F.GAP_TOO_LONG
    assert res.estimated.sum() == 0
    assert "GAP_TOO_LONG" in set(res.exceptions["rule"])


def test_spike_bad_read_is_dropped_real_jump_is_kept() -> None:
    ts, values = _daily([100.0, 110.0, 120.0, 5000.0, 130.0, 140.0, 150.0, 5150.0, 5160.0])
    res = _run(ts, values)
    f = res.reading_flags
    assert f[3] & F.SPIKE  # 120 -> 5000 -> 130: a bad read, not used ...
    assert f[4] == 0  # ... the next read is judged against 120: a normal day
    assert res.estimated[0, 0] > 0  # the two days around the bad read are spread like-day
    assert f[7] & F.SPIKE  # 150 -> 5150 and the register stays up: real energy, kept and flagged
    assert res.measured[0, 3] == pytest.approx(5000.0)


def test_spike_held_over_two_reads_is_dropped() -> None:
    # A meter glitch that holds for two reads: both are bad, and the reads after it are not negative.
    ts, values = _daily([100.0, 110.0, 120.0, 5000.0, 5001.0, 130.0, 140.0, 150.0])
    res = _run(ts, values)
    f = res.reading_flags
    assert f[3] & F.SPIKE and f[4] & F.SPIKE
    assert not any(int(x) & F.NEGATIVE for x in f)
    assert f[5] == 0 and f[6] == 0


def test_flat_line_and_zero_use() -> None:
    ts, values = _daily([100.0, 110.0, 120.0, 130.0] + [140.0] * 6 + [150.0])
    res = _run(ts, values)
    assert res.reading_flags[6] & F.FLAT_LINE and not res.reading_flags[5] & F.FLAT_LINE  # 2 days unchanged
    zero_days = [d for d in range(WINDOW.n_days) if res.day_flags[0, d] & F.ZERO_USE]
    assert zero_days == [3, 4, 5]  # zero from day 1; the third zero day is day 3


def test_status_bits_and_clock_drift() -> None:
    ts, values = _daily([100.0, 110.0, 120.0, 130.0, 140.0, 150.0])
    quality = [0, 0, 0, 0, STATUS_BITS["DATA_NOT_VALID"], STATUS_BITS["POWER_DOWN"]]
    energy = _one_series(ts, values, quality)
    clock = _one_series([DAY0 + 3600, DAY0 + DAY_S + 3600], [45.0, 900.0], channel=20)
    r = ReadingArrays(
        **{
            k: np.concatenate([getattr(energy, k), getattr(clock, k)])
            for k in ("meter_id", "channel_id", "ts_s", "value", "quality")
        }
    )
    res = validate_estimate(r, rules=RULES, window=WINDOW)
    assert res.reading_flags[4] & F.STATUS_INVALID and res.reading_flags[5] & F.STATUS_WARN
    assert res.day_flags[0, 0] & F.CLOCK_SUSPECT and res.day_flags[0, 1] & F.CLOCK_INVALID
    rules = res.exceptions.groupby("rule").size().to_dict()
    assert rules["CLOCK_SUSPECT"] == 1 and rules["CLOCK_INVALID"] == 1 and rules["STATUS_INVALID"] == 1


def test_wrapper_refuses_unsorted_and_wrong_dtypes() -> None:
    r = _one_series([DAY0 + 10, DAY0], [1.0, 2.0])
    with pytest.raises(VeeInputError, match="sorted"):
        validate_estimate(r, rules=RULES, window=WINDOW)
    bad = ReadingArrays(
        meter_id=r.meter_id, channel_id=r.channel_id, ts_s=r.ts_s.astype(np.float64), value=r.value, quality=r.quality
    )
    with pytest.raises(VeeInputError, match="ts_s: dtype float64"):
        validate_estimate(bad, rules=RULES, window=WINDOW)


def test_chunk_series_partitions_every_series_once() -> None:
    for n_series in (0, 1, 5, K.VEE_CHUNKS - 1, K.VEE_CHUNKS, K.VEE_CHUNKS + 1, 1000):
        bounds = [K.chunk_series(n_series, K.VEE_CHUNKS, c) for c in range(K.VEE_CHUNKS)]
        covered = [s for first, end in bounds for s in range(first, end)]
        assert covered == list(range(n_series)), n_series


def _many_series(n_meters: int, seed: int) -> ReadingArrays:
    """Hourly reads of n_meters meters with gaps, spikes, negatives and bad status: more series than VEE_CHUNKS."""
    rng = np.random.default_rng(seed)
    r = register_reads(
        meter_ids=np.arange(1, n_meters + 1, dtype=np.int32),
        first_day=date(2026, 8, 27),
        n_days=15,
        interval_s=3600,
        kwh_per_day=rng.uniform(2, 40, n_meters),
        rng=rng,
        tou=True,
        digits=5,
    )
    r = r.take(rng.random(len(r)) > 0.01)
    value, quality = r.value.copy(), r.quality.copy()
    k = rng.random(len(r))
    value[k < 0.002] += 3000.0
    value[(k > 0.5) & (k < 0.502)] -= 300.0
    quality[(k > 0.7) & (k < 0.703)] = STATUS_BITS["DATA_NOT_VALID"]
    return ReadingArrays(meter_id=r.meter_id, channel_id=r.channel_id, ts_s=r.ts_s, value=value, quality=quality)


def test_exception_rows_and_reading_flags_from_the_kernel_records() -> None:
    """The kernel keeps only flagged reads (per chunk of series); reading_flags and the reading exception rows built
    from those records match a plain rebuild from full-length arrays, rule by rule, reads ascending."""
    r = _many_series(40, seed=7)  # 4 channels each: 160 series over VEE_CHUNKS chunks
    res = validate_estimate(r, rules=RULES, window=WINDOW)
    flags = res.reading_flags
    rec = res.flag_records
    firsts = [rec.seg[K.chunk_series(len(rec.seg) - 1, K.VEE_CHUNKS, c)[0]] for c in range(K.VEE_CHUNKS)]
    valid = np.concatenate([np.arange(first, first + rows) for first, rows in zip(firsts, rec.rows, strict=True)])
    start = np.zeros(len(r), np.int64)
    start[rec.read[valid]] = rec.start[valid]
    assert flags.dtype == np.uint32 and flags.shape == (len(r),)
    assert np.count_nonzero(flags) == valid.size > 0
    assert sorted(rec.read[valid].tolist()) == np.flatnonzero(flags).tolist()
    in_window = (r.ts_s > WINDOW.day0_s) & (start < WINDOW.end_s)
    expected = []
    for rule in F.RULES:
        for i in np.flatnonzero(((flags & rule.bit) != 0) & in_window):
            expected.append(
                (
                    int(r.meter_id[i]),
                    int(r.channel_id[i]),
                    int(start[i]),
                    int(r.ts_s[i]),
                    rule.code,
                    rule.severity,
                    float(r.value[i]),
                )
            )
    exc = res.exceptions.iloc[: len(expected)]
    got = list(
        zip(
            exc["meter_id"].tolist(),
            exc["channel_id"].tolist(),
            (exc["interval_start"].astype("int64") // 10**9).tolist(),
            (exc["interval_end"].astype("int64") // 10**9).tolist(),
            exc["rule"].tolist(),
            exc["severity"].tolist(),
            exc["value"].tolist(),
            strict=True,
        )
    )
    assert got == expected
    assert {"GAP", "SPIKE", "NEGATIVE", "STATUS_INVALID"} <= set(exc["rule"])
    # the remaining rows are day and series exceptions
    assert set(res.exceptions["rule"].iloc[len(expected) :]) <= {
        "HIGH_USE",
        "LOW_USE",
        "ZERO_USE",
        "TOU_SUM",
        "LEADING_GAP",
        "GAP_TOO_LONG",
    }
    assert res.exceptions.dtypes.astype(str).tolist() == [
        "int32",
        "int16",
        "datetime64[ns, UTC]",
        "datetime64[ns, UTC]",
        "object",
        "object",
        "float64",
    ]


def test_the_kernels_may_run_from_two_threads_at_once() -> None:
    # a VEE pass validates two partitions at once (billing.continuous.PARTITION_THREADS): numba must run on a
    # thread-safe layer (OpenMP: libgomp1, installed by scripts/setup-system.sh)
    assert K.concurrent_calls_safe()
