"""Writing a generated fleet into the `meters` table, and reading coverage back (the database side).

One transaction: check the power companies, remove the previous generated fleet (only with replace=True),
reserve a block of meter ids from the table's identity sequence, binary COPY, record the run in fleet_runs.
The generated meters are first_meter_id + row index; ids are never reused, so readings of a replaced fleet
cannot attach themselves to new meters.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date

import numpy as np
import psycopg
from psycopg import sql
from psycopg.copy import QueuedLibpqWriter

from amr.errors import AmrError
from amr.pgcopy import HEADER, TRAILER, encode_rows
from fleet.calibration import COMPANIES, HORIZON
from fleet.counts import Coverage
from fleet.registry import Fleet

# Rows per COPY block: ~20 MB of binary tuples, large enough that numpy's per-call overhead vanishes and small
# enough to keep memory flat and the progress bar moving.
ROWS_PER_BLOCK = 100_000
# Below this many rows the incremental index maintenance of a COPY is cheaper than dropping and rebuilding.
REBUILD_INDEXES_FROM_ROWS = 200_000
_LOCK_KEY = 0x666C6565  # 'flee': one fleet writer at a time


@dataclass(frozen=True, kw_only=True)
class FleetRun:
    run_id: int
    meters: int
    first_meter_id: int
    last_meter_id: int
    replaced_meters: int
    elapsed_s: float
    phases: dict[str, float]  # seconds per phase: prepare, copy, each index/constraint restored, commit, analyze


def _check_companies(conn: psycopg.Connection) -> None:
    found: dict[str, str] = dict(conn.execute("SELECT code, city FROM power_companies").fetchall())
    wrong = [c.code for c in COMPANIES if found.get(c.code) != c.city]
    if wrong:
        raise AmrError(f"power_companies lacks (or puts in another city) {', '.join(wrong)}: run `amr db up`")


def _remove_previous(conn: psycopg.Connection, *, replace: bool) -> tuple[int, bool]:
    """Delete the active generated fleet (refused unless replace); returns (meters removed, whether the table
    was truncated in this transaction, which allows COPY FREEZE and rebuilding indexes after the load)."""
    active = conn.execute(
        "SELECT run_id, meters, first_meter_id, last_meter_id FROM fleet_runs WHERE replaced_at IS NULL"
    ).fetchone()
    if active is not None and not replace:
        run_id, meters, _, _ = active
        raise AmrError(
            f"a generated fleet is in the meters table (run {run_id}, {meters:,} meters): pass --replace to replace it"
        )
    first, last = (active[2], active[3]) if active is not None else (0, -1)
    others = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM meters WHERE meter_id NOT BETWEEN %s AND %s)", (first, last)
    ).fetchone()
    truncated = False
    if others is not None and not others[0]:
        try:  # only generated meters (or none): TRUNCATE is instant, but refused when a table references meters
            with conn.transaction():
                conn.execute("TRUNCATE meters")
            truncated = True
        except psycopg.errors.FeatureNotSupported:
            pass
    if active is None:
        return 0, truncated
    if not truncated:
        conn.execute("DELETE FROM meters WHERE meter_id BETWEEN %s AND %s", (first, last))
    conn.execute("UPDATE fleet_runs SET replaced_at = now() WHERE run_id = %s", (active[0],))
    return int(active[1]), truncated


def _suspend_checks(conn: psycopg.Connection, *, rebuild: bool) -> list[tuple[str, str]]:
    """Drop the meters table's foreign keys (checked row by row during a COPY: most of its time) and, with
    rebuild, its indexes (one sorted build after the load beats millions of insertions): plain indexes, and the
    primary key and unique constraints too unless another table's foreign key depends on them. Returns the
    (name, statement) pairs that restore everything, in order."""
    restore: list[tuple[str, str]] = []
    constraints = conn.execute(
        "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint"
        " WHERE conrelid = 'meters'::regclass AND contype IN ('f', 'p', 'u') ORDER BY contype DESC, conname"
    ).fetchall()
    referenced = conn.execute(
        "SELECT EXISTS (SELECT 1 FROM pg_constraint WHERE confrelid = 'meters'::regclass)"
    ).fetchone()
    keys_free = rebuild and referenced is not None and not referenced[0]
    if rebuild:
        for name, definition in conn.execute(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid"
            " WHERE x.indrelid = 'meters'::regclass"
            "   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)"
        ).fetchall():
            conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(name)))
            restore.append((name, definition))
    # 'u', 'p' (indexes) before 'f' (whose validation then uses them) when restoring.
    for name, kind, definition in constraints:
        if kind == "f" or keys_free:
            conn.execute(sql.SQL("ALTER TABLE meters DROP CONSTRAINT {}").format(sql.Identifier(name)))
            restore.append(
                (name, f"ALTER TABLE meters ADD CONSTRAINT {sql.Identifier(name).as_string(conn)} {definition}")
            )
    return restore


def _reserve_ids(conn: psycopg.Connection, n: int) -> int:
    row = conn.execute(
        "SELECT greatest(nextval(pg_get_serial_sequence('meters', 'meter_id')),"
        " (SELECT coalesce(max(meter_id), 0) + 1 FROM meters))"
    ).fetchone()
    assert row is not None
    first = int(row[0])
    conn.execute("SELECT setval(pg_get_serial_sequence('meters', 'meter_id'), %s)", (first + max(n, 1) - 1,))
    return first


def write_fleet(
    conninfo: str, fleet: Fleet, *, replace: bool = False, progress: Callable[[int], None] | None = None
) -> FleetRun:
    """Write `fleet` into `meters` in one transaction (the owner role's conninfo); `progress(rows)` is called
    after each COPY block. Raises AmrError when a generated fleet exists and replace is False."""
    started = time.perf_counter()
    phases: dict[str, float] = {}
    mark = started

    def phase(name: str) -> None:
        nonlocal mark
        now = time.perf_counter()
        phases[name] = now - mark
        mark = now

    n = len(fleet)
    with psycopg.connect(conninfo) as conn:
        conn.execute("SET LOCAL synchronous_commit = off")  # a crash before the flush loses the run, no more
        conn.execute("SET LOCAL maintenance_work_mem = '1GB'")  # index rebuilds sort in memory at scale 1.0
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
        _check_companies(conn)
        replaced, truncated = _remove_previous(conn, replace=replace)
        first = _reserve_ids(conn, n)
        restore = _suspend_checks(conn, rebuild=truncated and n >= REBUILD_INDEXES_FROM_ROWS)
        phase("prepare")
        columns = fleet.copy_columns(first)
        names = ", ".join(c.name for c in columns)
        # FREEZE: rows of a table truncated in this transaction are written frozen (no later rewrite by VACUUM).
        options = "FORMAT BINARY, FREEZE" if truncated else "FORMAT BINARY"
        with (
            conn.cursor() as cur,
            cur.copy(f"COPY meters ({names}) FROM STDIN ({options})", writer=QueuedLibpqWriter(cur)) as copy,
        ):
            copy.write(HEADER)
            for start in range(0, n, ROWS_PER_BLOCK):
                rows = np.arange(start, min(n, start + ROWS_PER_BLOCK), dtype=np.int64)
                copy.write(encode_rows(columns, rows))
                if progress is not None:
                    progress(len(rows))
            copy.write(TRAILER)
        phase("copy")
        for name, statement in restore:  # rebuild indexes, re-validate foreign keys in one pass each
            conn.execute(statement.encode())
            phase(name)
        row = conn.execute(
            "INSERT INTO fleet_runs (seed, scale, horizon, meters, first_meter_id, last_meter_id, elapsed_s)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING run_id",
            (fleet.seed, fleet.scale, HORIZON, n, first, first + max(n, 1) - 1, time.perf_counter() - started),
        ).fetchone()
        assert row is not None
        conn.commit()
        phase("commit")
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("ANALYZE meters")  # fresh planner statistics for the dashboards' queries
    phase("analyze")
    return FleetRun(
        run_id=int(row[0]),
        meters=n,
        first_meter_id=first,
        last_meter_id=first + max(n, 1) - 1,
        replaced_meters=replaced,
        elapsed_s=time.perf_counter() - started,
        phases=phases,
    )


def fetch_active_run(conninfo: str) -> tuple[int, int] | None:
    """(run id, meters) of the generated fleet in the meters table, None when there is none."""
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT run_id, meters FROM fleet_runs WHERE replaced_at IS NULL").fetchone()
    return (int(row[0]), int(row[1])) if row else None


def fetch_coverage(conninfo: str, as_of: date, *, by: str = "city") -> dict[str, Coverage]:
    """Customers / electronic / remote per city (by='city') or power company (by='company') on `as_of`,
    counted over the whole meters table."""
    group = {"city": "city", "company": "power_company"}[by]
    query = (
        f"SELECT {group}, count(*) FILTER (WHERE connected_on <= %(d)s),"
        "  count(*) FILTER (WHERE installed_on <= %(d)s), count(*) FILTER (WHERE remote_since <= %(d)s)"
        f" FROM meters GROUP BY {group}"
    )
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(query, {"d": as_of}).fetchall()
    return {key: Coverage(customers=c, electronic=e, remote=r) for key, c, e, r in rows}
