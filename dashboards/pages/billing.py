"""Billing: runs with their status and summaries, and downloads of each run's exports (the files billing
wrote to the run's export_dir)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dash
import pandas as pd
from dash import Input, Output, State, dcc, html

from dashboards import queries
from dashboards.components import data_table, empty_state, fmt_int, fmt_ts, kpi, records
from dashboards.reference import CITY_NAMES
from dashboards.source import DataSource

path = "/billing"
title = "Billing"

STATUSES = ("running", "released", "held", "overridden", "failed", "empty")
# Export formats billing writes; anything else in an export directory is not offered for download.
EXPORT_SUFFIXES = (".csv", ".xlsx", ".parquet", ".json", ".txt", ".gz", ".zip")


# -- pure computation (plus a directory listing) -----------------------------------------------------------------
def read_export_files(export_dir: str | None) -> list[Path]:
    """The export files directly inside `export_dir` (no subdirectories, no links out), sorted by name."""
    if not export_dir:
        return []
    base = Path(export_dir)
    if not base.is_dir():
        return []
    files = [p for p in base.iterdir() if p.is_file() and not p.is_symlink() and p.suffix.lower() in EXPORT_SUFFIXES]
    return sorted(files)


def run_rows(runs: pd.DataFrame) -> list[dict[str, Any]]:
    if runs.empty:
        return []
    out = runs.copy()
    out["scope"] = [
        (CITY_NAMES.get(c, "both cities") if isinstance(c, str) else "both cities") + (f" / {pc}" if pc else "")
        for c, pc in zip(out["city"], out["power_company"], strict=True)
    ]
    out["started_at"] = out["started_at"].map(fmt_ts)
    out["finished_at"] = out["finished_at"].map(fmt_ts)
    for col in ("customers", "amount_vnd", "total_vnd"):
        out[col] = out[col].map(fmt_int)
    out["energy_kwh"] = out["energy_kwh"].map(lambda v: "—" if pd.isna(v) else f"{v:,.0f}")
    out["estimated_share"] = out["estimated_share"].map(lambda v: "—" if pd.isna(v) else f"{100 * v:.2f} %")
    out["exceptions"] = out["exceptions"].map(
        lambda v: "—" if v is None or (isinstance(v, float) and pd.isna(v)) else f"{sum(dict(v).values()):,}"
    )
    return records(out.drop(columns=["export_dir"]))


@dataclass(frozen=True, kw_only=True)
class BillingView:
    status: Any
    kpis: html.Div
    runs: list[dict[str, Any]]


def render_billing(src: DataSource, kind: str | None, status: str | None) -> BillingView:
    missing = src.fetch_missing_tables(["billing_runs"])
    runs = queries.fetch_billing_runs(src, kind=kind, status=status, period=None)
    if missing:
        state: Any = empty_state("Billing has not been set up yet: table billing_runs missing.", id_="billing-empty")
    elif runs.empty:
        state = empty_state(
            "No billing runs" + (" match the filter." if kind or status else " yet."), id_="billing-empty"
        )
    else:
        state = html.Div(f"{len(runs):,} runs (newest first)", className="note")
    bills = runs[runs["kind"] == "bill"] if not runs.empty else runs
    cards = html.Div(
        [
            kpi("runs", fmt_int(len(runs)), id_="billing-kpi-runs"),
            kpi(
                "held for review",
                fmt_int(int((runs["status"] == "held").sum()) if not runs.empty else 0),
                id_="billing-kpi-held",
            ),
            kpi(
                "failed",
                fmt_int(int((runs["status"] == "failed").sum()) if not runs.empty else 0),
                id_="billing-kpi-failed",
            ),
            kpi(
                "newest bill run, total [VND]",
                fmt_int(bills.iloc[0]["total_vnd"]) if not bills.empty else "—",
                id_="billing-kpi-total",
            ),
        ],
        className="kpi-row",
    )
    return BillingView(status=state, kpis=cards, runs=run_rows(runs))


def render_run_detail(src: DataSource, run_id: int | None) -> tuple[Any, list[dict[str, str]]]:
    """The selected run's summary and its export files as dropdown options."""
    if run_id is None:
        return html.Div("select a run in the table to see its exports", className="note"), []
    run = queries.fetch_billing_run(src, run_id)
    if run.empty:
        return empty_state(f"run {run_id} no longer exists"), []
    row = run.iloc[0]
    exceptions = row["exceptions"] if isinstance(row["exceptions"], dict) else {}
    files = read_export_files(row["export_dir"])
    detail = html.Div(
        [
            html.H4(f"run {run_id}: {row['kind']} {row['period']} — {row['status']}"),
            html.Div(f"hold reason: {row['hold_reason']}", className="note") if row["hold_reason"] else None,
            html.Pre(json.dumps(exceptions, indent=1, ensure_ascii=False), className="note") if exceptions else None,
            html.Div(
                f"exports in {row['export_dir']}: {len(files)} file(s)"
                if row["export_dir"]
                else "this run wrote no exports",
                className="note",
                id="billing-export-note",
            ),
        ]
    )
    return detail, [{"label": p.name, "value": p.name} for p in files]


