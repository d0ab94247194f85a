"""One batch, one transaction: readings (binary COPY, duplicates dropped by the unique key), events, the
reading-network tables and dead letters. The MQTT acks for a batch follow only after this commits.

Idempotent fast path (measured in benchmarks/bench_ingest.py, see its docstring): COPY straight into the
hypertable inside a SAVEPOINT. Duplicates are rare in steady state (QoS 1 redelivery after a reconnect, a DCU
replaying its buffer), so almost every batch costs what raw COPY costs. Only when that COPY hits a unique
violation does the batch roll back to the savepoint and take the staging path: COPY into a session temp table,
then ``INSERT ... SELECT ... ON CONFLICT DO NOTHING`` in index order. No path ever goes row by row.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
import psycopg
from psycopg import errors

from amr.messages import ClientStatus
from amr.pgcopy import FixedRows, unix_s_to_pg_us
from ingest.decode import Validated, clean_text, column_rows_to_arrays
from ingest.last_seen import write_last_seen
from ingest.limits import MAX_REASON_CHARS
from ingest.poison import message_digest, settle
from ingest.strategy import Strategy
from ingest.touched import mark_touched, touched_units

STAGING_TABLE = "ingest_staging"
# Every reading field is NOT NULL and fixed-width, so a row is one 46-byte numpy record (amr.pgcopy.FixedRows).
READING_ROWS = FixedRows(
    ("ts", "timestamptz"), ("meter_id", "int4"), ("channel_id", "int2"), ("value", "float8"), ("quality", "int2")
)
COPY_READINGS_SQL = f"COPY {{table}} ({', '.join(READING_ROWS.names)}) FROM STDIN (FORMAT BINARY)"


def sort_order(
    meter_id: npt.NDArray[np.int32], channel_id: npt.NDArray[np.int16], ts_us: npt.NDArray[np.int64]
) -> npt.NDArray[np.intp]:
    """Row order of the unique index (meter, channel, ts): B-tree inserts touch neighbouring pages, and two
    workers inserting overlapping keys take their locks in the same order (no deadlock)."""
    return np.lexsort((ts_us, channel_id, meter_id))


def encode_readings(
    ts_us: npt.NDArray[np.int64],
    meter_id: npt.NDArray[np.int32],
    channel_id: npt.NDArray[np.int16],
    value: npt.NDArray[np.float64],
    quality: npt.NDArray[np.int16],
) -> bytes:
    """The complete COPY stream (header, rows, trailer) for equal-length column arrays; ts_us [µs since 2000]."""
    return READING_ROWS.encode(
        {"ts": ts_us, "meter_id": meter_id, "channel_id": channel_id, "value": value, "quality": quality}
    )


@dataclass(kw_only=True)
class DeadLetter:
    source: str
    topic: str
    payload: bytes
    reason: str

    @property
    def message_sha256(self) -> bytes:
        return message_digest(self.topic, self.payload)


@dataclass(kw_only=True)
class ReadingColumns:
    """A batch's readings as sorted numpy columns (index order), ready for COPY."""

    ts_us: np.ndarray
    meter_id: np.ndarray
    channel_id: np.ndarray
    value: np.ndarray
    quality: np.ndarray

    @classmethod
    def from_validated(cls, parts: list[Validated]) -> ReadingColumns:
        """v2 parts bring lists converted once for the whole batch (or arrays), v1/DCU parts per-item lists."""
        arrays = [p.arrays for p in parts if p.arrays is not None and len(p.arrays)]
        whole = [p.columns for p in parts if p.columns is not None]
        if whole:
            arrays.append(column_rows_to_arrays(whole))
        columns: list[tuple[np.ndarray, ...]] = [(a.ts_s, a.meter_id, a.channel_id, a.value, a.quality) for a in arrays]
        listed = [p for p in parts if p.ts_s]
        if listed:
            ts_s = np.fromiter((t for p in listed for t in p.ts_s), dtype=np.float64)
            n = len(ts_s)
            columns.append((
                ts_s,
                np.fromiter((m for p in listed for m in p.meter_id), dtype=np.int32, count=n),
                np.fromiter((c for p in listed for c in p.channel_id), dtype=np.int16, count=n),
                np.fromiter((v for p in listed for v in p.value), dtype=np.float64, count=n),
                np.fromiter((q for p in listed for q in p.quality), dtype=np.int16, count=n),
            ))  # fmt: skip
        if not columns:
            empty = (np.float64, np.int32, np.int16, np.float64, np.int16)
            columns.append(tuple(np.empty(0, dtype=d) for d in empty))
        ts_s, meter, channel, value, quality = (np.concatenate(c) for c in zip(*columns, strict=True))
        return cls.from_arrays(unix_s_to_pg_us(ts_s), meter, channel, value, quality)

    @classmethod
    def from_arrays(
        cls, ts_us: np.ndarray, meter: np.ndarray, channel: np.ndarray, value: np.ndarray, quality: np.ndarray
    ) -> ReadingColumns:
        order = sort_order(meter, channel, ts_us)
        return cls(
            ts_us=ts_us[order], meter_id=meter[order], channel_id=channel[order], value=value[order],
            quality=quality[order],
        )  # fmt: skip

    def __len__(self) -> int:
        return len(self.ts_us)

    def copy_data(self) -> bytes:
        return encode_readings(self.ts_us, self.meter_id, self.channel_id, self.value, self.quality)

    def last_seen(self) -> tuple[np.ndarray, np.ndarray]:
        """Per meter, its newest reading [µs since 2000] (columns are sorted by meter first)."""
        if not len(self):
            return self.meter_id[:0], self.ts_us[:0]
        starts = np.flatnonzero(np.r_[True, self.meter_id[1:] != self.meter_id[:-1]])
        newest = np.maximum.reduceat(self.ts_us, starts)
        return self.meter_id[starts], newest


