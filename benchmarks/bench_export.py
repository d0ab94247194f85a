"""A city's billing exports: CSV and Parquet of the whole run, one Excel workbook per power company, each file kind
timed with the writer billing.export uses beside the one it replaced (pandas' to_csv; xlsxwriter).

    .venv/bin/python -m benchmarks.bench_export [--quick] [--customers N] [--workers W]

Synthetic bills shaped like billing.pricing.price_bills' frame (plus run_id), --customers of them (default HCMC's
2.5 M, --quick 100 k) across 16 power companies PE0100..PE1600, and EXCEPTIONS_PER_CUSTOMER exceptions a customer
shaped like billing.vee's. Per file: wall seconds, CPU seconds (this process and its finished children: the machine
is shared, so wall time also counts other people's work) and MB. Same-content checks: both CSVs read back with
pandas give the same frame (on the first CHECK_CSV_ROWS rows); both workbooks of one power company have the same
cells by openpyxl (the first CHECK_XLSX_ROWS rows of each sheet, and the row counts).
"""

from __future__ import annotations

import argparse
import math
import resource
import shutil
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl
import pandas as pd
from rich.console import Console
from rich.table import Table

from billing import export
from billing.pricing import BILL_DB_COLUMNS

HCMC_CUSTOMERS = 2_500_000
QUICK_CUSTOMERS = 100_000
COMPANIES = [f"PE{k:02d}00" for k in range(1, 17)]
EXCEPTIONS_PER_CUSTOMER = 0.5  # rule occurrences a customer in a month (gaps, high/low use): generous
CHECK_CSV_ROWS = 100_000
CHECK_XLSX_ROWS = 5_000
RULES = np.array(["GAP", "HIGH_USE", "LOW_USE", "ZERO_USE", "SPIKE", "CLOCK_SUSPECT"], dtype=object)


