"""The Billing page's run figures: the summaries the aggregate refresh writes per finished bill run (sql/090) and
the live held-customer and correction queries, against a seeded continuous bill run and its rebill runs (figures
worked out from the seed plan in plain Python), the figures the page renders, and the empty states."""

from __future__ import annotations

import bisect
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import psycopg
import pytest

from amr.db.server import DatabaseServer, Role
from dashboards import queries_billing as qb
from dashboards.pages import billing
from dashboards.source import DataSource
from tests.dashboards import seed
from tests.dashboards.conftest import LiveDashboard

# The distribution's bins, as sql/090 writes them: 1-2-5 per decade, the last one open-ended.
VND_EDGES = [0, 50_000, 100_000, 200_000, 500_000, 10**6, 2 * 10**6, 5 * 10**6, 10**7, 2 * 10**7, 5 * 10**7, 10**8]
KWH_EDGES = [0, 10, 20, 50, 100, 200, 500, 1_000, 2_000, 5_000, 10_000, 20_000, 50_000, 100_000]
TIER_KWH = [50, 50, 100, 100, 100]  # per household and month; the sixth tier takes the rest


@pytest.fixture()
def src(live_dashboard: LiveDashboard) -> Iterator[DataSource]:
    source = DataSource(live_dashboard.db.conninfo(Role.READER))
    try:
        yield source
    finally:
        source.close()


@pytest.fixture()
def empty_src(empty_db: DatabaseServer) -> Iterator[DataSource]:
    source = DataSource(empty_db.conninfo(Role.READER))
    try:
        yield source
    finally:
        source.close()


def _text(component: Any) -> str:
    if component is None:
        return ""
    if isinstance(component, str | int | float):
        return str(component)
    if isinstance(component, list | tuple):
        return " ".join(_text(c) for c in component)
    return _text(getattr(component, "children", None))


def _by_id(component: Any, id_: str) -> Any:
    if getattr(component, "id", None) == id_:
        return component
    children = getattr(component, "children", None)
    for child in children if isinstance(children, list | tuple) else [children]:
        if child is not None and not isinstance(child, str | int | float):
            found = _by_id(child, id_)
            if found is not None:
                return found
    return None


def _tiers(kwh: int, households: int) -> list[int]:
    """Plain Python: a bill's kWh through the tiers (sizes x households)."""
    out, rest = [], kwh
    for size in TIER_KWH:
        take = min(rest, size * households)
        out.append(take)
        rest -= take
    return [*out, rest]


def _bins(values: list[int], edges: list[int]) -> dict[int, int]:
    """1-based bin -> count; bin i is [edges[i-1], edges[i])."""
    return dict(Counter(max(bisect.bisect_right(edges, v), 1) for v in values))


def _reason(text: str) -> str:
    return re.sub(r"^\d+%? of (\d+ )?", "", text)


# -- summaries (refresh) ----------------------------------------------------------------------------------------
def test_run_summary_is_the_plans_sums(src: DataSource, bill_plan: seed.BillPlan, bill_runs: seed.BillRuns) -> None:
    summary = qb.fetch_run_summary(src, bill_runs.bill)
    assert len(summary) == 1
    row = summary.iloc[0]
    billed = bill_plan.billed()
    households = [b for b in billed if b.tariff_class == "household"]
    assert row["period"] == seed.BILL_PERIOD
    assert (int(row["bills"]), int(row["billed"]), int(row["held"]), int(row["no_data"]), int(row["no_tariff"])) == (
        len(bill_plan.bills),
        len(billed),
        sum(b.status == "held" for b in bill_plan.bills),
        sum(b.status == "no_data" for b in bill_plan.bills),
        0,
    )
    assert int(row["energy_kwh"]) == sum(b.energy_kwh for b in billed)
    assert int(row["amount_vnd"]) == sum(b.amount_vnd for b in billed)
    assert int(row["total_vnd"]) == sum(b.total_vnd for b in billed)
    assert int(row["household_bills"]) == len(households)
    assert int(row["household_kwh"]) == sum(b.energy_kwh for b in households)
    # Held and cancelled rows are not billed: the seed has both, and held bills carry energy.
    assert any(b.status == "held" and b.energy_kwh for b in bill_plan.bills)
    expected = np.sum([_tiers(b.energy_kwh, b.households) for b in households], axis=0).tolist()
    assert billing.tier_kwh(summary) == expected
    assert sum(expected) == int(row["household_kwh"])
    assert any(b.households == 2 for b in households)  # shared meters: tiers twice the size
    # Every tier has energy in the seed (the top one from the 401+ kWh households).
    assert all(expected)


