"""Interval-level validated results of the continuous VEE on a real TimescaleDB (vee_interval_days and its view
vee_intervals, sql/099_vee_interval_days.sql): a profile meter's gap is estimated slot by slot and its late reads
turn the estimates into actuals at the next pass, the slots add up to vee_daily, a daily-register meter gets none,
and a spike is never an actual."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import numpy as np
import pandas as pd
import psycopg
import pytest

from amr.db.migrate import migrations_dir
from amr.db.server import DatabaseServer, Role
from amr.timebase import local_midnight_utc_s
from billing.continuous import drain, run_pass
from billing.intervals import store_intervals
from billing.rules import read_vee_rules
from billing.synthetic import concat, register_reads
from billing.vee import ReadingArrays
from tests.ingested import store_through_ingest

RULES = read_vee_rules(None)
FIRST = date(2026, 8, 10)
N_DAYS = 30
PROFILE, DAILY = 101, 102
MULTIPLIER = 2.0  # the profile meter's CT ratio: vee_intervals hold kWh after it, as vee_daily
GAP_DAY = date(2026, 8, 28)
SPIKE_DAY = date(2026, 8, 31)
HALF_HOUR = 1800
METERS = (
    "meter_id, serial, city, power_company, customer_code, tariff_class, meter_kind, multiplier, register_digits,"
    " households, read_day"
)


def _at(day: date, hh: int, mm: int = 0) -> int:
    return local_midnight_utc_s(day) + hh * 3600 + mm * 60


def _rows(db: DatabaseServer, query: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        return conn.execute(query, params).fetchall()  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def idb(make_database: Callable[[str], DatabaseServer]) -> DatabaseServer:
    db = make_database("vee_intervals")
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO meters ({METERS}) VALUES (%s, %s, 'HCM', 'PE0100', %s, 'household', 'smart', %s, 6, 1, 1)",
            [(m, f"IV{m:06d}", f"PE0100{m:07d}", mult) for m, mult in ((PROFILE, MULTIPLIER), (DAILY, 1.0))],
        )
    return db


def _reads() -> tuple[ReadingArrays, np.ndarray, int]:
    """Both meters' reads, the profile meter's 3-hour gap (its late reads) and the spike's time."""
    rng = np.random.default_rng(5)
    profile = register_reads(meter_ids=np.array([PROFILE]), first_day=FIRST, n_days=N_DAYS, interval_s=HALF_HOUR,
                             kwh_per_day=np.array([9.0]), rng=rng)  # fmt: skip
    daily = register_reads(meter_ids=np.array([DAILY]), first_day=FIRST, n_days=N_DAYS, interval_s=86_400,
                           kwh_per_day=np.array([12.0]), rng=rng)  # fmt: skip
    spike_t = _at(SPIKE_DAY, 20)
    value = profile.value.copy()
    value[profile.ts_s == spike_t] += 4000.0  # one bad read: the register comes back down at the next one
    profile = ReadingArrays(meter_id=profile.meter_id, channel_id=profile.channel_id, ts_s=profile.ts_s,
                            value=value, quality=profile.quality)  # fmt: skip
    r = concat([profile, daily])
    late = (r.meter_id == PROFILE) & (r.ts_s > _at(GAP_DAY, 10)) & (r.ts_s < _at(GAP_DAY, 13))
    return r, late, spike_t


def _slots(db: DatabaseServer, a: int, b: int) -> list[tuple[object, ...]]:
    """(interval_end, energy_kwh, quality, method, version, made_at) of the profile meter's slots in (a, b]."""
    return _rows(
        db,
        "SELECT interval_end, energy_kwh, quality, method, version, made_at FROM vee_intervals"
        " WHERE meter_id = %s AND channel_id = 1"
        " AND interval_end > to_timestamp(%s) AND interval_end <= to_timestamp(%s)"
        " ORDER BY interval_end",
        (PROFILE, a, b),
    )


def _register(r: ReadingArrays, t: int) -> float:
    return float(r.value[int(np.flatnonzero((r.meter_id == PROFILE) & (r.ts_s == t))[0])])


