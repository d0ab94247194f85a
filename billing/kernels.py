"""Numba VEE kernels on contiguous arrays sorted by (series, ts); one series = one meter's cumulative channel.

Times are UTC epoch seconds [s]; ``day0_s`` is the UTC instant of the first local (UTC+7) midnight of the period;
values are register units [kWh] before the multiplier. The rules themselves are documented in billing/vee.py;
the plain-Python twin in tests/billing/twin.py follows them line by line, pass by pass.

One series goes through two passes, each a private ``@njit`` kernel on the series' own contiguous arrays with a
public wrapper that checks dtypes and shapes (the stumpy style; the wrappers serve tests and tools):

- validation (``_validate_series`` / ``validate_series``): per read, flags (billing.flags bits), interval start [s]
  (the last valid read before it) and register delta [kWh] (NaN when the read is not valid); the series'
  like-day profile and history from the valid single intervals as they are accepted (the profile leaves out the
  intervals that start on a public holiday: ``holiday_days``, local day numbers, billing.public_holidays);
- daily aggregation (``_aggregate_series`` / ``aggregate_series``): per local day, measured and estimated energy,
  interval counts, flags and estimation methods; the series' leading gap and tail.

``vee_kernel`` runs both over all series, in parallel over chunks of series (``prange``); each chunk writes only
its own rows, so no locks, and keeps only the reads with a flag (records). It is called through
``billing.vee.validate_estimate``, whose wrapper checks the batch. ``cache=True``: compiled once per machine, not
per run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numba
import numpy as np
from numba import njit, prange

from amr.errors import AmrError

# Plain int module globals: numba freezes them into the compiled kernels.
from amr.timebase import DAY_S, LOCAL_UTC_OFFSET_S, UNIX_EPOCH_WEEKDAY
from billing import flags as F
from billing.rules import VeeThresholds

WEEKDAYS = 7

_DUPLICATE = np.uint32(F.DUPLICATE)
_STATUS_INVALID = np.uint32(F.STATUS_INVALID)
_STATUS_WARN = np.uint32(F.STATUS_WARN)
_INTERVAL_SIZE = np.uint32(F.INTERVAL_SIZE)
_GAP = np.uint32(F.GAP)
_NEGATIVE = np.uint32(F.NEGATIVE)
_ROLLOVER = np.uint32(F.ROLLOVER)
_REPLACEMENT = np.uint32(F.REPLACEMENT)
_SPIKE = np.uint32(F.SPIKE)
# A spike is a read the register falls back below within this many later reads (a glitch of a few reads).
SPIKE_LOOKAHEAD_READS = 4
_FLAT_LINE = np.uint32(F.FLAT_LINE)
_GAP_TOO_LONG = np.uint32(F.GAP_TOO_LONG)
_LEADING_GAP = np.uint32(F.LEADING_GAP)
_HIGH_USE = np.uint32(F.HIGH_USE)
_LOW_USE = np.uint32(F.LOW_USE)
_ZERO_USE = np.uint32(F.ZERO_USE)
_TOU_SUM = np.uint32(F.TOU_SUM)
_ESTIMATED = np.uint32(F.ESTIMATED)
_M_LINEAR = np.uint8(F.METHOD_LINEAR)
_M_HISTORICAL = np.uint8(F.METHOD_HISTORICAL)
_M_FLAT = np.uint8(F.METHOD_FLAT)
_M_SCALED = np.uint8(F.METHOD_SCALED)


class VeeInputError(AmrError):
    """Arrays handed to the VEE kernels have the wrong dtype, shape or order."""


# -- records the kernels share (numba passes a NamedTuple of arrays as a struct of array views) ------------------
class LikeDayProfile(NamedTuple):
    """One series' like-day profile: the energy [kWh] of its valid single-interval reads, summed and counted per
    cell = weekday * n_slots + slot of the local day (slot 0 only for a daily or longer interval). Intervals that
    start on a public holiday are left out: the profile is the series' ordinary days."""

    interval_s: int
    n_slots: int
    kwh: np.ndarray  # (7 * n_slots,) float64
    n_intervals: np.ndarray  # (7 * n_slots,) int64


class ReadVerdicts(NamedTuple):
    """Per read of one series, from the validation pass (the aggregation adds GAP_TOO_LONG to flags)."""

    flags: np.ndarray  # uint32, billing.flags bits
    start_s: np.ndarray  # int64, interval start: the last valid read before this one
    delta_kwh: np.ndarray  # float64, register delta over (start, ts]; NaN when the read is not valid


class DayArrays(NamedTuple):
    """Per series and local day, (S, D): what the aggregation pass adds up."""

    measured_kwh: np.ndarray  # float64
    estimated_kwh: np.ndarray  # float64
    n_measured: np.ndarray  # int32 intervals
    n_estimated: np.ndarray  # int32 intervals
    flags: np.ndarray  # uint32
    methods: np.ndarray  # uint8, billing.flags METHOD_* bits


class SeriesArrays(NamedTuple):
    """Per series, (S,)."""

    flags: np.ndarray  # uint32: LEADING_GAP, GAP_TOO_LONG (the tail)
    interval_s: np.ndarray  # int64
    hist_kwh_per_day: np.ndarray  # float64, NaN without history
    first_valid_s: np.ndarray  # int64, -1: no valid read
    last_valid_s: np.ndarray  # int64, -1: no valid read
    longest_span_s: np.ndarray  # int64, the longest estimated span: a gap between valid reads, a replacement [s]
    # The validation state after the series' last valid read at a local midnight (see SeriesSeed): what a later
    # pass resumes from without reading the series' history again. state_s -1: no such read.
    state_s: np.ndarray  # int64, that read [UTC epoch s]
    state_kwh: np.ndarray  # float64, its register value [kWh]
    state_rate: np.ndarray  # float64, the rate of the last valid interval then [kWh/s], -1: none
    state_zero_since_s: np.ndarray  # int64, start of the register's unchanged run then [s], -1: none
    state_avg_kwh_per_day: np.ndarray  # float64, the smoothed average day then [kWh/day], NaN: none


