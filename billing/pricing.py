"""Billing determinants and bills: each customer's energy over its own cycle from the VEE result (determinants),
then priced on the tariff book (tiered household tariffs, TOU tariffs, VAT) into one bill row per customer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from billing import flags as F
from billing.charges import household_charges, price_flags, round_half_up_div, tou_charges, vat_vnd
from billing.load import MeterTable
from billing.tariff_book import TariffBook
from billing.vee import RATE_CHANNELS, TOTAL_CHANNEL, VeeResult


@dataclass(kw_only=True)
class Determinants:
    """Per meter, over its own cycle, after the multiplier [kWh]."""

    total_kwh: np.ndarray
    rate_kwh: np.ndarray  # (n, 3) normal, peak, off-peak; NaN without the register
    estimated_kwh: np.ndarray
    n_measured: np.ndarray
    n_estimated: np.ndarray
    flags: np.ndarray  # uint32

    @classmethod
    def empty(cls, n: int) -> Determinants:
        """n meters without consumption (NaN energy: no data)."""
        return cls(
            total_kwh=np.full(n, np.nan),
            rate_kwh=np.full((n, 3), np.nan),
            estimated_kwh=np.zeros(n),
            n_measured=np.zeros(n, np.int64),
            n_estimated=np.zeros(n, np.int64),
            flags=np.zeros(n, np.uint32),
        )

    @classmethod
    def concat(cls, parts: list[Determinants], n: int) -> Determinants:
        """The partitions' determinants in order (n meters in all)."""
        if not parts:
            return cls.empty(n)
        return cls(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in cls.__dataclass_fields__})


def determinants(
    vee: VeeResult, meters: MeterTable, start: np.ndarray, end: np.ndarray, *, energy_multiplied: bool = False
) -> Determinants:
    """Each meter's determinants over its cycle [start, end) (datetime64[D]) from one partition's VEE result;
    `energy_multiplied`: the result's energy is already after the meter multiplier (the validated days)."""
    out = Determinants.empty(len(meters))
    if vee.series_meter.size == 0:
        return out
    row = np.searchsorted(meters.meter_id, vee.series_meter)
    first = np.datetime64(vee.window.first_day, "D")
    s_idx = (start[row] - first).astype(np.int64)
    e_idx = (end[row] - first).astype(np.int64)
    ar = np.arange(row.shape[0])

    def cycle_sum(a: np.ndarray) -> np.ndarray:
        cum = np.concatenate([np.zeros((a.shape[0], 1), a.dtype), np.cumsum(a, axis=1)], axis=1)
        return cum[ar, e_idx] - cum[ar, s_idx]

    mult = np.ones(row.shape[0]) if energy_multiplied else meters.multiplier[row]
    energy = cycle_sum(vee.measured + vee.estimated) * mult
    estimated = cycle_sum(vee.estimated) * mult
    n_meas = cycle_sum(vee.n_measured.astype(np.int64))
    n_est = cycle_sum(vee.n_estimated.astype(np.int64))
    series_flags = vee.series_flags.copy()
    days = np.arange(vee.day_flags.shape[1])
    for d in days:
        inside = (d >= s_idx) & (d < e_idx)
        series_flags |= np.where(inside, vee.day_flags[:, d], 0).astype(np.uint32)
    np.bitwise_or.at(out.flags, row, series_flags)
    total = vee.series_channel == TOTAL_CHANNEL
    out.total_kwh[row[total]] = energy[total]
    out.estimated_kwh[row[total]] = estimated[total]
    out.n_measured[row[total]] = n_meas[total]
    out.n_estimated[row[total]] = n_est[total]
    for k, ch in enumerate(RATE_CHANNELS):
        m = vee.series_channel == ch
        out.rate_kwh[row[m], k] = energy[m]
    # Without a total register, the rate registers' sum is the total.
    no_total = np.isnan(out.total_kwh) & ~np.isnan(out.rate_kwh).any(axis=1)
    out.total_kwh[no_total] = out.rate_kwh[no_total].sum(axis=1)
    return out


def _kwh_int(x: np.ndarray) -> np.ndarray:
    """Billed integer kWh, rounded half up (NaN -> 0)."""
    milli = np.round(np.nan_to_num(x) * 1000).astype(np.int64)
    return np.asarray(round_half_up_div(np.maximum(milli, 0), 1000), dtype=np.int64)


