"""The continuous bill run's per-series cycle sums (billing.load.fetch_cycle_sums, summed by PostgreSQL) against
the days path they replaced (fetch_validated_days -> days_as_vee -> pricing.determinants, bill_ready) on a real
TimescaleDB: the determinants bit for bit (negative zeros, order-sensitive float sums, gaps, TOU meters, meters
without a total register) and the same bill-ready gate; decode_array_row's refusals; open_episodes by id range."""

from __future__ import annotations

import functools
import struct
from collections.abc import Callable
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime, timedelta

import numpy as np
import psycopg
import pytest

from amr import pgcopy
from amr.db.server import DatabaseServer, Role
from amr.timebase import local_midnight
from billing import run as run_module
from billing.bill_ready import Readiness, bill_ready, cycle_bill_ready, cycle_determinants, days_as_vee
from billing.cycles import BillingPeriod
from billing.load import (
    CYCLE_SUM_COLUMNS,
    CYCLE_SUM_MAX_DAYS,
    CycleSums,
    MeterTable,
    cycle_sums_query,
    decode_array_row,
    fetch_cycle_sums,
    fetch_cycle_sums_concurrently,
    fetch_validated_days,
)
from billing.pricing import Determinants, determinants
from billing.rules import BillReadyRules, read_vee_rules
from billing.run import _continuous_partition, _PartitionJob, open_episodes, vee_window
from billing.vee import ENERGY_CHANNELS, PeriodWindow

PERIOD = BillingPeriod(2026, 10)  # read days 1..31: cycles from 2026-09-01 to 2026-10-31 at the latest
RULES = read_vee_rules(None)
GATE_RULES = BillReadyRules(max_estimated_share=0.3, blocking_severities=["invalid"])
WIRES = [w for _, w in CYCLE_SUM_COLUMNS]
DAILY = (
    "meter_id, channel_id, day, version, measured_kwh, estimated_kwh, n_measured, n_estimated, flags, methods,"
    " quality, method, reason, made_at"
)
MADE_AT = datetime(2026, 11, 1, tzinfo=UTC)


# -- the fleet -----------------------------------------------------------------------------------------------------
@dataclass
class Fleet:
    meters: MeterTable
    rows: list[tuple[object, ...]]  # vee_daily rows (meter, channel, day, version, measured, estimated, ...)


def _meter_table(ids: list[int], read_days: list[int]) -> MeterTable:
    n = len(ids)
    return MeterTable(
        meter_id=np.array(ids, np.int32),
        serial=np.array([f"CS{m:06d}" for m in ids], object),
        customer_code=np.array([f"PE0100{m:07d}" for m in ids], object),
        city=np.full(n, "HCM", object),
        power_company=np.full(n, "PE0100", object),
        tariff_class=np.full(n, "household", object),
        multiplier=np.ones(n),
        register_digits=np.full(n, 6, np.int64),
        households=np.ones(n, np.int64),
        read_day=np.array(read_days, np.int64),
    )


def _row(
    m: int, ch: int, day: date, measured: float, estimated: float = 0.0, *, version: int = 1, flags: int = 0,
    n_meas: int = 96, n_est: int = 0,
) -> tuple[object, ...]:  # fmt: skip
    return (m, ch, day, version, measured, estimated, n_meas, n_est, flags, 0, "A", None, "first_pass", MADE_AT)


# Values whose sum depends on the order they are added in (0.1 + 0.2 then 1e16 absorbs the 0.3, etc.).
ORDERED = [0.1, 0.2, 1e16, -1e16, 0.3, 1e-300, 3.0, -2.9999999999999996, 7.1, 1e16, 2.5, -1e16, 0.7]


