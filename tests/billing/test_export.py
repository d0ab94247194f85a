"""The run's export files hold the frames' content: CSV and Parquet round-trip, one Excel workbook per power company
with that company's bills and exceptions, a sheet cut at Excel's row limit says so, an on-demand workbook is the one
the run writes, and both Excel writers put the same cells down."""

from __future__ import annotations

import math
from datetime import date, datetime
from pathlib import Path
from typing import Any

import numpy as np
import openpyxl
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv
import pytest

from billing import export
from billing.export import write_company_workbook, write_exports

COMPANIES = ["PE0100", "PE0200", "PE0300"]
SUMMARY = {"run": 7, "period": "2026-10", "status": "released", "total [VND]": 123}


def _bills(n: int = 30) -> pd.DataFrame:
    """Bills shaped like billing.pricing.price_bills' frame (numpy object arrays, dates as datetime.date) with a
    run_id, as billing.run passes them."""
    ids = np.arange(1, n + 1, dtype=np.int32)
    kwh = (ids.astype(np.int64) * 37) % 400
    amount = kwh * 2_500
    flags = np.array(["", "ESTIMATED,ROLLOVER", 'GIÁ TẠM TÍNH "2026"'], dtype=object)[ids % 3]
    estimated = np.round(ids * 0.125, 3)
    estimated[3] = np.nan
    customer = np.array([f"PE{i:011d}" for i in ids], dtype=object)
    customer[4] = None  # meters.customer_code may be NULL
    frame = pd.DataFrame(
        {
            "meter_id": ids,
            "serial": np.array([f"HCM{i:08d}" for i in ids], dtype=object),
            "customer_code": customer,
            "city": np.full(n, "HCM", dtype=object),
            "power_company": np.array(COMPANIES, dtype=object)[ids % len(COMPANIES)],
            "tariff_class": np.where(ids % 5 == 0, "business", "household").astype(object),
            "cycle_start": pd.to_datetime(np.full(n, np.datetime64("2026-09-01"))).date,
            "cycle_end": pd.to_datetime(np.full(n, np.datetime64("2026-10-01"))).date,
            "days": np.full(n, 30, np.int64),
            "households": np.ones(n, np.int64),
            "multiplier": np.where(ids % 5 == 0, 40.0, 1.0),
            "energy_kwh": kwh,
            "estimated_kwh": estimated,
            "amount_vnd": amount,
            "vat_percent": np.full(n, 8.0),
            "vat_vnd": amount * 8 // 100,
            "total_vnd": amount + amount * 8 // 100,
            "provisional_prices": ids % 7 == 0,
            "quality_flags": flags,
            "status": np.where(ids % 11 == 0, "no_data", "billed").astype(object),
        }
    )
    frame.insert(0, "run_id", 7)
    return frame


def _exceptions(meter_ids: np.ndarray, per_meter: int = 2) -> pd.DataFrame:
    """Exceptions shaped like billing.vee's (UTC ns times, object rule and severity) with a run_id."""
    meter = np.repeat(meter_ids, per_meter).astype(np.int32)
    start_s = 1_788_220_800 + np.arange(meter.size, dtype=np.int64) * 1_800
    value = np.round(np.arange(meter.size) * 0.25, 2)
    value[1] = np.nan
    return pd.DataFrame(
        {
            "meter_id": meter,
            "channel_id": np.ones(meter.size, np.int16),
            "interval_start": pd.DatetimeIndex(start_s * 1_000_000_000, dtype="datetime64[ns, UTC]"),
            "interval_end": pd.DatetimeIndex((start_s + 1_800) * 1_000_000_000, dtype="datetime64[ns, UTC]"),
            "rule": pd.Series(np.where(meter % 2 == 0, "GAP", "HIGH_USE"), dtype=object),
            "severity": pd.Series(np.full(meter.size, "review"), dtype=object),
            "value": value,
            "run_id": 7,
        }
    )


