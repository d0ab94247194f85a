"""Billing a city from the database to the bills table and the export files, measured at the named scale (no
extrapolation), beside the floor of reading the same rows out with one binary COPY in the same run.

    .venv/bin/python -m benchmarks.bench_billing [--quick] [--customers N] [--source continuous|readings] [--excel]

Fleet: HCMC at scale 1.0, 2.5 M customers (--quick: 100 k) of the 15 HCM power companies, read day 1: 97 %
households (total register), 3 % business customers (multiplier 40; total + three TOU rate registers).

--source continuous (the default): `run_period(source="continuous")` for period 2026-10 (cycle 2026-09-01 ..
2026-10-01) on the VEE service's results as it leaves them, filled here instead of running the service over
~80 M days: `meters`, and `vee_daily` with one version-1 row per meter, channel and local day of the cycle
('first_pass', made_at now(); quality 'A', or, for ~0.3 % of the days, estimated in two-day gaps: quality 'S',
AEMO method 17, an open GAP episode over each gap). The rows go in by binary COPY (amr.pgcopy.FixedRows) into a
staging table and one INSERT .. SELECT per day, as the service's passes write them: the heap in day order, every
meter's row of a day together; the table's two indexes are built after the load (vee_daily_versions, which a bill
run does not read, is left empty). A few customers are not bill-ready (a meter that stopped reading mid-cycle,
units still pending, an open CLOCK_INVALID episode) and a few have no validated day at all (no_data).
The floor: one binary COPY of the cycle's vee_daily rows (the columns billing reads, no ORDER BY), its chunks
drained into a buffer. The floor and the run each start right after a read of the tables they read (WARM_QUERIES).

--source readings: the from-readings path (VEE run on the month's raw daily register reads, 14 history days before
the cycle, 0.3 % of reads missing), beside the binary COPY of those readings.

Figures: seconds per stage of the run (summary.seconds; partitions' stages add up over partitions; a continuous
run stores its bills beside the summary and exports, so its store_bills overlaps them), the run's total and
customers/s, the floor's seconds and the ratio of the two. Excel: the issue's target is the bills table, CSV and
Parquet, so the run leaves its workbooks out (billing.export's excel="none") and the bench times writing them from
the run's Parquet files afterwards (excel_after_run_s, not in the total); --excel writes them in the run.
"""

from __future__ import annotations

import argparse
import functools
import inspect
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from rich.console import Console
from rich.table import Table

from amr import pgcopy
from amr.db.copy_out import copy_out
from amr.db.server import DatabaseServer, Role
from amr.settings import DatabaseSettings, Settings
from amr.timebase import DAY_S, local_midnight_utc_s
from billing import flags as F
from billing.cycles import BillingPeriod
from billing.quality import QUALITY_CODES, day_quality
from billing.run import run_period
from billing.synthetic import copy_readings, register_reads
from billing.vee import CLOCK_CHANNEL

HCMC_CUSTOMERS = 2_500_000
QUICK_CUSTOMERS = 100_000
PERIOD = BillingPeriod(2026, 10)
CYCLE_FIRST, CYCLE_DAYS = date(2026, 9, 1), 30  # read day 1: the cycle 2026-09-01 .. 2026-10-01
FIRST_DAY = date(2026, 8, 17)  # readings mode: 14 history days before the cycle
DAYS = 45
GEN_CHUNK = 50_000  # readings mode: customers generated and copied at a time (~2.3 M rows)
COMPANIES = [f"PE{k:02d}00" for k in range(1, 17) if k != 12]  # the HCM codes in sql/002 (no PE1200)
BUSINESS_SHARE = 0.03
BUSINESS_MULTIPLIER = 40.0
SOURCES = ("continuous", "readings")

