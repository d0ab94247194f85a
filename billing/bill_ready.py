"""Billing from the continuous VEE's validated days: the determinants, and the bill-ready gate that holds a customer
(not the whole run) whose cycle is not ready; numpy on what billing.run read (billing.load.fetch_cycle_sums: each
series' days summed by PostgreSQL; or billing.load.fetch_validated_days: the days themselves, as the arrays
billing.pricing.determinants takes), the pending units and the open episodes. And the run's bills stored by binary
COPY (copy_frame_binary, BackgroundCopy), the estimates they used made final (finalize_billed_estimates) in the
same transaction.

A cycle [start, end) is bill-ready when
- every day of it has a validated total (or, on a meter without one, every rate register) and no unit of it is
  still pending in vee_pending (data landed that the VEE service has not validated yet);
- no episode of a blocking severity (rules.bill_ready.blocking_severities) is open over it;
- at most rules.bill_ready.max_estimated_share of its intervals are estimated."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
from numba import njit
from psycopg import sql
from psycopg.adapt import PyFormat

from amr import pgcopy
from billing import kernels as K
from billing.continuous import PASS_LOCK
from billing.load import CycleSums, MeterTable, ValidatedDays
from billing.pricing import Determinants
from billing.rules import BillReadyRules
from billing.vee import (
    ENERGY_CHANNELS,
    RATE_CHANNELS,
    TOTAL_CHANNEL,
    FlagRecords,
    PeriodWindow,
    VeeResult,
    empty_exceptions,
)

_UNIX_EPOCH = np.datetime64("1970-01-01", "D")


def days_as_vee(days: ValidatedDays, window: PeriodWindow) -> VeeResult:
    """The validated days in the window as a VeeResult (S series x D days; energy already after the multiplier,
    so billing.pricing.determinants is called with energy_multiplied=True). Days outside the window are dropped."""
    day0 = int((np.datetime64(window.first_day, "D") - _UNIX_EPOCH).astype(np.int64))
    d_idx = days.day - day0
    inside = (d_idx >= 0) & (d_idx < window.n_days)
    key = days.meter_id.astype(np.int64)[inside] << 16 | days.channel_id.astype(np.int64)[inside]
    series_key, s_idx = np.unique(key, return_inverse=True)
    d_idx = d_idx[inside]
    s_count, d_count = series_key.shape[0], window.n_days
    out = K.new_day_arrays(s_count, d_count)

    def put(target: np.ndarray, values: np.ndarray) -> None:
        target[s_idx, d_idx] = values[inside]

    put(out.measured_kwh, days.measured_kwh)
    put(out.estimated_kwh, days.estimated_kwh)
    put(out.n_measured, days.n_measured)
    put(out.n_estimated, days.n_estimated)
    put(out.flags, days.flags)
    put(out.methods, days.methods)
    empty = np.zeros(0, np.int64)
    return VeeResult(
        window=window,
        series_meter=(series_key >> 16).astype(np.int32),
        series_channel=(series_key & 0xFFFF).astype(np.int16),
        measured=out.measured_kwh,
        estimated=out.estimated_kwh,
        n_measured=out.n_measured,
        n_estimated=out.n_estimated,
        day_flags=out.flags,
        day_methods=out.methods,
        series_flags=np.zeros(s_count, np.uint32),
        series_interval_s=np.zeros(s_count, np.int64),
        hist_kwh_per_day=np.full(s_count, np.nan),
        seeded=np.zeros(s_count, bool),
        state=K.new_series_arrays(s_count),
        state_zero_days=np.zeros(s_count, np.int64),
        flag_records=FlagRecords(
            n_readings=0,
            seg=np.zeros(1, np.int64),
            read=empty,
            flags=np.zeros(0, np.uint32),
            start=empty,
            rows=np.zeros(K.VEE_CHUNKS, np.int64),
        ),
        exceptions=empty_exceptions(),
    )


@dataclass(frozen=True, kw_only=True)
class Readiness:
    """Per customer (the order of the meters given)."""

    held: np.ndarray  # bool
    reasons: np.ndarray  # object: '' or '; '-joined reasons
    validated_days: np.ndarray  # int64: cycle days with a validated total (or rate registers)
    version_sum: np.ndarray  # int64: sum of the versions of the cycle's validated days, every channel


def bill_ready(
    *,
    meter_id: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    days: ValidatedDays,
    pending_meter: np.ndarray,
    pending_day: np.ndarray,
    episode_meter: np.ndarray,
    episode_first_day: np.ndarray,
    episode_last_day: np.ndarray,
    estimated_share: np.ndarray,
    rules: BillReadyRules,
) -> Readiness:
    """The gate for customers `meter_id` (sorted) with cycles [start, end) (datetime64[D]); pending units and
    blocking open episodes as (meter, local day number) arrays; estimated_share per customer (NaN: no data).
    A customer without any validated day is not held here: it is billed as no_data, as before."""
    n = meter_id.shape[0]
    s_day, e_day = _day_numbers(start), _day_numbers(end)
    row = np.searchsorted(meter_id, days.meter_id)
    row = np.clip(row, 0, max(n - 1, 0))
    known = (meter_id[row] == days.meter_id) if n else np.zeros(len(days), bool)
    in_cycle = known & (days.day >= s_day[row]) & (days.day < e_day[row])
    version_sum = np.bincount(row[in_cycle], weights=days.version[in_cycle], minlength=n).astype(np.int64)
    # days with a total, or (meters without a total register) with the rate registers: one count per (meter, day)
    c_row, c_day, c_ch = row[in_cycle], days.day[in_cycle], days.channel_id[in_cycle]
    has_total = np.bincount(c_row[c_ch == TOTAL_CHANNEL], minlength=n) > 0
    counted = (c_ch == TOTAL_CHANNEL) | ~has_total[c_row]
    pairs = np.unique(c_row[counted].astype(np.int64) << 32 | c_day[counted])
    validated = np.bincount(pairs >> 32, minlength=n).astype(np.int64)
    any_day = np.bincount(row[known], minlength=n) > 0
    return _gate(
        meter_id=meter_id,
        s_day=s_day,
        e_day=e_day,
        validated=validated,
        any_day=any_day,
        version_sum=version_sum,
        pending_meter=pending_meter,
        pending_day=pending_day,
        episode_meter=episode_meter,
        episode_first_day=episode_first_day,
        episode_last_day=episode_last_day,
        estimated_share=estimated_share,
        rules=rules,
    )


def _day_numbers(d: np.ndarray) -> np.ndarray:
    return (d.astype("datetime64[D]") - _UNIX_EPOCH).astype(np.int64)


def _gate(
    *,
    meter_id: np.ndarray,
    s_day: np.ndarray,
    e_day: np.ndarray,
    validated: np.ndarray,
    any_day: np.ndarray,
    version_sum: np.ndarray,
    pending_meter: np.ndarray,
    pending_day: np.ndarray,
    episode_meter: np.ndarray,
    episode_first_day: np.ndarray,
    episode_last_day: np.ndarray,
    estimated_share: np.ndarray,
    rules: BillReadyRules,
) -> Readiness:
    """Held customers and their reasons from each cycle's validated-day count and the pending units and episodes."""
    n = meter_id.shape[0]
    cycle_days = e_day - s_day

    def hits(m: np.ndarray, first: np.ndarray, last: np.ndarray) -> np.ndarray:
        """Customers with an item (meter m, local days first..last) overlapping their cycle."""
        out = np.zeros(n, bool)
        if m.size == 0 or n == 0:
            return out
        r = np.clip(np.searchsorted(meter_id, m), 0, n - 1)
        ok = (meter_id[r] == m) & (first < e_day[r]) & (last >= s_day[r])
        out[r[ok]] = True
        return out

    pending = hits(pending_meter, pending_day, pending_day)
    blocked = hits(episode_meter, episode_first_day, episode_last_day)
    too_estimated = np.nan_to_num(estimated_share, nan=0.0) > rules.max_estimated_share
    missing = any_day & (validated < cycle_days)
    reasons = np.full(n, "", dtype=object)
    held = np.zeros(n, bool)
    for mask, text in (
        (missing, lambda i: f"{cycle_days[i] - validated[i]} of {cycle_days[i]} days not validated"),
        (pending & any_day, lambda i: "readings waiting for validation"),
        (blocked & any_day, lambda i: "open blocking exception episode"),
        (too_estimated & any_day, lambda i: f"{estimated_share[i]:.0%} of intervals estimated"),
    ):
        for i in np.flatnonzero(mask):
            reasons[i] = f"{reasons[i]}; {text(i)}" if reasons[i] else text(i)
        held |= mask & any_day
    return Readiness(held=held, reasons=reasons, validated_days=validated, version_sum=version_sum)