def _daily_mismatches(db: DatabaseServer) -> list[tuple[object, ...]]:
    """Days whose slots do not add up to vee_daily's measured + estimated energy, or carry another version."""
    return _rows(
        db,
        "WITH s AS (SELECT ((interval_end - interval '1 second') AT TIME ZONE 'Asia/Ho_Chi_Minh')::date AS day,"
        "  sum(energy_kwh) AS kwh, count(*) AS n, max(version) AS vmax, min(version) AS vmin FROM vee_intervals"
        "  WHERE meter_id = %s AND channel_id = 1 GROUP BY 1),"
        " d AS (SELECT * FROM vee_daily WHERE meter_id = %s AND channel_id = 1)"
        " SELECT coalesce(d.day, s.day), d.measured_kwh + d.estimated_kwh, s.kwh, s.n, d.version, s.vmin, s.vmax"
        " FROM d FULL JOIN s ON s.day = d.day"
        " WHERE d.day IS NULL OR s.n IS DISTINCT FROM 48 OR abs(s.kwh - (d.measured_kwh + d.estimated_kwh)) > 1e-6"
        " OR s.vmax > d.version",
        (PROFILE, PROFILE),
    )


def test_profile_gaps_are_estimated_then_replaced_by_late_reads(idb: DatabaseServer) -> None:
    r, late, spike_t = _reads()
    store_through_ingest(idb, r.take(~late))
    drain(idb.conninfo(Role.BILLING), rules=RULES)

    # the 3-hour gap: six substituted slots (linear interpolation) adding up to the register difference
    gap = _slots(idb, _at(GAP_DAY, 10), _at(GAP_DAY, 13))
    assert [(q, m, v) for _, _, q, m, v, _ in gap] == [("S", 17, 1)] * 6
    register_kwh = (_register(r, _at(GAP_DAY, 13)) - _register(r, _at(GAP_DAY, 10))) * MULTIPLIER
    assert sum(e for _, e, *_ in gap) == pytest.approx(register_kwh, rel=1e-12)
    # every closed day has its 48 slots, which add up to its vee_daily row; a daily-register meter has no slots
    assert _rows(idb, "SELECT count(*) FROM vee_intervals WHERE meter_id = %s", (PROFILE,))[0][0] == N_DAYS * 48
    assert _daily_mismatches(idb) == []
    assert _rows(idb, "SELECT count(*) FROM vee_intervals WHERE meter_id = %s", (DAILY,))[0][0] == 0
    assert _rows(idb, "SELECT count(*) FROM vee_daily WHERE meter_id = %s", (DAILY,))[0][0] == N_DAYS
    # the spike's read is no actual: its slot and the next are one estimated gap, at the register's real pace
    spike = _slots(idb, spike_t - HALF_HOUR, spike_t + HALF_HOUR)
    assert [q for _, _, q, *_ in spike] == ["S", "S"]
    assert max(e for _, e, *_ in spike) < 100.0  # type: ignore[type-var]
    # a pass over nothing new writes nothing
    before = _rows(idb, "SELECT max(made_at), count(*) FROM vee_intervals")
    assert run_pass(idb.conninfo(Role.BILLING), rules=RULES).units == 0
    assert _rows(idb, "SELECT max(made_at), count(*) FROM vee_intervals") == before

    # the late reads arrive: the gap's slots become actuals (version 2, the day's late_data version); the gap's day
    # is rewritten (its row: sql/099_vee_interval_days.sql), no other day
    first_made = before[0][0]
    store_through_ingest(idb, r.take(late))
    drain(idb.conninfo(Role.BILLING), rules=RULES)
    gap = _slots(idb, _at(GAP_DAY, 10), _at(GAP_DAY, 13))
    assert [(q, m, v) for _, _, q, m, v, _ in gap] == [("A", None, 2)] * 6
    assert sum(e for _, e, *_ in gap) == pytest.approx(register_kwh, rel=1e-12)
    first = _slots(idb, _at(GAP_DAY, 10), _at(GAP_DAY, 10, 30))[0]
    assert first[1] == pytest.approx((_register(r, _at(GAP_DAY, 10, 30)) - _register(r, _at(GAP_DAY, 10))) * MULTIPLIER)
    changed = _rows(idb, "SELECT day, version FROM vee_interval_days WHERE made_at > %s", (first_made,))
    assert changed == [(GAP_DAY, 2)]
    assert _rows(idb, "SELECT version, reason FROM vee_daily WHERE meter_id = %s AND channel_id = 1 AND day = %s",
                 (PROFILE, GAP_DAY)) == [(2, "late_data")]  # fmt: skip
    assert _daily_mismatches(idb) == []


def test_the_reader_reads_intervals_and_may_not_write_them(idb: DatabaseServer) -> None:
    with psycopg.connect(idb.conninfo(Role.READER)) as conn:
        assert conn.execute("SELECT count(*) FROM vee_intervals").fetchone() is not None
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("DELETE FROM vee_interval_days")


