"""Every SQL statement of the Data quality page, over the continuous VEE's tables (sql/080_continuous_vee.sql):
the service's watermark (vee_state), its queue (vee_pending), the validated days (vee_daily, current version;
vee_daily_versions, every version) and the exception episodes (vee_episodes).

Fleet-wide figures are aggregated in SQL and bounded: open episodes (index vee_episodes (status, rule)), the
validated days of a window of local days from their pre-aggregate vee_quality_daily (per day, power company and
quality code, which refresh_dashboard_aggregates() keeps: sql/090_quality_aggregates.sql), a capped count of pending
units. One meter's queries are index range scans on its primary keys (meter_id first).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import pandas as pd

from amr.obis import BY_OBIS
from dashboards.source import DataSource

VEE_TABLES = ("vee_state", "vee_pending", "vee_daily", "vee_daily_versions", "vee_episodes")
# The energy the page charts: 1.0.1.8.0 active import total. The rate registers (channels 2-4) add up to it, so
# summing every energy channel would count a day's energy twice.
TOTAL_IMPORT_CHANNEL = BY_OBIS["1.0.1.8.0.255"].channel_id
# A pending queue longer than this is shown as "more than": counting a multi-million backlog would scan it all.
PENDING_COUNT_CAP = 100_000
WORST_METERS_ROWS = 25
# One meter's drill-down: at most this many days (30-min reads: 62 * 48 = 2,976 reads, under the readings cap),
# episodes and versions.
DRILLDOWN_MAX_DAYS = 62
DRILLDOWN_MAX_EPISODES = 200
DRILLDOWN_MAX_VERSIONS = 2_000
# A profile meter's validated intervals (vee_intervals, sql/096_vee_intervals.sql): 15-min slots at most.
DRILLDOWN_MAX_INTERVALS = DRILLDOWN_MAX_DAYS * 96


def _city_clause(city: str | None, *, meter_col: str) -> tuple[str, dict[str, Any]]:
    """An AND clause keeping `meter_col`'s meters in `city` (or nothing for both cities): a semi-join on meters
    (index meters (city, power_company)), written only when a city is chosen so the planner sees a plain scan
    otherwise."""
    if not city:
        return "", {}
    return f" AND {meter_col} IN (SELECT cm.meter_id FROM meters cm WHERE cm.city = %(city)s)", {"city": city}


# -- the service ----------------------------------------------------------------------------------------------
SERVICE_COLUMNS = ["service", "last_pass_at", "lag_s", "last_day", "passes", "units", "versions", "last_seconds"]


def fetch_service_state(src: DataSource) -> pd.DataFrame:
    """[service, last_pass_at, lag_s, last_day, passes, units, versions, last_seconds] of the service that passed
    last (one row; none before the first pass). lag_s = now - last_pass_at [s]."""
    return src.fetch_frame(
        "SELECT service, last_pass_at, extract(epoch FROM now() - last_pass_at)::float8 AS lag_s, last_day, passes,"
        "       units, versions, last_seconds"
        " FROM vee_state ORDER BY last_pass_at DESC NULLS LAST, service LIMIT 1",
        columns=SERVICE_COLUMNS,
        requires=["vee_state"],
    )


def fetch_pending_units(src: DataSource, cap: int = PENDING_COUNT_CAP) -> int | None:
    """(meter, local day) units waiting for the next pass, counted up to cap + 1 (more reads as "more than cap");
    None when the table is missing."""
    frame = src.fetch_frame(
        "SELECT count(*) AS units FROM (SELECT 1 FROM vee_pending LIMIT %(limit)s) p",
        {"limit": cap + 1},
        columns=["units"],
        requires=["vee_pending"],
    )
    return None if frame.empty else int(frame.iloc[0]["units"])


# -- episodes -------------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class EpisodeCounts:
    open_episodes: int
    open_meters: int  # meters with at least one open episode (each counted once, whatever its rules)
    acknowledged_episodes: int


def fetch_episode_counts(src: DataSource, city: str | None) -> EpisodeCounts:
    """Open and acknowledged episodes, and the meters with an open one (index vee_episodes (status, rule))."""
    where, params = _city_clause(city, meter_col="e.meter_id")
    frame = src.fetch_frame(
        "SELECT count(*) FILTER (WHERE e.status = 'open') AS open_episodes,"
        "       count(DISTINCT e.meter_id) FILTER (WHERE e.status = 'open') AS open_meters,"
        "       count(*) FILTER (WHERE e.status = 'acknowledged') AS acknowledged_episodes"
        f" FROM vee_episodes e WHERE e.status IN ('open', 'acknowledged'){where}",
        params,
        columns=["open_episodes", "open_meters", "acknowledged_episodes"],
        requires=["vee_episodes"],
    )
    if frame.empty:
        return EpisodeCounts(open_episodes=0, open_meters=0, acknowledged_episodes=0)
    row = frame.iloc[0]
    return EpisodeCounts(
        open_episodes=int(row["open_episodes"]),
        open_meters=int(row["open_meters"]),
        acknowledged_episodes=int(row["acknowledged_episodes"]),
    )


OPEN_BY_RULE_COLUMNS = ["rule", "power_company", "name", "city", "episodes", "meters"]


def fetch_open_episodes_by_rule(src: DataSource, city: str | None) -> pd.DataFrame:
    """[rule, power_company, name, city, episodes, meters]: open episodes per rule and power company (a few
    hundred rows at most: rules x companies)."""
    where = " AND m.city = %(city)s" if city else ""
    return src.fetch_frame(
        "SELECT e.rule, m.power_company, pc.name, m.city, count(*) AS episodes,"
        "       count(DISTINCT e.meter_id) AS meters"
        " FROM vee_episodes e JOIN meters m ON m.meter_id = e.meter_id"
        " JOIN power_companies pc ON pc.code = m.power_company"
        f" WHERE e.status = 'open'{where}"
        " GROUP BY e.rule, m.power_company, pc.name, m.city ORDER BY m.city DESC, m.power_company, e.rule",
        {"city": city},
        columns=OPEN_BY_RULE_COLUMNS,
        requires=["vee_episodes"],
    )


WORST_COLUMNS = ["serial", "city", "power_company", "open_episodes", "rules", "first_start", "last_end"]


def fetch_worst_meters(src: DataSource, city: str | None, limit: int = WORST_METERS_ROWS) -> pd.DataFrame:
    """[serial, city, power_company, open_episodes, rules, first_start, last_end]: the meters with the most open
    episodes (ties by meter id), with the span their open episodes cover."""
    where, params = _city_clause(city, meter_col="e.meter_id")
    return src.fetch_frame(
        "SELECT m.serial, m.city, m.power_company, w.open_episodes, w.rules, w.first_start, w.last_end"
        " FROM (SELECT e.meter_id, count(*) AS open_episodes,"
        "              string_agg(DISTINCT e.rule, ', ' ORDER BY e.rule) AS rules,"
        "              min(e.first_start) AS first_start, max(e.last_end) AS last_end"
        f"       FROM vee_episodes e WHERE e.status = 'open'{where}"
        "       GROUP BY e.meter_id ORDER BY open_episodes DESC, e.meter_id LIMIT %(limit)s) w"
        " JOIN meters m ON m.meter_id = w.meter_id"
        " ORDER BY w.open_episodes DESC, m.serial",
        params | {"limit": limit},
        columns=WORST_COLUMNS,
        requires=["vee_episodes"],
    )


# -- validated days -------------------------------------------------------------------------------------------
DAILY_QUALITY_COLUMNS = ["day", "quality", "meter_days", "measured_kwh", "estimated_kwh"]
QUALITY_AGGREGATE_TABLES = ("vee_quality_daily", "vee_quality_days")


def fetch_daily_quality(src: DataSource, first_day: dt.date, last_day: dt.date, city: str | None) -> pd.DataFrame:
    """[day, quality, meter_days, measured_kwh, estimated_kwh]: the current validated days of the total-import
    channel in the local days [first_day, last_day], per day and AEMO quality code (at most 6 rows a day), from the
    pre-aggregate vee_quality_daily (a few rows per day and power company), as of its refresh."""
    where = " AND city = %(city)s" if city else ""
    return src.fetch_frame(
        "SELECT day, quality, sum(meter_days)::bigint AS meter_days, sum(measured_kwh) AS measured_kwh,"
        "       sum(estimated_kwh) AS estimated_kwh"
        f" FROM vee_quality_daily WHERE day BETWEEN %(first)s AND %(last)s{where}"
        " GROUP BY day, quality ORDER BY day, quality",
        {"first": first_day, "last": last_day, "city": city},
        columns=DAILY_QUALITY_COLUMNS,
        requires=["vee_quality_daily"],
    )


@dataclass(frozen=True, kw_only=True)
class QualityCounted:
    """When the pre-aggregate's days of a window were counted (None: never)."""

    oldest: dt.datetime | None
    newest: dt.datetime | None
    days: int  # days of the window counted


