"""Continuous VEE on a real TimescaleDB: readings land through ingest's write path (which marks the units), passes
validate them; late reads replace estimates, episodes open and clear, edits are versions with an audit trail,
and a pass killed with SIGKILL loses and duplicates nothing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import date, timedelta

import numpy as np
import psycopg
import pytest

from amr.db.server import DatabaseServer, Role
from amr.timebase import DAY_S, local_midnight_utc_s
from billing.continuous import _claim_units, drain, run_pass
from billing.editing import DayRef, EditRefused, edit_day, undo_day
from billing.rules import read_vee_rules
from billing.synthetic import concat, register_reads
from billing.vee import CLOCK_CHANNEL, ReadingArrays
from tests.ingested import store_through_ingest

RULES = read_vee_rules(None)
FIRST = date(2026, 8, 10)
GAP_DAYS = (date(2026, 9, 10), date(2026, 9, 11))  # the midnight reads that arrive late
METERS = (
    "meter_id, serial, city, power_company, customer_code, tariff_class, meter_kind, multiplier, register_digits,"
    " households, read_day"
)


def _add_meters(db: DatabaseServer, ids: range) -> None:
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO meters ({METERS}) VALUES (%s, %s, 'HCM', 'PE0100', %s, 'household', 'smart', 1, 6, 1, 1)"
            " ON CONFLICT DO NOTHING",
            [(m, f"CV{m:06d}", f"PE0100{m:07d}") for m in ids],
        )


def _midnight(day: date) -> int:
    return local_midnight_utc_s(day)


def _rows(db: DatabaseServer, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def vdb(make_database: Callable[[str], DatabaseServer]) -> DatabaseServer:
    return make_database("vee_continuous")


def test_ingest_marks_units_and_a_pass_validates_them_once(vdb: DatabaseServer) -> None:
    _add_meters(vdb, range(1, 2))
    r = register_reads(meter_ids=np.array([1]), first_day=FIRST, n_days=41, interval_s=DAY_S,
                       kwh_per_day=np.array([12.0]), rng=np.random.default_rng(1))  # fmt: skip
    late = np.isin(r.ts_s, [_midnight(d) for d in GAP_DAYS])
    store_through_ingest(vdb, r.take(~late))
    pending = _rows(vdb, "SELECT count(*) FROM vee_pending WHERE meter_id = 1")[0][0]
    assert pending == 41 - 2 + 1  # one unit per local day that received a read
    passes = drain(vdb.conninfo(Role.BILLING), rules=RULES)
    assert passes and _rows(vdb, "SELECT count(*) FROM vee_pending")[0][0] == 0
    gap = _rows(
        vdb,
        "SELECT day, quality, method, version, reason FROM vee_daily WHERE meter_id = 1 AND channel_id = 1"
        " AND day BETWEEN %s AND %s ORDER BY day",
        (date(2026, 9, 9), date(2026, 9, 11)),
    )
    assert [(q, v, why) for _, q, _, v, why in gap] == [("S", 1, "first_pass")] * 3  # estimated, substituted
    assert {m for *_, m, _, _ in [(g[0], g[1], g[2], g[3], g[4]) for g in gap]} <= {14, 17}
    assert (
        _rows(vdb, "SELECT count(*) FROM vee_episodes WHERE meter_id = 1 AND rule = 'GAP' AND status = 'open'")[0][0]
        == 1
    )
    # the same data again (a replayed batch) stores nothing new, marks nothing, and a pass changes nothing
    store_through_ingest(vdb, r.take(~late))
    assert run_pass(vdb.conninfo(Role.BILLING), rules=RULES).units == 0

    # the late reads arrive: the estimates become actuals as new versions, the GAP episode clears itself
    store_through_ingest(vdb, r.take(late))
    drain(vdb.conninfo(Role.BILLING), rules=RULES)
    after = _rows(
        vdb,
        "SELECT day, quality, version, reason FROM vee_daily WHERE meter_id = 1 AND channel_id = 1"
        " AND day BETWEEN %s AND %s ORDER BY day",
        (date(2026, 9, 9), date(2026, 9, 11)),
    )
    assert [(q, v, why) for _, q, v, why in after] == [("A", 2, "late_data")] * 3
    history = _rows(
        vdb,
        "SELECT version, quality, estimated_kwh > 0 FROM vee_daily_versions WHERE meter_id = 1 AND channel_id = 1"
        " AND day = %s ORDER BY version",
        (date(2026, 9, 10),),
    )
    assert history == [(1, "S", True), (2, "A", False)]  # the estimate is kept as version 1
    # only the days the late reads changed got a new version
    assert _rows(vdb, "SELECT count(*) FROM vee_daily WHERE meter_id = 1 AND version > 1")[0][0] == 3
    assert _rows(vdb, "SELECT status FROM vee_episodes WHERE meter_id = 1 AND rule = 'GAP'") == [("auto_resolved",)]


def test_an_edit_is_a_version_with_an_audit_row_and_the_reader_may_not(vdb: DatabaseServer) -> None:
    _add_meters(vdb, range(2, 3))
    r = register_reads(meter_ids=np.array([2]), first_day=FIRST, n_days=41, interval_s=DAY_S,
                       kwh_per_day=np.array([8.0]), rng=np.random.default_rng(2))  # fmt: skip
    store_through_ingest(vdb, r)
    drain(vdb.conninfo(Role.BILLING), rules=RULES)
    ref = DayRef(serial="CV000002", day=date(2026, 9, 15))
    (before,) = _rows(vdb, "SELECT measured_kwh + estimated_kwh FROM vee_daily WHERE meter_id = 2 AND channel_id = 1"
                           " AND day = %s", (ref.day,))  # fmt: skip
    with psycopg.connect(vdb.conninfo(Role.READER)) as conn, pytest.raises(EditRefused, match="role"):
        edit_day(conn, ref, kwh=99.0, reason="reader tries", operator="mallory")
    with psycopg.connect(vdb.conninfo(Role.BILLING)) as conn:
        v = edit_day(conn, ref, kwh=99.0, reason="customer self-read photo", operator="thu.nguyen")
    assert (v.version, v.kwh, v.quality) == (2, 99.0, "S")
    audit = _rows(vdb, "SELECT operator, action, db_role, old_version, new_version, old_kwh, new_kwh, reason"
                       " FROM vee_audit WHERE meter_id = 2")  # fmt: skip
    assert audit == [("thu.nguyen", "edit", "amr_billing", 1, 2, before[0], 99.0, "customer self-read photo")]
    # a later pass over the edited day keeps the edit
    nxt = register_reads(meter_ids=np.array([2]), first_day=FIRST + timedelta(days=41), n_days=1, interval_s=DAY_S,
                         kwh_per_day=np.array([8.0]), rng=np.random.default_rng(3),
                         start_kwh=r.value[-1:] )  # fmt: skip
    store_through_ingest(vdb, nxt.take(nxt.ts_s > r.ts_s[-1]))
    with psycopg.connect(vdb.conninfo(Role.OWNER), autocommit=True) as conn:
        conn.execute("INSERT INTO vee_pending (meter_id, day) VALUES (2, %s) ON CONFLICT DO NOTHING", (ref.day,))
    drain(vdb.conninfo(Role.BILLING), rules=RULES)
    assert _rows(vdb, "SELECT version, measured_kwh + estimated_kwh, locked FROM vee_daily WHERE meter_id = 2"
                      " AND channel_id = 1 AND day = %s", (ref.day,)) == [(2, 99.0, True)]  # fmt: skip
    with psycopg.connect(vdb.conninfo(Role.BILLING)) as conn:
        u = undo_day(conn, ref, reason="photo was of another meter", operator="thu.nguyen")
    assert (u.version, u.kwh, u.reason) == (3, pytest.approx(before[0]), "undo")


def test_a_drifting_clock_is_one_episode_per_rule_not_one_row_per_read(vdb: DatabaseServer) -> None:
    _add_meters(vdb, range(3, 4))
    first = date(2026, 9, 1)
    energy = register_reads(meter_ids=np.array([3]), first_day=first, n_days=30, interval_s=DAY_S,
                            kwh_per_day=np.array([10.0]), rng=np.random.default_rng(4))  # fmt: skip
    for k in range(31):  # one day's reads at a time, a pass after each, as the service runs
        t = _midnight(first + timedelta(days=k))
        offset_s = 25.0 * k  # suspect (> 30 s) from day 2, invalid (> 600 s) from day 25
        clock = ReadingArrays(meter_id=np.array([3], np.int32), channel_id=np.array([CLOCK_CHANNEL], np.int16),
                              ts_s=np.array([t], np.int64), value=np.array([offset_s]),
                              quality=np.zeros(1, np.int16))  # fmt: skip
        store_through_ingest(vdb, concat([energy.take(energy.ts_s == t), clock]))
        drain(vdb.conninfo(Role.BILLING), rules=RULES)
    episodes = _rows(vdb, "SELECT rule, occurrences, status FROM vee_episodes WHERE meter_id = 3 ORDER BY rule")
    rules = [e[0] for e in episodes]
    assert rules == ["CLOCK_INVALID", "CLOCK_SUSPECT"], episodes
    flagged = _rows(vdb, "SELECT rule, count(*) FROM vee_flags WHERE meter_id = 3 GROUP BY rule ORDER BY rule")
    assert [e[1] for e in episodes] == [n for _, n in flagged]  # every occurrence counted once
    assert all(status == "open" for *_, status in episodes)


@pytest.mark.slow
def test_a_pass_killed_with_sigkill_loses_and_duplicates_nothing(
    make_database: Callable[[str], DatabaseServer],
) -> None:
    db = make_database("vee_kill")
    meters = range(1, 3001)
    _add_meters(db, meters)
    r = register_reads(meter_ids=np.array(list(meters)), first_day=date(2026, 9, 1), n_days=30, interval_s=DAY_S,
                       kwh_per_day=np.full(len(meters), 9.0), rng=np.random.default_rng(5))  # fmt: skip
    store_through_ingest(db, r)
    units = _rows(db, "SELECT count(*) FROM vee_pending")[0][0]
    code = (
        "import sys; from billing.continuous import drain; from billing.rules import read_vee_rules;"
        " drain(sys.argv[1], rules=read_vee_rules(None), max_units=4000)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, db.conninfo(Role.BILLING)], env=os.environ.copy())
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        done = _rows(db, "SELECT coalesce(sum(passes), 0) FROM vee_state")[0][0]
        if done >= 2:  # passes have committed and the next one is running
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the passes finished before they could be killed: give them more units"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    left = _rows(db, "SELECT count(*) FROM vee_pending")[0][0]
    assert 0 < left < units
    drain(db.conninfo(Role.BILLING), rules=RULES)
    assert _rows(db, "SELECT count(*) FROM vee_pending")[0][0] == 0
    # every (meter, day) of data validated exactly once: one version each, none lost
    assert _rows(db, "SELECT count(*), max(version) FROM vee_daily") == [(len(meters) * 30, 1)]
    assert _rows(db, "SELECT count(*) FROM vee_daily_versions")[0][0] == len(meters) * 30


def test_a_profile_meters_day_is_written_once_complete_not_at_each_push(vdb: DatabaseServer) -> None:
    _add_meters(vdb, range(4, 5))
    r = register_reads(meter_ids=np.array([4]), first_day=date(2026, 9, 1), n_days=3, interval_s=1800,
                       kwh_per_day=np.array([20.0]), rng=np.random.default_rng(6))  # fmt: skip
    last_day = date(2026, 9, 3)
    for hours in (6, 12, 18, 24):  # the concentrator pushes the last day in four parts, a pass after each
        cut = _midnight(last_day) + hours * 3600
        store_through_ingest(vdb, r.take((r.ts_s <= cut) & (r.ts_s > cut - 6 * 3600) | (r.ts_s <= _midnight(last_day))))
        drain(vdb.conninfo(Role.BILLING), rules=RULES)
        rows = _rows(vdb, "SELECT version, reason, quality, n_measured FROM vee_daily_versions WHERE meter_id = 4"
                          " AND channel_id = 1 AND day = %s", (last_day,))  # fmt: skip
        assert rows == ([] if hours < 24 else [(1, "first_pass", "A", 48)]), (hours, rows)


@pytest.mark.slow
def test_a_pass_on_a_dask_cluster_writes_what_one_process_writes(
    make_database: Callable[[str], DatabaseServer],
) -> None:
    here, there, threads = make_database("vee_here"), make_database("vee_dask"), make_database("vee_threads")
    meters = range(1, 9)
    r = register_reads(meter_ids=np.array(list(meters)), first_day=FIRST, n_days=30, interval_s=DAY_S,
                       kwh_per_day=np.linspace(5.0, 40.0, len(meters)), rng=np.random.default_rng(8))  # fmt: skip
    r = r.take(~((r.meter_id % 3 == 0) & np.isin(r.ts_s, [_midnight(FIRST + timedelta(days=d)) for d in (9, 10)])))
    for db in (here, there, threads):
        _add_meters(db, meters)
        store_through_ingest(db, r)
    passes = drain(here.conninfo(Role.BILLING), rules=RULES)
    on_dask = run_pass(there.conninfo(Role.BILLING), rules=RULES, partition_meters=3, dask_scheduler="local")
    assert on_dask.units == sum(p.units for p in passes) and on_dask.seconds["fetch: history"] > 0
    in_threads = run_pass(threads.conninfo(Role.BILLING), rules=RULES, partition_meters=3)  # 3 partitions, 2 at once
    assert in_threads.units == on_dask.units
    query = (
        "SELECT meter_id, channel_id, day, version, measured_kwh, estimated_kwh, n_measured, n_estimated, flags,"
        " quality, method, reason FROM vee_daily ORDER BY 1, 2, 3"
    )
    assert _rows(there, query) == _rows(here, query) == _rows(threads, query) != []
    flags = "SELECT meter_id, channel_id, rule, interval_start, interval_end FROM vee_flags ORDER BY 1, 2, 3, 4"
    assert _rows(there, flags) == _rows(here, flags) == _rows(threads, flags)


def test_a_pass_claims_every_unit_or_the_oldest_days_first(make_database: Callable[[str], DatabaseServer]) -> None:
    db = make_database("vee_claim")
    late, early = date(2026, 9, 3), date(2026, 9, 1)
    units = [(m, late, 1) for m in (5, 1, 3)] + [(m, early, 2) for m in (4, 2)] + [(6, date(2026, 9, 2), 7)]
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO vee_pending (meter_id, day, marks) VALUES (%s, %s, %s)", units)
        epoch = date(1970, 1, 1)
        want = sorted(((m, (d - epoch).days, k) for m, d, k in units), key=lambda u: (u[1], u[0]))
        assert _claim_units(conn, None, 100).tolist() == [list(u) for u in want]  # read whole, sorted here
        assert _claim_units(conn, None, 3).tolist() == [list(u) for u in want[:3]]  # more than a pass takes
        assert _claim_units(conn, date(2026, 9, 2), 100).tolist() == [list(u) for u in want[:3]]
