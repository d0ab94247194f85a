"""VEE passes that resume each series from its stored state (billing.series_state, sql/097_vee_series_state.sql)
against passes that read the series' history, on two real TimescaleDB databases fed the same readings through
ingest's write path, day by day as a concentrator delivers them."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta

import numpy as np
import psycopg
import pytest

from amr.db.server import DatabaseServer, Role
from amr.obis import STATUS_BITS
from amr.timebase import DAY_S, local_midnight_utc_s
from billing import flags as F
from billing.continuous import PassSummary, drain
from billing.rules import read_vee_rules
from billing.series_state import STATE_ROWS, load_states, rules_key, save_states, stored_columns
from billing.synthetic import concat, register_reads
from billing.vee import ReadingArrays
from tests.ingested import store_through_ingest

RULES = read_vee_rules(None)
FIRST = date(2026, 9, 1)
HISTORY_DAYS = 20
LANDING_DAYS = 6
DAILY = np.arange(1, 25, dtype=np.int32)
PROFILE = np.arange(25, 31, dtype=np.int32)
# The day checks compare with an average day: a resumed series' is smoothed (its state), a full pass's is the plain
# average of the history before its window, so those three flags may differ; every other rule may not.
HISTORY_CHECKS = F.HIGH_USE | F.LOW_USE | F.ZERO_USE
METERS = (
    "meter_id, serial, city, power_company, customer_code, tariff_class, meter_kind, multiplier, register_digits,"
    " households, read_day"
)


def _fleet() -> ReadingArrays:
    rng = np.random.default_rng(11)
    n_days = HISTORY_DAYS + LANDING_DAYS
    daily = register_reads(meter_ids=DAILY, first_day=FIRST, n_days=n_days, interval_s=DAY_S,
                           kwh_per_day=rng.uniform(3, 30, DAILY.size), rng=rng)  # fmt: skip
    profile = register_reads(meter_ids=PROFILE, first_day=FIRST, n_days=n_days, interval_s=1800,
                             kwh_per_day=rng.uniform(5, 20, PROFILE.size), rng=rng)  # fmt: skip
    r = concat([daily, profile])
    landing = local_midnight_utc_s(FIRST + timedelta(days=HISTORY_DAYS))
    value, quality = r.value.copy(), r.quality.copy()
    late = r.ts_s > landing
    # faults in the landing days: a bad status, a spike that falls back, a stuck register, missing reads (a daily
    # meter's midnight: a 2-day gap, like-day; a profile meter's hour: linear), a meter replaced
    picks = rng.choice(np.flatnonzero(late), 12, replace=False)
    quality[picks[:3]] = STATUS_BITS["DATA_NOT_VALID"]
    value[picks[3:6]] += 5000.0
    stuck = (r.meter_id == 5) & late
    value[stuck] = value[np.flatnonzero(stuck)[0]]
    keep = np.ones(len(r), bool)
    keep[picks[6:9]] = False
    hour = np.flatnonzero((r.meter_id == 26) & late)[30:32]
    keep[hour] = False
    replaced = (r.meter_id == 7) & (r.ts_s > landing + 3 * DAY_S)
    value[replaced] -= value[np.flatnonzero(replaced)[0]] - 2.0
    return ReadingArrays(meter_id=r.meter_id, channel_id=r.channel_id, ts_s=r.ts_s, value=value,
                         quality=quality).take(keep)  # fmt: skip


def _add_meters(db: DatabaseServer) -> None:
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO meters ({METERS}) VALUES (%s, %s, 'HCM', 'PE0100', %s, 'household', 'smart', 1, 6, 1, 1)",
            [(int(m), f"RS{m:06d}", f"PE0100{m:07d}") for m in np.r_[DAILY, PROFILE]],
        )


def _rows(db: DatabaseServer, query: str) -> list[tuple[object, ...]]:
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        return conn.execute(query).fetchall()  # type: ignore[arg-type]


def _states(db: DatabaseServer) -> dict[str, np.ndarray]:
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        return stored_columns(conn)


def _land_day_by_day(db: DatabaseServer, r: ReadingArrays, *, forget_states: bool) -> list[PassSummary]:
    """The history, then each landing day (its reads after its midnight, to the next), a drain after each."""
    _add_meters(db)
    landing = local_midnight_utc_s(FIRST + timedelta(days=HISTORY_DAYS))
    store_through_ingest(db, r.take(r.ts_s <= landing))
    drain(db.conninfo(Role.BILLING), rules=RULES)
    summaries = []
    for d in range(LANDING_DAYS):
        lo = landing + d * DAY_S
        store_through_ingest(db, r.take((r.ts_s > lo) & (r.ts_s <= lo + DAY_S)))
        if forget_states:
            with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
                conn.execute("TRUNCATE vee_series_state_blocks")
        summaries += drain(db.conninfo(Role.BILLING), rules=RULES)
    return summaries


@pytest.fixture(scope="module")
def both(make_database: Callable[[str], DatabaseServer]) -> tuple[DatabaseServer, DatabaseServer, list[PassSummary],
                                                                   list[PassSummary]]:  # fmt: skip
    r = _fleet()
    resumed, full = make_database("vee_resumed"), make_database("vee_full")
    return (
        resumed,
        full,
        _land_day_by_day(resumed, r, forget_states=False),
        _land_day_by_day(full, r, forget_states=True),
    )


def test_resumed_passes_write_the_days_that_passes_from_the_history_write(
    both: tuple[DatabaseServer, DatabaseServer, list[PassSummary], list[PassSummary]],
) -> None:
    resumed, full, resumed_passes, full_passes = both
    # every meter resumes every landing day but those whose faults need the history (see _fleet): at most 8 a day
    meters = DAILY.size + PROFILE.size
    assert sum(p.resumed for p in resumed_passes) >= (meters - 8) * LANDING_DAYS
    assert sum(p.resumed for p in full_passes) == 0
    assert sum(p.readings for p in resumed_passes) * 4 < sum(p.readings for p in full_passes)
    days = (
        f"SELECT meter_id, channel_id, day, measured_kwh, estimated_kwh, n_measured, n_estimated,"
        f" flags & ~{HISTORY_CHECKS}, methods, quality, method FROM vee_daily ORDER BY 1, 2, 3"
    )
    got, want = _rows(resumed, days), _rows(full, days)
    assert len(got) == len(want) == (DAILY.size + PROFILE.size) * (HISTORY_DAYS + LANDING_DAYS)
    assert [g[:3] for g in got] == [w[:3] for w in want]
    for g, w in zip(got, want, strict=True):
        assert g[3:5] == pytest.approx(w[3:5], rel=1e-12, abs=1e-9), (g, w)
        assert g[5:] == w[5:], (g, w)
    slots = (
        "SELECT meter_id, channel_id, interval_end, round(energy_kwh::numeric, 9), quality, method FROM vee_intervals"
    )
    assert sorted(_rows(resumed, slots)) == sorted(_rows(full, slots))
    rules = "SELECT meter_id, channel_id, rule, interval_start, interval_end FROM vee_flags"
    checks = ("HIGH_USE", "LOW_USE", "ZERO_USE")
    assert sorted(r for r in _rows(resumed, rules) if r[2] not in checks) == sorted(
        r for r in _rows(full, rules) if r[2] not in checks
    )


def test_a_state_made_under_other_rules_is_not_resumed_from(make_database: Callable[[str], DatabaseServer]) -> None:
    db = make_database("vee_state_rules")
    _add_meters(db)
    r = _fleet()
    landing = local_midnight_utc_s(FIRST + timedelta(days=HISTORY_DAYS))
    store_through_ingest(db, r.take(r.ts_s <= landing))
    drain(db.conninfo(Role.BILLING), rules=RULES)
    assert set(_states(db)["rules_key"].tolist()) == {rules_key(RULES)}
    stricter = RULES.model_copy(update={"spike": RULES.spike.model_copy(update={"factor": 3.0})})
    store_through_ingest(db, r.take((r.ts_s > landing) & (r.ts_s <= landing + DAY_S)))
    passes = drain(db.conninfo(Role.BILLING), rules=stricter)
    assert passes and sum(p.resumed for p in passes) == 0  # every meter validated from its history
    keys, counts = np.unique(_states(db)["rules_key"], return_counts=True)
    by_key = dict(zip(keys.tolist(), counts.tolist(), strict=True))
    # every series validated then has its state made under the new rules; a meter with no read that day (the
    # fleet's missing reads) keeps its old one, which the next pass does not resume from either
    assert by_key[rules_key(stricter)] >= DAILY.size + PROFILE.size - 3 and by_key.get(rules_key(RULES), 0) <= 3
    store_through_ingest(db, r.take((r.ts_s > landing + DAY_S) & (r.ts_s <= landing + 2 * DAY_S)))
    assert sum(p.resumed for p in drain(db.conninfo(Role.BILLING), rules=stricter)) > 0


def _state_rows(meter_ids: list[int], *, read_s: int, rules: int) -> dict[str, np.ndarray]:
    n = len(meter_ids)
    values = {name: np.zeros(n, np.dtype(dtype).newbyteorder("=")) for name, dtype in STATE_ROWS.dtype.descr[2::2]}
    return values | {
        "meter_id": np.array(meter_ids, np.int32),
        "channel_id": np.ones(n, np.int16),
        "read_s": np.full(n, read_s, np.int64),
        "register_kwh": np.arange(n, dtype=np.float64) + 0.5,
        "interval_s": np.full(n, DAY_S, np.int32),
        "rules_key": np.full(n, rules, np.int64),
    }


def test_states_are_stored_by_block_and_a_pass_rewrites_only_its_series(
    make_database: Callable[[str], DatabaseServer],
) -> None:
    db = make_database("vee_state_blocks")
    key = rules_key(RULES)
    nothing = (np.zeros(0, np.int32), np.zeros(0, np.int16))
    with psycopg.connect(db.conninfo(Role.BILLING)) as conn:
        # meters 1, 2 and 1,025 share no block with 5,000; the 63-bit rules key survives the round trip exactly
        save_states(conn, _state_rows([1, 2, 1025, 5000], read_s=100, rules=key), nothing)
        # a later pass: meter 2 has a new state, 1,025 lost its own (validated from its history, no state)
        assert save_states(conn, _state_rows([2], read_s=200, rules=key), (np.array([1025], np.int32),
                                                                            np.array([1], np.int16))) == 1  # fmt: skip
        stored = stored_columns(conn)
        assert stored["meter_id"].tolist() == [1, 2, 5000]
        assert stored["read_s"].tolist() == [100, 200, 100]
        assert stored["rules_key"].tolist() == [key] * 3
        blocks = conn.execute("SELECT block, series FROM vee_series_state_blocks ORDER BY block").fetchall()
        assert blocks == [(0, 2), (5000 >> 10, 1)]
        # a block of another layout is no state (a cache), not an error; the others still load
        conn.execute("UPDATE vee_series_state_blocks SET states = '\\x0102' WHERE block = 0")
        loaded = load_states(conn, np.array([1, 2, 5000], np.int32), rules=RULES)
        assert loaded.seeds.meter_id.tolist() == [5000]
        # and the next pass over the block writes it afresh
        save_states(conn, _state_rows([3], read_s=300, rules=key), nothing)
        assert stored_columns(conn)["meter_id"].tolist() == [3, 5000]
        assert load_states(conn, np.array([3], np.int32), rules=RULES).seeds.meter_id.tolist() == [3]
        # meters far apart: only their blocks are read (block 4's 5000, not block 0's 3)
        far = load_states(conn, np.array([5000, 900_000], np.int32), rules=RULES)
        assert far.blocks is not None and far.blocks.tolist() == [4, 900_000 >> 10]
        assert far.seeds.meter_id.tolist() == [5000]
        # a pass merges into the blocks it read when it claimed its meters (other rules' rows kept), not read again
        read = load_states(conn, np.array([3, 5000], np.int32), rules=RULES)
        save_states(conn, _state_rows([5001], read_s=400, rules=key + 1), nothing)  # after the read: not in it
        save_states(conn, _state_rows([4], read_s=500, rules=key), nothing, read=read)
        stored = stored_columns(conn)
        assert stored["meter_id"].tolist() == [3, 4, 5000, 5001]
        # block 4 merged into what `read` had of it: 5001, saved after the read, is gone (in a pass nothing writes
        # between: the pass lock); block 0 is not touched
        save_states(conn, _state_rows([5002], read_s=600, rules=key), nothing, read=read)
        assert stored_columns(conn)["meter_id"].tolist() == [3, 4, 5000, 5002]
