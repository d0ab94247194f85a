"""Data quality, live from the continuous VEE service (billing.continuous; sql/080_continuous_vee.sql), no billing
run needed: open exception episodes by rule and power company, the share of energy estimated and the days by AEMO
quality code per local day (from the pre-aggregate the dashboards' refresh keeps, sql/090), the service's last
pass, lag and queue, and a drill-down to one meter: its register reads, every version of its validated days and its
episodes on one chart, with the versions in a table.

The figures are about the total-import channel (1.0.1.8.0) where they are about energy; episodes of every channel
count (a drifting clock is the meter's problem too)."""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

import dash
import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html
from plotly.subplots import make_subplots

from amr.timebase import LOCAL_TZ, LOCAL_TZ_NAME, local_date, local_day_bounds, local_today
from dashboards import queries
from dashboards import queries_quality as qq
from dashboards.components import city_control, data_table, empty_state, fmt_int, fmt_pct, fmt_ts, kpi, records
from dashboards.reference import CITY_NAMES
from dashboards.source import DataSource

path = "/quality"
title = "Data quality"

# The headline share and the per-day charts cover this many local days, today included.
QUALITY_WINDOW_DAYS = 30
DRILLDOWN_DEFAULT_DAYS = 14
# The service passes every few seconds even when idle (vee_state.last_pass_at moves on each pass): a last pass
# older than this means it is stopped or stuck.
LAG_WARN_S = 300.0
# The service cards (last pass, lag, queue) refresh on their own; the fleet figures follow the filters.
SERVICE_REFRESH_MS = 30_000
# Earlier versions get a trace each up to this version number; older ones share one trace.
MAX_VERSION_TRACES = 5

SEVERITY_COLOURS = {"invalid": "#d7263d", "review": "#f0a202", "info": "#7f8c8d"}
CLOSED_STATUSES = ("resolved", "auto_resolved")
# AEMO NEM12 quality flags as billing.quality writes them (the dashboards do not import a stage), in stacking order.
QUALITY_CODES: dict[str, tuple[str, str]] = {
    "A": ("actual", "#1b998b"),
    "V": ("variable (part estimated)", "#9bc53d"),
    "S": ("substituted", "#f0a202"),
    "E": ("forward estimate", "#e55934"),
    "F": ("final substitute", "#7d5ba6"),
    "N": ("null", "#7f8c8d"),
}
# AEMO substitution method numbers billing.quality assigns.
METHOD_NAMES = {14: "like day", 17: "linear interpolation", 24: "scaled to register", 25: "average daily load"}