def test_the_tier_split_is_billings_for_a_whole_month(bill_plan: seed.BillPlan) -> None:
    """The page's split (standard sizes x households) is what billing.charges prices for a cycle of one calendar
    month under one tariff version, the seed's cycle; and its tier sizes are the household tariff's."""
    from billing.charges import tier_sizes, tiered_amount
    from billing.tariff_book import read_tariff_book

    tariff = read_tariff_book().tiered["household"]
    assert all(v.tier_kwh == TIER_KWH for v in tariff.versions)
    version = tariff.versions[-1]
    for b in bill_plan.billed():
        if b.tariff_class != "household":
            continue
        sizes = tier_sizes(version, households=b.households, part_days=30, t_ref_days=30)
        _, per_tier = tiered_amount(np.array([b.energy_kwh]), sizes, version.price_vnd_per_kwh)
        assert per_tier[0].tolist() == _tiers(b.energy_kwh, b.households), b.serial
    assert len(qb.TIER_LABELS) == len(TIER_KWH) + 1


def test_companies_are_the_plans_sums(src: DataSource, bill_plan: seed.BillPlan, bill_runs: seed.BillRuns) -> None:
    companies = qb.fetch_run_companies(src, bill_runs.bill)
    expected: dict[str, list[int]] = {}
    for b in bill_plan.bills:
        acc = expected.setdefault(b.power_company, [0, 0, 0, 0, 0])
        acc[0] += 1
        acc[1] += b.status == "billed"
        acc[2] += b.status == "held"
        acc[3] += b.energy_kwh if b.status == "billed" else 0
        acc[4] += b.total_vnd if b.status == "billed" else 0
    got = {
        r["power_company"]: [
            int(r["bills"]),
            int(r["billed"]),
            int(r["held"]),
            int(r["energy_kwh"]),
            int(r["total_vnd"]),
        ]
        for r in companies.to_dict("records")
    }
    assert got == expected
    # Hà Nội's companies first, with their Vietnamese names.
    assert list(companies["city"]) == sorted(companies["city"], reverse=True)
    assert "Hoàn Kiếm" in set(companies["name"])


@pytest.mark.parametrize(("measure", "edges"), [("total_vnd", VND_EDGES), ("energy_kwh", KWH_EDGES)])
def test_distribution_is_the_plans_bins(
    src: DataSource, bill_plan: seed.BillPlan, bill_runs: seed.BillRuns, measure: str, edges: list[int]
) -> None:
    dist = qb.fetch_run_distribution(src, bill_runs.bill, measure)
    assert list(dist["bin"]) == list(range(1, len(edges) + 1))  # every bin, empty ones too
    assert list(dist["low"]) == edges
    assert list(dist["high"][:-1]) == edges[1:] and pd.isna(dist["high"].iloc[-1])
    values = [getattr(b, measure) for b in bill_plan.billed()]
    got = {int(k): int(n) for k, n in zip(dist["bin"], dist["bills"], strict=True) if n}
    assert got == _bins(values, edges)
    assert int(dist["bills"].sum()) == len(bill_plan.billed())
    with pytest.raises(ValueError, match="measure"):
        qb.fetch_run_distribution(src, bill_runs.bill, "amount_vnd")


def test_hold_reasons_and_held_customers(src: DataSource, bill_plan: seed.BillPlan, bill_runs: seed.BillRuns) -> None:
    held = [b for b in bill_plan.bills if b.status == "held"]
    reasons = qb.fetch_run_hold_reasons(src, bill_runs.bill)
    expected = Counter(_reason(r) for b in held for r in (b.hold_reasons or "").split("; "))
    assert dict(zip(reasons["reason"], (int(n) for n in reasons["bills"]), strict=True)) == expected
    assert set(reasons["reason"]) == {
        "days not validated",
        "readings waiting for validation",
        "open blocking exception episode",
        "intervals estimated",
    }
    assert list(reasons["bills"]) == sorted(reasons["bills"], reverse=True)
    table = qb.fetch_held_bills(src, bill_runs.bill)
    assert sorted(table["serial"]) == sorted(b.serial for b in held)
    by_serial = {b.serial: b for b in held}
    for r in table.to_dict("records"):
        assert r["hold_reasons"] == by_serial[r["serial"]].hold_reasons
        assert r["power_company"] == by_serial[r["serial"]].power_company
    assert len(qb.fetch_held_bills(src, bill_runs.bill, limit=3)) == 3


