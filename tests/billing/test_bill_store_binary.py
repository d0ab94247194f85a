"""The continuous run's bills stored by binary COPY (billing.binary_copy.copy_frame_binary,
billing.bill_ready.BackgroundCopy) on a real TimescaleDB: the same rows as billing.store.copy_frame's CSV COPY, in
every column type the bills table has and with copy_frame's NULL rules; the streams of a BackgroundCopy committed
together, or none of them."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from decimal import Decimal

import numpy as np
import pandas as pd
import psycopg
import pytest
from psycopg import sql

from amr.db.server import DatabaseServer, Role
from billing.bill_ready import BackgroundCopy
from billing.binary_copy import copy_frame_binary
from billing.pricing import BILL_DB_COLUMNS
from billing.store import copy_frame

NOT_NULL = ("tariff_versions", "quality_flags")  # as billing.run stores the bills
COLUMNS = ["run_id", *BILL_DB_COLUMNS, "bill_kind", "hold_reasons", "determinant_versions", "validated_days"]
ODD_TEXT = [
    "Nguyễn Văn Ánh, Quận 1",  # Vietnamese: multi-byte UTF-8
    "",
    None,
    'quote " and, comma',
    "line\nbreak\r\nand\ttab",
    "back\\slash \\N \\.",
    "NULL",
    "  spaces  ",
    "đường Lê Lợi; Phường Bến Nghé",
    "x" * 5000,
]


def _bills(n: int, seed: int = 7) -> pd.DataFrame:
    """A frame as billing.run stores it (price_bills' columns and the continuous run's), odd values included."""
    rng = np.random.default_rng(seed)
    text = [ODD_TEXT[k % len(ODD_TEXT)] for k in range(n)]
    billed = rng.random(n) < 0.7
    return pd.DataFrame(
        {
            "run_id": np.full(n, 7_000_000_000, np.int64),
            "meter_id": np.arange(1, n + 1, dtype=np.int32) * 7,
            "customer_code": pd.Series(text, dtype=object),
            "city": ["Hồ Chí Minh" if k % 2 else "HCM" for k in range(n)],
            "power_company": [f"PE0{k % 7}00" for k in range(n)],
            "tariff_class": np.where(billed, "household", "tou_business").astype(object),
            "cycle_start": pd.to_datetime(np.datetime64("2026-09-01") + rng.integers(0, 28, n)).date,
            "cycle_end": pd.to_datetime(np.datetime64("2026-10-01") + rng.integers(0, 28, n)).date,
            "days": rng.integers(28, 32, n),
            "households": rng.integers(1, 5, n),
            "multiplier": rng.choice([1.0, 40.0, 0.1, 1 / 3, -0.0, 1e-300], n),
            "energy_kwh": rng.integers(0, 2**62, n),
            "normal_kwh": pd.array(np.where(billed, rng.integers(0, 10**6, n), 0), dtype="Int64"),
            "peak_kwh": np.where(billed, rng.integers(0, 10**6, n), 0),
            "offpeak_kwh": np.where(billed, rng.integers(0, 10**6, n), 0),
            "estimated_kwh": np.round(rng.uniform(0, 50, n), 3),
            "amount_vnd": rng.integers(0, 10**9, n),
            "vat_percent": rng.choice([8.0, 10.0, 0.0, 0.125, 5.555, 99.99], n),
            "vat_vnd": rng.integers(0, 10**8, n),
            "total_vnd": rng.integers(-(10**9), 10**10, n),
            "tariff_versions": [("" if k % 3 == 0 else f"household:2025-05-10 Quyết định {k}") for k in range(n)],
            "quality_flags": [("" if k % 4 else "ESTIMATED,NO_TOU_REGISTERS") for k in range(n)],
            "status": np.where(billed, "billed", "held").astype(object),
            "bill_kind": "bill",
            "hold_reasons": pd.Series(
                [None if b else f"{k % 30} of 30 days not validated; Tạm giữ" for k, b in enumerate(billed)],
                dtype=object,
            ),
            "determinant_versions": rng.integers(0, 2**40, n),
            "validated_days": rng.integers(0, 32, n),
        }
    )[COLUMNS]


@pytest.fixture()
def tables(db: DatabaseServer) -> Iterator[tuple[psycopg.Connection, str, str]]:
    """Two empty tables with the bills table's columns, constraints and keys (in the shared database, named for
    this test)."""
    a, b = (f"bills_{tag}_{uuid.uuid4().hex[:10]}" for tag in ("csv", "bin"))
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        for t in (a, b):
            conn.execute(sql.SQL("CREATE TABLE {} (LIKE bills INCLUDING ALL)").format(sql.Identifier(t)))
        try:
            yield conn, a, b
        finally:
            for t in (a, b):
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(t)))


@pytest.fixture()
def loose(db: DatabaseServer) -> Iterator[tuple[psycopg.Connection, str, str]]:
    """Two empty tables of the bills table's column types without its NOT NULL constraints (so NULLs show)."""
    a, b = (f"loose_{tag}_{uuid.uuid4().hex[:10]}" for tag in ("csv", "bin"))
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        for t in (a, b):
            conn.execute(sql.SQL("CREATE TABLE {} AS SELECT * FROM bills WITH NO DATA").format(sql.Identifier(t)))
        try:
            yield conn, a, b
        finally:
            for t in (a, b):
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(t)))


