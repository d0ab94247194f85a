"""amr.db.copy_out against a real PostgreSQL: the bytes psycopg's Copy iterator gives, errors raised as psycopg's,
the connection usable after, and other threads running while the server works."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from amr.db.copy_out import copy_out, copy_out_bytes

ROWS = "COPY (SELECT g::int4, g::float8 / 3, repeat('x', g % 50) FROM generate_series(1, 200000) g) TO STDOUT"


def _via_psycopg(conn: psycopg.Connection, query: str) -> bytes:
    buf = bytearray()
    with conn.cursor() as cur, cur.copy(query) as copy:
        for chunk in copy:
            buf += chunk
    return bytes(buf)


@pytest.mark.parametrize("fmt", ["", " (FORMAT BINARY)"])
def test_the_bytes_are_psycopg_s_and_the_connection_goes_on(owner_conn: psycopg.Connection, fmt: str) -> None:
    want = _via_psycopg(owner_conn, ROWS + fmt)
    assert bytes(copy_out_bytes(owner_conn, ROWS + fmt)) == want
    assert copy_out_bytes(owner_conn, "COPY (SELECT 1 WHERE false) TO STDOUT") == b""
    rows: list[int] = []
    assert copy_out(owner_conn, "COPY (SELECT generate_series(1, 3)) TO STDOUT", lambda b: rows.append(len(b))) == 6
    assert rows == [2, 2, 2]
    assert owner_conn.execute("SELECT 41 + 1").fetchone() == (42,)


def test_an_error_in_the_middle_raises_psycopg_s_exception(owner_conn: psycopg.Connection) -> None:
    with pytest.raises(psycopg.errors.DivisionByZero):
        copy_out_bytes(owner_conn, "COPY (SELECT 1 / (100000 - g) FROM generate_series(1, 200000) g) TO STDOUT")
    owner_conn.rollback()
    assert owner_conn.execute("SELECT 1").fetchone() == (1,)


def test_other_threads_run_while_the_server_works(owner_conn: psycopg.Connection) -> None:
    ticks = 0
    done = threading.Event()

    def count() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            time.sleep(0.01)

    t = threading.Thread(target=count)
    t.start()
    try:
        copy_out_bytes(owner_conn, "COPY (SELECT pg_sleep(1)) TO STDOUT")
    finally:
        done.set()
        t.join()
    assert ticks > 50  # ~100 in the second the COPY waited