@dataclass(kw_only=True)
class BatchContent:
    readings: ReadingColumns | None = None
    events: list[tuple[Any, int, str, str | None]] = field(default_factory=list)
    statuses: list[ClientStatus] = field(default_factory=list)
    comm_stats: list[tuple[int, str, Any]] = field(default_factory=list)  # (meter_id, source, MeterCommStats)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    settled: list[bytes] = field(default_factory=list)  # poison-ledger digests of redelivered messages in the batch

    @classmethod
    def from_parts(
        cls, parts: list[Validated], dead_letters: list[DeadLetter], settled: list[bytes] | None = None
    ) -> BatchContent:
        with_rows = [p for p in parts if p.rows]
        return cls(
            readings=ReadingColumns.from_validated(with_rows) if with_rows else None,
            events=[e for p in parts for e in p.events],
            statuses=[p.status for p in parts if p.status is not None],
            comm_stats=[(mid, p.source, m) for p in parts for mid, m in p.comm_stats],
            dead_letters=dead_letters,
            settled=settled or [],
        )


@dataclass
class FlushResult:
    inserted: int = 0
    duplicates: int = 0
    events: int = 0
    dead_letters: int = 0
    used_staging: bool = False


def prepare_session(conn: psycopg.Connection[Any]) -> None:
    """The per-connection staging table (temporary: no WAL, private to the session, emptied at each commit)."""
    conn.execute(
        f"CREATE TEMP TABLE IF NOT EXISTS {STAGING_TABLE} (ts timestamptz NOT NULL, meter_id integer NOT NULL,"
        " channel_id smallint NOT NULL, value double precision NOT NULL, quality smallint NOT NULL)"
        " ON COMMIT DELETE ROWS"
    )


def _copy(cur: psycopg.Cursor[Any], table: str, data: bytes) -> int:
    with cur.copy(COPY_READINGS_SQL.format(table=table)) as copy:
        copy.write(data)
    return cur.rowcount


def write_readings(conn: psycopg.Connection[Any], data: bytes, rows: int, strategy: Strategy) -> tuple[int, bool]:
    """Store one COPY stream inside the caller's transaction; (rows inserted, whether staging was needed)."""
    with conn.cursor() as cur:
        if strategy is Strategy.RAW:
            return _copy(cur, "readings", data), False
        if strategy is Strategy.SAVEPOINT:
            try:
                with conn.transaction():
                    return _copy(cur, "readings", data), False
            except errors.UniqueViolation:
                pass  # rolled back to the savepoint: this batch holds a duplicate, take the staging path
        _copy(cur, STAGING_TABLE, data)
        # Rows arrive already in index order; ON CONFLICT without a target needs only INSERT privilege.
        cur.execute(
            "INSERT INTO readings (ts, meter_id, channel_id, value, quality)"
            f" SELECT ts, meter_id, channel_id, value, quality FROM {STAGING_TABLE} ON CONFLICT DO NOTHING"
        )
        return cur.rowcount, True


