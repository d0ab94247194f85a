"""Reading a period's readings and the meter registry out of TimescaleDB into numpy arrays.

Readings come through binary COPY (fixed-width rows, no NULLs) parsed by ``amr.pgcopy.FixedRows``: one
``np.frombuffer`` on a structured big-endian dtype, no Python work per row. Batches are meter-id ranges so memory
stays bounded.
"""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
import numpy.typing as npt
import pandas as pd
import psycopg
from psycopg import sql

from amr import pgcopy
from amr.db.copy_out import copy_out_bytes
from amr.db.params import int_array_literal
from billing.vee import ReadingArrays, series_key

# Meters per partition: a month and two weeks of daily reads on 4 channels is ~180 reads per meter, so 50,000
# meters keep one partition's COPY buffer near 400 MB at 42 bytes a row; interval data needs fewer meters.
PARTITION_METERS = 50_000
# Billing from the validated days (fetch_cycle_sums) reads one sum per series, not the days: a partition's memory is
# small at any size, and fewer partitions leave the database less idle between them (HCMC: 10 instead of 50).
CONTINUOUS_PARTITION_METERS = 250_000
# A query reads a whole id range (IdFilter) when at least 1/DENSE_FETCH_SHARE of it is wanted: a row sent and dropped
# costs ~1 us, an `meter_id = ANY(array)` test in PostgreSQL ~0.7 us on every row (a 50,000-meter VEE pass: 14.3 s
# against 7.2 s for the same range read whole).
DENSE_FETCH_SHARE = 2


@dataclass(frozen=True)
class IdFilter:
    """How a query selects the rows of some ids (sorted, unique, at least one) in an integer `column`: their range
    whole when they fill at least 1/DENSE_FETCH_SHARE of it, the rows of the others then dropped here (`wanted`),
    else the range and the ids themselves."""

    column: str
    ids: np.ndarray

    @property
    def lo(self) -> int:
        return int(self.ids[0])

    @property
    def hi(self) -> int:
        return int(self.ids[-1])

    @property
    def whole_range(self) -> bool:
        return self.ids.size * DENSE_FETCH_SHARE >= self.hi - self.lo + 1

    def condition(self) -> sql.Composed:
        column = sql.Identifier(self.column)
        in_range = sql.SQL("{} BETWEEN {} AND {}").format(column, sql.Literal(self.lo), sql.Literal(self.hi))
        if self.whole_range:
            return in_range
        ids = sql.Literal(int_array_literal(self.ids))
        return sql.SQL("{} AND {} = ANY({}::integer[])").format(in_range, column, ids)

    def returned(self) -> np.ndarray:
        """The ids whose rows `condition` returns."""
        return np.arange(self.lo, self.hi + 1, dtype=np.int64) if self.whole_range else self.ids

    def wanted(self, values: npt.ArrayLike) -> np.ndarray | None:
        """Which of the returned rows (their `column` values) are of the ids; None when all are."""
        if not self.whole_range or self.ids.size == self.hi - self.lo + 1:
            return None
        lookup = np.zeros(self.hi - self.lo + 1, dtype=bool)
        lookup[self.ids.astype(np.int64) - self.lo] = True
        return lookup[np.asarray(values).astype(np.int64) - self.lo]


# The readings as billing reads and writes them (billing.synthetic writes test data in the same layout).
READING_ROWS = pgcopy.FixedRows(
    ("meter_id", "int4"), ("channel_id", "int2"), ("ts", "timestamptz"), ("value", "float8"), ("quality", "int2")
)


def copy_out_records(
    conn: psycopg.Connection, query: sql.Composable | str, layout: pgcopy.FixedRows, params: tuple[object, ...] = ()
) -> np.ndarray:
    """The rows of `query` (a `COPY (...) TO STDOUT (FORMAT BINARY)` whose fields are `layout`'s) as its records."""
    return layout.decode(copy_out_bytes(conn, query, params))


