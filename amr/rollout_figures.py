"""The published smart-meter rollout figures of Hanoi (HN) and Ho Chi Minh City (HCM): the project's one copy,
read by the fleet generator (its calibration) and the dashboards (reference markers, KPI notes, the target line).

"Electronic" = an electronic meter is installed; "remote" = an electronic meter read remotely (AMR). Shares are
fractions of customers (0..1); a value the source does not give is None.

Sources: Ministry of Industry and Trade report on the AMR programme (mid-Sep 2017); EVN (31 May 2023); EVNHANOI
(Feb 2024); Government Resolution 36a (the target). Published as well, and used by the generator only as the
shape of its curves (sketched there, not data here): HCMC had about 2 M meters around 2018 and more than 2.5 M
customers by 2021; HCMC's plan of Nov 2017 replaced 230 k meters in 2017, then about 20 % of the meters a year
2018-2021.

The database table rollout_reference (sql/050_fleet.sql) is seeded with the same rows by a migration, which
cannot change once applied; tests/fleet/test_fleet.py checks that it agrees with this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

MINISTRY_REPORT_DATE = date(2017, 9, 15)  # "mid-Sep 2017" of the Ministry report
COMPLETION_DATE = date(2023, 5, 31)  # EVN: Hanoi 100 %, HCMC nearly all customers read remotely
HANOI_ALL_ELECTRONIC_DATE = date(2024, 2, 1)  # EVNHANOI, Feb 2024

# Government Resolution 36a: complete remote reading (AMR) in both cities before this day, then move on to AMI.
TARGET_DATE = date(2018, 1, 1)
TARGET_REMOTE_SHARE = 1.0
TARGET_SOURCE = "Government Resolution 36a"

_MINISTRY = "Ministry of Industry and Trade report, 2017"


@dataclass(frozen=True, kw_only=True)
class PublishedFigure:
    """One published row: counts [meters or customers] and shares [fraction of customers, 0..1]."""

    as_of: date
    city: str
    electronic_meters: int | None = None
    electronic_share: float | None = None
    remote_meters: int | None = None
    remote_share: float | None = None
    customers: int | None = None  # a lower bound where the source says "more than"
    source: str


PUBLISHED: tuple[PublishedFigure, ...] = (
    PublishedFigure(
        as_of=MINISTRY_REPORT_DATE,
        city="HN",
        electronic_meters=699_033,
        electronic_share=0.33,
        remote_meters=563_800,
        remote_share=0.25,
        source=_MINISTRY,
    ),
    PublishedFigure(
        as_of=MINISTRY_REPORT_DATE,
        city="HCM",
        electronic_meters=413_159,
        electronic_share=0.19,
        remote_meters=363_632,
        remote_share=0.166,
        source=_MINISTRY,
    ),
    PublishedFigure(as_of=COMPLETION_DATE, city="HN", remote_share=1.0, source="EVN, 2023"),
    PublishedFigure(as_of=COMPLETION_DATE, city="HCM", remote_share=0.9998, source="EVN, 2023"),
    PublishedFigure(
        as_of=HANOI_ALL_ELECTRONIC_DATE,
        city="HN",
        electronic_share=1.0,
        customers=2_800_000,
        source="EVNHANOI, 2024",
    ),
)


def published(city: str, as_of: date) -> PublishedFigure:
    """The published figure of `city` ('HN' or 'HCM') on `as_of`; KeyError names both when there is none."""
    for figure in PUBLISHED:
        if figure.city == city and figure.as_of == as_of:
            return figure
    raise KeyError(f"no published rollout figure for city {city!r} on {as_of.isoformat()}")
