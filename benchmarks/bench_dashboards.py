"""Dashboard page render times at fleet scale, beside the same figures computed from the raw tables.

    .venv/bin/python -m benchmarks.bench_dashboards [--quick] [--scale S] [--repeats N]

On a throwaway TimescaleDB: the fleet generator (fleet) writes the registry at `--scale` (1.0 = the
real size of both cities), SQL fills meter_last_seen / meter_comm_stats for the remote-read meters, then
refresh_dashboard_aggregates() runs once (timed). Per page, the figure is the median time to build its layout
and its callbacks' outputs (queries + figures + JSON encoding, what Dash sends), through the amr_reader pool.
Baseline: the page's headline numbers computed on a page load straight from the raw tables (meters,
meter_last_seen), which is what the aggregates avoid; the ratio is baseline / page.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import plotly
import psycopg
from rich.console import Console
from rich.table import Table

from amr.db.server import DatabaseServer, Role
from dashboards.pages import billing, network, quality, rollout
from dashboards.source import DataSource

console = Console()
PAGE_BUDGET_S = 1.0
QUICK_SCALE = 0.05


def _encode(value: Any) -> int:
    """Bytes Dash would send for a callback output (the JSON encoding is part of a page's cost)."""
    return len(json.dumps(value, cls=plotly.utils.PlotlyJSONEncoder))


def _median_s(fn: Callable[[], Any], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _fill_network_state(conninfo_owner: str) -> int:
    """meter_last_seen / meter_comm_stats for every remote-read meter: 97 % read in the last 30 min, the rest
    spread over 10 days or never; gateways one per 200 meters; a few collectors."""
    with psycopg.connect(conninfo_owner, autocommit=True) as conn:
        conn.execute(
            "UPDATE meters SET gateway = 'GW-' || power_company || '-' || (meter_id / 200)"
            " WHERE remote_read AND gateway IS NULL"
            "   AND protocol IN ('dcu-mqtt', 'modbus-tcp', 'modbus-rtu-tcp')"
        )
        conn.execute(
            "INSERT INTO meter_last_seen (meter_id, last_reading_ts, last_received_at)"
            " SELECT meter_id, now() - CASE WHEN hashint4(meter_id) % 100 < 97 THEN interval '10 minutes'"
            "                               ELSE (abs(hashint4(meter_id)) % 240) * interval '1 hour' END, now()"
            " FROM meters WHERE remote_read AND abs(hashint4(meter_id + 1)) % 1000 <> 0"
            " ON CONFLICT (meter_id) DO NOTHING"
        )
        conn.execute(
            "INSERT INTO meter_comm_stats (meter_id, source, attempts, successes, last_attempt_at, last_success_at)"
            " SELECT meter_id, 'collector-' || city, 1000, 980 - abs(hashint4(meter_id)) % 30, now(), now()"
            " FROM meters WHERE remote_read ON CONFLICT (meter_id) DO NOTHING"
        )
        conn.execute(
            "INSERT INTO collector_status (source, kind, state, updated_at, spool_depth, reads_per_s, lag_s)"
            " SELECT 'collector-' || g, 'collector', 'online', now(), g * 10, 1000, NULL FROM generate_series(1, 8) g"
            " ON CONFLICT DO NOTHING"
        )
        conn.execute("ANALYZE meters; ANALYZE meter_last_seen; ANALYZE meter_comm_stats")
        row = conn.execute("SELECT count(*) FROM meters").fetchone()
    return int(row[0]) if row else 0


def _refresh(conninfo_owner: str) -> float:
    t0 = time.perf_counter()
    with psycopg.connect(conninfo_owner, autocommit=True) as conn:
        conn.execute("SELECT * FROM refresh_dashboard_aggregates()").fetchall()
        conn.execute("ANALYZE")
    return time.perf_counter() - t0


def _pages(src: DataSource) -> dict[str, Callable[[], Any]]:
    ref_day = dt.date(2017, 9, 15)
    flt = network.make_filter(None, None, None)
    flt_hn = network.make_filter("HN", None, ["dcu-mqtt"])

    def rollout_page() -> int:
        size = _encode(rollout.layout(src, "?date=2017-09-15").to_plotly_json())
        view = rollout.render_rollout(src, ref_day, None, None, "kind")
        return size + _encode([view.kpis.to_plotly_json(), view.table, view.progress, view.map, view.map_note])

    def rollout_replay_step() -> int:
        view = rollout.render_rollout(src, ref_day + dt.timedelta(days=30), "HCM", None, "status")
        return _encode([view.kpis.to_plotly_json(), view.table, view.progress, view.map])

    def network_page() -> int:
        size = _encode(network.layout(src).to_plotly_json())
        view = network.render_network(src, flt)
        size += _encode(
            [view.kpis.to_plotly_json(), view.by_company, view.by_protocol, view.collectors, view.collector_chart]
        )
        size += _encode(network.render_silent_meters(src, flt, 0))
        return size + _encode(network.render_gateways(src, flt, False, 0))

    def network_filtered() -> int:
        view = network.render_network(src, flt_hn)
        return (
            _encode([view.kpis.to_plotly_json(), view.by_company])
            + _encode(network.render_silent_meters(src, flt_hn, 3))
            + _encode(network.render_gateways(src, flt_hn, True, 0))
        )

    def quality_page() -> int:
        size = _encode(quality.layout(src).to_plotly_json())
        periods = src.fetch_value("SELECT max(period) FROM billing_runs WHERE kind = 'vee'")
        view = quality.render_quality(src, periods, None, None)
        return size + _encode([view.kpis.to_plotly_json(), view.exceptions, view.estimated, view.top_meters])

    def billing_page() -> int:
        size = _encode(billing.layout(src).to_plotly_json())
        view = billing.render_billing(src, None, None)
        return size + _encode([view.kpis.to_plotly_json(), view.runs])

    return {
        "rollout (load)": rollout_page,
        "rollout (replay step)": rollout_replay_step,
        "network (load)": network_page,
        "network (filter+page)": network_filtered,
        "data quality (load)": quality_page,
        "billing (load)": billing_page,
    }


def _baselines(src: DataSource) -> dict[str, Callable[[], Any]]:
    """The same headline numbers from the raw tables, as a page without aggregates would compute them."""

    def rollout_raw() -> Any:
        return src.fetch_frame(
            "SELECT power_company, count(*) FILTER (WHERE connected_on <= %(d)s),"
            " count(*) FILTER (WHERE installed_on <= %(d)s), count(*) FILTER (WHERE remote_since <= %(d)s)"
            " FROM meters GROUP BY power_company",
            {"d": dt.date(2017, 9, 15)},
            columns=["a", "b", "c", "d"],
        )

    def network_raw() -> Any:
        return src.fetch_frame(
            "SELECT m.power_company, m.protocol,"
            " count(*) FILTER (WHERE ls.last_reading_ts > now() - interval '30 min'),"
            " count(*) FILTER (WHERE ls.last_reading_ts > now() - interval '24 hours'), sum(cs.successes)"
            " FROM meters m LEFT JOIN meter_last_seen ls USING (meter_id)"
            " LEFT JOIN meter_comm_stats cs USING (meter_id)"
            " WHERE m.remote_read GROUP BY 1, 2",
            columns=["a", "b", "c", "d", "e"],
        )

    return {
        "rollout (load)": rollout_raw,
        "rollout (replay step)": rollout_raw,
        "network (load)": network_raw,
        "network (filter+page)": network_raw,
    }


def run(quick: bool, *, scale: float | None = None, repeats: int | None = None) -> dict[str, Any]:
    from fleet.registry import build_fleet
    from fleet.store import write_fleet
    from tests.services import running_services  # throwaway TimescaleDB

    scale = scale or (QUICK_SCALE if quick else 1.0)
    repeats = repeats or (3 if quick else 5)
    results: dict[str, Any] = {"scale": scale, "repeats": repeats, "budget_s": PAGE_BUDGET_S, "pages": {}}
    with running_services() as (db, _broker, _settings):
        assert isinstance(db, DatabaseServer)
        owner = db.conninfo(Role.OWNER)
        with console.status(f"generating the fleet at scale {scale}"):
            t0 = time.perf_counter()
            write_fleet(owner, build_fleet(scale=scale))
            results["fleet_write_s"] = time.perf_counter() - t0
        with console.status("network state"):
            results["meters"] = _fill_network_state(owner)
        with console.status("refresh_dashboard_aggregates()"):
            results["refresh_s"] = _refresh(owner)
        src = DataSource(db.conninfo(Role.READER))
        try:
            baselines = _baselines(src)
            for name, fn in _pages(src).items():
                fn()  # warm the pool and the caches once
                page_s = _median_s(fn, repeats)
                base = baselines.get(name)
                base_s = _median_s(base, max(1, repeats // 2)) if base else None
                results["pages"][name] = {
                    "page_s": page_s,
                    "baseline_raw_s": base_s,
                    "ratio_baseline_over_page": (base_s / page_s) if base_s else None,
                    "under_budget": page_s < PAGE_BUDGET_S,
                }
        finally:
            src.close()
    return results


def _print(results: dict[str, Any]) -> None:
    table = Table(
        title=f"dashboard pages at scale {results['scale']} ({results['meters']:,} meters), "
        f"median of {results['repeats']}"
    )
    for col in ("page", "page [ms]", "baseline: raw tables [ms]", "ratio", f"< {PAGE_BUDGET_S:g} s"):
        table.add_column(col, justify="left" if col == "page" else "right")
    for name, r in results["pages"].items():
        base = r["baseline_raw_s"]
        table.add_row(
            name,
            f"{1000 * r['page_s']:,.0f}",
            f"{1000 * base:,.0f}" if base else "—",
            f"{r['ratio_baseline_over_page']:,.1f}×" if base else "—",
            "yes" if r["under_budget"] else "NO",
        )
    console.print(table)
    console.print(
        f"fleet write {results['fleet_write_s']:,.1f} s; refresh_dashboard_aggregates() {results['refresh_s']:,.1f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"scale {QUICK_SCALE} instead of 1.0")
    parser.add_argument("--scale", type=float, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    args = parser.parse_args()
    _print(run(args.quick, scale=args.scale, repeats=args.repeats))


if __name__ == "__main__":
    main()
