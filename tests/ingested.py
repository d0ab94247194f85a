"""Readings stored through ingest's own write path and role (ingest.writer), as the broker's messages would be:
the (meter, day) units get marked for the VEE service. For tests and benchmarks of the continuous VEE."""

from __future__ import annotations

import numpy as np
import psycopg

from amr.db.server import DatabaseServer, Role
from amr.pgcopy import unix_s_to_pg_us
from billing.vee import ReadingArrays
from ingest.strategy import Strategy
from ingest.writer import BatchContent, ReadingColumns, prepare_session, write_batch


def store_through_ingest(db: DatabaseServer, r: ReadingArrays, strategy: Strategy = Strategy.SAVEPOINT) -> int:
    """One batch of `r` in one transaction; returns the rows given."""
    with psycopg.connect(db.conninfo(Role.INGEST)) as conn:
        prepare_session(conn)
        cols = ReadingColumns.from_arrays(
            unix_s_to_pg_us(r.ts_s.astype(np.float64)), r.meter_id, r.channel_id, r.value, r.quality
        )
        write_batch(conn, BatchContent(readings=cols), strategy)
        conn.commit()
    return len(r)
