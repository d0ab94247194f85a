"""Exports billing staff open: CSV (UTF-8 with BOM so Excel shows Vietnamese text), Parquet, and Excel workbooks
(summary, bills, exceptions sheets; times in local time).

The whole run goes to bills.csv / bills.parquet and exceptions.csv / exceptions.parquet, written with pyarrow (one
Arrow table per frame, shared by both files). benchmarks/bench_export.py, 2.5 M synthetic bills (HCMC) and 1.25 M
exceptions, two runs: bills.csv 2.2-2.7 CPU s with pyarrow.csv against 19.1-19.4 with pandas' to_csv (7-9x),
exceptions.csv 2.9-4.0 against 10.4-11.2 (3-3.6x), the same cells read back (write_csv says how the text
differs); bills.parquet 1.4-1.6 s, 49 MB.

Excel (`excel=`): a city (HCMC 2.5 M customers) does not fit one sheet (1,048,576 rows), so a run with more than
XLSX_BILLS_MAX_ROWS bills gets one workbook per power company, bills_<code>.xlsx (each company is well under the
limit): that company's bills, its meters' exceptions and a summary sheet. They are written from the run's Parquet
files in EXCEL_WORKERS spawned processes; write_company_workbook writes one on demand later (excel="none" skips
Excel in the run). A smaller run (one power company, a test fleet) keeps a single bills.xlsx. A sheet with more rows
than Excel takes is cut at the limit and its first row says so and where the full table is.

Workbooks are written with rustpy-xlsxwriter (Rust's rust_xlsxwriter, reading the Arrow tables directly): one power
company's workbook (156 k bills, 78 k exceptions, read from the Parquet files) took 4.7-4.9 CPU s against
xlsxwriter's 25.2-32.3 (5-7x) for the same cells (numbers, text, dates, booleans, blanks; xlsxwriter rounds doubles
to 16 significant digits, rustpy keeps all 17; openpyxl reads rustpy's whole numbers back as floats, 7.0 for 7:
Excel stores both as the same double). All 16 of HCMC's took 60-66 CPU s. writer="xlsxwriter" writes the same
workbook with xlsxwriter (the benchmark's baseline, and a fallback).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
import rustpy_xlsxwriter
import xlsxwriter

from amr.timebase import LOCAL_TZ_NAME

ExcelMode = Literal["auto", "run", "per_company", "none"]
XlsxWriterName = Literal["rustpy", "xlsxwriter"]

XLSX_WRITER: XlsxWriterName = "rustpy"
XLSX_BILLS_MAX_ROWS = 200_000  # excel="auto": up to this many bills one bills.xlsx, above it one per power company
EXCEL_ROW_LIMIT = 1_048_576  # rows in an Excel sheet, the header (and a capped sheet's note) included
# One workbook at a time per process, each mostly one CPU-bound thread (Arrow -> XML -> deflate), the workbooks
# independent. 2: the billing host has 2 cores, and the export runs after the run's database work is over. A worker
# holds its power companies' bills (half of HCMC's for 2 workers: 0.32 GB in Arrow). More on a machine with cores to
# spare. Measured: 100 k bills' 16 workbooks, a quiet moment, 4.3 CPU s in 2.4 s (1.8 cores busy); HCMC's 16 not
# cleanly (the shared machine at load 11-22: 2 workers 173 s, 1 worker 134 s, ~50 CPU s either way).
EXCEL_WORKERS = 2
# HCMC's 2.5 M bills: zstd 49 MB in 1.6 CPU s, snappy 83 MB in 1.4 s (pandas, pyarrow, DuckDB, Polars read both)
PARQUET_COMPRESSION = "zstd"
# 512 Ki rows: ~135 MB of bills in Arrow a group, HCMC's in 5: smaller pieces for a filtered read (a company's
# workbook later) and for readers that split a file by group; pyarrow's default, 1 Mi rows, wrote 5 % smaller and
# 15 % faster.
PARQUET_ROW_GROUP_ROWS = 512 * 1024
XLSX_COLUMN_WIDTH = 14
XLSX_DATETIME_FORMAT = "yyyy-mm-dd hh:mm"
UTF8_BOM = b"\xef\xbb\xbf"
SUMMARY_METADATA_KEY = b"amr_summary"  # bills.parquet's schema metadata: the run summary, for later workbooks
_COMPANY_CODE = re.compile(r"[A-Za-z0-9_-]{1,32}")


def write_exports(
    out_dir: Path,
    *,
    bills: pd.DataFrame,
    exceptions: pd.DataFrame,
    summary: dict[str, Any],
    excel: ExcelMode = "auto",
    workers: int = EXCEL_WORKERS,
    writer: XlsxWriterName = XLSX_WRITER,
) -> list[Path]:
    """Write the run's exports into `out_dir` and return the files written: bills and exceptions as CSV and
    Parquet, then Excel per `excel`: 'run' one bills.xlsx, 'per_company' one bills_<power company>.xlsx each
    (in `workers` processes), 'none' no workbook, 'auto' (default) 'run' up to XLSX_BILLS_MAX_ROWS bills and
    'per_company' above."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    tables = {"bills": _arrow(bills), "exceptions": _arrow(exceptions)}
    meta = {SUMMARY_METADATA_KEY: json.dumps({k: str(v) for k, v in summary.items()}, ensure_ascii=False).encode()}
    for name, table in tables.items():
        csv_path, parquet_path = out_dir / f"{name}.csv", out_dir / f"{name}.parquet"
        write_csv(table, csv_path)
        write_parquet(table, parquet_path, metadata=meta if name == "bills" else None)
        written += [csv_path, parquet_path]
    if excel == "auto":
        excel = "run" if len(bills) <= XLSX_BILLS_MAX_ROWS else "per_company"
    if excel == "run":
        path = out_dir / "bills.xlsx"
        _write_workbook(
            path,
            _run_sheets(tables["bills"], tables["exceptions"], summary, row_limit=EXCEL_ROW_LIMIT),
            writer=writer,
        )
        written.append(path)
    elif excel == "per_company":
        written += write_company_workbooks(out_dir, workers=workers, writer=writer)
    elif excel != "none":
        raise ValueError(f"excel={excel!r}: expected 'auto', 'run', 'per_company' or 'none'")
    return written


