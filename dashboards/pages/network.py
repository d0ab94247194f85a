"""Network: how many meters answered in the last read interval, 24 h and 7 days; silent meters and gateways
(filterable, paged on the server, CSV download); read success per power company, protocol and gateway;
collectors' spool depth and ingest lag (live from collector_status)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import dash
import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html

from dashboards import queries
from dashboards.components import (
    as_of_note,
    city_control,
    companies_control,
    data_table,
    fmt_int,
    fmt_pct,
    fmt_ts,
    kpi,
    records,
)
from dashboards.queries import LIST_PAGE_ROWS, NetworkFilter
from dashboards.source import DataSource

path = "/network"
title = "Network"

PROTOCOLS = ("modbus-tcp", "modbus-rtu", "modbus-rtu-tcp", "dlms", "dcu-mqtt", "manual", "none")
COLLECTOR_REFRESH_MS = 15_000


def make_filter(
    city: str | None,
    companies: list[str] | None,
    protocols: list[str] | None,
    text: str | None = None,
    silence: str | None = None,
) -> NetworkFilter:
    return NetworkFilter(
        city=city or None,
        companies=tuple(companies or ()),
        protocols=tuple(protocols or ()),
        text=(text or "").strip(),
        silence=silence or None,
    )


# -- pure computation -------------------------------------------------------------------------------------------
def success_rates(summary: pd.DataFrame, by: str) -> pd.DataFrame:
    """[by, attempts, successes, rate_pct] from network_summary rows, lowest rate first."""
    if summary.empty:
        return pd.DataFrame(columns=[by, "attempts", "successes", "rate_pct"])
    grouped = summary.groupby(by, as_index=False)[["attempts", "successes"]].sum()
    grouped = grouped[grouped["attempts"] > 0]
    grouped["rate_pct"] = 100.0 * grouped["successes"].astype(float) / grouped["attempts"].astype(float)
    return grouped.sort_values("rate_pct")


def rate_figure(rates: pd.DataFrame, label_col: str, title_text: str) -> go.Figure:
    fig = go.Figure()
    if not rates.empty:
        fig.add_bar(
            x=rates["rate_pct"],
            y=rates[label_col],
            orientation="h",
            marker={"color": "#1b998b"},
            text=[f"{v:.1f} %" for v in rates["rate_pct"]],
            textposition="auto",
            hovertemplate="%{y}: %{x:.2f} %<extra></extra>",
        )
    fig.update_layout(
        title=title_text,
        height=max(220, 28 * len(rates) + 90),
        template="plotly_white",
        margin={"l": 150, "r": 10, "t": 40, "b": 30},
        xaxis={"title": "read success [%]", "range": [0, 100]},
    )
    return fig


def collector_figure(collectors: pd.DataFrame) -> go.Figure:
    """Spool depth [readings] per collector and lag [s] per ingest worker."""
    fig = go.Figure()
    if not collectors.empty:
        spool = collectors[collectors["spool_depth"].notna()]
        fig.add_bar(
            y=spool["source"],
            x=spool["spool_depth"],
            orientation="h",
            name="spool depth [readings]",
            marker={"color": "#f0a202"},
        )
        lag = collectors[collectors["lag_s"].notna()]
        fig.add_bar(
            y=lag["source"], x=lag["lag_s"], orientation="h", name="ingest lag [s]", marker={"color": "#12355b"}
        )
    fig.update_layout(
        title="collector spool depth and ingest lag",
        barmode="group",
        height=260,
        template="plotly_white",
        margin={"l": 130, "r": 10, "t": 40, "b": 30},
    )
    return fig


@dataclass(frozen=True, kw_only=True)
class NetworkView:
    kpis: html.Div
    by_company: go.Figure
    by_protocol: go.Figure
    collectors: list[dict[str, Any]]
    collector_chart: go.Figure


def render_network(src: DataSource, flt: NetworkFilter) -> NetworkView:
    summary = queries.fetch_network_summary(src, flt)
    remote = int(summary["remote_meters"].sum()) if not summary.empty else 0

    def count(col: str) -> int:
        return int(summary[col].sum()) if not summary.empty else 0

    cards = html.Div(
        [
            kpi("remote-read meters", fmt_int(remote), id_="network-kpi-remote"),
            kpi(
                "read in the last interval",
                fmt_int(count("read_interval")),
                id_="network-kpi-interval",
                note=fmt_pct(count("read_interval"), remote),
            ),
            kpi(
                "read in 24 h",
                fmt_int(count("read_24h")),
                id_="network-kpi-24h",
                note=fmt_pct(count("read_24h"), remote),
            ),
            kpi(
                "read in 7 days",
                fmt_int(count("read_7d")),
                id_="network-kpi-7d",
                note=fmt_pct(count("read_7d"), remote),
            ),
            kpi("never read", fmt_int(count("never_read")), id_="network-kpi-never"),
            kpi("read success", fmt_pct(count("successes"), count("attempts")), id_="network-kpi-success"),
        ],
        className="kpi-row",
    )
    if not summary.empty:
        summary = summary.assign(company=summary["name"] + " (" + summary["power_company"] + ")")
    collectors = queries.fetch_collectors(src)
    table = collectors.assign(
        updated_at=collectors["updated_at"].map(fmt_ts),
        spool_depth=collectors["spool_depth"].map(fmt_int),
        reads_per_s=collectors["reads_per_s"].map(lambda v: "—" if pd.isna(v) else f"{v:,.1f}"),
        lag_s=collectors["lag_s"].map(lambda v: "—" if pd.isna(v) else f"{v:,.1f}"),
    )
    return NetworkView(
        kpis=cards,
        by_company=rate_figure(success_rates(summary, "company"), "company", "read success per power company"),
        by_protocol=rate_figure(success_rates(summary, "protocol"), "protocol", "read success per protocol"),
        collectors=records(table),
        collector_chart=collector_figure(collectors),
    )


def _list_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    out = frame.copy()
    for col in ("last_reading_ts", "last_success_at"):
        if col in out:
            out[col] = out[col].map(fmt_ts)
    if "successes" in out and "attempts" in out:
        out["rate"] = [fmt_pct(s, a) for s, a in zip(out["successes"], out["attempts"], strict=True)]
    if "silent" in out:
        out["silent"] = out["silent"].map(lambda v: "silent" if v else "")
    return records(out)


def render_silent_meters(src: DataSource, flt: NetworkFilter, page: int) -> tuple[list[dict[str, Any]], int, str]:
    frame, total = queries.fetch_silent_meters(src, flt, page=page)
    pages = max(1, -(-total // LIST_PAGE_ROWS))
    return _list_rows(frame), pages, f"{total:,} silent meters match"


def render_gateways(
    src: DataSource, flt: NetworkFilter, silent_only: bool, page: int
) -> tuple[list[dict[str, Any]], int, str]:
    frame, total = queries.fetch_gateways(src, flt, silent_only=silent_only, page=page)
    pages = max(1, -(-total // LIST_PAGE_ROWS))
    return _list_rows(frame), pages, f"{total:,} gateways match"


# -- layout and callbacks -----------------------------------------------------------------------------------------
def layout(src: DataSource, query: str = "") -> html.Div:
    companies = queries.fetch_power_companies(src)
    refreshed = queries.fetch_refreshed_at(src)
    return html.Div(
        [
            html.H2("Reading network"),
            html.Div(as_of_note(refreshed, "network_summary"), className="note"),
            html.Div(
                [
                    city_control("network-city"),
                    companies_control("network-companies", companies),
                    html.Div(
                        [
                            html.Label("Protocols"),
                            dcc.Dropdown(
                                id="network-protocols",
                                multi=True,
                                placeholder="all protocols",
                                options=[{"label": p, "value": p} for p in PROTOCOLS],
                            ),
                        ],
                        className="control",
                    ),
                ],
                className="controls",
            ),
            html.Div(id="network-kpis"),
            html.Div(
                [
                    html.Div(dcc.Graph(id="network-by-company", config={"displaylogo": False}), className="half"),
                    html.Div(dcc.Graph(id="network-by-protocol", config={"displaylogo": False}), className="half"),
                ],
                className="two-col",
            ),
            html.H3("Silent meters (no reading in 24 h)"),
            html.Div(
                [
                    html.Div(
                        [
                            html.Label("Silent for"),
                            dcc.Dropdown(
                                id="network-silence",
                                options=[
                                    {"label": "any", "value": ""},
                                    {"label": "1–7 days", "value": "24h"},
                                    {"label": "more than 7 days", "value": "7d"},
                                    {"label": "never read", "value": "never"},
                                ],
                                value="",
                                clearable=False,
                            ),
                        ],
                        className="control",
                    ),
                    html.Div(
                        [
                            html.Label("Serial or gateway contains"),
                            dcc.Input(id="network-search", type="text", debounce=True, placeholder="e.g. GW-HN"),
                        ],
                        className="control",
                    ),
                    html.Button("download CSV", id="network-silent-csv-button", className="action"),
                    dcc.Download(id="network-silent-csv"),
                ],
                className="controls",
            ),
            html.Div(id="network-silent-count", className="note"),
            data_table(
                "network-silent-table",
                [
                    ("serial", "serial"),
                    ("city", "city"),
                    ("power_company", "company"),
                    ("protocol", "protocol"),
                    ("gateway", "gateway"),
                    ("last_reading_ts", "last reading (ICT)"),
                    ("last_success_at", "last success"),
                    ("last_error", "last error"),
                    ("silence", "silent"),
                ],
                page_action="custom",
                page_current=0,
                page_size=LIST_PAGE_ROWS,
                page_count=1,
            ),
            html.H3("Gateways"),
            html.Div(
                [
                    dcc.Checklist(
                        id="network-gateway-silent",
                        options=[{"label": " silent gateways only", "value": "silent"}],
                        value=[],
                    ),
                    html.Button("download CSV", id="network-gateway-csv-button", className="action"),
                    dcc.Download(id="network-gateway-csv"),
                ],
                className="controls",
            ),
            html.Div(id="network-gateway-count", className="note"),
            data_table(
                "network-gateway-table",
                [
                    ("gateway", "gateway"),
                    ("city", "city"),
                    ("power_company", "company"),
                    ("protocol", "protocol"),
                    ("meters", "meters"),
                    ("read_24h", "read in 24 h"),
                    ("last_reading_ts", "last reading (ICT)"),
                    ("rate", "read success"),
                    ("silent", "status"),
                ],
                page_action="custom",
                page_current=0,
                page_size=LIST_PAGE_ROWS,
                page_count=1,
                style_data_conditional=[{"if": {"filter_query": '{silent} = "silent"'}, "backgroundColor": "#fde2e4"}],
            ),
            html.H3("Collectors and ingest (live)"),
            dcc.Interval(id="network-collector-interval", interval=COLLECTOR_REFRESH_MS),
            html.Div(
                [
                    html.Div(
                        data_table(
                            "network-collectors",
                            [
                                ("source", "source"),
                                ("kind", "kind"),
                                ("state", "state"),
                                ("updated_at", "updated (ICT)"),
                                ("spool_depth", "spool depth"),
                                ("reads_per_s", "reads/s"),
                                ("lag_s", "lag [s]"),
                            ],
                            style_data_conditional=[
                                {"if": {"filter_query": '{state} = "offline"'}, "color": "#d7263d"}
                            ],
                        ),
                        className="half",
                    ),
                    html.Div(dcc.Graph(id="network-collector-chart", config={"displaylogo": False}), className="half"),
                ],
                className="two-col",
            ),
        ]
    )


def register(app: dash.Dash, src: DataSource) -> None:
    filters = [Input("network-city", "value"), Input("network-companies", "value"), Input("network-protocols", "value")]

    @app.callback(
        Output("network-kpis", "children"),
        Output("network-by-company", "figure"),
        Output("network-by-protocol", "figure"),
        Output("network-collectors", "data"),
        Output("network-collector-chart", "figure"),
        *filters,
        Input("network-collector-interval", "n_intervals"),
    )
    def _render(city: str, companies: list[str], protocols: list[str], _ticks: int | None) -> tuple[Any, ...]:
        view = render_network(src, make_filter(city, companies, protocols))
        return view.kpis, view.by_company, view.by_protocol, view.collectors, view.collector_chart

    @app.callback(
        Output("network-silent-table", "page_current"),
        Output("network-gateway-table", "page_current"),
        *filters,
        Input("network-silence", "value"),
        Input("network-search", "value"),
        Input("network-gateway-silent", "value"),
        prevent_initial_call=True,
    )
    def _reset_pages(*_: Any) -> tuple[int, int]:
        return 0, 0

    @app.callback(
        Output("network-silent-table", "data"),
        Output("network-silent-table", "page_count"),
        Output("network-silent-count", "children"),
        *filters,
        Input("network-silence", "value"),
        Input("network-search", "value"),
        Input("network-silent-table", "page_current"),
    )
    def _silent(
        city: str, companies: list[str], protocols: list[str], silence: str, text: str | None, page: int | None
    ) -> tuple[Any, ...]:
        return render_silent_meters(src, make_filter(city, companies, protocols, text, silence), page or 0)

    @app.callback(
        Output("network-gateway-table", "data"),
        Output("network-gateway-table", "page_count"),
        Output("network-gateway-count", "children"),
        *filters,
        Input("network-search", "value"),
        Input("network-gateway-silent", "value"),
        Input("network-gateway-table", "page_current"),
    )
    def _gateways(
        city: str, companies: list[str], protocols: list[str], text: str | None, silent: list[str], page: int | None
    ) -> tuple[Any, ...]:
        return render_gateways(
            src, make_filter(city, companies, protocols, text), "silent" in (silent or []), page or 0
        )

    @app.callback(
        Output("network-silent-csv", "data"),
        Input("network-silent-csv-button", "n_clicks"),
        State("network-city", "value"),
        State("network-companies", "value"),
        State("network-protocols", "value"),
        State("network-silence", "value"),
        State("network-search", "value"),
        prevent_initial_call=True,
    )
    def _silent_csv(
        _n: int, city: str, companies: list[str], protocols: list[str], silence: str, text: str | None
    ) -> Any:
        frame = queries.fetch_silent_meters_csv(src, make_filter(city, companies, protocols, text, silence))
        return dcc.send_data_frame(frame.to_csv, "silent_meters.csv", index=False)

    @app.callback(
        Output("network-gateway-csv", "data"),
        Input("network-gateway-csv-button", "n_clicks"),
        State("network-city", "value"),
        State("network-companies", "value"),
        State("network-protocols", "value"),
        State("network-search", "value"),
        State("network-gateway-silent", "value"),
        prevent_initial_call=True,
    )
    def _gateway_csv(
        _n: int, city: str, companies: list[str], protocols: list[str], text: str | None, silent: list[str]
    ) -> Any:
        frame = queries.fetch_gateways_csv(
            src, make_filter(city, companies, protocols, text), silent_only="silent" in (silent or [])
        )
        return dcc.send_data_frame(frame.to_csv, "gateways.csv", index=False)