def _bits_below(t: np.ndarray) -> np.ndarray:
    """Day masks with bits 0 .. t-1 set (t <= 63)."""
    return (np.left_shift(np.uint64(1), t.astype(np.uint64)) - np.uint64(1)).astype(np.uint64)


def cycle_determinants(
    sums: CycleSums, meters: MeterTable, start: np.ndarray, end: np.ndarray, window: PeriodWindow
) -> Determinants:
    """billing.pricing.determinants(days_as_vee(days, window), meters, start, end, energy_multiplied=True), bit for
    bit, from the per-series sums PostgreSQL made of the same days (billing.load.fetch_cycle_sums).

    determinants sums each series' days in order with NumPy (a day without a row adds +0.0), then takes the
    difference of the cumulative sums at the cycle's end and start; PostgreSQL summed the same values in the same
    order without the absent days. Adding +0.0 changes nothing but the sign of a zero, so a sum is given +0.0
    where its days had a gap."""
    out = Determinants.empty(len(meters))
    if len(sums) == 0:
        return out
    row = np.searchsorted(meters.meter_id, sums.meter_id)
    first = np.datetime64(window.first_day, "D")
    s_idx = (start[row] - first).astype(np.int64)
    e_idx = (end[row] - first).astype(np.int64)

    def to_day(total: np.ndarray, t: np.ndarray) -> np.ndarray:
        below = _bits_below(t)
        return np.where(sums.day_mask & below != below, total + 0.0, total)

    mult = np.ones(row.shape[0])
    energy = (to_day(sums.energy_to_end, e_idx) - to_day(sums.energy_to_start, s_idx)) * mult
    estimated = (to_day(sums.estimated_to_end, e_idx) - to_day(sums.estimated_to_start, s_idx)) * mult
    np.bitwise_or.at(out.flags, row, sums.flags)
    total = sums.channel_id == TOTAL_CHANNEL
    out.total_kwh[row[total]] = energy[total]
    out.estimated_kwh[row[total]] = estimated[total]
    out.n_measured[row[total]] = sums.n_measured[total]
    out.n_estimated[row[total]] = sums.n_estimated[total]
    for k, ch in enumerate(RATE_CHANNELS):
        m = sums.channel_id == ch
        out.rate_kwh[row[m], k] = energy[m]
    # Without a total register, the rate registers' sum is the total.
    no_total = np.isnan(out.total_kwh) & ~np.isnan(out.rate_kwh).any(axis=1)
    out.total_kwh[no_total] = out.rate_kwh[no_total].sum(axis=1)
    return out


