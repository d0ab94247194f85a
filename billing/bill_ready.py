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

import numpy as np
import pandas as pd
import psycopg

from billing import kernels as K
from billing.binary_copy import copy_frame_binary
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
    series_key,
    series_of_key,
)

_UNIX_EPOCH = np.datetime64("1970-01-01", "D")


def days_as_vee(days: ValidatedDays, window: PeriodWindow) -> VeeResult:
    """The validated days in the window as a VeeResult (S series x D days; energy already after the multiplier,
    so billing.pricing.determinants is called with energy_multiplied=True). Days outside the window are dropped."""
    day0 = int((np.datetime64(window.first_day, "D") - _UNIX_EPOCH).astype(np.int64))
    d_idx = days.day - day0
    inside = (d_idx >= 0) & (d_idx < window.n_days)
    keys, s_idx = np.unique(series_key(days.meter_id[inside], days.channel_id[inside]), return_inverse=True)
    d_idx = d_idx[inside]
    s_count, d_count = keys.shape[0], window.n_days
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
    series_meter, series_channel = series_of_key(keys)
    return VeeResult(
        window=window,
        series_meter=series_meter,
        series_channel=series_channel,
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