def _fleet() -> Fleet:
    window, _, _ = vee_window(PERIOD, _meter_table([1], [1]))
    f0 = window.first_day  # 2026-09-01, the window of read day 1
    rng = np.random.default_rng(20261001)
    rows: list[tuple[object, ...]] = []
    ids: list[int] = []
    read_days: list[int] = []

    def meter(m: int, read_day: int) -> tuple[int, int]:
        """Its cycle as window day offsets (the window of every read day starts at f0)."""
        ids.append(m)
        read_days.append(read_day)
        s, e = PERIOD.cycle(read_day)
        return (s - f0).days, (e - f0).days

    def day(k: int) -> date:
        return f0 + timedelta(days=k)

    # 1: a total register, every day of its cycle and beyond
    s, e = meter(1, 1)
    rows += [_row(1, 1, day(k), 10.0 + 0.137 * k, version=1 + k % 3, flags=1 << (k % 5)) for k in range(0, 62)]
    # 2: gaps before, inside and after the cycle, some negative zeros
    s, e = meter(2, 15)
    rows += [_row(2, 1, day(k), -0.0 if k % 4 == 0 else 4.25 * k, 0.5 if k % 6 == 0 else 0.0, n_est=4 * (k % 6 == 0))
             for k in range(0, 60) if k not in (3, s + 2, s + 17, e + 1)]  # fmt: skip
    # 3: a TOU meter, total and rate registers
    s, e = meter(3, 10)
    for ch, scale in ((1, 30.0), (2, 15.0), (3, 5.0), (4, 10.0)):
        rows += [_row(3, ch, day(k), scale + 0.01 * k, version=2) for k in range(0, 60)]
    # 4: rate registers without a total, a day missing in the peak register (the other registers have it)
    s, e = meter(4, 5)
    for ch in (2, 3, 4):
        rows += [_row(4, ch, day(k), 1.0 * ch + 0.3, 0.1) for k in range(0, 60) if not (ch == 3 and k == s + 3)]
    # 5: every day -0.0 (measured and estimated): the sums are -0.0
    s, e = meter(5, 1)
    rows += [_row(5, 1, day(k), -0.0, -0.0) for k in range(0, 60)]
    # 6: -0.0 with a gap in the cycle: numpy adds +0.0 for the missing day, PostgreSQL skips it
    s, e = meter(6, 1)
    rows += [_row(6, 1, day(k), -0.0, -0.0) for k in range(0, 60) if k != 7]
    # 7: -0.0 with a gap before the cycle's start only
    s, e = meter(7, 20)
    rows += [_row(7, 1, day(k), -0.0, -0.0) for k in range(0, 60) if k != s - 4]
    # 8: -0.0 estimates beside measured energy, the cycle complete and the window's start (cum[e] - +0.0)
    s, e = meter(8, 1)
    rows += [_row(8, 1, day(k), 2.0 + k, -0.0, n_meas=48, n_est=48) for k in range(0, 60)]  # half estimated
    # 9: order-sensitive values from the cycle's first day (read day 1: the cycle starts the window)
    s, e = meter(9, 1)
    rows += [_row(9, 1, day(k), ORDERED[k % len(ORDERED)], ORDERED[(k + 5) % len(ORDERED)] / 3)
             for k in range(0, 60)]  # fmt: skip
    # 10: order-sensitive values across its cycle's start (to_start matters) on a TOU meter, gaps in a register
    s, e = meter(10, 17)
    for ch in (1, 2, 3, 4):
        rows += [_row(10, ch, day(k), ORDERED[(k + ch) % len(ORDERED)], ORDERED[(k * ch) % len(ORDERED)] / 7)
                 for k in range(0, 60) if not (ch == 4 and k % 9 == 0)]  # fmt: skip
    # 11: no row at all: no data
    meter(11, 1)
    # 12: rows only after its cycle (a meter read past its cycle's end): zero energy, no validated day
    s, e = meter(12, 1)
    rows += [_row(12, 1, day(k), 3.0) for k in range(e, 60)]
    # 13: rows only outside the window (before its first day), and channels billing does not read
    meter(13, 3)
    rows += [_row(13, 1, f0 - timedelta(days=k), 3.0) for k in (1, 2, 3)]
    rows += [_row(13, 20, day(k), 1200.0) for k in range(0, 40)]
    # 14: a NaN day among the values, the high flag bit, large versions
    s, e = meter(14, 8)
    rows += [_row(14, 1, day(k), float("nan") if k == s + 5 else 1.5, flags=-(2**31) if k == s else 0,
                  version=2_000_000_000 + k) for k in range(0, 60)]  # fmt: skip
    # 16..: random meters (15 and a few others left out: the ids are not contiguous)
    specials = [-0.0, 0.0, 0.1, 0.2, 0.3, 1e16, -1e16, 1e-300, 5e-324]
    channel_sets = [(1,), (1, 2, 3, 4), (2, 3, 4), (1, 3), (1,)]
    for m in [m for m in range(16, 76) if m % 11 != 0]:
        read_day = int(rng.integers(1, 32))
        s, e = meter(m, read_day)
        for ch in channel_sets[int(rng.integers(len(channel_sets)))]:
            p_present = 1.0 if rng.random() < 0.3 else 0.85
            for k in range(-2, 62):
                if rng.random() >= p_present:
                    continue
                measured = float(specials[rng.integers(len(specials))]) if rng.random() < 0.25 else rng.uniform(0, 20)
                estimated = float(rng.choice([0.0, -0.0, 0.1, rng.uniform(0, 3)]))
                rows.append(_row(
                    m, ch, day(k), measured, estimated, version=int(rng.integers(1, 9)),
                    flags=int(rng.choice([0, 1, 4, 1 << 20, -(2**31)])), n_meas=int(rng.integers(0, 97)),
                    n_est=int(rng.integers(0, 5)),
                ))  # fmt: skip
    order = np.argsort(ids)
    return Fleet(meters=_meter_table([ids[i] for i in order], [read_days[i] for i in order]), rows=rows)


