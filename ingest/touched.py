"""The (meter, local day) units a batch stored readings for, marked in vee_pending in the batch's transaction so
that the VEE service validates exactly what landed, without scanning `readings` (sql/080_continuous_vee.sql).
Pure apart from ``mark_touched``."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg

from amr.db.params import int_array_literal
from amr.pgcopy import US_PER_S
from amr.timebase import DAY_S, LOCAL_UTC_OFFSET_S

MARK_SQL = (
    "INSERT INTO vee_pending (meter_id, day, marks, touched_at)"
    " SELECT m, date '2000-01-01' + d, 1, now()"
    # Text array literals, as ingest.last_seen: psycopg dumps a Python list item by item.
    " FROM unnest(%s::text::integer[], %s::text::integer[]) AS u(m, d)"
    " ON CONFLICT (meter_id, day) DO UPDATE SET marks = vee_pending.marks + 1, touched_at = excluded.touched_at"
)


def touched_units(
    meter_id: npt.NDArray[np.int32], ts_us: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.int32], npt.NDArray[np.int32]]:
    """Distinct (meter, local day [days since 2000-01-01]) of readings at ts_us [µs since 2000], sorted by meter
    then day (the lock order: two workers marking overlapping units cannot deadlock)."""
    if not len(meter_id):
        return np.empty(0, np.int32), np.empty(0, np.int32)
    # floor((ts + offset) / day) on the 2000 epoch: both epochs start at a UTC midnight, so day numbers just shift
    day = ((np.asarray(ts_us, np.int64) + LOCAL_UTC_OFFSET_S * US_PER_S) // (DAY_S * US_PER_S)).astype(np.int32)
    key = np.unique(np.asarray(meter_id, np.int64) << 32 | (day.astype(np.int64) & 0xFFFFFFFF))
    return (key >> 32).astype(np.int32), (key & 0xFFFFFFFF).astype(np.uint32).astype(np.int32)


def mark_touched(cur: psycopg.Cursor[Any], meter_id: npt.NDArray[np.int32], day_pg: npt.NDArray[np.int32]) -> int:
    """Upsert the units (from ``touched_units``) into vee_pending; returns how many."""
    if not len(meter_id):
        return 0
    cur.execute(MARK_SQL, (int_array_literal(meter_id), int_array_literal(day_pg)))
    return len(meter_id)