def fetch_quality_counted(src: DataSource, first_day: dt.date, last_day: dt.date) -> QualityCounted:
    """When the refresh last counted the window's days (vee_quality_days: one row per day)."""
    frame = src.fetch_frame(
        "SELECT min(counted_at) AS oldest, max(counted_at) AS newest, count(*) AS days FROM vee_quality_days"
        " WHERE day BETWEEN %(first)s AND %(last)s",
        {"first": first_day, "last": last_day},
        columns=["oldest", "newest", "days"],
        requires=["vee_quality_days"],
    )
    if frame.empty or not int(frame.iloc[0]["days"]):
        return QualityCounted(oldest=None, newest=None, days=0)
    row = frame.iloc[0]
    return QualityCounted(oldest=row["oldest"], newest=row["newest"], days=int(row["days"]))


# -- one meter ------------------------------------------------------------------------------------------------
CURRENT_DAY_COLUMNS = [
    "day",
    "version",
    "measured_kwh",
    "estimated_kwh",
    "n_measured",
    "n_estimated",
    "quality",
    "method",
    "reason",
    "locked",
    "made_at",
]


def fetch_meter_current_days(src: DataSource, meter_id: int, first_day: dt.date, last_day: dt.date) -> pd.DataFrame:
    """The current validated version of each of one meter's local days in [first_day, last_day], total-import
    channel (primary key (meter_id, channel_id, day))."""
    return src.fetch_frame(
        f"SELECT {', '.join(CURRENT_DAY_COLUMNS)} FROM vee_daily"
        " WHERE meter_id = %(meter)s AND channel_id = %(channel)s AND day BETWEEN %(first)s AND %(last)s"
        " ORDER BY day LIMIT %(limit)s",
        {
            "meter": meter_id,
            "channel": TOTAL_IMPORT_CHANNEL,
            "first": first_day,
            "last": last_day,
            "limit": DRILLDOWN_MAX_DAYS,
        },
        columns=CURRENT_DAY_COLUMNS,
        requires=["vee_daily"],
    )