class SeriesSeed(NamedTuple):
    """Per series, (S,): the validation state a series resumes from, as a previous pass left it (SeriesArrays'
    state_*), for a batch whose first read of the series is that state's read itself (a valid read at a local
    midnight, re-read or restored) and whose later reads follow it. A series without a state: rate -1,
    zero_since_s -1, avg NaN (the kernels then start from nothing, as on a series' first reads)."""

    rate: np.ndarray  # float64 [kWh/s]
    zero_since_s: np.ndarray  # int64 [s]
    avg_kwh_per_day: np.ndarray  # float64 [kWh/day]


def no_seed(n_series: int) -> SeriesSeed:
    return SeriesSeed(
        rate=np.full(n_series, -1.0), zero_since_s=np.full(n_series, -1, np.int64),
        avg_kwh_per_day=np.full(n_series, np.nan),
    )  # fmt: skip


def new_day_arrays(n_series: int, n_days: int) -> DayArrays:
    return DayArrays(
        measured_kwh=np.zeros((n_series, n_days), np.float64),
        estimated_kwh=np.zeros((n_series, n_days), np.float64),
        n_measured=np.zeros((n_series, n_days), np.int32),
        n_estimated=np.zeros((n_series, n_days), np.int32),
        flags=np.zeros((n_series, n_days), np.uint32),
        methods=np.zeros((n_series, n_days), np.uint8),
    )


def new_series_arrays(n_series: int) -> SeriesArrays:
    return SeriesArrays(
        flags=np.zeros(n_series, np.uint32),
        interval_s=np.zeros(n_series, np.int64),
        hist_kwh_per_day=np.zeros(n_series, np.float64),
        first_valid_s=np.zeros(n_series, np.int64),
        last_valid_s=np.zeros(n_series, np.int64),
        longest_span_s=np.zeros(n_series, np.int64),
        state_s=np.full(n_series, -1, np.int64),
        state_kwh=np.zeros(n_series, np.float64),
        state_rate=np.zeros(n_series, np.float64),
        state_zero_since_s=np.zeros(n_series, np.int64),
        state_avg_kwh_per_day=np.zeros(n_series, np.float64),
    )


def check_array(name: str, a: object, dtype: type, *, ndim: int = 1, length: int | None = None) -> None:
    """Refuse what a kernel cannot take: not a numpy array of this dtype and rank, another length (first axis),
    not C-contiguous."""
    if not isinstance(a, np.ndarray) or a.ndim != ndim:
        raise VeeInputError(f"{name}: a {ndim}-dimensional numpy array is required")
    if a.dtype != dtype:
        raise VeeInputError(f"{name}: dtype {a.dtype}, expected {np.dtype(dtype)}")
    if length is not None and a.shape[0] != length:
        raise VeeInputError(f"{name}: length {a.shape[0]}, expected {length}")
    if not a.flags.c_contiguous:
        raise VeeInputError(f"{name}: not C-contiguous")


def check_holiday_days(holiday_days: np.ndarray) -> None:
    """Refuse holiday days the kernels cannot take: not int64, not C-contiguous, not strictly ascending (the
    kernels walk them with a cursor, in step with the reads)."""
    check_array("holiday_days", holiday_days, np.int64)
    if holiday_days.shape[0] > 1 and bool((holiday_days[1:] <= holiday_days[:-1]).any()):
        raise VeeInputError("holiday_days: local day numbers must be strictly ascending")


# -- helpers of both passes ---------------------------------------------------------------------------------------
@njit(cache=True)
def _day_of_end(t_end: int, day0_s: int) -> int:
    """Local day index of the interval that ends at t_end (an interval ending at midnight belongs to the day before)."""
    return (t_end - 1 - day0_s) // DAY_S


INTERVAL_SAMPLE_READS = 256  # enough steps to find a series' interval through gaps, without a full extra pass


@njit(cache=True)
def _series_interval(ts: np.ndarray, allowed: np.ndarray, default_s: int) -> int:
    """The most common allowed interval between the first INTERVAL_SAMPLE_READS reads of a series
    (ties: the shorter)."""
    counts = np.zeros(allowed.shape[0], dtype=np.int64)
    for i in range(1, min(ts.shape[0], INTERVAL_SAMPLE_READS)):
        dt = ts[i] - ts[i - 1]
        for k in range(allowed.shape[0]):
            if dt == allowed[k]:
                counts[k] += 1
                break
    best = -1
    best_count = 0
    for k in range(allowed.shape[0]):
        if counts[k] > best_count:
            best = k
            best_count = counts[k]
    return allowed[best] if best >= 0 else default_s


@njit(cache=True)
def _empty_profile(interval_s: int) -> LikeDayProfile:
    n_slots = DAY_S // interval_s if interval_s < DAY_S else 1
    n_cells = WEEKDAYS * n_slots
    return LikeDayProfile(interval_s, n_slots, np.zeros(n_cells, np.float64), np.zeros(n_cells, np.int64))


