"""End to end: meters and a month of register reads in a real TimescaleDB -> `bill run` -> exports, runs, bills."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import openpyxl
import pandas as pd
import psycopg
import pytest

from amr.db.server import DatabaseServer, Role
from amr.timebase import DAY_S, local_midnight_utc_s
from billing.charges import household_charges, tou_charges, vat_vnd
from billing.cycles import BillingPeriod
from billing.run import run_period, summary_items
from billing.synthetic import concat, copy_readings, register_reads
from billing.tariff_book import TARIFF_DIR, read_tariff_book
from billing.vee import ReadingArrays

PERIOD = "2026-10"
OCTOBER = BillingPeriod.parse(PERIOD)
FIRST = date(2026, 8, 10)  # reads from well before the cycle (history window) ...
DAYS = 67  # ... to 2026-10-16, past the last read day
CYCLE = (date(2026, 9, 1), date(2026, 10, 1))  # read day 1


def _meters_csv(rows: list[dict[str, object]]) -> str:
    return pd.DataFrame(rows).to_csv(index=False, header=False)


METER_COLUMNS = [
    "meter_id",
    "serial",
    "city",
    "power_company",
    "customer_code",
    "tariff_class",
    "meter_kind",
    "multiplier",
    "register_digits",
    "households",
    "read_day",
]


def _meter(
    mid: int, city: str, pc: str, cls: str, *, mult: float = 1, digits: int = 6, hh: int = 1, read_day: int = 1
) -> dict[str, object]:
    return dict(
        zip(
            METER_COLUMNS,
            [mid, f"BT{mid:06d}", city, pc, f"{pc}{mid:07d}", cls, "smart", mult, digits, hh, read_day],
            strict=True,
        )
    )


def _drop(r: ReadingArrays, meter: int, ts: list[int]) -> ReadingArrays:
    return r.take(~((r.meter_id == meter) & np.isin(r.ts_s, ts)))


@pytest.fixture(scope="module")
def fleet(make_database: Callable[[str], DatabaseServer]) -> DatabaseServer:
    db = make_database("billing_test")
    rng = np.random.default_rng(7)
    meters = [
        _meter(1, "HCM", "PE0100", "household"),
        _meter(2, "HCM", "PE0100", "household", hh=2),
        _meter(3, "HCM", "PE0200", "business", mult=40),
        _meter(4, "HCM", "PE0200", "administrative"),
        _meter(5, "HCM", "PE0100", "household", read_day=15),
    ] + [_meter(10 + k, "HN", "PD0100", "household") for k in range(4)]
    day = DAY_S  # daily reads
    parts = [
        register_reads(
            meter_ids=np.array([1, 4, 5]),
            first_day=FIRST,
            n_days=DAYS,
            interval_s=day,
            kwh_per_day=np.array([11.0, 40.0, 7.0]),
            rng=rng,
        ),
        # meter 2: register about to wrap at 10**6, and one daily read missing inside the cycle
        register_reads(
            meter_ids=np.array([2]),
            first_day=FIRST,
            n_days=DAYS,
            interval_s=day,
            kwh_per_day=np.array([15.0]),
            rng=rng,
            start_kwh=np.array([999_400.0]),
        ),
        register_reads(
            meter_ids=np.array([3]),
            first_day=FIRST,
            n_days=DAYS,
            interval_s=1800,
            kwh_per_day=np.array([30.0]),
            rng=rng,
            tou=True,
        ),
        register_reads(
            meter_ids=np.arange(10, 13),
            first_day=FIRST,
            n_days=DAYS,
            interval_s=day,
            kwh_per_day=np.full(3, 9.0),
            rng=rng,
        ),
    ]
    r = concat(parts)
    r = _drop(r, 2, [local_midnight_utc_s(date(2026, 9, 12))])
    # HN: a third of meter 10-12's reads in the cycle are missing (meter 13 has none): too much estimation
    hn_days = [local_midnight_utc_s(date(2026, 9, d)) for d in range(3, 30, 3)]
    for m in (10, 11, 12):
        r = _drop(r, m, hn_days)
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        with conn.cursor() as cur, cur.copy(f"COPY meters ({', '.join(METER_COLUMNS)}) FROM STDIN (FORMAT csv)") as cp:
            cp.write(_meters_csv(meters))
        copy_readings(conn, r)
    return db


def _register_delta(db: DatabaseServer, meter: int, channel: int, a: date, b: date, digits: int = 6) -> float:
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        rows: dict[int, float] = dict(
            conn.execute(
                "SELECT extract(epoch from ts)::bigint, value FROM readings WHERE meter_id = %s AND channel_id = %s "
                "AND ts IN (to_timestamp(%s), to_timestamp(%s))",
                (meter, channel, local_midnight_utc_s(a), local_midnight_utc_s(b)),
            ).fetchall()
        )
    return (rows[local_midnight_utc_s(b)] - rows[local_midnight_utc_s(a)]) % 10**digits


def test_bill_run_exports_records_and_prices(fleet: DatabaseServer, tmp_path: Path) -> None:
    summary = run_period(_billing(fleet), period=OCTOBER, city="HCM", out_dir=tmp_path, partition_meters=2, workers=2)
    assert summary.status == "released", summary.hold_reason
    assert summary.customers == 5
    names = sorted(p.name for p in summary.files)
    assert names == ["bills.csv", "bills.parquet", "bills.xlsx", "exceptions.csv", "exceptions.parquet"]

    csv = pd.read_csv(next(p for p in summary.files if p.name == "bills.csv"), encoding="utf-8-sig")
    parquet = pd.read_parquet(next(p for p in summary.files if p.name == "bills.parquet"))
    book = openpyxl.load_workbook(next(p for p in summary.files if p.name == "bills.xlsx"), read_only=True)
    assert set(book.sheetnames) == {"summary", "bills", "exceptions"}
    xl_rows = list(book["bills"].values)
    xl = pd.DataFrame(xl_rows[1:], columns=xl_rows[0])
    for frame in (csv, parquet, xl):
        frame = frame.set_index("meter_id")
        assert list(frame.index) == [1, 2, 3, 4, 5]
        assert frame.loc[4, "status"] == "no_tariff"
        assert (frame.loc[[1, 2, 3, 5], "status"] == "billed").all()
        assert int(frame["total_vnd"].sum()) == summary.total_vnd
    bills = parquet.set_index("meter_id")
    tariffs = read_tariff_book()

    # meter 1: clean daily reads; energy = register delta over the cycle, priced on the tiers, 8 % VAT in 2026
    kwh1 = round(_register_delta(fleet, 1, 1, *CYCLE))
    assert bills.loc[1, "energy_kwh"] == kwh1
    amount1 = household_charges(
        np.array([kwh1]), tariff=tariffs.tiered["household"], cycle_start=CYCLE[0], cycle_end=CYCLE[1]
    ).amount_vnd[0]
    assert bills.loc[1, "amount_vnd"] == amount1
    assert bills.loc[1, "vat_vnd"] == vat_vnd(np.array([amount1]), 800)[0]
    assert bills.loc[1, "vat_percent"] == 8.0

    # meter 2: rollover + a missing read: estimated days, still exactly the register delta, two households' tiers
    kwh2 = round(_register_delta(fleet, 2, 1, *CYCLE))
    assert bills.loc[2, "energy_kwh"] == kwh2
    assert bills["estimated_kwh"].loc[2] > 0
    flags2 = str(bills.loc[2, "quality_flags"])
    assert "ROLLOVER" in flags2 and "ESTIMATED" in flags2
    amount2 = household_charges(
        np.array([kwh2]), tariff=tariffs.tiered["household"], cycle_start=CYCLE[0], cycle_end=CYCLE[1], households=2
    ).amount_vnd[0]
    assert bills.loc[2, "amount_vnd"] == amount2

    # meter 3: TOU business customer behind a CT (multiplier 40)
    rates = [round(_register_delta(fleet, 3, ch, *CYCLE) * 40) for ch in (2, 3, 4)]
    assert [bills.loc[3, c] for c in ("normal_kwh", "peak_kwh", "offpeak_kwh")] == rates
    prices = tariffs.tou_prices("business")
    assert prices is not None
    assert (
        bills.loc[3, "amount_vnd"]
        == tou_charges(
            *[np.array([k]) for k in rates], prices=prices, cycle_start=CYCLE[0], cycle_end=CYCLE[1]
        ).amount_vnd[0]
    )

    # meter 5: read day 15
    assert (bills.loc[5, "cycle_start"], bills.loc[5, "cycle_end"]) == (date(2026, 9, 15), date(2026, 10, 15))

    with psycopg.connect(fleet.conninfo(Role.READER)) as conn:
        run = conn.execute(
            "SELECT status, kind, customers, total_vnd, exceptions FROM billing_runs WHERE run_id = %s",
            (summary.run_id,),
        ).fetchone()
        assert run is not None
        assert run[:4] == ("released", "bill", 4, summary.total_vnd)
        assert run[4].get("GAP") == 1  # meter 2's missing read
        n_bills = conn.execute("SELECT count(*) FROM bills WHERE run_id = %s", (summary.run_id,)).fetchone()
        assert n_bills == (5,)
        est = conn.execute(
            "SELECT day, estimated_kwh, methods FROM daily_consumption WHERE meter_id = 2 AND channel_id = 1 "
            "AND estimated_kwh > 0 ORDER BY day"
        ).fetchall()
        assert [r[0] for r in est] == [date(2026, 9, 11), date(2026, 9, 12)]
        assert all(r[2] & 8 for r in est)  # scaled to the register delta


def _bill_flags(db: DatabaseServer, run_id: int) -> dict[int, set[str]]:
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        rows = conn.execute(
            "SELECT meter_id, quality_flags FROM bills WHERE run_id = %s AND status = 'billed'", (run_id,)
        ).fetchall()
    return {int(m): set(filter(None, str(q).split(","))) for m, q in rows}


def _run_detail(db: DatabaseServer, run_id: int) -> dict[str, object]:
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        row = conn.execute("SELECT detail FROM billing_runs WHERE run_id = %s", (run_id,)).fetchone()
    assert row is not None
    return dict(row[0])


def test_bills_on_provisional_or_outdated_prices_say_so(fleet: DatabaseServer, tmp_path: Path) -> None:
    # The shipped tariffs in 2026-09: households on the provisional 2025-05-10 household prices, the business
    # customer (meter 3) on Decision 1279/QD-BCT prices read in a source.
    summary = run_period(_billing(fleet), period=OCTOBER, city="HCM")
    flags = _bill_flags(fleet, summary.run_id)
    assert set(flags) == {1, 2, 3, 5}
    assert all("PROVISIONAL_PRICE" in flags[m] for m in (1, 2, 5))
    assert not {"PROVISIONAL_PRICE", "OUTDATED_PRICE"} & flags[3]
    assert summary.price_flags == {"PROVISIONAL_PRICE": 3}
    assert summary_items(summary)["bills on provisional prices"] == 3
    assert "bills on outdated prices" not in summary_items(summary)
    assert _run_detail(fleet, summary.run_id)["price_flags"] == {"PROVISIONAL_PRICE": 3}

    # Tariff data whose business prices stop at Decision 648/QD-BCT (2019), as before: the business bill is
    # priced on outdated prices and says so, and so does the run summary.
    stale = tmp_path / "tariffs"
    stale.mkdir()
    for name in ("household.toml", "vat.toml"):
        (stale / name).write_text((TARIFF_DIR / name).read_text(encoding="utf-8"), encoding="utf-8")
    tou = (TARIFF_DIR / "tou.toml").read_text(encoding="utf-8")
    head, _, rest = tou.partition("[[groups.business_lt6kv]]\neffective_from = 2023-05-04")
    (stale / "tou.toml").write_text(head + rest[rest.index("[[groups.business_ge22kv]]") :], encoding="utf-8")
    summary = run_period(_billing(fleet), period=OCTOBER, city="HCM", tariff_dir=stale)
    flags = _bill_flags(fleet, summary.run_id)
    assert "OUTDATED_PRICE" in flags[3] and "PROVISIONAL_PRICE" not in flags[3]
    assert summary.price_flags == {"PROVISIONAL_PRICE": 3, "OUTDATED_PRICE": 1}
    items = summary_items(summary)
    assert (items["bills on provisional prices"], items["bills on outdated prices"]) == (3, 1)


def _billing(db: DatabaseServer) -> str:
    """What run_period takes: the billing role's connection string (the caller picks the role)."""
    return db.conninfo(Role.BILLING)