# vee_daily as the VEE service leaves it (billing.continuous): the fixed-width columns by binary COPY into a
# staging table, then one INSERT .. SELECT per day, as the service's own passes write (temp table, then insert).
STAGE_ROWS = pgcopy.FixedRows(
    ("meter_id", "int4"),
    ("channel_id", "int2"),
    ("day", "date"),
    ("measured_kwh", "float8"),
    ("estimated_kwh", "float8"),
    ("n_measured", "int4"),
    ("n_estimated", "int4"),
    ("flags", "int4"),
    ("methods", "int2"),
    ("quality", "int2"),  # index into billing.quality.QUALITY_CODES
    ("method", "int2"),  # 0: none (NULL)
)
GAP_START_P = 0.0015  # per meter and day: a missing daily read, two estimated days (~0.3 % of the days)
STOPPED_P = 0.0005  # meters whose reads stop mid-cycle: days not validated, held
NO_DATA_P = 0.0002  # meters without any validated day: billed as no_data
PENDING_P = 0.0002  # meters with a unit the service has not validated yet: held
CLOCK_P = 0.0001  # meters with an open CLOCK_INVALID episode (a blocking severity): held
EST_FLAGS = F.ESTIMATED | F.GAP
EST_METHODS = F.METHOD_LINEAR | F.METHOD_SCALED  # interpolated, scaled to the register delta: AEMO method 17
COPY_FLOOR_BUFFER = 1 << 28  # the floor drains its COPY into a 256 MB ring buffer


