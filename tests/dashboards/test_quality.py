"""The Data quality page over the continuous VEE's tables: its queries against seeded vee_* rows (figures worked
out from the seed plan in plain Python, not by the page's SQL or pandas), the figures it renders, and an empty
database as an empty state."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

import pandas as pd
import psycopg
import pytest

from amr.db.server import DatabaseServer, Role
from amr.timebase import local_midnight
from dashboards import queries_quality as qq
from dashboards.pages import quality
from dashboards.source import DataSource
from tests.dashboards import seed
from tests.dashboards.conftest import LiveDashboard


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
    """The text of a Dash component tree, for assertions on cards and notes."""
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


def _daily(src: DataSource, first: dt.date, last: dt.date, city: str | None) -> pd.DataFrame:
    daily = qq.fetch_daily_quality(src, first, last, city)
    assert daily is not None, "the day aggregate timed out"
    return daily


def _expected_share_pct(plan: seed.VeePlan, city: str | None) -> float:
    first, last = quality.quality_window(plan.today)
    cells = plan.daily(first, last, city).values()
    est = sum(c[2] for c in cells)
    return 100.0 * est / (est + sum(c[1] for c in cells))


# -- queries ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("city", [None, "HN", "HCM"])
def test_episode_queries_count_what_was_seeded(src: DataSource, vee_plan: seed.VeePlan, city: str | None) -> None:
    counts = qq.fetch_episode_counts(src, city)
    assert (counts.open_episodes, counts.open_meters, counts.acknowledged_episodes) == vee_plan.open_counts(city)
    by_rule = qq.fetch_open_episodes_by_rule(src, city)
    got = {
        (r, pc): int(n) for r, pc, n in zip(by_rule["rule"], by_rule["power_company"], by_rule["episodes"], strict=True)
    }
    assert got == vee_plan.open_by_rule(city)
    if city:
        assert set(by_rule["city"]) == {city}
    # The names come from power_companies, diacritics included.
    assert by_rule["name"].str.len().gt(0).all()


def test_episode_counts_by_hand(src: DataSource) -> None:
    # 17 open: the drill meter's GAP, SPIKE and clock (3), DASH-HN-00000's 2, -00001's and -00002's 1, 10 HCMC GAPs.
    counts = qq.fetch_episode_counts(src, None)
    assert (counts.open_episodes, counts.open_meters, counts.acknowledged_episodes) == (17, 14, 1)


def test_worst_meters_rank_by_open_episodes(src: DataSource, vee_plan: seed.VeePlan) -> None:
    worst = qq.fetch_worst_meters(src, None)
    assert list(worst["serial"][:2]) == [seed.VEE_SERIAL, f"{seed.SERIAL_PREFIX}-HN-00000"]
    assert list(worst["open_episodes"][:2]) == [3, 2]
    assert len(worst) == vee_plan.open_counts(None)[1]
    top = worst.iloc[0]
    assert top["rules"] == "CLOCK_SUSPECT, GAP, SPIKE"  # the acknowledged NEGATIVE is not open
    assert pd.Timestamp(top["first_start"]) == pd.Timestamp(local_midnight(vee_plan.day(9))) + pd.Timedelta(hours=18)
    assert pd.Timestamp(top["last_end"]) == pd.Timestamp(local_midnight(vee_plan.day(seed.VEE_GAP_DAY))) + pd.Timedelta(
        hours=12
    )
    assert set(qq.fetch_worst_meters(src, "HCM")["city"]) == {"HCM"}
    assert len(qq.fetch_worst_meters(src, None, limit=3)) == 3


@pytest.mark.parametrize("city", [None, "HN", "HCM"])
def test_daily_quality_is_the_current_total_import_days_of_the_window(
    src: DataSource, vee_plan: seed.VeePlan, city: str | None
) -> None:
    first, last = quality.quality_window(vee_plan.today)
    daily = _daily(src, first, last, city)
    got = {
        (d, q): [int(n), float(m), float(e)]
        for d, q, n, m, e in zip(
            daily["day"],
            daily["quality"],
            daily["meter_days"],
            daily["measured_kwh"],
            daily["estimated_kwh"],
            strict=True,
        )
    }
    expected = vee_plan.daily(first, last, city)
    assert got.keys() == expected.keys()
    for key, (n, m, e) in expected.items():
        assert got[key] == [n, pytest.approx(m), pytest.approx(e)], key
    # Not counted: the rate register (channel 2, 100 kWh estimated) and the day before the window (1,000 kWh).
    assert daily["estimated_kwh"].max() < 100.0


def test_daily_quality_by_hand(src: DataSource, vee_plan: seed.VeePlan) -> None:
    first, last = quality.quality_window(vee_plan.today)
    daily = _daily(src, first, last, None)
    records: list[dict[str, Any]] = daily.to_dict("records")  # type: ignore[assignment]
    cells = {(r["day"], r["quality"]): r for r in records}
    # 10 HCMC meters part-estimated (V, 6 + 2 kWh each), 30 HN meters actual.
    assert cells[(vee_plan.day(3), "V")]["meter_days"] == 10
    assert cells[(vee_plan.day(3), "V")]["estimated_kwh"] == pytest.approx(20.0)
    assert cells[(vee_plan.day(3), "A")]["meter_days"] == 30
    # The drill meter's edit four days ago is its current version: 7.5 kWh substituted (S), not the first 8.0 actual.
    assert cells[(vee_plan.day(4), "S")]["meter_days"] == 1
    assert cells[(vee_plan.day(4), "S")]["estimated_kwh"] == pytest.approx(7.5)
    assert int(daily["meter_days"].sum()) == 40 * 20


def test_service_state_and_pending(src: DataSource, vee_plan: seed.VeePlan) -> None:
    state = qq.fetch_service_state(src)
    assert len(state) == 1
    row = state.iloc[0]
    assert row["service"] == "vee-service"
    assert seed.VEE_LAG_S <= float(row["lag_s"]) < 3600
    assert row["last_day"] == vee_plan.day(1)
    assert qq.fetch_pending_units(src) == seed.VEE_PENDING_UNITS
    # Capped: a count stops at cap + 1 ("more than cap").
    assert qq.fetch_pending_units(src, cap=3) == 4


def test_one_meter_queries(src: DataSource, vee_plan: seed.VeePlan) -> None:
    meter_id = int(src.fetch_value("SELECT meter_id FROM meters WHERE serial = %s", (seed.VEE_SERIAL,)))
    first, last = vee_plan.day(14), vee_plan.day(1)
    current = qq.fetch_meter_current_days(src, meter_id, first, last)
    assert len(current) == 14
    edited = current[current["day"] == vee_plan.day(4)].iloc[0]
    assert (edited["version"], edited["quality"], edited["reason"], bool(edited["locked"])) == (
        2,
        "S",
        "manual_edit",
        True,
    )
    versions = qq.fetch_meter_versions(src, meter_id, first, last)
    assert len(versions) == 16  # 14 days, two of them with a second version
    assert list(versions["day"]) == sorted(versions["day"], reverse=True)
    edit = versions[versions["reason"] == "manual_edit"].iloc[0]
    assert (edit["made_by"], edit["note"]) == (seed.VEE_OPERATOR, seed.VEE_EDIT_NOTE)
    start, end = local_midnight(first), local_midnight(last + dt.timedelta(days=1))
    episodes = qq.fetch_meter_episodes(src, meter_id, start, end)
    # Every status and channel in the days; the FLAT_LINE of 30 days ago is outside them.
    assert sorted(episodes["rule"]) == ["CLOCK_SUSPECT", "GAP", "GAP", "NEGATIVE", "SPIKE"]
    assert set(episodes["channel_id"]) == {1, 20}
    assert qq.fetch_meter_newest_day(src, meter_id) == vee_plan.day(1)
    assert qq.fetch_meter_newest_day(src, -1) is None


# -- rendering --------------------------------------------------------------------------------------------------
def test_page_renders_the_seeded_figures(src: DataSource, vee_plan: seed.VeePlan) -> None:
    view = quality.render_episodes(src, None)
    days = quality.render_days(src, None, vee_plan.today)
    assert _text(_by_id(view.kpis, "quality-kpi-open-episodes")) == "17"
    assert _text(_by_id(view.kpis, "quality-kpi-open-meters")) == "14"
    assert _text(_by_id(days.kpi, "quality-kpi-estimated-share")) == f"{_expected_share_pct(vee_plan, None):.2f} %"
    assert "+ 1 acknowledged" in _text(view.kpis)
    # Heatmap: one cell per (company, rule) with open episodes, summing to the open count.
    heat = view.figure.data[0]
    assert heat.type == "heatmap"
    z = pd.DataFrame(heat.z, index=heat.y, columns=heat.x)
    assert int(z.fillna(0).to_numpy().sum()) == 17
    assert set(heat.x) == {"CLOCK_SUSPECT", "GAP", "GAP_TOO_LONG", "HIGH_USE", "SPIKE"}
    assert any("(PE0100)" in y for y in heat.y) and any("(PD0100)" in y for y in heat.y)
    # Estimated share per day: the HCMC outage three days ago is the peak.
    share = days.share.data[0]
    assert pd.Timestamp(share.x[list(share.y).index(max(share.y))]).date() == vee_plan.day(3)
    by_day = dict(zip((pd.Timestamp(x).date() for x in share.x), share.y, strict=True))
    assert by_day[vee_plan.day(3)] == pytest.approx(100 * 20.0 / (20.0 + 60.0 + sum(8.0 + i % 5 for i in range(30))))
    # Days by quality code: one bar trace per code present, stacked.
    codes = {t.name.split()[0]: t for t in days.quality_days.data}
    assert set(codes) == {"A", "V", "S", "E", "N"}
    assert days.quality_days.layout.barmode == "stack"
    assert sum(codes["V"].y) == 10 + 1  # 10 HCMC meters, and the drill meter's gap day (late data made the other A)
    assert view.worst_meters[0]["serial"] == seed.VEE_SERIAL
    assert view.worst_meters[0]["first_at"].endswith("18:00")

    hcm = quality.render_episodes(src, "HCM")
    assert _text(_by_id(hcm.kpis, "quality-kpi-open-episodes")) == "10"
    assert {y[-7:-1] for y in hcm.figure.data[0].y} <= {"PE0100", "PE0300", "PE0400", "PE1000", "PE1500"}
    hcm_days = quality.render_days(src, "HCM", vee_plan.today)
    assert _text(_by_id(hcm_days.kpi, "quality-kpi-estimated-share")) == f"{_expected_share_pct(vee_plan, 'HCM'):.2f} %"


def test_service_cards(src: DataSource) -> None:
    view = quality.render_service(src)
    assert _text(_by_id(view.kpis, "quality-kpi-pending")) == str(seed.VEE_PENDING_UNITS)
    lag = _text(_by_id(view.kpis, "quality-kpi-lag"))
    assert lag.endswith(" s") or lag.endswith(" min"), lag
    assert "1,234 passes" in _text(view.status)
    assert "stopped" not in _text(view.kpis)


def test_drilldown_puts_reads_versions_and_episodes_on_one_chart(src: DataSource, vee_plan: seed.VeePlan) -> None:
    first, last = vee_plan.day(14), vee_plan.day(1)
    view = quality.render_drilldown(src, seed.VEE_SERIAL, first, last)
    assert view.figure is not None
    assert f"{seed.drill_reads(vee_plan, first, last):,} register reads" in view.note
    assert "14 validated days (2 not actual), 16 versions, 5 episodes (3 open)" in view.note
    names = [t.name for t in view.figure.data]
    assert names[:2] == ["register reads [kWh]", "validated [kWh/day], current version"]
    assert "version 1 [kWh/day], replaced" in names
    reads = view.figure.data[0]
    assert len(reads.x) == 660 and reads.yaxis == "y"
    current = view.figure.data[1]
    assert current.yaxis == "y2" and len(current.x) == 14
    assert current.line.dash is None  # solid
    # The current energy of the edited day is the edit; its first version is a dashed day-long segment.
    by_day = dict(zip((pd.Timestamp(x).date() for x in current.x), current.y, strict=True))
    assert by_day[vee_plan.day(4)] == pytest.approx(7.5)
    earlier = next(t for t in view.figure.data if t.name == "version 1 [kWh/day], replaced")
    assert earlier.line.dash == "dash"
    assert sorted(y for y in earlier.y if y is not None) == pytest.approx([8.0, 8.0, 8.1, 8.1])  # 8.0; 5.0 + 3.1
    # Episodes: a shaded span each, labelled with the rule (and the status once not open).
    shapes = view.figure.layout.shapes
    assert len(shapes) == 5 and all(s.type == "rect" and s.yref == "y domain" for s in shapes)
    labels = sorted(a.text for a in view.figure.layout.annotations if a.text)
    assert labels == ["CLOCK_SUSPECT", "GAP", "GAP (auto_resolved)", "NEGATIVE (acknowledged)", "SPIKE"]
    assert {t.name for t in view.figure.data if t.name.startswith("episode")} == {
        "episode (review)",
        "episode (invalid)",
    }
    # The versions table: newest first, the edit is current and says who made it and why.
    assert len(view.versions) == 16
    edit = next(r for r in view.versions if r["reason"] == "manual_edit")
    assert (edit["current"], edit["made_by"], edit["note"], edit["quality"]) == (
        "current",
        seed.VEE_OPERATOR,
        seed.VEE_EDIT_NOTE,
        "S substituted",
    )
    replaced = next(r for r in view.versions if r["reason"] == "first_pass" and r["day"] == str(vee_plan.day(6)))
    assert (replaced["current"], replaced["method"], replaced["kwh"]) == ("", "17 linear interpolation", "8.100")


def test_drilldown_without_data_or_meter(src: DataSource, vee_plan: seed.VeePlan) -> None:
    assert quality.render_drilldown(src, "", vee_plan.day(3), vee_plan.day(1)).figure is None
    unknown = quality.render_drilldown(src, "NO-SUCH-METER", vee_plan.day(3), vee_plan.day(1))
    assert unknown.figure is None and unknown.note == "no meter with serial NO-SUCH-METER"
    # Days before anything was validated: the chart is empty and the note says where the data is.
    old = quality.render_drilldown(src, seed.VEE_SERIAL, vee_plan.day(100), vee_plan.day(90))
    assert old.figure is not None and old.versions == []
    assert f"newest validated day: {vee_plan.day(1)}" in old.note
    # A range longer than the limit keeps its newest days.
    long = quality.render_drilldown(src, seed.VEE_SERIAL, vee_plan.day(400), vee_plan.day(1))
    assert f"limited to its last {qq.DRILLDOWN_MAX_DAYS} days" in long.note


def test_empty_database_is_an_empty_state(empty_src: DataSource) -> None:
    service = quality.render_service(empty_src)
    status = service.status
    assert status.id == "quality-empty" and "has not made a pass yet" in _text(status)
    assert _text(_by_id(service.kpis, "quality-kpi-pending")) == "0"
    assert _text(_by_id(service.kpis, "quality-kpi-last-pass")) == "—"
    view = quality.render_episodes(empty_src, None)
    days = quality.render_days(empty_src, None)
    assert _text(_by_id(view.kpis, "quality-kpi-open-episodes")) == "0"
    assert _text(_by_id(days.kpi, "quality-kpi-estimated-share")) == "—"
    assert view.worst_meters == []
    for fig, message in (
        (view.figure, "no open episodes"),
        (days.share, "no validated days"),
        (days.quality_days, "no validated days"),
    ):
        assert not fig.data
        assert message in fig.layout.annotations[0].text
    assert quality.render_drilldown(empty_src, "DASH-HN-00005", dt.date(2024, 5, 1), dt.date(2024, 5, 2)).note == (
        "no meter with serial DASH-HN-00005"
    )


def test_missing_vee_tables_are_an_empty_state(live_dashboard: LiveDashboard) -> None:
    class Premigration(DataSource):
        """A database before sql/080: the continuous VEE tables are not there."""

        def fetch_missing_tables(self, tables: Any) -> list[str]:
            return [t for t in tables if t.startswith("vee_")]

    src = Premigration(live_dashboard.db.conninfo(Role.READER))
    try:
        service = quality.render_service(src)
        assert "continuous VEE tables are missing" in _text(service.status)
        assert _text(_by_id(service.kpis, "quality-kpi-pending")) == "—"
        assert _text(_by_id(quality.render_episodes(src, None).kpis, "quality-kpi-open-episodes")) == "0"
        assert _text(_by_id(quality.render_days(src, None).kpi, "quality-kpi-estimated-share")) == "—"
    finally:
        src.close()


def test_the_days_come_from_the_aggregate_not_vee_daily(live_dashboard: LiveDashboard, vee_plan: seed.VeePlan) -> None:
    class Recording(DataSource):
        def __init__(self, conninfo: str) -> None:
            super().__init__(conninfo)
            self.queries: list[str] = []

        def fetch_frame(self, query: str, *args: Any, **kwargs: Any) -> pd.DataFrame:
            self.queries.append(query)
            return super().fetch_frame(query, *args, **kwargs)

    src = Recording(live_dashboard.db.conninfo(Role.READER))
    try:
        days = quality.render_days(src, None, vee_plan.today)
        assert _text(_by_id(days.kpi, "quality-kpi-estimated-share")) == f"{_expected_share_pct(vee_plan, None):.2f} %"
        assert src.queries and not [q for q in src.queries if re.search(r"\bvee_daily\b", q)]
        assert "counted by the aggregate refresh of" in days.note
    finally:
        src.close()


def _cell(conn: psycopg.Connection, day: dt.date, company: str, quality_code: str) -> tuple[int, float] | None:
    row = conn.execute(
        "SELECT meter_days, estimated_kwh FROM vee_quality_daily"
        " WHERE day = %s AND power_company = %s AND quality = %s",
        (day, company, quality_code),
    ).fetchone()
    return None if row is None else (int(row[0]), float(row[1]))


def test_the_refresh_recounts_the_days_that_changed(live_dashboard: LiveDashboard, vee_plan: seed.VeePlan) -> None:
    """A refresh re-counts a day with a new version at once; a day changed without one (as a VEE transaction longer
    than the refresh's hour would look) waits for the rotation, which re-counts the days counted more than six
    hours ago, two a refresh, and so reaches every day. Rolled back."""
    serial = f"{seed.SERIAL_PREFIX}-HN-00010"  # an ordinary meter: actual 8 + 10 % 5 kWh every day
    company = vee_plan.company[serial][1]
    fresh, stale = vee_plan.day(15), vee_plan.day(16)
    with psycopg.connect(live_dashboard.db.conninfo(Role.OWNER)) as conn:
        try:
            meter_id = conn.execute("SELECT meter_id FROM meters WHERE serial = %s", (serial,)).fetchone()
            assert meter_id is not None
            before = {d: _cell(conn, d, company, "S") for d in (fresh, stale)}
            assert before == {fresh: None, stale: None}
            # An edit of `fresh`: a new version (made now) and the current day, as billing.editing writes them.
            conn.execute(
                "INSERT INTO vee_daily_versions (meter_id, channel_id, day, version, measured_kwh, estimated_kwh,"
                " n_measured, n_estimated, flags, methods, quality, method, reason, made_by)"
                " VALUES (%s, 1, %s, 2, 0, 11.5, 0, 48, 0, 0, 'S', NULL, 'manual_edit', 'test')",
                (meter_id[0], fresh),
            )
            for day in (fresh, stale):
                conn.execute(
                    "UPDATE vee_daily SET version = version + 1, measured_kwh = 0, estimated_kwh = 11.5,"
                    " quality = 'S' WHERE meter_id = %s AND channel_id = 1 AND day = %s",
                    (meter_id[0], day),
                )
            conn.execute("SELECT * FROM refresh_dashboard_aggregates()").fetchall()
            assert _cell(conn, fresh, company, "S") == (1, 11.5)
            assert _cell(conn, stale, company, "S") is None  # no version made: not seen yet
            # Counted an hour ago: not re-counted whatever the refreshes.
            conn.execute("UPDATE vee_quality_days SET counted_at = now() - interval '1 hour'")
            conn.execute("SELECT * FROM refresh_dashboard_aggregates()").fetchall()
            assert _cell(conn, stale, company, "S") is None
            recounted = conn.execute(
                "SELECT day FROM vee_quality_days WHERE counted_at > now() - interval '30 minutes' AND day < %s",
                (vee_plan.day(2),),  # the seed's newest versions may be under an hour old after midnight
            ).fetchall()
            assert recounted == [(fresh,)]  # its new version, nothing rotated
            # Seven hours later: the rotation reaches it.
            conn.execute("UPDATE vee_quality_days SET counted_at = now() - interval '7 hours'")
            refreshes = 0
            while _cell(conn, stale, company, "S") is None and refreshes < 20:
                conn.execute("SELECT * FROM refresh_dashboard_aggregates()").fetchall()
                refreshes += 1
            assert refreshes <= 16, refreshes  # 31 days, 2 a refresh
            assert _cell(conn, stale, company, "S") == (1, 11.5)
            window = conn.execute("SELECT min(day), max(day), count(*) FROM vee_quality_days").fetchone()
            assert window == (vee_plan.day(30), vee_plan.today, 31)
        finally:
            conn.rollback()


# -- pure helpers -----------------------------------------------------------------------------------------------
def test_durations_and_drill_days() -> None:
    assert [quality.fmt_duration(s) for s in (None, 0, 42, 61, 3 * 3600 + 600, 2 * 86_400 + 4 * 3600)] == [
        "—",
        "0 s",
        "42 s",
        "1 min",
        "3 h 10 min",
        "2 d 4 h",
    ]
    today = dt.date(2026, 3, 20)
    # Open episodes 9 and 2 days ago: two days either side (not past today), at least 14 days shown.
    first, last = quality.drill_days_for("2026-03-11T18:00:00+07:00", "2026-03-18T12:00:00+07:00", today)
    assert (first, last) == (dt.date(2026, 3, 7), dt.date(2026, 3, 20))
    # A long episode: from two days before it, at most DRILLDOWN_MAX_DAYS.
    first, last = quality.drill_days_for("2025-01-01T00:00:00+07:00", "2026-01-10T00:00:00+07:00", today)
    assert last == dt.date(2026, 1, 12) and (last - first).days == qq.DRILLDOWN_MAX_DAYS - 1
    assert quality.clamp_days(dt.date(2026, 3, 5), dt.date(2026, 3, 1)) == (
        dt.date(2026, 3, 1),
        dt.date(2026, 3, 5),
        False,
    )
    # UTC instants are placed on their local (ICT) day.
    first, last = quality.drill_days_for("2026-03-10T18:00:00+00:00", "2026-03-10T18:30:00+00:00", today)
    assert last == dt.date(2026, 3, 13)


def test_the_page_codes_are_billings() -> None:
    """The page keeps its own copy of the quality codes and method numbers (a stage does not import another):
    they must be billing.quality's."""
    from billing import quality as bq

    assert set(quality.QUALITY_CODES) == set(bq.QUALITY_CODES)
    assert set(quality.METHOD_NAMES) == {
        bq.METHOD_RETROSPECTIVE_LIKE_DAY,
        bq.METHOD_LINEAR_INTERPOLATION,
        bq.METHOD_SCALED_TO_REGISTER,
        bq.METHOD_AVERAGE_DAILY_LOAD,
    }


def test_a_serial_in_the_url_opens_the_drilldown(src: DataSource) -> None:
    tree = quality.layout(src, f"?serial={seed.VEE_SERIAL}")
    assert _by_id(tree, "quality-serial").value == seed.VEE_SERIAL
    assert _by_id(quality.layout(src, ""), "quality-serial").value == ""