def parse_binary_readings(buf: bytes | bytearray | memoryview) -> ReadingArrays:
    """Parse a PostgreSQL binary COPY of (meter_id int4, channel_id int2, ts timestamptz, value float8,
    quality int2) into native arrays (amr.pgcopy.CopyFormatError when the stream has another layout)."""
    return _readings_of(READING_ROWS.decode(buf))


def _readings_of(rows: np.ndarray) -> ReadingArrays:
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
    # Most of the id range wanted (a VEE pass's pending meters, a partition of a city): reading the range and
    # dropping the few others here costs less than PostgreSQL testing every row against a long id array; a filtered
    # fleet (city, power company): only its meters within the range.
    ids = IdFilter("meter_id", meter_ids)
    where: list[sql.Composable] = [
        ids.condition(),
        sql.SQL("channel_id = ANY({}::smallint[])").format(sql.Literal(list(channels))),
        sql.SQL("ts > to_timestamp({}) AND ts <= to_timestamp({})").format(sql.Literal(from_s), sql.Literal(to_s)),
    ]
    columns = sql.SQL(", ").join(sql.Identifier(c) for c in READING_ROWS.names)
    query = sql.SQL(
        "COPY (SELECT {} FROM readings WHERE {} ORDER BY meter_id, channel_id, ts) TO STDOUT (FORMAT BINARY)"
    ).format(columns, sql.SQL(" AND ").join(where))
    readings = _readings_of(copy_out_records(conn, query, READING_ROWS))
    keep = ids.wanted(readings.meter_id)
    if keep is not None:
        readings = readings.take(keep)
    return readings


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
    conn: psycopg.Connection,
    *,
    city: str | None = None,
    power_company: str | None = None,
    read_day: int | None = None,
    meter_ids: np.ndarray | None = None,
) -> MeterTable:
    """The registry's meters (those of `city`, `power_company`, `read_day` and `meter_ids` when given), by id."""
    where: list[sql.Composable] = [sql.SQL("true")]
    if meter_ids is not None:
        where.append(sql.SQL("meter_id = ANY({}::integer[])").format(sql.Literal([int(m) for m in meter_ids])))
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
    buf = copy_out_bytes(conn, query)
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
    buf = copy_out_bytes(conn, query) if meter_ids.size else bytearray()
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


# Per series (meter, channel) of the continuous VEE's validated days over a run's window, summed in PostgreSQL so
# that one value per series crosses the wire instead of one per day (~30x fewer; billing.bill_ready turns them into
# determinants). The energies are summed in day order, as billing.pricing.determinants' cumulative sums do, so the
# float results are bit for bit the same: each sum runs over the days before the cycle's end (or start).
CYCLE_SUM_COLUMNS = (  # (name, wire type of the elements)
    ("meter_id", ">i4"),
    ("channel_id", ">i2"),
    ("day_mask", ">i8"),  # bit d: a validated row on the window's day d
    ("energy_to_end", ">f8"),  # measured + estimated, in day order, window days before the cycle's end
    ("energy_to_start", ">f8"),  # the same before the cycle's start
    ("estimated_to_end", ">f8"),
    ("estimated_to_start", ">f8"),
    ("n_measured", ">i8"),  # the rest over the cycle's days
    ("n_estimated", ">i8"),
    ("flags", ">i4"),
    ("version_sum", ">i8"),
)
CYCLE_SUM_MAX_DAYS = 63  # a window's days as bits of one bigint (a billing period's window has at most 62)
# The plan: the primary key's index scan feeds the sums in (meter, channel, day) order. No parallel query (partial
# sums would be added in another order); no sort (the planner would otherwise sort a bitmap heap scan of the
# range, ~1.7x the CPU on a heap the passes wrote day by day); no JIT (~0.2 s to compile each query).
CYCLE_SUM_SETTINGS = (
    "SET LOCAL max_parallel_workers_per_gather = 0",
    "SET LOCAL enable_sort = off",
    "SET LOCAL jit = off",
)


