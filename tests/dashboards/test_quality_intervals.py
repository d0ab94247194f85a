"""The Data quality page's one-meter chart draws a profile meter's validated intervals (vee_intervals) when there
are any, and nothing more for a meter without."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from amr.db.server import DatabaseServer, Role
from dashboards.pages import quality
from dashboards.source import DataSource
from tests.dashboards import seed


def test_drilldown_draws_the_intervals_of_a_profile_meter(
    dash_db: tuple[DatabaseServer, Path], vee_plan: seed.VeePlan
) -> None:
    server = dash_db[0]
    day = vee_plan.day(2)
    first, last = vee_plan.day(14), vee_plan.day(1)
    src = DataSource(server.conninfo(Role.READER))
    with psycopg.connect(server.conninfo(Role.OWNER), autocommit=True) as conn:
        (meter_id,) = conn.execute("SELECT meter_id FROM meters WHERE serial = %s", (seed.VEE_SERIAL,)).fetchone()  # type: ignore[misc]
        try:
            before = quality.render_drilldown(src, seed.VEE_SERIAL, first, last).figure
            assert before is not None
            assert "validated intervals [kWh]" not in [t.name for t in before.data]
            # the day's row (sql/099_vee_interval_days.sql): slots 20 to 25 interpolated
            conn.execute(
                "INSERT INTO vee_interval_days (meter_id, channel_id, day, interval_s, energy_kwh, quality, method,"
                " version, made_at) SELECT %s, 1, %s, 1800, array_agg(0.25::float8), string_agg(CASE WHEN k BETWEEN"
                " 20 AND 25 THEN 'S' ELSE 'A' END, '' ORDER BY k), array_agg(CASE WHEN k BETWEEN 20 AND 25 THEN 17"
                " ELSE 0 END::smallint ORDER BY k), 1, now() FROM generate_series(1, 48) AS k",
                (meter_id, day),
            )
            fig = quality.render_drilldown(src, seed.VEE_SERIAL, first, last).figure
            assert fig is not None
            trace = next(t for t in fig.data if t.name == "validated intervals [kWh]")
            assert len(trace.x) == 48 and trace.yaxis == "y4"
            assert list(trace.y) == pytest.approx([0.25] * 48)
            assert "17 linear interpolation" in trace.hovertext[20] and "version 1" in trace.hovertext[20]
            assert fig.layout.yaxis4.overlaying == "y"
        finally:
            conn.execute("DELETE FROM vee_interval_days WHERE meter_id = %s", (meter_id,))
            src.close()