def cycle_bill_ready(
    *,
    meter_id: np.ndarray,
    start: np.ndarray,
    end: np.ndarray,
    window: PeriodWindow,
    sums: CycleSums,
    pending_meter: np.ndarray,
    pending_day: np.ndarray,
    episode_meter: np.ndarray,
    episode_first_day: np.ndarray,
    episode_last_day: np.ndarray,
    estimated_share: np.ndarray,
    rules: BillReadyRules,
) -> Readiness:
    """bill_ready() from the per-series sums (their day masks and version sums) instead of the days."""
    n = meter_id.shape[0]
    s_day, e_day = _day_numbers(start), _day_numbers(end)
    day0 = int((np.datetime64(window.first_day, "D") - _UNIX_EPOCH).astype(np.int64))
    row = np.searchsorted(meter_id, sums.meter_id)
    row = np.clip(row, 0, max(n - 1, 0))
    known = (meter_id[row] == sums.meter_id) if n else np.zeros(len(sums), bool)
    row, s = row[known], np.flatnonzero(known)
    cycle = _bits_below(e_day - day0)[row] & ~_bits_below(s_day - day0)[row]
    mask = sums.day_mask[s] & cycle
    version_sum = np.bincount(row, weights=sums.version_sum[s], minlength=n).astype(np.int64)
    total_days = np.zeros(n, np.uint64)
    all_days = np.zeros(n, np.uint64)
    is_total = sums.channel_id[s] == TOTAL_CHANNEL
    np.bitwise_or.at(total_days, row[is_total], mask[is_total])
    np.bitwise_or.at(all_days, row, mask)
    # days with a total, or (meters without a total register in the cycle) with the rate registers
    validated = np.bitwise_count(np.where(total_days != 0, total_days, all_days)).astype(np.int64)
    any_day = np.bincount(row, minlength=n) > 0
    return _gate(
        meter_id=meter_id,
        s_day=s_day,
        e_day=e_day,
        validated=validated,
        any_day=any_day,
        version_sum=version_sum,
        pending_meter=pending_meter,
        pending_day=pending_day,
        episode_meter=episode_meter,
        episode_first_day=episode_first_day,
        episode_last_day=episode_last_day,
        estimated_share=estimated_share,
        rules=rules,
    )


