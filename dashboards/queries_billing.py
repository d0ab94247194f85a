"""Every SQL statement of the Billing page's run figures (the run list and its exports are in dashboards.queries).

A bill run holds millions of bills, so the page never reads them whole: a run's totals, its totals per power
company, the distribution of its bills and the household energy per EVN tier come from the summaries that
refresh_dashboard_aggregates() writes once per finished run (sql/090_quality_aggregates.sql: bill_run_summary,
bill_company_summary, bill_distribution, bill_hold_summary). Live, and bounded: the held customers' list (LIMIT,
partial index bills_held) and the corrections, which are the rebill runs' own cancel and rebill rows (bills'
primary key starts with run_id).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from dashboards.source import DataSource

SUMMARY_TABLES = ("bill_run_summary", "bill_company_summary", "bill_distribution", "bill_hold_summary")
# The run picker lists this many bill runs, newest first.
PICKER_MAX_RUNS = 200
# The held customers' and the corrections' tables show at most this many rows (the counts are of all).
HELD_ROWS = 200
CORRECTION_ROWS = 200
MEASURES = ("total_vnd", "energy_kwh")
# EVN's household tiers as sql/090 splits a bill's energy (per household on the meter and month): 0-50, 51-100,
# 101-200, 201-300, 301-400, 401+ kWh.
TIER_LABELS = ("0–50", "51–100", "101–200", "201–300", "301–400", "401+")


# -- runs -----------------------------------------------------------------------------------------------------
PICKER_COLUMNS = ["run_id", "period", "city", "power_company", "status", "source", "finished_at", "customers"]


def fetch_bill_runs(src: DataSource, limit: int = PICKER_MAX_RUNS) -> pd.DataFrame:
    """The finished bill runs (kind 'bill'), newest first: the run picker's choices."""
    return src.fetch_frame(
        f"SELECT {', '.join(PICKER_COLUMNS)} FROM billing_runs"
        " WHERE kind = 'bill' AND status <> 'running' ORDER BY run_id DESC LIMIT %(limit)s",
        {"limit": limit},
        columns=PICKER_COLUMNS,
        requires=["billing_runs"],
    )


RUN_SUMMARY_COLUMNS = [
    "run_id",
    "period",
    "summarized_at",
    "bills",
    "billed",
    "held",
    "no_data",
    "no_tariff",
    "energy_kwh",
    "amount_vnd",
    "total_vnd",
    "household_bills",
    "household_kwh",
    "tier_kwh",
]


def fetch_run_summary(src: DataSource, run_id: int) -> pd.DataFrame:
    """One row of bill_run_summary, or none before the refresh has summarised the run."""
    return src.fetch_frame(
        f"SELECT {', '.join(RUN_SUMMARY_COLUMNS)} FROM bill_run_summary WHERE run_id = %(run)s",
        {"run": run_id},
        columns=RUN_SUMMARY_COLUMNS,
        requires=["bill_run_summary"],
    )


COMPANY_COLUMNS = ["power_company", "name", "city", "bills", "billed", "held", "energy_kwh", "total_vnd"]


def fetch_run_companies(src: DataSource, run_id: int) -> pd.DataFrame:
    """[power_company, name, city, bills, billed, held, energy_kwh, total_vnd] of one run, Hà Nội's companies first."""
    return src.fetch_frame(
        "SELECT s.power_company, coalesce(pc.name, s.power_company) AS name, s.city, s.bills, s.billed, s.held,"
        "       s.energy_kwh, s.total_vnd"
        " FROM bill_company_summary s LEFT JOIN power_companies pc ON pc.code = s.power_company"
        " WHERE s.run_id = %(run)s ORDER BY s.city DESC, s.power_company",
        {"run": run_id},
        columns=COMPANY_COLUMNS,
        requires=["bill_company_summary"],
    )


DISTRIBUTION_COLUMNS = ["bin", "low", "high", "bills"]


def fetch_run_distribution(src: DataSource, run_id: int, measure: str) -> pd.DataFrame:
    """[bin, low, high, bills]: the billed customers of one run per bin [low, high) of `measure` (total_vnd or
    energy_kwh; high None = open-ended), every bin (empty ones too), in order."""
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    return src.fetch_frame(
        "SELECT bin, low, high, bills FROM bill_distribution WHERE run_id = %(run)s AND measure = %(measure)s"
        " ORDER BY bin",
        {"run": run_id, "measure": measure},
        columns=DISTRIBUTION_COLUMNS,
        requires=["bill_distribution"],
    )


HOLD_REASON_COLUMNS = ["reason", "bills"]


def fetch_run_hold_reasons(src: DataSource, run_id: int) -> pd.DataFrame:
    """[reason, bills]: held customers per hold reason (without its figures), most frequent first."""
    return src.fetch_frame(
        "SELECT reason, bills FROM bill_hold_summary WHERE run_id = %(run)s ORDER BY bills DESC, reason",
        {"run": run_id},
        columns=HOLD_REASON_COLUMNS,
        requires=["bill_hold_summary"],
    )


