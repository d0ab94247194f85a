"""Calibration data for the fleet generator: the chosen customer totals, the power companies of Hanoi (HN) and
Ho Chi Minh City (HCM), and the rollout curves' anchor points, fitted to the published rollout figures
(amr.rollout_figures, the project's one copy of them).

Everything here is data copied into the project (the product never reads the design notes at run time).

Customer totals on the Ministry report's date (a choice: the report's rounding is inconsistent, the electronic
count over its rounded share and the remote count over its share give totals about 140 k apart, so no total
reproduces both rounded shares). We take the total that puts both shares equally far from the published ones,
N = (electronic + remote) / (electronic share + remote share), to the thousand (_customers_at_report): Hanoi
2,177,000 (32.1 % electronic, 25.9 % remote), HCMC 2,182,000 (18.9 %, 16.7 %). The electronic and remote COUNTS
are reproduced exactly (at scale 1.0).

Horizon: the registry is generated as of 2025-06-30, the last day of the power-company grouping in
sql/002_reference_data.sql (both utilities reorganised on 1 Jul / 1 Aug 2025): about 2.90 M customers in Hanoi
and 2.64 M in HCMC.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from amr.rollout_figures import (
    COMPLETION_DATE,
    HANOI_ALL_ELECTRONIC_DATE,
    MINISTRY_REPORT_DATE,
    TARGET_DATE,
    published,
)

CALIBRATION_DATE = MINISTRY_REPORT_DATE  # the generator reproduces the report's counts on this day
HORIZON = date(2025, 6, 30)  # last day before the 2025 reorganisations of the power companies
FIRST_CONNECTION = date(1975, 1, 1)  # the oldest customer connection dates spread from here
DEFAULT_SEED = 2017  # the same seed and scale give the same fleet
MAX_SCALE = 2.0  # 1.0 = the real size; up to twice it the serial numbers and the row-order key still fit

CITIES = ("HN", "HCM")

# Tariff classes, in the order of the codes the generator uses.
TARIFF_CLASSES = ("household", "business", "production", "administrative")
METER_KINDS = ("mechanical", "electronic", "smart")
PROTOCOLS = ("modbus-tcp", "modbus-rtu", "modbus-rtu-tcp", "dlms", "dcu-mqtt", "manual")


@dataclass(frozen=True, kw_only=True)
class Company:
    """A power company (Cong ty Dien luc) as in sql/002_reference_data.sql, with the generator's weights.

    population_k: residents [thousands], approximate 2019 census of its districts: the share of old customers.
    growth: relative weight of new connections (outskirts grow faster than the old centre).
    area: 'urban' | 'suburban' | 'rural': sets the spread of meters around the centroid, the tariff mix and how
    early the company's meters are replaced (the centre went first).
    """

    code: str
    city: str
    latitude_deg: float
    longitude_deg: float
    population_k: float
    growth: float
    area: str


def _c(code: str, city: str, lat: float, lon: float, pop: float, growth: float, area: str) -> Company:
    return Company(
        code=code, city=city, latitude_deg=lat, longitude_deg=lon, population_k=pop, growth=growth, area=area
    )


COMPANIES = (
    _c("PD0100", "HN", 21.029, 105.852, 135, 0.3, "urban"),  # Hoan Kiem
    _c("PD0200", "HN", 21.006, 105.857, 304, 0.6, "urban"),  # Hai Ba Trung
    _c("PD0300", "HN", 21.036, 105.823, 221, 0.4, "urban"),  # Ba Dinh
    _c("PD0400", "HN", 21.015, 105.826, 372, 0.5, "urban"),  # Dong Da
    _c("PD0500", "HN", 21.068, 105.818, 160, 1.0, "urban"),  # Tay Ho
    _c("PD0600", "HN", 20.994, 105.815, 294, 0.9, "urban"),  # Thanh Xuan
    _c("PD0700", "HN", 21.033, 105.794, 292, 1.2, "urban"),  # Cau Giay
    _c("PD0800", "HN", 20.974, 105.863, 506, 1.6, "urban"),  # Hoang Mai
    _c("PD0900", "HN", 21.047, 105.889, 322, 1.6, "urban"),  # Long Bien
    _c("PD1000", "HN", 21.257, 105.849, 343, 1.0, "rural"),  # Soc Son
    _c("PD1100", "HN", 21.137, 105.849, 382, 1.6, "suburban"),  # Dong Anh
    _c("PD1200", "HN", 21.021, 105.937, 292, 1.6, "suburban"),  # Gia Lam
    _c("PD1300", "HN", 20.944, 105.846, 281, 1.4, "suburban"),  # Thanh Tri
    _c("PD1400", "HN", 20.971, 105.776, 382, 1.8, "urban"),  # Ha Dong
    _c("PD1500", "HN", 21.138, 105.506, 145, 0.8, "suburban"),  # Son Tay
    _c("PD1600", "HN", 21.199, 105.423, 305, 0.8, "rural"),  # Ba Vi
    _c("PD1700", "HN", 21.107, 105.563, 185, 0.8, "rural"),  # Phuc Tho
    _c("PD1800", "HN", 21.087, 105.670, 166, 1.0, "rural"),  # Dan Phuong
    _c("PD1900", "HN", 21.023, 105.701, 257, 1.6, "suburban"),  # Hoai Duc
    _c("PD2000", "HN", 20.992, 105.641, 180, 1.0, "rural"),  # Quoc Oai
    _c("PD2100", "HN", 21.021, 105.560, 207, 1.0, "rural"),  # Thach That
    _c("PD2200", "HN", 20.921, 105.702, 337, 0.9, "rural"),  # Chuong My
    _c("PD2300", "HN", 20.858, 105.769, 210, 0.9, "rural"),  # Thanh Oai
    _c("PD2400", "HN", 20.873, 105.861, 256, 0.9, "rural"),  # Thuong Tin
    _c("PD2500", "HN", 20.736, 105.909, 212, 0.8, "rural"),  # Phu Xuyen
    _c("PD2600", "HN", 20.716, 105.776, 211, 0.7, "rural"),  # Ung Hoa
    _c("PD2700", "HN", 20.688, 105.739, 196, 0.7, "rural"),  # My Duc
    _c("PD2800", "HN", 21.182, 105.717, 241, 1.2, "suburban"),  # Me Linh
    _c("PD2900", "HN", 21.071, 105.764, 334, 1.6, "urban"),  # Bac Tu Liem
    _c("PD3000", "HN", 21.013, 105.765, 264, 1.8, "urban"),  # Nam Tu Liem
    _c("PE0100", "HCM", 10.776, 106.695, 332, 0.3, "urban"),  # Sai Gon: Districts 1, 3
    _c("PE0200", "HCM", 10.767, 106.656, 443, 0.4, "urban"),  # Phu Tho: Districts 10, 11
    _c("PE0300", "HCM", 10.748, 106.662, 583, 0.6, "urban"),  # Cho Lon: Districts 5, 8
    _c("PE0400", "HCM", 10.805, 106.700, 662, 0.6, "urban"),  # Gia Dinh: Binh Thanh, Phu Nhuan
    _c("PE0500", "HCM", 10.745, 106.715, 535, 1.3, "urban"),  # Tan Thuan: Districts 4, 7
    _c("PE0600", "HCM", 10.760, 106.610, 1018, 1.6, "suburban"),  # Binh Phu: District 6, Binh Tan
    _c("PE0700", "HCM", 10.790, 106.628, 485, 0.9, "urban"),  # Tan Phu
    _c("PE0800", "HCM", 10.885, 106.592, 542, 1.6, "suburban"),  # Hoc Mon
    _c("PE0900", "HCM", 10.972, 106.510, 462, 1.1, "rural"),  # Cu Chi
    _c("PE1000", "HCM", 10.830, 106.765, 1013, 1.5, "suburban"),  # Thu Duc city
    _c("PE1100", "HCM", 10.640, 106.740, 277, 1.3, "rural"),  # Duyen Hai: Nha Be, Can Gio
    _c("PE1300", "HCM", 10.838, 106.665, 676, 1.0, "urban"),  # Go Vap
    _c("PE1400", "HCM", 10.802, 106.652, 474, 0.6, "urban"),  # Tan Binh
    _c("PE1500", "HCM", 10.700, 106.600, 705, 1.8, "suburban"),  # Binh Chanh
    _c("PE1600", "HCM", 10.865, 106.650, 620, 1.5, "suburban"),  # An Phu Dong: District 12
)

# The HCMC meters that are still read by hand on 31 May 2023 (0.02 %): island and mangrove customers of Can Gio
# without network coverage, kept mechanical.
HOLDOUT_COMPANY = "PE1100"

# Per area: spread of customers around the centroid [km], how late the area's old meters are replaced (added to
# a uniform 0..1 draw when ordering the replacements), tariff class probabilities (TARIFF_CLASSES order).
AREA_SPREAD_KM = {"urban": 1.6, "suburban": 4.0, "rural": 6.5}
AREA_REPLACEMENT_DELAY = {"urban": 0.0, "suburban": 0.3, "rural": 0.5}
AREA_TARIFF_MIX = {
    "urban": (0.86, 0.11, 0.015, 0.015),
    "suburban": (0.905, 0.06, 0.025, 0.01),
    "rural": (0.93, 0.04, 0.02, 0.01),
}
# The business districts have many more shops and offices.
CBD_TARIFF_MIX = {"PD0100": (0.76, 0.21, 0.005, 0.025), "PE0100": (0.75, 0.22, 0.005, 0.025)}


@dataclass(frozen=True, kw_only=True)
class CityCalibration:
    """Rollout curves of one city, as anchor points interpolated linearly day by day.

    customers: cumulative customers connected [count] at dates (the calibration-date total is the choice above).
    replacement_start: first electronic meters replace mechanical ones.
    new_connections_electronic: from this date new customers get an electronic meter at connection; customers
    connected before it form the replacement pool.
    replacement_before: replaced pool meters as a fraction of the calibration-date replacements, before it.
    replacement_after: replaced pool meters as a fraction of the pool, after the calibration date (1.0 = done).
    remote_share: remote-read meters as a fraction of customers (the calibration date is added from the count).
    smart_from: electronic meters installed from this date are smart (AMI) meters.
    holdout_share: fraction of customers on COMPLETION_DATE never converted (mechanical, read by hand).
    read_day: None = spread over the month by reading route; 31 = last day of the month.
    """

    city: str
    customers: tuple[tuple[date, float], ...]
    electronic_2017: int
    remote_2017: int
    replacement_start: date
    new_connections_electronic: date
    replacement_before: tuple[tuple[date, float], ...]
    replacement_after: tuple[tuple[date, float], ...]
    remote_share: tuple[tuple[date, float], ...]
    smart_from: date
    holdout_share: float
    read_day: int | None


# The published shares have at most four decimals: rounding there undoes float subtraction's residue
# (1 - 0.9 = 0.09999999999999998), so the holdout share is exactly the published complement.
_SHARE_DECIMALS = 4


def _count(value: int | None, what: str) -> int:
    if value is None:
        raise ValueError(f"the published figures give no {what}")
    return value


def _share(value: float | None, what: str) -> float:
    if value is None:
        raise ValueError(f"the published figures give no {what}")
    return value


def _electronic_at_report(city: str) -> int:
    return _count(published(city, MINISTRY_REPORT_DATE).electronic_meters, f"{city} electronic meters in 2017")


def _remote_at_report(city: str) -> int:
    return _count(published(city, MINISTRY_REPORT_DATE).remote_meters, f"{city} remote meters in 2017")


def _customers_at_report(city: str) -> float:
    """Customers on the report's date: the total that puts both rounded shares equally far from the published
    ones, N = (electronic + remote) / (electronic share + remote share), to the thousand (module docstring)."""
    fig = published(city, MINISTRY_REPORT_DATE)
    shares = _share(fig.electronic_share, f"{city} electronic share") + _share(fig.remote_share, f"{city} remote share")
    return float(round((_electronic_at_report(city) + _remote_at_report(city)) / shares, -3))


# EVNHANOI's Feb 2024 customer count is a lower bound ("more than"): the curve passes this far above it.
_ABOVE_LOWER_BOUND = 10_000


def _hanoi_customers_2024() -> float:
    more_than = _count(published("HN", HANOI_ALL_ELECTRONIC_DATE).customers, "HN customers in Feb 2024")
    return float(more_than + _ABOVE_LOWER_BOUND)


def _holdout_share(city: str) -> float:
    """Customers never converted by COMPLETION_DATE: the complement of the published remote share."""
    remote = _share(published(city, COMPLETION_DATE).remote_share, f"{city} remote share in 2023")
    return round(1.0 - remote, _SHARE_DECIMALS)


HANOI = CityCalibration(
    city="HN",
    customers=(
        (FIRST_CONNECTION, 0.0),
        (date(1995, 1, 1), 700_000.0),
        (date(2005, 1, 1), 1_250_000.0),
        (date(2012, 1, 1), 1_800_000.0),
        (CALIBRATION_DATE, _customers_at_report("HN")),
        (date(2020, 1, 1), 2_420_000.0),
        (HANOI_ALL_ELECTRONIC_DATE, _hanoi_customers_2024()),
        (HORIZON, 2_900_000.0),
    ),
    electronic_2017=_electronic_at_report("HN"),
    remote_2017=_remote_at_report("HN"),
    replacement_start=date(2012, 1, 1),
    new_connections_electronic=date(2014, 1, 1),
    replacement_before=(
        (date(2012, 1, 1), 0.0),
        (date(2013, 1, 1), 0.03),
        (date(2014, 1, 1), 0.10),
        (date(2015, 1, 1), 0.25),
        (date(2016, 1, 1), 0.48),
        (date(2017, 1, 1), 0.75),
    ),
    replacement_after=(
        (TARGET_DATE, 0.30),  # the push towards the Resolution 36a target
        (date(2019, 1, 1), 0.55),
        (date(2020, 7, 1), 0.85),
        (date(2022, 6, 30), 1.0),  # all electronic well before EVNHANOI's Feb 2024 figure
    ),
    remote_share=(
        (date(2012, 1, 1), 0.0),
        (date(2014, 1, 1), 0.005),
        (date(2016, 1, 1), 0.05),
        (TARGET_DATE, 0.32),
        (date(2019, 1, 1), 0.55),
        (date(2020, 7, 1), 0.80),
        (date(2022, 6, 30), 0.97),
        (COMPLETION_DATE, 1.0),
        (HORIZON, 1.0),
    ),
    smart_from=date(2019, 7, 1),
    holdout_share=_holdout_share("HN"),
    read_day=31,  # EVNHANOI reads every customer on the last day of the month since 2024
)

HCMC = CityCalibration(
    city="HCM",
    customers=(
        (FIRST_CONNECTION, 0.0),
        (date(1995, 1, 1), 800_000.0),
        (date(2005, 1, 1), 1_400_000.0),
        (date(2012, 1, 1), 1_900_000.0),
        (CALIBRATION_DATE, _customers_at_report("HCM")),
        (date(2021, 12, 31), 2_510_000.0),  # just above HCMC's published count for 2021 (amr.rollout_figures)
        (COMPLETION_DATE, 2_560_000.0),
        (HORIZON, 2_640_000.0),
    ),
    electronic_2017=_electronic_at_report("HCM"),
    remote_2017=_remote_at_report("HCM"),
    replacement_start=date(2012, 1, 1),
    new_connections_electronic=date(2016, 7, 1),
    replacement_before=(
        (date(2012, 1, 1), 0.0),
        (date(2013, 1, 1), 0.02),
        (date(2014, 1, 1), 0.06),
        (date(2015, 1, 1), 0.14),
        (date(2016, 1, 1), 0.28),
        (date(2017, 1, 1), 0.52),  # HCMC's replacement plan of Nov 2017 for that year (amr.rollout_figures)
    ),
    replacement_after=(
        (date(2017, 12, 31), 0.20),
        (date(2018, 12, 31), 0.40),  # then the plan's yearly share of the meters
        (date(2019, 12, 31), 0.61),
        (date(2020, 12, 31), 0.82),
        (date(2021, 12, 31), 0.96),
        (date(2022, 9, 30), 1.0),
    ),
    remote_share=(
        (date(2012, 1, 1), 0.0),
        (date(2014, 1, 1), 0.003),
        (date(2016, 1, 1), 0.025),
        (date(2017, 1, 1), 0.08),
        (date(2017, 12, 31), 0.20),
        (date(2018, 12, 31), 0.38),
        (date(2019, 12, 31), 0.58),
        (date(2020, 12, 31), 0.78),
        (date(2021, 12, 31), 0.92),
        (date(2022, 12, 31), 0.985),
        (COMPLETION_DATE, 1.0),
        (HORIZON, 1.0),
    ),
    smart_from=date(2020, 1, 1),
    holdout_share=_holdout_share("HCM"),  # Can Gio's island customers (HOLDOUT_COMPANY)
    read_day=None,
)

CITY_CALIBRATION = {"HN": HANOI, "HCM": HCMC}


def companies_of(city: str) -> tuple[Company, ...]:
    return tuple(c for c in COMPANIES if c.city == city)
