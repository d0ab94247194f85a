"""Queries of the review queue (exception episodes), for the CLI and the dashboards."""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

STATUSES = ("open", "acknowledged", "resolved", "auto_resolved")


def list_episodes(
    conninfo: str,
    *,
    status: str = "open",
    rule: str | None = None,
    power_company: str | None = None,
    serial: str | None = None,
    limit: int = 50,
) -> tuple[list[tuple[Any, ...]], list[tuple[str, int]]]:
    """(the newest `limit` episodes matching the filters, episodes by rule); status 'all' takes every status."""
    from amr.errors import ConfigError

    if status != "all" and status not in STATUSES:
        raise ConfigError(f"unknown status {status!r} (one of {', '.join(STATUSES)}, all)", source="--status")
    where: list[sql.Composable] = [sql.SQL("true")]
    params: list[Any] = []
    if status != "all":
        where.append(sql.SQL("e.status = %s"))
        params.append(status)
    if rule:
        where.append(sql.SQL("e.rule = %s"))
        params.append(rule)
    if power_company:
        where.append(sql.SQL("m.power_company = %s"))
        params.append(power_company)
    if serial:
        where.append(sql.SQL("m.serial = %s"))
        params.append(serial)
    cond = sql.SQL(" AND ").join(where)
    with psycopg.connect(conninfo) as conn:
        rows = conn.execute(
            sql.SQL(
                "SELECT e.episode_id, m.serial, m.power_company, e.channel_id, e.rule, e.severity,"
                " to_char(e.first_start AT TIME ZONE 'Asia/Ho_Chi_Minh', 'YYYY-MM-DD HH24:MI'),"
                " to_char(e.last_end AT TIME ZONE 'Asia/Ho_Chi_Minh', 'YYYY-MM-DD HH24:MI'), e.occurrences,"
                " CASE WHEN e.value_min IS NULL THEN NULL WHEN e.value_min = e.value_max"
                " THEN round(e.value_min::numeric, 3)::text"
                " ELSE round(e.value_min::numeric, 3) || ' .. ' || round(e.value_max::numeric, 3) END,"
                " e.status, e.note FROM vee_episodes e JOIN meters m USING (meter_id) WHERE {}"
                " ORDER BY e.last_end DESC, e.episode_id DESC LIMIT %s"
            ).format(cond),
            [*params, limit],
        ).fetchall()
        by_rule = conn.execute(
            sql.SQL(
                "SELECT e.rule, count(*) FROM vee_episodes e JOIN meters m USING (meter_id) WHERE {}"
                " GROUP BY e.rule ORDER BY count(*) DESC, e.rule"
            ).format(cond),
            params,
        ).fetchall()
    return rows, [(str(r), int(n)) for r, n in by_rule]