def _rows(conn: psycopg.Connection, table: str) -> list[tuple[object, ...]]:
    """Every row as text (numeric's scale, -0 and the exact float digits show), in meter order."""
    return conn.execute(
        sql.SQL("SELECT t::text FROM {} t ORDER BY meter_id, bill_kind").format(sql.Identifier(table))
    ).fetchall()


def _both(conn: psycopg.Connection, frame: pd.DataFrame, csv: str, binary: str, **kw: object) -> None:
    with conn.transaction():
        assert copy_frame(conn, csv, frame, not_null=NOT_NULL) == len(frame)
    with conn.transaction():
        assert copy_frame_binary(conn, binary, frame, not_null=NOT_NULL, **kw) == len(frame)  # type: ignore[arg-type]


def test_binary_copy_stores_what_the_csv_copy_stores(tables: tuple[psycopg.Connection, str, str]) -> None:
    conn, csv, binary = tables
    types: dict[str, str] = dict(
        conn.execute(
            "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute WHERE attrelid = 'bills'::regclass"
            " AND attnum > 0 AND NOT attisdropped"
        ).fetchall()
    )
    assert set(types) == set(COLUMNS)  # every column of the bills table is written
    assert set(types.values()) == {"bigint", "integer", "smallint", "text", "date", "double precision", "numeric"}
    frame = _bills(997)
    _both(conn, frame, csv, binary, chunk_rows=100)  # chunks that cut the text columns' pools
    got, want = _rows(conn, binary), _rows(conn, csv)
    assert len(got) == 997 and got == want
    # what the tables hold: Vietnamese text, '' kept in the not_null columns, vat_percent numeric(5, 2)
    row = conn.execute(
        sql.SQL(
            "SELECT count(*) FILTER (WHERE customer_code = 'Nguyễn Văn Ánh, Quận 1'),"
            " count(*) FILTER (WHERE customer_code IS NULL), count(*) FILTER (WHERE tariff_versions = ''),"
            " count(*) FILTER (WHERE hold_reasons IS NULL), min(vat_percent)::text, max(vat_percent)::text,"
            " count(*) FILTER (WHERE multiplier = 0 AND multiplier::text = '-0') FROM {}"
        ).format(sql.Identifier(binary))
    ).fetchone()
    assert row is not None
    assert row[0] == 100 and row[1] == 200  # None and '' outside not_null: NULL
    assert row[2] == 333 and row[3] == int((frame["status"] == "billed").sum())
    assert (row[4], row[5]) == ("0.00", "99.99") and row[6] > 0


