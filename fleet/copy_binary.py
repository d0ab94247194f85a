"""PostgreSQL binary COPY encoding of numpy columns, without a Python loop over rows.

A binary COPY tuple is: int16 field count, then per field int32 byte length (-1 = NULL) and the bytes (network
byte order). Rows whose fields have the same lengths and NULLs share one layout, which is a numpy structured
dtype; so the rows are grouped by layout, each group is filled column by column, and the groups' bytes are
put back into row order.

The stream is COPY_HEADER, the encoded rows (any number of blocks), COPY_TRAILER.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + (0).to_bytes(4, "big") + (0).to_bytes(4, "big")
COPY_TRAILER = b"\xff\xff"
PG_EPOCH_DAY = 10_957  # 2000-01-01 in days since 1970-01-01: PostgreSQL's binary dates count from it

_FIXED = {"int2": ">i2", "int4": ">i4", "int8": ">i8", "float8": ">f8", "date": ">i4", "bool": "u1"}
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
        if self.pg_type != "text" and self.pg_type not in _FIXED:
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
    return column.values.dtype.itemsize if column.pg_type == "text" else np.dtype(_FIXED[column.pg_type]).itemsize


def _value_dtype(column: Column, length: int) -> str:
    return f"S{length}" if column.pg_type == "text" else _FIXED[column.pg_type]


def _fill(column: Column, rows: npt.NDArray[np.int64]) -> npt.NDArray[np.generic]:
    values = column.values[rows]
    if column.pg_type == "date":
        return (values.astype(np.int64) - PG_EPOCH_DAY).astype(np.int32)
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
