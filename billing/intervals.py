"""Interval-level validated results of profile series (an interval shorter than a day: cumulative register reads
every 30 min), beside the daily ones (sql/096_vee_intervals.sql, docs/vee.md section 2).

Per interval slot of the local grid (slot k of a series ends at from_s + (k + 1) * interval_s): the register
difference of two consecutive valid reads one interval apart is the slot's measured energy; a gap bracketed by
valid reads gets the kernel's own estimate of it, piece by piece (billing.kernels._estimate_between: linear up to
linear_max_s, the like-day profile's shape beyond, scaled to the register difference; a meter replacement's
_estimate_open), so a closed day's slots add up to that day's measured + estimated energy in VeeResult. A gap with
no valid read after it (the tail) and one beyond estimation.max_s (GAP_TOO_LONG, the daily result keeps its delta
on the closing read's day) are left unwritten.

The validity of each read comes from the validation kernel's flags (VeeResult.flag_records): a read flagged
DUPLICATE, STATUS_INVALID or NEGATIVE, or a SPIKE the register falls back from (the kernel's own look-ahead), is
not a valid read and never an actual slot; the register deltas and the like-day profile are rebuilt from the
valid reads exactly as billing.kernels._validate_series builds them. Style of billing.kernels: the public
``interval_results`` checks dtypes and shapes, the private ``@njit`` kernels run on contiguous arrays, and
tests/billing/interval_twin.py is the plain-Python twin the tests check them against.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta

import numpy as np
import pandas as pd
import psycopg
from numba import njit, prange

from amr import pgcopy
from amr.timebase import DAY_S, LOCAL_UTC_OFFSET_S
from billing import flags as F
from billing import kernels as K
from billing.kernels import (
    LikeDayProfile,
    VeeInputError,
    check_array,
    check_holiday_days,
    gap_profile_weights,
    spike_falls_back,
)
from billing.quality import ACTUAL, SUBSTITUTED, VARIABLE, day_quality
from billing.rules import VeeRules, VeeThresholds, kernel_thresholds
from billing.store import copy_fixed_rows
from billing.vee import (
    FlagRecords,
    ReadingArrays,
    VeeResult,
    check_readings,
    default_holiday_days,
    lookup_digits,
    series_key,
    series_of_key,
    series_segments,
)

# interval_frame's columns (numbers only: a pass's frame has millions of rows at city scale)
INTERVAL_DTYPES: dict[str, type] = {
    "meter_id": np.int32,
    "channel_id": np.int16,
    "interval_end_s": np.int64,  # UTC epoch [s]
    "energy_kwh": np.float64,  # after the multiplier
    "quality": np.int16,  # ASCII code of the AEMO flag (ord('A'), ...)
    "method": np.int16,  # AEMO method number, 0: none
    "day": np.int64,  # local day number of interval_end - 1 s
    "interval_s": np.int64,  # the series' interval [s]
}
INTERVAL_COLUMNS = tuple(INTERVAL_DTYPES)
# Rows per binary COPY write of day rows (a 30-minute day is ~900 bytes on the wire): ~45 MB buffers.
DAY_COPY_CHUNK_ROWS = 50_000
NO_VALUE = ord("N")  # AEMO null data: a slot the pass does not write (energy NaN)


@functools.cache
def day_rows(n_slots: int) -> pgcopy.FixedRows:
    """The binary COPY rows of vee_interval_days for a day of `n_slots` slots (sql/099_vee_interval_days.sql)."""
    return pgcopy.FixedRows(
        ("meter_id", "int4"),
        ("channel_id", "int2"),
        ("day", "date"),
        ("interval_s", "int4"),
        ("energy_kwh", f"float8[{n_slots}]"),
        ("quality", f"text({n_slots})"),
        ("method", f"int2[{n_slots}]"),
        ("version", "int4"),
        ("made_at", "timestamptz"),
    )


_NOT_A_READ = np.uint32(F.DUPLICATE | F.STATUS_INVALID)
_NEGATIVE = np.uint32(F.NEGATIVE)
_REPLACEMENT = np.uint32(F.REPLACEMENT)
_ROLLOVER = np.uint32(F.ROLLOVER)
_SPIKE = np.uint32(F.SPIKE)
_M_LINEAR = np.uint8(F.METHOD_LINEAR)
_M_HISTORICAL = np.uint8(F.METHOD_HISTORICAL)
_M_FLAT = np.uint8(F.METHOD_FLAT)
_M_SCALED = np.uint8(F.METHOD_SCALED)


@dataclass(frozen=True, kw_only=True)
class IntervalSeries:
    """The profile series to produce slots for, sorted by (meter_id, channel_id), one per series of the readings:
    interval [s] (dividing a day), register modulus (10 ** digits) and the slots' range (from_s, to_s] [UTC epoch
    s], both on the series' local grid (local midnights are)."""

    meter_id: np.ndarray  # int32
    channel_id: np.ndarray  # int16
    interval_s: np.ndarray  # int64
    modulus: np.ndarray  # float64
    from_s: np.ndarray  # int64
    to_s: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.meter_id.shape[0])