# -- live: held customers and corrections ---------------------------------------------------------------------------
HELD_COLUMNS = ["serial", "power_company", "city", "cycle_start", "cycle_end", "energy_kwh", "hold_reasons"]


def fetch_held_bills(src: DataSource, run_id: int, limit: int = HELD_ROWS) -> pd.DataFrame:
    """The first `limit` held customers of one run by meter id, with their reasons (partial index bills_held)."""
    return src.fetch_frame(
        "SELECT m.serial, b.power_company, b.city, b.cycle_start, b.cycle_end, b.energy_kwh, b.hold_reasons"
        " FROM (SELECT * FROM bills WHERE run_id = %(run)s AND status = 'held'"
        "       ORDER BY meter_id LIMIT %(limit)s) b"
        " JOIN meters m ON m.meter_id = b.meter_id ORDER BY b.meter_id",
        {"run": run_id, "limit": limit},
        columns=HELD_COLUMNS,
        requires=["bills"],
    )


@dataclass(frozen=True, kw_only=True)
class CorrectionTotals:
    rebill_runs: int  # released rebill runs correcting the run
    corrected_bills: int  # rebill rows (a customer corrected twice counts twice)
    cancelled_bills: int  # cancel rows
    diff_kwh: int  # sum of the cancel and rebill rows' energy [kWh]: the net correction
    diff_total_vnd: int  # likewise of total incl. VAT [VND]


def fetch_correction_totals(src: DataSource, run_id: int) -> CorrectionTotals:
    """The released rebill runs that correct `run_id`, and the net difference of their cancel + rebill rows (a
    cancel row is the bill it replaces, negated)."""
    frame = src.fetch_frame(
        "SELECT count(DISTINCT r.run_id) AS rebill_runs,"
        "       count(b.meter_id) FILTER (WHERE b.bill_kind = 'rebill') AS corrected_bills,"
        "       count(b.meter_id) FILTER (WHERE b.bill_kind = 'cancel') AS cancelled_bills,"
        "       coalesce(sum(b.energy_kwh), 0) AS diff_kwh, coalesce(sum(b.total_vnd), 0) AS diff_total_vnd"
        " FROM billing_runs r LEFT JOIN bills b ON b.run_id = r.run_id AND b.bill_kind IN ('cancel', 'rebill')"
        " WHERE r.kind = 'rebill' AND r.status = 'released' AND r.corrects_run_id = %(run)s",
        {"run": run_id},
        columns=["rebill_runs", "corrected_bills", "cancelled_bills", "diff_kwh", "diff_total_vnd"],
        requires=["billing_runs", "bills"],
    )
    if frame.empty:
        return CorrectionTotals(rebill_runs=0, corrected_bills=0, cancelled_bills=0, diff_kwh=0, diff_total_vnd=0)
    row = frame.iloc[0]
    return CorrectionTotals(**{str(k): int(row[k]) for k in frame.columns})


CORRECTION_COLUMNS = [
    "rebill_run_id",
    "finished_at",
    "serial",
    "power_company",
    "billed_kwh",
    "new_kwh",
    "diff_kwh",
    "billed_total_vnd",
    "new_total_vnd",
    "diff_total_vnd",
]


def fetch_corrections(src: DataSource, run_id: int, limit: int = CORRECTION_ROWS) -> pd.DataFrame:
    """One row per corrected bill (a rebill row and its cancel row in the same rebill run): what was billed, the
    new bill and the difference; the largest differences in VND first, at most `limit` rows."""
    return src.fetch_frame(
        "SELECT r.run_id AS rebill_run_id, r.finished_at, m.serial, n.power_company,"
        "       -coalesce(c.energy_kwh, 0) AS billed_kwh, n.energy_kwh AS new_kwh,"
        "       n.energy_kwh + coalesce(c.energy_kwh, 0) AS diff_kwh,"
        "       -coalesce(c.total_vnd, 0) AS billed_total_vnd, n.total_vnd AS new_total_vnd,"
        "       n.total_vnd + coalesce(c.total_vnd, 0) AS diff_total_vnd"
        " FROM billing_runs r"
        " JOIN bills n ON n.run_id = r.run_id AND n.bill_kind = 'rebill'"
        " LEFT JOIN bills c ON c.run_id = n.run_id AND c.meter_id = n.meter_id AND c.bill_kind = 'cancel'"
        " JOIN meters m ON m.meter_id = n.meter_id"
        " WHERE r.kind = 'rebill' AND r.status = 'released' AND r.corrects_run_id = %(run)s"
        " ORDER BY abs(n.total_vnd + coalesce(c.total_vnd, 0)) DESC, r.run_id, m.serial LIMIT %(limit)s",
        {"run": run_id, "limit": limit},
        columns=CORRECTION_COLUMNS,
        requires=["billing_runs", "bills"],
    )
