"""Billing from the continuous VEE's validated days: the days as the arrays the determinants take, and the
bill-ready gate that holds a customer (not the whole run) whose cycle is not ready. Pure numpy; billing.run reads
the tables (billing.load.fetch_validated_days, pending units, open episodes).

A cycle [start, end) is bill-ready when
- every day of it has a validated total (or, on a meter without one, every rate register) and no unit of it is
  still pending in vee_pending (data landed that the VEE service has not validated yet);
- no episode of a blocking severity (rules.bill_ready.blocking_severities) is open over it;
- at most rules.bill_ready.max_estimated_share of its intervals are estimated."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from billing import kernels as K
from billing.load import ValidatedDays
from billing.rules import BillReadyRules
from billing.vee import FlagRecords, PeriodWindow, VeeResult, empty_exceptions

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
    s_day = (start.astype("datetime64[D]") - _UNIX_EPOCH).astype(np.int64)
    e_day = (end.astype("datetime64[D]") - _UNIX_EPOCH).astype(np.int64)
    row = np.searchsorted(meter_id, days.meter_id)
    row = np.clip(row, 0, max(n - 1, 0))
    known = (meter_id[row] == days.meter_id) if n else np.zeros(len(days), bool)
    in_cycle = known & (days.day >= s_day[row]) & (days.day < e_day[row])
    version_sum = np.bincount(row[in_cycle], weights=days.version[in_cycle], minlength=n).astype(np.int64)
    # days with a total, or (meters without a total register) with the rate registers: one count per (meter, day)
    frame = pd.DataFrame({"row": row[in_cycle], "day": days.day[in_cycle], "ch": days.channel_id[in_cycle]})
    has_total = frame.groupby("row")["ch"].transform(lambda c: (c == 1).any()) if len(frame) else frame["ch"]
    counted = frame[(frame["ch"] == 1) | ~has_total.astype(bool)].drop_duplicates(["row", "day"])
    validated = np.bincount(counted["row"].to_numpy(np.int64), minlength=n).astype(np.int64)
    any_day = np.bincount(row[known], minlength=n) > 0
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
