"""Reading a period's readings and the meter registry out of TimescaleDB into numpy arrays.

Readings come through binary COPY (fixed-width rows, no NULLs) parsed by ``amr.pgcopy.FixedRows``: one
``np.frombuffer`` on a structured big-endian dtype, no Python work per row. Batches are meter-id ranges so memory
stays bounded.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from amr import pgcopy
from billing.vee import ReadingArrays

# Meters per partition: a month and two weeks of daily reads on 4 channels is ~180 reads per meter, so 50,000
# meters keep one partition's COPY buffer near 400 MB at 42 bytes a row; interval data needs fewer meters.
PARTITION_METERS = 50_000
# The readings as billing reads and writes them (billing.synthetic writes test data in the same layout).
READING_ROWS = pgcopy.FixedRows(
    ("meter_id", "int4"), ("channel_id", "int2"), ("ts", "timestamptz"), ("value", "float8"), ("quality", "int2")
)


def parse_binary_readings(buf: bytes | bytearray | memoryview) -> ReadingArrays:
    """Parse a PostgreSQL binary COPY of (meter_id int4, channel_id int2, ts timestamptz, value float8,
    quality int2) into native arrays (amr.pgcopy.CopyFormatError when the stream has another layout)."""
    rows = READING_ROWS.decode(buf)
    return ReadingArrays(
        meter_id=rows["meter_id"].astype(np.int32),
        channel_id=rows["channel_id"].astype(np.int16),
        ts_s=pgcopy.pg_us_to_unix_s(rows["ts"]),
        value=rows["value"].astype(np.float64),
        quality=rows["quality"].astype(np.int16),
    )


def fetch_readings(
    conn: psycopg.Connection, *, meter_ids: np.ndarray, channels: tuple[int, ...], from_s: int, to_s: int
) -> ReadingArrays:
    """Readings of the given meters (sorted ids) and channels with from_s < ts <= to_s [UTC epoch s], sorted by
    (meter_id, channel_id, ts)."""
    if meter_ids.size == 0:
        return parse_binary_readings(pgcopy.HEADER + pgcopy.TRAILER)
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
        "COPY (SELECT {} FROM readings WHERE {} ORDER BY meter_id, channel_id, ts) TO STDOUT (FORMAT BINARY)"
    ).format(sql.SQL(", ").join(sql.Identifier(c) for c in READING_ROWS.names), sql.SQL(" AND ").join(where))
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


# The continuous VEE's validated days as billing reads them (sql/080_continuous_vee.sql, vee_daily).
VALIDATED_DAY_ROWS = pgcopy.FixedRows(
    ("meter_id", "int4"),
    ("channel_id", "int2"),
    ("day", "date"),
    ("measured_kwh", "float8"),
    ("estimated_kwh", "float8"),
    ("n_measured", "int4"),
    ("n_estimated", "int4"),
    ("flags", "int4"),
    ("methods", "int2"),
    ("version", "int4"),
)


@dataclass(frozen=True, kw_only=True)
class ValidatedDays:
    """vee_daily rows sorted by (meter_id, channel_id, day); energy after the multiplier [kWh]; day as local day
    numbers since 1970-01-01."""

    meter_id: np.ndarray  # int32
    channel_id: np.ndarray  # int16
    day: np.ndarray  # int64
    measured_kwh: np.ndarray
    estimated_kwh: np.ndarray
    n_measured: np.ndarray  # int32
    n_estimated: np.ndarray  # int32
    flags: np.ndarray  # uint32
    methods: np.ndarray  # uint8
    version: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.meter_id.shape[0])


def fetch_validated_days(
    conn: psycopg.Connection, *, meter_ids: np.ndarray, channels: tuple[int, ...], first_day: date, n_days: int
) -> ValidatedDays:
    """The current validated days of the given meters (sorted ids) and channels in [first_day, + n_days)."""
    lo, hi = (int(meter_ids[0]), int(meter_ids[-1])) if meter_ids.size else (0, -1)
    where: list[sql.Composable] = [
        sql.SQL("meter_id BETWEEN {} AND {}").format(sql.Literal(lo), sql.Literal(hi)),
        sql.SQL("channel_id = ANY({}::smallint[])").format(sql.Literal(list(channels))),
        sql.SQL("day >= {} AND day < {}").format(sql.Literal(first_day), sql.Literal(first_day + timedelta(n_days))),
    ]
    if meter_ids.size != hi - lo + 1:
        where.append(sql.SQL("meter_id = ANY({}::integer[])").format(sql.Literal([int(m) for m in meter_ids])))
    query = sql.SQL(
        "COPY (SELECT {} FROM vee_daily WHERE {} ORDER BY meter_id, channel_id, day) TO STDOUT (FORMAT BINARY)"
    ).format(sql.SQL(", ").join(sql.Identifier(c) for c in VALIDATED_DAY_ROWS.names), sql.SQL(" AND ").join(where))
    buf = bytearray()
    if meter_ids.size:
        with conn.cursor() as cur, cur.copy(query) as copy:
            for chunk in copy:
                buf += chunk
    rows = VALIDATED_DAY_ROWS.decode(buf if buf else pgcopy.HEADER + pgcopy.TRAILER)
    return ValidatedDays(
        meter_id=rows["meter_id"].astype(np.int32),
        channel_id=rows["channel_id"].astype(np.int16),
        day=rows["day"].astype(np.int64) + pgcopy.PG_EPOCH_UNIX_DAYS,
        measured_kwh=rows["measured_kwh"].astype(np.float64),
        estimated_kwh=rows["estimated_kwh"].astype(np.float64),
        n_measured=rows["n_measured"].astype(np.int32),
        n_estimated=rows["n_estimated"].astype(np.int32),
        flags=rows["flags"].astype(np.int64).astype(np.uint32),
        methods=rows["methods"].astype(np.uint8),
        version=rows["version"].astype(np.int64),
    )
