"""Billing: one bill run's figures (a run picker, the newest released bill run by default): totals per power
company, the distribution of its bills, the household energy per EVN tier, its held customers and the rebill runs
that correct it; then every run with its status and summary, and downloads of each run's exports (the files billing
wrote to the run's export_dir).

A run's totals, distribution, tiers and hold reasons come from the summaries the aggregate refresh writes once per
finished run (sql/090); the held customers' list and the corrections are live, bounded queries
(dashboards.queries_billing)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import dash
import pandas as pd
import plotly.graph_objects as go
from dash import Input, Output, State, dcc, html
from plotly.subplots import make_subplots

from dashboards import queries
from dashboards import queries_billing as qb
from dashboards.components import data_table, empty_state, fmt_int, fmt_pct, fmt_ts, kpi, records
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


# -- one bill run: pure computation ------------------------------------------------------------------------------
RELEASED = ("released", "overridden")
MEASURE_TITLES = {"total_vnd": "total incl. VAT [VND]", "energy_kwh": "energy [kWh]"}
MEASURE_UNITS = {"total_vnd": "VND", "energy_kwh": "kWh"}
TIERS_CAPTION = (
    "Household bills' billed energy split into EVN's six tiers: 50, 50, 100, 100 and 100 kWh, then the rest, per"
    " month and household (the tier sizes times the households on the meter). Pro-rating is ignored: a cycle that"
    " is not one calendar month and a price change within the cycle scale the tiers on the bill, not here, so this"
    " is the standard split, within a few kWh of the priced one."
)


def run_label(row: dict[str, Any]) -> str:
    """'run 12 · 2024-06 · Hà Nội / PD0100 · released' (· from readings for a run not billed from the VEE service)."""
    city = row.get("city")
    scope = CITY_NAMES.get(city, "both cities") if isinstance(city, str) else "both cities"
    if row.get("power_company"):
        scope += f" / {row['power_company']}"
    label = f"run {int(row['run_id'])} · {row['period']} · {scope} · {row['status']}"
    return label + (" · from readings" if row.get("source") == "readings" else "")


def run_options(runs: pd.DataFrame) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = runs.to_dict("records")  # type: ignore[assignment]
    return [{"label": run_label(r), "value": int(r["run_id"])} for r in rows]


def default_run(runs: pd.DataFrame, wanted: int | None = None) -> int | None:
    """`wanted` when it is one of the runs, else the newest released (or overridden) bill run, else the newest."""
    if runs.empty:
        return None
    ids = [int(r) for r in runs["run_id"]]
    if wanted is not None and wanted in ids:
        return wanted
    released = runs[runs["status"].isin(RELEASED)]
    return int(released.iloc[0]["run_id"]) if not released.empty else ids[0]


def fmt_amount(value: float) -> str:
    """A bin edge as 50k, 2M, 100M (VND or kWh)."""
    v = float(value)
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= div:
            return f"{v / div:g}{suffix}"
    return f"{v:g}"


def bin_labels(dist: pd.DataFrame) -> list[str]:
    """'50k–100k' for [50k, 100k), '100M+' for the open-ended last bin."""
    return [
        f"{fmt_amount(lo)}+" if hi is None or pd.isna(hi) else f"{fmt_amount(lo)}–{fmt_amount(hi)}"
        for lo, hi in zip(dist["low"], dist["high"], strict=True)
    ]


def fmt_signed(value: int) -> str:
    return f"{value:+,}" if value else "0"


def _no_data(fig: go.Figure, message: str) -> go.Figure:
    fig.add_annotation(
        text=message, showarrow=False, xref="paper", yref="paper", x=0.5, y=0.5, font={"size": 14, "color": "#5b6b7c"}
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return fig


def companies_figure(companies: pd.DataFrame, *, empty: str) -> go.Figure:
    """Horizontal bars per power company: customers billed, energy [kWh], total incl. VAT [VND]."""
    billed = companies[companies["billed"] > 0] if not companies.empty else companies
    layout: dict[str, Any] = {
        "title": "billed customers per power company",
        "template": "plotly_white",
        "height": max(300, 24 * len(billed) + 130),
        "showlegend": False,
        "margin": {"l": 200, "r": 20, "t": 70, "b": 30},
    }
    if billed.empty:
        return _no_data(go.Figure(layout=layout), empty)
    fig = make_subplots(
        rows=1,
        cols=3,
        shared_yaxes=True,
        horizontal_spacing=0.04,
        subplot_titles=("customers billed", "energy [kWh]", "total incl. VAT [VND]"),
    )
    fig.update_layout(**layout)
    labels = billed["name"] + " (" + billed["power_company"] + ")"
    colours = ["#12355b" if c == "HN" else "#1b998b" for c in billed["city"]]
    for col, (field, unit) in enumerate((("billed", "customers"), ("energy_kwh", "kWh"), ("total_vnd", "VND")), 1):
        fig.add_bar(
            x=billed[field].astype(float),
            y=labels,
            orientation="h",
            marker={"color": colours},
            hovertemplate="%{y}: %{x:,.0f} " + unit + "<extra></extra>",
            row=1,
            col=col,
        )
    fig.update_yaxes(autorange="reversed")
    return fig


def trim_bins(dist: pd.DataFrame) -> pd.DataFrame:
    """The bins from the first to the last with customers (the empty ones between stay: they are the shape)."""
    full = [i for i, n in enumerate(dist["bills"]) if int(n) > 0]
    if not full:
        return dist.iloc[0:0]
    return dist.iloc[full[0] : full[-1] + 1]


def distribution_figure(dist: pd.DataFrame, measure: str, *, empty: str) -> go.Figure:
    """Billed customers per 1-2-5 bin of `measure` (total_vnd or energy_kwh), from the first bin with customers
    to the last."""
    dist = trim_bins(dist)
    fig = go.Figure()
    fig.update_layout(
        title=f"billed customers by {MEASURE_TITLES[measure]}, bins 1-2-5 per decade",
        template="plotly_white",
        height=320,
        margin={"l": 60, "r": 10, "t": 40, "b": 50},
        bargap=0.05,
    )
    if dist.empty:
        return _no_data(fig, empty)
    labels = bin_labels(dist)
    fig.add_bar(
        x=labels,
        y=dist["bills"].astype(int),
        marker={"color": "#12355b"},
        hovertemplate="%{x} " + MEASURE_UNITS[measure] + ": %{y:,} customers<extra></extra>",
    )
    fig.update_xaxes(type="category", categoryorder="array", categoryarray=labels, title_text=MEASURE_TITLES[measure])
    fig.update_yaxes(title_text="customers")
    return fig


def tier_kwh(summary: pd.DataFrame) -> list[int]:
    """The run's household kWh per EVN tier (six numbers; zeros when the run is not summarised)."""
    if summary.empty or summary.iloc[0]["tier_kwh"] is None:
        return [0] * len(qb.TIER_LABELS)
    return [int(v) for v in summary.iloc[0]["tier_kwh"]]


