"""Reading a ``COPY ... TO STDOUT`` straight from libpq.

psycopg's Copy iterator runs a generator and a wait per row (~0.5 µs of Python each): a city's day of readings is
14.5 M rows, so that alone was seconds of a VEE pass. Here each row is one ``PQgetCopyData`` call; when libpq has
no row buffered, the loop waits for the socket in ``select`` (the GIL released, as psycopg's own wait does, so other
threads run while the server works) and reads what arrived. The COPY's final result is taken and checked as
psycopg does (an error raises its psycopg exception); the connection is then ready for the next statement.
"""

from __future__ import annotations

import select
from collections.abc import Callable

import psycopg
from psycopg import errors, pq, sql

Sink = Callable[[memoryview], object]


def copy_out(conn: psycopg.Connection, query: sql.Composable | str, sink: Sink, params: tuple[object, ...] = ()) -> int:
    """Run `query` (a ``COPY ... TO STDOUT``) and hand each data row's bytes to `sink` (valid only during the call);
    returns the bytes read."""
    total = 0
    with conn.cursor() as cur, cur.copy(query, params or None):  # type: ignore[arg-type]
        pgconn = conn.pgconn
        get = pgconn.get_copy_data
        while True:
            n, data = get(1)
            if n > 0:
                sink(data)
                total += n
            elif n == 0:  # nothing buffered: wait for the server
                select.select([pgconn.socket], [], [])
                pgconn.consume_input()
            else:
                break
        _finish(conn)
    return total


def copy_out_bytes(conn: psycopg.Connection, query: sql.Composable | str, params: tuple[object, ...] = ()) -> bytearray:
    """The data rows of `query` (a ``COPY ... TO STDOUT``), concatenated."""
    buf = bytearray()
    copy_out(conn, query, buf.extend, params)
    return buf


def _finish(conn: psycopg.Connection) -> None:
    """Take the COPY's final result (and any other) and raise its error, if any."""
    pgconn = conn.pgconn
    results = []
    while (res := pgconn.get_result()) is not None:
        results.append(res)
    failed = [r for r in results if r.status != pq.ExecStatus.COMMAND_OK]
    if failed:
        raise errors.error_from_result(failed[0], encoding=conn.info.encoding)
    if not results:
        raise psycopg.OperationalError(f"COPY ended without a result: {pgconn.get_error_message()}")