def test_a_run_uses_the_connection_string_it_is_given(fleet: DatabaseServer) -> None:
    # the reader role may not record a billing run: the run fails on the database it was pointed at, before any
    # partition starts, and leaves no run behind
    runs_before = _run_count(fleet)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        run_period(fleet.conninfo(Role.READER), period=OCTOBER, city="HCM")
    assert _run_count(fleet) == runs_before


def test_billing_role_cannot_write_readings(fleet: DatabaseServer) -> None:
    with psycopg.connect(fleet.conninfo(Role.BILLING)) as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("DELETE FROM readings WHERE meter_id = 1")


def _cli(db: DatabaseServer, *args: str) -> subprocess.CompletedProcess[str]:
    env = os.environ | {
        "AMR_STATE_DIR": str(db.settings.state_dir),
        "AMR_DB_PORT": str(db.settings.db.port),
        "AMR_DB_NAME": db.settings.db.name,
    }
    if db.settings.db.data_dir:
        env["AMR_DB_DATA_DIR"] = str(db.settings.db.data_dir)
    env["COLUMNS"] = "200"  # rich wraps at the terminal's width: one message stays on one line
    if args and args[0] == "run":  # these readings were stored without ingest: no validated days, VEE on the month
        args = (args[0], "--source", "readings", *args[1:])
    return subprocess.run(
        [sys.executable, "-m", "app", "bill", *args], env=env, capture_output=True, text=True, timeout=600, check=False
    )