def test_a_changed_slot_rewrites_its_day_and_an_unchanged_day_stays(
    make_database: Callable[[str], DatabaseServer],
) -> None:
    """store_intervals on a day versioned again: a row only when a slot's energy (beyond rounding), quality or
    method changed."""
    db = make_database("vee_interval_days_upsert")
    ends = local_midnight_utc_s(GAP_DAY) + HALF_HOUR * np.arange(1, 49)
    slots = pd.DataFrame({"meter_id": np.full(48, 7, np.int32), "channel_id": np.ones(48, np.int16),
                          "interval_end_s": ends, "energy_kwh": np.linspace(0.1, 1.0, 48),
                          "quality": np.full(48, ord("A"), np.int16), "method": np.zeros(48, np.int16),
                          "day": np.full(48, (GAP_DAY - date(1970, 1, 1)).days, np.int64),
                          "interval_s": np.full(48, HALF_HOUR, np.int64)})  # fmt: skip

    def version(v: int) -> pd.DataFrame:
        return pd.DataFrame({"meter_id": [7], "channel_id": [1], "day": [GAP_DAY], "version": [v]})

    with psycopg.connect(db.conninfo(Role.BILLING)) as conn:
        assert store_intervals(conn, slots.iloc[2:], version(1)) == 1  # the first two slots have no value yet
        assert store_intervals(conn, slots.iloc[2:].assign(energy_kwh=slots["energy_kwh"] * (1 + 1e-14)),
                               version(2)) == 0  # fmt: skip
        assert store_intervals(conn, slots.iloc[2:], version(3)) == 0
        energy = slots["energy_kwh"].to_numpy().copy()
        energy[30] += 1e-6
        assert store_intervals(conn, slots.assign(energy_kwh=energy), version(4)) == 1  # slots 1, 2 and 31 changed
        quality = slots["quality"].to_numpy().copy()
        quality[5] = ord("S")
        assert store_intervals(conn, slots.assign(energy_kwh=energy, quality=quality), version(5)) == 1
        # the same slots in another order (the sorting path): the same day, nothing to rewrite
        shuffled = slots.assign(energy_kwh=energy, quality=quality).sample(frac=1.0, random_state=3)
        assert store_intervals(conn, shuffled, version(6)) == 0
        conn.commit()
    got = _rows(db, "SELECT energy_kwh, quality, method, version FROM vee_intervals WHERE meter_id = 7"
                    " ORDER BY interval_end")  # fmt: skip
    assert [r[0] for r in got] == pytest.approx(energy.tolist(), rel=1e-15)
    assert "".join(str(r[1]) for r in got) == "AAAAAS" + "A" * 42 and {r[2:] for r in got} == {(None, 5)}


def test_the_upgrade_keeps_every_slot_written_before_it(make_database: Callable[[str], DatabaseServer]) -> None:
    """sql/099_vee_interval_days.sql on slots written as rows by sql/096_vee_intervals.sql: the view gives them back,
    a gap stays a gap."""
    db = make_database("vee_intervals_upgrade")
    sql_dir = migrations_dir()
    old = [(5, 1, _at(GAP_DAY, 0, 30) + HALF_HOUR * k, 0.5 + k, "S" if k in (3, 4) else "A",
            17 if k in (3, 4) else None, 1 if k < 48 else 2) for k in range(60) if k not in (10, 11)]  # fmt: skip
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        conn.execute("DROP VIEW vee_intervals; DROP TABLE vee_interval_days")
        conn.execute((sql_dir / "096_vee_intervals.sql").read_text().encode())
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO vee_intervals (meter_id, channel_id, interval_end, energy_kwh, quality, method, version)"
                " VALUES (%s, %s, to_timestamp(%s), %s, %s, %s, %s)",
                old,
            )
        conn.execute((sql_dir / "099_vee_interval_days.sql").read_text().encode())
    got = _rows(db, "SELECT meter_id, channel_id, extract(epoch FROM interval_end)::bigint, energy_kwh, quality,"
                    " method, version FROM vee_intervals ORDER BY interval_end")  # fmt: skip
    assert got == old  # slots 48 on end the day after GAP_DAY: its day was written at version 2
    days = _rows(db, "SELECT day, interval_s, length(quality), version FROM vee_interval_days ORDER BY day")
    assert days == [(GAP_DAY, HALF_HOUR, 48, 1), (GAP_DAY + timedelta(days=1), HALF_HOUR, 48, 2)]