@dataclass(frozen=True, kw_only=True)
class CycleSums:
    """CYCLE_SUM_COLUMNS per series with a validated day in the window, sorted by (meter_id, channel_id)."""

    meter_id: np.ndarray  # int32
    channel_id: np.ndarray  # int16
    day_mask: np.ndarray  # uint64
    energy_to_end: np.ndarray  # float64 [kWh], after the multiplier
    energy_to_start: np.ndarray
    estimated_to_end: np.ndarray
    estimated_to_start: np.ndarray
    n_measured: np.ndarray  # int64
    n_estimated: np.ndarray  # int64
    flags: np.ndarray  # uint32
    version_sum: np.ndarray  # int64

    def __len__(self) -> int:
        return int(self.meter_id.shape[0])

    @classmethod
    def concat(cls, parts: list[CycleSums]) -> CycleSums:
        return cls(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in cls.__dataclass_fields__})


def _int_array(values: np.ndarray) -> sql.Composable:
    return sql.SQL("'{" + ",".join(str(int(v)) for v in values.tolist()) + "}'::integer[]")


def cycle_sums_query(
    *,
    meter_ids: np.ndarray,
    channels: tuple[int, ...],
    first_day: date,
    n_days: int,
    start: np.ndarray,
    end: np.ndarray,
) -> sql.Composed:
    """The COPY of CycleSums for meters `meter_ids` (sorted) whose cycles are window days [start, end) (int arrays,
    one per meter, 0 = first_day): one row of arrays, one element per series (a row per series would cost more in
    COPY messages than the sums). Sums in day order: a sorted subquery feeds the aggregates (run it with
    CYCLE_SUM_SETTINGS)."""
    if n_days > CYCLE_SUM_MAX_DAYS:
        raise ValueError(f"a window of {n_days} days does not fit a {CYCLE_SUM_MAX_DAYS}-bit day mask")
    lo, hi = int(meter_ids[0]), int(meter_ids[-1])
    where: list[sql.Composable] = [
        sql.SQL("meter_id BETWEEN {} AND {}").format(sql.Literal(lo), sql.Literal(hi)),
        sql.SQL("channel_id = ANY({}::smallint[])").format(sql.Literal(list(channels))),
        sql.SQL("day >= {} AND day < {}").format(sql.Literal(first_day), sql.Literal(first_day + timedelta(n_days))),
    ]
    if meter_ids.size != hi - lo + 1:
        where.append(sql.SQL("meter_id = ANY({})").format(_int_array(meter_ids)))
    cycle: sql.Composable
    sums: sql.Composable
    if (start == 0).all() and (end == n_days).all():
        # every cycle is the window (one read day): the window's days are the cycle's
        cycle = sql.SQL("")
        sums = sql.SQL(
            "sum(x), 0.0::float8, sum(q), 0.0::float8, sum(n_measured), sum(n_estimated), bit_or(flags), sum(version)"
        )
    else:
        # each meter's cycle bounds by its offset in [lo, hi] (meters outside the selection are never read)
        s_at, e_at = np.zeros(hi - lo + 1, np.int64), np.zeros(hi - lo + 1, np.int64)
        s_at[meter_ids - lo], e_at[meter_ids - lo] = start, end
        cycle = sql.SQL(", ({})[meter_id - {}] AS s, ({})[meter_id - {}] AS e").format(
            _int_array(s_at), sql.Literal(lo - 1), _int_array(e_at), sql.Literal(lo - 1)
        )
        inside = sql.SQL("d >= s AND d < e")
        sums = sql.SQL(
            "coalesce(sum(x) FILTER (WHERE d < e), 0.0), coalesce(sum(x) FILTER (WHERE d < s), 0.0),"
            " coalesce(sum(q) FILTER (WHERE d < e), 0.0), coalesce(sum(q) FILTER (WHERE d < s), 0.0),"
            " coalesce(sum(n_measured) FILTER (WHERE {c}), 0), coalesce(sum(n_estimated) FILTER (WHERE {c}), 0),"
            " coalesce(bit_or(flags) FILTER (WHERE {c}), 0), coalesce(sum(version) FILTER (WHERE {c}), 0)"
        ).format(c=inside)
    names = [sql.Identifier(f"c{k}") for k in range(len(CYCLE_SUM_COLUMNS))]
    return sql.SQL(
        "COPY (SELECT {arrays} FROM (SELECT meter_id, channel_id, bit_or(1::bigint << d), {sums} FROM ("
        "SELECT meter_id, channel_id, day - {first} AS d, measured_kwh + estimated_kwh AS x, estimated_kwh AS q,"
        " n_measured, n_estimated, flags, version{cycle} FROM vee_daily WHERE {where}"
        " ORDER BY meter_id, channel_id, day) ordered"
        " GROUP BY meter_id, channel_id ORDER BY meter_id, channel_id) AS series ({names})) TO STDOUT (FORMAT BINARY)"
    ).format(
        arrays=sql.SQL(", ").join(sql.SQL("array_agg({})").format(n) for n in names),
        sums=sums,
        first=sql.Literal(first_day),
        cycle=cycle,
        where=sql.SQL(" AND ").join(where),
        names=sql.SQL(", ").join(names),
    )