def tiers_figure(tiers: list[int], *, empty: str) -> go.Figure:
    """The household energy falling in each EVN tier [kWh], with each tier's share."""
    fig = go.Figure()
    fig.update_layout(
        title="household energy per EVN tier [kWh]",
        template="plotly_white",
        height=320,
        margin={"l": 70, "r": 10, "t": 40, "b": 50},
    )
    total = sum(tiers)
    if not total:
        return _no_data(fig, empty)
    fig.add_bar(
        x=list(qb.TIER_LABELS),
        y=tiers,
        text=[fmt_pct(t, total) for t in tiers],
        textposition="outside",
        marker={"color": ["#9bc53d", "#1b998b", "#12355b", "#f0a202", "#e55934", "#d7263d"]},
        hovertemplate="tier %{x} kWh: %{y:,} kWh (%{text})<extra></extra>",
    )
    fig.update_xaxes(type="category", title_text="tier [kWh per household and month]")
    fig.update_yaxes(title_text="energy [kWh]")
    return fig


def hold_reasons_figure(reasons: pd.DataFrame, *, empty: str) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(
        title="held customers by reason",
        template="plotly_white",
        height=max(220, 40 * len(reasons) + 110),
        margin={"l": 240, "r": 20, "t": 40, "b": 30},
    )
    if reasons.empty:
        return _no_data(fig, empty)
    fig.add_bar(
        x=reasons["bills"].astype(int),
        y=reasons["reason"],
        orientation="h",
        marker={"color": "#f0a202"},
        hovertemplate="%{y}: %{x:,} customers<extra></extra>",
    )
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(title_text="customers")
    return fig


