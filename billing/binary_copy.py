"""DataFrames into PostgreSQL tables by binary COPY (billing.store.copy_frame writes CSV: pandas' text formatting
of millions of rows costs several times the binary encoding): the table's column types name each field's wire
format. Used by bill runs (bills) and VEE passes (validated days)."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import numpy as np
import pandas as pd
import psycopg
import pyarrow as pa
from numba import njit
from psycopg import sql
from psycopg.adapt import PyFormat
from psycopg.copy import QueuedLibpqWriter

from amr import pgcopy

_FIXED_WIRE = {
    "smallint": ">i2",
    "integer": ">i4",
    "bigint": ">i8",
    "real": ">f4",
    "double precision": ">f8",
    "boolean": "u1",
    "date": ">i4",
}
BINARY_COPY_CHUNK_ROWS = 200_000  # rows encoded and written at a time (~60 MB of bill tuples)


@dataclass(frozen=True)
class _Column:
    """One column's wire values: fixed-width (`values`, big-endian), or variable: value v's bytes are
    pool[offsets[v]:offsets[v + 1]], and row i has value codes[i], or value i when `codes` is None. `null`: True
    where NULL (or codes -1)."""

    values: np.ndarray | None = None
    null: np.ndarray | None = None
    codes: np.ndarray | None = None
    pool: np.ndarray | None = None
    offsets: np.ndarray | None = None


def _csv_decimal(value: object) -> Decimal:
    """A numeric value as the CSV writes it: a Decimal or an integer as it is (not through a float: digits and
    scale), a float by its shortest text."""
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_):
        return Decimal(int(value))
    return Decimal(repr(float(value)))  # type: ignore[arg-type]


def _column(series: pd.Series, pg_type: str, *, keep_empty: bool, conn: psycopg.Connection, name: str) -> _Column:
    """As copy_frame's CSV would have it: NaN, None and (unless keep_empty) empty text are NULL."""
    if pg_type in ("text", "character"):  # through Arrow: UTF-8 bytes and offsets, no Python object per row
        text = pa.array(series, type=pa.large_string(), from_pandas=True)
        if isinstance(text, pa.ChunkedArray):  # pandas' Arrow-backed strings
            text = text.combine_chunks()
        if keep_empty:  # the CSV writes a NULL as an empty field, which FORCE_NOT_NULL reads as ''
            text = text.fill_null("")
        n = len(text)
        buffers = text.buffers()
        offsets = np.frombuffer(buffers[1], dtype=np.int64, count=n + 1, offset=text.offset * 8)
        pool = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
        null = text.is_null().to_numpy(zero_copy_only=False)
        if not keep_empty:
            null = null | (np.diff(offsets) == 0)
        return _Column(null=null, pool=pool, offsets=offsets)
    null = series.isna().to_numpy()
    if pg_type == "numeric":  # psycopg's binary numeric of each distinct float's shortest text, as the CSV had it
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        dumper = conn.adapters.get_dumper(Decimal, PyFormat.BINARY)(Decimal, conn)
        encoded = [bytes(dumper.dump(_csv_decimal(u)) or b"") for u in uniques]
        return _Column(
            codes=codes.astype(np.int64),
            pool=np.frombuffer(b"".join(encoded), dtype=np.uint8),
            offsets=np.concatenate([[0], np.cumsum([len(b) for b in encoded])]).astype(np.int64),
        )
    if pg_type == "date":  # datetime64 or datetime.date objects, through Arrow's date32
        dates = pa.array(series, type=pa.date32(), from_pandas=True).fill_null(0)
        days = dates.to_numpy(zero_copy_only=False).astype("datetime64[D]").astype(np.int64)
        return _Column(values=(days - pgcopy.PG_EPOCH_UNIX_DAYS).astype(">i4"), null=null)
    if pg_type == "timestamp with time zone":  # tz-aware datetime64: microseconds since 2000-01-01 UTC
        if not isinstance(series.dtype, pd.DatetimeTZDtype):
            raise ValueError(f"column {name}: a time zone aware datetime column is required for {pg_type}")
        us = series.dt.tz_convert("UTC").dt.tz_localize(None).to_numpy("datetime64[us]").astype(np.int64)
        return _Column(values=np.where(null, 0, us - pgcopy.PG_EPOCH_UNIX_S * pgcopy.US_PER_S).astype(">i8"), null=null)
    if pg_type not in _FIXED_WIRE:
        raise ValueError(f"column {name}: no binary COPY of {pg_type}")
    dtype = np.dtype(_FIXED_WIRE[pg_type])
    values = np.asarray(series.to_numpy())
    if null.any():
        values = np.where(null, 0, values)
    if dtype.kind == "i" and values.size:
        info = np.iinfo(dtype)
        if values.min() < info.min or values.max() > info.max:
            raise ValueError(f"column {name}: values outside {pg_type}")
    return _Column(values=values.astype(dtype), null=null)


