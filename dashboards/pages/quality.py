"""Data quality: VEE exceptions by rule and power company for a billing period, the share of consumption
estimated, and a drill-down to one meter's register reads with its VEE flags and daily estimates marked."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import dash
import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html
from plotly.subplots import make_subplots

from amr.timebase import LOCAL_TZ, local_day_bounds, local_today
from dashboards import queries
from dashboards.components import (
    as_of_note,
    city_control,
    data_table,
    empty_state,
    fmt_int,
    fmt_pct,
    kpi,
    records,
)
from dashboards.reference import CITIES, CITY_NAMES
from dashboards.source import DataSource

path = "/quality"
title = "Data quality"

SEVERITY_COLOURS = {"invalid": "#d7263d", "review": "#f0a202", "info": "#7f8c8d"}
DRILLDOWN_DEFAULT_DAYS = 14


# -- pure computation -------------------------------------------------------------------------------------------
def exceptions_figure(summary: pd.DataFrame) -> go.Figure:
    """Stacked bars: exceptions per power company, one colour per rule."""
    fig = go.Figure()
    if not summary.empty:
        labelled = summary.assign(company=summary["name"] + " (" + summary["power_company"] + ")")
        pivot = labelled.pivot_table(index="company", columns="rule", values="exceptions", aggfunc="sum", fill_value=0)
        for rule in pivot.columns:
            fig.add_bar(y=pivot.index, x=pivot[rule], name=rule, orientation="h")
    fig.update_layout(
        barmode="stack",
        title="VEE exceptions by rule and power company",
        template="plotly_white",
        height=max(260, 24 * summary["power_company"].nunique() + 120) if not summary.empty else 260,
        margin={"l": 160, "r": 10, "t": 40, "b": 30},
        xaxis={"title": "exceptions"},
    )
    return fig


def estimated_share(daily: pd.DataFrame, by: str) -> pd.DataFrame:
    """[by, n_measured, n_estimated, share_pct]: the share of intervals estimated."""
    if daily.empty:
        return pd.DataFrame(columns=[by, "n_measured", "n_estimated", "share_pct"])
    g = daily.groupby(by, as_index=False)[["n_measured", "n_estimated"]].sum()
    total = (g["n_measured"] + g["n_estimated"]).astype(float)
    g["share_pct"] = (100.0 * g["n_estimated"].astype(float) / total.where(total > 0)).fillna(0.0)
    return g


def estimated_figure(daily: pd.DataFrame) -> go.Figure:
    fig = go.Figure()
    if not daily.empty:
        for city in CITIES:
            rows = estimated_share(daily[daily["city"] == city], "day")
            if not rows.empty:
                fig.add_scatter(x=rows["day"], y=rows["share_pct"], mode="lines+markers", name=CITY_NAMES[city])
    fig.update_layout(
        title="share of intervals estimated per day",
        template="plotly_white",
        height=300,
        yaxis={"title": "estimated [%]", "rangemode": "tozero"},
        margin={"l": 50, "r": 10, "t": 40, "b": 30},
    )
    return fig


def drilldown_figure(readings: pd.DataFrame, exceptions: pd.DataFrame, daily: pd.DataFrame, serial: str) -> go.Figure:
    """Top: the register [kWh] with each VEE exception marked at its interval end (colour = severity).
    Bottom: daily consumption, measured and estimated stacked."""
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, row_heights=[0.62, 0.38], vertical_spacing=0.06)
    if not readings.empty:
        fig.add_scatter(
            x=readings["ts"],
            y=readings["value"],
            mode="lines",
            name="register reads [kWh]",
            line={"color": "#12355b"},
            row=1,
            col=1,
        )
    if not exceptions.empty:
        reads = readings.set_index("ts")["value"] if not readings.empty else pd.Series(dtype=float)
        for severity, colour in SEVERITY_COLOURS.items():
            sel = exceptions[exceptions["severity"] == severity]
            if sel.empty:
                continue
            y = [
                reads.asof(ts) if not reads.empty and ts >= reads.index[0] else v
                for ts, v in zip(sel["interval_end"], sel["value"], strict=True)
            ]
            fig.add_scatter(
                x=sel["interval_end"],
                y=y,
                mode="markers",
                name=f"VEE {severity}",
                marker={"color": colour, "size": 9, "symbol": "x"},
                text=sel["rule"],
                hovertemplate="%{x}: %{text}<extra>" + severity + "</extra>",
                row=1,
                col=1,
            )
    if not daily.empty:
        fig.add_bar(
            x=daily["day"],
            y=daily["measured_kwh"],
            name="measured [kWh/day]",
            marker={"color": "#1b998b"},
            row=2,
            col=1,
        )
        fig.add_bar(
            x=daily["day"],
            y=daily["estimated_kwh"],
            name="estimated [kWh/day]",
            marker={"color": "#f0a202", "pattern": {"shape": "/"}},
            row=2,
            col=1,
        )
    fig.update_layout(
        barmode="stack",
        template="plotly_white",
        height=480,
        title=f"meter {serial}",
        margin={"l": 60, "r": 10, "t": 40, "b": 30},
        legend={"orientation": "h", "y": -0.1},
    )
    fig.update_yaxes(title_text="register [kWh]", row=1, col=1)
    fig.update_yaxes(title_text="kWh/day", row=2, col=1)
    return fig


@dataclass(frozen=True, kw_only=True)
class QualityView:
    status: Any
    kpis: html.Div
    exceptions: go.Figure
    estimated: go.Figure
    top_meters: list[dict[str, Any]]
    rules: list[dict[str, str]]


def render_quality(src: DataSource, period: str | None, city: str | None, rule: str | None) -> QualityView:
    missing = src.fetch_missing_tables(queries.QUALITY_TABLES)
    refreshed = queries.fetch_refreshed_at(src)
    if missing:
        status: Any = empty_state(
            "VEE has not produced results yet: table(s) " + ", ".join(missing) + " missing (billing's migration).",
            id_="quality-empty",
        )
    elif not period:
        status = empty_state(
            "No finished VEE run yet: run VEE for a billing period, then `amr dashboard refresh`.", id_="quality-empty"
        )
    else:
        status = html.Div(as_of_note(refreshed, "vee_exception_summary"), className="note")
    summary = (
        queries.fetch_exception_summary(src, period, city)
        if period
        else pd.DataFrame(columns=["power_company", "name", "city", "rule", "severity", "exceptions", "meters"])
    )
    daily = queries.fetch_quality_daily(src, city)
    share = estimated_share(daily, "city")
    n_measured, n_estimated = int(share["n_measured"].sum()), int(share["n_estimated"].sum())
    est_kwh = float(daily["estimated_kwh"].sum()) if not daily.empty else 0.0
    all_kwh = est_kwh + (float(daily["measured_kwh"].sum()) if not daily.empty else 0.0)
    cards = html.Div(
        [
            kpi(
                "exceptions",
                fmt_int(summary["exceptions"].sum() if not summary.empty else 0),
                id_="quality-kpi-exceptions",
            ),
            kpi(
                "meters with exceptions",
                fmt_int(summary["meters"].sum() if not summary.empty else 0),
                id_="quality-kpi-meters",
                note="counted per rule",
            ),
            kpi("intervals estimated", fmt_pct(n_estimated, n_measured + n_estimated), id_="quality-kpi-estimated"),
            kpi("energy estimated", fmt_pct(est_kwh, all_kwh), id_="quality-kpi-estimated-kwh"),
        ],
        className="kpi-row",
    )
    rules = sorted(set(summary["rule"]))
    if rule and not summary.empty:
        summary = summary[summary["rule"] == rule]
    top = queries.fetch_top_exception_meters(src, period, rule, city) if period else pd.DataFrame()
    return QualityView(
        status=status,
        kpis=cards,
        exceptions=exceptions_figure(summary),
        estimated=estimated_figure(daily),
        top_meters=records(top),
        rules=[{"label": "all rules", "value": ""}] + [{"label": r, "value": r} for r in rules],
    )


def render_drilldown(
    src: DataSource, serial: str | None, first_day: dt.date, last_day: dt.date
) -> tuple[go.Figure | None, str]:
    """One meter's chart for the local days [first_day, last_day]; (None, why) when there is nothing to show."""
    serial = (serial or "").strip()
    if not serial:
        return None, "pick a meter in the table above or type its serial"
    meter = queries.fetch_meter(src, serial)
    if meter.empty:
        return None, f"no meter with serial {serial}"
    meter_id = int(meter.iloc[0]["meter_id"])
    start, end = local_day_bounds(first_day, last_day)
    readings = queries.fetch_meter_readings(src, meter_id, start, end)
    exceptions = queries.fetch_meter_exceptions(src, meter_id, start, end)
    daily = queries.fetch_meter_daily(src, meter_id, first_day, last_day + dt.timedelta(days=1))
    row = meter.iloc[0]
    note = (
        f"{row['serial']} — {CITY_NAMES.get(row['city'], row['city'])}, {row['name']} ({row['power_company']}),"
        f" {row['meter_kind']}, {row['protocol'] or 'no protocol'}: {len(readings):,} reads, "
        f"{len(exceptions):,} VEE exceptions, {int(daily['n_estimated'].sum()) if not daily.empty else 0:,}"
        " intervals estimated"
    )
    return drilldown_figure(readings, exceptions, daily, serial), note


