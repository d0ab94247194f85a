"""Rollout: customers, electronic and remote-read meters per city and power company, as of a date that a
slider, a date picker or play/replay moves; progress against the 2018 target and the 2017 published figures;
a map of a meter sample (no web tiles: plain lon/lat axes, so it works offline)."""

from __future__ import annotations

import contextlib
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

from amr.rollout_figures import TARGET_DATE, PublishedFigure
from amr.timebase import local_today
from dashboards import queries
from dashboards.components import (
    as_of_note,
    city_control,
    companies_control,
    data_table,
    fmt_int,
    fmt_pct,
    kpi,
    records,
)
from dashboards.reference import (
    CITIES,
    CITY_NAMES,
    TARGET_REMOTE_SHARE_PCT,
    optional_share_pct,
    published_sep_2017,
)
from dashboards.source import DataSource

path = "/"
title = "Rollout"

EPOCH = dt.date(1970, 1, 1)
DEFAULT_START = dt.date(2012, 1, 1)
PLAY_STEP_DAYS = 30  # one month per tick of the replay
PLAY_TICK_MS = 700
KIND_COLOURS = {
    "mechanical": "#9aa5b1",
    "electronic (read on site)": "#f0a202",
    "remote-read": "#1b998b",
}
STATUS_COLOURS = {
    "read in 24 h": "#1b998b",
    "read 1–7 days ago": "#f0a202",
    "silent > 7 days": "#d7263d",
    "never read": "#6a0572",
    "read on site": "#9aa5b1",
}
_STATUS_LABELS = {
    "read_24h": "read in 24 h",
    "read_7d": "read 1–7 days ago",
    "silent": "silent > 7 days",
    "never": "never read",
    "manual": "read on site",
}


def day_to_index(day: dt.date) -> int:
    return (day - EPOCH).days


def index_to_day(index: int | float) -> dt.date:
    return EPOCH + dt.timedelta(days=int(index))


# -- pure computation -------------------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class CityTotals:
    customers: int
    electronic: int
    remote: int


def city_totals(as_of: pd.DataFrame) -> dict[str, CityTotals]:
    """Per city: customers, electronic and remote meters summed over its power companies."""
    out = {}
    for city in CITIES:
        rows = as_of[as_of["city"] == city]
        out[city] = CityTotals(
            customers=int(rows["customers"].sum()),
            electronic=int(rows["electronic"].sum()),
            remote=int(rows["remote"].sum()),
        )
    return out


def classify_map_points(sample: pd.DataFrame, day: dt.date, colour_by: str) -> pd.DataFrame:
    """The sample's meters connected by `day`, with a `category` column: the meter's kind as of `day`, or its
    reading status now (colour_by == 'status')."""
    if sample.empty:
        return sample.assign(category=pd.Series(dtype=str))
    ts = pd.Timestamp(day)
    connected = pd.to_datetime(sample["connected_on"]).fillna(pd.Timestamp(EPOCH)) <= ts
    points = sample[connected].copy()
    if colour_by == "status":
        points["category"] = points["status"].map(_STATUS_LABELS).fillna("read on site")
        return points
    installed = pd.to_datetime(points["installed_on"])
    remote = pd.to_datetime(points["remote_since"])
    electronic = (points["meter_kind"] != "mechanical") & (installed.isna() | (installed <= ts))
    is_remote = remote.notna() & (remote <= ts)
    points["category"] = "mechanical"
    points.loc[electronic, "category"] = "electronic (read on site)"
    points.loc[is_remote, "category"] = "remote-read"
    return points


def company_rows(as_of: pd.DataFrame, city: str | None) -> pd.DataFrame:
    rows = as_of if not city else as_of[as_of["city"] == city]
    rows = rows[rows["customers"] > 0].copy()
    rows["city_name"] = rows["city"].map(CITY_NAMES)
    rows["electronic_share"] = [fmt_pct(e, c) for e, c in zip(rows["electronic"], rows["customers"], strict=True)]
    rows["remote_share"] = [fmt_pct(r, c) for r, c in zip(rows["remote"], rows["customers"], strict=True)]
    for col in ("customers", "electronic", "remote"):
        rows[col] = rows[col].map(fmt_int)
    return rows