def held_rows(held: pd.DataFrame) -> list[dict[str, Any]]:
    if held.empty:
        return []
    out = held.copy()
    # cycle_end is the read day, the first local day not billed
    out["cycle"] = [
        f"{pd.Timestamp(a):%Y-%m-%d} – {pd.Timestamp(b) - pd.Timedelta(days=1):%Y-%m-%d}"
        for a, b in zip(out["cycle_start"], out["cycle_end"], strict=True)
    ]
    out["energy_kwh"] = out["energy_kwh"].map(fmt_int)
    return records(out.drop(columns=["cycle_start", "cycle_end"]))


def correction_rows(corrections: pd.DataFrame) -> list[dict[str, Any]]:
    if corrections.empty:
        return []
    out = corrections.copy()
    out["finished_at"] = out["finished_at"].map(fmt_ts)
    for col in ("billed_kwh", "new_kwh", "billed_total_vnd", "new_total_vnd"):
        out[col] = out[col].map(fmt_int)
    for col in ("diff_kwh", "diff_total_vnd"):
        out[col] = out[col].map(lambda v: fmt_signed(int(v)))
    return records(out)


# -- one bill run: rendering (queries + figures) -----------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class RunView:
    state: Any
    kpis: html.Div
    companies: go.Figure
    tiers: go.Figure


def _run_kpis(summary: pd.DataFrame) -> html.Div:
    row = summary.iloc[0] if not summary.empty else None

    def value(field: str) -> str:
        return fmt_int(row[field]) if row is not None else "—"

    held_note = None
    if row is not None and int(row["bills"]):
        held_note = f"{fmt_pct(int(row['held']), int(row['bills']))} of {int(row['bills']):,} customers"
    return html.Div(
        [
            kpi("customers billed", value("billed"), id_="billing-run-kpi-billed"),
            kpi("energy [kWh]", value("energy_kwh"), id_="billing-run-kpi-energy"),
            kpi("total incl. VAT [VND]", value("total_vnd"), id_="billing-run-kpi-total"),
            kpi("held", value("held"), id_="billing-run-kpi-held", note=held_note),
            kpi("no data", value("no_data"), id_="billing-run-kpi-no-data"),
        ],
        className="kpi-row",
    )


def render_run(src: DataSource, run_id: int | None) -> RunView:
    """The run's totals (cards), its totals per power company and its household energy per tier; an empty state
    says why when there is no run, the billing tables are missing or the run is not summarised yet."""
    missing = src.fetch_missing_tables(["billing_runs", "bills", *qb.SUMMARY_TABLES])
    summary = qb.fetch_run_summary(src, run_id) if run_id is not None else pd.DataFrame(columns=qb.RUN_SUMMARY_COLUMNS)
    companies = qb.fetch_run_companies(src, run_id) if run_id is not None else pd.DataFrame(columns=qb.COMPANY_COLUMNS)
    if missing:
        why = "Billing's tables are missing (" + ", ".join(missing) + "): migrate the database (`amr db migrate`)."
        state: Any = empty_state(why, id_="billing-run-empty")
        empty = "no billing tables"
    elif run_id is None:
        state = empty_state(
            "No finished bill run yet: `amr bill run --period YYYY-MM` bills the validated days; its figures appear"
            " here after the next aggregate refresh.",
            id_="billing-run-empty",
        )
        empty = "no bill run"
    elif summary.empty:
        state = empty_state(
            f"Run {run_id} is not summarised yet: its figures appear after the next aggregate refresh"
            " (`amr dashboard refresh`; `amr up` runs it every few minutes). Its held customers and corrections"
            " below are live.",
            id_="billing-run-empty",
        )
        empty = f"run {run_id} not summarised yet"
    else:
        row = summary.iloc[0]
        state = html.Div(
            f"Run {run_id} ({row['period']}): {int(row['bills']):,} customers, {int(row['billed']):,} billed,"
            f" {int(row['held']):,} held, {int(row['no_data']):,} without data, {int(row['no_tariff']):,} without"
            f" a tariff; summarised {fmt_ts(row['summarized_at'])} (ICT).",
            className="note",
            id="billing-run-note",
        )
        empty = f"no billed customers in run {run_id}"
    tiers = tier_kwh(summary)
    tier_empty = empty if summary.empty else f"no household customer billed in run {run_id}"
    return RunView(
        state=state,
        kpis=_run_kpis(summary),
        companies=companies_figure(companies, empty=empty),
        tiers=tiers_figure(tiers, empty=tier_empty),
    )