def test_cli_holds_when_too_much_is_estimated_and_override_releases(fleet: DatabaseServer, tmp_path: Path) -> None:
    held = _cli(fleet, "run", "--period", PERIOD, "--city", "HN", "--out", str(tmp_path))
    assert held.returncode == 3, held.stdout + held.stderr
    assert "HELD" in held.stdout and "estimated" in held.stdout
    released = _cli(fleet, "run", "--period", PERIOD, "--city", "HN", "--out", str(tmp_path), "--override-hold")
    assert released.returncode == 0, released.stdout + released.stderr
    with psycopg.connect(fleet.conninfo(Role.OWNER)) as conn:
        runs = conn.execute(
            "SELECT status, hold_reason, estimated_share FROM billing_runs WHERE city = 'HN' "
            "AND kind = 'bill' ORDER BY run_id"
        ).fetchall()
        assert [r[0] for r in runs] == ["held", "overridden"]
        assert all(r[2] > 0.02 for r in runs) and "estimated" in runs[0][1]
        no_data = conn.execute("SELECT status FROM bills WHERE meter_id = 13").fetchall()
        assert no_data == [("no_data",), ("no_data",)]
    exc = pd.read_csv(next(tmp_path.glob("*/exceptions.csv")), encoding="utf-8-sig")
    gaps = exc[exc["rule"] == "GAP"]
    assert sorted(set(gaps["meter_id"])) == [10, 11, 12]
    assert len(gaps) == 3 * 9