FLEET = _fleet()


@pytest.fixture(scope="module")
def sdb(make_database: Callable[[str], DatabaseServer]) -> DatabaseServer:
    db = make_database("cycle_sums")
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY vee_daily ({DAILY}) FROM STDIN") as copy:
            for row in FLEET.rows:
                copy.write_row(row)
        # units waiting for a pass and episodes for the gate (day numbers since 1970 in the arrays below)
        cur.executemany(
            "INSERT INTO vee_pending (meter_id, day) VALUES (%s, %s)",
            [(3, date(2026, 9, 20)), (8, date(2026, 9, 1)), (30, date(2026, 10, 20))],
        )
        cur.executemany(
            "INSERT INTO vee_episodes (meter_id, channel_id, rule, severity, first_start, last_end, occurrences,"
            " status) VALUES (%s, 1, 'CLOCK', %s, %s, %s, 1, %s)",
            [(1, "invalid", local_midnight(date(2026, 9, 10)), local_midnight(date(2026, 9, 12)), "open"),
             (2, "review", local_midnight(date(2026, 9, 20)), local_midnight(date(2026, 9, 22)), "open"),
             (9, "invalid", local_midnight(date(2026, 9, 20)), local_midnight(date(2026, 9, 22)), "resolved"),
             (12, "invalid", local_midnight(date(2026, 8, 20)), local_midnight(date(2026, 8, 22)), "open")],
        )  # fmt: skip
    return db


# -- comparing -----------------------------------------------------------------------------------------------------
def _bits(a: np.ndarray) -> np.ndarray:
    """Floats as their bit patterns: -0.0 differs from 0.0, NaN equals the same NaN."""
    a = np.ascontiguousarray(a)
    return a.view(np.uint64) if a.dtype == np.float64 else a


def assert_same_determinants(a: Determinants, b: Determinants) -> None:
    for f in fields(Determinants):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert x.dtype == y.dtype, f.name
        assert np.array_equal(_bits(x), _bits(y)), f"{f.name}: {x} != {y}"


def assert_same_readiness(a: Readiness, b: Readiness) -> None:
    assert np.array_equal(a.held, b.held)
    assert list(a.reasons) == list(b.reasons)
    assert np.array_equal(a.validated_days, b.validated_days)
    assert np.array_equal(a.version_sum, b.version_sum)