def fill_meters(conn: psycopg.Connection, n: int, rng: np.random.Generator) -> np.ndarray:
    """2.5 M-style registry rows for meters 1..n; returns the business (TOU) mask."""
    ids = np.arange(1, n + 1, dtype=np.int32)
    business = rng.random(n) < BUSINESS_SHARE
    meters = pd.DataFrame(
        {
            "meter_id": ids,
            "serial": [f"HCM{i:08d}" for i in ids],
            "city": "HCM",
            "power_company": np.array(COMPANIES)[ids % len(COMPANIES)],
            "customer_code": [f"PE{i:011d}" for i in ids],
            "tariff_class": np.where(business, "business", "household"),
            "meter_kind": "smart",
            "multiplier": np.where(business, BUSINESS_MULTIPLIER, 1.0),
            "read_day": 1,
        }
    )
    with conn.cursor() as cur, cur.copy(f"COPY meters ({', '.join(meters.columns)}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(meters.to_csv(index=False, header=False))
    conn.execute("ANALYZE meters")
    return business


def fill_readings(db: DatabaseServer, n: int, seed: int = 3) -> dict[str, Any]:
    """Raw daily register reads over the cycle and 14 history days (the from-readings path)."""
    rng = np.random.default_rng(seed)
    rows = 0
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        ids = np.arange(1, n + 1, dtype=np.int32)
        business = fill_meters(conn, n, rng)
        for lo in range(0, n, GEN_CHUNK):
            chunk = ids[lo : lo + GEN_CHUNK]
            b = business[lo : lo + GEN_CHUNK]
            for tou, sel in ((False, chunk[~b]), (True, chunk[b])):
                if sel.size == 0:
                    continue
                kwh = rng.lognormal(np.log(5.5), 0.6, sel.size) * (2 if tou else 1)
                r = register_reads(
                    meter_ids=sel, first_day=FIRST_DAY, n_days=DAYS, interval_s=DAY_S, kwh_per_day=kwh, rng=rng, tou=tou
                )
                r = r.take(rng.random(len(r)) > 0.003)
                rows += copy_readings(conn, r)
        conn.execute("ANALYZE readings")
    return {"readings": rows}


def _series(n: int, business: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(meter row, meter_id, channel_id) of every series, sorted by (meter, channel): channel 1 for households,
    1..4 for business meters."""
    n_ch = np.where(business, 4, 1)
    row = np.repeat(np.arange(n), n_ch)
    first = np.repeat(np.cumsum(n_ch) - n_ch, n_ch)
    channel = (np.arange(row.shape[0]) - first + 1).astype(np.int16)
    return row, (row + 1).astype(np.int32), channel


def fill_validated_days(db: DatabaseServer, n: int, seed: int = 3) -> dict[str, Any]:
    """meters and the VEE service's results for the cycle (see the module docstring); the counts written."""
    rng = np.random.default_rng(seed)
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        business = fill_meters(conn, n, rng)
        s_row, s_meter, s_channel = _series(n, business)
        tou = business[s_row]
        kwh_per_day = rng.lognormal(np.log(5.5), 0.6, n) * np.where(business, 2.0, 1.0)
        share = np.array([1.0, 0.55, 0.2, 0.25])[s_channel - 1]  # total, normal, peak, off-peak
        mult = np.where(business, BUSINESS_MULTIPLIER, 1.0)[s_row]
        # per meter and day: estimated (a missing read: that day and the next), stopped, no data
        gap = rng.random((n, CYCLE_DAYS)) < GAP_START_P
        estimated = gap | np.roll(gap, 1, axis=1) & (np.arange(CYCLE_DAYS) > 0)
        stop_day = np.where(rng.random(n) < STOPPED_P, rng.integers(5, CYCLE_DAYS - 1, n), CYCLE_DAYS)
        stop_day[rng.random(n) < NO_DATA_P] = 0
        # the heap as the passes leave it: day after day, every meter's rows of the day
        conn.execute(
            "CREATE UNLOGGED TABLE vee_fill (meter_id integer, channel_id smallint, day date, measured_kwh float8,"
            " estimated_kwh float8, n_measured integer, n_estimated integer, flags integer, methods smallint,"
            " quality smallint, method smallint)"
        )
        # Indexes are built once after the load (the same indexes, as the migrations define them; a bulk build
        # instead of 80 M inserts).
        row = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conname = 'vee_daily_pkey'"
        ).fetchone()
        assert row is not None
        primary_key = str(row[0])
        conn.execute("ALTER TABLE vee_daily DROP CONSTRAINT vee_daily_pkey")
        conn.execute("DROP INDEX vee_daily_day")
        codes = "ARRAY[" + ", ".join(f"'{c}'" for c in QUALITY_CODES) + "]::char(1)[]"
        rows = est_rows = 0
        for d in range(CYCLE_DAYS):
            day = CYCLE_FIRST + timedelta(days=d)
            live = stop_day[s_row] > d
            est = estimated[s_row, d] & live
            # daily register deltas are 0.01 kWh steps; the rate registers' deltas sum to the total's
            base = np.round(kwh_per_day[s_row] * rng.gamma(8.0, 1 / 8.0, s_row.shape[0]), 2)
            kwh = np.where(tou, np.round(base * share, 2), base)
            kwh = np.where(tou & (s_channel == 1), np.bincount(s_row, np.where(s_channel > 1, kwh, 0.0), n)[s_row], kwh)
            kwh = kwh * mult
            n_meas, n_est = (~est).astype(np.int32), est.astype(np.int32)
            methods = np.where(est, EST_METHODS, 0).astype(np.int16)
            quality, method = day_quality(n_meas, n_est, methods)
            q_idx = np.zeros(s_row.shape[0], np.int16)
            for k, code in enumerate(QUALITY_CODES):
                q_idx[quality == code] = k
            columns = {
                "meter_id": s_meter,
                "channel_id": s_channel,
                "day": np.full(s_row.shape[0], pgcopy.unix_days_to_pg_days(np.datetime64(day, "D")), np.int32),
                "measured_kwh": np.where(est, 0.0, kwh),
                "estimated_kwh": np.where(est, kwh, 0.0),
                "n_measured": n_meas,
                "n_estimated": n_est,
                "flags": np.where(est, EST_FLAGS, 0).astype(np.int32),
                "methods": methods,
                "quality": q_idx,
                "method": method,
            }
            columns = {k: v[live] for k, v in columns.items()}
            with (
                conn.cursor() as cur,
                cur.copy(f"COPY vee_fill ({', '.join(STAGE_ROWS.names)}) FROM STDIN (FORMAT BINARY)") as copy,
            ):
                copy.write(STAGE_ROWS.encode(columns))
            conn.execute(
                "INSERT INTO vee_daily (meter_id, channel_id, day, version, measured_kwh, estimated_kwh, n_measured,"
                " n_estimated, flags, methods, quality, method, reason, locked, made_at)"
                " SELECT meter_id, channel_id, day, 1, measured_kwh, estimated_kwh, n_measured, n_estimated, flags,"
                f" methods, ({codes})[quality + 1], nullif(method, 0), 'first_pass', false, now() FROM vee_fill"
            )
            conn.execute("TRUNCATE vee_fill")
            rows += int(live.sum())
            est_rows += int(est.sum())
        conn.execute("DROP TABLE vee_fill")
        conn.execute(f"ALTER TABLE vee_daily ADD CONSTRAINT vee_daily_pkey {primary_key}")
        conn.execute("CREATE INDEX vee_daily_day ON vee_daily (day)")
        episodes = _fill_episodes(
            conn, s_meter, s_channel, gap & (stop_day[:, None] > np.arange(CYCLE_DAYS)), s_row, rng, n
        )
        pending = _fill_pending(conn, n, rng)
        conn.execute("VACUUM ANALYZE vee_daily")
        conn.execute("ANALYZE vee_episodes")
        conn.execute("ANALYZE vee_pending")
    return {
        "validated_days": rows,
        "estimated_days": est_rows,
        "stopped_meters": int(((stop_day > 0) & (stop_day < CYCLE_DAYS)).sum()),
        "no_data_meters": int((stop_day == 0).sum()),
        **episodes,
        "pending_units": pending,
    }


def _fill_episodes(
    conn: psycopg.Connection,
    s_meter: np.ndarray,
    s_channel: np.ndarray,
    gap: np.ndarray,
    s_row: np.ndarray,
    rng: np.random.Generator,
    n: int,
) -> dict[str, int]:
    """An open GAP episode (review) over each estimated gap of each series, and open CLOCK_INVALID episodes
    (invalid: blocking) on a few meters."""
    series, day = np.nonzero(gap[s_row])
    first = np.array([local_midnight_utc_s(CYCLE_FIRST + timedelta(days=int(d))) for d in range(CYCLE_DAYS + 2)])
    clock = np.flatnonzero(rng.random(n) < CLOCK_P)
    c_day = rng.integers(0, CYCLE_DAYS - 4, clock.shape[0])
    episodes = pd.DataFrame(
        {
            "meter_id": np.r_[s_meter[series], clock + 1],
            "channel_id": np.r_[s_channel[series], np.full(clock.shape[0], CLOCK_CHANNEL)],
            "rule": ["GAP"] * series.shape[0] + ["CLOCK_INVALID"] * clock.shape[0],
            "severity": ["review"] * series.shape[0] + ["invalid"] * clock.shape[0],
            "first_start": pd.to_datetime(np.r_[first[day], first[c_day]], unit="s", utc=True),
            "last_end": pd.to_datetime(np.r_[first[day + 2], first[c_day + 4]], unit="s", utc=True),
            "occurrences": np.r_[np.ones(series.shape[0], np.int64), np.full(clock.shape[0], 4)],
            "value_min": np.r_[np.full(series.shape[0], 2.0 * DAY_S), np.full(clock.shape[0], 1200.0)],
            "value_max": np.r_[np.full(series.shape[0], 2.0 * DAY_S), np.full(clock.shape[0], 1500.0)],
            "status": "open",
        }
    )
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY vee_episodes ({', '.join(episodes.columns)}) FROM STDIN (FORMAT csv)") as copy,
    ):
        copy.write(episodes.to_csv(index=False, header=False, date_format="%Y-%m-%d %H:%M:%S%z"))
    return {"gap_episodes": int(series.shape[0]), "clock_episodes": int(clock.shape[0])}


