"""Every SQL statement the dashboards run, as fetch_* functions returning pandas DataFrames.

Pages read the small aggregate tables that refresh_dashboard_aggregates() fills (sql/040), live small tables
(collector_status) and billing's own tables; the only query that touches raw readings is the one-meter
drill-down, an index range scan on readings (meter_id, channel_id, ts). The Data quality page's queries over the
continuous VEE's tables are in dashboards.queries_quality, the Billing page's figures of one bill run in
dashboards.queries_billing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd

from amr.rollout_figures import PUBLISHED, PublishedFigure
from dashboards.source import DataSource

# The silent-meter and gateway lists page on the server: a browser gets this many rows at a time.
LIST_PAGE_ROWS = 25
# A CSV download of a filtered list is capped so one click cannot ship the whole registry.
CSV_MAX_ROWS = 200_000

AGGREGATE_TABLES = (
    "rollout_daily",
    "rollout_monthly",
    "meter_map_sample",
    "network_summary",
    "gateway_summary",
    "silent_meters",
)


# -- common ---------------------------------------------------------------------------------------------------
def fetch_power_companies(src: DataSource) -> pd.DataFrame:
    """[code, city, name, area]: the companies with meters, Vietnamese names with their diacritics."""
    return src.fetch_frame(
        "SELECT pc.code, pc.city, pc.name, pc.area FROM power_companies pc"
        " WHERE EXISTS (SELECT 1 FROM rollout_daily r WHERE r.power_company = pc.code)"
        " ORDER BY pc.city DESC, pc.code",
        columns=["code", "city", "name", "area"],
        requires=["rollout_daily"],
    )


def fetch_refreshed_at(src: DataSource) -> dict[str, dt.datetime]:
    """When each aggregate was last refreshed."""
    frame = src.fetch_frame(
        "SELECT name, refreshed_at FROM dashboard_refresh",
        columns=["name", "refreshed_at"],
        requires=["dashboard_refresh"],
    )
    return {str(name): when for name, when in zip(frame["name"], frame["refreshed_at"], strict=True)}


# -- rollout --------------------------------------------------------------------------------------------------
def fetch_rollout_as_of(src: DataSource, day: dt.date) -> pd.DataFrame:
    """[city, power_company, name, customers, electronic, remote] at the end of `day` (one index probe per
    company on rollout_daily's primary key)."""
    return src.fetch_frame(
        "SELECT pc.city, pc.code AS power_company, pc.name,"
        "       coalesce(r.customers, 0) AS customers, coalesce(r.electronic, 0) AS electronic,"
        "       coalesce(r.remote, 0) AS remote"
        " FROM power_companies pc"
        " LEFT JOIN LATERAL (SELECT rd.customers, rd.electronic, rd.remote FROM rollout_daily rd"
        "                    WHERE rd.power_company = pc.code AND rd.day <= %(day)s"
        "                    ORDER BY rd.day DESC LIMIT 1) r ON true"
        " WHERE EXISTS (SELECT 1 FROM rollout_daily x WHERE x.power_company = pc.code)"
        " ORDER BY pc.city DESC, pc.code",
        {"day": day},
        columns=["city", "power_company", "name", "customers", "electronic", "remote"],
        requires=["rollout_daily"],
    )


def fetch_rollout_monthly(src: DataSource, companies: Sequence[str] | None = None) -> pd.DataFrame:
    """[city, month_end, customers, electronic, remote] per city and month (optionally only some companies)."""
    where = " WHERE power_company = ANY(%(companies)s)" if companies else ""
    return src.fetch_frame(
        "SELECT city, month_end, sum(customers)::bigint AS customers, sum(electronic)::bigint AS electronic,"
        "       sum(remote)::bigint AS remote"
        f" FROM rollout_monthly{where} GROUP BY city, month_end ORDER BY city, month_end",
        {"companies": list(companies or [])},
        columns=["city", "month_end", "customers", "electronic", "remote"],
        requires=["rollout_monthly"],
    )


def fetch_rollout_span(src: DataSource) -> tuple[dt.date | None, dt.date | None]:
    """(first month end with an electronic meter, newest day with a change), or (None, None) before a refresh."""
    frame = src.fetch_frame(
        "SELECT (SELECT min(month_end) FROM rollout_monthly WHERE electronic > 0) AS first,"
        "       (SELECT max(day) FROM rollout_daily) AS last",
        columns=["first", "last"],
        requires=["rollout_monthly", "rollout_daily"],
    )
    if frame.empty:
        return None, None
    return frame.iloc[0]["first"], frame.iloc[0]["last"]


def fetch_map_sample(src: DataSource, cities: Sequence[str]) -> pd.DataFrame:
    """The map's meter sample (a few thousand rows per city)."""
    return src.fetch_frame(
        "SELECT meter_id, city, power_company, meter_kind, connected_on, installed_on, remote_since,"
        "       latitude_deg, longitude_deg, status, weight"
        " FROM meter_map_sample WHERE city = ANY(%(cities)s)",
        {"cities": list(cities)},
        columns=[
            "meter_id",
            "city",
            "power_company",
            "meter_kind",
            "connected_on",
            "installed_on",
            "remote_since",
            "latitude_deg",
            "longitude_deg",
            "status",
            "weight",
        ],
        requires=["meter_map_sample"],
    )


# -- network --------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class NetworkFilter:
    """What the network page's filters select; empty = everything."""

    city: str | None = None
    companies: tuple[str, ...] = ()
    protocols: tuple[str, ...] = ()
    text: str = ""  # substring of a serial or gateway id
    silence: str | None = None  # '24h', '7d', 'never'

    def where(self, *, alias: str = "", text_cols: Sequence[str] = ()) -> tuple[str, dict[str, object]]:
        """A WHERE clause (or "") and its parameters; `alias` prefixes the column names ("n.")."""
        clauses: list[str] = []
        params: dict[str, object] = {}
        if self.city:
            clauses.append(f"{alias}city = %(city)s")
            params["city"] = self.city
        if self.companies:
            clauses.append(f"{alias}power_company = ANY(%(companies)s)")
            params["companies"] = list(self.companies)
        if self.protocols:
            clauses.append(f"{alias}protocol = ANY(%(protocols)s)")
            params["protocols"] = list(self.protocols)
        if self.text and text_cols:
            clauses.append("(" + " OR ".join(f"{alias}{c} ILIKE %(text)s" for c in text_cols) + ")")
            params["text"] = "%" + self.text.replace("%", r"\%").replace("_", r"\_") + "%"
        if self.silence:
            clauses.append(f"{alias}silence = %(silence)s")
            params["silence"] = self.silence
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


def fetch_network_summary(src: DataSource, flt: NetworkFilter) -> pd.DataFrame:
    """[city, power_company, name, protocol, meters, remote_meters, read_interval, read_24h, read_7d, never_read,
    attempts, successes] as of the last refresh."""
    where, params = NetworkFilter(city=flt.city, companies=flt.companies, protocols=flt.protocols).where(alias="n.")
    return src.fetch_frame(
        "SELECT n.city, n.power_company, pc.name, n.protocol, n.meters, n.remote_meters, n.read_interval,"
        "       n.read_24h, n.read_7d, n.never_read, n.attempts, n.successes"
        f" FROM network_summary n JOIN power_companies pc ON pc.code = n.power_company{where}"
        " ORDER BY n.city DESC, n.power_company, n.protocol",
        params,
        columns=[
            "city",
            "power_company",
            "name",
            "protocol",
            "meters",
            "remote_meters",
            "read_interval",
            "read_24h",
            "read_7d",
            "never_read",
            "attempts",
            "successes",
        ],
        requires=["network_summary"],
    )


SILENT_COLUMNS = [
    "serial",
    "city",
    "power_company",
    "protocol",
    "gateway",
    "last_reading_ts",
    "last_success_at",
    "last_error",
    "silence",
]


def fetch_silent_meters(
    src: DataSource, flt: NetworkFilter, *, page: int = 0, page_rows: int = LIST_PAGE_ROWS
) -> tuple[pd.DataFrame, int]:
    """One page of silent meters (longest silent first) and the number of rows the filter selects."""
    where, params = flt.where(text_cols=("serial", "gateway"))
    total = src.fetch_frame(
        f"SELECT count(*) AS n FROM silent_meters{where}", params, columns=["n"], requires=["silent_meters"]
    )
    frame = src.fetch_frame(
        f"SELECT {', '.join(SILENT_COLUMNS)} FROM silent_meters{where}"
        " ORDER BY last_reading_ts ASC NULLS FIRST, meter_id LIMIT %(limit)s OFFSET %(offset)s",
        params | {"limit": page_rows, "offset": page * page_rows},
        columns=SILENT_COLUMNS,
        requires=["silent_meters"],
    )
    return frame, int(total.iloc[0]["n"]) if not total.empty else 0


def fetch_silent_meters_csv(src: DataSource, flt: NetworkFilter) -> pd.DataFrame:
    """All silent meters the filter selects (up to CSV_MAX_ROWS), for a download."""
    where, params = flt.where(text_cols=("serial", "gateway"))
    return src.fetch_frame(
        f"SELECT {', '.join(SILENT_COLUMNS)} FROM silent_meters{where}"
        " ORDER BY last_reading_ts ASC NULLS FIRST, meter_id LIMIT %(limit)s",
        params | {"limit": CSV_MAX_ROWS},
        columns=SILENT_COLUMNS,
        requires=["silent_meters"],
    )


GATEWAY_COLUMNS = [
    "gateway",
    "city",
    "power_company",
    "protocol",
    "meters",
    "read_24h",
    "last_reading_ts",
    "attempts",
    "successes",
    "silent",
]


def fetch_gateways(
    src: DataSource, flt: NetworkFilter, *, silent_only: bool, page: int = 0, page_rows: int = LIST_PAGE_ROWS
) -> tuple[pd.DataFrame, int]:
    """One page of gateways (silent first, then by lowest read share) and the filtered row count."""
    where, params = NetworkFilter(city=flt.city, companies=flt.companies, protocols=flt.protocols, text=flt.text).where(
        text_cols=("gateway",)
    )
    if silent_only:
        where = (where + " AND silent") if where else " WHERE silent"
    total = src.fetch_frame(
        f"SELECT count(*) AS n FROM gateway_summary{where}", params, columns=["n"], requires=["gateway_summary"]
    )
    frame = src.fetch_frame(
        f"SELECT {', '.join(GATEWAY_COLUMNS)} FROM gateway_summary{where}"
        " ORDER BY silent DESC, read_24h::float / greatest(meters, 1), gateway LIMIT %(limit)s OFFSET %(offset)s",
        params | {"limit": page_rows, "offset": page * page_rows},
        columns=GATEWAY_COLUMNS,
        requires=["gateway_summary"],
    )
    return frame, int(total.iloc[0]["n"]) if not total.empty else 0


def fetch_gateways_csv(src: DataSource, flt: NetworkFilter, *, silent_only: bool) -> pd.DataFrame:
    frame, _ = fetch_gateways(src, flt, silent_only=silent_only, page=0, page_rows=CSV_MAX_ROWS)
    return frame


def fetch_collectors(src: DataSource) -> pd.DataFrame:
    """collector_status as it is now (a handful of rows: collectors, ingest workers, DCUs)."""
    return src.fetch_frame(
        "SELECT source, kind, state, updated_at, spool_depth, reads_per_s, lag_s,"
        "       extract(epoch FROM now() - updated_at) AS age_s"
        " FROM collector_status ORDER BY kind, source",
        columns=["source", "kind", "state", "updated_at", "spool_depth", "reads_per_s", "lag_s", "age_s"],
        requires=["collector_status"],
    )


# -- one meter (the Data quality page's drill-down; its other queries are dashboards.queries_quality) -------
def fetch_meter(src: DataSource, serial: str) -> pd.DataFrame:
    """One meter by serial (unique index)."""
    return src.fetch_frame(
        "SELECT m.meter_id, m.serial, m.city, m.power_company, pc.name, m.meter_kind, m.protocol, m.gateway,"
        "       m.multiplier FROM meters m JOIN power_companies pc ON pc.code = m.power_company"
        " WHERE m.serial = %(serial)s",
        {"serial": serial},
        columns=[
            "meter_id",
            "serial",
            "city",
            "power_company",
            "name",
            "meter_kind",
            "protocol",
            "gateway",
            "multiplier",
        ],
    )


# The drill-down chart never ships more points than this to the browser (30-min reads: ~83 days).
DRILLDOWN_MAX_READINGS = 4000


def fetch_meter_readings(
    src: DataSource, meter_id: int, start: dt.datetime, end: dt.datetime, channel_id: int = 1
) -> pd.DataFrame:
    """[ts, value, quality] of one meter and channel in [start, end): an index range scan on
    readings (meter_id, channel_id, ts), the one raw-readings query the dashboards run."""
    return src.fetch_frame(
        "SELECT ts, value, quality FROM readings"
        " WHERE meter_id = %(meter)s AND channel_id = %(channel)s AND ts >= %(start)s AND ts < %(end)s"
        " ORDER BY ts LIMIT %(limit)s",
        {"meter": meter_id, "channel": channel_id, "start": start, "end": end, "limit": DRILLDOWN_MAX_READINGS},
        columns=["ts", "value", "quality"],
        requires=["readings"],
    )


# -- billing --------------------------------------------------------------------------------------------------
RUN_COLUMNS = [
    "run_id",
    "kind",
    "period",
    "city",
    "power_company",
    "started_at",
    "finished_at",
    "status",
    "customers",
    "energy_kwh",
    "amount_vnd",
    "vat_vnd",
    "total_vnd",
    "estimated_share",
    "exceptions",
    "hold_reason",
    "export_dir",
]
# The run list is the newest runs; older ones are a filter away (period).
RUN_LIST_MAX = 200


def fetch_billing_runs(src: DataSource, *, kind: str | None, status: str | None, period: str | None) -> pd.DataFrame:
    """Billing runs, newest first (index on (period, kind))."""
    return src.fetch_frame(
        f"SELECT {', '.join(RUN_COLUMNS)} FROM billing_runs"
        " WHERE (%(kind)s::text IS NULL OR kind = %(kind)s) AND (%(status)s::text IS NULL OR status = %(status)s)"
        "   AND (%(period)s::text IS NULL OR period = %(period)s)"
        " ORDER BY run_id DESC LIMIT %(limit)s",
        {"kind": kind, "status": status, "period": period, "limit": RUN_LIST_MAX},
        columns=RUN_COLUMNS,
        requires=["billing_runs"],
    )


def fetch_billing_run(src: DataSource, run_id: int) -> pd.DataFrame:
    return src.fetch_frame(
        f"SELECT {', '.join(RUN_COLUMNS)} FROM billing_runs WHERE run_id = %(run)s",
        {"run": run_id},
        columns=RUN_COLUMNS,
        requires=["billing_runs"],
    )


def fetch_rollout_reference(src: DataSource) -> tuple[PublishedFigure, ...]:
    """The published figures: the rollout_reference table (sql/050) when present, otherwise the project's copy
    (amr.rollout_figures). Targets are drawn separately."""
    frame = src.fetch_frame(
        "SELECT as_of, city, electronic_meters, electronic_share, remote_meters, remote_share, customers, source"
        " FROM rollout_reference WHERE kind = 'measured' AND (electronic_share IS NOT NULL OR remote_share IS NOT NULL)"
        " ORDER BY as_of, city",
        columns=[
            "as_of",
            "city",
            "electronic_meters",
            "electronic_share",
            "remote_meters",
            "remote_share",
            "customers",
            "source",
        ],
        requires=["rollout_reference"],
    )
    if frame.empty:
        return PUBLISHED

    def share(v: Any) -> float | None:
        return None if v is None or pd.isna(v) else float(v)

    def count(v: Any) -> int | None:
        return None if v is None or pd.isna(v) else int(v)

    rows: list[dict[str, Any]] = frame.to_dict("records")  # type: ignore[assignment]
    return tuple(
        PublishedFigure(
            as_of=pd.Timestamp(r["as_of"]).date(),
            city=str(r["city"]),
            electronic_meters=count(r["electronic_meters"]),
            electronic_share=share(r["electronic_share"]),
            remote_meters=count(r["remote_meters"]),
            remote_share=share(r["remote_share"]),
            customers=count(r["customers"]),
            source=str(r["source"]),
        )
        for r in rows
    )