VERSION_COLUMNS = [
    "day",
    "version",
    "measured_kwh",
    "estimated_kwh",
    "quality",
    "method",
    "reason",
    "made_by",
    "made_at",
    "note",
]


def fetch_meter_versions(src: DataSource, meter_id: int, first_day: dt.date, last_day: dt.date) -> pd.DataFrame:
    """Every version of one meter's local days in [first_day, last_day], total-import channel, newest day and
    version first (primary key (meter_id, channel_id, day, version))."""
    return src.fetch_frame(
        f"SELECT {', '.join(VERSION_COLUMNS)} FROM vee_daily_versions"
        " WHERE meter_id = %(meter)s AND channel_id = %(channel)s AND day BETWEEN %(first)s AND %(last)s"
        " ORDER BY day DESC, version DESC LIMIT %(limit)s",
        {
            "meter": meter_id,
            "channel": TOTAL_IMPORT_CHANNEL,
            "first": first_day,
            "last": last_day,
            "limit": DRILLDOWN_MAX_VERSIONS,
        },
        columns=VERSION_COLUMNS,
        requires=["vee_daily_versions"],
    )


INTERVAL_COLUMNS = ["interval_end", "energy_kwh", "quality", "method", "version"]


def fetch_meter_intervals(src: DataSource, meter_id: int, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    """One profile meter's validated intervals ending in (start, end], total-import channel, oldest first (primary
    key (meter_id, channel_id, interval_end)); none for a daily-register meter."""
    return src.fetch_frame(
        f"SELECT {', '.join(INTERVAL_COLUMNS)} FROM vee_intervals"
        " WHERE meter_id = %(meter)s AND channel_id = %(channel)s AND interval_end > %(start)s"
        " AND interval_end <= %(end)s ORDER BY interval_end LIMIT %(limit)s",
        {
            "meter": meter_id,
            "channel": TOTAL_IMPORT_CHANNEL,
            "start": start,
            "end": end,
            "limit": DRILLDOWN_MAX_INTERVALS,
        },
        columns=INTERVAL_COLUMNS,
        requires=["vee_intervals"],
    )


EPISODE_COLUMNS = [
    "episode_id",
    "channel_id",
    "rule",
    "severity",
    "first_start",
    "last_end",
    "occurrences",
    "value_min",
    "value_max",
    "status",
    "note",
]


def fetch_meter_episodes(src: DataSource, meter_id: int, start: dt.datetime, end: dt.datetime) -> pd.DataFrame:
    """One meter's episodes of any status and channel that overlap [start, end) (index vee_episodes (meter_id,
    ...)), oldest first."""
    return src.fetch_frame(
        f"SELECT {', '.join(EPISODE_COLUMNS)} FROM vee_episodes"
        " WHERE meter_id = %(meter)s AND first_start < %(end)s AND last_end > %(start)s"
        " ORDER BY first_start, episode_id LIMIT %(limit)s",
        {"meter": meter_id, "start": start, "end": end, "limit": DRILLDOWN_MAX_EPISODES},
        columns=EPISODE_COLUMNS,
        requires=["vee_episodes"],
    )


def fetch_meter_newest_day(src: DataSource, meter_id: int) -> dt.date | None:
    """The newest local day validated for one meter's total-import channel (a backward index probe), or None."""
    frame = src.fetch_frame(
        "SELECT max(day) AS day FROM vee_daily WHERE meter_id = %(meter)s AND channel_id = %(channel)s",
        {"meter": meter_id, "channel": TOTAL_IMPORT_CHANNEL},
        columns=["day"],
        requires=["vee_daily"],
    )
    if frame.empty or pd.isna(frame.iloc[0]["day"]):
        return None
    day: dt.date = frame.iloc[0]["day"]
    return day