def _fill_pending(conn: psycopg.Connection, n: int, rng: np.random.Generator) -> int:
    """Units marked by ingest that the service has not validated yet (a pass was under way)."""
    meters = np.flatnonzero(rng.random(n) < PENDING_P) + 1
    days = np.datetime64(CYCLE_FIRST, "D") + rng.integers(0, CYCLE_DAYS, meters.shape[0])
    pending = pd.DataFrame({"meter_id": meters, "day": days.astype(str)})
    with conn.cursor() as cur, cur.copy("COPY vee_pending (meter_id, day) FROM STDIN (FORMAT csv)") as copy:
        copy.write(pending.to_csv(index=False, header=False))
    return int(meters.shape[0])


def _drain(db: DatabaseServer, query: str) -> tuple[float, int]:
    """Seconds and bytes of a binary COPY out, its chunks copied into a ring buffer (the reading, not the
    keeping: a city's rows do not fit in memory twice)."""
    view = memoryview(bytearray(COPY_FLOOR_BUFFER))
    pos = 0

    def keep(chunk: memoryview) -> None:
        nonlocal pos
        size = len(chunk)
        if pos + size > COPY_FLOOR_BUFFER:
            pos = 0
        view[pos : pos + size] = chunk
        pos += size

    t = time.perf_counter()
    with psycopg.connect(db.conninfo(Role.BILLING)) as conn:
        total = copy_out(conn, query, keep)
    return time.perf_counter() - t, total


