"""PostgreSQL binary COPY (``FORMAT BINARY``) to and from numpy columns, without Python work per row.

A stream is HEADER, the tuples, TRAILER. A tuple is an int16 field count, then per field an int32 byte length
(-1 = NULL) and the value in network byte order: int2 / int4 / int8 / float8 as big-endian numbers, bool as one
byte, date as int32 days since 2000-01-01, timestamptz as int64 microseconds since 2000-01-01 00:00 UTC (the
PostgreSQL epoch, PG_EPOCH), text as its bytes.

Two encoders, for two kinds of rows:
- ``FixedRows``: every field NOT NULL and fixed-width, so a tuple is one numpy record and a stream is one
  structured array, encoded with a fill per column and decoded with one ``np.frombuffer``. The hot paths use it
  (ingest's reading batches, billing's readings and daily rows). It takes and returns wire values: convert with
  ``unix_s_to_pg_us`` / ``pg_us_to_unix_s`` and ``unix_days_to_pg_days``.
- ``Column`` + ``encode_rows``: NULLs and variable-length text (the fleet registry). Rows whose fields have the
  same lengths and NULLs share one layout, which is a numpy structured dtype; so the rows are grouped by layout,
  each group is filled column by column, and the groups' bytes are put back into row order.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from amr.errors import AmrError
from amr.timebase import DAY_S

SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
# Signature, flags (int32: bit 16 = rows carry OIDs; none here) and the header extension's length (int32, 0).
HEADER = SIGNATURE + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
TRAILER = (-1).to_bytes(2, "big", signed=True)  # a field count of -1 ends the stream

PG_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # binary timestamps and dates count from it
PG_EPOCH_UNIX_S = int(PG_EPOCH.timestamp())  # [s since 1970-01-01 UTC] = 946,684,800
PG_EPOCH_UNIX_DAYS = PG_EPOCH_UNIX_S // DAY_S  # [days since 1970-01-01] = 10,957
PG_EPOCH_SQL = f"timestamptz '{PG_EPOCH:%Y-%m-%d %H:%M:%S}+00'"  # for SQL that adds microseconds to it
US_PER_S = 1_000_000

# Wire dtype of each fixed-width type (date is days since PG_EPOCH, timestamptz microseconds since PG_EPOCH).
FIXED_WIRE_DTYPES: dict[str, str] = {
    "int2": ">i2",
    "int4": ">i4",
    "int8": ">i8",
    "float8": ">f8",
    "bool": "u1",
    "date": ">i4",
    "timestamptz": ">i8",
}
_LENGTH_FIELD_PREFIX = "len_"
_ARRAY_HEADER_PREFIX = "hdr_"
# Element type OIDs an array's wire header names (PostgreSQL's pg_type): a COPY into a column of another element
# type is refused by the server.
_ARRAY_ELEMENT_OIDS = {"int2": 21, "int4": 23, "int8": 20, "float8": 701}
_ARRAY_TYPE = re.compile(r"^(int2|int4|int8|float8)\[([1-9][0-9]{0,4})\]$")
_TEXT_TYPE = re.compile(r"^text\(([1-9][0-9]{0,4})\)$")


@dataclass(frozen=True)
class _ArrayKind:
    element: str
    n: int


def _fixed_kind(name: str, pg_type: str) -> str | _ArrayKind:
    """A column's wire dtype: a fixed-width type, ``text(n)`` (exactly n bytes of text) or ``T[n]`` (a 1-D array of
    n non-NULL elements of int2, int4, int8 or float8, lower bound 1)."""
    if pg_type in FIXED_WIRE_DTYPES:
        return FIXED_WIRE_DTYPES[pg_type]
    if m := _TEXT_TYPE.match(pg_type):
        return f"S{m[1]}"
    if m := _ARRAY_TYPE.match(pg_type):
        return _ArrayKind(m[1], int(m[2]))
    known = [*sorted(FIXED_WIRE_DTYPES), "text(n)", "int2[n]", "int4[n]", "int8[n]", "float8[n]"]
    raise ValueError(f"column {name}: {pg_type!r} is not one of {known}")


class CopyFormatError(AmrError):
    """A binary COPY stream does not have the layout the parser expects."""


def unix_s_to_pg_us(ts_s: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """UTC epoch [s since 1970] -> timestamptz wire value [µs since 2000]. Integer seconds convert exactly; float
    seconds are rounded to the microsecond (float64 holds today's epoch seconds to ~0.25 µs, so rounding is exact
    at microsecond resolution)."""
    arr = np.asarray(ts_s)
    if arr.dtype.kind in "iu":
        return (arr.astype(np.int64) - PG_EPOCH_UNIX_S) * US_PER_S
    return np.rint((arr - PG_EPOCH_UNIX_S) * 1e6).astype(np.int64)


def pg_us_to_unix_s(ts_us: npt.ArrayLike) -> npt.NDArray[np.int64]:
    """timestamptz wire value [µs since 2000] -> UTC epoch [s since 1970], floored to the whole second."""
    return np.asarray(ts_us).astype(np.int64) // US_PER_S + PG_EPOCH_UNIX_S


def unix_days_to_pg_days(days: npt.ArrayLike) -> npt.NDArray[np.int32]:
    """Dates -> date wire value [days since 2000-01-01]; `days` are day numbers since 1970-01-01 or datetime64."""
    arr = np.asarray(days)
    if arr.dtype.kind == "M":
        arr = arr.astype("datetime64[D]").astype(np.int64)
    return (arr.astype(np.int64) - PG_EPOCH_UNIX_DAYS).astype(np.int32)


# -- fixed-width rows, no NULLs ------------------------------------------------------------------------------------
class FixedRows:
    """The tuple layout of a COPY whose every field is NOT NULL and fixed-width: one numpy record per row.

    ``FixedRows(("ts", "timestamptz"), ("meter_id", "int4"))`` matches ``COPY t (ts, meter_id) ... (FORMAT BINARY)``;
    the record has fields ``n_fields``, then per column ``len_<name>`` and ``<name>``. A column may also be
    ``text(n)`` (exactly n bytes, values an ``S<n>`` array) or an array ``float8[n]`` (also int2, int4, int8: n
    non-NULL elements; values a (rows, n) array; in the record ``hdr_<name>``, then ``<name>`` whose elements'
    values are ``records[name]["v"]``).
    """

    def __init__(self, *columns: tuple[str, str]) -> None:
        if not columns:
            raise ValueError("FixedRows needs at least one column")
        names = [name for name, _ in columns]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate column names in {names}")
        for name, _ in columns:
            if name == "n_fields" or name.startswith((_LENGTH_FIELD_PREFIX, _ARRAY_HEADER_PREFIX)):
                raise ValueError(f"column {name}: the name clashes with the record's count and length fields")
        self.columns: tuple[tuple[str, str], ...] = tuple(columns)
        fields: list[tuple[str, object] | tuple[str, object, tuple[int, ...]]] = [("n_fields", ">i2")]
        self.widths: dict[str, int] = {}  # each field's byte length on the wire
        self.arrays: dict[str, int] = {}  # array columns: their element count
        constant_fields: dict[str, object] = {"n_fields": len(columns)}
        for name, pg_type in columns:
            kind = _fixed_kind(name, pg_type)
            fields.append((_LENGTH_FIELD_PREFIX + name, ">i4"))
            if isinstance(kind, _ArrayKind):
                element = np.dtype(FIXED_WIRE_DTYPES[kind.element])
                fields += [
                    (_ARRAY_HEADER_PREFIX + name, ">i4", (5,)),
                    (name, [("len", ">i4"), ("v", element)], (kind.n,)),
                ]
                self.widths[name] = 20 + kind.n * (4 + element.itemsize)
                self.arrays[name] = kind.n
                constant_fields[_ARRAY_HEADER_PREFIX + name] = (1, 0, _ARRAY_ELEMENT_OIDS[kind.element], kind.n, 1)
            else:
                fields.append((name, kind))
                self.widths[name] = np.dtype(kind).itemsize
            constant_fields[_LENGTH_FIELD_PREFIX + name] = self.widths[name]
        self.dtype = np.dtype(fields)
        # The bytes of one record holding the field count, every length and every array header, copied into all
        # rows by one broadcast byte copy (a Python-level assignment per length field, or a structured copy, costs
        # several times more on small batches; this encoder is ingest's hot path).
        constant = np.zeros(1, dtype=self.dtype)
        for field, value in constant_fields.items():
            constant[field] = value
        for name in self.arrays:
            constant[name]["len"] = self.dtype[name].base["v"].itemsize
        self._constant = constant
        self._constant_bytes = constant.view(np.uint8)
        self._header = np.frombuffer(HEADER, dtype=np.uint8)
        self._trailer = np.frombuffer(TRAILER, dtype=np.uint8)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    def _row_count(self, values: Mapping[str, npt.ArrayLike]) -> int:
        try:
            lengths = [len(values[name]) for name in self.widths]  # type: ignore[arg-type]
        except KeyError:
            lengths = []
        if len(lengths) != len(self.widths) or len(values) != len(self.widths):
            missing, extra = set(self.widths) - set(values), set(values) - set(self.widths)
            raise ValueError(f"COPY columns {list(self.names)}: missing {sorted(missing)}, unknown {sorted(extra)}")
        if min(lengths) != max(lengths):
            raise ValueError(f"column arrays differ in length: {dict(zip(self.widths, lengths, strict=True))}")
        return lengths[0]

    def _fill(self, records: np.ndarray, values: Mapping[str, npt.ArrayLike]) -> None:
        np.copyto(records.view(np.uint8).reshape(len(records), self.dtype.itemsize), self._constant_bytes)
        for name in self.widths:
            if name in self.arrays:
                records[name]["v"] = values[name]
                continue
            if self.dtype[name].kind == "S":
                text = np.asarray(values[name])
                if text.dtype != self.dtype[name] or (len(text) and not text.view(np.uint8).all()):
                    raise ValueError(f"column {name}: text of exactly {self.widths[name]} bytes, none of them NUL")
            records[name] = values[name]

    def encode(self, values: Mapping[str, npt.ArrayLike]) -> bytes:
        """The complete stream (HEADER, one tuple per row, TRAILER) for equal-length arrays, one per column."""
        n = self._row_count(values)
        start, end = len(HEADER), len(HEADER) + n * self.dtype.itemsize
        # One buffer for the whole stream, filled in place: the bytes are copied once (by tobytes), not three
        # times as header + rows + trailer concatenation would.
        buf = np.empty(end + len(TRAILER), dtype=np.uint8)
        buf[:start] = self._header
        buf[end:] = self._trailer
        self._fill(buf[start:end].view(self.dtype), values)
        return buf.tobytes()

    def encode_tuples(self, values: Mapping[str, npt.ArrayLike]) -> bytes:
        """The tuples alone, for a stream written in blocks between HEADER and TRAILER."""
        records = np.empty(self._row_count(values), dtype=self.dtype)
        self._fill(records, values)
        return records.tobytes()

    def decode(self, stream: bytes | bytearray | memoryview) -> np.ndarray:
        """The records of a complete stream (read-only, big-endian: take ``records[name]`` and convert). A NULL, a
        different column type or count, or a cut stream raises CopyFormatError."""
        view = memoryview(stream)
        if bytes(view[: len(SIGNATURE)]) != SIGNATURE:
            raise CopyFormatError("not a PGCOPY binary stream")
        if len(view) < len(HEADER):
            raise CopyFormatError(f"binary COPY stream of {len(view)} bytes is shorter than its header")
        extension = int.from_bytes(view[len(HEADER) - 4 : len(HEADER)], "big")
        body = view[len(HEADER) + extension :]
        if len(body) < len(TRAILER) or bytes(body[-len(TRAILER) :]) != TRAILER:
            raise CopyFormatError("binary COPY stream has no trailer")
        body = body[: -len(TRAILER)]
        if len(body) % self.dtype.itemsize:
            raise CopyFormatError(
                f"binary COPY body of {len(body)} bytes is not whole {self.dtype.itemsize}-byte rows of "
                f"{list(self.names)} (a NULL or a different column type?)"
            )
        records = np.frombuffer(body, dtype=self.dtype)
        if records.size:
            if (records["n_fields"] != len(self.columns)).any():
                raise CopyFormatError(f"binary COPY rows do not have {len(self.columns)} fields {list(self.names)}")
            for name, width in self.widths.items():
                if (records[_LENGTH_FIELD_PREFIX + name] != width).any():
                    raise CopyFormatError(f"binary COPY field {name} is not always {width} bytes (NULL?)")
            for name in self.arrays:
                if (records[_ARRAY_HEADER_PREFIX + name] != self._constant[_ARRAY_HEADER_PREFIX + name]).any() or (
                    records[name]["len"] != self._constant[name]["len"]
                ).any():
                    raise CopyFormatError(
                        f"binary COPY array {name} is not {self.arrays[name]} elements of its type (a NULL?)"
                    )
        return records


# -- nullable and variable-length columns --------------------------------------------------------------------------
_COLUMN_TYPES = {"int2", "int4", "int8", "float8", "date", "bool"}  # + text
_MAX_TEXT_BYTES = 63  # layout keys pack text lengths + 1 in 6 bits


@dataclass(frozen=True, kw_only=True)
class Column:
    """One column to COPY. pg_type: int2 | int4 | int8 | float8 | date | bool | text.

    values: numbers (dates as day numbers since 1970-01-01), or for text a fixed-width bytes array (dtype 'S<n>',
    ASCII/UTF-8) with `lengths` giving each row's byte count (None: every row fills the width).
    null: True where the value is NULL (None: never NULL).
    """

    name: str
    pg_type: str
    values: npt.NDArray[np.generic]
    null: npt.NDArray[np.bool_] | None = None
    lengths: npt.NDArray[np.integer] | None = None

    def __post_init__(self) -> None:
        if self.pg_type != "text" and self.pg_type not in _COLUMN_TYPES:
            raise ValueError(f"column {self.name}: unsupported type {self.pg_type}")
        if self.pg_type == "text" and self.values.dtype.kind != "S":
            raise ValueError(f"column {self.name}: text values must be a bytes array ('S<n>')")
        if self.pg_type == "text" and self.values.dtype.itemsize > _MAX_TEXT_BYTES:
            raise ValueError(f"column {self.name}: text wider than {_MAX_TEXT_BYTES} bytes")
        for extra in (self.null, self.lengths):
            if extra is not None and extra.shape != self.values.shape:
                raise ValueError(f"column {self.name}: null/lengths shape differs from the values")

    @property
    def variable(self) -> bool:
        return self.null is not None or (self.pg_type == "text" and self.lengths is not None)

    def row_lengths(self, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """Byte length of each row's field, -1 for NULL."""
        if self.pg_type == "text" and self.lengths is not None:
            out = self.lengths[rows].astype(np.int64)
        else:
            out = np.full(len(rows), _fixed_size(self), dtype=np.int64)
        if self.null is not None:
            out[self.null[rows]] = -1
        return out


