"""billing.load.fetch_readings against a real TimescaleDB: the same rows whichever way it selects the meters."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import numpy as np
import psycopg
import pytest

from amr.db.server import DatabaseServer, Role
from amr.timebase import DAY_S, local_midnight_utc_s
from billing.load import DENSE_FETCH_SHARE, fetch_meters, fetch_readings
from billing.synthetic import copy_readings, register_reads

FIRST = date(2026, 10, 1)
N_METERS = 12


@pytest.fixture(scope="module")
def fleet(make_database: Callable[[str], DatabaseServer]) -> DatabaseServer:
    db = make_database("billing_load_test")
    rng = np.random.default_rng(3)
    reads = register_reads(
        meter_ids=np.arange(1, N_METERS + 1), first_day=FIRST, n_days=4, interval_s=6 * 3600,
        kwh_per_day=rng.uniform(2, 20, N_METERS), rng=rng,
    )  # fmt: skip
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO meters (meter_id, serial, city, power_company, customer_code, tariff_class, meter_kind)"
            " SELECT i, 'LD' || i, 'HCM', 'PE0100', 'PE01' || i, 'household', 'smart'"
            " FROM generate_series(1, %s) AS i",
            (N_METERS,),
        )
        copy_readings(conn, reads)
    return db


def _expected(conn: psycopg.Connection, ids: list[int], from_s: int, to_s: int) -> list[tuple[int, int, int]]:
    rows = conn.execute(
        "SELECT meter_id, channel_id, extract(epoch FROM ts)::bigint FROM readings WHERE meter_id = ANY(%s)"
        " AND ts > to_timestamp(%s) AND ts <= to_timestamp(%s) ORDER BY meter_id, channel_id, ts",
        (ids, from_s, to_s),
    ).fetchall()
    return [(int(m), int(c), int(t)) for m, c, t in rows]


@pytest.mark.parametrize(
    "ids",
    [
        list(range(1, N_METERS + 1)),  # a whole range
        [2, 3, 5, 6, 7, 8],  # most of 2..8: the range is read and meter 4 dropped here
        [1, 12],  # two of twelve: PostgreSQL selects them
        [7],
    ],
)
def test_the_same_rows_whichever_way_the_meters_are_selected(fleet: DatabaseServer, ids: list[int]) -> None:
    from_s = local_midnight_utc_s(FIRST) + DAY_S // 2
    to_s = local_midnight_utc_s(FIRST) + 3 * DAY_S
    with psycopg.connect(fleet.conninfo(Role.BILLING), autocommit=True) as conn:
        r = fetch_readings(conn, meter_ids=np.array(ids, np.int32), channels=(1,), from_s=from_s, to_s=to_s)
        expected = _expected(conn, ids, from_s, to_s)
    got = list(zip(r.meter_id.tolist(), r.channel_id.tolist(), r.ts_s.tolist(), strict=True))
    assert got == expected
    assert set(r.meter_id.tolist()) == set(ids)
    assert r.meter_id.dtype == np.int32 and r.ts_s.dtype == np.int64


def test_the_share_that_reads_a_whole_range_keeps_the_wanted_meters_a_majority() -> None:
    assert DENSE_FETCH_SHARE <= 2  # a range read whole sends at most twice the rows wanted


def test_fetch_meters_by_id_reads_only_those_meters(fleet: DatabaseServer) -> None:
    with psycopg.connect(fleet.conninfo(Role.BILLING), autocommit=True) as conn:
        some = fetch_meters(conn, meter_ids=np.array([9, 3, 5], np.int32))
        every = fetch_meters(conn)
    assert some.meter_id.tolist() == [3, 5, 9]
    assert some.serial.tolist() == ["LD3", "LD5", "LD9"]
    assert len(every) == N_METERS