def progress_figure(
    monthly: pd.DataFrame, day: dt.date, city: str | None, references: tuple[PublishedFigure, ...]
) -> go.Figure:
    """Electronic and remote shares of customers per city over time, the Sep 2017 published figures as markers,
    the 1 Jan 2018 target as a line, the selected day as a cursor."""
    fig = go.Figure()
    palette = {"HN": ("#1f77b4", "#6baed6"), "HCM": ("#d62728", "#fc9272")}
    for c in CITIES:
        if city and c != city:
            continue
        rows = monthly[monthly["city"] == c]
        if rows.empty:
            continue
        customers = rows["customers"].astype(float).where(rows["customers"] > 0)
        for what, colour, dash_style in (("remote", palette[c][0], "solid"), ("electronic", palette[c][1], "dot")):
            fig.add_scatter(
                x=rows["month_end"],
                y=100.0 * rows[what].astype(float) / customers,
                mode="lines",
                name=f"{CITY_NAMES[c]}: {what}",
                line={"color": colour, "dash": dash_style},
                hovertemplate="%{x|%Y-%m}: %{y:.1f} %<extra>" + f"{CITY_NAMES[c]} {what}</extra>",
            )
        for fig_ref in references:
            if fig_ref.city != c:
                continue
            for what, share, symbol in (
                ("electronic", optional_share_pct(fig_ref.electronic_share), "diamond"),
                ("remote", optional_share_pct(fig_ref.remote_share), "star"),
            ):
                if share is None:
                    continue
                fig.add_scatter(
                    x=[fig_ref.as_of],
                    y=[share],
                    mode="markers+text",
                    text=[f"{share:g} %"],
                    textposition="middle left",
                    marker={"size": 12, "symbol": symbol, "color": palette[c][0]},
                    name=f"published {fig_ref.as_of:%b %Y}: {CITY_NAMES[c]} {what}",
                    hovertemplate=f"{fig_ref.source}: {share:g} % {what}<extra></extra>",
                    showlegend=False,
                )
    fig.add_hline(y=TARGET_REMOTE_SHARE_PCT, line={"color": "#444", "dash": "dash", "width": 1})
    fig.add_vline(
        x=pd.Timestamp(TARGET_DATE).timestamp() * 1000,
        line={"color": "#444", "dash": "dash", "width": 1},
        annotation_text="target 1 Jan 2018: 100 % remote (Res. 36a)",
        annotation_position="top left",
    )
    fig.add_vline(
        x=pd.Timestamp(day).timestamp() * 1000,
        line={"color": "#2a9d8f", "width": 2},
        annotation_text=f"{day:%d %b %Y}",
        annotation_position="bottom right",
    )
    fig.update_layout(
        margin={"l": 50, "r": 10, "t": 30, "b": 40},
        height=380,
        yaxis={"title": "share of customers [%]", "range": [0, 105]},
        legend={"orientation": "h", "y": -0.15},
        xaxis={"range": [pd.Timestamp(DEFAULT_START), pd.Timestamp(max(local_today(), day))]},
        template="plotly_white",
    )
    return fig


def map_figure(points: pd.DataFrame, colour_by: str, city: str | None) -> go.Figure:
    """Meters on plain lon/lat axes, one panel per city, aspect kept with scaleanchor (no tiles, no topojson)."""
    cities = [c for c in CITIES if not city or c == city]
    fig = make_subplots(
        rows=1, cols=len(cities), subplot_titles=[CITY_NAMES[c] for c in cities], horizontal_spacing=0.08
    )
    colours = STATUS_COLOURS if colour_by == "status" else KIND_COLOURS
    for col, c in enumerate(cities, start=1):
        rows = points[points["city"] == c] if not points.empty else points
        for category, colour in colours.items():
            sel = rows[rows["category"] == category] if not rows.empty else rows
            fig.add_scatter(
                x=sel["longitude_deg"] if not sel.empty else [],
                y=sel["latitude_deg"] if not sel.empty else [],
                mode="markers",
                marker={"size": 4, "color": colour, "opacity": 0.75},
                name=category,
                legendgroup=category,
                showlegend=col == 1,
                row=1,
                col=col,
                hovertemplate="%{x:.3f}, %{y:.3f}<extra>" + category + "</extra>",
            )
        axis = "" if col == 1 else str(col)
        lat0 = 21.0 if c == "HN" else 10.8
        fig.update_layout(
            {
                f"yaxis{axis}": {
                    "scaleanchor": f"x{axis}",
                    "scaleratio": 1 / math.cos(math.radians(lat0)),
                    "title": "latitude [°]" if col == 1 else None,
                },
                f"xaxis{axis}": {"title": "longitude [°]"},
            }
        )
    fig.update_layout(
        margin={"l": 50, "r": 10, "t": 40, "b": 40},
        height=420,
        template="plotly_white",
        legend={"orientation": "h", "y": -0.18},
    )
    return fig