def write_workbook(
    path: Path,
    *,
    bills: pd.DataFrame,
    exceptions: pd.DataFrame,
    summary: dict[str, Any],
    writer: XlsxWriterName = XLSX_WRITER,
) -> None:
    """One workbook of the given frames (summary, bills, exceptions sheets), each sheet cut at Excel's limit."""
    sheets = _run_sheets(_arrow(bills), _arrow(exceptions), summary, row_limit=EXCEL_ROW_LIMIT)
    _write_workbook(path, sheets, writer=writer)


def write_company_workbook(
    run_dir: Path, power_company: str, *, out_dir: Path | None = None, writer: XlsxWriterName = XLSX_WRITER
) -> Path:
    """bills_<power_company>.xlsx in `out_dir` (default: `run_dir`) from the run's bills.parquet and
    exceptions.parquet in `run_dir`, on demand (`amr bill export --run N --power-company PE0100`); the same
    workbook a run's per-company export writes. ValueError if the run has no bill of that power company."""
    return write_company_workbooks(run_dir, [power_company], out_dir=out_dir, workers=1, writer=writer)[0]


def write_company_workbooks(
    run_dir: Path,
    companies: Sequence[str] | None = None,
    *,
    out_dir: Path | None = None,
    workers: int = EXCEL_WORKERS,
    writer: XlsxWriterName = XLSX_WRITER,
) -> list[Path]:
    """One workbook per power company (default: every one in the run) from the run's Parquet files in `run_dir`,
    in up to `workers` spawned processes (1: in this process); the paths in the companies' order."""
    out_dir = out_dir or run_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    counts = _company_counts(run_dir / "bills.parquet")
    if companies is None:
        companies = sorted(counts)
    for code in companies:
        if not _COMPANY_CODE.fullmatch(code):
            raise ValueError(f"power company {code!r}: expected letters, digits, '-' or '_'")
        if code not in counts:
            raise ValueError(f"no bills of power company {code!r} in {run_dir / 'bills.parquet'}")
    groups = _balanced_groups(companies, counts, max(1, min(workers, len(companies))))
    paths: dict[str, Path] = {}
    if len(groups) <= 1:
        for group in groups:
            paths.update(_write_company_group(run_dir, group, out_dir, writer, EXCEL_ROW_LIMIT))
    else:
        # spawn, not fork: the caller may hold database connections, threads (Dask, numba) and large frames
        with ProcessPoolExecutor(max_workers=len(groups), mp_context=get_context("spawn")) as pool:
            futures = [
                pool.submit(_write_company_group, run_dir, group, out_dir, writer, EXCEL_ROW_LIMIT) for group in groups
            ]
            for future in futures:
                paths.update(future.result())
    return [paths[code] for code in companies]


# -- CSV and Parquet ----------------------------------------------------------------------------------------------
def _arrow(frame: pd.DataFrame) -> pa.Table:
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        pass
    # An object column Arrow cannot type (text and numbers mixed) is written as its text, None and NaN missing.
    frame = frame.copy()
    for name in frame.columns:
        if frame[name].dtype == object:
            try:
                pa.array(frame[name], from_pandas=True)
            except (pa.ArrowTypeError, pa.ArrowInvalid):
                frame[name] = pd.Series([None if pd.isna(v) else str(v) for v in frame[name]], dtype=object)
    return pa.Table.from_pandas(frame, preserve_index=False)


