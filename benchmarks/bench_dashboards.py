"""Dashboard page render times at fleet scale, beside the same figures computed from the raw tables.

    .venv/bin/python -m benchmarks.bench_dashboards [--quick] [--scale S] [--repeats N] [--concurrent [--users U]]

On a throwaway TimescaleDB: the fleet generator (fleet) writes the registry at `--scale` (1.0 = the
real size of both cities), SQL fills meter_last_seen / meter_comm_stats for the remote-read meters, the continuous
VEE's current days (vee_daily, channel 1) of the last `--vee-days` days for every remote-read meter, and a released
continuous bill run over every meter (about 0.5 % held, 0.5 % without data) with a rebill run correcting 0.01 % of
its bills; then refresh_dashboard_aggregates() runs once (timed, with its parts: it counts every VEE day and
summarises the new bill run) and a second time (timed: nothing changed, the steady state between passes).
Per page, the figure is the median time to build its layout and its callbacks' outputs (queries + figures + JSON
encoding, what Dash sends), through the amr_reader pool.
Baseline: the page's headline numbers computed on a page load straight from the raw tables (meters,
meter_last_seen), which is what the aggregates avoid; the ratio is baseline / page.

--concurrent: then the dashboards as production serves them, `amr dashboard` (gunicorn, --web-workers x
--web-threads, basic auth) started as a subprocess on the same database, and simulated users, each a thread with
its own keep-alive HTTP session, loading the pages in turn (--rounds times each). A page load is what the browser
asks for: the routing callback (url.pathname -> the page's layout), then every callback of the page that fires on
load, with the input values of the returned layout, in the order Dash lists them (sequentially: a browser sends
some in parallel, and fires the chained ones again when an output changes, so a real load can be a little faster
or slower). Per page, p50 / p95 / max of the page-load time for 1 user and for --users users at once, in the same
run (the 1-user figure is the baseline). The users run in this process: with 20 threads on a small machine the
client's own share of the CPU is part of the figure.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import plotly
import psycopg
import requests
from rich.console import Console
from rich.table import Table

from amr.db.server import DatabaseServer, Role
from amr.settings import Settings
from dashboards.pages import billing, network, quality, rollout
from dashboards.source import DataSource

console = Console()
PAGE_BUDGET_S = 1.0
QUICK_SCALE = 0.05
CONCURRENT_USERS = 20  # issue 14: page latency with 20 concurrent users beside the single-user figure
WEB_WORKERS, WEB_THREADS = 2, 4  # `amr dashboard`'s defaults
SERVER_START_S = 60.0
HTTP_TIMEOUT_S = 120.0  # a page under load may queue behind others; gunicorn's worker timeout is 120 s too
SERVED_PAGES = {"rollout": "/", "network": "/network", "data quality": "/quality", "billing": "/billing"}
VEE_DAYS = 2  # days of vee_daily per remote-read meter (full scale: about 5 M meter-days a day)
BILL_PERIOD = "2024-06"
ROUTE_OUTPUT = "..page.children...nav.children.."  # dashboards.app: the routing callback


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


def _fill_vee_days(conninfo_owner: str, days: int) -> int:
    """vee_daily (current version, channel 1) of the `days` local days before today for every remote-read meter:
    97 % actual, the rest part-estimated, substituted or forward-estimated; returns the meter-days written."""
    with psycopg.connect(conninfo_owner, autocommit=True) as conn:
        cur = conn.execute(
            "INSERT INTO vee_daily (meter_id, channel_id, day, version, measured_kwh, estimated_kwh, n_measured,"
            " n_estimated, flags, methods, quality, method, reason, locked, made_at)"
            " SELECT m.meter_id, 1, d.day, 1, q.measured, q.kwh - q.measured, q.n_measured, 48 - q.n_measured, 0, 0,"
            "        q.quality, q.method, 'first_pass', false, now()"
            " FROM meters m"
            " CROSS JOIN generate_series(1, %(days)s) AS g (k)"
            " CROSS JOIN LATERAL (SELECT ((now() AT TIME ZONE 'Asia/Ho_Chi_Minh')::date - g.k) AS day,"
            "                            abs(hashint4(m.meter_id * 31 + g.k)) %% 1000 AS h) d"
            " CROSS JOIN LATERAL (SELECT 3 + d.h %% 20 AS kwh,"
            "     CASE WHEN d.h < 970 THEN 'A' WHEN d.h < 990 THEN 'V' WHEN d.h < 997 THEN 'S' ELSE 'E' END AS quality,"
            "     CASE WHEN d.h < 970 THEN NULL WHEN d.h < 990 THEN 17 WHEN d.h < 997 THEN 14 ELSE 25 END AS method,"
            "     CASE WHEN d.h < 970 THEN 48 WHEN d.h < 990 THEN 36 ELSE 0 END AS n_measured,"
            "     CASE WHEN d.h < 970 THEN 3 + d.h %% 20 WHEN d.h < 990 THEN 0.75 * (3 + d.h %% 20) ELSE 0 END"
            "       AS measured) q"
            " WHERE m.remote_read",
            {"days": days},
        )
        n = cur.rowcount
        conn.execute("ANALYZE vee_daily")
    return n


def _fill_bill_run(conninfo_owner: str) -> dict[str, int]:
    """A released continuous bill run over every meter and a rebill run correcting 0.01 % of its bills, written as
    billing.run and billing.corrections would (a flat 2,000 VND/kWh, VAT 8 %)."""
    reasons = (
        "3 of 30 days not validated",
        "readings waiting for validation",
        "2 of 30 days not validated; open blocking exception episode",
        "35% of intervals estimated",
    )
    columns = (
        "run_id, meter_id, customer_code, city, power_company, tariff_class, cycle_start, cycle_end, days,"
        " households, multiplier, energy_kwh, normal_kwh, peak_kwh, offpeak_kwh, estimated_kwh, amount_vnd,"
        " vat_percent, vat_vnd, total_vnd, tariff_versions, quality_flags, status, bill_kind, hold_reasons,"
        " determinant_versions, validated_days"
    )
    with psycopg.connect(conninfo_owner, autocommit=True) as conn:
        row = conn.execute(
            "INSERT INTO billing_runs (kind, period, status, source, data_as_of)"
            " VALUES ('bill', %s, 'running', 'continuous', now()) RETURNING run_id",
            (BILL_PERIOD,),
        ).fetchone()
        assert row is not None
        run_id = int(row[0])
        # households 20-690 kWh (most under 250), businesses and production 500-50,500 kWh; 0.5 % held, 0.5 % no data
        conn.execute(
            f"INSERT INTO bills ({columns})"
            " SELECT %(run)s, m.meter_id, m.customer_code, m.city, m.power_company, m.tariff_class, DATE '2024-06-01',"
            "        DATE '2024-07-01', 30, m.households, m.multiplier, e.kwh,"
            "        CASE WHEN e.tou THEN e.kwh - e.kwh * 15 / 100 - e.kwh / 4 END,"
            "        CASE WHEN e.tou THEN e.kwh * 15 / 100 END, CASE WHEN e.tou THEN e.kwh / 4 END, 0,"
            "        e.kwh * 2000, 8, e.kwh * 160, e.kwh * 2160, 'bench', '', e.status, 'bill',"
            "        CASE WHEN e.status = 'held' THEN (%(reasons)s::text[])[1 + e.h %% 4] END, 30, 30"
            " FROM meters m"
            " CROSS JOIN LATERAL (SELECT abs(hashint4(m.meter_id)) AS h) x"
            " CROSS JOIN LATERAL (SELECT x.h, m.tariff_class <> 'household' AS tou,"
            "     CASE WHEN x.h %% 1000 < 5 THEN 'held' WHEN x.h %% 1000 < 10 THEN 'no_data' ELSE 'billed' END"
            "       AS status,"
            "     CASE WHEN x.h %% 1000 BETWEEN 5 AND 9 THEN 0"
            "          WHEN m.tariff_class = 'household' THEN 20 + (x.h / 1000 %% 1000) ^ 2 / 1500"
            "          ELSE 500 + x.h / 1000 %% 50000 END::bigint AS kwh) e",
            {"run": run_id, "reasons": list(reasons)},
        )
        conn.execute(
            "UPDATE billing_runs r SET status = 'released', finished_at = now(), customers = s.n,"
            "       energy_kwh = s.kwh, amount_vnd = s.amount, vat_vnd = s.vat, total_vnd = s.total"
            " FROM (SELECT count(*) AS n, sum(energy_kwh) FILTER (WHERE status = 'billed') AS kwh,"
            "              sum(amount_vnd) FILTER (WHERE status = 'billed') AS amount,"
            "              sum(vat_vnd) FILTER (WHERE status = 'billed') AS vat,"
            "              sum(total_vnd) FILTER (WHERE status = 'billed') AS total"
            "       FROM bills WHERE run_id = %(run)s) s WHERE r.run_id = %(run)s",
            {"run": run_id},
        )
        row = conn.execute(
            "INSERT INTO billing_runs (kind, period, status, source, corrects_run_id, data_as_of)"
            " VALUES ('rebill', %s, 'running', 'continuous', %s, now()) RETURNING run_id",
            (BILL_PERIOD, run_id),
        ).fetchone()
        assert row is not None
        rebill = int(row[0])
        picked = "b.run_id = %(run)s AND b.status = 'billed' AND abs(hashint4(b.meter_id + 7)) %% 10000 = 0"
        conn.execute(
            f"INSERT INTO bills ({columns})"
            " SELECT %(rebill)s, meter_id, customer_code, city, power_company, tariff_class, cycle_start, cycle_end,"
            "        days, households, multiplier, -energy_kwh, -normal_kwh, -peak_kwh, -offpeak_kwh, 0, -amount_vnd,"
            "        vat_percent, -vat_vnd, -total_vnd, tariff_versions, quality_flags, 'cancelled', 'cancel', NULL,"
            f"        determinant_versions, validated_days FROM bills b WHERE {picked}"
            " UNION ALL"
            " SELECT %(rebill)s, meter_id, customer_code, city, power_company, tariff_class, cycle_start, cycle_end,"
            "        days, households, multiplier, energy_kwh + 12, normal_kwh + 12, peak_kwh, offpeak_kwh, 0,"
            "        (energy_kwh + 12) * 2000, vat_percent, (energy_kwh + 12) * 160, (energy_kwh + 12) * 2160,"
            "        tariff_versions, quality_flags, 'billed', 'rebill', NULL, determinant_versions + 1, validated_days"
            f" FROM bills b WHERE {picked}",
            {"run": run_id, "rebill": rebill},
        )
        conn.execute(
            "UPDATE billing_runs SET status = 'released', finished_at = now(),"
            " customers = (SELECT count(*) FROM bills WHERE run_id = %(rebill)s AND bill_kind = 'rebill')"
            " WHERE run_id = %(rebill)s",
            {"rebill": rebill},
        )
        conn.execute("ANALYZE bills; ANALYZE billing_runs")
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM bills WHERE run_id = %(run)s),"
            "       (SELECT count(*) FROM bills WHERE run_id = %(rebill)s AND bill_kind = 'rebill')",
            {"run": run_id, "rebill": rebill},
        ).fetchone()
    assert counts is not None
    return {"bills": int(counts[0]), "rebills": int(counts[1])}


def _refresh(conninfo_owner: str) -> tuple[float, dict[str, float]]:
    """refresh_dashboard_aggregates() [s] and its parts [s] by aggregate."""
    t0 = time.perf_counter()
    with psycopg.connect(conninfo_owner, autocommit=True) as conn:
        rows = conn.execute("SELECT name, duration_ms FROM refresh_dashboard_aggregates()").fetchall()
        conn.execute("ANALYZE")
    return time.perf_counter() - t0, {str(name): float(ms) / 1000 for name, ms in rows}


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
        """The layout and the three callbacks that fire on load: episodes, validated days, the service."""
        size = _encode(quality.layout(src).to_plotly_json())
        episodes = quality.render_episodes(src, None)
        size += _encode([episodes.kpis.to_plotly_json(), episodes.figure, episodes.worst_meters])
        days = quality.render_days(src, None)
        size += _encode([days.kpi.to_plotly_json(), days.share, days.quality_days, days.note])
        service = quality.render_service(src)
        return size + _encode([service.status.to_plotly_json(), service.kpis.to_plotly_json()])

    def quality_city() -> int:
        episodes = quality.render_episodes(src, "HCM")
        days = quality.render_days(src, "HCM")
        return _encode([episodes.kpis.to_plotly_json(), episodes.figure, episodes.worst_meters]) + _encode(
            [days.kpi.to_plotly_json(), days.share, days.quality_days]
        )

    def billing_page() -> int:
        """The layout (its run picker's default: the newest released bill run) and the callbacks that fire on
        load: the run list, the run's figures, its distribution, held customers and corrections."""
        tree = billing.layout(src)
        size = _encode(tree.to_plotly_json())
        run_id = _component_value(tree, "billing-run")
        view = billing.render_billing(src, None, None)
        size += _encode([view.kpis.to_plotly_json(), view.runs])
        run = billing.render_run(src, run_id)
        size += _encode([run.state, run.kpis.to_plotly_json(), run.companies, run.tiers])
        size += _encode(billing.render_distribution(src, run_id, "total_vnd"))
        held = billing.render_held(src, run_id)
        size += _encode([held.reasons, held.note, held.rows])
        corrections = billing.render_corrections(src, run_id)
        return size + _encode([corrections.kpis.to_plotly_json(), corrections.note, corrections.rows])

    def billing_measure() -> int:
        run_id = _component_value(billing.layout(src), "billing-run")
        return _encode(billing.render_distribution(src, run_id, "energy_kwh"))

    return {
        "rollout (load)": rollout_page,
        "rollout (replay step)": rollout_replay_step,
        "network (load)": network_page,
        "network (filter+page)": network_filtered,
        "data quality (load)": quality_page,
        "data quality (city)": quality_city,
        "billing (load)": billing_page,
        "billing (distribution by kWh)": billing_measure,
    }


def _component_value(tree: Any, id_: str) -> Any:
    """The `value` of the component with `id_` in a layout (None when absent)."""
    if getattr(tree, "id", None) == id_:
        return getattr(tree, "value", None)
    children = getattr(tree, "children", None)
    for child in children if isinstance(children, list | tuple) else [children]:
        if child is not None and not isinstance(child, str | int | float):
            found = _component_value(child, id_)
            if found is not None:
                return found
    return None


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


# -- served: gunicorn and simulated users --------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def _served(
    db: DatabaseServer, settings: Settings, *, workers: int, threads: int, user: str, password: str
) -> Iterator[str]:
    """`amr dashboard` (gunicorn) on a free loopback port against the benchmark's database, with basic auth from
    AMR_DASHBOARD_USER / AMR_DASHBOARD_PASSWORD; yields its base URL, stops it with SIGTERM."""
    state = Path(tempfile.mkdtemp(prefix="amr-bench-web-"))
    shutil.copy2(settings.credentials_file, state / settings.credentials_file.name)  # the reader role's password
    env = {k: v for k, v in os.environ.items() if not k.startswith("AMR_")}
    env |= {
        "AMR_STATE_DIR": str(state),
        "AMR_DATABASE_URL": db.url(Role.OWNER),
        "AMR_DASHBOARD_USER": user,
        "AMR_DASHBOARD_PASSWORD": password,
    }
    port = _free_port()
    log = state / "dashboard.log"
    root = Path(__file__).resolve().parents[1]
    argv = [sys.executable, "-m", "app", "dashboard", "--port", str(port)]
    argv += ["--workers", str(workers), "--threads", str(threads)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"amr dashboard exited ({proc.returncode}): {log.read_text()[-2000:]}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"amr dashboard not listening after {SERVER_START_S:.0f} s: {log}")
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(state, ignore_errors=True)


def _split_output(output: str) -> list[dict[str, str]]:
    """Dash's output id ('..a.b...c.d..' for several, 'a.b' for one) as the `outputs` list of a callback POST."""
    parts = output[2:-2].split("...") if output.startswith("..") else [output]
    return [dict(zip(("id", "property"), part.rsplit(".", 1), strict=True)) for part in parts]


def _component_props(tree: Any, into: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """id -> props of every component in a layout as Dash serialises it ({"type", "namespace", "props"})."""
    if isinstance(tree, list):
        for item in tree:
            _component_props(item, into)
    elif isinstance(tree, dict):
        props = tree.get("props")
        if isinstance(props, dict):
            if isinstance(props.get("id"), str):
                into[props["id"]] = props
            for value in props.values():
                _component_props(value, into)
    return into


class _User:
    """One browser: a keep-alive session that loads pages as the Dash renderer does (see the module docstring)."""

    def __init__(self, base_url: str, user: str, password: str) -> None:
        self.base_url = base_url
        self.session = requests.Session()
        self.session.auth = (user, password)
        deps = self.session.get(f"{base_url}/_dash-dependencies", timeout=HTTP_TIMEOUT_S)
        deps.raise_for_status()
        self.dependencies: list[dict[str, Any]] = [
            d for d in deps.json() if d["output"] != ROUTE_OUTPUT and not d.get("clientside_function")
        ]

    def _post(self, output: str, inputs: list[dict[str, Any]], state: list[dict[str, Any]]) -> Any:
        outputs = _split_output(output)
        body = {
            "output": output,
            "outputs": outputs if output.startswith("..") else outputs[0],
            "inputs": inputs,
            "state": state,
            "changedPropIds": [],
        }
        response = self.session.post(f"{self.base_url}/_dash-update-component", json=body, timeout=HTTP_TIMEOUT_S)
        if response.status_code == 204:  # PreventUpdate: an answer too
            return None
        if response.status_code != 200:
            raise RuntimeError(f"{output}: HTTP {response.status_code}: {response.text[:300]}")
        return response.json()

    def load(self, path: str) -> int:
        """Load the page at `path`; returns the callbacks it took (the route included)."""
        routed = self._post(
            ROUTE_OUTPUT,
            [{"id": "url", "property": "pathname", "value": path}],
            [{"id": "url", "property": "search", "value": ""}],
        )
        props = _component_props(routed["response"]["page"]["children"], {})
        calls = 1
        for dep in self.dependencies:
            if dep.get("prevent_initial_call") or not all(o["id"] in props for o in _split_output(dep["output"])):
                continue
            if not all(i["id"] in props for i in dep["inputs"]):
                continue

            def values(items: list[dict[str, str]]) -> list[dict[str, Any]]:
                return [i | {"value": props.get(i["id"], {}).get(i["property"])} for i in items]

            self._post(dep["output"], values(dep["inputs"]), values(dep.get("state", [])))
            calls += 1
        return calls

    def close(self) -> None:
        self.session.close()


def _percentile(values: list[float], q: int) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else values[0]


def _load_pages(base_url: str, auth: tuple[str, str], users: int, rounds: int) -> dict[str, Any]:
    """`users` users at once, each loading every page in turn `rounds` times; latencies per page."""
    sessions = [_User(base_url, *auth) for _ in range(users)]
    times: dict[str, list[float]] = {name: [] for name in SERVED_PAGES}
    calls: dict[str, int] = {}
    errors: list[str] = []
    lock = threading.Lock()
    start = threading.Barrier(users)

    def browse(index: int, user: _User) -> None:
        names = list(SERVED_PAGES)
        names = names[index % len(names) :] + names[: index % len(names)]  # not all on the same page at once
        start.wait()
        for _ in range(rounds):
            for name in names:
                t0 = time.perf_counter()
                try:
                    n = user.load(SERVED_PAGES[name])
                except (requests.RequestException, RuntimeError, KeyError) as exc:
                    with lock:
                        errors.append(f"{name}: {exc}")
                    continue
                elapsed = time.perf_counter() - t0
                with lock:
                    times[name].append(elapsed)
                    calls[name] = n

    t0 = time.perf_counter()
    threads = [threading.Thread(target=browse, args=(i, u), name=f"user-{i}") for i, u in enumerate(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall_s = time.perf_counter() - t0
    for user in sessions:
        user.close()
    pages = {
        name: {
            "loads": len(ts),
            "callbacks": calls.get(name, 0),
            "p50_s": statistics.median(ts) if ts else None,
            "p95_s": _percentile(ts, 95) if ts else None,
            "max_s": max(ts) if ts else None,
        }
        for name, ts in times.items()
    }
    loads = sum(len(ts) for ts in times.values())
    return {"users": users, "rounds": rounds, "pages": pages, "errors": errors, "loads_per_s": loads / wall_s}


def run_served(
    db: DatabaseServer, settings: Settings, *, users: int, rounds: int, workers: int, threads: int
) -> dict[str, Any]:
    auth = ("bench", secrets.token_urlsafe(16))
    with _served(db, settings, workers=workers, threads=threads, user=auth[0], password=auth[1]) as url:
        _load_pages(url, auth, users=1, rounds=1)  # warm every worker's pool and Dash's caches once
        _load_pages(url, auth, users=min(users, workers * threads), rounds=1)
        single = _load_pages(url, auth, users=1, rounds=rounds)
        many = _load_pages(url, auth, users=users, rounds=rounds)
    return {"workers": workers, "threads": threads, "single": single, "concurrent": many}


def run(
    quick: bool,
    *,
    scale: float | None = None,
    repeats: int | None = None,
    vee_days: int = VEE_DAYS,
    concurrent_users: int = 0,
    rounds: int | None = None,
    web_workers: int = WEB_WORKERS,
    web_threads: int = WEB_THREADS,
) -> dict[str, Any]:
    from fleet.registry import build_fleet
    from fleet.store import write_fleet
    from tests.services import running_services  # throwaway TimescaleDB

    scale = scale or (QUICK_SCALE if quick else 1.0)
    repeats = repeats or (3 if quick else 5)
    results: dict[str, Any] = {"scale": scale, "repeats": repeats, "budget_s": PAGE_BUDGET_S, "pages": {}}
    with running_services() as (db, _broker, settings):
        assert isinstance(db, DatabaseServer)
        owner = db.conninfo(Role.OWNER)
        with console.status(f"generating the fleet at scale {scale}"):
            t0 = time.perf_counter()
            write_fleet(owner, build_fleet(scale=scale))
            results["fleet_write_s"] = time.perf_counter() - t0
        with console.status("network state"):
            results["meters"] = _fill_network_state(owner)
        with console.status(f"continuous VEE days ({vee_days}) and a bill run"):
            t0 = time.perf_counter()
            results["vee_meter_days"] = _fill_vee_days(owner, vee_days)
            results["vee_days"] = vee_days
            results["bill_run"] = _fill_bill_run(owner)
            results["fill_s"] = time.perf_counter() - t0
        with console.status("refresh_dashboard_aggregates()"):
            results["refresh_s"], results["refresh_parts_s"] = _refresh(owner)
            results["refresh_again_s"], results["refresh_again_parts_s"] = _refresh(owner)
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
        if concurrent_users:
            with console.status(f"amr dashboard (gunicorn): 1 user, then {concurrent_users} users"):
                results["served"] = run_served(
                    db,
                    settings,
                    users=concurrent_users,
                    rounds=rounds or (3 if quick else 5),
                    workers=web_workers,
                    threads=web_threads,
                )
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
        f"fleet write {results['fleet_write_s']:,.1f} s; {results['vee_meter_days']:,} VEE meter-days"
        f" ({results['vee_days']} days) and a bill run of {results['bill_run']['bills']:,} bills"
        f" ({results['bill_run']['rebills']:,} corrected) {results['fill_s']:,.1f} s"
    )
    console.print(
        f"refresh_dashboard_aggregates() {results['refresh_s']:,.1f} s (first), {results['refresh_again_s']:,.1f} s"
        " (again, nothing changed)"
    )
    parts = Table(title="refresh_dashboard_aggregates() by aggregate [s]")
    for col in ("aggregate", "first", "again"):
        parts.add_column(col, justify="left" if col == "aggregate" else "right")
    for name, first in results["refresh_parts_s"].items():
        again = results["refresh_again_parts_s"].get(name)
        parts.add_row(name, f"{first:,.2f}", f"{again:,.2f}" if again is not None else "—")
    console.print(parts)


def _print_served(results: dict[str, Any]) -> None:
    served = results["served"]
    single, many = served["single"], served["concurrent"]
    table = Table(
        title=f"amr dashboard (gunicorn {served['workers']} worker(s) x {served['threads']} thread(s)) at scale "
        f"{results['scale']}: page-load latency, 1 user vs {many['users']} users, {many['rounds']} round(s) each"
    )
    table.add_column("page")
    table.add_column("callbacks", justify="right")
    for who in ("1 user", f"{many['users']} users"):
        for stat in ("p50", "p95", "max"):
            table.add_column(f"{who} {stat} [ms]", justify="right")

    def ms(value: float | None) -> str:
        return f"{1000 * value:,.0f}" if value is not None else "—"

    for name in SERVED_PAGES:
        one, lots = single["pages"][name], many["pages"][name]
        table.add_row(
            name,
            str(one["callbacks"]),
            *(ms(one[f"{s}_s"]) for s in ("p50", "p95", "max")),
            *(ms(lots[f"{s}_s"]) for s in ("p50", "p95", "max")),
        )
    console.print(table)
    console.print(
        f"page loads/s: 1 user {single['loads_per_s']:,.1f}, {many['users']} users {many['loads_per_s']:,.1f}"
    )
    for error in (single["errors"] + many["errors"])[:10]:
        console.print(f"[red]error[/red] {error}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"scale {QUICK_SCALE} instead of 1.0")
    parser.add_argument("--scale", type=float, default=None)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--vee-days", type=int, default=VEE_DAYS, help="days of vee_daily per remote-read meter")
    parser.add_argument("--concurrent", action="store_true", help="also load the pages from gunicorn, 1 and N users")
    parser.add_argument("--users", type=int, default=CONCURRENT_USERS, help="simulated users of --concurrent")
    parser.add_argument("--rounds", type=int, default=None, help="page loads per user and page (3 quick, 5 full)")
    parser.add_argument("--web-workers", type=int, default=WEB_WORKERS, help="gunicorn worker processes")
    parser.add_argument("--web-threads", type=int, default=WEB_THREADS, help="threads per gunicorn worker")
    args = parser.parse_args()
    results = run(
        args.quick,
        scale=args.scale,
        repeats=args.repeats,
        vee_days=args.vee_days,
        concurrent_users=args.users if args.concurrent else 0,
        rounds=args.rounds,
        web_workers=args.web_workers,
        web_threads=args.web_threads,
    )
    _print(results)
    if "served" in results:
        _print_served(results)


if __name__ == "__main__":
    main()
