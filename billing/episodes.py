"""Rule occurrences -> exception episodes: one per meter, channel, rule and contiguous run, matched to the episodes
already stored so that a person's review state survives re-validation. Pure pandas/numpy; billing.continuous
reads and writes the tables.

Two occurrences are contiguous when the later one starts at most JOIN_S after the run so far ends: a daily
register read flagged every day (a clock drifting for a month) is one episode, and so is a 30-minute profile
flagged at every interval; a clean day between two flagged ones splits them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

JOIN_S = 86_400 + 3_600  # a day between daily reads, plus an hour of lateness
SEVERITY_RANK = {"info": 0, "review": 1, "invalid": 2}
_RANKED = np.array(["info", "review", "invalid"], dtype=object)
KEY = ["meter_id", "channel_id", "rule"]
REVIEWED = ("acknowledged", "resolved")


def islands(flags: pd.DataFrame) -> pd.DataFrame:
    """Contiguous runs of occurrences (flags: meter_id, channel_id, rule, interval_start, interval_end, severity,
    value). Columns: the key, first_start, last_end, occurrences, severity (the worst), value_min, value_max."""
    columns = [*KEY, "first_start", "last_end", "occurrences", "severity", "value_min", "value_max"]
    if flags.empty:
        return pd.DataFrame(columns=columns)
    f = flags.sort_values([*KEY, "interval_start"], kind="stable").reset_index(drop=True)
    start, end = epoch_s(f["interval_start"]), epoch_s(f["interval_end"])
    run_end = pd.Series(end).groupby([f[k] for k in KEY], sort=False).cummax().to_numpy()
    same_key = np.zeros(len(f), bool)
    same_key[1:] = np.logical_and.reduce([f[k].to_numpy()[1:] == f[k].to_numpy()[:-1] for k in KEY])
    joined = np.zeros(len(f), bool)
    joined[1:] = same_key[1:] & (start[1:] - run_end[:-1] <= JOIN_S)
    island = np.cumsum(~joined) - 1
    rank = f["severity"].map(SEVERITY_RANK).fillna(1).astype(np.int64)
    g = f.assign(_island=island, _start=start, _end=end, _rank=rank).groupby("_island", sort=True)
    out = g.agg(
        meter_id=("meter_id", "first"),
        channel_id=("channel_id", "first"),
        rule=("rule", "first"),
        first_start=("_start", "min"),
        last_end=("_end", "max"),
        occurrences=("rule", "size"),
        rank=("_rank", "max"),
        value_min=("value", "min"),
        value_max=("value", "max"),
    ).reset_index(drop=True)
    out["severity"] = _RANKED[out.pop("rank").to_numpy()]
    for c in ("first_start", "last_end"):
        out[c] = pd.to_datetime(out[c], unit="s", utc=True)
    return out[columns]


@dataclass(kw_only=True)
class EpisodePlan:
    """What to write: updates of stored episodes (episode_id + the island's columns + status), new episodes, and
    stored episodes whose occurrences are gone (auto-resolved)."""

    updates: pd.DataFrame
    inserts: pd.DataFrame
    cleared: list[int]


def plan_episodes(runs: pd.DataFrame, stored: pd.DataFrame) -> EpisodePlan:
    """Match each run to the stored episode of the same key it overlaps (within JOIN_S); `stored`: episode_id,
    the key, first_start, last_end, status, occurrences, severity, value_min, value_max. A run keeps its episode's
    review state (an auto-resolved one reopens); a stored open or acknowledged episode that no run overlaps any more
    was cleared by later data or an edit. A run equal to its episode (same span, count, severity, values and
    status: most of a pass's, whose meters' occurrences since the horizon are read again) is no update."""
    by_key: dict[tuple[int, int, str], list[tuple[int, int, int, str, tuple[object, ...]]]] = {}
    stored_rows: list[dict[Any, Any]] = stored.to_dict("records")
    for row in stored_rows:
        by_key.setdefault((int(row["meter_id"]), int(row["channel_id"]), str(row["rule"])), []).append(
            (int(row["episode_id"]), _s(row["first_start"]), _s(row["last_end"]), str(row["status"]), _facts(row))
        )
    taken: set[int] = set()
    update_rows: list[dict[Any, Any]] = []
    insert_rows: list[dict[Any, Any]] = []
    for run in runs.to_dict("records"):
        lo, hi = _s(run["first_start"]), _s(run["last_end"])
        match = None
        for episode_id, first, last, status, facts in by_key.get(
            (int(run["meter_id"]), int(run["channel_id"]), run["rule"]), []
        ):
            if episode_id not in taken and first - JOIN_S <= hi and lo <= last + JOIN_S:
                match = (episode_id, status, (first, last, *facts))
                break
        if match is None:
            insert_rows.append(run | {"status": "open"})
            continue
        taken.add(match[0])
        status = match[1] if match[1] in REVIEWED or match[1] == "open" else "open"
        if status != match[1] or match[2] != (lo, hi, *_facts(run)):
            update_rows.append(run | {"episode_id": match[0], "status": status})
    cleared = [
        int(r["episode_id"])
        for r in stored_rows
        if int(r["episode_id"]) not in taken and r["status"] in ("open", "acknowledged")
    ]
    return EpisodePlan(
        updates=pd.DataFrame(update_rows, columns=[*runs.columns, "episode_id", "status"]),
        inserts=pd.DataFrame(insert_rows, columns=[*runs.columns, "status"]),
        cleared=cleared,
    )


def _facts(row: dict[Any, Any]) -> tuple[object, ...]:
    """What an episode row says besides its span: occurrences, severity, value_min, value_max (NaN and None alike:
    no value)."""

    def value(x: Any) -> float | None:
        return None if x is None or pd.isna(x) else float(x)

    return int(row["occurrences"]), str(row["severity"]), value(row["value_min"]), value(row["value_max"])


def epoch_s(times: pd.Series) -> np.ndarray:
    """UTC epoch seconds [s] of timestamps (tz-aware or UTC-naive, any resolution)."""
    return ((pd.to_datetime(times, utc=True) - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(seconds=1)).to_numpy(np.int64)


def _s(t: object) -> int:
    return int(pd.Timestamp(t).timestamp())  # type: ignore[arg-type]
