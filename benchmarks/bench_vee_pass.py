"""One VEE pass over one day of a city's readings, end to end, beside the binary COPY-out of the rows it reads.

    .venv/bin/python -m benchmarks.bench_vee_pass [--quick] [--meters N]

On a throwaway TimescaleDB (fsync off): N meters with daily register reads at local midnight, 10 % of them also
with a 30-minute profile (readings every 1800 s), over the rules' history days, the estimation span before the
day and the day itself, 0.3 % of reads missing. Everything before the day is validated first (untimed: the state
the service leaves). Then the day lands through ingest's marking (vee_pending), and ONE pass validates, estimates
and stores it: the figure. The pass resumes each series from the state the history's validation left
(sql/098_vee_series_state_blocks.sql) and reads the day's readings, plus the history of the few meters whose faults need
it (a like-day estimate). Baseline, in the same run: a binary COPY-out of the day's readings (the rows that
landed, which the pass validates and stores), drained into memory; the ratio is of rows/s on those rows. HCMC at
scale 1.0 is 2.5 M meters (the issue's target: under 60 s, rows/s at least 0.5x the COPY-out); --quick is 50,000.
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from rich.console import Console
from rich.table import Table

from amr.db.copy_out import copy_out_bytes
from amr.db.server import DatabaseServer, Role
from amr.settings import DatabaseSettings, Settings
from amr.timebase import DAY_S, local_midnight_utc_s
from billing.continuous import drain, estimate_span_days, run_pass
from billing.rules import read_vee_rules
from billing.synthetic import copy_readings, register_reads
from billing.vee import CLOCK_CHANNEL, ENERGY_CHANNELS
from ingest.strategy import Strategy
from tests.ingested import store_through_ingest

HCMC_METERS = 2_500_000
QUICK_METERS = 50_000
PROFILE_SHARE = 0.10  # meters that also send a 30-minute profile
DAY = date(2026, 10, 15)  # the day that lands
GEN_CHUNK = 20_000  # meters generated and copied at a time (a profile meter is ~1,000 reads)
MISSING = 0.003


@contextmanager
def bench_database() -> Iterator[DatabaseServer]:
    from tests.services import free_port, make_state_dir

    state = make_state_dir("amr-bench-vee-pass-")
    settings = Settings(state_dir=state, db=DatabaseSettings(port=free_port(), data_dir=state / "pg" / "data"))
    db = DatabaseServer.from_settings(settings, durable=False)
    try:
        db.up()
        yield db
    finally:
        if db.cluster is not None:
            db.cluster.stop()
        shutil.rmtree(state, ignore_errors=True)


def fill(db: DatabaseServer, n: int, first_day: date, seed: int = 5) -> tuple[dict[str, int], list[Any]]:
    """Meters and readings from first_day through DAY (closing midnight included); the day's reads are
    returned unstored (they land after the history is validated)."""
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1, dtype=np.int32)
    profile = rng.random(n) < PROFILE_SHARE
    meters = pd.DataFrame(
        {
            "meter_id": ids,
            "serial": [f"VP{i:08d}" for i in ids],
            "city": "HCM",
            "power_company": "PE0100",
            "customer_code": [f"PE01{i:09d}" for i in ids],
            "tariff_class": "household",
            "meter_kind": "smart",
            "read_day": 1,
        }
    )
    n_days = (DAY - first_day).days + 1
    day_start = local_midnight_utc_s(DAY)
    before = 0
    day_reads: list[Any] = []
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        with conn.cursor() as cur, cur.copy(f"COPY meters ({', '.join(meters.columns)}) FROM STDIN (FORMAT csv)") as cp:
            cp.write(meters.to_csv(index=False, header=False))
        for lo in range(0, n, GEN_CHUNK):
            chunk, prof = ids[lo : lo + GEN_CHUNK], profile[lo : lo + GEN_CHUNK]
            for interval_s, sel in ((DAY_S, chunk), (1800, chunk[prof])):
                if sel.size == 0:
                    continue
                r = register_reads(meter_ids=sel, first_day=first_day, n_days=n_days, interval_s=interval_s,
                                   kwh_per_day=rng.lognormal(np.log(6.0), 0.5, sel.size), rng=rng)  # fmt: skip
                if interval_s != DAY_S:  # the profile on its own channel-1 series would clash: use the rates
                    r = type(r)(meter_id=r.meter_id, channel_id=np.full(len(r), 2, np.int16), ts_s=r.ts_s,
                                value=r.value, quality=r.quality)  # fmt: skip
                r = r.take(rng.random(len(r)) > MISSING)
                old = r.ts_s <= day_start
                before += copy_readings(conn, r.take(old))
                day_reads.append(r.take(~old))
        conn.execute("ANALYZE meters")
        conn.execute("ANALYZE readings")
    return {"readings before the day": before}, day_reads


def settle_history(db: DatabaseServer) -> None:
    """The days before DAY validated, as the service leaves them (untimed), and their pending units gone."""
    rules = read_vee_rules(None)
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        conn.execute("DELETE FROM vee_pending")  # history was copied without marks; only the day is pending
        conn.execute(
            "INSERT INTO vee_pending (meter_id, day) SELECT meter_id, %s FROM meters", (DAY - timedelta(days=1),)
        )
    drain(db.conninfo(Role.BILLING), rules=rules)  # in the service's passes of MAX_PASS_UNITS: bounded memory
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        conn.execute("DELETE FROM vee_pending WHERE day < %s", (DAY,))
        conn.execute("VACUUM ANALYZE")  # as autovacuum leaves a day-old database: the pass's plans on fresh statistics


def copy_out(db: DatabaseServer, from_s: int, to_s: int) -> tuple[float, int]:
    """The baseline: binary COPY-out of the readings a pass of DAY reads (same channels and time range)."""
    query = (
        "COPY (SELECT meter_id, channel_id, ts, value, quality FROM readings WHERE channel_id = ANY(%s)"
        " AND ts > to_timestamp(%s) AND ts <= to_timestamp(%s) ORDER BY meter_id, channel_id, ts)"
        " TO STDOUT (FORMAT BINARY)"
    )
    with psycopg.connect(db.conninfo(Role.BILLING)) as conn:
        t = time.perf_counter()
        size = len(copy_out_bytes(conn, query, ([*ENERGY_CHANNELS, CLOCK_CHANNEL], from_s, to_s)))
        return time.perf_counter() - t, size


def run(quick: bool, meters: int | None = None) -> dict[str, Any]:
    n = meters or (QUICK_METERS if quick else HCMC_METERS)
    rules = read_vee_rules(None)
    span = estimate_span_days(rules)
    first_day = DAY - timedelta(days=span + rules.history.days + 1)
    console = Console()
    with bench_database() as db:
        t = time.perf_counter()
        filled, day_reads = fill(db, n, first_day)
        console.print(f"filled {n:,} meters in {time.perf_counter() - t:.0f} s: {filled}")
        t = time.perf_counter()
        settle_history(db)
        console.print(f"history validated in {time.perf_counter() - t:.0f} s (untimed)")
        landed = sum(store_through_ingest(db, r, Strategy.RAW) for r in day_reads)
        console.print(f"the day landed through ingest: {landed:,} readings")
        day_start_s = local_midnight_utc_s(DAY)  # the day's reads: after its first midnight, to its closing one
        # the baseline before and after the pass, the faster counts (both find the pages as warm as the pass does)
        before_s, floor_bytes = copy_out(db, day_start_s, day_start_s + DAY_S)
        summary = run_pass(db.conninfo(Role.BILLING), rules=rules, max_units=10**9)
        after_s, _ = copy_out(db, day_start_s, day_start_s + DAY_S)
        floor_s = min(before_s, after_s)
    total = summary.seconds.get("total", float("nan"))
    figures = {
        "meters": n,
        "readings of the day": landed,
        "units validated": summary.units,
        "meters resumed from their state": summary.resumed,
        "readings read by the pass": summary.readings,
        "new versions": sum(summary.versions.values()),
        "pass seconds": round(total, 2),
        "pass stages": {k: round(v, 2) for k, v in summary.seconds.items()},
        "pass rows/s (the day's readings)": round(landed / total) if total else 0,
        "COPY-out of the day's readings, seconds": round(floor_s, 3),
        "COPY-out MB": round(floor_bytes / 1e6, 1),
        "COPY-out rows/s": round(landed / floor_s) if floor_s else 0,
        "ratio pass / COPY-out (rows/s)": round(floor_s / total, 3) if total else 0,
    }
    table = Table(title=f"one VEE pass over one day of {n:,} meters ({PROFILE_SHARE:.0%} with a 30-min profile)")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for k, v in figures.items():
        table.add_row(k, f"{v:,}" if isinstance(v, int) else str(v))
    console.print(table)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_METERS:,} meters instead of {HCMC_METERS:,}")
    parser.add_argument("--meters", type=int, default=None)
    args = parser.parse_args()
    run(args.quick, args.meters)


if __name__ == "__main__":
    main()