def _fixed_size(column: Column) -> int:
    if column.pg_type == "text":
        return column.values.dtype.itemsize
    return np.dtype(FIXED_WIRE_DTYPES[column.pg_type]).itemsize


def _value_dtype(column: Column, length: int) -> str:
    return f"S{length}" if column.pg_type == "text" else FIXED_WIRE_DTYPES[column.pg_type]


def _fill(column: Column, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.generic]:
    values = column.values[rows]
    if column.pg_type == "date":
        return unix_days_to_pg_days(values)
    if column.pg_type == "bool":
        return values.astype(np.uint8)
    return values


def encode_rows(columns: Sequence[Column], rows: npt.NDArray[np.int64]) -> bytes:
    """The binary COPY tuples of `rows` (indices into the columns' arrays), in that order, without header or
    trailer. Keeping the order matters: the table's heap follows it, and an index build on presorted rows is
    several times faster."""
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        return b""
    lengths = {i: c.row_lengths(rows) for i, c in enumerate(columns) if c.variable}
    if len(lengths) * 6 > 62:
        raise ValueError("too many nullable or variable-length columns for one layout key")
    key = np.zeros(len(rows), dtype=np.int64)
    for i in lengths:  # mixed radix: 6 bits per variable column (length + 1, 0 = NULL)
        key = (key << 6) | (lengths[i] + 1)
    layouts, first, inverse = np.unique(key, return_index=True, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.searchsorted(inverse[order], np.arange(len(layouts) + 1))
    # Each layout group is encoded as a structured array, then copied into its rows of a padded byte matrix;
    # the rows' bytes are finally read out in row order.
    row_bytes = (
        2
        + 4 * len(columns)
        + sum(np.maximum(lengths[i], 0) if i in lengths else _fixed_size(c) for i, c in enumerate(columns))
    )
    row_bytes = np.broadcast_to(row_bytes, len(rows))
    padded = np.zeros((len(rows), int(row_bytes.max())), dtype=np.uint8)
    for g in range(len(layouts)):
        members = order[bounds[g] : bounds[g + 1]]
        sample = first[g]
        fields: list[tuple[str, str]] = [("n", ">i2")]
        sizes: list[int] = []
        for i, column in enumerate(columns):
            size = int(lengths[i][sample]) if i in lengths else _fixed_size(column)
            sizes.append(size)
            fields.append((f"l{i}", ">i4"))
            if size > 0:  # an empty text has a length and no bytes
                fields.append((f"v{i}", _value_dtype(column, size)))
        block = np.empty(len(members), dtype=np.dtype(fields))
        block["n"] = len(columns)
        for i, column in enumerate(columns):
            block[f"l{i}"] = sizes[i]
            if sizes[i] > 0:
                block[f"v{i}"] = _fill(column, rows[members])
        padded[members, : block.dtype.itemsize] = block.view(np.uint8).reshape(len(members), -1)
    return padded[np.arange(padded.shape[1]) < row_bytes[:, None]].tobytes()