@njit(cache=True)
def _profile_index(t_start: int, interval_s: int, n_slots: int) -> int:
    """Like-day profile cell (weekday x slot of the local day) of an interval starting at t_start."""
    loc = t_start + LOCAL_UTC_OFFSET_S
    slot = (loc % DAY_S) // interval_s if n_slots > 1 else 0
    return ((loc // DAY_S + UNIX_EPOCH_WEEKDAY) % WEEKDAYS) * n_slots + slot


@njit(cache=True)
def _profile_weight(t_start: int, length_s: int, profile: LikeDayProfile) -> float:
    """Like-day energy [kWh] for an interval: mean of valid intervals in the same weekday and slot, else the same
    slot on any day; -1 when the series has no valid interval in that slot. The profile holds ordinary days only
    (no public holidays), and an interval on a holiday is estimated from it too: there is no holiday profile."""
    interval_s, n_slots = profile.interval_s, profile.n_slots
    k = _profile_index(t_start, interval_s, n_slots)
    slot = k % n_slots
    if profile.n_intervals[k] > 0:
        return profile.kwh[k] / profile.n_intervals[k] * length_s / interval_s
    total = 0.0
    count = 0
    for w in range(WEEKDAYS):
        total += profile.kwh[w * n_slots + slot]
        count += profile.n_intervals[w * n_slots + slot]
    if count > 0:
        return total / count * length_s / interval_s
    return -1.0


# -- pass 1: validation -------------------------------------------------------------------------------------------
@njit(cache=True)
def spike_falls_back(ts: np.ndarray, value: np.ndarray, i: int) -> bool:
    """Whether the register comes back below read i's value within the next SPIKE_LOOKAHEAD_READS reads (of other
    instants): read i is bad, not the energy. A meter glitch can hold for more than one read, so the look goes
    beyond the next one."""
    t, v = ts[i], value[i]
    j = i + 1
    seen = 0
    while j < ts.shape[0] and seen < SPIKE_LOOKAHEAD_READS:
        if ts[j] != t:
            seen += 1
            if value[j] < v:
                return True
        j += 1
    return False


@njit(cache=True)
def spike_settled(ts: np.ndarray, j: int, i: int) -> bool:
    """Whether read j, kept although a SPIKE, is final at read i: spike_falls_back has its SPIKE_LOOKAHEAD_READS
    reads (of other instants) after j among the reads up to i, so no later read can drop it. A series' state is
    taken only where every kept spike before it is final: resumed with later reads, it must judge as one run."""
    seen = 0
    for k in range(j + 1, i + 1):
        if ts[k] != ts[j]:
            seen += 1
    return seen >= SPIKE_LOOKAHEAD_READS


@njit(cache=True)
def _validate_series(
    ts: np.ndarray,
    value: np.ndarray,
    quality: np.ndarray,
    modulus: float,
    th: VeeThresholds,
    day0_s: int,
    holiday_days: np.ndarray,
    profile: LikeDayProfile,
    out: ReadVerdicts,
    seed_rate: float,
    seed_zero_since_s: int,
    seed_avg: float,
    state: np.ndarray,
) -> tuple[float, int, int]:
    """Validate each read of one series against the last valid one into `out`; add the valid single intervals to
    the (zeroed) `profile`, except those starting on a local day in `holiday_days` (local day numbers, strictly
    ascending), and to the history (reads up to day0_s) as they are accepted.
    The series resumes from a seed (SeriesSeed: last rate [kWh/s], unchanged since [s], smoothed average day
    [kWh/day]; -1, -1, NaN: none), taken up when its first valid read becomes the base. `state` (float64, 4)
    receives the state after the last valid read at a local midnight: register [kWh], rate, unchanged since, the
    smoothed average day (an exponential average of the valid intervals' daily rate, horizon th.history_s); not at a
    read where a spike kept before it is not final yet (spike_settled).
    Returns (history [kWh/day], NaN without history; first valid read [s], -1 without; that last valid read at a
    local midnight [s], -1 without)."""
    # Integer divisions dominate the per-read cost, so on the regular grid (the common case) the alignment, the
    # profile cell and the day index are carried forward from the previous read instead of recomputed; the
    # holidays are walked with a cursor (interval starts only move forward), by comparisons.
    interval_s, n_slots = profile.interval_s, profile.n_slots
    n_holidays = holiday_days.shape[0]
    hj = 0  # the first holiday that does not end at or before the current interval start
    n_cells = profile.kwh.shape[0]
    cell_step = interval_s // DAY_S if interval_s >= DAY_S else 1
    hist_kwh = 0.0
    hist_s = 0
    aligned_prev = False
    base_cell = 0
    has_base = False
    base_ts = 0
    base_val = 0.0
    has_prev = False
    prev_ts = 0
    last_rate = -1.0
    zero_start = -1
    first_valid_s = -1
    avg = np.nan
    state_s = -1
    kept_spike = -1  # the last read kept although flagged SPIKE: reads after it may still drop it
    n = ts.shape[0]
    for i in range(n):
        t = ts[i]
        v = value[i]
        q = np.int64(quality[i])
        f = np.uint32(0)
        out.delta_kwh[i] = np.nan
        if has_prev and t == prev_ts:
            out.flags[i] = _DUPLICATE
            out.start_s[i] = prev_ts
            continue
        if has_prev and t - prev_ts > interval_s:
            f |= _GAP
        if has_prev and aligned_prev and t - prev_ts == interval_s:
            aligned = True
        else:
            r = (t - day0_s) % interval_s
            aligned = min(r, interval_s - r) <= th.align_tolerance_s
        if not aligned:
            f |= _INTERVAL_SIZE
        aligned_prev = aligned
        prev_ts = t
        has_prev = True
        invalid = False
        if q & th.status_invalid_mask:
            f |= _STATUS_INVALID
            invalid = True
        if q & th.status_review_mask:
            f |= _STATUS_WARN
        if not has_base:
            out.start_s[i] = t
            out.flags[i] = f
            if not invalid:
                has_base = True
                base_ts = t
                base_val = v
                base_cell = _profile_index(t, interval_s, n_slots)
                first_valid_s = t
                last_rate = seed_rate
                zero_start = seed_zero_since_s
                avg = seed_avg
            continue
        out.start_s[i] = base_ts
        if invalid:
            out.flags[i] = f
            continue
        dt = t - base_ts
        d = v - base_val
        if d < 0.0:
            wrapped = d + modulus
            if wrapped >= 0.0 and wrapped <= th.max_plausible_kw * dt / 3600.0:
                f |= _ROLLOVER
                d = wrapped
            elif v <= th.replacement_max_kwh:
                # The new register restarts near zero: what the old meter counted after base_ts is unknown, so
                # the interval is estimated (flat load) and the new read becomes the base.
                out.flags[i] = f | _REPLACEMENT
                base_ts = t
                base_val = v
                base_cell = _profile_index(t, interval_s, n_slots)
                zero_start = -1
                continue
            else:
                out.flags[i] = f | _NEGATIVE
                continue
        ref = last_rate * dt if last_rate > 0.0 else 0.0
        if d > th.spike_factor * ref and d > th.spike_min_kw * dt / 3600.0:
            f |= _SPIKE
            if spike_falls_back(ts, value, i):
                out.flags[i] = f
                continue
            kept_spike = i
        if d == 0.0:
            if zero_start < 0:
                zero_start = base_ts
            if t - zero_start >= th.flat_line_s:
                f |= _FLAT_LINE
        else:
            zero_start = -1
        out.delta_kwh[i] = d
        out.flags[i] = f
        if dt == interval_s:
            # [start, end) in UTC [s] of local day number k: k * DAY_S - LOCAL_UTC_OFFSET_S, + DAY_S
            while hj < n_holidays and (holiday_days[hj] + 1) * DAY_S - LOCAL_UTC_OFFSET_S <= base_ts:
                hj += 1
            if hj >= n_holidays or holiday_days[hj] * DAY_S - LOCAL_UTC_OFFSET_S > base_ts:
                profile.kwh[base_cell] += d
                profile.n_intervals[base_cell] += 1
            base_cell += cell_step
            while base_cell >= n_cells:
                base_cell -= n_cells
        else:
            base_cell = _profile_index(t, interval_s, n_slots)
        if t <= day0_s:
            hist_kwh += d
            hist_s += dt
        last_rate = d / dt
        day_kwh = last_rate * DAY_S
        avg = day_kwh if np.isnan(avg) else avg + (day_kwh - avg) * min(1.0, dt / th.history_s)
        base_ts = t
        base_val = v
        if (t + LOCAL_UTC_OFFSET_S) % DAY_S == 0 and (kept_spike < 0 or spike_settled(ts, kept_spike, i)):
            state_s = t
            state[0] = v
            state[1] = last_rate
            state[2] = zero_start
            state[3] = avg
    hist_kwh_per_day = hist_kwh / hist_s * DAY_S if hist_s > 0 else np.nan
    return hist_kwh_per_day, first_valid_s, state_s


def _check_series(ts_s: np.ndarray, **columns: tuple[np.ndarray, type]) -> None:
    check_array("ts_s", ts_s, np.int64)
    for name, (a, dtype) in columns.items():
        check_array(name, a, dtype, length=ts_s.shape[0])
    if ts_s.shape[0] > 1 and bool((ts_s[1:] < ts_s[:-1]).any()):
        raise VeeInputError("ts_s: reads must be sorted by time")


@dataclass(frozen=True, kw_only=True)
class SeriesValidation:
    """One series after the validation pass."""

    verdicts: ReadVerdicts
    profile: LikeDayProfile  # profile.interval_s: the series' interval
    hist_kwh_per_day: float  # NaN without history
    first_valid_s: int  # -1: no valid read
    state_s: int  # the last valid read at a local midnight [s], -1: none
    state: np.ndarray  # float64 (4,): the state after it (see _validate_series)


def validate_series(
    ts_s: np.ndarray,
    value: np.ndarray,
    quality: np.ndarray,
    *,
    modulus: float,
    thresholds: VeeThresholds,
    allowed_s: np.ndarray,
    day0_s: int,
    holiday_days: np.ndarray,
    seed_rate: float = -1.0,
    seed_zero_since_s: int = -1,
    seed_avg_kwh_per_day: float = np.nan,
) -> SeriesValidation:
    """The validation pass on one series: reads sorted by time (int64 [s], float64 register [kWh], int16 status
    bits), the register's modulus (10 ** digits), the allowed intervals [s] (int64, ascending), the public holidays
    the like-day profile leaves out (int64 local day numbers, strictly ascending; empty: none); the seed a series
    resumes from (SeriesSeed's fields; the defaults: none)."""
    _check_series(ts_s, value=(value, np.float64), quality=(quality, np.int16))
    check_array("allowed_s", allowed_s, np.int64)
    check_holiday_days(holiday_days)
    if allowed_s.shape[0] == 0:
        raise VeeInputError("allowed_s: at least one interval is required")
    n = ts_s.shape[0]
    interval_s = int(_series_interval(ts_s, allowed_s, thresholds.default_interval_s))
    profile = _empty_profile(interval_s)
    verdicts = ReadVerdicts(np.zeros(n, np.uint32), np.zeros(n, np.int64), np.zeros(n, np.float64))
    state = np.zeros(4, np.float64)
    hist, first, state_s = _validate_series(
        ts_s, value, quality, float(modulus), thresholds, int(day0_s), holiday_days, profile, verdicts,
        float(seed_rate), int(seed_zero_since_s), float(seed_avg_kwh_per_day), state,
    )  # fmt: skip
    return SeriesValidation(verdicts=verdicts, profile=profile, hist_kwh_per_day=float(hist), first_valid_s=int(first),
                            state_s=int(state_s), state=state)  # fmt: skip


# -- pass 2: daily aggregation ------------------------------------------------------------------------------------
@njit(cache=True)
def _add_estimate(days: DayArrays, s: int, t_end: int, energy: float, method: np.uint8, day0_s: int) -> None:
    di = _day_of_end(t_end, day0_s)
    if 0 <= di < days.flags.shape[1]:
        days.estimated_kwh[s, di] += energy
        days.n_estimated[s, di] += 1
        days.flags[s, di] |= _ESTIMATED
        days.methods[s, di] |= method


@njit(cache=True)
def _flag_days(day_flags: np.ndarray, s: int, a: int, b: int, flag: np.uint32, day0_s: int) -> None:
    """Flag every day an open interval (a, b] touches."""
    d_first = max(_day_of_end(a + 1, day0_s), 0)
    d_last = min(_day_of_end(b, day0_s), day_flags.shape[1] - 1)
    for di in range(d_first, d_last + 1):
        day_flags[s, di] |= flag


@njit(cache=True)
def gap_profile_weights(a: int, b: int, profile: LikeDayProfile, linear_max_s: int) -> tuple[bool, float]:
    """How a gap (a, b] between two valid reads is split: (by the like-day profile, the sum of its weights over the
    gap's intervals). Linearly (False) up to linear_max_s, and when an interval has no profile weight."""
    interval_s = profile.interval_s
    if b - a <= linear_max_s:
        return False, 0.0
    weight_sum = 0.0
    st = a
    while st < b:
        en = min(st + interval_s, b)
        w = _profile_weight(st, en - st, profile)
        if w < 0.0:
            return False, 0.0
        weight_sum += w
        st = en
    return weight_sum > 0.0, weight_sum


@njit(cache=True)
def _estimate_between(
    days: DayArrays,
    s: int,
    a: int,
    b: int,
    delta: float,
    profile: LikeDayProfile,
    linear_max_s: int,
    day0_s: int,
) -> None:
    """Spread a register delta [kWh] between two valid reads over the missing intervals of (a, b]:
    linear up to linear_max_s, like-day weights beyond; both scaled to sum exactly to the delta."""
    interval_s = profile.interval_s
    span = b - a
    use_profile, weight_sum = gap_profile_weights(a, b, profile, linear_max_s)
    method = (_M_HISTORICAL if use_profile else _M_LINEAR) | _M_SCALED
    st = a
    while st < b:
        en = min(st + interval_s, b)
        share = _profile_weight(st, en - st, profile) / weight_sum if use_profile else (en - st) / span
        _add_estimate(days, s, en, delta * share, method, day0_s)
        st = en


@njit(cache=True)
def _estimate_open(
    days: DayArrays,
    s: int,
    a: int,
    b: int,
    rate_kw_s: float,
    profile: LikeDayProfile,
    linear_max_s: int,
    day0_s: int,
) -> bool:
    """Estimate (a, b] with one valid side only: flat load at the last valid rate [kWh/s] up to linear_max_s,
    like-day energy beyond (flat where a slot has no history). False when nothing is known to estimate from."""
    interval_s = profile.interval_s
    use_profile = (b - a) > linear_max_s
    st = a
    while st < b:
        en = min(st + interval_s, b)
        w = _profile_weight(st, en - st, profile) if use_profile else -1.0
        if w < 0.0 and rate_kw_s < 0.0:
            return False
        st = en
    st = a
    while st < b:
        en = min(st + interval_s, b)
        w = _profile_weight(st, en - st, profile) if use_profile else -1.0
        if w >= 0.0:
            _add_estimate(days, s, en, w, _M_HISTORICAL, day0_s)
        else:
            _add_estimate(days, s, en, rate_kw_s * (en - st), _M_FLAT, day0_s)
        st = en
    return True


@njit(cache=True)
def _aggregate_series(
    ts: np.ndarray,
    verdicts: ReadVerdicts,
    profile: LikeDayProfile,
    th: VeeThresholds,
    first_valid_s: int,
    day0_s: int,
    period_end_s: int,
    days: DayArrays,
    s: int,
) -> tuple[np.uint32, int, int]:
    """Measured and estimated energy of one series per local day into row s of `days` (zeroed); GAP_TOO_LONG
    added to verdicts.flags. Returns (series flags, last valid read [s], -1 without; the longest span [s] between
    two valid reads that is estimated (longer than the interval), or across a replacement; 0 without)."""
    interval_s = profile.interval_s
    n_days = days.flags.shape[1]
    last_rate = -1.0
    sflags = np.uint32(0)
    last_valid = -1
    longest = 0
    day_lo = 0
    day_hi = 0  # [day_lo, day_hi): offsets from day0_s (of t - 1) that belong to day di
    di = 0
    for i in range(ts.shape[0]):
        t = ts[i]
        f = verdicts.flags[i]
        x = t - 1 - day0_s
        if x < day_lo or x >= day_hi:
            di = x // DAY_S
            day_lo = di * DAY_S
            day_hi = day_lo + DAY_S
        if 0 <= di < n_days:
            days.flags[s, di] |= f
        a = verdicts.start_s[i]
        if f & _REPLACEMENT:
            last_valid = t
            longest = max(longest, t - a)
            if not _estimate_open(days, s, a, t, last_rate, profile, th.linear_max_s, day0_s):
                verdicts.flags[i] |= _GAP_TOO_LONG
                _flag_days(days.flags, s, a, t, _GAP_TOO_LONG, day0_s)
            continue
        d = verdicts.delta_kwh[i]
        if np.isnan(d):
            continue
        last_valid = t
        span = t - a
        if span > interval_s:
            longest = max(longest, span)
        if span <= interval_s:
            if 0 <= di < n_days:
                days.measured_kwh[s, di] += d
                days.n_measured[s, di] += 1
        elif span > th.estimate_max_s:
            # Beyond the estimation limit: the register delta is real energy, but how it spreads over the days is
            # unknown; it stays on the closing read's day, flagged for review.
            verdicts.flags[i] |= _GAP_TOO_LONG
            _flag_days(days.flags, s, a, t, _GAP_TOO_LONG, day0_s)
            if 0 <= di < n_days:
                days.measured_kwh[s, di] += d
                days.n_measured[s, di] += 1
        else:
            _estimate_between(days, s, a, t, d, profile, th.linear_max_s, day0_s)
        last_rate = d / span

    if first_valid_s < 0 or first_valid_s > day0_s:
        sflags |= _LEADING_GAP
        lead_end = period_end_s if first_valid_s < 0 else first_valid_s
        _flag_days(days.flags, s, day0_s, lead_end, _LEADING_GAP, day0_s)
    tail_s = period_end_s - last_valid
    tail_ok = True
    if last_valid >= 0 and tail_s >= interval_s:
        tail_ok = tail_s <= th.estimate_max_s and _estimate_open(
            days, s, last_valid, period_end_s, last_rate, profile, th.linear_max_s, day0_s
        )
    if not tail_ok:
        sflags |= _GAP_TOO_LONG
        _flag_days(days.flags, s, last_valid, period_end_s, _GAP_TOO_LONG, day0_s)
    return sflags, last_valid, longest


@dataclass(frozen=True, kw_only=True)
class SeriesDays:
    """One series after the aggregation pass: its row of DayArrays (shape (1, D)) and series values."""

    days: DayArrays
    flags: np.ndarray  # uint32 per read: the validation's flags and GAP_TOO_LONG
    series_flags: int
    last_valid_s: int


def aggregate_series(
    ts_s: np.ndarray,
    validation: SeriesValidation,
    *,
    thresholds: VeeThresholds,
    day0_s: int,
    n_days: int,
    period_end_s: int,
) -> SeriesDays:
    """The aggregation pass on one series: its reads' times (as given to validate_series) and that pass's result
    (not changed: the flags are copied) over the local days [day0_s, day0_s + n_days days)."""
    v = validation.verdicts
    _check_series(ts_s, flags=(v.flags, np.uint32), start_s=(v.start_s, np.int64), delta_kwh=(v.delta_kwh, np.float64))
    p = validation.profile
    n_cells = WEEKDAYS * p.n_slots
    check_array("profile.kwh", p.kwh, np.float64, length=n_cells)
    check_array("profile.n_intervals", p.n_intervals, np.int64, length=n_cells)
    if n_days < 1:
        raise VeeInputError(f"n_days: {n_days}, at least 1 is required")
    verdicts = ReadVerdicts(v.flags.copy(), v.start_s, v.delta_kwh)
    days = new_day_arrays(1, n_days)
    profile = LikeDayProfile(int(p.interval_s), int(p.n_slots), p.kwh, p.n_intervals)
    sflags, last, _ = _aggregate_series(
        ts_s, verdicts, profile, thresholds, int(validation.first_valid_s), int(day0_s), int(period_end_s), days, 0
    )
    return SeriesDays(days=days, flags=verdicts.flags, series_flags=int(sflags), last_valid_s=int(last))


# Series are processed in this many parallel chunks (enough to balance two to a few dozen cores). Each chunk keeps
# scratch buffers for its series' flags, interval starts and deltas, and records only the reads with a flag, densely
# from its first read's index on: full-length outputs would cost a page fault per 4 KiB on first touch, which on
# this kind of machine costs more than the VEE itself.
VEE_CHUNKS = 64


@njit(cache=True)
def chunk_series(n_series: int, n_chunks: int, c: int) -> tuple[int, int]:
    """Series [first, end) of chunk c when n_series series are split into n_chunks chunks."""
    size = (n_series + n_chunks - 1) // n_chunks
    first = min(c * size, n_series)
    return first, min(first + size, n_series)


@njit(cache=True)
def _is_exception(f: np.uint32, mask: np.uint32, ts: int, start: int, day0_s: int, period_end_s: int) -> bool:
    """A flagged read becomes exception rows when its interval (start, ts] overlaps the period (history reads
    before it were judged by the previous period's run)."""
    return (f & mask) != 0 and ts > day0_s and start < period_end_s


@njit(cache=True, parallel=True)
def vee_kernel(
    seg: np.ndarray,
    ts: np.ndarray,
    value: np.ndarray,
    quality: np.ndarray,
    modulus: np.ndarray,
    th: VeeThresholds,
    allowed: np.ndarray,
    holiday_days: np.ndarray,
    day0_s: int,
    period_end_s: int,
    rule_bits: np.ndarray,
    rec_read: np.ndarray,
    rec_flags: np.ndarray,
    rec_start: np.ndarray,
    rec_rows: np.ndarray,
    exc_counts: np.ndarray,
    days: DayArrays,
    series: SeriesArrays,
    seed: SeriesSeed,
) -> None:
    """VEE over all series (validation, then daily aggregation, per series), in rec_rows.shape[0] parallel chunks
    of series (chunk_series); days and series are zeroed by the caller. holiday_days: the local day numbers (int64,
    strictly ascending) whose intervals the like-day profiles leave out; seed: what each series resumes from.

    Flag records: chunk c writes its reads with a nonzero flag (read index, flags, interval start [s]) to
    rec_read / rec_flags / rec_start from seg[first series of c] on, in read order, rec_rows[c] of them; reads
    without a record have flags 0. The record arrays need n elements but only the written ones are touched (np.empty
    is right). exc_counts[c, k] (zeroed by the caller): chunk c's records that are exceptions (_is_exception) with
    rule_bits[k] set.
    """
    n_series = seg.shape[0] - 1
    n_chunks = rec_rows.shape[0]
    mask = np.uint32(0)
    for k in range(rule_bits.shape[0]):
        mask |= np.uint32(rule_bits[k])
    # Writes through a NamedTuple's array inside a prange body are lost (numba issues 7135, 10338): the loop
    # writes to local names; passing the record on to a called kernel is fine.
    series_flags, series_interval, series_hist = series.flags, series.interval_s, series.hist_kwh_per_day
    series_first, series_last, series_longest = series.first_valid_s, series.last_valid_s, series.longest_span_s
    state_s_out, state_kwh, state_rate = series.state_s, series.state_kwh, series.state_rate
    state_zero, state_avg = series.state_zero_since_s, series.state_avg_kwh_per_day
    seed_rate, seed_zero, seed_avg = seed.rate, seed.zero_since_s, seed.avg_kwh_per_day
    for c in prange(n_chunks):
        s_first, s_end = chunk_series(n_series, n_chunks, c)
        longest = 0
        for s in range(s_first, s_end):
            longest = max(longest, seg[s + 1] - seg[s])
        flags_buf = np.empty(longest, dtype=np.uint32)
        start_buf = np.empty(longest, dtype=np.int64)
        delta_buf = np.empty(longest, dtype=np.float64)
        state = np.empty(4, dtype=np.float64)
        k = seg[s_first]
        for s in range(s_first, s_end):
            lo = seg[s]
            hi = seg[s + 1]
            n = hi - lo
            verdicts = ReadVerdicts(flags_buf[:n], start_buf[:n], delta_buf[:n])
            interval_s = _series_interval(ts[lo:hi], allowed, th.default_interval_s)
            profile = _empty_profile(interval_s)
            hist, first, state_s = _validate_series(
                ts[lo:hi], value[lo:hi], quality[lo:hi], modulus[s], th, day0_s, holiday_days, profile, verdicts,
                seed_rate[s], seed_zero[s], seed_avg[s], state,
            )  # fmt: skip
            state_s_out[s] = state_s
            if state_s >= 0:
                state_kwh[s] = state[0]
                state_rate[s] = state[1]
                state_zero[s] = np.int64(state[2])
                state_avg[s] = state[3]
            sflags, last, longest = _aggregate_series(
                ts[lo:hi], verdicts, profile, th, first, day0_s, period_end_s, days, s
            )
            series_longest[s] = longest
            series_interval[s] = interval_s
            series_hist[s] = hist
            series_first[s] = first
            series_flags[s] = sflags
            series_last[s] = last
            for i in range(lo, hi):  # the series is still in cache
                f = flags_buf[i - lo]
                if f == 0:
                    continue
                start = start_buf[i - lo]
                rec_read[k] = i
                rec_flags[k] = f
                rec_start[k] = start
                k += 1
                if _is_exception(f, mask, ts[i], start, day0_s, period_end_s):
                    for b in range(rule_bits.shape[0]):
                        if f & rule_bits[b]:
                            exc_counts[c, b] += 1
        rec_rows[c] = k - seg[s_first]


@njit(cache=True, parallel=True)
def gather_exceptions(
    seg: np.ndarray,
    ts: np.ndarray,
    day0_s: int,
    period_end_s: int,
    rule_bits: np.ndarray,
    rec_read: np.ndarray,
    rec_flags: np.ndarray,
    rec_start: np.ndarray,
    rec_rows: np.ndarray,
    offsets: np.ndarray,
    row_read: np.ndarray,
    row_start: np.ndarray,
) -> None:
    """One exception row per (exception record, rule bit) from vee_kernel's records, rule by rule (rule_bits
    order), reads ascending within a rule: offsets[c, b] is where chunk c's rows of rule b begin."""
    n_series = seg.shape[0] - 1
    n_chunks = rec_rows.shape[0]
    mask = np.uint32(0)
    for k in range(rule_bits.shape[0]):
        mask |= np.uint32(rule_bits[k])
    for c in prange(n_chunks):
        s_first, _ = chunk_series(n_series, n_chunks, c)
        pos = offsets[c].copy()
        base = seg[s_first]
        for j in range(base, base + rec_rows[c]):
            i = rec_read[j]
            f = rec_flags[j]
            if not _is_exception(f, mask, ts[i], rec_start[j], day0_s, period_end_s):
                continue
            for b in range(rule_bits.shape[0]):
                if f & rule_bits[b]:
                    p = pos[b]
                    row_read[p] = i
                    row_start[p] = rec_start[j]
                    pos[b] = p + 1


@njit(cache=True, parallel=True)
def expand_flags(
    seg: np.ndarray, rec_read: np.ndarray, rec_flags: np.ndarray, rec_rows: np.ndarray, out_flags: np.ndarray
) -> None:
    """Per-read flags from vee_kernel's records into out_flags (zeroed by the caller)."""
    n_series = seg.shape[0] - 1
    n_chunks = rec_rows.shape[0]
    for c in prange(n_chunks):
        s_first, _ = chunk_series(n_series, n_chunks, c)
        base = seg[s_first]
        for j in range(base, base + rec_rows[c]):
            out_flags[rec_read[j]] = rec_flags[j]


@njit(cache=True, parallel=True)
def use_check_kernel(
    days: DayArrays,
    hist_kwh_per_day: np.ndarray,
    check: np.ndarray,
    active_min: float,
    high_factor: float,
    low_factor: float,
    zero_days: int,
    zero_run0: np.ndarray,
    run_day: np.ndarray,
    zero_run_out: np.ndarray,
) -> None:
    """High / low / zero use per day against the series' own average day [kWh/day] (active customers only).
    zero_run0 (S,) int64: zero days in a row before the first day (a series resuming from its state);
    zero_run_out[s] (S,) int64: the run after day index run_day[s] (-1: none; left as it is)."""
    # local names, not days.x[...]: see vee_kernel (numba drops NamedTuple array writes in a prange body)
    measured, estimated, n_meas, n_est, day_flags = (
        days.measured_kwh,
        days.estimated_kwh,
        days.n_measured,
        days.n_estimated,
        days.flags,
    )
    for s in prange(measured.shape[0]):
        h = hist_kwh_per_day[s]
        if not check[s] or np.isnan(h) or h < active_min:
            continue
        zero_run = zero_run0[s]
        for d in range(measured.shape[1]):
            if d - 1 == run_day[s]:
                zero_run_out[s] = zero_run
            if n_meas[s, d] + n_est[s, d] == 0:
                zero_run = 0
                continue
            total = measured[s, d] + estimated[s, d]
            if total > high_factor * h:
                day_flags[s, d] |= _HIGH_USE
            elif 0.0 < total < h / low_factor:
                day_flags[s, d] |= _LOW_USE
            if total == 0.0:
                zero_run += 1
                if zero_run >= zero_days:
                    day_flags[s, d] |= _ZERO_USE
            else:
                zero_run = 0
        if run_day[s] == measured.shape[1] - 1:
            zero_run_out[s] = zero_run


@njit(cache=True, parallel=True)
def tou_sum_kernel(
    total_idx: np.ndarray, rate_idx: np.ndarray, days: DayArrays, tol_kwh: float, tol_ratio: float
) -> None:
    """Per meter and day: the total register's energy against the sum of its rate registers (rate_idx[g, 3])."""
    # local names, not days.x[...]: see vee_kernel (numba drops NamedTuple array writes in a prange body)
    measured, estimated, n_meas, n_est, day_flags = (
        days.measured_kwh,
        days.estimated_kwh,
        days.n_measured,
        days.n_estimated,
        days.flags,
    )
    for g in prange(total_idx.shape[0]):
        t = total_idx[g]
        for d in range(measured.shape[1]):
            if n_meas[t, d] + n_est[t, d] == 0:
                continue
            complete = True
            rates = 0.0
            for k in range(rate_idx.shape[1]):
                r = rate_idx[g, k]
                if n_meas[r, d] + n_est[r, d] == 0:
                    complete = False
                    break
                rates += measured[r, d] + estimated[r, d]
            if not complete:
                continue
            total = measured[t, d] + estimated[t, d]
            diff = abs(total - rates)
            if diff > tol_kwh and diff > tol_ratio * abs(total):
                day_flags[t, d] |= _TOU_SUM


@njit(cache=True, parallel=True)
def _touch_threads(a: np.ndarray) -> float:
    total = 0.0
    for i in prange(a.shape[0]):
        total += a[i]
    return total


def concurrent_calls_safe() -> bool:
    """Whether the kernels may run from two Python threads at once: numba's OpenMP and TBB threading layers allow
    it, the workqueue layer (what numba falls back to without either library) aborts the process."""
    _touch_threads(np.zeros(2))  # the layer is chosen at the first parallel call
    return numba.threading_layer() in ("omp", "tbb")


@njit(cache=True)
def sorted_segments(meter: np.ndarray, channel: np.ndarray, ts: np.ndarray, seg: np.ndarray) -> int:
    """One pass: fill seg with the start of each (meter, channel) series and return the series count, or -1 when
    the rows are not sorted by (meter, channel, ts). seg needs room for n + 1 entries."""
    n = ts.shape[0]
    if n == 0:
        seg[0] = 0
        return 0
    s = 0
    seg[0] = 0
    for i in range(1, n):
        if meter[i] != meter[i - 1] or channel[i] != channel[i - 1]:
            if meter[i] < meter[i - 1] or (meter[i] == meter[i - 1] and channel[i] < channel[i - 1]):
                return -1
            s += 1
            seg[s] = i
        elif ts[i] < ts[i - 1]:
            return -1
    seg[s + 1] = n
    return s + 1