def write_csv(table: pa.Table, path: Path) -> None:
    """CSV with pyarrow, after a UTF-8 BOM. The cells are the ones pandas' to_csv writes, spelled differently:
    text always quoted (an empty text "" apart from a missing value), true/false, 8 not 8.0, and times whole
    seconds in UTC as 2026-09-01 00:00:00Z (the ns kept if they are not whole seconds)."""
    with pa.OSFile(str(path), "wb") as sink:
        sink.write(UTF8_BOM)
        pa_csv.write_csv(_csv_times(table), sink)


def _csv_times(table: pa.Table) -> pa.Table:
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type) and field.type.unit != "s":
            try:
                seconds = pc.cast(table.column(i), pa.timestamp("s", tz=field.type.tz), safe=True)
            except pa.ArrowInvalid:  # fractions of a second: keep them
                continue
            table = table.set_column(i, field.name, seconds)
    return table


def write_parquet(table: pa.Table, path: Path, *, metadata: dict[bytes, bytes] | None = None) -> None:
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    pq.write_table(table, path, compression=PARQUET_COMPRESSION, row_group_size=PARQUET_ROW_GROUP_ROWS)


# -- Excel --------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Sheet:
    name: str
    table: pa.Table  # Excel-ready: local naive times
    note: str | None = None  # a cut sheet: its first row, above the header


def _company_counts(bills_parquet: Path) -> dict[str, int]:
    counts = pq.read_table(bills_parquet, columns=["power_company"]).column(0).value_counts()
    return {str(c["values"]): int(c["counts"]) for c in counts.to_pylist() if c["values"] is not None}


def _balanced_groups(companies: Sequence[str], counts: dict[str, int], n: int) -> list[list[str]]:
    """`companies` in `n` groups of about equal bills (largest first to the lightest group)."""
    groups: list[list[str]] = [[] for _ in range(n)]
    load = [0] * n
    for code in sorted(companies, key=lambda c: -counts[c]):
        k = load.index(min(load))
        groups[k].append(code)
        load[k] += counts[code]
    return [g for g in groups if g]


def _write_company_group(
    run_dir: Path, companies: list[str], out_dir: Path, writer: XlsxWriterName, row_limit: int
) -> dict[str, Path]:
    """A worker's share: reads the run's Parquet files once for its companies, writes their workbooks."""
    bills_path, exc_path = run_dir / "bills.parquet", run_dir / "exceptions.parquet"
    meta = pq.read_schema(bills_path).metadata or {}
    summary: dict[str, Any] = json.loads(meta[SUMMARY_METADATA_KEY]) if SUMMARY_METADATA_KEY in meta else {}
    bills = pq.read_table(bills_path, filters=pc.field("power_company").isin(companies))
    exceptions = _meters_exceptions(exc_path, bills["meter_id"])
    out: dict[str, Path] = {}
    for code in companies:
        company_bills = bills.filter(pc.equal(bills["power_company"], code))
        company_exc = _of_meters(exceptions, company_bills["meter_id"])
        items = {**summary, **_company_items(code, company_bills, company_exc)}
        path = out_dir / f"bills_{code}.xlsx"
        _write_workbook(path, _run_sheets(company_bills, company_exc, items, row_limit=row_limit), writer=writer)
        out[code] = path
    return out


def _meters_exceptions(path: Path, meter_ids: pa.ChunkedArray) -> pa.Table:
    """The rows of exceptions.parquet at `path` of these meters (all of it if it has no meter_id: an empty run's)."""
    if not path.exists():
        return pa.table({})
    schema = pq.read_schema(path)
    if "meter_id" not in schema.names:
        return pq.read_table(path)
    ids = meter_ids.combine_chunks().cast(schema.field("meter_id").type)
    return pq.read_table(path, filters=pc.field("meter_id").isin(ids))


def _of_meters(exceptions: pa.Table, meter_ids: pa.ChunkedArray) -> pa.Table:
    if "meter_id" not in exceptions.column_names:
        return exceptions
    ids = meter_ids.combine_chunks().cast(exceptions.schema.field("meter_id").type)
    return exceptions.filter(pc.is_in(exceptions["meter_id"], value_set=ids))


def _company_items(code: str, bills: pa.Table, exceptions: pa.Table) -> dict[str, Any]:
    items: dict[str, Any] = {"power company": code, "bills in this workbook": bills.num_rows}
    for col, label in (
        ("energy_kwh", "energy [kWh]"),
        ("amount_vnd", "amount before VAT [VND]"),
        ("vat_vnd", "VAT [VND]"),
        ("total_vnd", "total [VND]"),
    ):
        if col in bills.column_names:
            items[f"{label}, this power company"] = pc.sum(bills[col]).as_py() or 0
    items["exceptions in this workbook"] = exceptions.num_rows
    return items