@pytest.mark.parametrize("kind", ["object", "str", "string[pyarrow]"])
def test_text_of_every_pandas_kind_and_a_slice_of_rows(loose: tuple[psycopg.Connection, str, str], kind: str) -> None:
    """Object, pandas' default str and Arrow-backed strings; a slice of a frame (as BackgroundCopy's streams take)
    starts inside Arrow's buffers."""
    conn, csv, binary = loose
    frame = _bills(60)
    for c in ("customer_code", "city", "hold_reasons", "tariff_versions", "quality_flags"):
        frame[c] = frame[c].astype(pd.api.types.pandas_dtype(kind))
    part = frame.iloc[13:47]
    _both(conn, part, csv, binary, chunk_rows=5)
    assert _rows(conn, binary) == _rows(conn, csv) and len(_rows(conn, csv)) == 34


def test_null_rules_are_copy_frames(loose: tuple[psycopg.Connection, str, str]) -> None:
    """NaN, None, NA, NaT are NULL; empty text is NULL outside not_null and '' inside; a NULL inside not_null is
    what the CSV makes of it (an empty field read with FORCE_NOT_NULL: '')."""
    conn, csv, binary = loose
    frame = _bills(6)
    frame["customer_code"] = pd.Series(["", None, np.nan, "a", pd.NA, "Đ"], dtype=object)
    frame["hold_reasons"] = pd.Series([None, "", "x", np.nan, "y", ""], dtype=object)
    frame["tariff_versions"] = pd.Series(["", "v", None, np.nan, "", "w"], dtype=object)
    frame["quality_flags"] = pd.Series(["", "", "", "", "", ""], dtype=object)
    frame["cycle_start"] = pd.Series(
        [date(2026, 9, 1), None, date(2000, 1, 1), date(1999, 12, 31), None, date(2026, 2, 28)], dtype=object
    )
    frame["cycle_end"] = pd.to_datetime(pd.Series(["2026-10-01", None, "2000-01-02", "1970-01-01", "2099-12-31", None]))
    frame["multiplier"] = [np.nan, 1.0, -0.0, np.inf, -np.inf, 2.5]
    frame["vat_percent"] = [np.nan, 8.0, 10.0, -0.0, 0.005, 1.115]
    frame["normal_kwh"] = pd.array([None, 1, 2, None, 2**62, -5], dtype="Int64")
    frame["validated_days"] = pd.array([None, 1, 2, 3, None, 31], dtype="Int32")
    frame["days"] = pd.array([None, 28, 29, 30, 31, -32768], dtype="Int16")
    _both(conn, frame, csv, binary)
    assert _rows(conn, binary) == _rows(conn, csv)
    nulls = conn.execute(
        sql.SQL(
            "SELECT meter_id, customer_code IS NULL, hold_reasons IS NULL, tariff_versions, cycle_start IS NULL,"
            " vat_percent::text FROM {} ORDER BY meter_id"
        ).format(sql.Identifier(binary))
    ).fetchall()
    assert [r[1] for r in nulls] == [True, True, True, False, True, False]
    assert [r[2] for r in nulls] == [True, True, False, True, False, True]
    assert [r[3] for r in nulls] == ["", "v", "", "", "", "w"]  # as copy_frame: FORCE_NOT_NULL
    assert [r[4] for r in nulls] == [False, True, False, False, True, False]
    assert [r[5] for r in nulls] == [None, "8.00", "10.00", "0.00", "0.01", "1.12"]


def test_text_with_a_nul_character_is_refused_by_both(loose: tuple[psycopg.Connection, str, str]) -> None:
    """PostgreSQL text cannot hold U+0000: neither COPY stores the rows."""
    conn, csv, binary = loose
    frame = _bills(4)
    frame["hold_reasons"] = pd.Series(["a", "b\x00c", None, "d"], dtype=object)
    for copy, table in ((copy_frame, csv), (copy_frame_binary, binary)):
        with pytest.raises(psycopg.errors.DataError), conn.transaction():
            copy(conn, table, frame, not_null=NOT_NULL)
    assert _rows(conn, csv) == _rows(conn, binary) == []


