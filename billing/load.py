"""Reading a period's readings and the meter registry out of TimescaleDB into numpy arrays.

Readings come through binary COPY (fixed-width rows, no NULLs) parsed with one ``np.frombuffer`` on a structured
big-endian dtype: no Python work per row. Batches are meter-id ranges so memory stays bounded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from amr.errors import AmrError
from billing.vee import ReadingArrays

# Meters per partition: a month and two weeks of daily reads on 4 channels is ~180 reads per meter, so 50,000
# meters keep one partition's COPY buffer near 400 MB at 42 bytes a row; interval data needs fewer meters.
PARTITION_METERS = 50_000
PG_EPOCH_S = 946_684_800  # 2000-01-01 UTC, PostgreSQL's binary timestamp epoch
_PGCOPY_SIGNATURE = b"PGCOPY\n\xff\r\n\x00"
_ROW = np.dtype(
    [
        ("n_fields", ">i2"),
        ("len_meter", ">i4"),
        ("meter_id", ">i4"),
        ("len_channel", ">i4"),
        ("channel_id", ">i2"),
        ("len_ts", ">i4"),
        ("ts_us", ">i8"),  # timestamptz: microseconds since 2000-01-01 UTC
        ("len_value", ">i4"),
        ("value", ">f8"),
        ("len_quality", ">i4"),
        ("quality", ">i2"),
    ]
)
_EXPECTED_LENGTHS = {"len_meter": 4, "len_channel": 2, "len_ts": 8, "len_value": 8, "len_quality": 2}


class CopyFormatError(AmrError):
    """A binary COPY stream does not have the layout the parser expects."""


def parse_binary_readings(buf: bytes | bytearray | memoryview) -> ReadingArrays:
    """Parse a PostgreSQL binary COPY of (meter_id int4, channel_id int2, ts timestamptz, value float8,
    quality int2) into native arrays."""
    view = memoryview(buf)
    if bytes(view[:11]) != _PGCOPY_SIGNATURE:
        raise CopyFormatError("not a PGCOPY binary stream")
    ext = int.from_bytes(view[15:19], "big")
    body = view[19 + ext :]
    if len(body) < 2 or bytes(body[-2:]) != b"\xff\xff":
        raise CopyFormatError("binary COPY stream has no trailer")
    body = body[:-2]
    if len(body) % _ROW.itemsize:
        raise CopyFormatError(
            f"binary COPY body of {len(body)} bytes is not whole {_ROW.itemsize}-byte rows "
            "(a NULL or a different column type?)"
        )
    rows = np.frombuffer(body, dtype=_ROW)
    if rows.size and ((rows["n_fields"] != 5).any() or any((rows[k] != n).any() for k, n in _EXPECTED_LENGTHS.items())):
        raise CopyFormatError("binary COPY rows do not have the expected field count and widths")
    return ReadingArrays(
        meter_id=rows["meter_id"].astype(np.int32),
        channel_id=rows["channel_id"].astype(np.int16),
        ts_s=rows["ts_us"].astype(np.int64) // 1_000_000 + PG_EPOCH_S,
        value=rows["value"].astype(np.float64),
        quality=rows["quality"].astype(np.int16),
    )


def fetch_readings(
    conn: psycopg.Connection, *, meter_ids: np.ndarray, channels: tuple[int, ...], from_s: int, to_s: int
) -> ReadingArrays:
    """Readings of the given meters (sorted ids) and channels with from_s < ts <= to_s [UTC epoch s], sorted by
    (meter_id, channel_id, ts)."""
    if meter_ids.size == 0:
        return parse_binary_readings(_PGCOPY_SIGNATURE + bytes(8) + b"\xff\xff")
    lo, hi = int(meter_ids[0]), int(meter_ids[-1])
    dense = meter_ids.size == hi - lo + 1
    where: list[sql.Composable] = [
        sql.SQL("meter_id BETWEEN {} AND {}").format(sql.Literal(lo), sql.Literal(hi)),
        sql.SQL("channel_id = ANY({}::smallint[])").format(sql.Literal(list(channels))),
        sql.SQL("ts > to_timestamp({}) AND ts <= to_timestamp({})").format(sql.Literal(from_s), sql.Literal(to_s)),
    ]
    if not dense:  # a filtered fleet (city, power company): only its meters within the range
        where.append(sql.SQL("meter_id = ANY({}::integer[])").format(sql.Literal([int(m) for m in meter_ids])))
    query = sql.SQL(
        "COPY (SELECT meter_id, channel_id, ts, value, quality FROM readings WHERE {} "
        "ORDER BY meter_id, channel_id, ts) TO STDOUT (FORMAT BINARY)"
    ).format(sql.SQL(" AND ").join(where))
    buf = bytearray()
    with conn.cursor() as cur, cur.copy(query) as copy:
        for chunk in copy:
            buf += chunk
    return parse_binary_readings(buf)


@dataclass(frozen=True, kw_only=True)
class MeterTable:
    """The meter registry columns billing needs, sorted by meter_id."""

    meter_id: np.ndarray  # int32
    serial: np.ndarray  # object
    customer_code: np.ndarray  # object
    city: np.ndarray  # object
    power_company: np.ndarray  # object
    tariff_class: np.ndarray  # object
    multiplier: np.ndarray  # float64
    register_digits: np.ndarray  # int64
    households: np.ndarray  # int64
    read_day: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.meter_id.shape[0])

    def take(self, idx: np.ndarray | slice) -> MeterTable:
        return MeterTable(**{k: getattr(self, k)[idx] for k in self.__dataclass_fields__})


def fetch_meters(
    conn: psycopg.Connection, *, city: str | None = None, power_company: str | None = None, read_day: int | None = None
) -> MeterTable:
    where: list[sql.Composable] = [sql.SQL("true")]
    if city:
        where.append(sql.SQL("city = {}").format(sql.Literal(city)))
    if power_company:
        where.append(sql.SQL("power_company = {}").format(sql.Literal(power_company)))
    if read_day:
        where.append(sql.SQL("read_day = {}").format(sql.Literal(read_day)))
    columns = [
        "meter_id",
        "serial",
        "customer_code",
        "city",
        "power_company",
        "tariff_class",
        "multiplier",
        "register_digits",
        "households",
        "read_day",
    ]
    query = sql.SQL("COPY (SELECT {} FROM meters WHERE {} ORDER BY meter_id) TO STDOUT (FORMAT csv)").format(
        sql.SQL(", ").join(sql.Identifier(c) for c in columns), sql.SQL(" AND ").join(where)
    )
    buf = bytearray()
    with conn.cursor() as cur, cur.copy(query) as copy:
        for chunk in copy:
            buf += chunk
    # CSV through pandas' C parser: millions of meters without a Python object per row and column.
    text = {c: object for c in ("serial", "customer_code", "city", "power_company", "tariff_class")}
    df = pd.read_csv(
        io.BytesIO(bytes(buf)),
        names=columns,
        header=None,
        keep_default_na=False,
        na_values={"customer_code": [""]},
        dtype={
            **text,
            "meter_id": np.int32,
            "multiplier": np.float64,
            "register_digits": np.int64,
            "households": np.int64,
            "read_day": np.int64,
        },
    )
    df["customer_code"] = df["customer_code"].where(df["customer_code"].notna(), None)
    return MeterTable(**{c: df[c].to_numpy() for c in columns})