def export_path(src: DataSource, run_id: int, name: str) -> Path | None:
    """The export file `name` of run `run_id`, only when it is one of the files the run's export_dir lists."""
    run = queries.fetch_billing_run(src, run_id)
    if run.empty:
        return None
    for p in read_export_files(run.iloc[0]["export_dir"]):
        if p.name == name:
            return p
    return None


# -- layout and callbacks -----------------------------------------------------------------------------------------
def layout(src: DataSource, query: str = "") -> html.Div:
    return html.Div(
        [
            html.H2("Billing runs"),
            html.Div(
                [
                    html.Div(
                        [
                            html.Label("Kind"),
                            dcc.Dropdown(
                                id="billing-kind",
                                options=[
                                    {"label": "all", "value": ""},
                                    {"label": "VEE", "value": "vee"},
                                    {"label": "bills", "value": "bill"},
                                ],
                                value="",
                                clearable=False,
                            ),
                        ],
                        className="control",
                    ),
                    html.Div(
                        [
                            html.Label("Status"),
                            dcc.Dropdown(
                                id="billing-status",
                                options=[{"label": "all", "value": ""}] + [{"label": s, "value": s} for s in STATUSES],
                                value="",
                                clearable=False,
                            ),
                        ],
                        className="control",
                    ),
                ],
                className="controls",
            ),
            html.Div(id="billing-state"),
            html.Div(id="billing-kpis"),
            data_table(
                "billing-runs",
                [
                    ("run_id", "run"),
                    ("kind", "kind"),
                    ("period", "period"),
                    ("scope", "scope"),
                    ("status", "status"),
                    ("started_at", "started (ICT)"),
                    ("finished_at", "finished"),
                    ("customers", "customers"),
                    ("energy_kwh", "energy [kWh]"),
                    ("amount_vnd", "amount [VND]"),
                    ("total_vnd", "total incl. VAT [VND]"),
                    ("estimated_share", "estimated"),
                    ("exceptions", "exceptions"),
                ],
                row_selectable="single",
                page_size=15,
                sort_action="native",
                style_data_conditional=[
                    {"if": {"filter_query": '{status} = "held"'}, "backgroundColor": "#fff4d6"},
                    {"if": {"filter_query": '{status} = "failed"'}, "backgroundColor": "#fde2e4"},
                ],
            ),
            html.H3("Exports"),
            html.Div(id="billing-detail"),
            html.Div(
                [
                    html.Div(
                        dcc.Dropdown(id="billing-export-file", options=[], placeholder="export file"),
                        className="control wide",
                    ),
                    html.Button("download", id="billing-export-button", className="action"),
                    dcc.Download(id="billing-export-download"),
                ],
                className="controls",
            ),
            dcc.Store(id="billing-run-id"),
        ]
    )


def register(app: dash.Dash, src: DataSource) -> None:
    @app.callback(
        Output("billing-state", "children"),
        Output("billing-kpis", "children"),
        Output("billing-runs", "data"),
        Output("billing-runs", "selected_rows"),
        Input("billing-kind", "value"),
        Input("billing-status", "value"),
    )
    def _render(kind: str | None, status: str | None) -> tuple[Any, ...]:
        view = render_billing(src, kind or None, status or None)
        return view.status, view.kpis, view.runs, []

    @app.callback(
        Output("billing-detail", "children"),
        Output("billing-export-file", "options"),
        Output("billing-export-file", "value"),
        Output("billing-run-id", "data"),
        Input("billing-runs", "selected_rows"),
        State("billing-runs", "data"),
    )
    def _detail(selected: list[int] | None, rows: list[dict[str, Any]] | None) -> tuple[Any, ...]:
        run_id = int(rows[selected[0]]["run_id"]) if selected and rows and selected[0] < len(rows) else None
        detail, options = render_run_detail(src, run_id)
        return detail, options, options[0]["value"] if options else None, run_id

    @app.callback(
        Output("billing-export-download", "data"),
        Input("billing-export-button", "n_clicks"),
        State("billing-run-id", "data"),
        State("billing-export-file", "value"),
        prevent_initial_call=True,
    )
    def _download(_n: int, run_id: int | None, name: str | None) -> Any:
        if run_id is None or not name:
            return dash.no_update
        found = export_path(src, run_id, name)
        return dcc.send_file(str(found)) if found else dash.no_update
