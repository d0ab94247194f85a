"""Occurrences -> episodes (billing.episodes): contiguous runs, and the plan that matches them to stored episodes."""

from __future__ import annotations

import numpy as np
import pandas as pd

from billing.episodes import JOIN_S, islands, plan_episodes

T0 = pd.Timestamp("2026-10-01 17:00", tz="UTC")
DAY = pd.Timedelta(days=1)


def _flags(days: list[int], *, rule: str = "CLOCK_SUSPECT", value: float = 70.0) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "meter_id": 7,
            "channel_id": 1,
            "rule": rule,
            "interval_start": [T0 + d * DAY for d in days],
            "interval_end": [T0 + (d + 1) * DAY for d in days],
            "severity": "review",
            "value": [value + d for d in days],
        }
    )


def _stored(runs: pd.DataFrame, *, status: str = "open") -> pd.DataFrame:
    return runs.assign(episode_id=np.arange(1, len(runs) + 1), status=status)


def test_a_month_of_daily_occurrences_is_one_episode_and_days_apart_split() -> None:
    assert DAY < pd.Timedelta(seconds=JOIN_S) < 2 * DAY
    runs = islands(_flags([*range(0, 30), *range(32, 34)]))  # days 30 and 31 unflagged: two days apart
    assert runs["occurrences"].tolist() == [30, 2]
    assert runs["value_min"].tolist() == [70.0, 102.0] and runs["value_max"].tolist() == [99.0, 103.0]


def test_a_run_equal_to_its_stored_episode_is_not_updated() -> None:
    runs = islands(_flags(list(range(10))))
    plan = plan_episodes(runs, _stored(runs))
    assert plan.updates.empty and plan.inserts.empty and plan.cleared == []
    # the same run, one more day: an update of that episode, its review state kept
    longer = islands(_flags(list(range(11))))
    plan = plan_episodes(longer, _stored(runs, status="acknowledged"))
    assert plan.updates[["episode_id", "occurrences", "status"]].values.tolist() == [[1, 11, "acknowledged"]]
    # another value at the same span (a re-validation under other thresholds) is an update too
    plan = plan_episodes(islands(_flags(list(range(10)), value=80.0)), _stored(runs))
    assert plan.updates["value_min"].tolist() == [80.0]
    # a run with no value (NaN) against a stored NULL is the same
    no_value = islands(_flags(list(range(10))).assign(value=np.nan))
    assert plan_episodes(no_value, _stored(no_value).assign(value_min=None, value_max=None)).updates.empty


def test_an_episode_no_run_overlaps_is_cleared_and_a_new_run_inserted() -> None:
    old = islands(_flags(list(range(3))))
    plan = plan_episodes(islands(_flags(list(range(20, 23)))), _stored(old))
    assert plan.cleared == [1] and plan.updates.empty and plan.inserts["occurrences"].tolist() == [3]