def test_vee_only_for_one_read_day_batch(fleet: DatabaseServer) -> None:
    done = _cli(fleet, "vee", "--period", PERIOD, "--city", "HCM", "--read-day", "15")
    assert done.returncode == 0, done.stdout + done.stderr
    with psycopg.connect(fleet.conninfo(Role.OWNER)) as conn:
        run = conn.execute(
            "SELECT run_id, status, customers FROM billing_runs WHERE kind = 'vee' ORDER BY run_id DESC LIMIT 1"
        ).fetchone()
        assert run is not None and run[1:] == ("released", 1)
        rows = conn.execute(
            "SELECT meter_id, min(day), max(day), count(*) FROM daily_consumption "
            "WHERE vee_run_id = %s GROUP BY meter_id",
            (run[0],),
        ).fetchall()
    assert rows == [(5, date(2026, 9, 15), date(2026, 10, 14), 30)]


def _run_count(db: DatabaseServer) -> int:
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        row = conn.execute("SELECT count(*) FROM billing_runs").fetchone()
    assert row is not None
    return int(row[0])


def test_a_run_without_customers_is_empty_not_released(fleet: DatabaseServer, tmp_path: Path) -> None:
    # PE1600 is a known power company without a meter in this fleet.
    summary = run_period(_billing(fleet), period=OCTOBER, power_company="PE1600", out_dir=tmp_path)
    assert (summary.customers, summary.total_vnd, summary.status, summary.files) == (0, 0, "empty", [])
    assert list(tmp_path.iterdir()) == []
    with psycopg.connect(fleet.conninfo(Role.OWNER)) as conn:
        run = conn.execute(
            "SELECT status, customers, export_dir, finished_at IS NOT NULL FROM billing_runs WHERE run_id = %s",
            (summary.run_id,),
        ).fetchone()
        bills = conn.execute("SELECT count(*) FROM bills WHERE run_id = %s", (summary.run_id,)).fetchone()
    assert run == ("empty", 0, None, True) and bills == (0,)