def test_values_the_binary_copy_cannot_write_are_refused(loose: tuple[psycopg.Connection, str, str]) -> None:
    conn, _, binary = loose
    frame = _bills(3)
    frame["days"] = [1, 32768, 2]  # outside smallint
    with pytest.raises(ValueError, match="days: values outside smallint"), conn.transaction():
        copy_frame_binary(conn, binary, frame, not_null=NOT_NULL)
    conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN detail jsonb").format(sql.Identifier(binary)))
    frame = _bills(3).assign(detail="{}")
    with pytest.raises(ValueError, match="detail: no binary COPY of jsonb"), conn.transaction():
        copy_frame_binary(conn, binary, frame, not_null=NOT_NULL)
    conn.execute(sql.SQL("ALTER TABLE {} DROP COLUMN detail, ADD COLUMN made_at timestamptz").format(
        sql.Identifier(binary)))  # fmt: skip
    naive = _bills(3).assign(made_at=pd.Timestamp("2026-11-01 07:00"))
    with pytest.raises(ValueError, match="made_at: a time zone aware datetime column"), conn.transaction():
        copy_frame_binary(conn, binary, naive, not_null=NOT_NULL)
    assert _rows(conn, binary) == []
    assert copy_frame_binary(conn, binary, naive.iloc[:0], not_null=NOT_NULL) == 0


def test_timestamptz_goes_in_as_the_instant_it_names(loose: tuple[psycopg.Connection, str, str]) -> None:
    conn, _, binary = loose
    conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN made_at timestamptz").format(sql.Identifier(binary)))
    instants = pd.Series(pd.to_datetime(["2026-11-01 07:00:00.000001", "1999-12-31 23:59:59.000000", None]).tz_localize(
        "Asia/Ho_Chi_Minh"))  # fmt: skip
    frame = _bills(3).assign(made_at=instants)
    with conn.transaction():
        copy_frame_binary(conn, binary, frame, not_null=NOT_NULL)
        got = conn.execute(sql.SQL("SELECT made_at FROM {} ORDER BY made_at NULLS LAST").format(
            sql.Identifier(binary))).fetchall()  # fmt: skip
        conn.execute(sql.SQL("DELETE FROM {}").format(sql.Identifier(binary)))
    want = sorted(t.to_pydatetime() for t in instants.dropna())
    assert [g for (g,) in got] == [*want, None]


def test_decimal_objects_and_booleans_and_reals(db: DatabaseServer) -> None:
    """numeric from Decimal objects (the float's shortest text, as the CSV's); boolean and real columns."""
    name = f"kinds_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(db.conninfo(Role.OWNER), autocommit=True) as conn:
        for t in (f"{name}_csv", f"{name}_bin"):
            conn.execute(
                sql.SQL("CREATE TABLE {} (meter_id integer, n numeric, p numeric(5, 2), ok boolean, r real)").format(
                    sql.Identifier(t)
                )
            )
        try:
            frame = pd.DataFrame(
                {
                    "meter_id": [1, 2, 3, 4, 5],
                    "n": pd.Series(
                        [Decimal("8"), Decimal("10.50"), None, Decimal("0.1"), Decimal("-3.25")], dtype=object
                    ),
                    "p": pd.Series(
                        [Decimal("8"), Decimal("10.005"), Decimal("0.1"), None, Decimal("99.99")], dtype=object
                    ),
                    "ok": pd.Series([True, False, None, True, False], dtype=object),
                    "r": [0.5, -0.0, np.nan, 1e30, 3.0],
                }
            )
            copy_frame(conn, f"{name}_csv", frame)
            copy_frame_binary(conn, f"{name}_bin", frame)
            rows = [
                conn.execute(sql.SQL("SELECT t::text FROM {} t ORDER BY meter_id").format(sql.Identifier(t))).fetchall()
                for t in (f"{name}_csv", f"{name}_bin")
            ]
            assert rows[1] == rows[0]
            assert [r[0] for r in rows[1]][:2] == ["(1,8,8.00,t,0.5)", "(2,10.50,10.01,f,-0)"]
        finally:
            for t in (f"{name}_csv", f"{name}_bin"):
                conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(t)))


