"""Published rollout figures and the government target, shown as reference lines (data in data/*.csv)."""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

REFERENCE_CSV = Path(__file__).with_name("data") / "rollout_reference.csv"

# Government Resolution 36a: complete remote reading (AMR) in Hanoi and HCMC before this day.
TARGET_DATE = dt.date(2018, 1, 1)
TARGET_REMOTE_SHARE_PCT = 100.0

CITY_NAMES = {"HN": "Hà Nội", "HCM": "TP. Hồ Chí Minh"}
CITIES = ("HN", "HCM")


@dataclass(frozen=True, kw_only=True)
class PublishedFigure:
    as_of: dt.date
    city: str
    electronic_meters: int | None
    electronic_share_pct: float | None
    remote_meters: int | None
    remote_share_pct: float | None
    source: str


def _opt_int(text: str) -> int | None:
    return int(text) if text.strip() else None


def _opt_float(text: str) -> float | None:
    return float(text) if text.strip() else None


@lru_cache(maxsize=1)
def read_published_figures(path: Path = REFERENCE_CSV) -> tuple[PublishedFigure, ...]:
    with path.open(encoding="utf-8", newline="") as fh:
        return tuple(
            PublishedFigure(
                as_of=dt.date.fromisoformat(row["as_of"]),
                city=row["city"],
                electronic_meters=_opt_int(row["electronic_meters"]),
                electronic_share_pct=_opt_float(row["electronic_share_pct"]),
                remote_meters=_opt_int(row["remote_meters"]),
                remote_share_pct=_opt_float(row["remote_share_pct"]),
                source=row["source"],
            )
            for row in csv.DictReader(fh)
        )


def published_sep_2017(city: str, figures: tuple[PublishedFigure, ...] | None = None) -> PublishedFigure:
    """The Ministry's mid-September 2017 figures for `city` ('HN' or 'HCM')."""
    for fig in figures or read_published_figures():
        if fig.city == city and fig.as_of == dt.date(2017, 9, 15):
            return fig
    raise KeyError(city)