def decode_array_row(stream: bytes | bytearray | memoryview, wires: list[str]) -> list[np.ndarray]:
    """The one row of a binary COPY whose fields are one-dimensional arrays without NULL elements, of fixed-width
    element types `wires` (numpy big-endian dtypes); an array that is NULL (array_agg of no row) is empty."""
    view = memoryview(stream)
    if bytes(view[: len(pgcopy.SIGNATURE)]) != pgcopy.SIGNATURE:
        raise pgcopy.CopyFormatError("not a PGCOPY binary stream")
    pos = len(pgcopy.HEADER) + int.from_bytes(view[len(pgcopy.HEADER) - 4 : len(pgcopy.HEADER)], "big")

    def need(size: int) -> None:
        if size < 0 or pos + size > len(view):  # numpy would raise ValueError, or read a negative count as "all"
            raise pgcopy.CopyFormatError("binary COPY stream cut short (or a field's length is wrong)")

    def take(fmt: str) -> int:
        nonlocal pos
        size = np.dtype(fmt).itemsize
        need(size)
        value = int(np.frombuffer(view, dtype=fmt, count=1, offset=pos)[0])
        pos += size
        return value

    if take(">i2") != len(wires):
        raise pgcopy.CopyFormatError(f"binary COPY row does not have {len(wires)} fields")
    out = []
    for wire in wires:
        dtype = np.dtype(wire)
        length = take(">i4")
        if length < 0:
            out.append(np.zeros(0, dtype.newbyteorder("=")))
            continue
        end = pos + length
        ndim, has_null = take(">i4"), take(">i4")
        take(">i4")  # element type oid
        count = take(">i4") if ndim else 0
        if ndim not in (0, 1) or has_null:
            raise pgcopy.CopyFormatError("expected one-dimensional arrays without NULLs")
        pos += 4 * ndim  # lower bound
        need(count * (4 + dtype.itemsize))
        elements = np.frombuffer(view, dtype=[("len", ">i4"), ("v", wire)], count=count, offset=pos)
        if (elements["len"] != dtype.itemsize).any():
            raise pgcopy.CopyFormatError(f"array elements are not {dtype.itemsize} bytes")
        out.append(elements["v"].astype(dtype.newbyteorder("=")))
        pos += count * elements.dtype.itemsize
        if pos != end:
            raise pgcopy.CopyFormatError("array field length does not match its elements")
    if bytes(view[pos:]) != pgcopy.TRAILER:
        raise pgcopy.CopyFormatError("expected one row, then the trailer")
    return out