def price_bills(
    meters: MeterTable, det: Determinants, start: np.ndarray, end: np.ndarray, book: TariffBook
) -> pd.DataFrame:
    """One row per customer with determinants, amounts and quality flags (the bills table's columns, BILL_DB_COLUMNS,
    and the serial)."""
    n = len(meters)
    kwh = _kwh_int(det.total_kwh)
    rates = np.stack([_kwh_int(det.rate_kwh[:, k]) for k in range(3)], axis=1)
    amount = np.zeros(n, np.int64)
    vat = np.zeros(n, np.int64)
    vat_pct = np.zeros(n, np.float64)
    versions = np.full(n, "", dtype=object)
    provisional = np.zeros(n, bool)
    status = np.full(n, "billed", dtype=object)
    extra_flags = np.full(n, "", dtype=object)
    has_data = ~np.isnan(det.total_kwh)
    status[~has_data] = "no_data"
    key = pd.DataFrame({"cls": meters.tariff_class, "start": start, "end": end, "h": meters.households})
    groups: dict[tuple[str, Any, Any, int], np.ndarray] = key.groupby(  # type: ignore[assignment]
        ["cls", "start", "end", "h"]
    ).indices
    for (cls, c_start, c_end, households), idx in groups.items():
        idx = idx[has_data[idx]]
        if idx.size == 0:
            continue
        cycle_start, cycle_end = pd.Timestamp(c_start).date(), pd.Timestamp(c_end).date()
        if cls in book.tiered:
            ch = household_charges(
                kwh[idx],
                tariff=book.tiered[cls],
                cycle_start=cycle_start,
                cycle_end=cycle_end,
                households=int(households),
            )
        elif (prices := book.tou_prices(cls)) is not None:
            r = rates[idx].copy()
            missing = np.isnan(det.rate_kwh[idx]).any(axis=1)
            # no rate registers: the whole energy at the normal rate, flagged for review
            r[missing] = np.stack(
                [kwh[idx][missing], np.zeros(missing.sum(), np.int64), np.zeros(missing.sum(), np.int64)], axis=1
            )
            extra_flags[idx[missing]] = "NO_TOU_REGISTERS"
            ch = tou_charges(r[:, 0], r[:, 1], r[:, 2], prices=prices, cycle_start=cycle_start, cycle_end=cycle_end)
        else:
            status[idx] = "no_tariff"
            continue
        # Provisional or outdated prices are named on the bill (quality flags) and counted in the run summary.
        flagged = price_flags(ch.parts, book.price_rounds)
        provisional[idx] = F.PROVISIONAL_PRICE in flagged
        if flagged:
            extra_flags[idx] = [",".join([*filter(None, [e]), *flagged]) for e in extra_flags[idx]]
        rate = book.vat_on(cycle_end)
        amount[idx] = ch.amount_vnd
        vat[idx] = vat_vnd(ch.amount_vnd, rate.basis_points)
        vat_pct[idx] = rate.percent
        versions[idx] = f"{cls}:{ch.versions_label}"
    billed = status == "billed"
    kwh = np.where(billed, kwh, 0)
    quality = [
        ",".join([*F.flag_codes(int(f)), *([e] if e else [])]) for f, e in zip(det.flags, extra_flags, strict=True)
    ]
    share = np.divide(
        det.n_estimated, det.n_measured + det.n_estimated, out=np.zeros(n), where=(det.n_measured + det.n_estimated) > 0
    )
    return pd.DataFrame(
        {
            "meter_id": meters.meter_id,
            "serial": meters.serial,
            "customer_code": meters.customer_code,
            "city": meters.city,
            "power_company": meters.power_company,
            "tariff_class": meters.tariff_class,
            "cycle_start": pd.to_datetime(start).date,
            "cycle_end": pd.to_datetime(end).date,
            "days": (end - start).astype(np.int64),
            "households": meters.households,
            "multiplier": meters.multiplier,
            "energy_kwh": kwh,
            "normal_kwh": np.where(billed & ~np.isnan(det.rate_kwh[:, 0]), rates[:, 0], 0),
            "peak_kwh": np.where(billed & ~np.isnan(det.rate_kwh[:, 1]), rates[:, 1], 0),
            "offpeak_kwh": np.where(billed & ~np.isnan(det.rate_kwh[:, 2]), rates[:, 2], 0),
            "estimated_kwh": np.round(det.estimated_kwh, 3),
            "estimated_share": np.round(share, 4),
            "amount_vnd": amount,
            "vat_percent": vat_pct,
            "vat_vnd": vat,
            "total_vnd": amount + vat,
            "tariff_versions": versions,
            "provisional_prices": provisional,
            "quality_flags": quality,
            "status": status,
        }
    )


BILL_DB_COLUMNS = [  # the bills table's columns among price_bills' (the serial is for the exports)
    "meter_id",
    "customer_code",
    "city",
    "power_company",
    "tariff_class",
    "cycle_start",
    "cycle_end",
    "days",
    "households",
    "multiplier",
    "energy_kwh",
    "normal_kwh",
    "peak_kwh",
    "offpeak_kwh",
    "estimated_kwh",
    "amount_vnd",
    "vat_percent",
    "vat_vnd",
    "total_vnd",
    "tariff_versions",
    "quality_flags",
    "status",
]