@dataclass(frozen=True, kw_only=True)
class RolloutView:
    """Everything the page shows for one date and filter (what the callbacks return)."""

    kpis: html.Div
    table: list[dict[str, Any]]
    progress: go.Figure
    map: go.Figure
    map_note: str


def render_rollout(
    src: DataSource, day: dt.date, city: str | None, companies: list[str] | None, colour_by: str
) -> RolloutView:
    as_of = queries.fetch_rollout_as_of(src, day)
    references = queries.fetch_rollout_reference(src)
    if companies:
        as_of = as_of[as_of["power_company"].isin(companies)]
    totals = city_totals(as_of)
    cards = []
    for c in CITIES:
        if city and c != city:
            continue
        t = totals[c]
        ref = published_sep_2017(c, references)
        cards.append(
            html.Div(
                [
                    html.H3(f"{CITY_NAMES[c]} — {day:%d %b %Y}"),
                    html.Div(
                        [
                            kpi("customers", fmt_int(t.customers), id_=f"rollout-kpi-{c}-customers"),
                            kpi("electronic meters", fmt_int(t.electronic), id_=f"rollout-kpi-{c}-electronic"),
                            kpi(
                                "electronic share",
                                fmt_pct(t.electronic, t.customers),
                                id_=f"rollout-kpi-{c}-electronic-share",
                                note=f"published Sep 2017: {optional_share_pct(ref.electronic_share):g} %",
                            ),
                            kpi("remote-read meters", fmt_int(t.remote), id_=f"rollout-kpi-{c}-remote"),
                            kpi(
                                "remote-read share",
                                fmt_pct(t.remote, t.customers),
                                id_=f"rollout-kpi-{c}-remote-share",
                                note=f"published Sep 2017: {optional_share_pct(ref.remote_share):g} %",
                            ),
                        ],
                        className="kpi-row",
                    ),
                ],
                className="city-card",
            )
        )
    monthly = queries.fetch_rollout_monthly(src, companies)
    sample = queries.fetch_map_sample(src, [c for c in CITIES if not city or c == city])
    if companies and not sample.empty:
        sample = sample[sample["power_company"].isin(companies)]
    points = classify_map_points(sample, day, colour_by)
    weight = int(points["weight"].max()) if not points.empty else 1
    note = (
        f"{len(points):,} sampled meters shown (each stands for about {weight:,})"
        if not points.empty
        else "no meters to show: the fleet is empty or the aggregates are not refreshed"
    )
    return RolloutView(
        kpis=html.Div(cards, className="city-cards"),
        table=records(company_rows(as_of, city)),
        progress=progress_figure(monthly, day, city, references),
        map=map_figure(points, colour_by, city),
        map_note=note,
    )


def step_date(
    trigger: str | None, slider: int | None, picker: str | None, playing: bool, lo: int, hi: int
) -> tuple[int, str, bool]:
    """The date controls' next state (slider index, picker date, playing) after `trigger` fired."""
    value = int(slider if slider is not None else hi)
    if trigger == "rollout-date" and picker:
        value = day_to_index(dt.date.fromisoformat(picker[:10]))
    elif trigger == "rollout-play":
        playing = not playing
        if playing and value >= hi:
            value = lo  # replay from the beginning
    elif trigger == "rollout-interval" and playing:
        value = min(value + PLAY_STEP_DAYS, hi)
        if value >= hi:
            playing = False
    value = max(lo, min(hi, value))
    return value, index_to_day(value).isoformat(), playing


# -- layout and callbacks -----------------------------------------------------------------------------------------
def _slider_bounds(src: DataSource) -> tuple[int, int]:
    first, last = queries.fetch_rollout_span(src)
    start = min(first or DEFAULT_START, DEFAULT_START)
    end = max(last or local_today(), local_today())
    return day_to_index(dt.date(start.year, 1, 1)), day_to_index(end)


