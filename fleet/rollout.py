"""The rollout of one city day by day: when each customer was connected, got an electronic meter and became
remote-read. Pure computation (numpy), deterministic from (scale, seed).

How the dates are made exact: every curve is a cumulative count per day (customers, electronic, remote), and
the k-th event (0-based) of a curve happens on the first day the curve reaches k + 1. So the number of meters
with a date <= d is exactly the curve's value on d, at any scale, and the dashboards can replay the rollout.

- Customers connected before `new_connections_electronic` form the replacement pool; their mechanical meters
  are replaced in a random order in which the city centre comes first. Replacements before that date only take
  customers connected before `replacement_start`, so no meter is replaced before its customer was connected.
- Customers connected later get an electronic meter on their connection day.
- Remote reading is enabled in installation order (first installed, first read remotely), on the first day the
  remote curve reaches the meter's rank. The remote curve never exceeds the electronic curve, so
  remote_since >= installed_on always holds.
- HCMC keeps `holdout_share` of its customers (Can Gio) mechanical and read by hand.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt

from amr.rollout_figures import COMPLETION_DATE
from fleet.calibration import (
    AREA_REPLACEMENT_DELAY,
    CALIBRATION_DATE,
    CITIES,
    CITY_CALIBRATION,
    COMPANIES,
    DEFAULT_SEED,
    FIRST_CONNECTION,
    HOLDOUT_COMPANY,
    HORIZON,
    CityCalibration,
)

NEVER = np.int32(np.iinfo(np.int32).max)  # day number of an event that has not happened (no date)
EPOCH = date(1970, 1, 1)

IntArray = npt.NDArray[np.int64]
Int32Array = npt.NDArray[np.int32]


def day_number(d: date) -> int:
    """Days since 1970-01-01 (the day numbers of every date array here)."""
    return (d - EPOCH).days


def day_date(n: int) -> date:
    return EPOCH + timedelta(days=int(n))


@dataclass(frozen=True, kw_only=True)
class CityCurves:
    """Cumulative counts per day from FIRST_CONNECTION to HORIZON (index 0 = FIRST_CONNECTION), at one scale."""

    city: str
    scale: float
    first_day: int  # day number of index 0
    customers: IntArray  # customers connected on or before the day
    electronic: IntArray  # electronic (or smart) meters installed on or before the day
    remote: IntArray  # meters read remotely on or before the day
    replaced: IntArray  # of which: replacements of pool meters
    pool: int  # customers connected before new_connections_electronic (the replacement pool)
    pre_start: int  # customers connected before replacement_start
    holdouts: int  # pool meters never replaced (HCMC, Can Gio)

    def index(self, d: date) -> int:
        """Index of a date in the curves, clamped to [FIRST_CONNECTION, HORIZON]."""
        return int(np.clip(day_number(d) - self.first_day, 0, len(self.customers) - 1))

    def at(self, d: date) -> tuple[int, int, int]:
        """(customers, electronic, remote) on a date."""
        i = self.index(d)
        return int(self.customers[i]), int(self.electronic[i]), int(self.remote[i])


def _interp_counts(days: npt.NDArray[np.int64], anchors: list[tuple[date, float]], scale: float) -> IntArray:
    xs = np.array([day_number(d) for d, _ in anchors], dtype=np.float64)
    ys = np.array([v for _, v in anchors], dtype=np.float64)
    if np.any(np.diff(xs) <= 0) or np.any(np.diff(ys) < 0):
        raise ValueError(f"rollout anchors must have increasing dates and non-decreasing counts: {anchors}")
    return np.rint(np.interp(days, xs, ys, left=ys[0], right=ys[-1]) * scale).astype(np.int64)


def city_curves(cal: CityCalibration, scale: float) -> CityCurves:
    """The city's cumulative curves at `scale` (1.0 = real size); the calibration-date electronic and remote
    counts are round(published * scale) (exact at 1.0, within one meter otherwise)."""
    if not scale > 0:
        raise ValueError(f"scale must be positive, got {scale}")
    first = day_number(FIRST_CONNECTION)
    days = np.arange(first, day_number(HORIZON) + 1, dtype=np.int64)
    customers = _interp_counts(days, list(cal.customers), scale)

    def idx(d: date) -> int:
        return day_number(d) - first

    pool = int(customers[idx(cal.new_connections_electronic) - 1])
    pre_start = int(customers[idx(cal.replacement_start) - 1])
    holdouts = round(cal.holdout_share * customers[idx(COMPLETION_DATE)])
    new = np.clip(customers - pool, 0, None)
    calib = idx(CALIBRATION_DATE)
    replaced_calib = round(cal.electronic_2017 * scale) - int(new[calib])
    converted = pool - holdouts  # pool meters replaced in the end
    if not 0 < replaced_calib <= converted:
        raise ValueError(f"{cal.city}: calibration needs {replaced_calib} replacements of a pool of {converted}")
    anchors = [(d, f * replaced_calib) for d, f in cal.replacement_before]
    anchors.append((CALIBRATION_DATE, float(replaced_calib)))
    anchors += [(d, f * converted) for d, f in cal.replacement_after]
    if anchors[-1][0] < HORIZON:
        anchors.append((HORIZON, float(converted)))
    replaced = _interp_counts(days, anchors, 1.0)
    if replaced[idx(cal.new_connections_electronic) - 1] > pre_start:
        raise ValueError(f"{cal.city}: more replacements before new connections go electronic than old meters")
    electronic = replaced + new

    # Remote target: the share curve (calibration share inserted) times the unscaled customer curve, so that the
    # calibration count is round(published * scale); capped by the electronic meters there are.
    unscaled = np.interp(days, [day_number(d) for d, _ in cal.customers], [v for _, v in cal.customers])
    share_anchors = [(d, s) for d, s in cal.remote_share if d != CALIBRATION_DATE]
    share_anchors.append((CALIBRATION_DATE, cal.remote_2017 / float(unscaled[calib])))
    share_anchors.sort()
    xs = np.array([day_number(d) for d, _ in share_anchors], dtype=np.float64)
    shares = np.array([s for _, s in share_anchors])
    if np.any(np.diff(xs) <= 0) or np.any(np.diff(shares) < 0):
        raise ValueError(f"{cal.city}: remote shares must increase with the date: {share_anchors}")
    target = np.rint(np.interp(days, xs, shares, left=0.0, right=shares[-1]) * unscaled * scale).astype(np.int64)
    remote = np.minimum(target, electronic)
    return CityCurves(
        city=cal.city,
        scale=scale,
        first_day=first,
        customers=customers,
        electronic=electronic,
        remote=remote,
        replaced=replaced,
        pool=pool,
        pre_start=pre_start,
        holdouts=holdouts,
    )


@dataclass(frozen=True, kw_only=True)
class CityRollout:
    """Per customer meter of one city, in connection order: company and the three dates (day numbers, NEVER =
    not yet / never)."""

    curves: CityCurves
    company: npt.NDArray[np.int16]  # index into calibration.COMPANIES
    connected_day: Int32Array
    installed_day: Int32Array  # electronic meter installed
    remote_day: Int32Array  # remote reading enabled

    @property
    def city(self) -> str:
        return self.curves.city

    def __len__(self) -> int:
        return len(self.company)


def _event_days(curve: IntArray, first_day: int, count: int) -> Int32Array:
    """Day of each of the first `count` events of a cumulative curve, in order (the k-th event happens on the
    first day the curve reaches k + 1); NEVER for events beyond the curve's end."""
    days = np.repeat(np.arange(first_day, first_day + len(curve), dtype=np.int32), np.diff(curve, prepend=0))
    out = np.full(count, NEVER, dtype=np.int32)
    out[: min(count, len(days))] = days[:count]
    return out


