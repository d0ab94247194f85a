"""Binary COPY against a real PostgreSQL: encode -> COPY FROM -> the stored values -> COPY TO -> decode, for every
column type each encoder supports, NULLs and variable-length text included."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import numpy as np
import psycopg
import pytest

from amr.pgcopy import (
    HEADER,
    PG_EPOCH,
    PG_EPOCH_SQL,
    PG_EPOCH_UNIX_DAYS,
    PG_EPOCH_UNIX_S,
    SIGNATURE,
    TRAILER,
    Column,
    CopyFormatError,
    FixedRows,
    encode_rows,
    pg_us_to_unix_s,
    unix_days_to_pg_days,
    unix_s_to_pg_us,
)

EVERY_FIXED = FixedRows(
    ("s", "int2"),
    ("i", "int4"),
    ("l", "int8"),
    ("f", "float8"),
    ("b", "bool"),
    ("d", "date"),
    ("ts", "timestamptz"),
)
FIXED_TABLE = "CREATE TEMP TABLE every_fixed (s int2, i int4, l int8, f float8, b bool, d date, ts timestamptz)"
# Instants either side of both epochs, a fraction of a second, and far ahead.
INSTANTS = [
    datetime(1969, 12, 31, 23, 59, 59, 999_999, tzinfo=UTC),
    datetime(1999, 12, 31, 23, 59, 59, tzinfo=UTC),
    PG_EPOCH,
    datetime(2026, 3, 4, 5, 6, 7, 123_456, tzinfo=UTC),
    datetime(2200, 1, 1, tzinfo=UTC),
]
DATES = [date(1969, 12, 31), date(1999, 12, 31), date(2000, 1, 1), date(2026, 2, 28), date(2200, 1, 1)]


def _copy_in(conn: psycopg.Connection, statement: str, stream: bytes) -> None:
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write(stream)


def _copy_out(conn: psycopg.Connection, statement: str) -> bytes:
    buf = bytearray()
    with conn.cursor() as cur, cur.copy(statement) as copy:
        for chunk in copy:
            buf += chunk
    return bytes(buf)


def _exact_pg_us(instant: datetime) -> int:
    return (instant - PG_EPOCH) // timedelta(microseconds=1)  # integer arithmetic, no float on the way


def test_epoch_constants_are_postgresql_s_epoch(owner_conn: psycopg.Connection) -> None:
    row = owner_conn.execute(f"SELECT {PG_EPOCH_SQL}, extract(epoch FROM {PG_EPOCH_SQL})::bigint").fetchone()
    assert row == (PG_EPOCH, PG_EPOCH_UNIX_S)
    assert PG_EPOCH_UNIX_S == 946_684_800 and (date(2000, 1, 1) - date(1970, 1, 1)).days == PG_EPOCH_UNIX_DAYS
    assert HEADER[: len(SIGNATURE)] == SIGNATURE and len(HEADER) == 19 and TRAILER == b"\xff\xff"


def test_time_conversions_are_exact() -> None:
    seconds = [(t - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds() for t in INSTANTS]
    assert unix_s_to_pg_us(np.array(seconds)).tolist() == [_exact_pg_us(t) for t in INSTANTS]
    whole = np.array([-1, 0, PG_EPOCH_UNIX_S, 4_102_444_800], dtype=np.int64)
    assert unix_s_to_pg_us(whole).tolist() == [(s - PG_EPOCH_UNIX_S) * 1_000_000 for s in whole.tolist()]
    assert pg_us_to_unix_s(unix_s_to_pg_us(whole)).tolist() == whole.tolist()
    # Floored: a microsecond before 2000 falls in the second before.
    assert pg_us_to_unix_s(np.array([-1, 0, 999_999])).tolist() == [PG_EPOCH_UNIX_S - 1] + [PG_EPOCH_UNIX_S] * 2
    day_numbers = np.array([(d - date(1970, 1, 1)).days for d in DATES])
    expected = [(d - date(2000, 1, 1)).days for d in DATES]
    assert unix_days_to_pg_days(day_numbers).tolist() == expected
    assert unix_days_to_pg_days(np.array(DATES, dtype="datetime64[D]")).tolist() == expected


def test_fixed_rows_round_trip_every_type_through_postgresql(owner_conn: psycopg.Connection) -> None:
    n = len(INSTANTS)
    values: dict[str, np.ndarray] = {
        "s": np.array([-(2**15), -1, 0, 7, 2**15 - 1], dtype=np.int16),
        "i": np.array([-(2**31), -1, 0, 123_456, 2**31 - 1], dtype=np.int32),
        "l": np.array([-(2**63), -1, 0, 2**53 + 1, 2**63 - 1], dtype=np.int64),
        "f": np.array([-0.0, np.inf, np.nan, np.pi, -1e-300]),
        "b": np.array([True, False, True, False, True]),
        "d": unix_days_to_pg_days(np.array(DATES, dtype="datetime64[D]")),
        "ts": np.array([_exact_pg_us(t) for t in INSTANTS], dtype=np.int64),
    }
    stream = EVERY_FIXED.encode(values)
    assert len(stream) == len(HEADER) + n * EVERY_FIXED.dtype.itemsize + len(TRAILER)
    owner_conn.execute(FIXED_TABLE)
    _copy_in(owner_conn, "COPY every_fixed FROM STDIN (FORMAT BINARY)", stream)
    stored = owner_conn.execute("SELECT s, i, l, f, b, d, ts FROM every_fixed ORDER BY ctid").fetchall()
    assert [r[:2] for r in stored] == list(zip(values["s"].tolist(), values["i"].tolist(), strict=True))
    assert [r[2] for r in stored] == values["l"].tolist()
    assert [r[4] for r in stored] == values["b"].tolist()
    assert [r[5] for r in stored] == DATES and [r[6] for r in stored] == INSTANTS
    floats = [r[3] for r in stored]
    assert floats[0] == 0.0 and np.signbit(floats[0]) and floats[1] == np.inf and np.isnan(floats[2])
    assert floats[3:] == [np.pi, -1e-300]

    out = _copy_out(owner_conn, "COPY (SELECT * FROM every_fixed ORDER BY ctid) TO STDOUT (FORMAT BINARY)")
    assert out == stream  # PostgreSQL writes the very bytes the encoder wrote
    records = EVERY_FIXED.decode(out)
    for name, column in values.items():
        np.testing.assert_array_equal(records[name], column, err_msg=name)
    assert pg_us_to_unix_s(records["ts"]).tolist() == [int(t.timestamp() // 1) for t in INSTANTS]


def test_fixed_rows_tuples_stream_in_blocks_and_empty(owner_conn: psycopg.Connection) -> None:
    rows = FixedRows(("k", "int4"), ("v", "float8"))
    owner_conn.execute("CREATE TEMP TABLE blocks (k int4, v float8)")
    blocks = [rows.encode_tuples({"k": np.arange(lo, lo + 3), "v": np.arange(lo, lo + 3) / 2}) for lo in (0, 3)]
    _copy_in(owner_conn, "COPY blocks FROM STDIN (FORMAT BINARY)", HEADER + b"".join(blocks) + TRAILER)
    assert owner_conn.execute("SELECT array_agg(k ORDER BY k), sum(v) FROM blocks").fetchone() == (
        list(range(6)),
        7.5,
    )
    empty = _copy_out(owner_conn, "COPY (SELECT k, v FROM blocks WHERE false) TO STDOUT (FORMAT BINARY)")
    assert empty == rows.encode({"k": np.array([], np.int32), "v": np.array([])}) == HEADER + TRAILER
    assert rows.decode(empty).size == 0


def test_decoding_refuses_nulls_other_types_and_cut_streams(owner_conn: psycopg.Connection) -> None:
    rows = FixedRows(("k", "int4"), ("v", "float8"))
    with_null = _copy_out(owner_conn, "COPY (SELECT 1::int4, NULL::float8) TO STDOUT (FORMAT BINARY)")
    with pytest.raises(CopyFormatError, match="not whole 22-byte rows of \\['k', 'v'\\] \\(a NULL"):
        rows.decode(with_null)
    three_fields = _copy_out(owner_conn, "COPY (SELECT 1::int4, NULL::float8, 2::int4) TO STDOUT (FORMAT BINARY)")
    assert len(three_fields) == len(HEADER) + 22 + len(TRAILER)  # the size of a good row
    with pytest.raises(CopyFormatError, match="do not have 2 fields"):
        rows.decode(three_fields)
    swapped = _copy_out(owner_conn, "COPY (SELECT 1::int8, 2::int4) TO STDOUT (FORMAT BINARY)")
    int4_int8 = FixedRows(("k", "int4"), ("v", "int8"))  # the same row size, the fields the other way round
    with pytest.raises(CopyFormatError, match="field k is not always 4 bytes"):
        int4_int8.decode(swapped)
    good = rows.encode({"k": [1], "v": [2.0]})
    with pytest.raises(CopyFormatError, match="no trailer"):
        rows.decode(good[:-1])
    with pytest.raises(CopyFormatError, match="not a PGCOPY"):
        rows.decode(b"k,v\n1,2.0\n")


def test_fixed_rows_round_trip_fixed_arrays_and_text_through_postgresql(owner_conn: psycopg.Connection) -> None:
    rows = FixedRows(("k", "int4"), ("e", "float8[3]"), ("q", "text(3)"), ("m", "int2[3]"), ("l", "int8[1]"))
    values = {
        "k": np.array([1, 2], np.int32),
        "e": np.array([[0.5, np.nan, -1e300], [np.inf, 0.0, 2.25]]),
        "q": np.array([b"ASN", b"EEA"], "S3"),
        "m": np.array([[0, 17, -1], [25, 14, 32767]], np.int16),
        "l": np.array([[2**63 - 1], [-(2**63)]], np.int64),
    }
    owner_conn.execute("CREATE TEMP TABLE arrays (k int4, e float8[], q text, m smallint[], l bigint[])")
    stream = rows.encode(values)
    _copy_in(owner_conn, "COPY arrays FROM STDIN (FORMAT BINARY)", stream)
    stored = owner_conn.execute("SELECT k, e[1], e[3], q, m, l, array_lower(e, 1) FROM arrays ORDER BY k").fetchall()
    assert stored == [(1, 0.5, -1e300, "ASN", [0, 17, -1], [2**63 - 1], 1), (2, np.inf, 2.25, "EEA", [25, 14, 32767],
                                                                              [-(2**63)], 1)]  # fmt: skip
    out = _copy_out(owner_conn, "COPY (SELECT * FROM arrays ORDER BY k) TO STDOUT (FORMAT BINARY)")
    assert out == stream  # PostgreSQL writes the very bytes the encoder wrote
    records = rows.decode(out)
    np.testing.assert_array_equal(records["e"]["v"], values["e"])
    np.testing.assert_array_equal(records["m"]["v"], values["m"])
    assert records["q"].tolist() == [b"ASN", b"EEA"] and records["l"]["v"].tolist() == [[2**63 - 1], [-(2**63)]]
    # an array of another element type, length or with a NULL, and text of another length, are refused
    with pytest.raises(psycopg.errors.DatatypeMismatch):
        other = FixedRows(("k", "int4"), ("e", "int8[3]"), ("q", "text(3)"), ("m", "int2[3]"), ("l", "int8[1]"))
        _copy_in(
            owner_conn,
            "COPY arrays FROM STDIN (FORMAT BINARY)",
            other.encode(values | {"e": np.zeros((2, 3), np.int64)}),
        )
    owner_conn.rollback()
    for e_q in ("ARRAY[1, NULL, 2]::float8[], 'ASN'", "ARRAY[1, 2]::float8[], 'ASN'", "ARRAY[1, 2, 3]::float8[], 'AS'"):
        query = f"SELECT 1::int4, {e_q}, ARRAY[0, 0, 0]::int2[], ARRAY[1]::int8[]"
        with pytest.raises(CopyFormatError):
            rows.decode(_copy_out(owner_conn, f"COPY ({query}) TO STDOUT (FORMAT BINARY)"))
    with pytest.raises(ValueError, match="exactly 3 bytes, none of them NUL"):
        rows.encode(values | {"q": np.array([b"AS", b"EEA"], "S3")})
    with pytest.raises(ValueError, match="'float8\\[0\\]' is not one of"):
        FixedRows(("e", "float8[0]"))


def test_fixed_rows_refuse_missing_and_uneven_columns() -> None:
    rows = FixedRows(("k", "int4"), ("v", "float8"))
    with pytest.raises(ValueError, match="missing \\['v'\\], unknown \\['w'\\]"):
        rows.encode({"k": [1], "w": [2.0]})
    with pytest.raises(ValueError, match="differ in length"):
        rows.encode({"k": [1, 2], "v": [2.0]})
    with pytest.raises(ValueError, match="'text' is not one of"):
        FixedRows(("k", "text"))


def test_columns_round_trip_nulls_and_variable_text_through_postgresql(owner_conn: psycopg.Connection) -> None:
    text = np.array([b"", b"abc", b"xy", "Hà Nội".encode()], dtype="S9")
    day_numbers = np.array([(d - date(1970, 1, 1)).days for d in DATES[:4]])
    columns = [
        Column(
            name="t", pg_type="text", values=text, lengths=np.array([0, 3, 2, 9]), null=np.array([0, 0, 1, 0], bool)
        ),
        Column(name="s", pg_type="int2", values=np.array([1, 2, 3, -4]), null=np.array([0, 0, 0, 1], bool)),
        Column(name="i", pg_type="int4", values=np.array([1, -2, 3, 2**31 - 1]), null=np.array([0, 1, 0, 0], bool)),
        Column(name="l", pg_type="int8", values=np.array([2**62, 0, -1, 5])),
        Column(
            name="f", pg_type="float8", values=np.array([0.1, -1e300, np.pi, 2.5]), null=np.array([1, 0, 0, 0], bool)
        ),
        Column(name="b", pg_type="bool", values=np.array([True, False, True, False])),
        Column(name="d", pg_type="date", values=day_numbers, null=np.array([0, 0, 1, 0], bool)),
    ]
    order = np.array([3, 0, 2, 1])  # rows are written in the order given, whatever their layout
    stream = HEADER + encode_rows(columns, order) + TRAILER
    owner_conn.execute("CREATE TEMP TABLE nullable (t text, s int2, i int4, l int8, f float8, b bool, d date)")
    _copy_in(owner_conn, "COPY nullable FROM STDIN (FORMAT BINARY)", stream)
    assert owner_conn.execute("SELECT * FROM nullable ORDER BY ctid").fetchall() == [
        ("Hà Nội", None, 2**31 - 1, 5, 2.5, False, DATES[3]),
        ("", 1, 1, 2**62, None, True, DATES[0]),
        (None, 3, 3, -1, np.pi, True, None),
        ("abc", 2, None, 0, -1e300, False, DATES[1]),
    ]
    out = _copy_out(owner_conn, "COPY (SELECT * FROM nullable ORDER BY ctid) TO STDOUT (FORMAT BINARY)")
    assert out == stream  # NULLs (length -1), empty text (length 0) and UTF-8 bytes: PostgreSQL writes the same bytes


def test_columns_refuse_what_they_cannot_encode() -> None:
    with pytest.raises(ValueError, match="column t: text values must be a bytes array"):
        Column(name="t", pg_type="text", values=np.array(["a"]))
    with pytest.raises(ValueError, match="column x: unsupported type timestamptz"):
        Column(name="x", pg_type="timestamptz", values=np.array([0]))
    with pytest.raises(ValueError, match="column n: null/lengths shape differs"):
        Column(name="n", pg_type="int4", values=np.array([1, 2]), null=np.array([True]))
