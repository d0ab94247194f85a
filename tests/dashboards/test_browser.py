"""The dashboards in a real headless Chromium against a live server over a seeded database."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, ConsoleMessage, HttpCredentials, Page, expect

from tests.dashboards import seed
from tests.dashboards.conftest import LiveDashboard

pytestmark = pytest.mark.browser

TIMEOUT_MS = 30_000  # a loaded 2-core machine renders slowly; never a speed assertion
expect.set_options(timeout=TIMEOUT_MS)


@pytest.fixture()
def page(browser: Browser, live_dashboard: LiveDashboard) -> Iterator[Page]:
    # The operator's login, answered to the server's basic-auth challenge.
    login: HttpCredentials = {"username": live_dashboard.auth.user, "password": live_dashboard.auth.password}
    context = browser.new_context(
        viewport={"width": 1400, "height": 1000}, accept_downloads=True, http_credentials=login
    )
    pg = context.new_page()
    pg.set_default_timeout(TIMEOUT_MS)
    errors: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type == "error":
            errors.append(msg.text)

    pg.on("console", on_console)
    pg.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    yield pg
    context.close()
    assert errors == [], f"browser console errors: {errors}"


def _wait_idle(page: Page) -> None:
    # Dash marks the document while callbacks are in flight.
    page.wait_for_load_state("networkidle")
    page.wait_for_function("!document.querySelector('[data-dash-is-loading=\"true\"]')")


@pytest.mark.parametrize(
    ("name", "path", "marker"),
    [
        ("rollout", "/?date=2017-09-15", "#rollout-kpi-HN-electronic-share"),
        ("network", "/network", "#network-kpi-remote"),
        ("quality", "/quality", "#quality-kpi-open-episodes"),
        ("billing", "/billing", "#billing-kpi-runs"),
    ],
)
def test_page_loads_without_console_errors(
    live_dashboard: LiveDashboard, page: Page, screenshots: Path, name: str, path: str, marker: str
) -> None:
    page.goto(live_dashboard.url + path)
    expect(page.locator(marker)).to_be_visible()
    _wait_idle(page)
    # Vietnamese names with their diacritics reach the page (from power_companies.name).
    expect(page.locator(".nav")).to_contain_text("Hà Nội")
    page.screenshot(path=str(screenshots / f"{name}.png"), full_page=True)


def test_rollout_shows_published_2017_shares(live_dashboard: LiveDashboard, page: Page) -> None:
    page.goto(live_dashboard.url + "/?date=2017-09-15")
    expect(page.locator("#rollout-kpi-HN-electronic-share")).to_have_text("33.0 %")
    expect(page.locator("#rollout-kpi-HN-remote-share")).to_have_text("25.0 %")
    expect(page.locator("#rollout-kpi-HCM-electronic-share")).to_have_text("19.0 %")
    expect(page.locator("#rollout-kpi-HCM-remote-share")).to_have_text("16.6 %")
    expect(page.locator("#rollout-kpi-HN-customers")).to_have_text("1,000")
    expect(page.locator("#rollout-table")).to_contain_text("Hoàn Kiếm")
    expect(page.locator("#rollout-table")).to_contain_text("Chợ Lớn")


def test_rollout_date_controls_change_the_figures(live_dashboard: LiveDashboard, page: Page, screenshots: Path) -> None:
    page.goto(live_dashboard.url + "/?date=2017-09-15")
    expect(page.locator("#rollout-kpi-HN-remote-share")).to_have_text("25.0 %")
    # The date picker: HN finished its rollout in 2018 (seeded), HCMC keeps two mechanical meters.
    picker = page.locator("input#rollout-date")
    picker.fill("2024-01-01")
    picker.press("Enter")
    expect(page.locator("#rollout-kpi-HN-remote-share")).to_have_text("100.0 %")
    expect(page.locator("#rollout-kpi-HCM-electronic-share")).to_have_text("99.8 %")
    # The slider, moved with the keyboard, goes back in time: shares can only fall.
    thumb = page.locator("#rollout-slider [role=slider]")
    before = int(thumb.get_attribute("aria-valuenow") or 0)
    thumb.focus()
    for _ in range(3):
        thumb.press("PageDown")
    page.mouse.up()
    expect(thumb).not_to_have_attribute("aria-valuenow", str(before))
    # Play replays from the start when at the end; the date moves on by itself.
    thumb.press("End")
    page.mouse.up()
    # aria-valuemax is fixed, so the expectation retries until the thumb has reached it (no stale read).
    expect(thumb).to_have_attribute("aria-valuenow", thumb.get_attribute("aria-valuemax") or "")
    page.locator("#rollout-play").click()
    expect(page.locator("#rollout-play")).to_contain_text("pause")
    expect(page.locator("#rollout-kpi-HN-remote-share")).not_to_have_text("100.0 %")
    first = picker.input_value()
    page.wait_for_function(
        "v => document.querySelector('input#rollout-date').value !== v", arg=first, timeout=TIMEOUT_MS
    )
    page.locator("#rollout-play").click()
    expect(page.locator("#rollout-play")).to_contain_text("play")
    # City filter: only the chosen city's card remains.
    page.locator("#rollout-city").click()
    page.get_by_role("option", name="TP. Hồ Chí Minh").click()
    expect(page.locator("#rollout-kpi-HN-customers")).to_have_count(0)
    expect(page.locator("#rollout-kpi-HCM-customers")).to_be_visible()
    page.screenshot(path=str(screenshots / "rollout_replay.png"), full_page=True)


def test_network_filters_lists_and_csv(live_dashboard: LiveDashboard, page: Page) -> None:
    page.goto(live_dashboard.url + "/network")
    expect(page.locator("#network-kpi-remote")).to_have_text("1,998")
    expect(page.locator("#network-silent-count")).to_have_text("177 silent meters match")
    page.locator("#network-city").click()
    page.get_by_role("option", name="Hà Nội").click()
    expect(page.locator("#network-kpi-remote")).to_have_text("1,000")
    expect(page.locator("#network-silent-table")).not_to_contain_text("DASH-HCM-")
    # Search narrows the silent list to one meter.
    page.locator("#network-search").fill("DASH-HN-00003")
    page.locator("#network-search").press("Enter")
    expect(page.locator("#network-silent-count")).to_have_text("1 silent meters match")
    # Silent gateways: the seeded one is in HCMC.
    page.locator("#network-search").fill("")
    page.locator("#network-search").press("Enter")
    page.locator("#network-city").click()
    page.get_by_role("option", name="both cities").click()
    page.locator("#network-gateway-silent input").check()
    expect(page.locator("#network-gateway-count")).to_have_text("1 gateways match")
    expect(page.locator("#network-gateway-table")).to_contain_text(seed.SILENT_GATEWAY)
    with page.expect_download() as dl:
        page.locator("#network-gateway-csv-button").click()
    rows = list(csv.DictReader(io.StringIO(Path(dl.value.path()).read_text(encoding="utf-8"))))
    assert [r["gateway"] for r in rows] == [seed.SILENT_GATEWAY]
    with page.expect_download() as dl2:
        page.locator("#network-silent-csv-button").click()
    silent = list(csv.DictReader(io.StringIO(Path(dl2.value.path()).read_text(encoding="utf-8"))))
    assert len(silent) == 177
    expect(page.locator("#network-collectors")).to_contain_text("collector-hcm-1")


def test_quality_shows_the_continuous_vee(
    live_dashboard: LiveDashboard, page: Page, screenshots: Path, vee_plan: seed.VeePlan
) -> None:
    page.goto(live_dashboard.url + "/quality")
    expect(page.locator("#quality-kpi-open-episodes")).to_have_text("17")
    expect(page.locator("#quality-kpi-open-meters")).to_have_text("14")
    expect(page.locator("#quality-kpi-pending")).to_have_text(str(seed.VEE_PENDING_UNITS))
    expect(page.locator("#quality-kpi-estimated-share")).to_have_text(re.compile(r"^\d+\.\d\d %$"))
    expect(page.locator("#quality-kpi-lag")).to_have_text(re.compile(r"^\d+ (s|min)$"))
    expect(page.locator("#quality-service-note")).to_contain_text("1,234 passes")
    # The three fleet charts drew their data (SVG text: the heatmap's rules, the quality codes' legend).
    expect(page.locator("#quality-episodes")).to_contain_text("CLOCK_SUSPECT")
    expect(page.locator("#quality-episodes")).to_contain_text("GAP_TOO_LONG")
    expect(page.locator("#quality-share .scatterlayer .trace")).to_have_count(1)
    expect(page.locator("#quality-days-by-code")).to_contain_text("V variable")
    expect(page.locator("#quality-days-by-code")).to_contain_text("E forward estimate")
    # City filter: HCMC has the 10 GAP episodes of its concentrator outage.
    page.locator("#quality-city").click()
    page.get_by_role("option", name="TP. Hồ Chí Minh").click()
    expect(page.locator("#quality-kpi-open-episodes")).to_have_text("10")
    expect(page.locator("#quality-worst-meters")).not_to_contain_text("DASH-HN-")
    page.locator("#quality-city").click()
    page.get_by_role("option", name="both cities").click()
    expect(page.locator("#quality-kpi-open-episodes")).to_have_text("17")
    # The worst meter, picked in the table, opens on the days of its open episodes.
    expect(page.locator("#quality-worst-meters")).to_contain_text(seed.VEE_SERIAL)
    page.locator("#quality-worst-meters input[type=radio]").first.check()
    expect(page.locator("#quality-serial")).to_have_value(seed.VEE_SERIAL)
    start = page.locator("input.dash-datepicker-start-date")
    expect(start).to_have_value(str(vee_plan.day(13)))
    note = page.locator("#quality-drill-note")
    expect(note).to_contain_text("3 open")
    # Then the 14 days with reads, typed in.
    start.fill(str(vee_plan.day(14)))
    start.press("Enter")
    end = page.locator("input.dash-datepicker-end-date")
    end.fill(str(vee_plan.day(1)))
    end.press("Enter")
    reads = seed.drill_reads(vee_plan, vee_plan.day(14), vee_plan.day(1))
    expect(note).to_contain_text(f"{reads:,} register reads, 14 validated days (2 not actual), 16 versions")
    expect(note).to_contain_text("5 episodes (3 open)")
    chart = page.locator("#quality-drilldown")
    expect(chart).to_be_visible()
    expect(chart).to_contain_text("register reads [kWh]")
    expect(chart).to_contain_text("current version")
    expect(chart).to_contain_text("version 1 [kWh/day], replaced")
    expect(chart).to_contain_text("GAP (auto_resolved)")
    expect(chart).to_contain_text("NEGATIVE (acknowledged)")
    expect(chart.locator(".shapelayer path, .layer-below .shapelayer path")).not_to_have_count(0)
    versions = page.locator("#quality-versions")
    expect(versions).to_be_visible()
    expect(versions).to_contain_text("manual_edit")
    expect(versions).to_contain_text(seed.VEE_OPERATOR)
    expect(versions).to_contain_text(seed.VEE_EDIT_NOTE)
    page.keyboard.press("Escape")  # close the date picker's calendar before the screenshot
    _wait_idle(page)
    page.screenshot(path=str(screenshots / "quality_drilldown.png"), full_page=True)


def test_quality_on_an_empty_database_is_an_empty_state(
    empty_dashboard: LiveDashboard, page: Page, screenshots: Path
) -> None:
    page.goto(empty_dashboard.url + "/quality")
    expect(page.locator("#quality-empty")).to_contain_text("has not made a pass yet")
    expect(page.locator("#quality-kpi-open-episodes")).to_have_text("0")
    expect(page.locator("#quality-kpi-pending")).to_have_text("0")
    expect(page.locator("#quality-kpi-estimated-share")).to_have_text("—")
    expect(page.locator("#quality-episodes")).to_contain_text("no open episodes")
    expect(page.locator("#quality-share")).to_contain_text("no validated days")
    page.locator("#quality-serial").fill("DASH-HN-00005")
    page.locator("#quality-serial").press("Enter")
    expect(page.locator("#quality-drill-note")).to_have_text("no meter with serial DASH-HN-00005")
    expect(page.locator("#quality-drilldown")).to_be_hidden()
    _wait_idle(page)
    page.screenshot(path=str(screenshots / "quality_empty.png"), full_page=True)


def test_billing_shows_the_newest_released_run(
    live_dashboard: LiveDashboard, page: Page, screenshots: Path, bill_plan: seed.BillPlan, bill_runs: seed.BillRuns
) -> None:
    billed = bill_plan.billed()
    held = [b for b in bill_plan.bills if b.status == "held"]
    pairs = bill_plan.corrections()
    page.goto(live_dashboard.url + "/billing")
    expect(page.locator("#billing-run")).to_contain_text(f"run {bill_runs.bill} · {seed.BILL_PERIOD}")
    expect(page.locator("#billing-run-kpi-billed")).to_have_text(f"{len(billed):,}")
    expect(page.locator("#billing-run-kpi-energy")).to_have_text(f"{sum(b.energy_kwh for b in billed):,}")
    expect(page.locator("#billing-run-kpi-total")).to_have_text(f"{sum(b.total_vnd for b in billed):,}")
    expect(page.locator("#billing-run-kpi-held")).to_have_text(str(len(held)))
    # The charts drew their data (SVG text: company names, tier and bin labels, reasons).
    expect(page.locator("#billing-companies")).to_contain_text("Hoàn Kiếm (PD0100)")
    expect(page.locator("#billing-companies")).to_contain_text("Sài Gòn (PE0100)")
    expect(page.locator("#billing-companies .barlayer .trace")).to_have_count(3)
    expect(page.locator("#billing-tiers")).to_contain_text("401+")
    expect(page.locator("#billing-tiers-note")).to_contain_text("Pro-rating is ignored")
    expect(page.locator("#billing-distribution")).to_contain_text("total incl. VAT [VND]")
    expect(page.locator("#billing-distribution")).to_contain_text("500k–1M")
    expect(page.locator("#billing-hold-reasons")).to_contain_text("days not validated")
    expect(page.locator("#billing-held")).to_contain_text(held[0].serial)
    expect(page.locator("#billing-held")).to_contain_text("open blocking exception episode")
    expect(page.locator("#billing-corr-kpi-runs")).to_have_text(str(len(bill_plan.rebills)))
    expect(page.locator("#billing-corr-kpi-bills")).to_have_text(str(len(pairs)))
    diff_kwh = sum(new.energy_kwh - old.energy_kwh for old, new in pairs)
    expect(page.locator("#billing-corr-kpi-kwh")).to_have_text(f"{diff_kwh:+,}")
    expect(page.locator("#billing-corrections")).to_contain_text(pairs[0][0].serial)
    # The distribution of energy instead of VND.
    page.get_by_label("energy [kWh]").check()
    expect(page.locator("#billing-distribution")).to_contain_text("billed customers by energy [kWh]")
    expect(page.locator("#billing-distribution")).to_contain_text("2k–5k")
    _wait_idle(page)
    page.screenshot(path=str(screenshots / "billing_run.png"), full_page=True)
    # Another run from the picker: one without bills says so.
    page.locator("#billing-run").click()
    page.get_by_role("option", name=re.compile(f"^run {bill_runs.empty} ")).click()
    expect(page.locator("#billing-run-kpi-billed")).to_have_text("0")
    expect(page.locator("#billing-companies")).to_contain_text("no billed customers")
    expect(page.locator("#billing-held-note")).to_have_text(f"no held customer in run {bill_runs.empty}")
    expect(page.locator("#billing-corrections-note")).to_contain_text("no rebill run corrects")


def test_billing_on_an_empty_database_is_an_empty_state(empty_dashboard: LiveDashboard, page: Page) -> None:
    page.goto(empty_dashboard.url + "/billing")
    expect(page.locator("#billing-run-empty")).to_contain_text("No finished bill run yet")
    expect(page.locator("#billing-companies")).to_contain_text("no bill run")
    expect(page.locator("#billing-kpi-runs")).to_have_text("0")
    expect(page.locator("#billing-empty")).to_contain_text("No billing runs yet")


def test_billing_runs_and_export_download(live_dashboard: LiveDashboard, page: Page) -> None:
    page.goto(live_dashboard.url + "/billing")
    # seed_billing's VEE run and two bill runs; the continuous bill run, its two rebill runs and a failed one.
    expect(page.locator("#billing-kpi-runs")).to_have_text("7")
    expect(page.locator("#billing-kpi-held")).to_have_text("1")
    expect(page.locator("#billing-kpi-failed")).to_have_text("1")
    page.locator("#billing-status").click()
    page.get_by_role("option", name="held").click()
    expect(page.locator("#billing-kpi-runs")).to_have_text("1")
    page.locator("#billing-runs input[type=radio]").first.check()
    expect(page.locator("#billing-export-note")).to_contain_text("1 file(s)")
    with page.expect_download() as dl:
        page.locator("#billing-export-button").click()
    assert dl.value.suggested_filename == "bills_2024-05_HN.csv"
    assert "PD0100000001" in Path(dl.value.path()).read_text(encoding="utf-8")