# -- storing the bills ---------------------------------------------------------------------------------------------
# A city's bills by binary COPY (billing.store.copy_frame writes CSV: pandas' text formatting of millions of rows
# costs several times the binary encoding). The table's column types name each field's wire format.
_FIXED_WIRE = {
    "smallint": ">i2",
    "integer": ">i4",
    "bigint": ">i8",
    "real": ">f4",
    "double precision": ">f8",
    "boolean": "u1",
    "date": ">i4",
}
BINARY_COPY_CHUNK_ROWS = 200_000  # rows encoded and written at a time (~60 MB of bill tuples)


@dataclass(frozen=True)
class _Column:
    """One column's wire values: fixed-width (`values`, big-endian), or variable: value v's bytes are
    pool[offsets[v]:offsets[v + 1]], and row i has value codes[i], or value i when `codes` is None. `null`: True
    where NULL (or codes -1)."""

    values: np.ndarray | None = None
    null: np.ndarray | None = None
    codes: np.ndarray | None = None
    pool: np.ndarray | None = None
    offsets: np.ndarray | None = None


def _csv_decimal(value: object) -> Decimal:
    """A numeric value as the CSV writes it: a Decimal or an integer as it is (not through a float: digits and
    scale), a float by its shortest text."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        return Decimal(int(value))
    return Decimal(repr(float(value)))  # type: ignore[arg-type]


def _column(series: pd.Series, pg_type: str, *, keep_empty: bool, conn: psycopg.Connection, name: str) -> _Column:
    """As copy_frame's CSV would have it: NaN, None and (unless keep_empty) empty text are NULL."""
    if pg_type == "text":  # through Arrow: UTF-8 bytes and offsets without a Python object per row
        text = pa.array(series, type=pa.large_string(), from_pandas=True)
        if isinstance(text, pa.ChunkedArray):  # pandas' Arrow-backed strings
            text = text.combine_chunks()
        if keep_empty:  # the CSV writes a NULL as an empty field, which FORCE_NOT_NULL reads as ''
            text = text.fill_null("")
        n = len(text)
        buffers = text.buffers()
        offsets = np.frombuffer(buffers[1], dtype=np.int64, count=n + 1, offset=text.offset * 8)
        pool = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
        null = text.is_null().to_numpy(zero_copy_only=False)
        if not keep_empty:
            null = null | (np.diff(offsets) == 0)
        return _Column(null=null, pool=pool, offsets=offsets)
    null = series.isna().to_numpy()
    if pg_type == "numeric":  # psycopg's binary numeric of each distinct float's shortest text, as the CSV had it
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        dumper = conn.adapters.get_dumper(Decimal, PyFormat.BINARY)(Decimal, conn)
        encoded = [bytes(dumper.dump(_csv_decimal(u)) or b"") for u in uniques]
        return _Column(
            codes=codes.astype(np.int64),
            pool=np.frombuffer(b"".join(encoded), dtype=np.uint8),
            offsets=np.concatenate([[0], np.cumsum([len(b) for b in encoded])]).astype(np.int64),
        )
    if pg_type == "date":  # datetime64 or datetime.date objects, through Arrow's date32
        dates = pa.array(series, type=pa.date32(), from_pandas=True).fill_null(0)
        days = dates.to_numpy(zero_copy_only=False).astype("datetime64[D]").astype(np.int64)
        return _Column(values=(days - pgcopy.PG_EPOCH_UNIX_DAYS).astype(">i4"), null=null)
    if pg_type not in _FIXED_WIRE:
        raise ValueError(f"column {name}: no binary COPY of {pg_type}")
    dtype = np.dtype(_FIXED_WIRE[pg_type])
    values = np.asarray(series.to_numpy())
    if null.any():
        values = np.where(null, 0, values)
    if dtype.kind == "i" and values.size:
        info = np.iinfo(dtype)
        if values.min() < info.min or values.max() > info.max:
            raise ValueError(f"column {name}: values outside {pg_type}")
    return _Column(values=values.astype(dtype), null=null)


