"""Server-side behaviour without a browser: auth, the date controls' state machine, map classification, empty
states for missing tables, the refresh function's counts and the read-only pool."""

from __future__ import annotations

import base64
import datetime as dt

import pandas as pd
import psycopg
import pytest

from amr.db.server import DatabaseServer, Role
from amr.errors import ConfigError
from dashboards import queries
from dashboards.app import create_app
from dashboards.auth import BasicAuth
from dashboards.pages import rollout
from dashboards.source import DataSource
from tests.dashboards import seed
from tests.dashboards.conftest import LiveDashboard


def test_basic_auth_guards_pages_and_callbacks(dash_db: tuple[DatabaseServer, object]) -> None:
    server, _ = dash_db
    app = create_app(server.conninfo(Role.READER), auth=BasicAuth(user="operator", password="s3cret"))
    try:
        client = app.server.test_client()
        assert client.get("/").status_code == 401
        assert client.post("/_dash-update-component", json={}).status_code == 401
        wrong = base64.b64encode(b"operator:nope").decode()
        assert client.get("/", headers={"Authorization": f"Basic {wrong}"}).status_code == 401
        good = base64.b64encode(b"operator:s3cret").decode()
        assert client.get("/", headers={"Authorization": f"Basic {good}"}).status_code == 200
    finally:
        app.server.config["AMR_DATA_SOURCE"].close()


def test_auth_from_environment_needs_both_variables() -> None:
    assert BasicAuth.from_environ({}) is None
    with pytest.raises(ConfigError, match="AMR_DASHBOARD_USER is set without AMR_DASHBOARD_PASSWORD"):
        BasicAuth.from_environ({"AMR_DASHBOARD_USER": "a"})
    with pytest.raises(ConfigError, match="AMR_DASHBOARD_PASSWORD is set without AMR_DASHBOARD_USER"):
        BasicAuth.from_environ({"AMR_DASHBOARD_PASSWORD": "b"})
    assert BasicAuth.from_environ({"AMR_DASHBOARD_USER": "a", "AMR_DASHBOARD_PASSWORD": "b"}) == BasicAuth(
        user="a", password="b"
    )


def test_date_controls_step_and_replay() -> None:
    lo, hi = 100, 200
    assert rollout.step_date("rollout-date", 150, rollout.index_to_day(120).isoformat(), False, lo, hi)[0] == 120
    # play at the end restarts from the beginning; ticks advance a month and stop at the end
    value, _, playing = rollout.step_date("rollout-play", hi, None, False, lo, hi)
    assert (value, playing) == (lo, True)
    value, _, playing = rollout.step_date("rollout-interval", 190, None, True, lo, hi)
    assert (value, playing) == (hi, False)
    # a tick while paused changes nothing; out-of-range picker dates are clamped
    assert rollout.step_date("rollout-interval", 150, None, False, lo, hi)[0] == 150
    assert rollout.step_date("rollout-date", 150, rollout.index_to_day(999).isoformat(), False, lo, hi)[0] == hi


def test_map_classification_follows_the_date() -> None:
    sample = pd.DataFrame(
        {
            "meter_kind": ["electronic", "electronic", "mechanical", "smart"],
            "connected_on": [dt.date(2000, 1, 1)] * 3 + [dt.date(2020, 1, 1)],
            "installed_on": [dt.date(2016, 1, 1), dt.date(2018, 1, 1), None, dt.date(2020, 1, 1)],
            "remote_since": [dt.date(2017, 1, 1), None, None, dt.date(2020, 1, 1)],
            "status": ["read_24h", "manual", "manual", "never"],
        }
    )
    points = rollout.classify_map_points(sample, dt.date(2017, 9, 15), "kind")
    assert list(points["category"]) == ["remote-read", "mechanical", "mechanical"]  # the 4th not connected yet
    later = rollout.classify_map_points(sample, dt.date(2021, 1, 1), "kind")
    assert list(later["category"]) == ["remote-read", "electronic (read on site)", "mechanical", "remote-read"]
    assert list(rollout.classify_map_points(sample, dt.date(2021, 1, 1), "status")["category"])[-1] == "never read"


def test_missing_tables_are_an_empty_state(live_dashboard: LiveDashboard) -> None:
    src = DataSource(live_dashboard.db.conninfo(Role.READER))
    try:
        frame = src.fetch_frame("SELECT a FROM not_there", columns=["a"], requires=["not_there"])
        assert frame.empty and list(frame.columns) == ["a"]
        assert src.fetch_missing_tables(["not_there", "meters"]) == ["not_there"]
        # The pool is read-only even where the role could write.
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction), src.pool.connection() as conn:
            conn.execute("CREATE TEMP TABLE t (x int)")
    finally:
        src.close()


def test_refreshed_aggregates_match_the_registry(live_dashboard: LiveDashboard) -> None:
    src = DataSource(live_dashboard.db.conninfo(Role.READER))
    try:
        as_of = queries.fetch_rollout_as_of(src, seed.REFERENCE_DAY)
        totals = rollout.city_totals(as_of)
        assert (totals["HN"].customers, totals["HN"].electronic, totals["HN"].remote) == (1000, 330, 250)
        assert (totals["HCM"].customers, totals["HCM"].electronic, totals["HCM"].remote) == (1000, 190, 166)
        flt = queries.NetworkFilter()
        _, silent = queries.fetch_silent_meters(src, flt)
        with psycopg.connect(live_dashboard.db.conninfo(Role.OWNER)) as conn:
            row = conn.execute(
                "SELECT count(*) FROM meters m LEFT JOIN meter_last_seen ls USING (meter_id)"
                " WHERE m.remote_read AND (ls.last_reading_ts IS NULL OR ls.last_reading_ts < now() - interval '24 h')"
            ).fetchone()
        assert row is not None and silent == row[0]
        monthly = queries.fetch_rollout_monthly(src)
        end_2017 = monthly[(monthly["city"] == "HN") & (monthly["month_end"] == dt.date(2017, 8, 31))]
        assert int(end_2017["remote"].iloc[0]) <= 250
    finally:
        src.close()