def synthetic_bills(n: int, seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = np.arange(1, n + 1, dtype=np.int32)
    business = rng.random(n) < 0.03
    kwh = np.round(rng.lognormal(np.log(165), 0.6, n)).astype(np.int64)
    start = np.full(n, np.datetime64("2026-09-01"), "datetime64[D]")
    end = np.full(n, np.datetime64("2026-10-01"), "datetime64[D]")
    amount = kwh * 2_400 + rng.integers(0, 1_000, n)
    vat = amount * 8 // 100
    no_data = rng.random(n) < 0.002
    frame = pd.DataFrame(
        {
            "meter_id": ids,
            "serial": np.array([f"HCM{i:08d}" for i in ids], dtype=object),
            "customer_code": np.array([f"PE{i:011d}" for i in ids], dtype=object),
            "city": np.full(n, "HCM", dtype=object),
            "power_company": np.array(COMPANIES, dtype=object)[ids % len(COMPANIES)],
            "tariff_class": np.where(business, "business", "household").astype(object),
            "cycle_start": pd.to_datetime(start).date,
            "cycle_end": pd.to_datetime(end).date,
            "days": (end - start).astype(np.int64),
            "households": np.where(rng.random(n) < 0.05, 2, 1),
            "multiplier": np.where(business, 40.0, 1.0),
            "energy_kwh": np.where(no_data, 0, kwh),
            "normal_kwh": np.where(business, kwh // 2, 0),
            "peak_kwh": np.where(business, kwh // 4, 0),
            "offpeak_kwh": np.where(business, kwh - kwh // 2 - kwh // 4, 0),
            "estimated_kwh": np.round(rng.exponential(0.5, n), 3),
            "estimated_share": np.round(rng.random(n) * 0.05, 4),
            "amount_vnd": np.where(no_data, 0, amount),
            "vat_percent": np.where(no_data, 0.0, 8.0),
            "vat_vnd": np.where(no_data, 0, vat),
            "total_vnd": np.where(no_data, 0, amount + vat),
            "tariff_versions": np.where(business, "business:2025-05-10", "household:2025-05-10").astype(object),
            "provisional_prices": np.zeros(n, bool),
            "quality_flags": np.where(rng.random(n) < 0.05, "ESTIMATED,ROLLOVER", "").astype(object),
            "status": np.where(no_data, "no_data", "billed").astype(object),
        }
    )
    assert set(BILL_DB_COLUMNS) <= set(frame.columns)
    frame.insert(0, "run_id", 7)
    return frame


def synthetic_exceptions(n_customers: int, seed: int = 4) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    m = int(n_customers * EXCEPTIONS_PER_CUSTOMER)
    meter = np.sort(rng.integers(1, n_customers + 1, m)).astype(np.int32)
    start_s = 1_788_195_600 + rng.integers(0, 30 * 48, m) * 1_800  # half-hours of 2026-09 (local midnight on)
    rule = RULES[rng.integers(0, RULES.size, m)]
    return pd.DataFrame(
        {
            "meter_id": meter,
            "channel_id": np.ones(m, np.int16),
            "interval_start": pd.DatetimeIndex(start_s * 1_000_000_000, dtype="datetime64[ns, UTC]"),
            "interval_end": pd.DatetimeIndex((start_s + 1_800) * 1_000_000_000, dtype="datetime64[ns, UTC]"),
            "rule": pd.Series(rule, dtype=object),
            "severity": pd.Series(np.where(rule == "GAP", "review", "info"), dtype=object),
            "value": np.where(rule == "GAP", np.nan, np.round(rng.lognormal(0, 1, m), 3)),
            "run_id": 7,
        }
    )


def _timed(fn: Callable[[], object]) -> tuple[float, float]:
    """(wall s, CPU s of this process and of children finished meanwhile)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    children = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    return time.perf_counter() - wall, time.process_time() - cpu + children


def _mb(*paths: Path) -> float:
    return sum(p.stat().st_size for p in paths) / 1e6


def _csv_same(a: Path, b: Path) -> bool:
    times = ["interval_start", "interval_end"]
    fa, fb = (pd.read_csv(p, encoding="utf-8-sig") for p in (a, b))
    for f in (fa, fb):
        for c in times:
            if c in f:
                f[c] = pd.to_datetime(f[c], utc=True)
    try:
        pd.testing.assert_frame_equal(fa, fb, check_dtype=False)
    except AssertionError:
        return False
    return True


def _same_cell(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return math.isclose(a, b, rel_tol=1e-15)  # xlsxwriter: 16 significant digits; rustpy: 17
    return bool(a == b) and type(a) is type(b)


def _xlsx_same(a: Path, b: Path) -> bool:
    books = [openpyxl.load_workbook(p, read_only=True) for p in (a, b)]
    try:
        if books[0].sheetnames != books[1].sheetnames:
            return False
        for name in books[0].sheetnames:
            sa, sb = books[0][name], books[1][name]
            if (sa.max_row, sa.max_column) != (sb.max_row, sb.max_column):
                return False
            rows = zip(
                sa.iter_rows(max_row=CHECK_XLSX_ROWS, values_only=True),
                sb.iter_rows(max_row=CHECK_XLSX_ROWS, values_only=True),
                strict=True,
            )
            if not all(_same_cell(x, y) for ra, rb in rows for x, y in zip(ra, rb, strict=True)):
                return False
        return True
    finally:
        for book in books:
            book.close()


def run(quick: bool, customers: int | None = None, workers: int = export.EXCEL_WORKERS) -> dict[str, Any]:
    n = customers or (QUICK_CUSTOMERS if quick else HCMC_CUSTOMERS)
    out = Path(tempfile.mkdtemp(prefix="amr-bench-export-"))
    rows: list[dict[str, Any]] = []

    def add(file: str, writer: str, timing: tuple[float, float], *paths: Path) -> None:
        rows.append({"file": file, "writer": writer, "wall_s": timing[0], "cpu_s": timing[1], "mb": _mb(*paths)})

    try:
        t = time.perf_counter()
        frames = {"bills": synthetic_bills(n), "exceptions": synthetic_exceptions(n)}
        gen_s = time.perf_counter() - t
        run_dir, pandas_dir, check_dir = out / "run", out / "pandas", out / "check"
        for d in (run_dir, pandas_dir, check_dir):
            d.mkdir()
        tables: dict[str, Any] = {}
        for name, frame in frames.items():
            p_csv = pandas_dir / f"{name}.csv"
            add(
                f"{name}.csv",
                "pandas.to_csv",
                _timed(partial(frame.to_csv, p_csv, index=False, encoding="utf-8-sig")),
                p_csv,
            )
            a_csv = run_dir / f"{name}.csv"

            def arrow_csv(f: pd.DataFrame = frame, p: Path = a_csv) -> None:
                tables[p.stem] = export._arrow(f)
                export.write_csv(tables[p.stem], p)

            add(f"{name}.csv", "pyarrow.csv", _timed(arrow_csv), a_csv)
            parquet = run_dir / f"{name}.parquet"
            meta = {export.SUMMARY_METADATA_KEY: b'{"run": "7", "period": "2026-10"}'} if name == "bills" else None
            add(
                f"{name}.parquet",
                f"pyarrow {export.PARQUET_COMPRESSION}",
                _timed(partial(export.write_parquet, tables[name], parquet, metadata=meta)),
                parquet,
            )
        csv_same = True
        for name, frame in frames.items():
            sample = frame.head(CHECK_CSV_ROWS)
            a, b = check_dir / f"{name}_pandas.csv", check_dir / f"{name}_pyarrow.csv"
            sample.to_csv(a, index=False, encoding="utf-8-sig")
            export.write_csv(export._arrow(sample), b)
            csv_same = csv_same and _csv_same(a, b)

        company = COMPANIES[0]
        one: dict[str, Path] = {}
        writers: tuple[export.XlsxWriterName, ...] = ("xlsxwriter", "rustpy")
        for writer in writers:

            def workbook(w: export.XlsxWriterName = writer) -> None:
                one[w] = export.write_company_workbook(run_dir, company, out_dir=out / w, writer=w)

            add(f"bills_{company}.xlsx", writer, _timed(workbook), one[writer])
        company_bills = int((frames["bills"]["power_company"] == company).sum())
        xlsx_same = _xlsx_same(one["xlsxwriter"], one["rustpy"])

        books: list[Path] = []
        timing = _timed(lambda: books.extend(export.write_company_workbooks(run_dir, workers=workers)))
        add(f"{len(books)} workbooks, one per company", f"{export.XLSX_WRITER}, {workers} processes", timing, *books)
    finally:
        shutil.rmtree(out, ignore_errors=True)

    def row(file: str, writer: str) -> dict[str, Any]:
        return next(r for r in rows if r["file"] == file and r["writer"] == writer)

    ratios = {}
    for name in frames:
        slow, fast = row(f"{name}.csv", "pandas.to_csv"), row(f"{name}.csv", "pyarrow.csv")
        ratios[f"{name}.csv pandas / pyarrow"] = (slow["wall_s"] / fast["wall_s"], slow["cpu_s"] / fast["cpu_s"])
    slow, fast = row(f"bills_{company}.xlsx", "xlsxwriter"), row(f"bills_{company}.xlsx", "rustpy")
    ratios["workbook xlsxwriter / rustpy"] = (slow["wall_s"] / fast["wall_s"], slow["cpu_s"] / fast["cpu_s"])
    kept = [r for r in rows if r["file"].endswith((".csv", ".parquet")) and r["writer"] != "pandas.to_csv"]
    export_s = sum(r["wall_s"] for r in [*kept, rows[-1]])  # the whole run's files, then every company's workbook
    return {
        "customers": n,
        "exceptions": len(frames["exceptions"]),
        "companies": len(COMPANIES),
        "company_bills": company_bills,
        "generate_s": gen_s,
        "files": rows,
        "ratios_wall_cpu": ratios,
        "csv_same_content": csv_same,
        "xlsx_same_cells": xlsx_same,
        "export_wall_s": export_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CUSTOMERS:,} customers instead of 2.5 M")
    parser.add_argument("--customers", type=int, default=None)
    parser.add_argument("--workers", type=int, default=export.EXCEL_WORKERS, help="processes for the workbooks")
    args = parser.parse_args()
    f = run(args.quick, args.customers, args.workers)
    console = Console()
    table = Table(
        title=f"exports: {f['customers']:,} bills, {f['exceptions']:,} exceptions, {f['companies']} power companies "
        f"({f['company_bills']:,} bills in {COMPANIES[0]}'s workbook)"
    )
    for col, justify in (
        ("file", "left"),
        ("writer", "left"),
        ("wall s", "right"),
        ("CPU s", "right"),
        ("MB", "right"),
    ):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for r in f["files"]:
        table.add_row(r["file"], r["writer"], f"{r['wall_s']:,.2f}", f"{r['cpu_s']:,.2f}", f"{r['mb']:,.1f}")
    console.print(table)
    ratios = Table(title="ratios (slower writer / faster writer)")
    for col in ("comparison", "wall", "CPU"):
        ratios.add_column(col, justify="left" if col == "comparison" else "right")
    for key, (wall, cpu) in f["ratios_wall_cpu"].items():
        ratios.add_row(key, f"{wall:,.1f}x", f"{cpu:,.1f}x")
    console.print(ratios)
    console.print(
        f"same content: CSV pandas vs pyarrow {f['csv_same_content']} (first {CHECK_CSV_ROWS:,} rows read back), "
        f"workbook xlsxwriter vs rustpy {f['xlsx_same_cells']} (row counts, first {CHECK_XLSX_ROWS:,} rows' cells); "
        f"CSV + Parquet + Excel with the kept writers: {f['export_wall_s']:,.1f} s wall; "
        f"synthetic frames: {f['generate_s']:,.1f} s"
    )


if __name__ == "__main__":
    main()