# -- BackgroundCopy ------------------------------------------------------------------------------------------------
def _count(conn: psycopg.Connection, table: str) -> int:
    row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(table))).fetchone()
    assert row is not None
    return int(row[0])


def test_background_copy_commits_every_stream_together(
    db: DatabaseServer, tables: tuple[psycopg.Connection, str, str]
) -> None:
    conn, csv, binary = tables
    frame = _bills(501)
    store = BackgroundCopy(db.conninfo(Role.OWNER), binary, frame, not_null=NOT_NULL, streams=3)
    for thread in store._threads:  # every part is in, none committed: nothing shows before wait()
        thread.join()
    assert len(store._conns) == 3 and _count(conn, binary) == 0
    seconds = store.wait()
    assert seconds > 0
    copy_frame(conn, csv, frame, not_null=NOT_NULL)
    assert _count(conn, binary) == 501 and _rows(conn, binary) == _rows(conn, csv)
    assert all(c.closed for c in store._conns)


@pytest.mark.parametrize("bad_row", [0, 250, 500])  # in the first, the second or the last stream
def test_a_failing_stream_stores_no_part_and_raises(
    db: DatabaseServer, tables: tuple[psycopg.Connection, str, str], bad_row: int
) -> None:
    conn, _, binary = tables
    frame = _bills(501)
    frame.loc[bad_row, "city"] = None  # NOT NULL
    store = BackgroundCopy(db.conninfo(Role.OWNER), binary, frame, not_null=NOT_NULL, streams=2)
    with pytest.raises(psycopg.errors.NotNullViolation):
        store.wait()
    assert _count(conn, binary) == 0
    assert all(c.closed for c in store._conns)
    # raise_error=False (a failed run's clean-up): the same, without the exception
    store = BackgroundCopy(db.conninfo(Role.OWNER), binary, frame, not_null=NOT_NULL, streams=2)
    assert store.wait(raise_error=False) >= 0 and _count(conn, binary) == 0


def test_a_repeated_key_fails_the_copy_and_stores_nothing(
    db: DatabaseServer, tables: tuple[psycopg.Connection, str, str]
) -> None:
    """The bills' primary key twice within one stream: a UniqueViolation, no row of any stream stored. (Twice in
    two streams, the later stream's COPY would wait for the earlier one's transaction, which only wait() ends.)"""
    conn, _, binary = tables
    frame = _bills(10)
    frame["meter_id"] = frame["meter_id"].where(frame.index != 9, frame["meter_id"][7])  # both in the 2nd stream
    with pytest.raises(psycopg.errors.UniqueViolation):
        BackgroundCopy(db.conninfo(Role.OWNER), binary, frame, not_null=NOT_NULL, streams=2).wait()
    assert _count(conn, binary) == 0


def test_a_key_repeated_across_two_streams_is_refused_before_any_copy(
    db: DatabaseServer, tables: tuple[psycopg.Connection, str, str]
) -> None:
    """Without `unique`, the row in the second stream waits for the first stream's uncommitted row for ever (seen:
    stuck); with it, the frame is refused at once and nothing is stored."""
    conn, _, binary = tables
    frame = _bills(10)
    frame["meter_id"] = frame["meter_id"].where(frame.index != 8, frame["meter_id"][1])  # streams 1 and 2
    with pytest.raises(ValueError, match="repeat the key"):
        BackgroundCopy(db.conninfo(Role.OWNER), binary, frame, not_null=NOT_NULL, streams=2,
                       unique=("run_id", "meter_id", "bill_kind"))  # fmt: skip
    assert _count(conn, binary) == 0