def _encode_tuples(columns: list[_Column], lo: int, hi: int) -> np.ndarray:
    """The binary COPY tuples of rows [lo, hi), in order, as bytes (uint8)."""
    n = hi - lo
    fixed = [c.values for c in columns if c.values is not None]
    record = np.empty(n, dtype=[(f"f{k}", v.dtype) for k, v in enumerate(fixed)])
    for k, v in enumerate(fixed):
        record[f"f{k}"] = v[lo:hi]
    width = np.array([v.dtype.itemsize for v in fixed], np.int64)
    fixed_null = np.zeros((n, len(fixed)), bool)
    # the variable columns' values as [start, end) of one pool, for these rows
    codes = np.empty((n, len(columns) - len(fixed)), np.int64)
    starts: list[np.ndarray] = []
    ends: list[np.ndarray] = []
    pools: list[np.ndarray] = []
    values = size = 0  # in the pool so far
    k = f = 0
    for c in columns:
        if c.values is not None:
            if c.null is not None:
                fixed_null[:, f] = c.null[lo:hi]
            f += 1
            continue
        assert c.pool is not None and c.offsets is not None
        if c.codes is None:  # a value per row: these rows' bytes
            first, last = int(c.offsets[lo]), int(c.offsets[hi])
            pools.append(c.pool[first:last])
            starts.append(c.offsets[lo:hi] - first + size)
            ends.append(c.offsets[lo + 1 : hi + 1] - first + size)
            assert c.null is not None
            codes[:, k] = np.where(c.null[lo:hi], -1, np.arange(n) + values)
        else:  # a few distinct values
            pools.append(c.pool)
            starts.append(c.offsets[:-1] + size)
            ends.append(c.offsets[1:] + size)
            part = c.codes[lo:hi]
            codes[:, k] = np.where(part >= 0, part + values, -1)
        values += starts[-1].shape[0]
        size += pools[-1].shape[0]
        k += 1
    start = np.concatenate(starts) if starts else np.zeros(0, np.int64)
    end = np.concatenate(ends) if ends else np.zeros(0, np.int64)
    pool = np.concatenate(pools) if pools else np.zeros(0, np.uint8)
    kind = np.array([0 if c.values is not None else 1 for c in columns], np.int64)
    index = np.zeros(len(columns), np.int64)
    index[kind == 0] = np.arange(len(fixed))
    index[kind == 1] = np.arange(len(columns) - len(fixed))
    row_start = np.empty(n + 1, np.int64)
    _tuple_starts(fixed_null, width, codes, start, end, row_start)
    out = np.empty(int(row_start[-1]), np.uint8)
    _write_tuples(
        record.view(np.uint8).reshape(n, record.dtype.itemsize),
        fixed_null,
        (np.cumsum(width) - width).astype(np.int64),
        width,
        codes,
        start,
        end,
        pool,
        kind,
        index,
        row_start,
        out,
    )
    return out