def _sheets(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    book = openpyxl.load_workbook(path, read_only=True)
    try:
        return {ws.title: list(ws.values) for ws in book.worksheets}
    finally:
        book.close()


def _table(rows: list[tuple[Any, ...]]) -> pd.DataFrame:
    return pd.DataFrame(rows[1:], columns=list(rows[0]))


def _values(s: pd.Series) -> list[Any]:
    """A column as Python values, None for missing (pandas' str dtype has NaN)."""
    return [None if pd.isna(v) else v for v in s]


def _local(ts: pd.Series) -> list[datetime]:
    return list(ts.dt.tz_convert("Asia/Ho_Chi_Minh").dt.tz_localize(None).dt.to_pydatetime())


def _same_cell(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        # xlsxwriter writes doubles with 16 significant digits, rustpy-xlsxwriter with all 17
        return math.isclose(a, b, rel_tol=1e-15)
    return a == b and type(a) is type(b)


def test_csv_and_parquet_round_trip_to_the_frames(tmp_path: Path) -> None:
    bills = _bills()
    exceptions = _exceptions(bills["meter_id"].to_numpy())
    files = write_exports(tmp_path, bills=bills, exceptions=exceptions, summary=SUMMARY, excel="none")
    assert [p.name for p in files] == ["bills.csv", "bills.parquet", "exceptions.csv", "exceptions.parquet"]

    for name, frame in (("bills", bills), ("exceptions", exceptions)):
        pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / f"{name}.parquet"), frame, check_dtype=False)
        raw = (tmp_path / f"{name}.csv").read_bytes()
        assert raw.startswith(export.UTF8_BOM)
        # Read back with the frame's Arrow types: every cell, an empty text apart from a missing value.
        schema = pa.Table.from_pandas(frame, preserve_index=False).schema
        back = pa_csv.read_csv(
            tmp_path / f"{name}.csv",
            convert_options=pa_csv.ConvertOptions(
                column_types=schema, strings_can_be_null=True, quoted_strings_can_be_null=False
            ),
        )
        assert back.column_names == list(frame.columns)
        pd.testing.assert_frame_equal(back.to_pandas(), frame, check_dtype=False)
    # As pandas (and so Excel) reads the CSV: the same numbers, text and times.
    csv = pd.read_csv(tmp_path / "bills.csv", encoding="utf-8-sig")
    assert csv["total_vnd"].tolist() == bills["total_vnd"].tolist()
    assert csv["quality_flags"].fillna("").tolist() == bills["quality_flags"].tolist()
    assert csv["provisional_prices"].tolist() == bills["provisional_prices"].tolist()
    exc_csv = pd.read_csv(tmp_path / "exceptions.csv", encoding="utf-8-sig")
    assert pd.to_datetime(exc_csv["interval_start"]).tolist() == exceptions["interval_start"].tolist()


def test_one_workbook_per_power_company_with_its_bills_and_exceptions(tmp_path: Path) -> None:
    bills = _bills()
    exceptions = _exceptions(np.array([1, 2, 3, 4, 999]))  # meter 999 has no bill in this run
    files = write_exports(tmp_path, bills=bills, exceptions=exceptions, summary=SUMMARY, excel="per_company", workers=1)
    books = [p for p in files if p.suffix == ".xlsx"]
    assert [p.name for p in books] == [f"bills_{c}.xlsx" for c in COMPANIES]
    for code, path in zip(COMPANIES, books, strict=True):
        sheets = _sheets(path)
        assert list(sheets) == ["summary", "bills", "exceptions"]
        own = bills[bills["power_company"] == code]
        xl = _table(sheets["bills"])
        assert list(xl.columns) == list(bills.columns)
        assert xl["meter_id"].tolist() == own["meter_id"].tolist()
        assert set(xl["power_company"]) == {code}
        assert xl["total_vnd"].tolist() == own["total_vnd"].tolist()
        assert xl["cycle_start"].tolist() == [datetime(2026, 9, 1)] * len(own)
        assert _values(xl["quality_flags"]) == [f or None for f in own["quality_flags"]]  # "" is a blank cell
        assert _values(xl["customer_code"]) == _values(own["customer_code"])
        exc = _table(sheets["exceptions"])
        mine = exceptions[exceptions["meter_id"].isin(own["meter_id"])]
        assert len(mine) > 0
        assert list(exc.columns)[2:4] == ["interval_start_local", "interval_end_local"]
        assert exc["meter_id"].tolist() == mine["meter_id"].tolist()
        assert exc["interval_start_local"].tolist() == _local(mine["interval_start"])
        summary = dict(sheets["summary"][1:])
        assert summary["run"] == "7" and summary["period"] == "2026-10"
        assert summary["power company"] == code
        assert summary["bills in this workbook"] == str(len(own))
        assert summary["total [VND], this power company"] == str(int(own["total_vnd"].sum()))
        assert summary["exceptions in this workbook"] == str(len(mine))


def test_auto_keeps_one_workbook_for_a_small_run_and_splits_a_large_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bills = _bills()
    exceptions = _exceptions(bills["meter_id"].to_numpy())
    files = write_exports(tmp_path / "small", bills=bills, exceptions=exceptions, summary=SUMMARY, workers=1)
    assert [p.name for p in files if p.suffix == ".xlsx"] == ["bills.xlsx"]
    sheets = _sheets(tmp_path / "small" / "bills.xlsx")
    assert _table(sheets["bills"])["meter_id"].tolist() == bills["meter_id"].tolist()
    assert len(sheets["exceptions"]) == len(exceptions) + 1

    monkeypatch.setattr(export, "XLSX_BILLS_MAX_ROWS", len(bills) - 1)
    files = write_exports(tmp_path / "large", bills=bills, exceptions=exceptions, summary=SUMMARY, workers=1)
    assert [p.name for p in files if p.suffix == ".xlsx"] == [f"bills_{c}.xlsx" for c in COMPANIES]