def render_distribution(src: DataSource, run_id: int | None, measure: str | None) -> go.Figure:
    measure = measure if measure in qb.MEASURES else "total_vnd"
    if run_id is None:
        return distribution_figure(pd.DataFrame(columns=qb.DISTRIBUTION_COLUMNS), measure, empty="no bill run")
    dist = qb.fetch_run_distribution(src, run_id, measure)
    return distribution_figure(dist, measure, empty=f"no billed customers in run {run_id} (or not summarised yet)")


@dataclass(frozen=True, kw_only=True)
class HeldView:
    reasons: go.Figure
    note: str
    rows: list[dict[str, Any]]


def render_held(src: DataSource, run_id: int | None) -> HeldView:
    """Held customers: per reason (summary) and the first HELD_ROWS of them (live)."""
    if run_id is None:
        empty = pd.DataFrame(columns=qb.HOLD_REASON_COLUMNS)
        return HeldView(reasons=hold_reasons_figure(empty, empty="no bill run"), note="", rows=[])
    reasons = qb.fetch_run_hold_reasons(src, run_id)
    held = qb.fetch_held_bills(src, run_id)
    summary = qb.fetch_run_summary(src, run_id)
    total = int(summary.iloc[0]["held"]) if not summary.empty else None
    if held.empty:
        note = f"no held customer in run {run_id}"
    elif total is not None and total > len(held):
        note = f"the first {len(held):,} of {total:,} held customers (by meter id)"
    else:
        note = f"{len(held):,} held customers" + ("" if total is not None else " (run not summarised yet)")
    if total is not None and int(reasons["bills"].sum()) > total:
        note += "; a customer held for several reasons counts under each"
    return HeldView(
        reasons=hold_reasons_figure(reasons, empty=f"no held customer in run {run_id}"),
        note=note,
        rows=held_rows(held),
    )


@dataclass(frozen=True, kw_only=True)
class CorrectionsView:
    kpis: html.Div
    note: str
    rows: list[dict[str, Any]]


def render_corrections(src: DataSource, run_id: int | None) -> CorrectionsView:
    """The released rebill runs correcting the run: counts, the net difference of their cancel and rebill rows,
    and the corrected bills (largest differences first)."""
    if run_id is None:
        totals = qb.CorrectionTotals(rebill_runs=0, corrected_bills=0, cancelled_bills=0, diff_kwh=0, diff_total_vnd=0)
        rows: list[dict[str, Any]] = []
    else:
        totals = qb.fetch_correction_totals(src, run_id)
        rows = correction_rows(qb.fetch_corrections(src, run_id)) if totals.rebill_runs else []
    cards = html.Div(
        [
            kpi("rebill runs", fmt_int(totals.rebill_runs), id_="billing-corr-kpi-runs"),
            kpi("corrected bills", fmt_int(totals.corrected_bills), id_="billing-corr-kpi-bills"),
            kpi("net difference [kWh]", fmt_signed(totals.diff_kwh), id_="billing-corr-kpi-kwh"),
            kpi("net difference incl. VAT [VND]", fmt_signed(totals.diff_total_vnd), id_="billing-corr-kpi-vnd"),
        ],
        className="kpi-row",
    )
    if run_id is None:
        note = ""
    elif not totals.rebill_runs:
        note = f"no rebill run corrects run {run_id} (`amr bill corrections --period ... --rebill` issues them)"
    else:
        note = (
            f"{totals.corrected_bills:,} cancel-and-rebill pairs in {totals.rebill_runs:,} released rebill run(s);"
            " the net difference is the sum of their cancel (the bill replaced, negated) and rebill rows"
        )
        if totals.corrected_bills > len(rows):
            note += f"; the {len(rows):,} largest differences shown"
    return CorrectionsView(kpis=cards, note=note, rows=rows)


# -- layout and callbacks -----------------------------------------------------------------------------------------
def _graph(id_: str) -> dcc.Graph:
    return dcc.Graph(id=id_, config={"displaylogo": False})


def _wanted_run(query: str) -> int | None:
    value = (parse_qs(query.lstrip("?")).get("run") or [""])[0]
    return int(value) if value.isdigit() else None


