"""Bill amounts in integer VND, vectorized over customers that share a cycle and a tariff.

Rounding (EVN household rule in tariffs, documented once here):
- billed energy is an integer [kWh]: the validated period energy after the multiplier, rounded half up;
- a period across a price change: kWh at each earlier price = round_half_up(S x N_j / T) (N_j days at that
  price, T days in the period), the last part takes the rest, so the parts add up to S exactly; when the
  meter was read on the change day, each part comes from its own reading instead (kwh_parts);
- tier sizes: M_i x households x N_j / T_ref, rounded half up per tier, with T_ref = T for a period of one
  calendar month (read day to read day) and T_ref = standard_month_days (30) otherwise, so a 48-56 day period
  gets larger tiers and a split whole month gets tiers that add up to the monthly ones;
- money: kWh x VND/kWh is exact in integers; VAT = round_half_up(amount x basis points / 10,000).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from itertools import pairwise
from typing import Any

import numpy as np

from billing import flags as F
from billing.tariff_book import PriceRound, TieredFile, TieredVersion, TouPrice


def round_half_up_div(num: Any, den: int) -> Any:
    """round(num / den) with halves up, exact for non-negative integers (Python ints or int64 arrays)."""
    return (2 * num + den) // (2 * den)


@dataclass(frozen=True, kw_only=True)
class Part:
    version: Any  # TieredVersion or TouPrice
    start: date
    days: int


def cycle_parts(versions: list[Any], start: date, end: date) -> list[Part]:
    """Split local days [start, end) by the tariff versions in force; one part per version."""
    if end <= start:
        raise ValueError(f"empty billing cycle {start} .. {end}")
    bounds = [start] + [v.effective_from for v in versions if start < v.effective_from < end] + [end]
    parts: list[Part] = []
    for a, b in pairwise(bounds):
        current = None
        for v in versions:
            if v.effective_from <= a:
                current = v
        if current is None:
            raise ValueError(f"no tariff version in force on {a}")
        parts.append(Part(version=current, start=a, days=(b - a).days))
    return parts


def price_flags(parts: Sequence[Part], rounds: Sequence[PriceRound]) -> list[str]:
    """The price flags of a bill priced in `parts`: PROVISIONAL_PRICE when a part's version is provisional,
    OUTDATED_PRICE when EVN's latest average-price round in force on a part's last day is newer than its
    version (the tariff data lacks that round's prices)."""
    out = []
    if any(bool(getattr(p.version, "provisional", False)) for p in parts):
        out.append(F.PROVISIONAL_PRICE)
    for p in parts:
        last_day = p.start + timedelta(days=p.days - 1)
        latest = max((r.effective_from for r in rounds if r.effective_from <= last_day), default=None)
        if latest is not None and latest > p.version.effective_from:
            out.append(F.OUTDATED_PRICE)
            break
    return out


def split_kwh(kwh: np.ndarray, part_days: list[int]) -> np.ndarray:
    """Pro-rata split of integer kWh by days: (n, parts); earlier parts rounded half up, the last takes the rest."""
    kwh = np.asarray(kwh, dtype=np.int64)
    total_days = sum(part_days)
    out = np.zeros((kwh.shape[0], len(part_days)), dtype=np.int64)
    for j, days in enumerate(part_days[:-1]):
        out[:, j] = round_half_up_div(kwh * days, total_days)
    out[:, -1] = kwh - out[:, :-1].sum(axis=1)
    return out


def tier_sizes(version: TieredVersion, *, households: int, part_days: int, t_ref_days: int) -> np.ndarray:
    """Tier sizes [kWh] for one part: M_i x households x part_days / t_ref_days, each rounded half up."""
    m = np.asarray(version.tier_kwh, dtype=np.int64)
    return np.asarray(round_half_up_div(m * households * part_days, t_ref_days), dtype=np.int64)


def tiered_amount(kwh: np.ndarray, sizes: np.ndarray, prices: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(amount [VND], kWh per tier (n, tiers)) for integer kWh through tiers of the given sizes."""
    remaining = np.asarray(kwh, dtype=np.int64).copy()
    per_tier = np.zeros((remaining.shape[0], len(prices)), dtype=np.int64)
    for i, size in enumerate(sizes):
        take = np.minimum(remaining, size)
        per_tier[:, i] = take
        remaining -= take
    per_tier[:, -1] = remaining
    amount = per_tier @ np.asarray(prices, dtype=np.int64)
    return amount, per_tier


@dataclass(frozen=True, kw_only=True)
class Charges:
    amount_vnd: np.ndarray  # (n,) int64, before VAT
    kwh_parts: np.ndarray  # (n, parts) int64
    parts: list[Part]
    detail: list[np.ndarray]  # per part: kWh per tier (n, tiers) or per rate (n, 3)

    @property
    def versions_label(self) -> str:
        return "+".join(f"{p.version.effective_from.isoformat()}:{p.days}d" for p in self.parts)


def household_charges(
    kwh: np.ndarray,
    *,
    tariff: TieredFile,
    cycle_start: date,
    cycle_end: date,
    whole_month: bool = True,
    households: int = 1,
    kwh_parts: np.ndarray | None = None,
) -> Charges:
    """Household tiered charges for customers with the same cycle and number of households sharing the meter."""
    kwh = np.asarray(kwh, dtype=np.int64)
    if (kwh < 0).any():
        raise ValueError("billed energy must not be negative")
    parts = cycle_parts(tariff.versions, cycle_start, cycle_end)
    total_days = sum(p.days for p in parts)
    t_ref = total_days if whole_month else tariff.standard_month_days
    if kwh_parts is None:
        kwh_parts = split_kwh(kwh, [p.days for p in parts])
    elif kwh_parts.shape != (kwh.shape[0], len(parts)):
        raise ValueError(f"kwh_parts has shape {kwh_parts.shape}, expected {(kwh.shape[0], len(parts))}")
    amount = np.zeros(kwh.shape[0], dtype=np.int64)
    detail = []
    for j, part in enumerate(parts):
        sizes = tier_sizes(part.version, households=households, part_days=part.days, t_ref_days=t_ref)
        a, per_tier = tiered_amount(kwh_parts[:, j], sizes, part.version.price_vnd_per_kwh)
        amount += a
        detail.append(per_tier)
    return Charges(amount_vnd=amount, kwh_parts=kwh_parts, parts=parts, detail=detail)


def tou_charges(
    kwh_normal: np.ndarray,
    kwh_peak: np.ndarray,
    kwh_offpeak: np.ndarray,
    *,
    prices: list[TouPrice],
    cycle_start: date,
    cycle_end: date,
) -> Charges:
    """TOU charges: each rate register's integer kWh at its price, split pro rata by days across price changes."""
    rates = np.stack([np.asarray(k, dtype=np.int64) for k in (kwh_normal, kwh_peak, kwh_offpeak)], axis=1)
    parts = cycle_parts(prices, cycle_start, cycle_end)
    days = [p.days for p in parts]
    split = np.stack([split_kwh(rates[:, r], days) for r in range(3)], axis=2)  # (n, parts, rates)
    amount = np.zeros(rates.shape[0], dtype=np.int64)
    detail = []
    for j, part in enumerate(parts):
        price = np.asarray([part.version.normal, part.version.peak, part.version.offpeak], dtype=np.int64)
        amount += split[:, j, :] @ price
        detail.append(split[:, j, :])
    return Charges(amount_vnd=amount, kwh_parts=split.sum(axis=2), parts=parts, detail=detail)


def vat_vnd(amount_vnd: np.ndarray, basis_points: int) -> np.ndarray:
    """VAT [VND] on amounts before VAT, rounded half up to the VND."""
    return np.asarray(round_half_up_div(np.asarray(amount_vnd, dtype=np.int64) * basis_points, 10_000))