# -- layout and callbacks -----------------------------------------------------------------------------------------
def layout(src: DataSource, query: str = "") -> html.Div:
    periods = queries.fetch_vee_periods(src)
    today = local_today()
    return html.Div(
        [
            html.H2("Data quality (VEE)"),
            html.Div(
                [
                    html.Div(
                        [
                            html.Label("Billing period"),
                            dcc.Dropdown(
                                id="quality-period",
                                options=[{"label": p, "value": p} for p in periods],
                                value=periods[0] if periods else None,
                                placeholder="no VEE run yet",
                            ),
                        ],
                        className="control",
                    ),
                    city_control("quality-city"),
                    html.Div(
                        [html.Label("Rule"), dcc.Dropdown(id="quality-rule", options=[], value="", clearable=False)],
                        className="control",
                    ),
                ],
                className="controls",
            ),
            html.Div(id="quality-status"),
            html.Div(id="quality-kpis"),
            html.Div(
                [
                    html.Div(dcc.Graph(id="quality-exceptions", config={"displaylogo": False}), className="half"),
                    html.Div(dcc.Graph(id="quality-estimated", config={"displaylogo": False}), className="half"),
                ],
                className="two-col",
            ),
            html.H3("Meters with the most exceptions"),
            data_table(
                "quality-top-meters",
                [
                    ("serial", "serial"),
                    ("city", "city"),
                    ("power_company", "company"),
                    ("exceptions", "exceptions"),
                    ("rules", "rules"),
                    ("first_at", "first"),
                ],
                row_selectable="single",
                page_size=10,
            ),
            html.H3("One meter"),
            html.Div(
                [
                    html.Div(
                        [html.Label("Meter serial"), dcc.Input(id="quality-serial", type="text", debounce=True)],
                        className="control",
                    ),
                    html.Div(
                        [
                            html.Label("Days (local)"),
                            dcc.DatePickerRange(
                                id="quality-days",
                                start_date=(today - dt.timedelta(days=DRILLDOWN_DEFAULT_DAYS)).isoformat(),
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
        ]
    )


def register(app: dash.Dash, src: DataSource) -> None:
    @app.callback(
        Output("quality-status", "children"),
        Output("quality-kpis", "children"),
        Output("quality-exceptions", "figure"),
        Output("quality-estimated", "figure"),
        Output("quality-top-meters", "data"),
        Output("quality-rule", "options"),
        Input("quality-period", "value"),
        Input("quality-city", "value"),
        Input("quality-rule", "value"),
    )
    def _render(period: str | None, city: str | None, rule: str | None) -> tuple[Any, ...]:
        view = render_quality(src, period or None, city or None, rule or None)
        return view.status, view.kpis, view.exceptions, view.estimated, view.top_meters, view.rules

    @app.callback(
        Output("quality-serial", "value"),
        Output("quality-days", "start_date"),
        Output("quality-days", "end_date"),
        Input("quality-top-meters", "selected_rows"),
        State("quality-top-meters", "data"),
        prevent_initial_call=True,
    )
    def _pick(selected: list[int] | None, rows: list[dict[str, Any]]) -> tuple[Any, Any, Any]:
        if not selected or not rows or selected[0] >= len(rows):
            return dash.no_update, dash.no_update, dash.no_update
        row = rows[selected[0]]
        first = pd.Timestamp(row["first_at"]).tz_convert(LOCAL_TZ).date() if row.get("first_at") else None
        if first is None:
            return row["serial"], dash.no_update, dash.no_update
        start = first - dt.timedelta(days=3)
        return row["serial"], start.isoformat(), (start + dt.timedelta(days=DRILLDOWN_DEFAULT_DAYS)).isoformat()

    @app.callback(
        Output("quality-drilldown", "figure"),
        Output("quality-drilldown", "style"),
        Output("quality-drill-note", "children"),
        Input("quality-serial", "value"),
        Input("quality-days", "start_date"),
        Input("quality-days", "end_date"),
    )
    def _drill(serial: str | None, start: str | None, end: str | None) -> tuple[Any, Any, Any]:
        today = local_today()
        first = dt.date.fromisoformat(start[:10]) if start else today - dt.timedelta(days=DRILLDOWN_DEFAULT_DAYS)
        last = dt.date.fromisoformat(end[:10]) if end else today
        fig, note = render_drilldown(src, serial, first, last)
        if fig is None:
            return go.Figure(), {"display": "none"}, note
        return fig, {"display": "block"}, note
