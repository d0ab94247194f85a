"""The Data quality page's one-meter chart draws a profile meter's validated intervals (vee_intervals) when there
are any, and nothing more for a meter without."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from amr.db.server import DatabaseServer, Role
from amr.timebase import local_midnight_utc_s
from dashboards.pages import quality
from dashboards.source import DataSource
from tests.dashboards import seed


def test_drilldown_draws_the_intervals_of_a_profile_meter(
    dash_db: tuple[DatabaseServer, Path], vee_plan: seed.VeePlan
) -> None:
    server = dash_db[0]
    day = vee_plan.day(2)
    t0 = local_midnight_utc_s(day)
    first, last = vee_plan.day(14), vee_plan.day(1)
    src = DataSource(server.conninfo(Role.READER))
    with psycopg.connect(server.conninfo(Role.OWNER), autocommit=True) as conn:
        (meter_id,) = conn.execute("SELECT meter_id FROM meters WHERE serial = %s", (seed.VEE_SERIAL,)).fetchone()  # type: ignore[misc]
        try:
            before = quality.render_drilldown(src, seed.VEE_SERIAL, first, last).figure
            assert before is not None
            assert "validated intervals [kWh]" not in [t.name for t in before.data]
            conn.execute(
                "INSERT INTO vee_intervals (meter_id, channel_id, interval_end, energy_kwh, quality, method, version)"
                " SELECT %s, 1, to_timestamp(%s + k * 1800), 0.25, CASE WHEN k BETWEEN 20 AND 25 THEN 'S' ELSE 'A' END,"
                " CASE WHEN k BETWEEN 20 AND 25 THEN 17 END, 1 FROM generate_series(1, 48) AS k",
                (meter_id, t0),
            )
            fig = quality.render_drilldown(src, seed.VEE_SERIAL, first, last).figure
            assert fig is not None
            trace = next(t for t in fig.data if t.name == "validated intervals [kWh]")
            assert len(trace.x) == 48 and trace.yaxis == "y4"
            assert list(trace.y) == pytest.approx([0.25] * 48)
            assert "17 linear interpolation" in trace.hovertext[20] and "version 1" in trace.hovertext[20]
            assert fig.layout.yaxis4.overlaying == "y"
        finally:
            conn.execute("DELETE FROM vee_intervals WHERE meter_id = %s", (meter_id,))
            src.close()