# What each measurement reads, read once just before it: the floor and the run start from the same warm cache
# (this VM pages out page cache idle for about a minute, so a table written or read minutes earlier is on disk
# again, and the run's index scans would wait on random reads the floor's sequential scan does not).
WARM_QUERIES = {
    "continuous": (
        "SELECT count(*) FROM meters",
        "SELECT count(*) FROM vee_daily",  # the heap, by a sequential scan
        "SELECT count(*) FROM vee_daily WHERE meter_id >= 0",  # the primary key, by an index-only scan
    ),
    "readings": ("SELECT count(*) FROM meters", "SELECT count(*) FROM readings"),
}


def warm_cache(db: DatabaseServer, source: str) -> float:
    """Read the tables (and vee_daily's primary key) the measurements read: seconds."""
    t = time.perf_counter()
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        for query in WARM_QUERIES[source]:
            index = "WHERE" in query
            conn.execute(f"SET enable_seqscan = {'off' if index else 'on'}")
            conn.execute(f"SET enable_indexscan = {'on' if index else 'off'}")
            conn.execute(f"SET enable_indexonlyscan = {'on' if index else 'off'}")
            conn.execute("SET enable_bitmapscan = off")
            conn.execute(query)
    return time.perf_counter() - t


def copy_out_floor(db: DatabaseServer, source: str) -> tuple[float, int]:
    """The same rows the run reads, by one plain binary COPY: (seconds, bytes)."""
    if source == "continuous":
        end = CYCLE_FIRST + timedelta(days=CYCLE_DAYS)
        return _drain(
            db,
            "COPY (SELECT meter_id, channel_id, day, measured_kwh, estimated_kwh, n_measured, n_estimated, flags,"
            f" methods, version FROM vee_daily WHERE day >= '{CYCLE_FIRST}' AND day < '{end}')"
            " TO STDOUT (FORMAT BINARY)",
        )
    return _drain(
        db,
        "COPY (SELECT meter_id, channel_id, ts, value, quality FROM readings ORDER BY meter_id, channel_id, ts) "
        "TO STDOUT (FORMAT BINARY)",
    )


@contextmanager
def bench_database() -> Iterator[DatabaseServer]:
    """A throwaway TimescaleDB (fsync off), removed afterwards."""
    from tests.services import free_port, make_state_dir  # throwaway cluster helpers

    state = make_state_dir("amr-bench-billing-")
    settings = Settings(state_dir=state, db=DatabaseSettings(port=free_port(), data_dir=state / "pg" / "data"))
    db = DatabaseServer.from_settings(settings, durable=False)
    try:
        db.up()
        yield db
    finally:
        if db.cluster is not None:
            db.cluster.stop()
        shutil.rmtree(state, ignore_errors=True)


@contextmanager
def _run_excel(excel: bool) -> Iterator[bool]:
    """The run's exports with or without Excel workbooks: the issue's target is the bills table, CSV and Parquet;
    without, the run's writer is given excel="none" (billing.export; an older writer without the option writes its
    workbooks in the run). Yields whether the run leaves Excel out."""
    import billing.run as bill_run

    writer = bill_run.write_exports
    leave_out = not excel and "excel" in inspect.signature(writer).parameters
    if leave_out:
        bill_run.write_exports = functools.partial(writer, excel="none")
    try:
        yield leave_out
    finally:
        bill_run.write_exports = writer


def _excel_after(run_dir: Path) -> float | None:
    """Seconds to write the run's workbooks afterwards from its Parquet files (one per power company), if the
    export module can."""
    from billing import export

    write = getattr(export, "write_company_workbooks", None)
    if write is None:
        return None
    t = time.perf_counter()
    write(run_dir)
    return time.perf_counter() - t


def cold_cache(db: DatabaseServer) -> float:
    """PostgreSQL restarted (its shared buffers empty) and the kernel's page cache dropped: a measurement then reads
    its tables from disk, as a bill run does on a server whose memory went to other work. Seconds."""
    t = time.perf_counter()
    assert db.cluster is not None
    db.cluster.stop()
    os.sync()
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError as exc:  # not root, or a container that may not: the measurement is then not cold
        raise SystemExit(f"--cold needs to drop the page cache (as root): {exc}") from exc
    db.cluster.start()
    return time.perf_counter() - t