@njit(cache=True, nogil=True)
def _tuple_starts(
    fixed_null: np.ndarray, width: np.ndarray, codes: np.ndarray, start: np.ndarray, end: np.ndarray, out: np.ndarray
) -> None:
    """out[i]: row i's first byte; out[-1]: the total."""
    n_fixed, n_var = width.shape[0], codes.shape[1]
    p = 0
    for i in range(fixed_null.shape[0]):
        out[i] = p
        p += 2 + 4 * (n_fixed + n_var)
        for f in range(n_fixed):
            if not fixed_null[i, f]:
                p += width[f]
        for v in range(n_var):
            c = codes[i, v]
            if c >= 0:
                p += end[c] - start[c]
    out[fixed_null.shape[0]] = p


@njit(cache=True, nogil=True)
def _write_tuples(
    fixed: np.ndarray,  # (rows, record bytes) the fixed-width columns' wire bytes, side by side
    fixed_null: np.ndarray,  # (rows, fixed columns)
    fixed_at: np.ndarray,  # each fixed column's first byte in a record
    width: np.ndarray,
    codes: np.ndarray,  # (rows, variable columns) into start / end, -1: NULL
    start: np.ndarray,
    end: np.ndarray,
    pool: np.ndarray,
    kind: np.ndarray,  # (columns,) 0 fixed, 1 variable
    index: np.ndarray,  # (columns,) the column among the fixed or the variable ones
    row_start: np.ndarray,
    out: np.ndarray,
) -> None:
    """Each row's tuple at out[row_start[i]:]: the field count, then per column its int32 length (-1: NULL) and
    its bytes."""
    n_columns = kind.shape[0]
    for i in range(row_start.shape[0] - 1):
        p = row_start[i]
        out[p] = (n_columns >> 8) & 0xFF
        out[p + 1] = n_columns & 0xFF
        p += 2
        for j in range(n_columns):
            length = -1
            if kind[j] == 0:
                f = index[j]
                if not fixed_null[i, f]:
                    length = width[f]
                    out[p + 4 : p + 4 + length] = fixed[i, fixed_at[f] : fixed_at[f] + length]
            else:
                c = codes[i, index[j]]
                if c >= 0:
                    length = end[c] - start[c]
                    out[p + 4 : p + 4 + length] = pool[start[c] : end[c]]
            out[p] = (length >> 24) & 0xFF
            out[p + 1] = (length >> 16) & 0xFF
            out[p + 2] = (length >> 8) & 0xFF
            out[p + 3] = length & 0xFF
            p += 4 + max(length, 0)


def copy_frame_binary(
    conn: psycopg.Connection,
    table: str,
    frame: pd.DataFrame,
    *,
    not_null: tuple[str, ...] = (),
    chunk_rows: int = BINARY_COPY_CHUNK_ROWS,
) -> int:
    """billing.store.copy_frame by binary COPY: the same rows stored (NaN, None and, outside `not_null`, empty text
    as NULL; in a `not_null` text column a missing value is '', as FORCE_NOT_NULL reads the CSV's empty field;
    numeric from the floats' shortest text, Decimals and integers as they are), the fields in the table's column
    types (smallint, integer, bigint, real, double precision, boolean, date, timestamptz (time zone aware),
    numeric, text, character)."""
    if frame.empty:
        return 0
    types: dict[str, str] = dict(
        conn.execute(
            "SELECT attname, format_type(atttypid, NULL) FROM pg_attribute"
            " WHERE attrelid = %s::regclass AND attnum > 0 AND NOT attisdropped",
            (table,),
        ).fetchall()
    )
    columns = [_column(frame[c], types[c], keep_empty=c in not_null, conn=conn, name=str(c)) for c in frame.columns]
    query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns)
    )
    # The chunks go to the server from a writer thread (psycopg's queued writer) while the next one is encoded here.
    with conn.cursor() as cur, cur.copy(query, writer=QueuedLibpqWriter(cur)) as copy:
        copy.write(pgcopy.HEADER)
        for lo in range(0, len(frame), chunk_rows):
            copy.write(_encode_tuples(columns, lo, min(lo + chunk_rows, len(frame))).data)
        copy.write(pgcopy.TRAILER)
    return len(frame)
