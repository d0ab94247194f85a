"""The published rollout figures and the government target as the dashboards show them (percent of customers);
the figures themselves are amr.rollout_figures, the project's one copy."""

from __future__ import annotations

from amr.rollout_figures import MINISTRY_REPORT_DATE, PUBLISHED, TARGET_REMOTE_SHARE, PublishedFigure

CITY_NAMES = {"HN": "Hà Nội", "HCM": "TP. Hồ Chí Minh"}
CITIES = ("HN", "HCM")

# Percent with at most four decimals (the published shares have no more): 100 * 0.29 is drawn as 29 %, not as
# 28.999999999999996 %.
_PCT_DECIMALS = 4


def share_pct(share: float) -> float:
    """A share of customers (0..1) as percent, rounded for display."""
    return round(100.0 * share, _PCT_DECIMALS)


def optional_share_pct(share: float | None) -> float | None:
    return None if share is None else share_pct(share)


TARGET_REMOTE_SHARE_PCT = share_pct(TARGET_REMOTE_SHARE)


def published_sep_2017(city: str, figures: tuple[PublishedFigure, ...] | None = None) -> PublishedFigure:
    """The Ministry's mid-September 2017 figures for `city` ('HN' or 'HCM'), from `figures` (the database's
    rollout_reference rows) or, when there are none, the project's copy."""
    for fig in figures or PUBLISHED:
        if fig.city == city and fig.as_of == MINISTRY_REPORT_DATE:
            return fig
    raise KeyError(f"no published Sep 2017 rollout figure for city {city!r}")