def test_corrections_are_the_rebill_runs_pairs(
    src: DataSource, bill_plan: seed.BillPlan, bill_runs: seed.BillRuns
) -> None:
    pairs = bill_plan.corrections()
    totals = qb.fetch_correction_totals(src, bill_runs.bill)
    # The failed rebill run corrects nothing.
    assert totals == qb.CorrectionTotals(
        rebill_runs=len(bill_plan.rebills),
        corrected_bills=len(pairs),
        cancelled_bills=len(pairs),
        diff_kwh=sum(new.energy_kwh - old.energy_kwh for old, new in pairs),
        diff_total_vnd=sum(new.total_vnd - old.total_vnd for old, new in pairs),
    )
    assert totals.diff_kwh == 25 - 300 + 7  # the household corrected twice (+25, then +7), the business -300
    table = qb.fetch_corrections(src, bill_runs.bill)
    got = sorted(
        (int(r["rebill_run_id"]), r["serial"], int(r["billed_kwh"]), int(r["new_kwh"]), int(r["diff_total_vnd"]))
        for r in table.to_dict("records")
    )
    runs = [run for run, items in zip(bill_runs.rebills, bill_plan.rebills, strict=True) for _ in items]
    expected = sorted(
        (run, old.serial, old.energy_kwh, new.energy_kwh, new.total_vnd - old.total_vnd)
        for run, (old, new) in zip(runs, pairs, strict=True)
    )
    assert got == expected
    assert list(table["diff_total_vnd"].abs()) == sorted(table["diff_total_vnd"].abs(), reverse=True)
    # A run nobody corrected, and the rebill runs themselves, have no corrections.
    assert qb.fetch_correction_totals(src, bill_runs.empty).rebill_runs == 0
    assert qb.fetch_corrections(src, bill_runs.empty).empty


def test_the_refresh_summarises_a_run_once(live_dashboard: LiveDashboard, bill_runs: seed.BillRuns) -> None:
    """A finished run is summarised at the first refresh after it and kept; a run gone is dropped (rolled back)."""
    with psycopg.connect(live_dashboard.db.conninfo(Role.OWNER)) as conn:
        try:
            before = conn.execute("SELECT run_id, summarized_at FROM bill_run_summary ORDER BY run_id").fetchall()
            finished = conn.execute(
                "SELECT run_id FROM billing_runs WHERE kind = 'bill' AND status <> 'running' ORDER BY run_id"
            ).fetchall()
            assert [r for r, _ in before] == [r for (r,) in finished]
            assert bill_runs.bill in [r for (r,) in finished]
            row = conn.execute(
                "INSERT INTO billing_runs (kind, period, status) VALUES ('bill', '2024-07', 'running') RETURNING run_id"
            ).fetchone()
            assert row is not None
            conn.execute("DELETE FROM billing_runs WHERE run_id = %s", (bill_runs.empty,))
            names = [r[0] for r in conn.execute("SELECT * FROM refresh_dashboard_aggregates()").fetchall()]
            assert "bill_run_summary" in names
            after = conn.execute("SELECT run_id, summarized_at FROM bill_run_summary ORDER BY run_id").fetchall()
            assert after == [r for r in before if r[0] != bill_runs.empty]  # the running one waits, none re-done
            assert not conn.execute(
                "SELECT 1 FROM bill_company_summary WHERE run_id = %s UNION ALL"
                " SELECT 1 FROM bill_distribution WHERE run_id = %s",
                (bill_runs.empty, bill_runs.empty),
            ).fetchall()
            conn.execute("UPDATE billing_runs SET status = 'failed' WHERE run_id = %s", (row[0],))
            conn.execute("SELECT * FROM refresh_dashboard_aggregates()").fetchall()
            assert conn.execute("SELECT bills FROM bill_run_summary WHERE run_id = %s", (row[0],)).fetchone() == (0,)
        finally:
            conn.rollback()