def measure(
    db: DatabaseServer, n: int, source: str, *, excel: bool = False, cold: bool = False, **run_options: Any
) -> dict[str, Any]:
    """The floor, then the bill run, on a filled database (each after a read of its tables, or each from a cold
    cache): the figures."""
    out = Path(tempfile.mkdtemp(prefix="amr-bench-billing-out-"))
    prepare = (lambda: cold_cache(db)) if cold else (lambda: warm_cache(db, source))
    try:
        warm_floor_s = prepare()
        floor_s, floor_bytes = copy_out_floor(db, source)
        warm_run_s = prepare()
        with _run_excel(excel) as excel_left_out:
            summary = run_period(
                db.conninfo(Role.BILLING), period=PERIOD, kind="bill", source=source, out_dir=out, **run_options
            )
        total = summary.seconds["total"]
        figures: dict[str, Any] = {f"stage_{k}_s": v for k, v in summary.seconds.items() if k != "total"}
        figures |= {
            "bill_run_s": total,
            "customers_per_s": n / total,
            "copy_out_floor_s": floor_s,
            "copy_out_floor_mb": floor_bytes / 1e6,
            "ratio_run_to_copy_floor": total / floor_s,
            "excel_in_run": not excel_left_out,
            "cache": "cold (restart, page cache dropped)" if cold else "warm (tables read first)",
            "cache_prepared_before_floor_s": warm_floor_s,
            "cache_prepared_before_run_s": warm_run_s,
        }
        if excel_left_out:
            figures["excel_after_run_s"] = _excel_after(out / f"{PERIOD.label}_run{summary.run_id}")
        figures |= {
            "status": summary.status,
            "billed": summary.billed,
            "held": summary.held,
            "no_data": summary.no_data,
            "rows_read": summary.readings,
            "estimated_share": summary.estimated_share,
            "total_vnd": summary.total_vnd,
            "exceptions": sum(summary.exceptions_by_rule.values()),
            "export_mb": sum(p.stat().st_size for p in summary.files) / 1e6,
        }
        return figures
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run(
    quick: bool, customers: int | None = None, source: str = "continuous", excel: bool = False, cold: bool = False
) -> dict[str, Any]:
    if source not in SOURCES:
        raise ValueError(f"source {source!r}: one of {SOURCES}")
    n = customers or (QUICK_CUSTOMERS if quick else HCMC_CUSTOMERS)
    with bench_database() as db:
        t = time.perf_counter()
        filled = fill_validated_days(db, n) if source == "continuous" else fill_readings(db, n)
        figures: dict[str, Any] = {"source": source, "customers": n, **filled, "fill_s": time.perf_counter() - t}
        return figures | measure(db, n, source, excel=excel, cold=cold)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 1 else f"{value:,.2f}"
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def print_table(f: dict[str, Any]) -> None:
    console = Console()
    stages = Table(title=f"bill run ({f['source']}), {f['customers']:,} customers: seconds per stage")
    stages.add_column("stage")
    stages.add_column("s", justify="right")
    stages.add_column("note")
    notes = {
        "meters": "registry read, run recorded",
        "fetch": "PostgreSQL's sums per series (continuous) / readings COPY; partitions' time added up",
        "determinants": "determinants and the bill-ready gate",
        "vee": "VEE kernels",
        "store_vee": "daily rows and exceptions",
        "price": "tariffs, held customers",
        "store_bills": "from its start: beside the summary and exports (continuous)",
        "export": "CSV + Parquet" + ("" if f.get("excel_in_run") else " (Excel left out, below)"),
    }
    for key, value in f.items():
        if key.startswith("stage_"):
            stage = key.removeprefix("stage_").removesuffix("_s")
            stages.add_row(stage, _cell(value), notes.get(stage, ""))
    stages.add_row("total", _cell(f["bill_run_s"]), "the run's summary.seconds['total']", style="bold")
    console.print(stages)
    table = Table(title="figures")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in f.items():
        if not key.startswith("stage_"):
            table.add_row(key, _cell(value))
    console.print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CUSTOMERS:,} customers instead of 2.5 M")
    parser.add_argument("--customers", type=int, default=None, help=f"default {HCMC_CUSTOMERS:,} (HCMC, scale 1.0)")
    parser.add_argument("--source", choices=SOURCES, default="continuous")
    parser.add_argument("--excel", action="store_true", help="the run writes its Excel workbooks too")
    parser.add_argument(
        "--cold", action="store_true", help="restart PostgreSQL and drop the page cache before each measurement"
    )
    args = parser.parse_args()
    print_table(run(args.quick, args.customers, args.source, args.excel, args.cold))


if __name__ == "__main__":
    main()