@dataclass(frozen=True, kw_only=True)
class IntervalResults:
    """Every slot of every series' range, series by series (slot_offset[s]:slot_offset[s + 1]); a slot with
    n_measured + n_estimated == 0 has no result (an open or too long gap) and is not written."""

    slot_offset: np.ndarray  # (S + 1,) int64
    interval_end_s: np.ndarray  # (N,) int64
    energy: np.ndarray  # (N,) float64 [register units, before the multiplier]
    n_measured: np.ndarray  # (N,) int32 reads measured into the slot
    n_estimated: np.ndarray  # (N,) int32 estimate pieces
    methods: np.ndarray  # (N,) uint8 billing.flags METHOD_* bits


def interval_results(
    readings: ReadingArrays,
    reading_flags: np.ndarray,
    series: IntervalSeries,
    *,
    thresholds: VeeThresholds,
    holiday_days: np.ndarray,
) -> IntervalResults:
    """Interval slots of profile series from their energy reads (sorted by (meter_id, channel_id, ts_s), with the
    history the validation read: the like-day profile is rebuilt from all of them), the validation kernel's flags
    per read (uint32, VeeResult.reading_flags of these reads) and the holidays the profile left out (as given to
    validate_estimate). Pure: nothing is read or written."""
    check_readings(readings, sorted_check=False)
    check_array("reading_flags", reading_flags, np.uint32, length=len(readings))
    n_series = len(series)
    for name, dtype in (("meter_id", np.int32), ("channel_id", np.int16), ("interval_s", np.int64),
                        ("modulus", np.float64), ("from_s", np.int64), ("to_s", np.int64)):  # fmt: skip
        check_array(f"series.{name}", getattr(series, name), dtype, length=n_series)
    check_holiday_days(holiday_days)
    seg = series_segments(readings)
    if seg.shape[0] - 1 != n_series or (
        n_series
        and not (
            np.array_equal(readings.meter_id[seg[:-1]], series.meter_id)
            and np.array_equal(readings.channel_id[seg[:-1]], series.channel_id)
        )
    ):
        raise VeeInputError("series: one entry per series of the readings, in their order")
    iv = series.interval_s
    if n_series and (bool((iv <= 0).any()) or bool((DAY_S % iv != 0).any()) or bool((iv >= DAY_S).any())):
        raise VeeInputError("series.interval_s: profile intervals divide a day")
    span = series.to_s - series.from_s
    if n_series and (bool((span < 0).any()) or bool((span % iv != 0).any())):
        raise VeeInputError("series: (from_s, to_s] must be whole intervals")
    if n_series and bool(((series.from_s + LOCAL_UTC_OFFSET_S) % iv != 0).any()):
        raise VeeInputError("series.from_s: not on the local interval grid")
    slot_offset = np.zeros(n_series + 1, np.int64)
    np.cumsum(span // np.maximum(iv, 1), out=slot_offset[1:])
    n = int(slot_offset[-1])
    out = IntervalResults(
        slot_offset=slot_offset,
        interval_end_s=np.empty(n, np.int64),
        energy=np.zeros(n, np.float64),
        n_measured=np.zeros(n, np.int32),
        n_estimated=np.zeros(n, np.int32),
        methods=np.zeros(n, np.uint8),
    )
    if n_series:
        _intervals_kernel(
            seg,
            readings.ts_s,
            readings.value,
            reading_flags,
            iv,
            series.modulus,
            series.from_s,
            slot_offset,
            thresholds,
            holiday_days,
            out.interval_end_s,
            out.energy,
            out.n_measured,
            out.n_estimated,
            out.methods,
        )
    return out


@njit(cache=True, parallel=True)
def _intervals_kernel(
    seg: np.ndarray,
    ts: np.ndarray,
    value: np.ndarray,
    flags: np.ndarray,
    interval_s: np.ndarray,
    modulus: np.ndarray,
    from_s: np.ndarray,
    slot_offset: np.ndarray,
    th: VeeThresholds,
    holiday_days: np.ndarray,
    slot_end: np.ndarray,
    energy: np.ndarray,
    n_meas: np.ndarray,
    n_est: np.ndarray,
    methods: np.ndarray,
) -> None:
    """Every series on its own: each writes only its own slots (slot_offset), so no locks."""
    for s in prange(seg.shape[0] - 1):
        lo, hi = seg[s], seg[s + 1]
        a, b = slot_offset[s], slot_offset[s + 1]
        _series_intervals(
            ts[lo:hi],
            value[lo:hi],
            flags[lo:hi],
            interval_s[s],
            modulus[s],
            from_s[s],
            th,
            holiday_days,
            slot_end[a:b],
            energy[a:b],
            n_meas[a:b],
            n_est[a:b],
            methods[a:b],
        )


@njit(cache=True)
def _valid_deltas(
    ts: np.ndarray,
    value: np.ndarray,
    flags: np.ndarray,
    modulus: float,
    holiday_days: np.ndarray,
    profile: LikeDayProfile,
    start: np.ndarray,
    delta: np.ndarray,
) -> None:
    """The validation kernel's valid reads again, from its flags: per read, the interval start (the base: the last
    valid read, or a replacement's read) and the register delta (NaN: not valid; a REPLACEMENT read keeps its
    start, its delta NaN); the like-day profile of the valid single intervals outside public holidays, as
    billing.kernels._validate_series adds them up."""
    interval_s, n_slots = profile.interval_s, profile.n_slots
    n = ts.shape[0]
    n_holidays = holiday_days.shape[0]
    has_base = False
    base_ts = 0
    base_val = 0.0
    for i in range(n):
        t = ts[i]
        v = value[i]
        f = flags[i]
        delta[i] = np.nan
        start[i] = base_ts if has_base else t
        if f & _NOT_A_READ:
            continue
        if not has_base:
            has_base = True
            base_ts = t
            base_val = v
            continue
        if f & _NEGATIVE:
            continue
        if f & _REPLACEMENT:
            base_ts = t
            base_val = v
            continue
        d = v - base_val
        if f & _ROLLOVER:
            d += modulus
        if f & _SPIKE and spike_falls_back(ts, value, i):  # the kernel's look-ahead: a bad read
            continue
        delta[i] = d
        if t - base_ts == interval_s:
            local_day = (base_ts + LOCAL_UTC_OFFSET_S) // DAY_S
            k = np.searchsorted(holiday_days, local_day)
            if not (k < n_holidays and holiday_days[k] == local_day):
                cell = K._profile_index(base_ts, interval_s, n_slots)
                profile.kwh[cell] += d
                profile.n_intervals[cell] += 1
        base_ts = t
        base_val = v


@njit(cache=True)
def _add(
    slot_end: np.ndarray,
    energy: np.ndarray,
    n_meas: np.ndarray,
    n_est: np.ndarray,
    methods: np.ndarray,
    from_s: int,
    interval_s: int,
    t_end: int,
    kwh: float,
    method: np.uint8,
) -> None:
    """Add to the slot whose end is the grid point nearest t_end (a read within the alignment tolerance of it);
    method 0: measured."""
    k = (t_end - from_s + interval_s // 2) // interval_s - 1
    if 0 <= k < energy.shape[0]:
        energy[k] += kwh
        if method == 0:
            n_meas[k] += 1
        else:
            n_est[k] += 1
            methods[k] |= method


@njit(cache=True)
def _series_intervals(
    ts: np.ndarray,
    value: np.ndarray,
    flags: np.ndarray,
    interval_s: int,
    modulus: float,
    from_s: int,
    th: VeeThresholds,
    holiday_days: np.ndarray,
    slot_end: np.ndarray,
    energy: np.ndarray,
    n_meas: np.ndarray,
    n_est: np.ndarray,
    methods: np.ndarray,
) -> None:
    """One series' slots: measured reads, and the estimates of bracketed gaps piece by piece as
    billing.kernels._aggregate_series makes them (the same calls on the same profile, in the same order)."""
    for k in range(slot_end.shape[0]):
        slot_end[k] = from_s + (k + 1) * interval_s
    n = ts.shape[0]
    profile = K._empty_profile(interval_s)
    start = np.empty(n, np.int64)
    delta = np.empty(n, np.float64)
    _valid_deltas(ts, value, flags, modulus, holiday_days, profile, start, delta)
    to_s = from_s + slot_end.shape[0] * interval_s
    last_rate = -1.0
    for i in range(n):
        t = ts[i]
        a = start[i]
        if flags[i] & _REPLACEMENT and not (flags[i] & _NOT_A_READ) and a < t:
            # as _estimate_open: flat at the last valid rate up to linear_max_s, like-day energy beyond; nothing
            # when a piece has neither
            if t > from_s and a < to_s + interval_s:
                use_profile = (t - a) > th.linear_max_s
                ok = True
                st = a
                while st < t:
                    en = min(st + interval_s, t)
                    w = K._profile_weight(st, en - st, profile) if use_profile else -1.0
                    if w < 0.0 and last_rate < 0.0:
                        ok = False
                        break
                    st = en
                st = a
                while ok and st < t:
                    en = min(st + interval_s, t)
                    w = K._profile_weight(st, en - st, profile) if use_profile else -1.0
                    if w >= 0.0:
                        _add(slot_end, energy, n_meas, n_est, methods, from_s, interval_s, en, w, _M_HISTORICAL)
                    else:
                        _add(slot_end, energy, n_meas, n_est, methods, from_s, interval_s, en,
                             last_rate * (en - st), _M_FLAT)  # fmt: skip
                    st = en
            continue
        d = delta[i]
        if np.isnan(d):
            continue
        span = t - a
        last_rate = d / span
        if t <= from_s - interval_s or a >= to_s + interval_s:
            continue  # nothing of it lands in a slot of the range
        if span <= interval_s:
            _add(slot_end, energy, n_meas, n_est, methods, from_s, interval_s, t, d, np.uint8(0))
        elif span <= th.estimate_max_s:
            # as _estimate_between: linear up to linear_max_s, like-day weights beyond, scaled to the delta
            use_profile, weight_sum = gap_profile_weights(a, t, profile, th.linear_max_s)
            method = (_M_HISTORICAL if use_profile else _M_LINEAR) | _M_SCALED
            st = a
            while st < t:
                en = min(st + interval_s, t)
                share = K._profile_weight(st, en - st, profile) / weight_sum if use_profile else (en - st) / span
                _add(slot_end, energy, n_meas, n_est, methods, from_s, interval_s, en, d * share, method)
                st = en
        # beyond estimate_max_s: GAP_TOO_LONG, the slots stay unwritten


# -- the continuous pass's frame and store --------------------------------------------------------------------------
def slot_quality(n_measured: np.ndarray, n_estimated: np.ndarray, methods: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(AEMO quality, method number or 0) per slot, in the daily code list (billing.quality.day_quality): A
    measured, S substituted between valid reads, E a flat forward estimate; a slot partly measured and partly
    estimated (reads off the grid) is S."""
    quality, method = day_quality(n_measured, n_estimated, methods)
    quality[quality == VARIABLE] = SUBSTITUTED
    method[quality == ACTUAL] = 0
    return quality, method


def _flag_rows(records: FlagRecords) -> tuple[np.ndarray, np.ndarray]:
    """(read index, flags) of every flagged energy read, from the kernel's records (chunk by chunk)."""
    n_series = records.seg.shape[0] - 1
    n_chunks = records.rows.shape[0]
    size = (n_series + n_chunks - 1) // n_chunks if n_series else 0
    first = np.minimum(np.arange(n_chunks, dtype=np.int64) * size, n_series)
    base = records.seg[first] if n_series else np.zeros(n_chunks, np.int64)
    rows = records.rows
    total = int(rows.sum())
    idx = np.repeat(base - np.r_[0, np.cumsum(rows)[:-1]], rows) + np.arange(total, dtype=np.int64)
    return records.read[idx], records.flags[idx]


def interval_frame(
    vee: VeeResult,
    readings: ReadingArrays,
    fresh: pd.DataFrame,
    meter_ids: np.ndarray,
    multiplier: np.ndarray,
    register_digits: np.ndarray,
    rules: VeeRules,
    holiday_days: np.ndarray | None = None,
) -> pd.DataFrame:
    """The written interval slots of the profile series (series_interval_s under a day) over the days `fresh`
    (the pass's _daily_frame) writes for them, as numbers only (no Python object per row): [INTERVAL_COLUMNS],
    interval_end_s [UTC epoch s], energy x multiplier [kWh], quality as its ASCII code, method 0 for none, day =
    the local day number the slot belongs to (that of interval_end - 1 s). readings: what validate_estimate got
    (all channels); meter_ids (sorted) / multiplier / register_digits: the meters'; holiday_days: as given to
    validate_estimate (None: its default)."""
    empty = pd.DataFrame({c: np.zeros(0, t) for c, t in INTERVAL_DTYPES.items()})
    profile = (vee.series_interval_s < DAY_S) & (DAY_S % np.maximum(vee.series_interval_s, 1) == 0)
    if fresh.empty or not profile.any():
        return empty
    # the days written per profile series: fresh holds a contiguous run of days per series
    vee_key = series_key(vee.series_meter, vee.series_channel)
    key = series_key(fresh["meter_id"].to_numpy(), fresh["channel_id"].to_numpy())
    mine = np.isin(key, vee_key[profile])
    if not mine.any():
        return empty
    day_number = np.asarray(fresh["day"].to_numpy()[mine], dtype="datetime64[D]").astype(np.int64)
    ranges = pd.DataFrame({"key": key[mine], "day": day_number}).groupby("key")["day"].agg(["min", "max"])
    pos = np.minimum(np.searchsorted(ranges.index.to_numpy(), vee_key), len(ranges) - 1)
    written = ranges.index.to_numpy()[pos] == vee_key
    chosen = np.flatnonzero(profile & written)
    first_day = ranges["min"].to_numpy()[pos[chosen]]
    last_day = ranges["max"].to_numpy()[pos[chosen]]

    # their energy reads: the same series of validate_estimate's energy reads (records.seg) in `readings`
    records = vee.flag_records
    e_lo, e_hi = records.seg[chosen], records.seg[chosen + 1]
    # readings are sorted by (meter, channel, ts): so are their series keys
    o_lo = np.searchsorted(series_key(readings.meter_id, readings.channel_id), vee_key[chosen], side="left")
    lengths = e_hi - e_lo
    out_off = np.r_[0, np.cumsum(lengths)]
    take = np.repeat(o_lo - out_off[:-1], lengths) + np.arange(int(out_off[-1]), dtype=np.int64)
    reads = ReadingArrays(
        meter_id=readings.meter_id[take],
        channel_id=readings.channel_id[take],
        ts_s=readings.ts_s[take],
        value=readings.value[take],
        quality=readings.quality[take],
    )
    flags = np.zeros(len(reads), np.uint32)
    rec_read, rec_flags = _flag_rows(records)
    where = np.searchsorted(e_lo, rec_read, side="right") - 1
    inside = (where >= 0) & (rec_read < e_hi[np.maximum(where, 0)])
    flags[out_off[where[inside]] + rec_read[inside] - e_lo[where[inside]]] = rec_flags[inside]

    meter = vee.series_meter[chosen]
    modulus = np.power(10.0, lookup_digits(meter, meter_ids, np.asarray(register_digits, np.int64)))
    series = IntervalSeries(
        meter_id=np.ascontiguousarray(meter, np.int32),
        channel_id=np.ascontiguousarray(vee.series_channel[chosen], np.int16),
        interval_s=np.ascontiguousarray(vee.series_interval_s[chosen], np.int64),
        modulus=modulus,
        from_s=(first_day * DAY_S - LOCAL_UTC_OFFSET_S).astype(np.int64),
        to_s=((last_day + 1) * DAY_S - LOCAL_UTC_OFFSET_S).astype(np.int64),
    )
    if holiday_days is None:
        holiday_days = default_holiday_days(vee.window)
    res = interval_results(reads, flags, series, thresholds=kernel_thresholds(rules), holiday_days=holiday_days)
    keep = (res.n_measured + res.n_estimated) > 0
    slot_series = np.repeat(np.arange(len(series)), np.diff(res.slot_offset))[keep]
    mult = multiplier[np.searchsorted(meter_ids, meter)]
    quality, method = slot_quality(res.n_measured[keep], res.n_estimated[keep], res.methods[keep])
    end_s = res.interval_end_s[keep]
    return pd.DataFrame(
        {
            "meter_id": series.meter_id[slot_series],
            "channel_id": series.channel_id[slot_series],
            "interval_end_s": end_s,
            "energy_kwh": res.energy[keep] * mult[slot_series],
            "quality": quality.astype("S1").view(np.uint8).astype(np.int16),
            "method": method.astype(np.int16),
            "day": (end_s - 1 + LOCAL_UTC_OFFSET_S) // DAY_S,
            "interval_s": series.interval_s[slot_series],
        }
    )


def _day_versions(new_versions: pd.DataFrame, keys: np.ndarray) -> pd.DataFrame:
    """(meter_id, channel_id, day number, version) of the days of these series (key = meter << 16 | channel) that
    the pass gave a new version (never a locked day: the pass leaves those alone)."""
    if new_versions.empty:
        return pd.DataFrame(columns=["meter_id", "channel_id", "day", "version"])
    key = series_key(new_versions["meter_id"].to_numpy(), new_versions["channel_id"].to_numpy())
    mine = np.isin(key, keys)
    return pd.DataFrame(
        {
            "meter_id": new_versions["meter_id"].to_numpy(np.int32)[mine],
            "channel_id": new_versions["channel_id"].to_numpy(np.int16)[mine],
            "day": np.asarray(new_versions["day"].to_numpy()[mine], dtype="datetime64[D]").astype(np.int64),
            "version": new_versions["version"].to_numpy(np.int64)[mine],
        }
    )


def store_intervals(conn: psycopg.Connection, intervals: pd.DataFrame, new_versions: pd.DataFrame) -> int:
    """Store the pass's interval slots (interval_frame's) of the days it gave a new version (`new_versions`, with
    that version: the daily version the values were made at), one vee_interval_days row per day. A day's first
    version has no row yet: those go straight in by binary COPY. A day versioned again is staged and its row
    rewritten only when a slot's energy, quality or method changed: a pass whose window read other history may
    split a gap a little differently, which is not a new result. A day whose daily result did not change keeps its
    row, and a day a person edited (locked: no new version) keeps its intervals. Returns the day rows written."""
    if intervals.empty:
        return 0
    keys = np.unique(series_key(intervals["meter_id"].to_numpy(), intervals["channel_id"].to_numpy()))
    versions = _day_versions(new_versions, keys)
    merged = intervals.merge(versions, on=["meter_id", "channel_id", "day"], how="inner")
    if merged.empty:
        return 0
    made_at = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    made_at_us = (made_at - pgcopy.PG_EPOCH) // timedelta(microseconds=1)
    first = merged["version"].to_numpy() == 1
    written = _copy_days(conn, "vee_interval_days", merged[first], made_at_us)
    if first.all():
        return written
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS vee_interval_days_new (LIKE vee_interval_days) ON COMMIT DROP")
    _copy_days(conn, "vee_interval_days_new", merged[~first], made_at_us)
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO vee_interval_days AS d SELECT * FROM vee_interval_days_new"
            " ON CONFLICT (meter_id, channel_id, day) DO UPDATE SET interval_s = excluded.interval_s,"
            " energy_kwh = excluded.energy_kwh, quality = excluded.quality, method = excluded.method,"
            " version = excluded.version, made_at = excluded.made_at"
            " WHERE d.interval_s <> excluded.interval_s OR d.quality <> excluded.quality"
            " OR d.method <> excluded.method OR EXISTS (SELECT FROM unnest(d.energy_kwh, excluded.energy_kwh) u(a, b)"
            "  WHERE a <> b AND NOT abs(a - b) <= 1e-9 + 1e-12 * abs(b))"  # NaN = NaN in PostgreSQL; NaN <= x never
        )
        written += cur.rowcount
    conn.execute("DROP TABLE vee_interval_days_new")
    return int(written)


def _copy_days(conn: psycopg.Connection, table: str, slots: pd.DataFrame, made_at_us: int) -> int:
    """The slots (interval_frame's, with a version) as one row per (meter, channel, day) by binary COPY into
    `table`: a day's slots by their index on its local grid, slots not in `slots` NaN and 'N'."""
    if slots.empty:
        return 0
    written = 0
    interval_s = slots["interval_s"].to_numpy(np.int64)
    for step in np.unique(interval_s):
        sel = slots[interval_s == step]
        n_slots = int(DAY_S // step)
        key = series_key(sel["meter_id"].to_numpy(), sel["channel_id"].to_numpy())
        day = sel["day"].to_numpy(np.int64)
        end_s = sel["interval_end_s"].to_numpy(np.int64)
        slot = (end_s - (day * DAY_S - LOCAL_UTC_OFFSET_S)) // step - 1
        # a day's slots must be adjacent (their order does not matter: they go to their index); interval_frame
        # gives them so, series by series in time order, and a sort of 12 M slots costs a second
        grouped = (key[1:] > key[:-1]) | ((key[1:] == key[:-1]) & (day[1:] >= day[:-1]))
        order = slice(None) if grouped.all() else np.lexsort((slot, day, key))
        key, day, slot = key[order], day[order], slot[order]
        new_day = np.r_[True, (key[1:] != key[:-1]) | (day[1:] != day[:-1])]
        starts = np.flatnonzero(new_day)
        row = np.cumsum(new_day) - 1
        n_days = starts.size
        energy = np.full((n_days, n_slots), np.nan)
        quality = np.full((n_days, n_slots), NO_VALUE, np.uint8)
        method = np.zeros((n_days, n_slots), np.int16)
        energy[row, slot] = sel["energy_kwh"].to_numpy(np.float64)[order]
        quality[row, slot] = sel["quality"].to_numpy(np.int16)[order]
        method[row, slot] = sel["method"].to_numpy(np.int16)[order]
        meter_id, channel_id = series_of_key(key[starts])
        columns = {
            "meter_id": meter_id,
            "channel_id": channel_id,
            "day": pgcopy.unix_days_to_pg_days(day[starts]),
            "interval_s": np.full(n_days, step, np.int32),
            "energy_kwh": energy,
            "quality": quality.view(f"S{n_slots}").ravel(),
            "method": method,
            "version": sel["version"].to_numpy(np.int32)[order][starts],
            "made_at": np.full(n_days, made_at_us, np.int64),
        }
        written += copy_fixed_rows(conn, table, day_rows(n_slots), columns, chunk_rows=DAY_COPY_CHUNK_ROWS)
    return written