# -- the page ---------------------------------------------------------------------------------------------------
def test_picker_defaults_to_the_newest_released_bill_run(src: DataSource, bill_runs: seed.BillRuns) -> None:
    tree = billing.layout(src)
    picker = _by_id(tree, "billing-run")
    assert picker.value == bill_runs.bill
    values = [o["value"] for o in picker.options]
    assert values == sorted(values, reverse=True)
    assert bill_runs.bill in values and bill_runs.empty in values
    assert not set(bill_runs.rebills) & set(values)  # rebill runs are corrections, not runs to pick
    label = next(o["label"] for o in picker.options if o["value"] == bill_runs.bill)
    assert label == f"run {bill_runs.bill} · {seed.BILL_PERIOD} · both cities · released"
    assert "· from readings" in next(o["label"] for o in picker.options if o["value"] == bill_runs.empty)
    # ?run=N picks another run; an unknown one falls back to the default.
    assert _by_id(billing.layout(src, f"?run={bill_runs.empty}"), "billing-run").value == bill_runs.empty
    assert _by_id(billing.layout(src, "?run=999999"), "billing-run").value == bill_runs.bill
    # Without a released run the newest finished one.
    runs = pd.DataFrame({"run_id": [9, 8], "status": ["held", "failed"]})
    assert billing.default_run(runs) == 9
    assert billing.default_run(runs.iloc[0:0]) is None


def test_run_figures_render_the_plan(src: DataSource, bill_plan: seed.BillPlan, bill_runs: seed.BillRuns) -> None:
    billed = bill_plan.billed()
    view = billing.render_run(src, bill_runs.bill)
    assert _text(_by_id(view.kpis, "billing-run-kpi-billed")) == f"{len(billed):,}"
    assert _text(_by_id(view.kpis, "billing-run-kpi-energy")) == f"{sum(b.energy_kwh for b in billed):,}"
    assert _text(_by_id(view.kpis, "billing-run-kpi-total")) == f"{sum(b.total_vnd for b in billed):,}"
    held = sum(b.status == "held" for b in bill_plan.bills)
    assert _text(_by_id(view.kpis, "billing-run-kpi-held")) == str(held)
    assert f"{100 * held / len(bill_plan.bills):.1f} % of {len(bill_plan.bills)} customers" in _text(view.kpis)
    assert f"Run {bill_runs.bill} ({seed.BILL_PERIOD})" in _text(view.state)
    # Three bar charts per company: customers, kWh, VND; one bar per company with billed customers.
    assert [t.type for t in view.companies.data] == ["bar"] * 3
    customers, energy, total = view.companies.data
    companies = {b.power_company for b in billed}
    assert len(customers.y) == len(companies)
    assert sum(customers.x) == len(billed)
    assert sum(energy.x) == sum(b.energy_kwh for b in billed)
    assert sum(total.x) == sum(b.total_vnd for b in billed)
    assert any(label.endswith("(PE0100)") for label in customers.y)
    # Tiers: six bars summing to the household energy.
    tiers = view.tiers.data[0]
    assert list(tiers.x) == list(qb.TIER_LABELS)
    assert sum(tiers.y) == sum(b.energy_kwh for b in billed if b.tariff_class == "household")
    # Distribution: the bins from the first with customers to the last, labelled by their edges.
    dist = billing.render_distribution(src, bill_runs.bill, "energy_kwh")
    bars = dist.data[0]
    assert sum(bars.y) == len(billed) and bars.y[0] > 0 and bars.y[-1] > 0
    assert "kWh" in dist.layout.title.text
    labels = list(bars.x)
    assert labels[0] == "0–10" and "2k–5k" in labels
    vnd = billing.render_distribution(src, bill_runs.bill, None)  # the default measure: total [VND]
    assert "VND" in vnd.layout.title.text and sum(vnd.data[0].y) == len(billed)