def _run_sheets(bills: pa.Table, exceptions: pa.Table, summary: dict[str, Any], *, row_limit: int) -> list[_Sheet]:
    summary_table = pa.table(
        {"item": pa.array(list(summary), pa.string()), "value": pa.array([str(v) for v in summary.values()])}
    )
    local = exceptions.rename_columns(
        [
            {"interval_start": "interval_start_local", "interval_end": "interval_end_local"}.get(c, c)
            for c in exceptions.column_names
        ]
    )
    return [
        _sheet("summary", summary_table, row_limit, "the summary"),
        _sheet("bills", bills, row_limit, "bills.csv and bills.parquet"),
        _sheet("exceptions", local, row_limit, "exceptions.csv and exceptions.parquet"),
    ]


def _sheet(name: str, table: pa.Table, row_limit: int, full_files: str) -> _Sheet:
    table = _local_times(table)
    if table.num_rows <= row_limit - 1:
        return _Sheet(name, table)
    shown = row_limit - 2  # the note and the header take two rows
    note = (
        f"{table.num_rows:,} rows: more than an Excel sheet holds; the first {shown:,} are below. "
        f"Every row is in the run's {full_files}."
    )
    return _Sheet(name, table.slice(0, shown), note)


def _local_times(table: pa.Table) -> pa.Table:
    """Time zone-aware columns as local wall-clock times without a zone (what Excel shows), in µs."""
    for i, field in enumerate(table.schema):
        if pa.types.is_timestamp(field.type) and field.type.tz is not None:
            s = pd.Series(table.column(i).to_pandas()).dt.tz_convert(LOCAL_TZ_NAME).dt.tz_localize(None)
            table = table.set_column(i, field.name, pa.array(s, pa.timestamp("us")))
    return table


def _write_workbook(path: Path, sheets: list[_Sheet], *, writer: XlsxWriterName) -> None:
    if writer == "rustpy":
        _write_rustpy(path, sheets)
    elif writer == "xlsxwriter":
        _write_xlsxwriter(path, sheets)
    else:
        raise ValueError(f"writer={writer!r}: expected 'rustpy' or 'xlsxwriter'")


def _write_rustpy(path: Path, sheets: list[_Sheet]) -> None:
    noted = [s for s in sheets if s.note]
    rustpy_xlsxwriter.write_worksheets(
        [(s.name, s.table) for s in sheets],
        str(path),
        freeze_panes={s.name: {"row": 2 if s.note else 1, "col": 0} for s in sheets},
        datetime_format=XLSX_DATETIME_FORMAT,
        bold_headers=True,
        column_width={"general": XLSX_COLUMN_WIDTH},
        autofilter={"general": True},
        header_row={s.name: 1 for s in noted},
        merge_ranges={s.name: [(0, 0, 0, max(s.table.num_columns - 1, 1), s.note)] for s in noted},
    )


def _write_xlsxwriter(path: Path, sheets: list[_Sheet]) -> None:
    """The same workbook cell by cell with xlsxwriter's constant-memory mode (the benchmark's baseline)."""
    book = xlsxwriter.Workbook(
        str(path),
        {
            "constant_memory": True,
            "default_date_format": XLSX_DATETIME_FORMAT,
            "strings_to_numbers": False,
            "strings_to_formulas": False,
            "strings_to_urls": False,
        },
    )
    header = book.add_format({"bold": True})
    for s in sheets:
        sheet = book.add_worksheet(s.name)
        top = 0
        last_col = max(s.table.num_columns - 1, 0)
        if s.note:
            sheet.merge_range(0, 0, 0, max(last_col, 1), s.note, book.add_format())
            top = 1
        if s.table.num_columns == 0:
            continue
        sheet.write_row(top, 0, s.table.column_names, header)
        sheet.freeze_panes(top + 1, 0)
        for r, row in enumerate(zip(*_cells(s.table), strict=True), start=top + 1):
            sheet.write_row(r, 0, row)
        sheet.autofilter(top, 0, top + s.table.num_rows, last_col)
        sheet.set_column(0, last_col, XLSX_COLUMN_WIDTH)
    book.close()


def _cells(table: pa.Table) -> Iterable[list[Any]]:
    """Columns as lists of plain Python values xlsxwriter takes: None for missing and NaN."""
    for column in table.columns:
        values = column.to_pylist()
        if pa.types.is_floating(column.type):
            values = [None if v is None or math.isnan(v) or math.isinf(v) else v for v in values]
        yield values