def _encode_tuples(columns: list[_Column], lo: int, hi: int) -> np.ndarray:
    """The binary COPY tuples of rows [lo, hi), in order, as bytes (uint8)."""
    n = hi - lo
    fixed = [c.values for c in columns if c.values is not None]
    record = np.empty(n, dtype=[(f"f{k}", v.dtype) for k, v in enumerate(fixed)])
    for k, v in enumerate(fixed):
        record[f"f{k}"] = v[lo:hi]
    width = np.array([v.dtype.itemsize for v in fixed], np.int64)
    fixed_null = np.zeros((n, len(fixed)), bool)
    # the variable columns' values as [start, end) of one pool, for these rows
    codes = np.empty((n, len(columns) - len(fixed)), np.int64)
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    pools: list[np.ndarray] = []
    values = size = 0  # in the pool so far
    k = f = 0
    for c in columns:
        if c.values is not None:
            if c.null is not None:
                fixed_null[:, f] = c.null[lo:hi]
            f += 1
            continue
        assert c.pool is not None and c.offsets is not None
        if c.codes is None:  # a value per row: these rows' bytes
            first, last = int(c.offsets[lo]), int(c.offsets[hi])
            pools.append(c.pool[first:last])
            starts.append(c.offsets[lo:hi] - first + size)
            ends.append(c.offsets[lo + 1 : hi + 1] - first + size)
            assert c.null is not None
            codes[:, k] = np.where(c.null[lo:hi], -1, np.arange(n) + values)
        else:  # a few distinct values
            pools.append(c.pool)
            starts.append(c.offsets[:-1] + size)
            ends.append(c.offsets[1:] + size)
            part = c.codes[lo:hi]
            codes[:, k] = np.where(part >= 0, part + values, -1)
        values += starts[-1].shape[0]
        size += pools[-1].shape[0]
        k += 1
    start = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    end = np.concatenate(ends) if ends else np.zeros(0, np.int64)
    pool = np.concatenate(pools) if pools else np.zeros(0, np.uint8)
    kind = np.array([0 if c.values is not None else 1 for c in columns], np.int64)
    index = np.zeros(len(columns), np.int64)
    index[kind == 0] = np.arange(len(fixed))
    index[kind == 1] = np.arange(len(columns) - len(fixed))
    row_start = np.empty(n + 1, np.int64)
    _tuple_starts(fixed_null, width, codes, start, end, row_start)
    out = np.empty(int(row_start[-1]), np.uint8)
    _write_tuples(
        record.view(np.uint8).reshape(n, record.dtype.itemsize),
        fixed_null,
        (np.cumsum(width) - width).astype(np.int64),
        width,
        codes,
        start,
        end,
        pool,
        kind,
        index,
        row_start,
        out,
    )
    return out


