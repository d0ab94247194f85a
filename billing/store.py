"""Writing VEE and billing results: runs, daily consumption (binary COPY), exceptions and bills (CSV COPY)."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from amr import pgcopy
from billing.vee import VeeResult

COPY_CHUNK_ROWS = 1_000_000  # rows per COPY write: bounds the temporary big-endian buffer to ~50 MB
DAILY_ROWS = pgcopy.FixedRows(
    ("meter_id", "int4"),
    ("channel_id", "int2"),
    ("day", "date"),
    ("measured_kwh", "float8"),
    ("estimated_kwh", "float8"),
    ("n_measured", "int4"),
    ("n_estimated", "int4"),
    ("flags", "int4"),
    ("methods", "int2"),
    ("vee_run_id", "int8"),
)


def insert_run(
    conn: psycopg.Connection,
    *,
    kind: str,
    period: str,
    city: str | None,
    power_company: str | None,
    rules_sha256: str,
    tariffs_sha256: str,
) -> int:
    row = conn.execute(
        "INSERT INTO billing_runs (kind, period, city, power_company, status, rules_sha256, tariffs_sha256) "
        "VALUES (%s, %s, %s, %s, 'running', %s, %s) RETURNING run_id",
        (kind, period, city, power_company, rules_sha256, tariffs_sha256),
    ).fetchone()
    assert row is not None
    return int(row[0])


def finish_run(conn: psycopg.Connection, run_id: int, **fields: Any) -> None:
    fields = {k: (json.dumps(v) if isinstance(v, dict) else v) for k, v in fields.items()}
    assignments = sql.SQL(", ").join(sql.SQL("{} = {}").format(sql.Identifier(k), sql.Placeholder(k)) for k in fields)
    conn.execute(
        sql.SQL("UPDATE billing_runs SET finished_at = now(), {} WHERE run_id = {}").format(
            assignments, sql.Literal(run_id)
        ),
        fields,
    )


def write_daily(conn: psycopg.Connection, vee: VeeResult, *, multiplier: np.ndarray, run_id: int) -> int:
    """Replace the daily rows of these series' meters over the window with this run's; energy x multiplier [kWh].
    multiplier: one per series."""
    s_count, d_count = vee.measured.shape
    if s_count == 0:
        return 0
    days = vee.window.days()
    conn.execute(
        "DELETE FROM daily_consumption WHERE meter_id = ANY(%s) AND day >= %s AND day < %s",
        ([int(m) for m in np.unique(vee.series_meter)], days[0].item(), (days[-1] + 1).item()),
    )
    mult = np.asarray(multiplier, dtype=np.float64)[:, None]
    columns = {
        "meter_id": np.repeat(vee.series_meter, d_count),
        "channel_id": np.repeat(vee.series_channel, d_count),
        "day": np.tile(pgcopy.unix_days_to_pg_days(days), s_count),
        "measured_kwh": (vee.measured * mult).ravel(),
        "estimated_kwh": (vee.estimated * mult).ravel(),
        "n_measured": vee.n_measured.ravel(),
        "n_estimated": vee.n_estimated.ravel(),
        "flags": vee.day_flags.ravel().astype(np.int32),
        "methods": vee.day_methods.ravel(),
        "vee_run_id": np.full(s_count * d_count, run_id, dtype=np.int64),
    }
    return copy_fixed_rows(conn, "daily_consumption", DAILY_ROWS, columns)


def copy_fixed_rows(
    conn: psycopg.Connection,
    table: str,
    rows: pgcopy.FixedRows,
    columns: Mapping[str, np.ndarray],
    *,
    chunk_rows: int = COPY_CHUNK_ROWS,
) -> int:
    """Binary COPY of equal-length wire-value columns (`rows`' names) into `table`, encoded `chunk_rows` at a time;
    returns the rows written."""
    n_rows = len(next(iter(columns.values())))
    query = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in rows.names)
    )
    with conn.cursor() as cur, cur.copy(query) as copy:
        copy.write(pgcopy.HEADER)
        for lo in range(0, n_rows, chunk_rows):
            copy.write(rows.encode_tuples({k: v[lo : lo + chunk_rows] for k, v in columns.items()}))
        copy.write(pgcopy.TRAILER)
    return n_rows


def copy_frame(conn: psycopg.Connection, table: str, frame: pd.DataFrame, *, not_null: tuple[str, ...] = ()) -> int:
    """COPY a DataFrame's columns (same names as the table's) as CSV; not_null: text columns whose empty strings
    stay empty strings (CSV reads an unquoted empty field as NULL)."""
    if frame.empty:
        return 0
    options: sql.Composable = sql.SQL("FORMAT csv")
    if not_null:
        options = sql.SQL("FORMAT csv, FORCE_NOT_NULL ({})").format(
            sql.SQL(", ").join(sql.Identifier(c) for c in not_null)
        )
    query = sql.SQL("COPY {} ({}) FROM STDIN ({})").format(
        sql.Identifier(table), sql.SQL(", ").join(sql.Identifier(c) for c in frame.columns), options
    )
    with conn.cursor() as cur, cur.copy(query) as copy:
        for lo in range(0, len(frame), COPY_CHUNK_ROWS):
            buf = io.StringIO()
            frame.iloc[lo : lo + COPY_CHUNK_ROWS].to_csv(
                buf, header=False, index=False, date_format="%Y-%m-%d %H:%M:%S%z"
            )
            copy.write(buf.getvalue())
    return len(frame)


def write_exceptions(conn: psycopg.Connection, exceptions: pd.DataFrame, *, run_id: int) -> int:
    return copy_frame(conn, "vee_exceptions", exceptions.assign(run_id=run_id))
