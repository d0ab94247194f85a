"""The dashboards' one way into the database: a small read-only connection pool (role amr_reader).

Every query goes through :meth:`DataSource.fetch_frame`. A table that another part of the platform has not
created yet (billing, VEE) is an empty state, not a crash: the pages ask :meth:`DataSource.fetch_missing_tables`
to say why a panel is empty.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import pandas as pd
import psycopg
from psycopg_pool import ConnectionPool

from amr.timebase import LOCAL_TZ_NAME

log = logging.getLogger(__name__)

# Dash serves callbacks from a few threads; more connections than that only idle on the server.
POOL_MAX_CONNECTIONS = 4
# A page that waits longer than this for a query is broken anyway; the timeout keeps one slow query from
# holding a pooled connection for minutes.
STATEMENT_TIMEOUT_MS = 15_000


class DataSource:
    """Read-only queries over a psycopg_pool pool; rows come back as pandas DataFrames."""

    def __init__(self, conninfo: str, *, max_connections: int = POOL_MAX_CONNECTIONS) -> None:
        self.pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=max_connections,
            kwargs={
                "autocommit": True,
                # Belt and braces on top of the amr_reader role: this pool never writes.
                "options": f"-c default_transaction_read_only=on -c statement_timeout={STATEMENT_TIMEOUT_MS}"
                f" -c TimeZone={LOCAL_TZ_NAME}",
            },
            open=True,
            name="amr-dashboards",
        )

    def close(self) -> None:
        self.pool.close()

    def fetch_missing_tables(self, tables: Sequence[str]) -> list[str]:
        """The names in `tables` that do not exist (yet) in the database."""
        if not tables:
            return []
        with self.pool.connection() as conn:
            rows = conn.execute(
                "SELECT t FROM unnest(%s::text[]) AS t WHERE to_regclass('public.' || quote_ident(t)) IS NULL",
                (list(tables),),
            ).fetchall()
        return [r[0] for r in rows]

    def fetch_frame(
        self,
        query: str,
        params: dict[str, Any] | Sequence[Any] | None = None,
        *,
        columns: Sequence[str],
        requires: Sequence[str] = (),
    ) -> pd.DataFrame:
        """Run `query`; an empty frame with `columns` when a required table is missing or the schema differs."""
        if requires and self.fetch_missing_tables(requires):
            return pd.DataFrame(columns=list(columns))
        try:
            with self.pool.connection() as conn:
                cur = conn.execute(query.encode(), params)
                rows = cur.fetchall()
                names = [d.name for d in cur.description or []]
        except (psycopg.errors.UndefinedTable, psycopg.errors.UndefinedColumn, psycopg.errors.UndefinedFunction) as exc:
            # Another part's table changed shape under us: show the panel empty and say so in the log.
            log.warning("dashboard query skipped, schema not as expected: %s", exc)
            return pd.DataFrame(columns=list(columns))
        return pd.DataFrame(rows, columns=names or list(columns))

    def fetch_value(self, query: str, params: dict[str, Any] | Sequence[Any] | None = None) -> Any:
        """The first column of the first row, or None."""
        with self.pool.connection() as conn:
            row = conn.execute(query.encode(), params).fetchone()
        return row[0] if row else None