@njit(cache=True, nogil=True)
def _tuple_starts(
    fixed_null: np.ndarray, width: np.ndarray, codes: np.ndarray, start: np.ndarray, end: np.ndarray, out: np.ndarray
) -> None:
    """out[i]: row i's first byte; out[-1]: the total."""
    n_fixed, n_var = width.shape[0], codes.shape[1]
    p = 0
    for i in range(fixed_null.shape[0]):
        out[i] = p
        p += 2 + 4 * (n_fixed + n_var)
        for f in range(n_fixed):
            if not fixed_null[i, f]:
                p += width[f]
        for v in range(n_var):
            c = codes[i, v]
            if c >= 0:
                p += end[c] - start[c]
    out[fixed_null.shape[0]] = p


@njit(cache=True, nogil=True)
def _write_tuples(
    fixed: np.ndarray,  # (rows, record bytes) the fixed-width columns' wire bytes, side by side
    fixed_null: np.ndarray,  # (rows, fixed columns)
    fixed_at: np.ndarray,  # each fixed column's first byte in a record
    width: np.ndarray,
    codes: np.ndarray,  # (rows, variable columns) into start / end, -1: NULL
    start: np.ndarray,
    end: np.ndarray,
    pool: np.ndarray,
    kind: np.ndarray,  # (columns,) 0 fixed, 1 variable
    index: np.ndarray,  # (columns,) the column among the fixed or the variable ones
    row_start: np.ndarray,
    out: np.ndarray,
) -> None:
    """Each row's tuple at out[row_start[i]:]: the field count, then per column its int32 length (-1: NULL) and
    its bytes."""
    n_columns = kind.shape[0]
    for i in range(row_start.shape[0] - 1):
        p = row_start[i]
        out[p] = (n_columns >> 8) & 0xFF
        out[p + 1] = n_columns & 0xFF
        p += 2
        for j in range(n_columns):
            length = -1
            if kind[j] == 0:
                f = index[j]
                if not fixed_null[i, f]:
                    length = width[f]
                    out[p + 4 : p + 4 + length] = fixed[i, fixed_at[f] : fixed_at[f] + length]
            else:
                c = codes[i, index[j]]
                if c >= 0:
                    length = end[c] - start[c]
                    out[p + 4 : p + 4 + length] = pool[start[c] : end[c]]
            out[p] = (length >> 24) & 0xFF
            out[p + 1] = (length >> 16) & 0xFF
            out[p + 2] = (length >> 8) & 0xFF
            out[p + 3] = length & 0xFF
            p += 4 + max(length, 0)