# -- pure computation -------------------------------------------------------------------------------------------
def fmt_duration(seconds: float | None) -> str:
    """A lag as '42 s', '5 min', '3 h 10 min' or '2 d 4 h' ('—' when unknown)."""
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "—"
    s = max(0, int(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min"
    if s < 86_400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86_400} d {s % 86_400 // 3600} h"


def quality_window(today: dt.date) -> tuple[dt.date, dt.date]:
    """The local days [first, last] the headline share and the per-day charts cover."""
    return today - dt.timedelta(days=QUALITY_WINDOW_DAYS - 1), today


def share_by_day(daily: pd.DataFrame) -> pd.DataFrame:
    """[day, measured_kwh, estimated_kwh, share_pct]: the share of validated energy that is estimated, per day."""
    if daily.empty:
        return pd.DataFrame(columns=["day", "measured_kwh", "estimated_kwh", "share_pct"])
    g = daily.groupby("day", as_index=False)[["measured_kwh", "estimated_kwh"]].sum()
    total = (g["measured_kwh"] + g["estimated_kwh"]).astype(float)
    g["share_pct"] = 100.0 * g["estimated_kwh"].astype(float) / total.where(total > 0)
    return g


def label_company(frame: pd.DataFrame) -> pd.Series:
    return frame["name"] + " (" + frame["power_company"] + ")"


def _no_data(fig: go.Figure, message: str) -> go.Figure:
    fig.add_annotation(
        text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5, font={"size": 14, "color": "#5b6b7c"}
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def episodes_figure(by_rule: pd.DataFrame) -> go.Figure:
    """Heatmap: open episodes per power company (rows, in the query's order) and rule (columns)."""
    fig = go.Figure()
    n_companies = by_rule["power_company"].nunique() if not by_rule.empty else 0
    fig.update_layout(
        title="open VEE episodes by rule and power company",
        template="plotly_white",
        height=max(300, 26 * n_companies + 140),
        margin={"l": 180, "r": 10, "t": 40, "b": 60},
    )
    if by_rule.empty:
        return _no_data(fig, "no open episodes")
    labelled = by_rule.assign(company=label_company(by_rule))
    pivot = labelled.pivot_table(index="company", columns="rule", values="episodes", aggfunc="sum")
    pivot = pivot.reindex(list(dict.fromkeys(labelled["company"])))
    z = pivot.to_numpy(dtype=float)
    text = [["" if math.isnan(v) else f"{int(v):,}" for v in row] for row in z]
    fig.add_heatmap(
        z=z,
        x=list(pivot.columns),
        y=list(pivot.index),
        text=text,
        texttemplate="%{text}",
        colorscale="OrRd",
        zmin=0,
        colorbar={"title": {"text": "episodes"}},
        hovertemplate="%{y}<br>%{x}: %{z:,} open episodes<extra></extra>",
        xgap=2,
        ygap=2,
    )
    fig.update_yaxes(autorange="reversed")
    return fig


def share_figure(daily: pd.DataFrame, first_day: dt.date, last_day: dt.date, *, empty: str | None = None) -> go.Figure:
    """The share of validated energy estimated per day; `empty` says why when there are no days."""
    fig = go.Figure()
    fig.update_layout(
        title="share of validated energy estimated, per day",
        template="plotly_white",
        height=300,
        margin={"l": 50, "r": 10, "t": 40, "b": 30},
    )
    rows = share_by_day(daily)
    if rows.empty:
        return _no_data(fig, empty or f"no validated days from {first_day} to {last_day}")
    fig.add_scatter(
        x=rows["day"],
        y=rows["share_pct"],
        mode="lines+markers",
        name="estimated",
        line={"color": "#f0a202"},
        customdata=list(zip(rows["estimated_kwh"], rows["measured_kwh"] + rows["estimated_kwh"], strict=True)),
        hovertemplate="%{x|%Y-%m-%d}: %{y:.2f} %<br>%{customdata[0]:,.1f} of %{customdata[1]:,.1f} kWh<extra></extra>",
    )
    fig.update_yaxes(title_text="estimated [%]", rangemode="tozero")
    fig.update_xaxes(range=[first_day - dt.timedelta(hours=12), last_day + dt.timedelta(hours=12)])
    return fig


def quality_days_figure(
    daily: pd.DataFrame, first_day: dt.date, last_day: dt.date, *, empty: str | None = None
) -> go.Figure:
    """Stacked bars: validated meter-days per local day by AEMO quality code; `empty` says why when there are none."""
    fig = go.Figure()
    fig.update_layout(
        title="validated meter-days by quality code",
        template="plotly_white",
        height=300,
        barmode="stack",
        margin={"l": 50, "r": 10, "t": 40, "b": 30},
        legend={"orientation": "h", "y": -0.15},
    )
    if daily.empty:
        return _no_data(fig, empty or f"no validated days from {first_day} to {last_day}")
    for code, (name, colour) in QUALITY_CODES.items():
        sel = daily[daily["quality"] == code]
        if sel.empty:
            continue
        fig.add_bar(
            x=sel["day"],
            y=sel["meter_days"],
            name=f"{code} {name}",
            marker={"color": colour},
            hovertemplate="%{x|%Y-%m-%d}: %{y:,} meter-days<extra>" + code + "</extra>",
        )
    fig.update_yaxes(title_text="meter-days")
    fig.update_xaxes(range=[first_day - dt.timedelta(hours=12), last_day + dt.timedelta(hours=12)])
    return fig


def _local_naive(values: pd.Series) -> pd.Series:
    """Instants as naive local (ICT) times: one time axis for reads, days and episodes, as the operator reads it."""
    return pd.to_datetime(values, utc=True).dt.tz_convert(LOCAL_TZ_NAME).dt.tz_localize(None)


def _day_key(day: Any) -> str:
    return pd.Timestamp(day).strftime("%Y-%m-%d")


def _current_versions(current: pd.DataFrame) -> dict[str, int]:
    """Local day (YYYY-MM-DD) -> its current version number."""
    return {_day_key(d): int(v) for d, v in zip(current["day"], current["version"], strict=True)}


def _day_start(days: pd.Series) -> pd.Series:
    return pd.to_datetime(days)


def method_label(method: Any) -> str:
    if method is None or pd.isna(method):
        return ""
    number = int(method)
    return f"{number} {METHOD_NAMES[number]}" if number in METHOD_NAMES else str(number)


def _records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = frame.to_dict("records")  # type: ignore[assignment]
    return rows


def _day_hover(frame: pd.DataFrame) -> list[str]:
    out = []
    for r in _records(frame):
        method = method_label(r["method"])
        out.append(
            f"{pd.Timestamp(r['day']):%Y-%m-%d} v{int(r['version'])} {r['quality']} ({r['reason']})<br>"
            f"{r['measured_kwh']:,.3f} measured + {r['estimated_kwh']:,.3f} estimated kWh"
            + (f"<br>method {method}" if method else "")
        )
    return out


def _local_clip(instant: Any, lo: dt.datetime, hi: dt.datetime) -> dt.datetime:
    """An instant as naive local time, within [lo, hi]."""
    local = pd.Timestamp(instant).tz_convert(LOCAL_TZ_NAME).tz_localize(None).to_pydatetime()
    return min(max(local, lo), hi)


def drilldown_figure(
    readings: pd.DataFrame,
    current: pd.DataFrame,
    versions: pd.DataFrame,
    episodes: pd.DataFrame,
    *,
    serial: str,
    start: dt.datetime,
    end: dt.datetime,
    intervals: pd.DataFrame | None = None,
) -> go.Figure:
    """One chart: the register reads [kWh] (left axis); the validated energy of each day [kWh/day] (right axis),
    the current version solid, earlier versions as dashed day-long segments; a profile meter's validated intervals
    [kWh] as steps on an axis of their own (scale in the hover; marker colour = quality code); episodes as shaded
    spans (colour = severity, faint once resolved) with a hover marker each along the top."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    x0, x1 = start.astimezone(LOCAL_TZ).replace(tzinfo=None), end.astimezone(LOCAL_TZ).replace(tzinfo=None)
    if not readings.empty:
        fig.add_scatter(
            x=_local_naive(readings["ts"]),
            y=readings["value"],
            mode="lines",
            name="register reads [kWh]",
            line={"color": "#12355b"},
            secondary_y=False,
        )
    if not current.empty:
        kwh = current["measured_kwh"] + current["estimated_kwh"]
        fig.add_scatter(
            x=_day_start(current["day"]) + pd.Timedelta(hours=12),
            y=kwh,
            mode="lines+markers",
            name="validated [kWh/day], current version",
            line={"color": "#1b998b", "width": 2},
            marker={
                "size": 9,
                "color": [QUALITY_CODES.get(q, ("", "#333"))[1] for q in current["quality"]],
                "line": {"color": "#12355b", "width": 1},
            },
            hovertext=_day_hover(current),
            hoverinfo="text",
            secondary_y=True,
        )
    if intervals is not None and not intervals.empty:
        fig.add_scatter(
            x=_local_naive(intervals["interval_end"]),
            y=intervals["energy_kwh"],
            yaxis="y4",
            mode="lines+markers",
            line={"color": "#7a9cc6", "width": 1, "shape": "vh"},  # a slot's value over the slot, up to its end
            marker={"size": 3, "color": [QUALITY_CODES.get(q, ("", "#333"))[1] for q in intervals["quality"]]},
            name="validated intervals [kWh]",
            hovertext=[
                f"{fmt_ts(e)} ICT: {k:.3f} kWh, {QUALITY_CODES.get(q, (q, ''))[0]}, {method_label(m)}, version {v}"
                for e, k, q, m, v in zip(
                    intervals["interval_end"],
                    intervals["energy_kwh"],
                    intervals["quality"],
                    intervals["method"],
                    intervals["version"],
                    strict=True,
                )
            ],
            hoverinfo="text",
        )
    if not versions.empty:
        now_version = _current_versions(current)
        earlier = versions[
            [now_version.get(_day_key(d)) != int(v) for d, v in zip(versions["day"], versions["version"], strict=True)]
        ]
        groups = earlier.assign(_trace=earlier["version"].clip(upper=MAX_VERSION_TRACES + 1))
        dashes = ("dash", "dot", "dashdot", "longdash", "longdashdot", "dash")
        for n, (trace, rows) in enumerate(groups.sort_values(["version", "day"]).groupby("_trace", sort=True)):
            number = int(str(trace))
            name = f"version {number}" if number <= MAX_VERSION_TRACES else f"versions ≥ {number}"
            day0 = _day_start(rows["day"])
            day_kwh = (rows["measured_kwh"] + rows["estimated_kwh"]).to_list()
            xs: list[Any] = []
            ys: list[Any] = []
            for d, y in zip(day0, day_kwh, strict=True):
                xs += [d, d + pd.Timedelta(days=1), None]
                ys += [y, y, None]
            colour = "#8a5a00"
            fig.add_scatter(
                x=xs,
                y=ys,
                mode="lines",
                name=f"{name} [kWh/day], replaced",
                legendgroup=name,
                line={"color": colour, "dash": dashes[n % len(dashes)], "width": 1.5},
                hoverinfo="skip",
                secondary_y=True,
            )
            fig.add_scatter(
                x=day0 + pd.Timedelta(hours=12),
                y=day_kwh,
                mode="markers",
                name=name,
                legendgroup=name,
                showlegend=False,
                marker={"symbol": "circle-open", "size": 9, "color": colour},
                hovertext=_day_hover(rows),
                hoverinfo="text",
                secondary_y=True,
            )
    if not episodes.empty:
        markers: dict[str, tuple[list[Any], list[str]]] = {}
        for n, e in enumerate(_records(episodes)):
            a, b = _local_clip(e["first_start"], x0, x1), _local_clip(e["last_end"], x0, x1)
            fig.add_vrect(
                x0=a,
                x1=b,
                fillcolor=SEVERITY_COLOURS.get(e["severity"], "#7f8c8d"),
                opacity=0.08 if e["status"] in CLOSED_STATUSES else 0.22,
                line_width=0,
                layer="below",
                annotation_text=e["rule"] if e["status"] == "open" else f"{e['rule']} ({e['status']})",
                annotation_position="top left",
                annotation_font_size=10,
                annotation_yshift=-13 * (n % 3),  # neighbouring episodes' labels on different lines
            )
            xs, texts = markers.setdefault(e["severity"], ([], []))
            xs.append(a + (b - a) / 2)
            texts.append(
                f"{e['rule']} ch {int(e['channel_id'])} · {e['status']}<br>{fmt_ts(e['first_start'])} –"
                f" {fmt_ts(e['last_end'])} ICT, {int(e['occurrences']):,} occurrence(s)"
                + (f"<br>{e['note']}" if e["note"] else "")
            )
        for severity, (xs, texts) in markers.items():
            fig.add_scatter(
                x=xs,
                y=[0.02] * len(xs),
                yaxis="y3",
                mode="markers",
                name=f"episode ({severity})",
                marker={"symbol": "square", "size": 10, "color": SEVERITY_COLOURS.get(severity, "#7f8c8d")},
                hovertext=texts,
                hoverinfo="text",
            )
    fig.update_layout(
        template="plotly_white",
        height=520,
        title=f"meter {serial}: register reads, validated days by version, VEE episodes",
        margin={"l": 60, "r": 60, "t": 40, "b": 30},
        legend={"orientation": "h", "y": -0.12},
        xaxis={"range": [x0, x1]},
        yaxis3={"overlaying": "y", "range": [0, 1], "visible": False, "fixedrange": True},
        yaxis4={"overlaying": "y", "rangemode": "tozero", "visible": False},
    )
    fig.update_yaxes(title_text="register [kWh]", secondary_y=False)
    fig.update_yaxes(
        title_text="validated [kWh/day]", rangemode="tozero", secondary_y=True, showgrid=False, tickmode="auto"
    )
    return fig


def version_rows(versions: pd.DataFrame, current: pd.DataFrame) -> list[dict[str, Any]]:
    """The versions table: one row per version, newest day and version first, the current one marked."""
    if versions.empty:
        return []
    now_version = _current_versions(current)
    out = versions.copy()
    out["current"] = [
        "current" if now_version.get(_day_key(d)) == int(v) else ""
        for d, v in zip(out["day"], out["version"], strict=True)
    ]
    out["day"] = pd.to_datetime(out["day"]).dt.strftime("%Y-%m-%d")
    out["kwh"] = (out["measured_kwh"] + out["estimated_kwh"]).map(lambda v: f"{v:,.3f}")
    out["quality"] = out["quality"].map(lambda q: f"{q} {QUALITY_CODES[q][0]}" if q in QUALITY_CODES else q)
    out["method"] = out["method"].map(method_label)
    out["made_at"] = out["made_at"].map(fmt_ts)
    return records(out.drop(columns=["measured_kwh", "estimated_kwh"]))


def drill_days_for(first_start: Any, last_end: Any, today: dt.date) -> tuple[dt.date, dt.date]:
    """The days to show for a meter picked in the worst-meters table: its open episodes with two days either side,
    at least DRILLDOWN_DEFAULT_DAYS and at most DRILLDOWN_MAX_DAYS (the newest), not past today."""
    last = min(local_date(pd.Timestamp(last_end).to_pydatetime()) + dt.timedelta(days=2), today)
    first = local_date(pd.Timestamp(first_start).to_pydatetime()) - dt.timedelta(days=2)
    first = min(first, last - dt.timedelta(days=DRILLDOWN_DEFAULT_DAYS - 1))
    return max(first, last - dt.timedelta(days=qq.DRILLDOWN_MAX_DAYS - 1)), last


def clamp_days(first: dt.date, last: dt.date) -> tuple[dt.date, dt.date, bool]:
    """(first, last, clamped): ordered, and at most DRILLDOWN_MAX_DAYS (the newest of the range)."""
    if first > last:
        first, last = last, first
    limit = last - dt.timedelta(days=qq.DRILLDOWN_MAX_DAYS - 1)
    return max(first, limit), last, first < limit


# -- rendering (queries + figures) ------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class EpisodesView:
    kpis: html.Div
    figure: go.Figure
    worst_meters: list[dict[str, Any]]


def render_episodes(src: DataSource, city: str | None) -> EpisodesView:
    """Open episodes for `city` (None: both): the counts, the rule x power company heatmap, the worst meters."""
    counts = qq.fetch_episode_counts(src, city)
    by_rule = qq.fetch_open_episodes_by_rule(src, city)
    worst = qq.fetch_worst_meters(src, city)
    cards = html.Div(
        [
            kpi(
                "open episodes",
                fmt_int(counts.open_episodes),
                id_="quality-kpi-open-episodes",
                note=f"+ {counts.acknowledged_episodes:,} acknowledged" if counts.acknowledged_episodes else None,
            ),
            kpi("meters with an open episode", fmt_int(counts.open_meters), id_="quality-kpi-open-meters"),
        ],
        className="kpi-row",
    )
    table = worst.copy()
    if not table.empty:
        table["first_at"] = table["first_start"].map(fmt_ts)
        table["last_at"] = table["last_end"].map(fmt_ts)
    return EpisodesView(kpis=cards, figure=episodes_figure(by_rule), worst_meters=records(table))


@dataclass(frozen=True, kw_only=True)
class DaysView:
    kpi: html.Div
    share: go.Figure
    quality_days: go.Figure
    note: str


def render_days(src: DataSource, city: str | None, today: dt.date | None = None) -> DaysView:
    """The validated days of the window for `city`: the estimated share (card and per day) and the days by quality
    code, from the pre-aggregate the dashboards' refresh keeps (vee_quality_daily, sql/090), as of that refresh."""
    first_day, last_day = quality_window(today or local_today())
    note = f"validated days {first_day} to {last_day} (local), channel 1.0.1.8.0 (active import total)"
    missing = src.fetch_missing_tables(qq.QUALITY_AGGREGATE_TABLES)
    counted = qq.fetch_quality_counted(src, first_day, last_day)
    daily = qq.fetch_daily_quality(src, first_day, last_day, city)
    why: str | None = None
    if missing:
        why = "the day aggregate is missing (" + ", ".join(missing) + "): migrate the database (`amr db migrate`)"
    elif not counted.days:
        why = "no validated days counted yet: the aggregate refresh counts them (`amr dashboard refresh`)"
    else:
        note += f", counted by the aggregate refresh of {fmt_ts(counted.newest)} (ICT)"
        if fmt_ts(counted.oldest) != fmt_ts(counted.newest):
            note += f"; a day is re-counted when it changes, the oldest count is of {fmt_ts(counted.oldest)}"
    if why is not None:
        return DaysView(
            kpi=kpi(f"energy estimated ({QUALITY_WINDOW_DAYS} days)", "—", id_="quality-kpi-estimated-share"),
            share=share_figure(daily, first_day, last_day, empty=why),
            quality_days=quality_days_figure(daily, first_day, last_day, empty=why),
            note=note + ": " + why,
        )
    est_kwh = float(daily["estimated_kwh"].sum()) if not daily.empty else 0.0
    all_kwh = est_kwh + (float(daily["measured_kwh"].sum()) if not daily.empty else 0.0)
    meter_days = int(daily["meter_days"].sum()) if not daily.empty else 0
    card = kpi(
        f"energy estimated ({QUALITY_WINDOW_DAYS} days)",
        fmt_pct(est_kwh, all_kwh, digits=2),
        id_="quality-kpi-estimated-share",
        note=f"{est_kwh:,.0f} of {all_kwh:,.0f} kWh, {meter_days:,} meter-days" if meter_days else None,
    )
    return DaysView(
        kpi=card,
        share=share_figure(daily, first_day, last_day),
        quality_days=quality_days_figure(daily, first_day, last_day),
        note=note,
    )


@dataclass(frozen=True, kw_only=True)
class ServiceView:
    status: Any
    kpis: html.Div


def render_service(src: DataSource) -> ServiceView:
    """The VEE service's last pass, lag and queue, and the page's status line (an empty state before its first
    pass or before the continuous VEE tables exist)."""
    missing = src.fetch_missing_tables(qq.VEE_TABLES)
    state = qq.fetch_service_state(src)
    pending = qq.fetch_pending_units(src)
    row = state.iloc[0] if not state.empty else None
    last_pass = row["last_pass_at"] if row is not None else None
    lag_s = float(row["lag_s"]) if row is not None and pd.notna(row["lag_s"]) else None
    if missing:
        status: Any = empty_state(
            "The continuous VEE tables are missing (" + ", ".join(missing) + "): migrate the database"
            " (`amr db migrate`, sql/080_continuous_vee.sql).",
            id_="quality-empty",
        )
    elif row is None or last_pass is None or pd.isna(last_pass):
        status = empty_state(
            "The continuous VEE service has not made a pass yet, so nothing is validated: start it with `amr vee`"
            " (`amr up` runs it unless [services] vee = false). Episodes and validated days appear here after its"
            " first pass; no billing run is needed.",
            id_="quality-empty",
        )
    else:
        text = (
            f"Live from the continuous VEE service ({row['service']}): {int(row['passes']):,} passes,"
            f" {int(row['versions']):,} day versions written, validated through {row['last_day'] or '—'}."
        )
        if lag_s is not None and lag_s > LAG_WARN_S:
            text += f" Its last pass was {fmt_duration(lag_s)} ago: is `amr vee` running?"
        status = html.Div(text, className="note", id="quality-service-note")
    pending_text = (
        "—"
        if pending is None
        else (f"{qq.PENDING_COUNT_CAP:,}+" if pending > qq.PENDING_COUNT_CAP else fmt_int(pending))
    )
    cards = html.Div(
        [
            kpi("last VEE pass (ICT)", fmt_ts(last_pass), id_="quality-kpi-last-pass"),
            kpi(
                "VEE lag",
                fmt_duration(lag_s),
                id_="quality-kpi-lag",
                note="service stopped?" if lag_s is not None and lag_s > LAG_WARN_S else None,
            ),
            kpi("pending units", pending_text, id_="quality-kpi-pending", note="(meter, day) awaiting a pass"),
        ],
        className="kpi-row",
    )
    return ServiceView(status=status, kpis=cards)


@dataclass(frozen=True, kw_only=True)
class DrillView:
    figure: go.Figure | None  # None: nothing to show (no serial, unknown meter)
    note: str
    versions: list[dict[str, Any]]


def render_drilldown(src: DataSource, serial: str | None, first_day: dt.date, last_day: dt.date) -> DrillView:
    """One meter over the local days [first_day, last_day] (at most DRILLDOWN_MAX_DAYS, the newest)."""
    serial = (serial or "").strip()
    if not serial:
        return DrillView(figure=None, note="pick a meter in the table above or type its serial", versions=[])
    meter = queries.fetch_meter(src, serial)
    if meter.empty:
        return DrillView(figure=None, note=f"no meter with serial {serial}", versions=[])
    meter_id = int(meter.iloc[0]["meter_id"])
    first_day, last_day, clamped = clamp_days(first_day, last_day)
    start, end = local_day_bounds(first_day, last_day)
    readings = queries.fetch_meter_readings(src, meter_id, start, end, channel_id=qq.TOTAL_IMPORT_CHANNEL)
    current = qq.fetch_meter_current_days(src, meter_id, first_day, last_day)
    versions = qq.fetch_meter_versions(src, meter_id, first_day, last_day)
    episodes = qq.fetch_meter_episodes(src, meter_id, start, end)
    intervals = qq.fetch_meter_intervals(src, meter_id, start, end)
    row = meter.iloc[0]
    n_estimated = int((current["quality"] != "A").sum()) if not current.empty else 0
    n_open = int((episodes["status"] == "open").sum()) if not episodes.empty else 0
    note = (
        f"{row['serial']} — {CITY_NAMES.get(row['city'], row['city'])}, {row['name']} ({row['power_company']}),"
        f" {row['meter_kind']}, {row['protocol'] or 'no protocol'}, {first_day} to {last_day}: {len(readings):,}"
        f" register reads, {len(current):,} validated days ({n_estimated:,} not actual), {len(versions):,}"
        f" versions, {len(episodes):,} episodes ({n_open:,} open)"
    )
    if clamped:
        note += f"; the range is limited to its last {qq.DRILLDOWN_MAX_DAYS} days"
    if current.empty:
        newest = qq.fetch_meter_newest_day(src, meter_id)
        note += f"; newest validated day: {newest}" if newest else "; no day of this meter is validated yet"
    figure = drilldown_figure(
        readings, current, versions, episodes, serial=serial, start=start, end=end, intervals=intervals
    )
    return DrillView(figure=figure, note=note, versions=version_rows(versions, current))


# -- layout and callbacks -----------------------------------------------------------------------------------------
def layout(src: DataSource, query: str = "") -> html.Div:
    params = parse_qs(query.lstrip("?"))
    serial = (params.get("serial") or [""])[0]
    today = local_today()
    return html.Div(
        [
            html.H2("Data quality (continuous VEE)"),
            html.Div([city_control("quality-city")], className="controls"),
            dcc.Interval(id="quality-service-interval", interval=SERVICE_REFRESH_MS),
            html.Div(id="quality-status"),
            html.Div(
                [html.Div(id="quality-kpis"), html.Div(id="quality-share-kpi"), html.Div(id="quality-service-kpis")],
                className="kpi-row",
            ),
            html.Div(id="quality-window-note", className="note"),
            html.Div(
                [
                    html.Div(dcc.Graph(id="quality-episodes", config={"displaylogo": False}), className="half"),
                    html.Div(
                        [
                            html.H3("Meters with the most open episodes"),
                            data_table(
                                "quality-worst-meters",
                                [
                                    ("serial", "serial"),
                                    ("city", "city"),
                                    ("power_company", "company"),
                                    ("open_episodes", "open episodes"),
                                    ("rules", "rules"),
                                    ("first_at", "first (ICT)"),
                                    ("last_at", "last (ICT)"),
                                ],
                                row_selectable="single",
                                page_size=10,
                            ),
                        ],
                        className="half",
                    ),
                ],
                className="two-col",
            ),
            html.Div(
                [
                    html.Div(dcc.Graph(id="quality-share", config={"displaylogo": False}), className="half"),
                    html.Div(dcc.Graph(id="quality-days-by-code", config={"displaylogo": False}), className="half"),
                ],
                className="two-col",
            ),
            html.H3("One meter"),
            html.Div(
                [
                    html.Div(
                        [
                            html.Label("Meter serial"),
                            dcc.Input(id="quality-serial", type="text", debounce=True, value=serial),
                        ],
                        className="control",
                    ),
                    html.Div(
                        [
                            html.Label("Days (local)"),
                            dcc.DatePickerRange(
                                id="quality-days",
                                start_date=(today - dt.timedelta(days=DRILLDOWN_DEFAULT_DAYS - 1)).isoformat(),
                                end_date=today.isoformat(),
                                display_format="YYYY-MM-DD",
                            ),
                        ],
                        className="control",
                    ),
                ],
                className="controls",
            ),
            html.Div(id="quality-drill-note", className="note"),
            dcc.Graph(id="quality-drilldown", config={"displaylogo": False}, style={"display": "none"}),
            html.Div(
                [
                    html.H4("Versions of its validated days (channel 1.0.1.8.0)"),
                    data_table(
                        "quality-versions",
                        [
                            ("day", "day"),
                            ("version", "version"),
                            ("current", ""),
                            ("kwh", "kWh"),
                            ("quality", "quality"),
                            ("method", "method"),
                            ("reason", "reason"),
                            ("made_by", "made by"),
                            ("made_at", "made at (ICT)"),
                            ("note", "note"),
                        ],
                        page_size=15,
                    ),
                ],
                id="quality-versions-box",
                style={"display": "none"},
            ),
        ]
    )


def _parse_day(value: str | None, default: dt.date) -> dt.date:
    return dt.date.fromisoformat(value[:10]) if value else default


def register(app: dash.Dash, src: DataSource) -> None:
    # Two callbacks, so that Dash asks for both at once.
    @app.callback(
        Output("quality-kpis", "children"),
        Output("quality-episodes", "figure"),
        Output("quality-worst-meters", "data"),
        Output("quality-worst-meters", "selected_rows"),
        Input("quality-city", "value"),
    )
    def _episodes(city: str | None) -> tuple[Any, ...]:
        view = render_episodes(src, city or None)
        return view.kpis, view.figure, view.worst_meters, []

    @app.callback(
        Output("quality-share-kpi", "children"),
        Output("quality-share", "figure"),
        Output("quality-days-by-code", "figure"),
        Output("quality-window-note", "children"),
        Input("quality-city", "value"),
    )
    def _days(city: str | None) -> tuple[Any, ...]:
        view = render_days(src, city or None)
        return view.kpi, view.share, view.quality_days, view.note

    @app.callback(
        Output("quality-status", "children"),
        Output("quality-service-kpis", "children"),
        Input("quality-service-interval", "n_intervals"),
    )
    def _service(_ticks: int | None) -> tuple[Any, Any]:
        view = render_service(src)
        return view.status, view.kpis

    @app.callback(
        Output("quality-serial", "value"),
        Output("quality-days", "start_date"),
        Output("quality-days", "end_date"),
        Input("quality-worst-meters", "selected_rows"),
        State("quality-worst-meters", "data"),
        prevent_initial_call=True,
    )
    def _pick(selected: list[int] | None, rows: list[dict[str, Any]]) -> tuple[Any, Any, Any]:
        if not selected or not rows or selected[0] >= len(rows):
            return dash.no_update, dash.no_update, dash.no_update
        row = rows[selected[0]]
        if not row.get("first_start") or not row.get("last_end"):
            return row["serial"], dash.no_update, dash.no_update
        first, last = drill_days_for(row["first_start"], row["last_end"], local_today())
        return row["serial"], first.isoformat(), last.isoformat()

    @app.callback(
        Output("quality-drilldown", "figure"),
        Output("quality-drilldown", "style"),
        Output("quality-drill-note", "children"),
        Output("quality-versions", "data"),
        Output("quality-versions-box", "style"),
        Input("quality-serial", "value"),
        Input("quality-days", "start_date"),
        Input("quality-days", "end_date"),
    )
    def _drill(serial: str | None, start: str | None, end: str | None) -> tuple[Any, ...]:
        today = local_today()
        first = _parse_day(start, today - dt.timedelta(days=DRILLDOWN_DEFAULT_DAYS - 1))
        last = _parse_day(end, today)
        view = render_drilldown(src, serial, first, last)
        if view.figure is None:
            return go.Figure(), {"display": "none"}, view.note, [], {"display": "none"}
        return view.figure, {"display": "block"}, view.note, view.versions, {"display": "block"}