@pytest.mark.parametrize("command", ["run", "vee"])
def test_cli_empty_selection_exits_4_and_writes_nothing(fleet: DatabaseServer, tmp_path: Path, command: str) -> None:
    out = ["--out", str(tmp_path)] if command == "run" else []
    # A known city and read day, but nobody in HCM is read on the 20th.
    done = _cli(fleet, command, "--period", PERIOD, "--city", "HCM", "--read-day", "20", *out)
    assert done.returncode == 4, done.stdout + done.stderr
    assert "EMPTY" in done.stdout and "no files written" in done.stdout
    assert list(tmp_path.iterdir()) == []
    with psycopg.connect(fleet.conninfo(Role.OWNER)) as conn:
        last = conn.execute("SELECT kind, status, city FROM billing_runs ORDER BY run_id DESC LIMIT 1").fetchone()
    assert last == ("bill" if command == "run" else "vee", "empty", "HCM")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--city", "XX"], "--city: unknown city 'XX'; known: HCM, HN"),
        (["--city", "hn"], "--city: unknown city 'hn'"),
        (["--power-company", "PE9999"], "--power-company: unknown power company 'PE9999'"),
        (["--power-company", "PE010"], "did you mean PE0100"),
        (["--city", "HN", "--power-company", "PE0100"], "power company PE0100 serves HCM, not HN"),
        (["--period", "2026-13"], "--period: period '2026-13' is not YYYY-MM"),
        (["--period", "10/2026"], "is not YYYY-MM"),
    ],
)
def test_cli_refuses_unknown_filters_in_one_line(
    fleet: DatabaseServer, tmp_path: Path, args: list[str], words: str
) -> None:
    runs_before = _run_count(fleet)
    period = [] if "--period" in args else ["--period", PERIOD]
    done = _cli(fleet, "run", *period, *args, "--out", str(tmp_path))
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert _run_count(fleet) == runs_before and list(tmp_path.iterdir()) == []


def _bills_of(db: DatabaseServer, run_id: int) -> pd.DataFrame:
    with psycopg.connect(db.conninfo(Role.OWNER)) as conn:
        cur = conn.execute("SELECT * FROM bills WHERE run_id = %s ORDER BY meter_id", (run_id,))
        frame = pd.DataFrame(cur.fetchall(), columns=[c.name for c in cur.description or []])
    return frame.drop(columns=[c for c in ("run_id", "bill_id") if c in frame.columns]).reset_index(drop=True)


def test_partitions_on_a_dask_cluster_give_the_same_bills(fleet: DatabaseServer, tmp_path: Path) -> None:
    single = run_period(_billing(fleet), period=OCTOBER, city="HCM", out_dir=tmp_path / "single", partition_meters=2)
    on_dask = run_period(
        _billing(fleet),
        period=OCTOBER,
        city="HCM",
        out_dir=tmp_path / "dask",
        partition_meters=2,
        dask_scheduler="local",
    )
    assert on_dask.run_id != single.run_id
    assert (on_dask.billed, on_dask.total_vnd, on_dask.energy_kwh) == (
        single.billed,
        single.total_vnd,
        single.energy_kwh,
    )
    assert on_dask.exceptions_by_rule == single.exceptions_by_rule
    a, b = _bills_of(fleet, single.run_id), _bills_of(fleet, on_dask.run_id)
    assert len(a) == 5
    pd.testing.assert_frame_equal(a, b)
