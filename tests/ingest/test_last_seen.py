"""meter_last_seen gathering (pure, against a plain-Python twin) and its upsert into the real database."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import numpy as np
import psycopg
from hypothesis import given
from hypothesis import strategies as st

from amr.db.server import DatabaseServer, Role
from amr.pgcopy import PG_EPOCH_SQL, US_PER_S
from amr.timebase import DAY_S
from ingest.last_seen import PendingLastSeen, newest_per_meter, write_last_seen
from tests.ingest.helpers import add_test_meters, serial

rows = st.lists(st.tuples(st.integers(1, 6), st.integers(-(2**50), 2**50)), max_size=40)


def _twin(pairs: list[tuple[int, int]]) -> dict[int, int]:
    newest: dict[int, int] = {}
    for meter, ts in pairs:
        newest[meter] = max(ts, newest.get(meter, ts))
    return newest


@given(rows)
def test_newest_per_meter_matches_twin(pairs: list[tuple[int, int]]) -> None:
    meters = np.array([m for m, _ in pairs], dtype=np.int32)
    ts = np.array([t for _, t in pairs], dtype=np.int64)
    got_m, got_t = newest_per_meter(meters, ts)
    assert dict(zip(got_m.tolist(), got_t.tolist(), strict=True)) == _twin(pairs)
    assert got_m.tolist() == sorted(set(got_m.tolist()))  # ascending, once each: upserts lock in one order


@given(st.lists(rows, max_size=5))
def test_pending_merges_batches(batches: list[list[tuple[int, int]]]) -> None:
    pending = PendingLastSeen()
    for pairs in batches:
        m, t = newest_per_meter(
            np.array([p[0] for p in pairs], dtype=np.int32), np.array([p[1] for p in pairs], dtype=np.int64)
        )
        pending.add(m, t)
    got_m, got_t = pending.take()
    assert dict(zip(got_m.tolist(), got_t.tolist(), strict=True)) == _twin([p for b in batches for p in b])
    assert pending.pairs == 0 and len(pending.take()[0]) == 0


def test_upsert_keeps_the_newest(make_database: Callable[[str], DatabaseServer]) -> None:
    db = make_database(f"amr_ingest_ls_{uuid.uuid4().hex[:8]}")
    add_test_meters(db)
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        ids = [
            conn.execute("SELECT meter_id FROM meters WHERE serial = %s", (serial(i),)).fetchone()[0]  # type: ignore[index]
            for i in (41, 42)
        ]
    day_us = DAY_S * US_PER_S
    with psycopg.connect(db.conninfo(Role.INGEST), autocommit=True) as conn:
        for newest in ([9000 * day_us, 9000 * day_us], [9001 * day_us, 8000 * day_us]):  # meter 42 goes back
            with conn.transaction(), conn.cursor() as cur:
                write_last_seen(cur, np.array(ids, dtype=np.int32), np.array(newest, dtype=np.int64))
        got = conn.execute(
            f"SELECT meter_id, (extract(epoch FROM last_reading_ts - {PG_EPOCH_SQL}) / {DAY_S})::int"
            " FROM meter_last_seen WHERE meter_id = ANY(%s) ORDER BY meter_id",
            (ids,),
        ).fetchall()
    assert got == [(ids[0], 9001), (ids[1], 9000)]
