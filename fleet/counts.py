"""Coverage counts of a generated fleet without a database: customers, electronic and remote-read meters per
city and per power company on any date. The same numbers the meters table gives after `amr fleet generate`
with the same scale and seed (the generator and this count share fleet.rollout).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np

from fleet.calibration import CITIES, CITY_CALIBRATION, COMPANIES, DEFAULT_SEED
from fleet.rollout import CityRollout, city_curves, day_number, fleet_rollout


@dataclass(frozen=True, kw_only=True)
class Coverage:
    """Customers, electronic and remote-read meters of one city or company on a date."""

    customers: int
    electronic: int
    remote: int

    @property
    def electronic_share(self) -> float:
        return self.electronic / self.customers if self.customers else 0.0

    @property
    def remote_share(self) -> float:
        return self.remote / self.customers if self.customers else 0.0


@dataclass(frozen=True, kw_only=True)
class FleetCounts:
    as_of: date
    cities: dict[str, Coverage]
    companies: dict[str, Coverage]  # by power company code


def count_rollout(rollout: dict[str, CityRollout], as_of: date) -> FleetCounts:
    """Count a rollout on `as_of` (dates after the horizon count as the horizon)."""
    day = day_number(as_of)
    per_company = np.zeros((3, len(COMPANIES)), dtype=np.int64)
    for r in rollout.values():
        for i, days in enumerate((r.connected_day, r.installed_day, r.remote_day)):
            per_company[i] += np.bincount(r.company[days <= day], minlength=len(COMPANIES))
    companies = {
        c.code: Coverage(
            customers=int(per_company[0, i]), electronic=int(per_company[1, i]), remote=int(per_company[2, i])
        )
        for i, c in enumerate(COMPANIES)
    }
    cities = {
        city: Coverage(
            customers=sum(v.customers for k, v in companies.items() if k in _codes(city)),
            electronic=sum(v.electronic for k, v in companies.items() if k in _codes(city)),
            remote=sum(v.remote for k, v in companies.items() if k in _codes(city)),
        )
        for city in CITIES
    }
    return FleetCounts(as_of=as_of, cities=cities, companies=companies)


def _codes(city: str) -> frozenset[str]:
    return frozenset(c.code for c in COMPANIES if c.city == city)


@lru_cache(maxsize=1)
def _cached_rollout(scale: float, seed: int) -> dict[str, CityRollout]:
    return fleet_rollout(scale=scale, seed=seed)


def count_fleet(as_of: date, *, scale: float = 1.0, seed: int = DEFAULT_SEED) -> FleetCounts:
    """Counts per city and power company on `as_of` of the fleet `amr fleet generate --scale --seed` writes.
    At scale 1.0 this builds the rollout of ~5.5 M meters (a few seconds, cached for the last scale/seed)."""
    return count_rollout(_cached_rollout(scale, seed), as_of)


def city_coverage_series(city: str, *, scale: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Day-by-day city curves for reference lines: (dates as datetime64[D], customers, electronic, remote).
    Independent of the seed (the city totals are calibrated exactly; only companies differ by seed)."""
    curves = city_curves(CITY_CALIBRATION[city], scale)
    days = np.arange(curves.first_day, curves.first_day + len(curves.customers)).astype("datetime64[D]")
    return days, curves.customers, curves.electronic, curves.remote