def test_held_and_corrections_render(src: DataSource, bill_plan: seed.BillPlan, bill_runs: seed.BillRuns) -> None:
    held = [b for b in bill_plan.bills if b.status == "held"]
    view = billing.render_held(src, bill_runs.bill)
    assert len(view.rows) == len(held)
    assert view.rows[0]["cycle"] == "2024-06-01 – 2024-06-30"  # cycle_end is the first day not billed
    assert f"{len(held)} held customers" in view.note
    assert "several reasons" in view.note  # one reason of the seed is two
    bars = view.reasons.data[0]
    assert bars.orientation == "h" and "days not validated" in bars.y
    corr = billing.render_corrections(src, bill_runs.bill)
    pairs = bill_plan.corrections()
    assert _text(_by_id(corr.kpis, "billing-corr-kpi-runs")) == str(len(bill_plan.rebills))
    assert _text(_by_id(corr.kpis, "billing-corr-kpi-bills")) == str(len(pairs))
    diff_kwh = sum(new.energy_kwh - old.energy_kwh for old, new in pairs)
    diff_vnd = sum(new.total_vnd - old.total_vnd for old, new in pairs)
    assert _text(_by_id(corr.kpis, "billing-corr-kpi-kwh")) == f"{diff_kwh:+,}"
    assert _text(_by_id(corr.kpis, "billing-corr-kpi-vnd")) == f"{diff_vnd:+,}"
    assert len(corr.rows) == len(pairs) and corr.rows[0]["diff_kwh"] == "-300"


def test_run_without_figures_is_an_empty_state(src: DataSource, bill_runs: seed.BillRuns) -> None:
    # Summarised without a bill (the 2024-04 run): zero cards and charts that say so.
    view = billing.render_run(src, bill_runs.empty)
    assert _text(_by_id(view.kpis, "billing-run-kpi-billed")) == "0"
    assert not view.companies.data and "no billed customers" in view.companies.layout.annotations[0].text
    assert not view.tiers.data and "no household customer billed" in view.tiers.layout.annotations[0].text
    assert not billing.render_distribution(src, bill_runs.empty, "total_vnd").data
    held = billing.render_held(src, bill_runs.empty)
    assert held.rows == [] and held.note == f"no held customer in run {bill_runs.empty}"
    corr = billing.render_corrections(src, bill_runs.empty)
    assert corr.rows == [] and "no rebill run corrects" in corr.note
    # Not summarised yet: said, not guessed.
    pending = billing.render_run(src, 10**9)
    assert pending.state.id == "billing-run-empty" and "not summarised yet" in _text(pending.state)
    assert _text(_by_id(pending.kpis, "billing-run-kpi-billed")) == "—"


def test_empty_database_is_an_empty_state(empty_src: DataSource) -> None:
    tree = billing.layout(empty_src)
    assert _by_id(tree, "billing-run").value is None
    view = billing.render_run(empty_src, None)
    assert view.state.id == "billing-run-empty" and "No finished bill run yet" in _text(view.state)
    assert not view.companies.data and not view.tiers.data
    assert not billing.render_distribution(empty_src, None, "total_vnd").data
    assert billing.render_held(empty_src, None).rows == []
    assert _text(_by_id(billing.render_corrections(empty_src, None).kpis, "billing-corr-kpi-runs")) == "0"


def test_missing_tables_are_an_empty_state(live_dashboard: LiveDashboard, bill_runs: seed.BillRuns) -> None:
    class Premigration(DataSource):
        """A database before sql/090: no bill summaries."""

        def fetch_missing_tables(self, tables: Any) -> list[str]:
            return [t for t in tables if t.startswith("bill_")]

    src = Premigration(live_dashboard.db.conninfo(Role.READER))
    try:
        view = billing.render_run(src, bill_runs.bill)
        assert "migrate the database" in _text(view.state)
        assert not view.companies.data
        assert billing.render_corrections(src, bill_runs.bill).rows  # live: does not need the summaries
    finally:
        src.close()


# -- pure helpers -----------------------------------------------------------------------------------------------
def test_bin_labels_and_trim() -> None:
    dist = pd.DataFrame(
        {"bin": [1, 2, 3, 4, 5], "low": [0, 50_000, 100_000, 2 * 10**6, 10**8], "high": [50_000, 100_000, 2 * 10**6,
         10**8, None], "bills": [0, 3, 0, 2, 0]}
    )  # fmt: skip
    trimmed = billing.trim_bins(dist)
    assert list(trimmed["bin"]) == [2, 3, 4]  # the empty bin between stays
    assert billing.bin_labels(trimmed) == ["50k–100k", "100k–2M", "2M–100M"]
    assert billing.bin_labels(dist.tail(1)) == ["100M+"]
    assert billing.trim_bins(dist.assign(bills=0)).empty
    assert [billing.fmt_signed(v) for v in (0, 5, -1234)] == ["0", "+5", "-1,234"]
