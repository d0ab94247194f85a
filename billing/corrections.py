"""Corrections: released bills whose validated data changed since they were billed (late reads replaced an
estimate, a person edited a day), with the difference in kWh and VND, and the cancel-and-rebill run that puts
them right. A bill records the sum of its days' versions (versions only grow): a different sum now means its
data changed; the run's data_as_of names the versions it used (sql/085_billing_from_determinants.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import psycopg

from billing.bill_ready import days_as_vee
from billing.cycles import BillingPeriod
from billing.load import MeterTable, fetch_meters, fetch_validated_days
from billing.pricing import BILL_DB_COLUMNS, determinants, price_bills
from billing.store import copy_frame, finish_run
from billing.tariff_book import read_tariff_book
from billing.vee import ENERGY_CHANNELS, PeriodWindow

_EFFECTIVE = """
SELECT DISTINCT ON (b.meter_id) b.run_id, b.meter_id, b.cycle_start, b.cycle_end, b.energy_kwh, b.amount_vnd,
       b.vat_vnd, b.total_vnd, b.determinant_versions
FROM bills b JOIN billing_runs r USING (run_id)
WHERE b.status = 'billed' AND ((r.run_id = %(run)s AND b.bill_kind = 'bill')
      OR (r.corrects_run_id = %(run)s AND r.kind = 'rebill' AND r.status = 'released' AND b.bill_kind = 'rebill'))
