"""Small building blocks shared by the pages: number formats, KPI cards, empty states, table styles."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import pandas as pd
from dash import dash_table, dcc, html

from amr.timebase import LOCAL_TZ
from dashboards.reference import CITIES, CITY_NAMES

# DejaVu Sans has every Vietnamese precomposed letter; DataTable would otherwise use a monospace font.
FONT_FAMILY = '"DejaVu Sans", "Noto Sans", "Liberation Sans", Arial, sans-serif'

TABLE_STYLE: dict[str, Any] = {
    "style_table": {"overflowX": "auto"},
    "style_cell": {"fontFamily": FONT_FAMILY, "fontSize": "13px", "padding": "4px 8px", "textAlign": "left"},
    "style_header": {"fontWeight": "600", "backgroundColor": "#eef2f6"},
}


def fmt_int(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    return f"{int(value):,}"


def fmt_pct(numerator: float, denominator: float, *, digits: int = 1) -> str:
    """A share as '33.0 %' ('—' when the denominator is zero)."""
    if not denominator:
        return "—"
    return f"{100.0 * numerator / denominator:.{digits}f} %"


def fmt_ts(value: Any) -> str:
    """A timestamp in local time (Asia/Ho_Chi_Minh), '—' when missing."""
    if value is None or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if isinstance(value, pd.Timestamp):
        value = value.to_pydatetime()
    if isinstance(value, dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=dt.UTC)
        return value.astimezone(LOCAL_TZ).strftime("%Y-%m-%d %H:%M")
    return str(value)


def kpi(label: str, value: str, *, id_: str, note: str | None = None) -> html.Div:
    children: list[Any] = [html.Div(label, className="kpi-label"), html.Div(value, id=id_, className="kpi-value")]
    if note:
        children.append(html.Div(note, className="kpi-note"))
    return html.Div(children, className="kpi")


def empty_state(message: str, *, id_: str | None = None) -> html.Div:
    return html.Div(message, className="empty-state", id=id_ or "")


def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """DataTable rows: NaN/NaT become None so the JSON stays valid."""
    if frame.empty:
        return []
    clean = frame.astype(object).where(frame.notna(), None)
    return clean.to_dict("records")  # type: ignore[return-value]


def data_table(id_: str, columns: list[tuple[str, str]], **kwargs: Any) -> Any:
    """A DataTable with the house style; columns as (field, header)."""
    # dash 4 ships DataTable without type information mypy can read.
    return dash_table.DataTable(  # type: ignore[attr-defined]
        id=id_, columns=[{"id": c, "name": h} for c, h in columns], data=[], **TABLE_STYLE, **kwargs
    )


def as_of_note(refreshed: dict[str, dt.datetime], name: str) -> str:
    when = refreshed.get(name)
    if when is None:
        return "aggregates not refreshed yet: run `amr dashboard refresh`"
    return f"as of {fmt_ts(when)} (ICT), refreshed by `amr dashboard refresh`"


def city_control(id_: str) -> html.Div:
    """The city filter every page shares: both cities, Hà Nội or TP. Hồ Chí Minh."""
    return html.Div(
        [
            html.Label("City"),
            dcc.Dropdown(
                id=id_,
                options=[{"label": "both cities", "value": ""}]
                + [{"label": CITY_NAMES[c], "value": c} for c in CITIES],
                value="",
                clearable=False,
            ),
        ],
        className="control",
    )


def companies_control(id_: str, companies: pd.DataFrame) -> html.Div:
    """The power-company multi-select (names with their diacritics and codes)."""
    return html.Div(
        [
            html.Label("Power companies"),
            dcc.Dropdown(
                id=id_,
                multi=True,
                placeholder="all power companies",
                options=[{"label": f"{r.name} ({r.code})", "value": r.code} for r in companies.itertuples()],
            ),
        ],
        className="control wide",
    )