def layout(src: DataSource, query: str = "") -> html.Div:
    runs = qb.fetch_bill_runs(src)
    return html.Div(
        [
            html.H2("Bill run"),
            html.Div(
                [
                    html.Div(
                        [
                            html.Label("Run (newest released by default)"),
                            dcc.Dropdown(
                                id="billing-run",
                                options=run_options(runs),
                                value=default_run(runs, _wanted_run(query)),
                                clearable=False,
                                placeholder="no bill run yet",
                            ),
                        ],
                        className="control wide",
                    ),
                ],
                className="controls",
            ),
            html.Div(id="billing-run-state"),
            html.Div(id="billing-run-kpis"),
            _graph("billing-companies"),
            html.Div(
                [
                    html.Div(
                        [
                            dcc.RadioItems(
                                id="billing-measure",
                                options=[{"label": f" {t}", "value": m} for m, t in MEASURE_TITLES.items()],
                                value="total_vnd",
                                inline=True,
                                inputStyle={"marginLeft": "12px"},
                            ),
                            _graph("billing-distribution"),
                        ],
                        className="half",
                    ),
                    html.Div(
                        [_graph("billing-tiers"), html.Div(TIERS_CAPTION, className="note", id="billing-tiers-note")],
                        className="half",
                    ),
                ],
                className="two-col",
            ),
            html.H3("Held customers"),
            html.Div(
                [
                    html.Div(_graph("billing-hold-reasons"), className="half"),
                    html.Div(
                        [
                            html.Div(id="billing-held-note", className="note"),
                            data_table(
                                "billing-held",
                                [
                                    ("serial", "serial"),
                                    ("power_company", "company"),
                                    ("city", "city"),
                                    ("cycle", "cycle (local days)"),
                                    ("energy_kwh", "energy [kWh]"),
                                    ("hold_reasons", "reasons"),
                                ],
                                page_size=10,
                                style_cell_conditional=[{"if": {"column_id": "hold_reasons"}, "whiteSpace": "normal"}],
                            ),
                        ],
                        className="half",
                    ),
                ],
                className="two-col",
            ),
            html.H3("Corrections"),
            html.Div(id="billing-corrections-kpis"),
            html.Div(id="billing-corrections-note", className="note"),
            data_table(
                "billing-corrections",
                [
                    ("rebill_run_id", "rebill run"),
                    ("finished_at", "released (ICT)"),
                    ("serial", "serial"),
                    ("power_company", "company"),
                    ("billed_kwh", "billed [kWh]"),
                    ("new_kwh", "new [kWh]"),
                    ("diff_kwh", "difference [kWh]"),
                    ("billed_total_vnd", "billed [VND]"),
                    ("new_total_vnd", "new [VND]"),
                    ("diff_total_vnd", "difference [VND]"),
                ],
                page_size=10,
            ),
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
    # The run's figures in four callbacks, so that Dash asks for them at once.
    @app.callback(
        Output("billing-run-state", "children"),
        Output("billing-run-kpis", "children"),
        Output("billing-companies", "figure"),
        Output("billing-tiers", "figure"),
        Input("billing-run", "value"),
    )
    def _run(run_id: int | None) -> tuple[Any, ...]:
        view = render_run(src, run_id)
        return view.state, view.kpis, view.companies, view.tiers

    @app.callback(
        Output("billing-distribution", "figure"),
        Input("billing-run", "value"),
        Input("billing-measure", "value"),
    )
    def _distribution(run_id: int | None, measure: str | None) -> go.Figure:
        return render_distribution(src, run_id, measure)

    @app.callback(
        Output("billing-hold-reasons", "figure"),
        Output("billing-held-note", "children"),
        Output("billing-held", "data"),
        Input("billing-run", "value"),
    )
    def _held(run_id: int | None) -> tuple[Any, ...]:
        view = render_held(src, run_id)
        return view.reasons, view.note, view.rows

    @app.callback(
        Output("billing-corrections-kpis", "children"),
        Output("billing-corrections-note", "children"),
        Output("billing-corrections", "data"),
        Input("billing-run", "value"),
    )
    def _corrections(run_id: int | None) -> tuple[Any, ...]:
        view = render_corrections(src, run_id)
        return view.kpis, view.note, view.rows

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
