"""Each meter's newest stored reading, gathered over several committed batches and written to meter_last_seen
in one upsert (see limits.LAST_SEEN_INTERVAL_S for why it is not written with every batch). Pure apart from
``write_last_seen``."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from amr.db.params import int_array_literal
from amr.pgcopy import PG_EPOCH_SQL

UPSERT_SQL = (
    "INSERT INTO meter_last_seen (meter_id, last_reading_ts, last_received_at)"
    f" SELECT m, {PG_EPOCH_SQL} + t * interval '1 microsecond', now()"
    # Text array literals: psycopg dumps a Python list item by item in Python, ~10x slower than str.join.
    " FROM unnest(%s::text::integer[], %s::text::bigint[]) AS u(m, t)"
    " ON CONFLICT (meter_id) DO UPDATE SET"
    " last_reading_ts = greatest(meter_last_seen.last_reading_ts, excluded.last_reading_ts),"
    " last_received_at = excluded.last_received_at"
)


def newest_per_meter(
    meter_id: npt.NDArray[np.int32], ts_us: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
    """(meters ascending, each one's newest ts [µs since 2000]) of rows in any order."""
    if not len(meter_id):
        return meter_id[:0], ts_us[:0]
    order = np.lexsort((ts_us, meter_id))
    meters, ts = meter_id[order], ts_us[order]
    last = np.flatnonzero(np.r_[meters[1:] != meters[:-1], True])  # the newest row of each meter comes last
    return meters[last], ts[last]


class PendingLastSeen:
    """(meter, newest ts) pairs of committed batches not yet written to meter_last_seen."""

    def __init__(self) -> None:
        self._meters: list[npt.NDArray[np.int32]] = []
        self._ts_us: list[npt.NDArray[np.int64]] = []
        self.pairs = 0

    def add(self, meter_id: npt.NDArray[np.int32], newest_us: npt.NDArray[np.int64]) -> None:
        if len(meter_id):
            self._meters.append(meter_id)
            self._ts_us.append(newest_us)
            self.pairs += len(meter_id)

    def take(self) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int64]]:
        """Everything pending, reduced to one newest ts per meter (ascending meters: lock order), and forget it."""
        if not self._meters:
            return np.empty(0, np.int32), np.empty(0, np.int64)
        meters, ts = newest_per_meter(np.concatenate(self._meters), np.concatenate(self._ts_us))
        self._meters, self._ts_us, self.pairs = [], [], 0
        return meters, ts


def write_last_seen(
    cur: psycopg.Cursor[Any], meter_id: npt.NDArray[np.int32], newest_us: npt.NDArray[np.int64]
) -> None:
    """One upsert for all the given meters (inside the caller's transaction)."""
    if len(meter_id):
        cur.execute(UPSERT_SQL, (int_array_literal(meter_id), int_array_literal(newest_us)))