def fetch_cycle_sums(
    conn: psycopg.Connection,
    *,
    meter_ids: np.ndarray,
    channels: tuple[int, ...],
    first_day: date,
    n_days: int,
    start: np.ndarray,
    end: np.ndarray,
) -> CycleSums:
    """CycleSums of the given meters (sorted ids; see cycle_sums_query), in a transaction on `conn` (its settings
    CYCLE_SUM_SETTINGS end with it)."""
    wires = [w for _, w in CYCLE_SUM_COLUMNS]
    if meter_ids.size == 0:
        arrays = [np.zeros(0, np.dtype(w).newbyteorder("=")) for w in wires]
    else:
        query = cycle_sums_query(
            meter_ids=meter_ids, channels=channels, first_day=first_day, n_days=n_days, start=start, end=end
        )
        with conn.transaction():
            for setting in CYCLE_SUM_SETTINGS:
                conn.execute(setting)
            buf = copy_out_bytes(conn, query)
        arrays = decode_array_row(buf, wires)
        if len({a.shape[0] for a in arrays}) > 1:
            raise pgcopy.CopyFormatError("the cycle sums' arrays differ in length")
    c = dict(zip((name for name, _ in CYCLE_SUM_COLUMNS), arrays, strict=True))
    key = series_key(c["meter_id"], c["channel_id"])
    if (np.diff(key) <= 0).any():  # array_agg keeps the sorted input's order; should it not, sort
        order = np.argsort(key, kind="stable")
        c = {k: v[order] for k, v in c.items()}
    return CycleSums(
        meter_id=c["meter_id"].astype(np.int32),
        channel_id=c["channel_id"].astype(np.int16),
        day_mask=c["day_mask"].astype(np.int64).view(np.uint64),
        energy_to_end=c["energy_to_end"].astype(np.float64),
        energy_to_start=c["energy_to_start"].astype(np.float64),
        estimated_to_end=c["estimated_to_end"].astype(np.float64),
        estimated_to_start=c["estimated_to_start"].astype(np.float64),
        n_measured=c["n_measured"].astype(np.int64),
        n_estimated=c["n_estimated"].astype(np.int64),
        flags=c["flags"].astype(np.int64).astype(np.uint32),
        version_sum=c["version_sum"].astype(np.int64),
    )


# Reading the validated days is PostgreSQL's work (an index scan and the sums, one backend per connection): a
# partition's meters are read on this many connections at once, a contiguous range each (never PostgreSQL's
# parallel query, whose partial sums would be added in another order). 2: the billing host's cores.
FETCH_CONNECTIONS = 2


def fetch_cycle_sums_concurrently(
    conninfo: str,
    *,
    meter_ids: np.ndarray,
    channels: tuple[int, ...],
    first_day: date,
    n_days: int,
    start: np.ndarray,
    end: np.ndarray,
    connections: int = FETCH_CONNECTIONS,
) -> CycleSums:
    """fetch_cycle_sums on `connections` new connections to `conninfo` at once, one contiguous range of the meters
    each (threads: the work is the database's)."""
    ranges = [r for r in np.array_split(np.arange(meter_ids.shape[0]), max(connections, 1)) if r.size] or [np.arange(0)]

    def fetch(rows: np.ndarray) -> CycleSums:
        with psycopg.connect(conninfo, autocommit=True) as conn:
            return fetch_cycle_sums(
                conn,
                meter_ids=meter_ids[rows],
                channels=channels,
                first_day=first_day,
                n_days=n_days,
                start=start[rows],
                end=end[rows],
            )

    if len(ranges) == 1:
        return fetch(ranges[0])
    with ThreadPoolExecutor(max_workers=len(ranges)) as pool:
        return CycleSums.concat(list(pool.map(fetch, ranges)))
