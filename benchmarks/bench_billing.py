"""Billing a fleet from the database to the export files: `run_period` on a throwaway TimescaleDB holding a month
of daily register reads (plus the VEE history window), beside the floor of reading the same rows out with binary
COPY in the same run.

    .venv/bin/python -m benchmarks.bench_billing [--quick] [--customers N]

Fleet: 97 % households (total register), 3 % business customers (total + three TOU rate registers), read day 1,
daily reads at local midnight, 0.3 % of reads missing. HCMC at scale 1.0 is about 2.5 M customers; --quick bills
100 k. Figures: seconds per stage, customers/s, and the extrapolation to 2.5 M customers (stages scale linearly
with customers: partitions of billing.load.PARTITION_METERS meters).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from rich.console import Console
from rich.table import Table

from amr.db.server import DatabaseServer, Role
from amr.settings import DatabaseSettings, Settings
from amr.timebase import DAY_S
from billing.cycles import BillingPeriod
from billing.run import run_period
from billing.synthetic import copy_readings, register_reads

HCMC_CUSTOMERS = 2_500_000
PERIOD = BillingPeriod(2026, 10)
FIRST_DAY = date(2026, 8, 17)  # 14 history days before the 2026-09-01 .. 2026-10-01 cycle
DAYS = 45
GEN_CHUNK = 50_000  # customers generated and copied at a time (~2.3 M rows)
COMPANIES = [f"PE{k:02d}00" for k in range(1, 17) if k != 12]  # the HCM codes in sql/002 (no PE1200)


def fill(db: DatabaseServer, n: int, seed: int = 3) -> int:
    rng = np.random.default_rng(seed)
    rows = 0
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        ids = np.arange(1, n + 1, dtype=np.int32)
        business = rng.random(n) < 0.03
        meters = pd.DataFrame(
            {
                "meter_id": ids,
                "serial": [f"HCM{i:08d}" for i in ids],
                "city": "HCM",
                "power_company": np.array(COMPANIES)[ids % len(COMPANIES)],
                "customer_code": [f"PE{i:011d}" for i in ids],
                "tariff_class": np.where(business, "business", "household"),
                "meter_kind": "smart",
                "multiplier": np.where(business, 40.0, 1.0),
                "read_day": 1,
            }
        )
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY meters ({', '.join(meters.columns)}) FROM STDIN (FORMAT csv)") as copy,
        ):
            copy.write(meters.to_csv(index=False, header=False))
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
        conn.execute("ANALYZE meters")
    return rows


def copy_out_floor(db: DatabaseServer) -> float:
    t = time.perf_counter()
    with (
        psycopg.connect(db.conninfo(Role.BILLING)) as conn,
        conn.cursor() as cur,
        cur.copy(
            "COPY (SELECT meter_id, channel_id, ts, value, quality FROM readings ORDER BY meter_id, channel_id, ts) "
            "TO STDOUT (FORMAT BINARY)"
        ) as copy,
    ):
        for _ in copy:
            pass
    return time.perf_counter() - t


def run(quick: bool, customers: int | None = None) -> dict[str, Any]:
    from tests.services import free_port, make_state_dir  # throwaway cluster helpers

    n = customers or (100_000 if quick else HCMC_CUSTOMERS)
    state = make_state_dir("amr-bench-billing-")
    settings = Settings(state_dir=state, db=DatabaseSettings(port=free_port(), data_dir=state / "pg" / "data"))
    db = DatabaseServer.from_settings(settings, durable=False)
    out = Path(tempfile.mkdtemp(prefix="amr-bench-billing-out-"))
    try:
        db.up()
        t = time.perf_counter()
        rows = fill(db, n)
        t_fill = time.perf_counter() - t
        floor_s = copy_out_floor(db)
        summary = run_period(db.conninfo(Role.BILLING), period=PERIOD, out_dir=out)
        total = summary.seconds["total"]
        figures: dict[str, Any] = {
            "customers": n,
            "readings": rows,
            "fill_s": t_fill,
            "copy_out_floor_s": floor_s,
            "bill_run_s": total,
            "customers_per_s": n / total,
            "ratio_run_to_copy_floor": total / floor_s,
            "extrapolated_hcmc_s": total * HCMC_CUSTOMERS / n,
            "status": summary.status,
            "estimated_share": summary.estimated_share,
            "total_vnd": summary.total_vnd,
            "export_mb": sum(p.stat().st_size for p in summary.files) / 1e6,
        }
        figures |= {f"stage_{k}_s": v for k, v in summary.seconds.items() if k != "total"}
        return figures
    finally:
        if db.cluster is not None:
            db.cluster.stop()
        shutil.rmtree(state, ignore_errors=True)
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 k customers instead of 2.5 M")
    parser.add_argument("--customers", type=int, default=None)
    args = parser.parse_args()
    f = run(args.quick, args.customers)
    table = Table(title=f"bill run: {f['customers']:,} customers, {f['readings']:,} daily register reads")
    table.add_column("figure")
    table.add_column("value", justify="right")
    for key, value in f.items():
        table.add_row(
            key, f"{value:,.2f}" if isinstance(value, float) else f"{value:,}" if isinstance(value, int) else str(value)
        )
    Console().print(table)


if __name__ == "__main__":
    main()
