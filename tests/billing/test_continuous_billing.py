"""Billing from the continuous VEE's validated days on a real TimescaleDB: equal to a from-scratch run on the same
readings, the bill-ready gate holds single customers, a billed estimate becomes final (quality F) for that bill, and
its replacement by late reads is a correction with the exact difference, put right by a cancel-and-rebill run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg
import pytest

from amr.db.server import DatabaseServer, Role
from amr.timebase import DAY_S, local_midnight_utc_s
from billing.continuous import drain
from billing.corrections import find_corrections, rebill
from billing.cycles import BillingPeriod
from billing.editing import DayRef, edit_day, undo_day
from billing.rules import read_vee_rules
from billing.run import run_period
from billing.synthetic import concat, register_reads
from billing.vee import CLOCK_CHANNEL, ReadingArrays
from tests.ingested import store_through_ingest

RULES = read_vee_rules(None)
PERIOD = BillingPeriod(2026, 10)  # read day 1: the cycle is 2026-09-01 .. 2026-10-01
FIRST, N_DAYS = date(2026, 8, 10), 56  # .. 2026-10-05
LATE = [date(2026, 9, 30), date(2026, 10, 1), date(2026, 10, 2)]  # meter 3's reads across the cycle's end
STOPPED = date(2026, 9, 20)  # meter 5 has no read after this: its cycle cannot be validated
METERS = (
    "meter_id, serial, city, power_company, customer_code, tariff_class, meter_kind, multiplier, register_digits,"
    " households, read_day"
)


def _bills(db: DatabaseServer, run_id: int) -> pd.DataFrame:
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        rows = conn.execute(
            "SELECT meter_id, bill_kind, status, energy_kwh, total_vnd, hold_reasons FROM bills WHERE run_id = %s"
            " ORDER BY meter_id, bill_kind",
            (run_id,),
        ).fetchall()
    return pd.DataFrame(rows, columns=["meter_id", "bill_kind", "status", "energy_kwh", "total_vnd", "hold_reasons"])


DAY_COLUMNS = ["meter_id", "channel_id", "day", "version", "kwh", "n_measured", "n_estimated", "quality", "method"]


def _current_days(db: DatabaseServer) -> pd.DataFrame:
    """vee_daily of the energy channels, one row per (meter, channel, day)."""
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        rows = conn.execute(
            "SELECT meter_id, channel_id, day, version, measured_kwh + estimated_kwh, n_measured, n_estimated,"
            " quality, method FROM vee_daily WHERE channel_id BETWEEN 1 AND 4 ORDER BY 1, 2, 3"
        ).fetchall()
    return pd.DataFrame(rows, columns=DAY_COLUMNS)


def _version_count(db: DatabaseServer) -> int:
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        row = conn.execute("SELECT count(*) FROM vee_daily_versions").fetchone()
    assert row is not None
    return int(row[0])


def _revalidate(db: DatabaseServer, meter_ids: list[int], days: tuple[date, date] | None = None) -> None:
    """Mark the meters' days pending, as ingest does when readings land, and drain: a pass over them. Every day of
    the data, as when it was ingested, unless `days` (first, last) says otherwise: an estimate depends on the
    history a pass reads before its window."""
    first, last = days or (FIRST, FIRST + timedelta(days=N_DAYS - 1))
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO vee_pending (meter_id, day) SELECT m, d::date FROM unnest(%s::integer[]) AS m,"
            " generate_series(%s::date, %s::date, interval '1 day') AS d ON CONFLICT (meter_id, day) DO UPDATE"
            " SET marks = vee_pending.marks + 1",
            (meter_ids, first, last),
        )
    drain(db.conninfo(Role.BILLING), rules=RULES)


@pytest.fixture(scope="module")
def billed(make_database: Callable[[str], DatabaseServer]) -> tuple[DatabaseServer, ReadingArrays]:
    db = make_database("vee_billing")
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            f"INSERT INTO meters ({METERS}) VALUES (%s, %s, 'HCM', %s, %s, 'household', 'smart', 1, 6, 1, 1)",
            [(m, f"CB{m:06d}", pc, f"{pc}{m:07d}") for m, pc in
             [(1, "PE0100"), (2, "PE0100"), (3, "PE0200"), (4, "PE0200"), (5, "PE0100"), (6, "PE0200"),
              (7, "PE0100")]],
        )  # fmt: skip
    r = register_reads(meter_ids=np.arange(1, 8), first_day=FIRST, n_days=N_DAYS, interval_s=DAY_S,
                       kwh_per_day=np.array([11.0, 15.0, 9.0, 40.0, 7.0, 12.0, 10.0]),
                       rng=np.random.default_rng(11))  # fmt: skip
    late = (r.meter_id == 3) & np.isin(r.ts_s, [local_midnight_utc_s(d) for d in LATE])
    stopped = (r.meter_id == 5) & (r.ts_s > local_midnight_utc_s(STOPPED))
    inside = (r.meter_id == 7) & np.isin(r.ts_s, [local_midnight_utc_s(date(2026, 9, d)) for d in (10, 11, 12)])
    clock_days = [local_midnight_utc_s(date(2026, 9, d)) for d in range(10, 14)]
    clock = ReadingArrays(  # meter 6's clock runs 20 min off for four days: CLOCK_INVALID, a blocking severity
        meter_id=np.full(4, 6, np.int32), channel_id=np.full(4, CLOCK_CHANNEL, np.int16),
        ts_s=np.array(clock_days, np.int64), value=np.full(4, 1200.0), quality=np.zeros(4, np.int16),
    )  # fmt: skip
    store_through_ingest(db, concat([r.take(~late & ~stopped & ~inside), clock]))
    drain(db.conninfo(Role.BILLING), rules=RULES)
    return db, r


def test_continuous_bills_equal_a_from_scratch_run_and_hold_single_customers(
    billed: tuple[DatabaseServer, ReadingArrays], tmp_path: Path
) -> None:
    db, _ = billed
    cont = run_period(db.conninfo(Role.BILLING), period=PERIOD, kind="bill", source="continuous", out_dir=tmp_path)
    # every export is written, held customers and episodes without a value included (a NaN stopped the workbook)
    assert {p.name for p in cont.files} >= {"bills.csv", "bills.parquet", "bills.xlsx"}
    scratch = run_period(db.conninfo(Role.BILLING), period=PERIOD, kind="bill", source="readings")
    a, b = _bills(db, cont.run_id).set_index("meter_id"), _bills(db, scratch.run_id).set_index("meter_id")
    assert list(a.loc[[1, 2, 3, 4, 7], "status"]) == ["billed"] * 5  # 3's and 7's estimates are within the limit
    # The same energy and amounts as VEE run on the month's readings, an estimated gap inside the cycle (7)
    # included: the estimate is scaled to the register delta across the gap. Meter 3's gap straddles the cycle's
    # end: the like-day split of its delta follows the history each path read (the service's passes read from the
    # first data, the month's run from 14 days before the cycle), so the two estimates differ by a few kWh.
    same = [1, 2, 4, 7]
    assert (a.loc[same, ["energy_kwh", "total_vnd"]] == b.loc[same, ["energy_kwh", "total_vnd"]]).all(axis=None)
    assert abs(int(a.loc[3, "energy_kwh"]) - int(b.loc[3, "energy_kwh"])) <= 0.05 * int(b.loc[3, "energy_kwh"])
    assert a.loc[[1, 2, 3, 4, 7], "hold_reasons"].isna().all()  # NULL, not the text 'NaN'
    assert a.loc[5, "status"] == "held" and "11 of 30 days not validated" in a.loc[5, "hold_reasons"]
    assert a.loc[6, "status"] == "held" and "open blocking exception episode" in a.loc[6, "hold_reasons"]
    assert cont.held == 2 and cont.billed == 5  # the run is not held for two customers
    assert cont.energy_kwh == int(a.loc[[1, 2, 3, 4, 7], "energy_kwh"].sum())
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        row = conn.execute("SELECT source, data_as_of IS NOT NULL FROM billing_runs WHERE run_id = %s",
                           (cont.run_id,)).fetchone()  # fmt: skip
    assert row == ("continuous", True)


def test_late_reads_under_a_billed_estimate_are_a_correction_then_a_rebill(
    billed: tuple[DatabaseServer, ReadingArrays],
) -> None:
    db, r = billed
    before = _current_days(db).set_index(["meter_id", "channel_id", "day"])
    first = run_period(db.conninfo(Role.BILLING), period=PERIOD, kind="bill", source="continuous")
    # The billed estimates are final for that bill: each estimated day (S, E, V) of a billed customer's cycle is
    # now F at the next version, with the same values; the held customers' and the days outside the cycles are not.
    after = _current_days(db).set_index(["meter_id", "channel_id", "day"])
    estimate = before["quality"].isin(["S", "E", "V", "F"])
    in_cycle = (before.index.get_level_values("day") >= date(2026, 9, 1)) & (
        before.index.get_level_values("day") < date(2026, 10, 1)
    )
    billed_meter = before.index.get_level_values("meter_id").isin([1, 2, 3, 4, 7])
    finals = after["quality"] == "F"
    target = estimate & in_cycle & billed_meter
    assert target.sum() >= 6 and {3, 7} <= set(before[target].index.get_level_values("meter_id"))
    assert (finals == target).all()  # exactly the billed estimates
    if (before["quality"] == "F").any():  # the module's first bill run made them F: this one makes nothing more
        assert after.equals(before)
    else:
        assert (after.loc[target, "version"] == before.loc[target, "version"] + 1).all()
        assert (after.loc[~target, "version"] == before.loc[~target, "version"]).all()
    same = ["kwh", "n_measured", "n_estimated", "method"]
    assert after.loc[finals, same].fillna(-1).equals(before.loc[finals, same].fillna(-1))
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        billing_run = conn.execute(  # the module's first continuous run billed the estimates
            "SELECT min(run_id) FROM billing_runs WHERE source = 'continuous' AND kind = 'bill'"
        ).fetchall()[0][0]
        history = conn.execute(
            "SELECT day, version, quality, reason, made_by, note, measured_kwh + estimated_kwh FROM vee_daily_versions"
            " WHERE meter_id = 3 AND channel_id = 1 AND day BETWEEN '2026-09-29' AND '2026-10-01' ORDER BY day, version"
        ).fetchall()
        versions_billed = conn.execute(
            "SELECT b.determinant_versions, (SELECT sum(d.version) FROM vee_daily d WHERE d.meter_id = b.meter_id"
            " AND d.channel_id BETWEEN 1 AND 4 AND d.day >= b.cycle_start AND d.day < b.cycle_end)"
            " FROM bills b WHERE b.run_id = %s AND b.status = 'billed' ORDER BY b.meter_id",
            (first.run_id,),
        ).fetchall()
    n = history[0][1]  # the estimate's version
    assert [(d.day, q, why) for d, _, q, why, *_ in history] == [
        (29, "S", "first_pass"), (29, "F", "billed"), (30, "S", "first_pass"), (30, "F", "billed"),
        (1, "S", "first_pass"),  # the cycle's end: not billed, still an estimate
    ]  # fmt: skip
    assert [v for _, v, *_ in history] == [n, n + 1, n, n + 1, n]
    assert {(by, note) for _, _, q, _, by, note, _ in history if q == "F"} == {
        (f"bill-run {billing_run}", f"billed by run {billing_run}")
    }
    assert history[0][-1] == history[1][-1] and history[2][-1] == history[3][-1]  # the same kWh
    # Each bill's version sum includes the F versions: the F days are not corrections.
    assert all(billed_sum == now_sum for billed_sum, now_sum in versions_billed)
    assert find_corrections(db.conninfo(Role.BILLING), period=PERIOD).changes.empty

    # The VEE service leaves an F day alone while its estimate is the same: a pass over them writes nothing.
    count = _version_count(db)
    _revalidate(db, [3, 7])
    assert _version_count(db) == count
    assert _current_days(db).set_index(["meter_id", "channel_id", "day"]).equals(after)
    # Nor when a pass over other days reads other history and so splits the same gap a little differently: a billed
    # estimate is not re-estimated for that (rebill noise); only measured intervals or another method replace it.
    _revalidate(db, [3, 7], days=(date(2026, 9, 5), date(2026, 10, 2)))
    shifted = _current_days(db).set_index(["meter_id", "channel_id", "day"])
    assert shifted.loc[finals].equals(after.loc[finals])
    # the pass did re-estimate: meter 3's unbilled estimates after the cycle got revalidation versions
    moved = shifted.loc[~finals, "version"] != after.loc[~finals, "version"]
    assert moved.any() and set(shifted.loc[~finals][moved].index.get_level_values("meter_id")) == {3}
    assert (shifted.loc[~finals][moved].index.get_level_values("day") >= date(2026, 10, 1)).all()

    late = (r.meter_id == 3) & np.isin(r.ts_s, [local_midnight_utc_s(d) for d in LATE])
    store_through_ingest(db, r.take(late))
    drain(db.conninfo(Role.BILLING), rules=RULES)
    # The reads replace the final estimate with a new version (n + 2): measured now, a correction of the bill.
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        replaced = conn.execute(
            "SELECT day, version, quality, reason FROM vee_daily WHERE meter_id = 3 AND channel_id = 1"
            " AND day BETWEEN '2026-09-29' AND '2026-09-30' ORDER BY day"
        ).fetchall()
    assert [(v, q, why) for _, v, q, why in replaced] == [(n + 2, "A", "late_data")] * 2

    report = find_corrections(db.conninfo(Role.BILLING), period=PERIOD)
    assert report.run_id == first.run_id
    assert list(report.changes["meter_id"]) == [3]  # only the bill whose data changed
    change = report.changes.iloc[0]
    # the exact difference: what a from-scratch run on every reading bills now, minus what was billed
    truth = run_period(db.conninfo(Role.BILLING), period=PERIOD, kind="bill", source="readings")
    now = _bills(db, truth.run_id).set_index("meter_id").loc[3]
    was = _bills(db, first.run_id).set_index("meter_id").loc[3]
    assert change["diff_kwh"] == now["energy_kwh"] - was["energy_kwh"] != 0
    assert change["diff_total_vnd"] == now["total_vnd"] - was["total_vnd"] != 0

    run_id = rebill(db.conninfo(Role.BILLING), period=PERIOD, operator="lan.tran")
    assert run_id is not None
    pair = _bills(db, run_id)
    assert list(pair["bill_kind"]) == ["cancel", "rebill"] and set(pair["meter_id"]) == {3}
    assert int(pair["total_vnd"].sum()) == change["diff_total_vnd"]  # cancel + rebill = the correction
    assert int(pair.loc[pair["bill_kind"] == "rebill", "total_vnd"].iloc[0]) == now["total_vnd"]
    assert find_corrections(db.conninfo(Role.BILLING), period=PERIOD).changes.empty  # put right, once
    assert rebill(db.conninfo(Role.BILLING), period=PERIOD, operator="lan.tran") is None
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        audit = conn.execute("SELECT operator, action FROM vee_audit WHERE action = 'rebill'").fetchall()
    assert audit == [("lan.tran", "rebill")]


def test_a_final_day_is_edited_and_undone_by_a_person(billed: tuple[DatabaseServer, ReadingArrays]) -> None:
    """F is the VEE service's word, not the operator's: a person may still edit a billed estimate (audited, a
    correction of the bill), and undo the edit back to F, which the service then leaves alone."""
    db, _ = billed
    run_period(db.conninfo(Role.BILLING), period=PERIOD, kind="bill", source="continuous")
    days = _current_days(db)
    final = days[(days["meter_id"] == 7) & (days["channel_id"] == 1) & (days["quality"] == "F")].iloc[0]
    ref = DayRef(serial="CB000007", day=final["day"])
    with psycopg.connect(db.conninfo(Role.BILLING)) as conn:
        edited = edit_day(conn, ref, kwh=42.0, reason="meter photo", operator="lan.tran")
        assert (edited.version, edited.kwh, edited.quality, edited.reason) == (
            final["version"] + 1, 42.0, "S", "manual_edit"
        )  # fmt: skip
        change = find_corrections(db.conninfo(Role.BILLING), period=PERIOD).changes.set_index("meter_id")
        assert list(change.index) == [7] and abs(change.loc[7, "diff_kwh"] - (42.0 - final["kwh"])) <= 1
        undone = undo_day(conn, ref, reason="wrong meter", operator="lan.tran")
        assert (undone.version, undone.quality, undone.reason) == (final["version"] + 2, "F", "undo")
        assert undone.kwh == pytest.approx(final["kwh"])
        audit = conn.execute(
            "SELECT action, old_version, new_version FROM vee_audit WHERE meter_id = 7 AND day = %s ORDER BY audit_id",
            (final["day"],),
        ).fetchall()
    assert audit == [("edit", final["version"], final["version"] + 1), ("undo", final["version"] + 1,
                                                                        final["version"] + 2)]  # fmt: skip
    count = _version_count(db)
    _revalidate(db, [7])  # unlocked again (the undo restored F), and left alone
    assert _version_count(db) == count