ORDER BY b.meter_id, b.run_id DESC
"""


class NoReleasedRun(LookupError):
    pass


@dataclass(kw_only=True)
class CorrectionReport:
    run_id: int  # the released run the corrections are for
    bills: int  # bills in force checked
    changes: pd.DataFrame  # one row per bill whose data changed: the billed and the new figures and differences


def released_run(conn: psycopg.Connection, period: BillingPeriod) -> int:
    """The newest released (or overridden) continuous bill run of the period."""
    row = conn.execute(
        "SELECT max(run_id) FROM billing_runs WHERE kind = 'bill' AND source = 'continuous' AND period = %s"
        " AND status IN ('released', 'overridden')",
        (period.label,),
    ).fetchone()
    if row is None or row[0] is None:
        raise NoReleasedRun(f"no released continuous bill run for {period.label}")
    return int(row[0])


def find_corrections(conninfo: str, *, period: BillingPeriod, tariff_dir: Path | None = None) -> CorrectionReport:
    """The bills in force for the period's released run whose determinants changed, re-priced on today's data."""
    with psycopg.connect(conninfo, autocommit=True) as conn:
        run_id = released_run(conn, period)
        billed = pd.DataFrame(
            conn.execute(_EFFECTIVE, {"run": run_id}).fetchall(),
            columns=["bill_run_id", "meter_id", "cycle_start", "cycle_end", "energy_kwh", "amount_vnd", "vat_vnd",
                     "total_vnd", "determinant_versions"],
        )  # fmt: skip
        if billed.empty:
            return CorrectionReport(run_id=run_id, bills=0, changes=_empty_changes())
        meters = _meters(conn, billed["meter_id"].to_numpy(np.int32))
        start = billed["cycle_start"].to_numpy("datetime64[D]")
        end = billed["cycle_end"].to_numpy("datetime64[D]")
        first = start.min()
        window = PeriodWindow(first_day=first.item(), n_days=int((end.max() - first).astype(int)))
        days = fetch_validated_days(
            conn, meter_ids=meters.meter_id, channels=ENERGY_CHANNELS, first_day=window.first_day, n_days=window.n_days
        )
    # versions now, per bill (its own cycle)
    row = np.searchsorted(meters.meter_id, days.meter_id)
    s_day = (start - np.datetime64("1970-01-01", "D")).astype(np.int64)
    e_day = (end - np.datetime64("1970-01-01", "D")).astype(np.int64)
    inside = (days.day >= s_day[row]) & (days.day < e_day[row])
    now_sum = np.bincount(row[inside], weights=days.version[inside], minlength=len(meters)).astype(np.int64)
    changed = now_sum != billed["determinant_versions"].fillna(-1).to_numpy(np.int64)
    if not changed.any():
        return CorrectionReport(run_id=run_id, bills=len(billed), changes=_empty_changes())
    det = determinants(days_as_vee(days, window), meters, start, end, energy_multiplied=True)
    new = price_bills(meters, det, start, end, read_tariff_book(tariff_dir))
    new["determinant_versions"] = now_sum
    old = billed[changed].reset_index(drop=True)
    fresh = new[changed].reset_index(drop=True)
    changes = pd.DataFrame(
        {
            "bill_run_id": old["bill_run_id"],
            "meter_id": old["meter_id"],
            "serial": fresh["serial"],
            "power_company": fresh["power_company"],
            "billed_kwh": old["energy_kwh"],
            "new_kwh": fresh["energy_kwh"],
            "diff_kwh": fresh["energy_kwh"] - old["energy_kwh"],
            "billed_total_vnd": old["total_vnd"],
            "new_total_vnd": fresh["total_vnd"],
            "diff_total_vnd": fresh["total_vnd"] - old["total_vnd"],
        }
    )
    changes.attrs["new_bills"] = fresh
    changes.attrs["old_bills"] = old
    return CorrectionReport(run_id=run_id, bills=len(billed), changes=changes)


def rebill(conninfo: str, *, period: BillingPeriod, operator: str, tariff_dir: Path | None = None) -> int | None:
    """A 'rebill' run correcting the period's released run: per changed bill, a cancel row (the bill in force,
    negated) and a rebill row (the new bill), released at once; audited. None when nothing changed."""
    report = find_corrections(conninfo, period=period, tariff_dir=tariff_dir)
    if report.changes.empty:
        return None
    new: pd.DataFrame = report.changes.attrs["new_bills"]
    old: pd.DataFrame = report.changes.attrs["old_bills"]
    with psycopg.connect(conninfo, autocommit=True) as conn, conn.transaction():
        row = conn.execute(
            "INSERT INTO billing_runs (kind, period, status, source, corrects_run_id, data_as_of)"
            " VALUES ('rebill', %s, 'running', 'continuous', %s, now()) RETURNING run_id",
            (period.label, report.run_id),
        ).fetchone()
        assert row is not None
        run_id = int(row[0])
        cancel = conn.execute(
            f"SELECT {', '.join(BILL_DB_COLUMNS)}, determinant_versions, validated_days FROM bills"
            f" WHERE (run_id, meter_id, bill_kind) IN (SELECT * FROM unnest(%s::bigint[], %s::integer[], %s::text[]))",
            (
                [int(x) for x in old["bill_run_id"]],
                [int(x) for x in old["meter_id"]],
                ["rebill" if r != report.run_id else "bill" for r in old["bill_run_id"]],
            ),
        ).fetchall()
        cancels = pd.DataFrame(cancel, columns=[*BILL_DB_COLUMNS, "determinant_versions", "validated_days"])
        for c in ("energy_kwh", "normal_kwh", "peak_kwh", "offpeak_kwh", "amount_vnd", "vat_vnd", "total_vnd"):
            cancels[c] = -cancels[c].fillna(0).astype(np.int64)
        cancels["estimated_kwh"] = -cancels["estimated_kwh"]
        cancels["status"] = "cancelled"
        cancels.insert(0, "run_id", run_id)
        cancels["bill_kind"] = "cancel"
        rebills = new[BILL_DB_COLUMNS].copy()
        rebills.insert(0, "run_id", run_id)
        rebills["determinant_versions"] = new["determinant_versions"]
        rebills["bill_kind"] = "rebill"
        copy_frame(conn, "bills", cancels, not_null=("tariff_versions", "quality_flags"))
        copy_frame(conn, "bills", rebills, not_null=("tariff_versions", "quality_flags"))
        diff_kwh = int(report.changes["diff_kwh"].sum())
        diff_vnd = int(report.changes["diff_total_vnd"].sum())
        finish_run(
            conn,
            run_id,
            status="released",
            customers=len(rebills),
            energy_kwh=diff_kwh,
            total_vnd=diff_vnd,
            detail={"corrects_run_id": report.run_id, "operator": operator},
        )
        conn.execute(
            "INSERT INTO vee_audit (operator, action, reason) VALUES (%s, 'rebill', %s)",
            (operator, f"run {run_id} corrects run {report.run_id}: {len(rebills)} bills, {diff_kwh:+,} kWh,"
                       f" {diff_vnd:+,} VND"),
        )  # fmt: skip
    return run_id


def _meters(conn: psycopg.Connection, meter_ids: np.ndarray) -> MeterTable:
    return fetch_meters(conn, meter_ids=meter_ids)


def _empty_changes() -> pd.DataFrame:
    return pd.DataFrame(
        columns=["bill_run_id", "meter_id", "serial", "power_company", "billed_kwh", "new_kwh", "diff_kwh",
                 "billed_total_vnd", "new_total_vnd", "diff_total_vnd"]
    )  # fmt: skip