def _cycles(meters: MeterTable) -> tuple[PeriodWindow, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The run's window and cycles (datetime64[D]) and the cycles as window day offsets, as run.py makes them."""
    window, start, end = vee_window(PERIOD, meters)
    first = np.datetime64(window.first_day, "D")
    return window, start, end, (start - first).astype(np.int64), (end - first).astype(np.int64)


def _day(d: date) -> int:
    return (d - date(1970, 1, 1)).days


GATE = {
    "pending_meter": np.array([3, 8, 30], np.int64),
    "pending_day": np.array([_day(date(2026, 9, 20)), _day(date(2026, 9, 1)), _day(date(2026, 10, 20))]),
    "episode_meter": np.array([1, 24, 60], np.int64),
    "episode_first_day": np.array([_day(date(2026, 9, 10)), _day(date(2026, 9, 1)), _day(date(2026, 8, 1))]),
    "episode_last_day": np.array([_day(date(2026, 9, 11)), _day(date(2026, 10, 30)), _day(date(2026, 8, 2))]),
}


def _share(det: Determinants) -> np.ndarray:
    intervals = det.n_measured + det.n_estimated
    return np.divide(det.n_estimated, intervals, out=np.full(len(det.total_kwh), np.nan), where=intervals > 0)


def _both_paths(
    conn: psycopg.Connection, meters: MeterTable
) -> tuple[tuple[Determinants, Readiness], tuple[Determinants, Readiness], CycleSums]:
    window, start, end, s_idx, e_idx = _cycles(meters)
    days = fetch_validated_days(
        conn, meter_ids=meters.meter_id, channels=ENERGY_CHANNELS, first_day=window.first_day, n_days=window.n_days
    )
    det_days = determinants(days_as_vee(days, window), meters, start, end, energy_multiplied=True)
    ready_days = bill_ready(
        meter_id=meters.meter_id, start=start, end=end, days=days, estimated_share=_share(det_days),
        rules=GATE_RULES, **GATE,
    )  # fmt: skip
    sums = fetch_cycle_sums(
        conn, meter_ids=meters.meter_id, channels=ENERGY_CHANNELS, first_day=window.first_day,
        n_days=window.n_days, start=s_idx, end=e_idx,
    )  # fmt: skip
    det_sums = cycle_determinants(sums, meters, start, end, window)
    ready_sums = cycle_bill_ready(
        meter_id=meters.meter_id, start=start, end=end, window=window, sums=sums, estimated_share=_share(det_sums),
        rules=GATE_RULES, **GATE,
    )  # fmt: skip
    return (det_days, ready_days), (det_sums, ready_sums), sums


def _at(meters: MeterTable, m: int) -> int:
    return int(np.searchsorted(meters.meter_id, m))


# -- the sums path equals the days path ----------------------------------------------------------------------------
def test_cycle_sums_give_the_days_paths_determinants_and_gate_bit_for_bit(sdb: DatabaseServer) -> None:
    meters = FLEET.meters
    with psycopg.connect(sdb.conninfo(Role.BILLING), autocommit=True) as conn:
        (det_days, ready_days), (det_sums, ready_sums), _ = _both_paths(conn, meters)
    window, _, _, s_idx, _ = _cycles(meters)
    assert window.n_days <= CYCLE_SUM_MAX_DAYS and (s_idx > 0).any()  # cycles of different read days: the FILTERs
    assert_same_determinants(det_sums, det_days)
    assert_same_readiness(ready_sums, ready_days)

    # the fleet has what the comparison is about
    tot = det_days.total_kwh
    assert np.signbit(tot[_at(meters, 5)]) and tot[_at(meters, 5)] == 0  # all -0.0: -0.0
    assert np.signbit(det_days.estimated_kwh[_at(meters, 5)])
    assert not np.signbit(tot[_at(meters, 6)]) and tot[_at(meters, 6)] == 0  # a gap: +0.0
    assert np.signbit(det_days.estimated_kwh[_at(meters, 8)])  # -0.0 estimates, no gap
    assert not np.signbit(det_days.estimated_kwh[_at(meters, 7)])  # -0.0 - -0.0 past the window's start
    assert np.isnan(tot[_at(meters, 11)]) and np.isnan(tot[_at(meters, 13)])  # no row / none in the window
    assert tot[_at(meters, 12)] == 0 and ready_days.held[_at(meters, 12)]  # days only after the cycle
    assert np.isnan(tot[_at(meters, 14)]) and det_days.flags[_at(meters, 14)] & np.uint32(1 << 31)
    assert ready_days.version_sum[_at(meters, 14)] > 2**31 - 1  # the sum of int4 versions needs int8
    # meter 4: no total register, the rates' sum is the total; a day of one register missing is not validated
    r4 = det_days.rate_kwh[_at(meters, 4)]
    assert not np.isnan(r4).any() and tot[_at(meters, 4)] == r4.sum()
    _, start4, end4, _, _ = _cycles(meters)
    assert ready_days.validated_days[_at(meters, 4)] == (end4 - start4)[_at(meters, 4)].astype(int)  # others have it
    assert ready_days.held.sum() >= 5
    assert {"readings waiting for validation", "open blocking exception episode"} <= {
        part for r in ready_days.reasons for part in r.split("; ")
    }
    assert any("intervals estimated" in r for r in ready_days.reasons)
    assert any("days not validated" in r for r in ready_days.reasons)


def _sequential(values: list[float]) -> float:
    """Left to right, as numpy's cumsum and PostgreSQL's sum(float8) add (not math.fsum, not pairwise)."""
    return functools.reduce(lambda a, b: a + b, values, 0.0)


def test_order_sensitive_sums_are_added_in_day_order(sdb: DatabaseServer) -> None:
    meters = FLEET.meters.take(np.isin(FLEET.meters.meter_id, [9, 10]))
    with psycopg.connect(sdb.conninfo(Role.BILLING), autocommit=True) as conn:
        (det_days, _), (det_sums, _), _ = _both_paths(conn, meters)
    assert_same_determinants(det_sums, det_days)
    _, _, _, s_idx, e_idx = _cycles(meters)
    # meter 9 (read day 1: its cycle starts the window): the day-order sum, which another order would not give
    x = [ORDERED[k % len(ORDERED)] + ORDERED[(k + 5) % len(ORDERED)] / 3 for k in range(int(e_idx[0]))]
    assert det_sums.total_kwh[0] == _sequential(x) != _sequential(sorted(x)) != _sequential(x[::-1])
    # meter 10's total: the difference of the day-order sums to its cycle's end and start
    x10 = [ORDERED[(k + 1) % len(ORDERED)] + ORDERED[k % len(ORDERED)] / 7 for k in range(int(e_idx[1]))]
    assert det_sums.total_kwh[1] == _sequential(x10) - _sequential(x10[: int(s_idx[1])])


def test_a_selection_of_meters_and_a_single_read_day(sdb: DatabaseServer) -> None:
    """Ids that are not contiguous (the meter = ANY filter) and a fleet of one read day (every cycle is the window:
    the query without FILTERs)."""
    every = FLEET.meters
    with psycopg.connect(sdb.conninfo(Role.BILLING), autocommit=True) as conn:
        chosen = every.take(np.flatnonzero(every.meter_id % 3 != 1))
        (det_days, ready_days), (det_sums, ready_sums), sums = _both_paths(conn, chosen)
        assert_same_determinants(det_sums, det_days)
        assert_same_readiness(ready_sums, ready_days)
        assert set(sums.meter_id.tolist()) <= set(chosen.meter_id.tolist())  # none from between the chosen ids

        one = every.take(np.flatnonzero(every.read_day == 1))
        window, _, _, s_idx, e_idx = _cycles(one)
        assert (s_idx == 0).all() and (e_idx == window.n_days).all()
        (det_days, ready_days), (det_sums, ready_sums), sums = _both_paths(conn, one)
        assert_same_determinants(det_sums, det_days)
        assert_same_readiness(ready_sums, ready_days)
        assert (sums.energy_to_start == 0).all() and not np.signbit(sums.energy_to_start).any()

        # no meter at all; a window longer than a day mask is refused
        empty = every.take(np.zeros(0, np.int64))
        nothing = fetch_cycle_sums(
            conn, meter_ids=empty.meter_id, channels=ENERGY_CHANNELS, first_day=date(2026, 9, 1), n_days=30,
            start=np.zeros(0, np.int64), end=np.zeros(0, np.int64),
        )  # fmt: skip
        assert len(nothing) == 0
        assert_same_determinants(
            cycle_determinants(nothing, empty, np.zeros(0, "datetime64[D]"), np.zeros(0, "datetime64[D]"),
                               PeriodWindow(first_day=date(2026, 9, 1), n_days=30)),
            Determinants.empty(0),
        )  # fmt: skip
    with pytest.raises(ValueError, match="day mask"):
        cycle_sums_query(
            meter_ids=every.meter_id, channels=ENERGY_CHANNELS, first_day=date(2026, 9, 1),
            n_days=CYCLE_SUM_MAX_DAYS + 1, start=np.zeros(len(every), np.int64),
            end=np.full(len(every), CYCLE_SUM_MAX_DAYS + 1, np.int64),
        )  # fmt: skip


@pytest.mark.parametrize("connections", [1, 2, 3, 7])
def test_concurrent_fetch_equals_one_fetch(sdb: DatabaseServer, connections: int) -> None:
    meters = FLEET.meters
    window, _, _, s_idx, e_idx = _cycles(meters)
    args = dict(meter_ids=meters.meter_id, channels=ENERGY_CHANNELS, first_day=window.first_day,
                n_days=window.n_days, start=s_idx, end=e_idx)  # fmt: skip
    with psycopg.connect(sdb.conninfo(Role.BILLING), autocommit=True) as conn:
        one = fetch_cycle_sums(conn, **args)  # type: ignore[arg-type]
    many = fetch_cycle_sums_concurrently(sdb.conninfo(Role.BILLING), connections=connections, **args)  # type: ignore[arg-type]
    for f in fields(CycleSums):
        a, b = getattr(one, f.name), getattr(many, f.name)
        assert a.dtype == b.dtype and np.array_equal(_bits(a), _bits(b)), f.name
    key = one.meter_id.astype(np.int64) << 16 | one.channel_id
    assert (np.diff(key) > 0).all()  # sorted by (meter, channel), one row per series


def test_the_continuous_partition_reads_sums_as_it_read_days(
    sdb: DatabaseServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """billing.run's partition as the run calls it: pending units and episodes from the tables; the sums path
    against the same partition made to read every day (a window longer than a day mask)."""
    meters = FLEET.meters
    window, start, end, _, _ = _cycles(meters)
    job = _PartitionJob(
        conninfo=sdb.conninfo(Role.BILLING), meters=meters, start=start, end=end, window=window, from_s=0,
        rules=RULES.model_copy(update={"bill_ready": GATE_RULES}), run_id=0, source="continuous",
    )  # fmt: skip
    sums = _continuous_partition(job)
    monkeypatch.setattr(run_module, "CYCLE_SUM_MAX_DAYS", 0)
    days = _continuous_partition(job)
    assert sums.readiness is not None and days.readiness is not None
    assert_same_determinants(sums.determinants, days.determinants)
    assert_same_readiness(sums.readiness, days.readiness)
    assert sums.readings == days.readings  # validated days read, counted from the day masks
    reasons = dict(zip(meters.meter_id.tolist(), days.readiness.reasons, strict=True))
    assert "readings waiting for validation" in reasons[3]
    assert "open blocking exception episode" in reasons[1]
    assert "open blocking exception episode" not in reasons[2] + reasons[9] + reasons[12]  # review, resolved, before


# -- decode_array_row ----------------------------------------------------------------------------------------------
def _array(wire: str, values: list[int] | list[float], *, ndim: int = 1, has_null: int = 0, oid: int = 23) -> bytes:
    """A binary array field's value: ndim, has-null flag, element oid, per dimension (size, lower bound), then
    per element its length and bytes."""
    dt = np.dtype(wire)
    out = struct.pack(">iii", ndim, has_null, oid)
    out += struct.pack(">ii", len(values), 1) * ndim
    for v in values:
        out += struct.pack(">i", dt.itemsize) + np.array([v], dt).tobytes()
    return out


def _field(value: bytes | None) -> bytes:
    return struct.pack(">i", -1) if value is None else struct.pack(">i", len(value)) + value


def _stream(*values: bytes | None, n_fields: int | None = None, trailer: bytes = pgcopy.TRAILER) -> bytes:
    count = len(values) if n_fields is None else n_fields
    return pgcopy.HEADER + struct.pack(">h", count) + b"".join(_field(v) for v in values) + trailer


def test_decode_array_row_reads_a_real_copy_and_a_hand_made_one(sdb: DatabaseServer) -> None:
    with psycopg.connect(sdb.conninfo(Role.BILLING), autocommit=True) as conn, conn.cursor() as cur:
        buf = bytearray()
        query = (
            "COPY (SELECT ARRAY[1, -2, 2147483647]::integer[], ARRAY['-0', 0.1, 'NaN']::float8[],"
            " ARRAY[]::bigint[], NULL::smallint[], ARRAY[-32768]::smallint[]) TO STDOUT (FORMAT BINARY)"
        )
        with cur.copy(query) as copy:
            for chunk in copy:
                buf += chunk
    a, b, c, d, e = decode_array_row(buf, [">i4", ">f8", ">i8", ">i2", ">i2"])
    assert a.tolist() == [1, -2, 2147483647] and a.dtype == np.int32
    assert _bits(b).tolist() == _bits(np.array([-0.0, 0.1, np.nan])).tolist() and b.dtype == np.float64
    assert c.shape == (0,) and c.dtype == np.int64  # an empty array
    assert d.shape == (0,) and d.dtype == np.int16  # NULL (array_agg of no row)
    assert e.tolist() == [-32768]
    hand = _stream(_array(">i4", [7, 8]), _array(">f8", [1.5], oid=701))
    x, y = decode_array_row(hand, [">i4", ">f8"])
    assert x.tolist() == [7, 8] and y.tolist() == [1.5]


GOOD = [_array(">i4", [7, 8]), _array(">f8", [1.5, -0.0], oid=701)]


@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (b"PGCOPY\n\xff\r\n\x01" + _stream(*GOOD)[11:], "not a PGCOPY"),  # a damaged signature
        (b"\x89PNG\r\n\x1a\n" + bytes(40), "not a PGCOPY"),
        (_stream(*GOOD, n_fields=3), "fields"),  # the count says 3, the wires are 2
        (_stream(GOOD[0]), "fields"),  # one field
        (_stream(*GOOD, _array(">i4", [1])), "fields"),  # three fields
        (_stream(GOOD[0], _array(">f8", [1.5, 2.5], has_null=1, oid=701)), "NULL"),  # flagged NULL elements
        (_stream(GOOD[0], _array(">f8", [1.5], ndim=2, oid=701)), "one-dimensional"),  # two dimensions
        (_stream(_array(">i2", [7, 8, 9, 10]), GOOD[1]), "bytes"),  # int2 elements read as int4
        (_stream(GOOD[0], GOOD[1] + b"\x00\x00"), "length"),  # a field longer than its elements
        (_stream(*GOOD, trailer=pgcopy.TRAILER + b"\x00"), "trailer"),  # trailing garbage
        (_stream(*GOOD) + _stream(*GOOD)[len(pgcopy.HEADER) :], "trailer"),  # a second row
        (_stream(*GOOD, trailer=b""), "trailer"),  # no trailer
        # a negative dimension count, the bytes laid out so that reading on would take them for 8 elements
        (
            _stream(GOOD[0], struct.pack(">iii", -1, 0, 701) + (struct.pack(">i", 8) + struct.pack(">d", 2.5)) * 8),
            "one-dimensional",
        ),
        (_stream(GOOD[0], _array(">f8", [], ndim=0, oid=701) + struct.pack(">i", 1)), "length"),  # 0-dim, bytes
        (pgcopy.SIGNATURE + bytes(4) + struct.pack(">i", 1 << 20) + _stream(*GOOD)[len(pgcopy.HEADER) :], "cut"),
    ],
)
def test_decode_array_row_refuses_malformed_streams(stream: bytes, message: str) -> None:
    with pytest.raises(pgcopy.CopyFormatError, match=message):
        decode_array_row(stream, [">i4", ">f8"])