def city_rollout(city: str, *, scale: float, seed: int) -> CityRollout:
    cal = CITY_CALIBRATION[city]
    curves = city_curves(cal, scale)
    rng = np.random.default_rng(np.random.SeedSequence([seed, CITIES.index(city), 1]))
    n = int(curves.customers[-1])
    connected = _event_days(curves.customers, curves.first_day, n)

    # Companies: old customers follow the population, new connections favour the growing outskirts.
    ids = np.array([i for i, c in enumerate(COMPANIES) if c.city == city], dtype=np.int16)
    population = np.array([COMPANIES[i].population_k for i in ids])
    growth = population * np.array([COMPANIES[i].growth for i in ids])
    company = np.empty(n, dtype=np.int16)
    company[: curves.pool] = ids[rng.choice(len(ids), size=curves.pool, p=population / population.sum())]
    company[curves.pool :] = ids[rng.choice(len(ids), size=n - curves.pool, p=growth / growth.sum())]

    # Replacement order of the pool: the centre first, holdouts never, phase A only from pre-start customers.
    pool = curves.pool
    delay = np.array([AREA_REPLACEMENT_DELAY[c.area] for c in COMPANIES])
    key = rng.random(pool) + delay[company[:pool]]
    if curves.holdouts:
        holdout_id = next(i for i, c in enumerate(COMPANIES) if c.code == HOLDOUT_COMPANY)
        candidates = np.flatnonzero(company[: curves.pre_start] == holdout_id)
        key[rng.choice(candidates, size=curves.holdouts, replace=False)] = np.inf
    phase_a = int(curves.replaced[day_number(cal.new_connections_electronic) - curves.first_day - 1])
    if phase_a:  # sorted first whatever their key
        key[np.argpartition(key[: curves.pre_start], phase_a - 1)[:phase_a]] -= 10.0
    order = np.argsort(key)
    installed = connected.copy()  # new connections: electronic from the first day
    installed[order] = _event_days(curves.replaced, curves.first_day, pool)

    # Remote reading in installation order (ties broken at random): key = day << 32 | random 32 bits.
    has_meter = np.flatnonzero(installed != NEVER)
    fifo_key = (installed[has_meter].astype(np.int64) << 32) | rng.integers(0, 1 << 32, len(has_meter))
    fifo = has_meter[np.argsort(fifo_key)]
    remote = np.full(n, NEVER, dtype=np.int32)
    remote[fifo] = _event_days(curves.remote, curves.first_day, len(fifo))
    return CityRollout(
        curves=curves, company=company, connected_day=connected, installed_day=installed, remote_day=remote
    )


def fleet_rollout(*, scale: float, seed: int = DEFAULT_SEED) -> dict[str, CityRollout]:
    return {city: city_rollout(city, scale=scale, seed=seed) for city in CITIES}
