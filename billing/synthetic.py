"""Synthetic register reads for tests and benchmarks: vectorized numpy, no per-reading Python.

Cumulative registers wrap at 10**digits like real ones; TOU rate registers (normal / peak / off-peak) follow the
2019 windows (Mon-Sat peak 09:30-11:30 and 17:00-20:00, off-peak 22:00-04:00), so T1 + T2 + T3 = total.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import psycopg

from amr import pgcopy
from amr.timebase import DAY_S, local_midnight_utc_s, local_second_of_day_s, local_weekday
from billing.load import READING_ROWS
from billing.vee import ReadingArrays

# Household evening-heavy shape per hour of day (relative), from the consumption notes: peak 20:00-23:00.
HOURLY_SHAPE = np.array(
    [
        0.6,
        0.5,
        0.5,
        0.5,
        0.5,
        0.6,
        0.8,
        0.9,
        0.8,
        0.7,
        0.7,
        0.8,
        0.9,
        0.9,
        0.8,
        0.8,
        0.9,
        1.1,
        1.4,
        1.6,
        1.8,
        1.9,
        1.7,
        1.0,
    ]
)


def tou_rate_of(ts_start_s: np.ndarray) -> np.ndarray:
    """0 normal, 1 peak, 2 off-peak for intervals starting at these UTC instants (2019 windows)."""
    minute = local_second_of_day_s(ts_start_s) // 60
    weekday = local_weekday(ts_start_s)
    peak = (((minute >= 570) & (minute < 690)) | ((minute >= 1020) & (minute < 1200))) & (weekday != 6)
    off = (minute >= 1320) | (minute < 240)
    return np.where(peak, 1, np.where(off, 2, 0)).astype(np.int8)


def register_reads(
    *,
    meter_ids: np.ndarray,
    first_day: date,
    n_days: int,
    interval_s: int,
    kwh_per_day: np.ndarray,
    rng: np.random.Generator,
    tou: bool = False,
    digits: int = 6,
    start_kwh: np.ndarray | None = None,
) -> ReadingArrays:
    """Reads at every interval boundary from first_day's local midnight through n_days (inclusive of the closing
    midnight), sorted by (meter, channel, ts). Channels: 1 (total), plus 2/3/4 when tou."""
    n_m = meter_ids.shape[0]
    steps = n_days * DAY_S // interval_s
    t0 = local_midnight_utc_s(first_day)
    ts = t0 + np.arange(steps + 1, dtype=np.int64) * interval_s
    starts = ts[:-1]
    hour = local_second_of_day_s(starts) // 3600
    shape = HOURLY_SHAPE[hour] if interval_s < DAY_S else np.ones(steps)
    shape = shape / shape.mean() * interval_s / DAY_S
    inc = (kwh_per_day[:, None] * shape[None, :]) * rng.gamma(8.0, 1 / 8.0, size=(n_m, steps))
    inc = np.round(inc, 2)
    modulus = 10.0**digits
    base = start_kwh if start_kwh is not None else np.round(rng.uniform(0, modulus * 0.9, n_m), 2)
    series = [np.concatenate([base[:, None], base[:, None] + np.cumsum(inc, axis=1)], axis=1)]
    if tou:
        rate = tou_rate_of(starts)
        for r in range(3):
            part = np.where(rate[None, :] == r, inc, 0.0)
            b = np.round(base * (0.5, 0.2, 0.3)[r], 2)
            series.append(np.concatenate([b[:, None], b[:, None] + np.cumsum(part, axis=1)], axis=1))
    n_ch = len(series)
    values = np.stack(series, axis=1) % modulus  # (meters, channels, reads)
    n_reads = steps + 1
    return ReadingArrays(
        meter_id=np.repeat(meter_ids.astype(np.int32), n_ch * n_reads),
        channel_id=np.tile(np.repeat(np.arange(1, n_ch + 1, dtype=np.int16), n_reads), n_m),
        ts_s=np.tile(ts, n_m * n_ch),
        value=np.round(values.reshape(-1), 2),
        quality=np.zeros(n_m * n_ch * n_reads, np.int16),
    )


COPY_CHUNK_ROWS = 1_000_000  # rows per write: a ~42 MB buffer


def copy_readings(conn: psycopg.Connection, r: ReadingArrays) -> int:
    """Binary COPY into readings (needs INSERT on readings: the owner or ingest role)."""
    with (
        conn.cursor() as cur,
        cur.copy(f"COPY readings ({', '.join(READING_ROWS.names)}) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.write(pgcopy.HEADER)
        for lo in range(0, len(r), COPY_CHUNK_ROWS):
            hi = min(lo + COPY_CHUNK_ROWS, len(r))
            columns = {
                "meter_id": r.meter_id[lo:hi],
                "channel_id": r.channel_id[lo:hi],
                "ts": pgcopy.unix_s_to_pg_us(r.ts_s[lo:hi]),
                "value": r.value[lo:hi],
                "quality": r.quality[lo:hi],
            }
            copy.write(READING_ROWS.encode_tuples(columns))
        copy.write(pgcopy.TRAILER)
    return len(r)


def concat(parts: list[ReadingArrays]) -> ReadingArrays:
    """Concatenate and sort by (meter, channel, ts)."""
    cat = {
        k: np.concatenate([getattr(p, k) for p in parts])
        for k in ("meter_id", "channel_id", "ts_s", "value", "quality")
    }
    order = np.lexsort((cat["ts_s"], cat["channel_id"], cat["meter_id"]))
    return ReadingArrays(**{k: np.ascontiguousarray(v[order]) for k, v in cat.items()})