def copy_frame_binary(
    conn: psycopg.Connection,
    table: str,
    frame: pd.DataFrame,
    *,
    not_null: tuple[str, ...] = (),
    chunk_rows: int = BINARY_COPY_CHUNK_ROWS,
) -> int:
    """billing.store.copy_frame by binary COPY: the same rows stored (NaN, None and, outside `not_null`, empty text
    as NULL; in a `not_null` text column a missing value is '', as FORCE_NOT_NULL reads the CSV's empty field;
    numeric from the floats' shortest text, Decimals and integers as they are), the fields in the table's column
    types (smallint, integer, bigint, real, double precision, boolean, date, numeric, text)."""
    if frame.empty:
        return 0
    types: dict[str, str] = dict(
        conn.execute(
            "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (table,),
        ).fetchall()
    )
    columns = [_column(frame[c], types[c], keep_empty=c in not_null, conn=conn, name=str(c)) for c in frame.columns]
    query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
    )
    with conn.cursor() as cur, cur.copy(query) as copy:
        copy.write(pgcopy.HEADER)
        for lo in range(0, len(frame), chunk_rows):
            copy.write(_encode_tuples(columns, lo, min(lo + chunk_rows, len(frame))).data)
        copy.write(pgcopy.TRAILER)
    return len(frame)


# A city's bills: PostgreSQL's part (heap, primary key, constraints) is most of a COPY's cost, so the rows go in
# on this many connections at once, in one transaction each, committed together.
COPY_STREAMS = 2


class BackgroundCopy:
    """copy_frame_binary of `frame` into `table` in threads started at once, on `streams` connections to
    `conninfo` (contiguous parts of the rows): the database stores the rows while the caller goes on (its
    exports). wait() commits them all if every part went in (else none) and returns the seconds from the start, or
    raises what a copy raised.

    `unique`: the table's key columns. Rows that repeat a key are refused here (ValueError), before any copy: in
    two streams the second would wait for the first's transaction, which only wait() commits, for ever."""

    def __init__(
        self,
        conninfo: str,
        table: str,
        frame: pd.DataFrame,
        *,
        not_null: tuple[str, ...] = (),
        unique: tuple[str, ...] = (),
        streams: int = COPY_STREAMS,
    ) -> None:
        repeats = frame.duplicated(list(unique), keep=False) if unique else None
        if repeats is not None and repeats.any():
            repeated = frame.loc[repeats, list(unique)].head(3)
            raise ValueError(f"{table}: rows repeat the key {unique}, e.g. {repeated.to_dict('records')}")
        self._t0 = time.perf_counter()
        self._conns: list[psycopg.Connection] = []
        self._errors: list[BaseException] = []
        self._lock = threading.Lock()
        bounds = np.linspace(0, len(frame), max(1, min(streams, len(frame))) + 1).astype(np.int64)
        self._threads = [
            threading.Thread(
                target=self._copy,
                args=(conninfo, table, frame.iloc[lo:hi], not_null),
                name=f"copy-{table}-{k}",
                daemon=True,
            )
            for k, (lo, hi) in enumerate(itertools.pairwise(bounds.tolist()))
        ]
        for thread in self._threads:
            thread.start()

    def _copy(self, conninfo: str, table: str, part: pd.DataFrame, not_null: tuple[str, ...]) -> None:
        try:
            conn = psycopg.connect(conninfo)  # a transaction, committed in wait()
            with self._lock:
                self._conns.append(conn)
            copy_frame_binary(conn, table, part, not_null=not_null)
        except BaseException as exc:  # handed to wait()
            with self._lock:
                self._errors.append(exc)

    def wait(
        self, *, raise_error: bool = True, before_commit: Callable[[psycopg.Connection], object] | None = None
    ) -> float:
        """`before_commit(conn)`: run on each stream's connection, in its transaction (which sees its own rows and
        not the other streams'), once every part went in and before any commits."""
        for thread in self._threads:
            thread.join()
        error = self._errors[0] if self._errors else None
        if error is None and before_commit is not None:
            try:
                for conn in self._conns:
                    before_commit(conn)
            except BaseException as exc:  # every part is rolled back
                error = exc
        for conn in self._conns:
            try:
                if error is None:
                    conn.commit()
                else:
                    conn.rollback()
            except BaseException as exc:  # the parts not yet committed are rolled back
                error = error or exc
            finally:
                conn.close()
        if error is not None and raise_error:
            raise error
        return time.perf_counter() - self._t0


