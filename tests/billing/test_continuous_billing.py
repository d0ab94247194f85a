"""Billing from the continuous VEE's validated days on a real TimescaleDB: equal to a from-scratch run on the same
readings, the bill-ready gate holds single customers, and a billed estimate replaced by late reads becomes a
correction with the exact difference, put right by a cancel-and-rebill run."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
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
    first = run_period(db.conninfo(Role.BILLING), period=PERIOD, kind="bill", source="continuous")
    assert find_corrections(db.conninfo(Role.BILLING), period=PERIOD).changes.empty
    late = (r.meter_id == 3) & np.isin(r.ts_s, [local_midnight_utc_s(d) for d in LATE])
    store_through_ingest(db, r.take(late))
    drain(db.conninfo(Role.BILLING), rules=RULES)

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
