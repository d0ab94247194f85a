"""Dashboard page render times at fleet scale, beside the same figures computed from the raw tables.

    .venv/bin/python -m benchmarks.bench_dashboards [--quick] [--scale S] [--repeats N] [--concurrent [--users U]]

On a throwaway TimescaleDB: the fleet generator (fleet) writes the registry at `--scale` (1.0 = the
real size of both cities), SQL fills meter_last_seen / meter_comm_stats for the remote-read meters, then
refresh_dashboard_aggregates() runs once (timed). Per page, the figure is the median time to build its layout
and its callbacks' outputs (queries + figures + JSON encoding, what Dash sends), through the amr_reader pool.
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
        f"fleet write {results['fleet_write_s']:,.1f} s; refresh_dashboard_aggregates() {results['refresh_s']:,.1f} s"
    )


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