def write_batch(
    conn: psycopg.Connection[Any], batch: BatchContent, strategy: Strategy, *, last_seen: bool = True
) -> FlushResult:
    """Everything of one batch in ONE transaction (the caller acks its messages after this returns); with
    `last_seen` False the caller gathers the readings' meter_last_seen and writes it later (ingest.last_seen)."""
    result = FlushResult()
    with conn.transaction(), conn.cursor() as cur:
        if batch.readings is not None and len(batch.readings):
            cols = batch.readings
            result.inserted, result.used_staging = write_readings(conn, cols.copy_data(), len(cols), strategy)
            result.duplicates = len(cols) - result.inserted
            if result.inserted:  # a batch of replays changes nothing the VEE service has not seen
                mark_touched(cur, *touched_units(cols.meter_id, cols.ts_us))
            if last_seen:
                write_last_seen(cur, *cols.last_seen())
        if batch.events:
            ts, mids, names, details = (list(c) for c in zip(*batch.events, strict=True))
            cur.execute(
                "INSERT INTO meter_events (ts, meter_id, event, detail)"
                " SELECT t, m, e, d::jsonb FROM unnest(%s::timestamptz[], %s::integer[], %s::text[], %s::text[])"
                " AS u(t, m, e, d) ORDER BY m, e, t ON CONFLICT DO NOTHING",
                (ts, mids, names, details),
            )
            result.events = cur.rowcount
        if batch.statuses:
            cur.executemany(
                "INSERT INTO collector_status (source, kind, state, updated_at, spool_depth, reads_per_s)"
                " VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (source) DO UPDATE SET kind = excluded.kind,"
                " state = excluded.state, updated_at = excluded.updated_at, spool_depth = excluded.spool_depth,"
                " reads_per_s = excluded.reads_per_s WHERE collector_status.updated_at <= excluded.updated_at",
                [(s.source, s.kind, s.state, s.ts, s.spool_depth, s.reads_per_s) for s in batch.statuses],
            )
        if batch.comm_stats:
            cur.executemany(
                "INSERT INTO meter_comm_stats (meter_id, source, attempts, successes, last_attempt_at,"
                " last_success_at, last_error, last_error_at, updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s,"
                " now()) ON CONFLICT (meter_id) DO UPDATE SET source = excluded.source,"
                " attempts = excluded.attempts, successes = excluded.successes,"
                " last_attempt_at = coalesce(excluded.last_attempt_at, meter_comm_stats.last_attempt_at),"
                " last_success_at = coalesce(excluded.last_success_at, meter_comm_stats.last_success_at),"
                " last_error = coalesce(excluded.last_error, meter_comm_stats.last_error),"
                " last_error_at = coalesce(excluded.last_error_at, meter_comm_stats.last_error_at),"
                " updated_at = now()",
                sorted(
                    (
                        mid,
                        source,
                        m.attempts,
                        m.successes,
                        m.last_attempt_at,
                        m.last_success_at,
                        clean_text(m.last_error) if m.last_error is not None else None,
                        m.last_error_at,
                    )
                    for mid, source, m in batch.comm_stats
                ),
            )
        if batch.dead_letters:
            result.dead_letters = write_dead_letters(cur, batch.dead_letters)
        settle(cur, batch.settled)
    return result


def write_dead_letters(cur: psycopg.Cursor[Any], letters: list[DeadLetter]) -> int:
    """Store dead letters once each (a redelivered or replayed message is already there); returns how many are new."""
    stored = 0
    for d in letters:  # few per batch; executemany would not say which were new
        cur.execute(
            "INSERT INTO dead_letters (source, topic, payload, reason, message_sha256) VALUES (%s, %s, %s, %s, %s)"
            " ON CONFLICT DO NOTHING",
            (
                clean_text(d.source),
                d.topic.replace("\x00", ""),
                d.payload,
                clean_text(d.reason, max_chars=MAX_REASON_CHARS),
                d.message_sha256,
            ),
        )
        stored += max(cur.rowcount, 0)
    return stored


def write_ingest_status(
    conn: psycopg.Connection[Any], *, source: str, state: str, reads_per_s: float, lag_s: float, detail: str
) -> None:
    """The worker's own row in collector_status (kind 'ingest')."""
    conn.execute(
        "INSERT INTO collector_status (source, kind, state, updated_at, reads_per_s, lag_s, detail)"
        " VALUES (%s, 'ingest', %s, now(), %s, %s, %s::jsonb) ON CONFLICT (source) DO UPDATE SET kind = 'ingest',"
        " state = excluded.state, updated_at = excluded.updated_at, reads_per_s = excluded.reads_per_s,"
        " lag_s = excluded.lag_s, detail = excluded.detail",
        (source, state, reads_per_s, lag_s, detail),
    )