# -- final versions of the billed estimates ------------------------------------------------------------------------
# One statement, in the transaction that stores the bills (sql/095_final_versions.sql): every current estimated day
# (E, S, V; through the partial index vee_daily_estimated) of a billed customer's cycle, on the channels whose
# versions the bill summed, that is still the version the run read (made at or before its snapshot: a pass that
# committed since took the pass lock after the run let it go, and so started later; an edit since is newer too),
# gets version + 1 with quality F and the same values, and the bill's version sum counts it. Rows locked first
# (FOR UPDATE, re-checked on a concurrent change) so a person's edit of the same day waits instead of deadlocking.
# Only the bills this transaction sees: its own (the other streams' are not committed yet).
FINALIZE_BILLED_ESTIMATES = """
WITH billed AS (
    SELECT meter_id, cycle_start, cycle_end FROM bills
    WHERE run_id = %(run_id)s AND bill_kind = 'bill' AND status = 'billed'
), estimated AS (
    SELECT d.meter_id, d.channel_id, d.day, d.version, d.measured_kwh, d.estimated_kwh, d.n_measured, d.n_estimated,
           d.flags, d.methods, d.method
    FROM billed b JOIN vee_daily d ON d.meter_id = b.meter_id AND d.day >= b.cycle_start AND d.day < b.cycle_end
    WHERE d.quality IN ('E', 'S', 'V') AND d.channel_id = ANY(%(channels)s::smallint[]) AND d.made_at <= %(as_of)s
    FOR UPDATE OF d
), finals AS (
    INSERT INTO vee_daily_versions (meter_id, channel_id, day, version, measured_kwh, estimated_kwh, n_measured,
        n_estimated, flags, methods, quality, method, reason, made_by, note)
    SELECT meter_id, channel_id, day, version + 1, measured_kwh, estimated_kwh, n_measured, n_estimated, flags,
           methods, 'F', method, 'billed', %(made_by)s, %(note)s
    FROM estimated
    RETURNING meter_id, channel_id, day, version, made_at
), made_current AS (
    UPDATE vee_daily d SET version = f.version, quality = 'F', reason = 'billed', made_at = f.made_at
    FROM finals f
    WHERE d.meter_id = f.meter_id AND d.channel_id = f.channel_id AND d.day = f.day AND d.version = f.version - 1
    RETURNING d.meter_id
), grown AS (
    UPDATE bills b SET determinant_versions = b.determinant_versions + c.days
    FROM (SELECT meter_id, count(*) AS days FROM made_current GROUP BY meter_id) c
    WHERE b.run_id = %(run_id)s AND b.bill_kind = 'bill' AND b.meter_id = c.meter_id
    RETURNING c.days
)
SELECT count(*), coalesce(sum(days), 0) FROM grown
"""


def finalize_billed_estimates(conn: psycopg.Connection, *, run_id: int, data_as_of: datetime) -> tuple[int, int]:
    """Make the estimated days the run's billed bills (those `conn`'s transaction sees) used final versions (F,
    reason 'billed'), and count them in the bills' version sums: FINALIZE_BILLED_ESTIMATES, under the VEE pass lock
    taken shared (no pass writes meanwhile; the bill streams do not wait for each other). Returns (bills, days)
    made final."""
    conn.execute("SELECT pg_advisory_xact_lock_shared(%s)", (PASS_LOCK,))
    row = conn.execute(
        FINALIZE_BILLED_ESTIMATES,
        {
            "run_id": run_id,
            "channels": list(ENERGY_CHANNELS),
            "as_of": data_as_of,
            "made_by": f"bill-run {run_id}",
            "note": f"billed by run {run_id}",
        },
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])