def layout(src: DataSource, query: str = "") -> html.Div:
    lo, hi = _slider_bounds(src)
    params = parse_qs(query.lstrip("?"))
    day = index_to_day(hi)
    if params.get("date"):
        with contextlib.suppress(ValueError):
            day = dt.date.fromisoformat(params["date"][0])
    value = max(lo, min(hi, day_to_index(day)))
    companies = queries.fetch_power_companies(src)
    refreshed = queries.fetch_refreshed_at(src)
    marks = {day_to_index(dt.date(y, 1, 1)): str(y) for y in range(index_to_day(lo).year, index_to_day(hi).year + 1, 2)}
    return html.Div(
        [
            html.H2("Rollout of electronic and remote-read meters"),
            html.Div(as_of_note(refreshed, "rollout_daily"), className="note"),
            html.Div(
                [
                    city_control("rollout-city"),
                    companies_control("rollout-companies", companies),
                    html.Div(
                        [
                            html.Label("Date"),
                            dcc.DatePickerSingle(
                                id="rollout-date",
                                date=index_to_day(value).isoformat(),
                                display_format="YYYY-MM-DD",
                                min_date_allowed=index_to_day(lo).isoformat(),
                                max_date_allowed=index_to_day(hi).isoformat(),
                            ),
                        ],
                        className="control",
                    ),
                    html.Button("▶ play", id="rollout-play", n_clicks=0, className="play"),
                ],
                className="controls",
            ),
            dcc.Slider(
                id="rollout-slider",
                min=lo,
                max=hi,
                step=1,
                value=value,
                marks=marks,
                updatemode="mouseup",
                allow_direct_input=False,
            ),
            dcc.Interval(id="rollout-interval", interval=PLAY_TICK_MS, disabled=True),
            dcc.Store(id="rollout-playing", data=False),
            dcc.Loading(html.Div(id="rollout-kpis"), type="dot", delay_show=400),
            html.H3("Progress"),
            dcc.Graph(id="rollout-progress", config={"displaylogo": False}),
            html.Div(
                [
                    html.Div(
                        [
                            html.H3("Power companies"),
                            data_table(
                                "rollout-table",
                                [
                                    ("city_name", "city"),
                                    ("name", "power company"),
                                    ("power_company", "code"),
                                    ("customers", "customers"),
                                    ("electronic", "electronic"),
                                    ("electronic_share", "share"),
                                    ("remote", "remote-read"),
                                    ("remote_share", "share"),
                                ],
                                sort_action="native",
                                page_size=20,
                            ),
                        ],
                        className="half",
                    ),
                    html.Div(
                        [
                            html.H3("Map"),
                            dcc.RadioItems(
                                id="rollout-map-colour",
                                options=[
                                    {"label": "meter kind (as of the date)", "value": "kind"},
                                    {"label": "reading status (now)", "value": "status"},
                                ],
                                value="kind",
                                inline=True,
                            ),
                            dcc.Graph(id="rollout-map", config={"displaylogo": False}),
                            html.Div(id="rollout-map-note", className="note"),
                        ],
                        className="half",
                    ),
                ],
                className="two-col",
            ),
        ]
    )


def register(app: dash.Dash, src: DataSource) -> None:
    @app.callback(
        Output("rollout-slider", "value"),
        Output("rollout-date", "date"),
        Output("rollout-playing", "data"),
        Output("rollout-interval", "disabled"),
        Output("rollout-play", "children"),
        Input("rollout-slider", "value"),
        Input("rollout-date", "date"),
        Input("rollout-interval", "n_intervals"),
        Input("rollout-play", "n_clicks"),
        State("rollout-playing", "data"),
        State("rollout-slider", "min"),
        State("rollout-slider", "max"),
        prevent_initial_call=True,
    )
    def _date_controls(
        slider: int | None,
        picker: str | None,
        _ticks: int | None,
        _clicks: int | None,
        playing: bool | None,
        lo: int,
        hi: int,
    ) -> tuple[int, str, bool, bool, str]:
        value, day, now_playing = step_date(dash.ctx.triggered_id, slider, picker, bool(playing), lo, hi)
        return value, day, now_playing, not now_playing, "⏸ pause" if now_playing else "▶ play"

    @app.callback(
        Output("rollout-kpis", "children"),
        Output("rollout-table", "data"),
        Output("rollout-progress", "figure"),
        Output("rollout-map", "figure"),
        Output("rollout-map-note", "children"),
        Input("rollout-slider", "value"),
        Input("rollout-city", "value"),
        Input("rollout-companies", "value"),
        Input("rollout-map-colour", "value"),
    )
    def _render(
        value: int, city: str | None, companies: list[str] | None, colour_by: str
    ) -> tuple[Any, Any, Any, Any, Any]:
        view = render_rollout(src, index_to_day(value), city or None, companies or None, colour_by)
        return view.kpis, view.table, view.progress, view.map, view.map_note