@pytest.mark.parametrize("then", [b"", bytes(40)], ids=["last", "followed"])
def test_decode_array_row_refuses_a_null_element_without_the_flag(then: bytes) -> None:
    """A NULL element is a length of -1 and no bytes: the elements are not whole records of the element type."""
    null_element = struct.pack(">iii", 1, 0, 701) + struct.pack(">ii", 2, 1)
    null_element += struct.pack(">i", 8) + struct.pack(">d", 1.0) + struct.pack(">i", -1) + then
    with pytest.raises(pgcopy.CopyFormatError):
        decode_array_row(_stream(GOOD[0], null_element), [">i4", ">f8"])


def test_decode_array_row_refuses_cut_streams() -> None:
    """A stream cut anywhere is a CopyFormatError (as FixedRows.decode's), not one of numpy's errors."""
    whole = _stream(*GOOD)
    for cut in range(len(pgcopy.SIGNATURE), len(whole) - 1):
        with pytest.raises(pgcopy.CopyFormatError):
            decode_array_row(whole[:cut], [">i4", ">f8"])


# -- open_episodes -------------------------------------------------------------------------------------------------
EPISODE_COLUMNS = ["meter_id", "channel_id", "interval_start", "interval_end", "rule", "severity", "value"]


def test_open_episodes_by_id_range_equal_a_query_of_the_meters(sdb: DatabaseServer) -> None:
    """Ids between the selected ones are left out; ties in (meter, first_start) by channel, rule, episode id."""
    t0 = local_midnight(date(2026, 9, 5))
    hour = timedelta(hours=1)
    episodes = [  # (meter, channel, rule, severity, first_start, last_end, value_max, status), inserted in this order
        (501, 3, "SPIKE", "review", t0, t0 + 2 * hour, 9.5, "open"),
        (501, 1, "SPIKE", "review", t0, t0 + 3 * hour, 1.5, "acknowledged"),
        (501, 1, "GAP", "invalid", t0, t0 + hour, None, "open"),
        (501, 1, "GAP", "invalid", t0, t0 + 5 * hour, None, "open"),  # the same key: by episode id
        (501, 1, "CLOCK", "invalid", t0 - hour, t0, 1200.0, "open"),  # earlier start first
        (502, 1, "GAP", "invalid", t0, t0 + hour, None, "open"),  # between the chosen ids: left out
        (503, 2, "FLAT", "info", t0 + hour, t0 + 2 * hour, 0.0, "open"),
        (503, 2, "FLAT", "info", t0, t0 + 2 * hour, 0.0, "resolved"),  # closed: left out
        (503, 2, "FLAT", "info", t0, t0 + 2 * hour, 0.0, "auto_resolved"),
        (503, 1, "GAP", "invalid", local_midnight(date(2026, 8, 1)), local_midnight(date(2026, 8, 2)), None, "open"),
        (503, 1, "GAP", "invalid", t0 - 20 * 24 * hour, local_midnight(date(2026, 9, 1)) + hour, None, "open"),
        (505, 4, "TOU_SUM", "review", t0, local_midnight(date(2026, 12, 1)), -0.5, "open"),  # across the end
        (505, 4, "TOU_SUM", "review", local_midnight(date(2026, 11, 1)), local_midnight(date(2026, 11, 2)), 1.0,
         "open"),  # after the window
        (506, 1, "GAP", "invalid", t0, t0 + hour, None, "open"),  # past the last chosen id
        (500, 1, "GAP", "invalid", t0, t0 + hour, None, "open"),  # before the first
    ]  # fmt: skip
    with psycopg.connect(sdb.conninfo(Role.OWNER), autocommit=True) as conn:
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO vee_episodes (meter_id, channel_id, rule, severity, first_start, last_end, occurrences,"
                " value_max, status) VALUES (%s, %s, %s, %s, %s, %s, 1, %s, %s)",
                [(m, ch, rule, sev, a, b, v, st) for m, ch, rule, sev, a, b, v, st in episodes],
            )
        window = PeriodWindow(first_day=date(2026, 9, 1), n_days=60)
        chosen = np.array([501, 503, 504, 505], np.int32)
        got = open_episodes(conn, chosen, window)
        expected = conn.execute(
            "SELECT meter_id, channel_id, first_start, last_end, rule, severity, value_max, episode_id, occurrences,"
            " status FROM vee_episodes WHERE status IN ('open', 'acknowledged') AND meter_id = ANY(%s)"
            " AND last_end > %s AND first_start < %s ORDER BY meter_id, first_start, channel_id, rule, episode_id",
            ([int(m) for m in chosen], local_midnight(date(2026, 9, 1)), local_midnight(date(2026, 10, 31))),
        ).fetchall()
        dense = open_episodes(conn, np.arange(501, 506, dtype=np.int32), window)
        none = open_episodes(conn, np.zeros(0, np.int32), window)
    assert list(got.columns) == [*EPISODE_COLUMNS, "episode_id", "occurrences", "status"]
    rows = [
        (m, ch, a.to_pydatetime(), b.to_pydatetime(), rule, sev, v, eid, occ, st)
        for m, ch, a, b, rule, sev, v, eid, occ, st in got.itertuples(index=False)
    ]
    assert rows == [tuple(r) for r in expected]
    keys = [(r[0], r[1], r[4]) for r in rows]
    assert keys == [(501, 1, "CLOCK"), (501, 1, "GAP"), (501, 1, "GAP"), (501, 1, "SPIKE"), (501, 3, "SPIKE"),
                    (503, 1, "GAP"), (503, 2, "FLAT"), (505, 4, "TOU_SUM")]  # fmt: skip
    gap_ids = [r[7] for r in rows if r[0] == 501 and r[4] == "GAP"]
    assert gap_ids == sorted(gap_ids)
    assert got.loc[got["rule"] == "GAP", "value"].isna().all() and got["value"].dtype == object
    assert str(got["interval_start"].dtype) == "datetime64[ns, UTC]" or "UTC" in str(got["interval_start"].dtype)
    assert 502 in set(dense["meter_id"]) and 502 not in set(got["meter_id"])
    assert none.empty and list(none.columns) == list(got.columns)
