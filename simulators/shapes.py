"""Consumption shapes for simulated meters: day shapes per customer class, TOU windows, season factors.

Facts copied from the project's domain notes (EVN, 2019-2025):
- Household monthly use (EVN, April 2019): < 100 kWh 31.7 %, 100-200 36.5 %, 200-300 15.7 %, 300-400 6.6 %,
  > 400 about 7 %.
- Hot-season swing: HCMC daily use roughly doubles from February to April; Hanoi June is about 1.15 x May.
- Household evening peak at 20:00-23:00; households carry most of the weekend load.
- Vietnamese TOU windows (local time, Asia/Ho_Chi_Minh, UTC+7, no DST): Mon-Sat peak 09:30-11:30 and
  17:00-20:00, off-peak 22:00-04:00, normal otherwise; Sunday has no peak.

Everything here is pure and deterministic; shapes are computed once per (class, day type, season) and cached.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import numpy as np

TariffClass = Literal["household", "business", "production"]
City = Literal["HN", "HCM"]

MINUTES_PER_DAY = 1440
HALF_HOURS_PER_DAY = 48

# Tariff rates as the meter numbers them (OBIS 1.0.1.8.x): 1 normal, 2 peak, 3 off-peak.
RATE_NORMAL, RATE_PEAK, RATE_OFFPEAK = 1, 2, 3

# Day types: 0 Monday-Friday, 1 Saturday, 2 Sunday.
WEEKDAY, SATURDAY, SUNDAY = 0, 1, 2

# Monthly season factors (index 0 = January), normalised to a mean of 1 below.
_SEASON_RAW: dict[str, tuple[float, ...]] = {
    # HCMC: dry hot season peaks in April-May (Feb -> Apr roughly x1.6 for households).
    "HCM": (0.85, 0.78, 1.02, 1.26, 1.24, 1.10, 1.02, 1.00, 0.97, 0.95, 0.93, 0.88),
    # Hanoi: cool winter, hot May-August, June ~1.15 x May.
    "HN": (0.80, 0.75, 0.80, 0.92, 1.12, 1.29, 1.30, 1.22, 1.05, 0.92, 0.82, 0.86),
}
# How much of the season swing each class feels (AC is most of it; factories run regardless).
_SEASON_SENSITIVITY: dict[str, float] = {"household": 1.0, "business": 0.6, "production": 0.25}
# Relative daily energy by day type (normalised so a week averages 1).
_DAYTYPE_RAW: dict[str, tuple[float, float, float]] = {
    "household": (0.96, 1.04, 1.12),
    "business": (1.18, 0.80, 0.40),
    "production": (1.12, 0.95, 0.50),
}
HOT_SEASON_FACTOR = 1.05  # months whose factor exceeds this use the hot-season day shape

# Household monthly kWh distribution (EVN April 2019): bucket bounds and shares (renormalised: they sum to 97.5 %).
HOUSEHOLD_BUCKETS_KWH: tuple[tuple[float, float], ...] = ((30, 100), (100, 200), (200, 300), (300, 400), (400, 1200))
HOUSEHOLD_BUCKET_SHARES: tuple[float, ...] = (0.317, 0.365, 0.157, 0.066, 0.07)


def season_factors(city: str, tariff_class: str) -> np.ndarray:
    """Monthly factors [12] with mean 1: multiply the annual-average daily energy by factor[month-1]."""
    raw = np.asarray(_SEASON_RAW[city], dtype=np.float64)
    raw = raw / raw.mean()
    out = 1.0 + (raw - 1.0) * _SEASON_SENSITIVITY[tariff_class]
    return out / out.mean()


def daytype_factors(tariff_class: str) -> np.ndarray:
    """Relative daily energy for (weekday, Saturday, Sunday) [3], a week averaging 1."""
    raw = np.asarray(_DAYTYPE_RAW[tariff_class], dtype=np.float64)
    return raw / ((5 * raw[0] + raw[1] + raw[2]) / 7.0)


def tou_rate_by_minute(daytype: int) -> np.ndarray:
    """The tariff rate (1 normal, 2 peak, 3 off-peak) of each local minute of a day of this type [1440]."""
    rate = np.full(MINUTES_PER_DAY, RATE_NORMAL, dtype=np.int8)
    rate[: 4 * 60] = RATE_OFFPEAK
    rate[22 * 60 :] = RATE_OFFPEAK
    if daytype != SUNDAY:
        rate[9 * 60 + 30 : 11 * 60 + 30] = RATE_PEAK
        rate[17 * 60 : 20 * 60] = RATE_PEAK
    return rate


def tou_rate_at(local_minute: int, daytype: int) -> int:
    """Rate of one local minute of the day (0..1439)."""
    return int(_tou_table(daytype)[local_minute])


@lru_cache(maxsize=3)
def _tou_table(daytype: int) -> np.ndarray:
    return tou_rate_by_minute(daytype)


def _bump(h: np.ndarray, centre_h: float, width_h: float) -> np.ndarray:
    # Wrap around midnight so a late-evening bump continues past 00:00.
    d = np.minimum(np.abs(h - centre_h), 24.0 - np.abs(h - centre_h))
    return np.exp(-0.5 * (d / width_h) ** 2)


def _plateau(h: np.ndarray, start_h: float, end_h: float, edge_h: float = 0.35) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(h - start_h) / edge_h)) * 1.0 / (1.0 + np.exp((h - end_h) / edge_h))


def _power_shape(tariff_class: str, daytype: int, hot: bool) -> np.ndarray:
    """Relative power per local minute [1440] (any scale)."""
    h = (np.arange(MINUTES_PER_DAY) + 0.5) / 60.0
    if tariff_class == "household":
        morning = 7.0 if daytype == WEEKDAY else 8.5
        p = 0.30 + 0.45 * _bump(h, morning, 0.9) + 0.25 * _bump(h, 12.0, 1.2) + 1.35 * _bump(h, 21.3, 1.3)
        if daytype != WEEKDAY:
            p += 0.35 * _plateau(h, 9.5, 17.0, 0.8)
        if hot:
            p += 0.75 * _bump(h, 23.5, 2.2) + 0.35 * _bump(h, 14.5, 1.5)
        return p
    if tariff_class == "business":
        p = 0.18 + 0.04 * _bump(h, 19.0, 2.0)
        amp = 1.25 if hot else 1.0
        if daytype == WEEKDAY:
            p += amp * _plateau(h, 7.5, 17.5) - 0.15 * _bump(h, 12.2, 0.5)
        elif daytype == SATURDAY:
            p += 0.8 * amp * _plateau(h, 8.0, 12.5)
        return p
    # production: two shifts on weekdays, one on Saturday, skeleton load on Sunday
    p = 0.30 + 0.05 * (1.2 if hot else 1.0) * _bump(h, 14.0, 3.0)
    if daytype == WEEKDAY:
        p += 1.0 * _plateau(h, 6.0, 22.0) - 0.12 * _bump(h, 14.0, 0.3)
    elif daytype == SATURDAY:
        p += 0.9 * _plateau(h, 6.0, 14.0)
    else:
        p += 0.1 * _plateau(h, 8.0, 16.0)
    return p


@dataclass(frozen=True)
class DayShape:
    """Within-day distribution of one day's energy, minute by minute (local time).

    ``cum[k]`` is the fraction of the day's energy used before minute k (cum[0] = 0, cum[1440] = 1);
    ``cum_rate[r-1][k]`` the same restricted to tariff rate r; ``rate_fraction[r-1]`` = ``cum_rate[r-1][1440]``;
    ``density[k]`` the fraction used in minute k; ``hh_running_max[k]`` the largest fraction of the day's energy in
    one of the first k complete half-hours, and ``hh_max`` the largest over the day.
    Lists (not arrays) because the hot path indexes single elements.
    """

    density: tuple[float, ...]
    cum: tuple[float, ...]
    cum_rate: tuple[tuple[float, ...], tuple[float, ...], tuple[float, ...]]
    cum_np: np.ndarray
    cum_rate_np: np.ndarray  # [3, 1441]
    rate_fraction: tuple[float, float, float]
    hh_running_max: tuple[float, ...]
    hh_max: float


def _make_day_shape(power: np.ndarray, daytype: int) -> DayShape:
    density = power / power.sum()
    cum = np.concatenate(([0.0], np.cumsum(density)))
    cum[-1] = 1.0
    rate = tou_rate_by_minute(daytype)
    cum_rate = np.zeros((3, MINUTES_PER_DAY + 1))
    for r in (1, 2, 3):
        cum_rate[r - 1, 1:] = np.cumsum(np.where(rate == r, density, 0.0))
    hh = density.reshape(HALF_HOURS_PER_DAY, 30).sum(axis=1)
    running = np.concatenate(([0.0], np.maximum.accumulate(hh)))
    return DayShape(
        density=tuple(density.tolist()),
        cum=tuple(cum.tolist()),
        cum_rate=(tuple(cum_rate[0].tolist()), tuple(cum_rate[1].tolist()), tuple(cum_rate[2].tolist())),
        cum_np=cum,
        cum_rate_np=cum_rate,
        rate_fraction=(float(cum_rate[0, -1]), float(cum_rate[1, -1]), float(cum_rate[2, -1])),
        hh_running_max=tuple(running.tolist()),
        hh_max=float(hh.max()),
    )


@lru_cache(maxsize=32)
def day_shape(tariff_class: str, daytype: int, hot: bool) -> DayShape:
    """The (cached) day shape of a customer class for a day type and season."""
    return _make_day_shape(_power_shape(tariff_class, daytype, hot), daytype)


@lru_cache(maxsize=1)
def solar_shape() -> DayShape:
    """Rooftop PV export shape (06:00-18:00, noon peak); its rates are those of a weekday."""
    h = (np.arange(MINUTES_PER_DAY) + 0.5) / 60.0
    p = np.clip(np.sin((h - 6.0) / 12.0 * np.pi), 0.0, None) ** 1.5 + 1e-9
    return _make_day_shape(p, WEEKDAY)


# --- counter-based hashing: the same (seed, stream, index) gives the same number, in any call order ---

_M64 = (1 << 64) - 1


def mix64(x: int) -> int:
    """splitmix64 finaliser on a Python int."""
    z = (x + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


def uniform(seed: int, stream: int, index: int) -> float:
    """A uniform number in [0, 1) from (seed, stream, index)."""
    return (mix64(mix64((seed * 1_000_003 + stream) & _M64) ^ (index & _M64)) >> 11) * (1.0 / (1 << 53))


def uniform_array(seed: int, stream: int, index: np.ndarray) -> np.ndarray:
    """Vectorised :func:`uniform` over an integer index array (identical values)."""
    key = np.uint64(mix64((seed * 1_000_003 + stream) & _M64))
    z = index.astype(np.uint64) ^ key
    with np.errstate(over="ignore"):
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


def normal_array(seed: int, stream: int, index: np.ndarray) -> np.ndarray:
    """Standard normal numbers from (seed, stream, index) by Box-Muller."""
    u1 = uniform_array(seed, stream, index)
    u2 = uniform_array(seed, stream + 7919, index)
    return np.sqrt(-2.0 * np.log1p(-u1)) * np.cos(2.0 * np.pi * u2)


def draw_monthly_kwh(tariff_class: str, u_bucket: float, u_within: float) -> float:
    """Annual-average monthly consumption [kWh] of one customer from two uniforms.

    Households follow the EVN 2019 buckets; business and production customers are log-spread around
    typical TOU-customer sizes (TOU is mandatory from 2,000 kWh/month).
    """
    if tariff_class == "household":
        shares = np.asarray(HOUSEHOLD_BUCKET_SHARES) / sum(HOUSEHOLD_BUCKET_SHARES)
        edges = np.cumsum(shares)
        i = min(int(np.searchsorted(edges, u_bucket, side="right")), len(edges) - 1)
        lo, hi = HOUSEHOLD_BUCKETS_KWH[i]
        if i == len(edges) - 1:  # open-ended top bucket: a thin tail, mostly 400-700 kWh
            return lo + (hi - lo) * u_within**2.5
        return lo + (hi - lo) * u_within
    if tariff_class == "business":
        return float(2_000.0 * np.exp(2.3 * u_within))  # 2,000 .. 20,000 kWh
    return float(10_000.0 * np.exp(3.0 * u_within))  # production: 10,000 .. 200,000 kWh