@pytest.mark.parametrize("writer", ["rustpy", "xlsxwriter"])
def test_a_sheet_over_the_row_limit_is_cut_with_a_note(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: export.XlsxWriterName
) -> None:
    bills = _bills()
    exceptions = _exceptions(np.array([3, 6]), per_meter=10)  # 20 rows, all PE0100's
    monkeypatch.setattr(export, "EXCEL_ROW_LIMIT", 12)
    write_exports(
        tmp_path, bills=bills, exceptions=exceptions, summary=SUMMARY, excel="per_company", workers=1, writer=writer
    )
    sheets = _sheets(tmp_path / "bills_PE0100.xlsx")
    rows = sheets["exceptions"]
    assert len(rows) == 12
    note = rows[0][0]
    assert isinstance(note, str)
    assert note.startswith("20 rows: more than an Excel sheet holds; the first 10 are below.")
    assert "exceptions.csv and exceptions.parquet" in note
    assert rows[1][:2] == ("meter_id", "channel_id")
    assert [r[0] for r in rows[2:]] == exceptions["meter_id"].head(10).tolist()
    # under the limit: no note (10 bills and the header)
    assert sheets["bills"][0][:2] == ("run_id", "meter_id")
    assert len(sheets["bills"]) == 11
    # the whole table is still in the run's files
    assert len(pd.read_parquet(tmp_path / "exceptions.parquet")) == 20


def test_a_workbook_on_demand_is_the_one_the_run_wrote_in_parallel(tmp_path: Path) -> None:
    bills = _bills()
    exceptions = _exceptions(bills["meter_id"].to_numpy())
    run_dir = tmp_path / "2026-10_run7"
    files = write_exports(run_dir, bills=bills, exceptions=exceptions, summary=SUMMARY, excel="per_company", workers=2)
    assert len([p for p in files if p.suffix == ".xlsx"]) == len(COMPANIES)
    later = write_company_workbook(run_dir, "PE0200", out_dir=tmp_path / "later")
    assert later == tmp_path / "later" / "bills_PE0200.xlsx"
    assert _sheets(later) == _sheets(run_dir / "bills_PE0200.xlsx")
    # a run that skipped Excel writes the same workbook later
    skipped = tmp_path / "skipped"
    write_exports(skipped, bills=bills, exceptions=exceptions, summary=SUMMARY, excel="none")
    assert not list(skipped.glob("*.xlsx"))
    assert _sheets(write_company_workbook(skipped, "PE0200")) == _sheets(later)

    with pytest.raises(ValueError, match="no bills of power company 'PE0900'"):
        write_company_workbook(run_dir, "PE0900")
    with pytest.raises(ValueError, match="expected letters"):
        write_company_workbook(run_dir, "../PE0100")


def test_both_excel_writers_write_the_same_cells(tmp_path: Path) -> None:
    bills = _bills()
    exceptions = _exceptions(bills["meter_id"].to_numpy())
    exceptions["value"] = exceptions["value"] / 3  # doubles that need 17 significant digits
    paths = {}
    for writer in ("rustpy", "xlsxwriter"):
        path = tmp_path / f"{writer}.xlsx"
        export.write_workbook(path, bills=bills, exceptions=exceptions, summary=SUMMARY, writer=writer)
        paths[writer] = path
    a, b = _sheets(paths["rustpy"]), _sheets(paths["xlsxwriter"])
    assert list(a) == list(b) == ["summary", "bills", "exceptions"]
    for name in a:
        assert len(a[name]) == len(b[name])
        for row_a, row_b in zip(a[name], b[name], strict=True):
            assert all(_same_cell(x, y) for x, y in zip(row_a, row_b, strict=True)), (name, row_a, row_b)
    assert _table(a["bills"])["cycle_end"].tolist() == [datetime(2026, 10, 1)] * len(bills)
    assert date(2026, 10, 1) == bills["cycle_end"].iloc[0]


def test_a_column_of_mixed_text_and_numbers_is_written_as_text(tmp_path: Path) -> None:
    bills = _bills(6)
    bills["note"] = pd.Series(["a", 1, None, 2.5, np.nan, "b"], dtype=object)
    write_exports(tmp_path, bills=bills, exceptions=_exceptions(np.array([1])), summary=SUMMARY, excel="run")
    text = ["a", "1", None, "2.5", None, "b"]
    assert _values(pd.read_parquet(tmp_path / "bills.parquet")["note"]) == text
    assert [row[-1] for row in _sheets(tmp_path / "bills.xlsx")["bills"][1:]] == text
