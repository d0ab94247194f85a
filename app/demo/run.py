"""`amr demo`: the main job end to end on one machine.

Database and broker up -> fleet generated -> simulators of every protocol (Modbus TCP, RTU over TCP, RTU on a
serial pty, DLMS/COSEM, MQTT concentrators) with a share of faults -> the collector and an ingest worker ->
the simulated days of a billing period on a stepped clock -> VEE and billing -> exports -> dashboards.
"""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from amr.broker.mosquitto import BrokerEndpoint, LocalMosquitto, broker_endpoint
from amr.db.server import DatabaseServer, Role
from amr.errors import ServiceError
from app.demo.plan import collector_toml, count_by_protocol, group_gateways, local_midnights, period_days
from app.demo.world import fetch_live_meters, start_world
from billing.cycles import BillingPeriod
from collectors.config import parse_collector_config
from collectors.runner import Collector
from simulators.clock import SimClock

DEFAULT_FAULTS = {"no_answer": 0.02, "drift": 0.05, "spikes": 0.02, "stuck": 0.01, "power_down": 0.02}
STEP_WAIT_S = 5.0  # the longest one simulated instant waits for every meter's poll (a dead meter: one timeout)
DEMO_PERIOD = BillingPeriod(2026, 10)  # the billing month the demo simulates and bills by default
DRAIN_QUIET_S = 3.0  # ingest is done when the stored row count has not moved for this long


@dataclass(kw_only=True)
class DemoOptions:
    scale: float = 0.00002
    seed: int = 1
    period: BillingPeriod = DEMO_PERIOD
    step_min: int = 1440
    baud: int = 19200
    faults: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_FAULTS))
    serve: bool = True
    host: str = "127.0.0.1"
    port: int = 8050
    override_hold: bool = False


def _counts(conninfo: str) -> tuple[int, int]:
    with psycopg.connect(conninfo) as conn:
        row = conn.execute("SELECT (SELECT count(*) FROM readings), (SELECT count(*) FROM dead_letters)").fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def _start_ingest(log_path: Path) -> subprocess.Popen[bytes]:
    log = open(log_path, "ab")  # noqa: SIM115 - the child owns it for its lifetime
    return subprocess.Popen(
        [sys.executable, "-m", "app", "ingest", "--workers", "1", "--no-live", "--name", "demo-ingest"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def run_demo(db: DatabaseServer, broker: LocalMosquitto | None, opts: DemoOptions, console: Console) -> dict[str, Any]:
    """Run the demo; returns the summary. Serves the dashboards until Ctrl-C when `opts.serve`."""
    from billing.run import run_period
    from fleet.registry import build_fleet
    from fleet.store import write_fleet

    t_start = time.perf_counter()
    if opts.serve:  # a half-set dashboard login is refused now, not after the whole run
        from dashboards.auth import resolve_auth

        resolve_auth(state_dir=db.settings.state_dir, host=opts.host)
    console.rule("database and broker")
    db.up()
    if broker is not None:
        broker.start()
    owner = db.conninfo(Role.OWNER)
    console.print(f"database ready ({'external' if db.is_external else 'local'}), broker ready")

    console.rule(f"fleet (scale {opts.scale})")
    fleet = build_fleet(scale=opts.scale, seed=opts.seed)
    write_fleet(owner, fleet, replace=True)
    first_day, last_day = period_days(opts.period, list(range(1, 29)))
    steps_hint = local_midnights(first_day, last_day, opts.step_min)
    meters = fetch_live_meters(owner, steps_hint[0])
    if not meters:
        raise ServiceError("the generated fleet has no remote-read meters: raise --scale")
    first_day, last_day = period_days(opts.period, [m.read_day for m in meters])
    steps = local_midnights(first_day, last_day, opts.step_min)
    gateways = group_gateways(meters)
    table = Table(title=f"simulated live meters: {len(meters)} on {len(gateways)} gateways")
    table.add_column("protocol")
    table.add_column("meters", justify="right")
    for proto, n in count_by_protocol(meters).items():
        table.add_row(proto, str(n))
    console.print(table)

    run_dir = Path(tempfile.mkdtemp(prefix="amr-demo-"))
    clock = SimClock.fixed(steps[0])
    creds = db.credentials

    def endpoint(account: str) -> BrokerEndpoint:
        if broker is None:  # AMR_MQTT_URL: an external broker
            return broker_endpoint(db.settings, creds, account)
        return BrokerEndpoint(
            host=broker.host, port=broker.port, username=account, password=broker.credentials.mqtt_password(account)
        )

    world = start_world(
        gateways,
        clock=clock,
        seed=opts.seed,
        fault_shares=opts.faults,
        baud=opts.baud,
        run_dir=run_dir,
        dcu_endpoint=endpoint("dcu"),
    )
    ingest = _start_ingest(db.settings.state_dir / "demo-ingest.log")
    stop_collector = threading.Event()
    config = parse_collector_config(
        collector_toml(
            collector_id="demo-collector",
            spool_dir=str(run_dir / "spool"),
            gateways=world.endpoints,
            baud=opts.baud,
            poll_interval_s=0.0,
        ),
        source=str(run_dir / "collector.toml"),
        base_dir=run_dir,
    )
    collector = Collector(config, clock=clock.now_s, endpoint=endpoint("collector"))
    collector_thread = threading.Thread(
        target=lambda: asyncio.run(collector.run(stop_collector, None)), name="demo-collector", daemon=True
    )
    summary: dict[str, Any] = {}
    try:
        collector_thread.start()
        console.rule(f"simulating {first_day} .. {last_day} (local), {len(steps)} steps of {opts.step_min} min")
        with Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        ) as progress:
            task = progress.add_task("simulated instants", total=len(steps))
            for t in steps:
                clock.set(t)
                _wait_polled(collector, t.timestamp(), STEP_WAIT_S)
                rows, dead = _counts(owner)
                progress.update(task, advance=1, description=f"{t:%Y-%m-%d %H:%M} UTC, {rows:,} rows stored")
        stop_collector.set()
        collector_thread.join(timeout=30)
        world.stop()
        rows = _wait_quiet(owner)
        _stop(ingest)
        rows, dead = _counts(owner)
        console.print(f"stored {rows:,} readings, {dead:,} dead letters")

        console.rule(f"VEE and billing, period {opts.period}")
        bill = run_period(
            db.conninfo(Role.BILLING),
            period=opts.period,
            kind="bill",
            out_dir=db.settings.state_dir / "exports",
            override_hold=opts.override_hold,
        )
        _refresh_dashboards(owner)
        summary = {
            "meters in registry": len(fleet.unit_id),
            "meters simulated live": len(meters),
            "readings stored": rows,
            "dead letters": dead,
            "billing run": bill.run_id,
            "status": bill.status,
            "customers billed": bill.billed,
            "energy [kWh]": bill.energy_kwh,
            "amount [VND]": bill.total_vnd,
            "exceptions": sum(bill.exceptions_by_rule.values()),
            "share estimated": f"{bill.estimated_share:.2%}",
            "exports": ", ".join(str(p) for p in bill.files),
            "hold": bill.hold_reason or "-",
            "wall time [s]": round(time.perf_counter() - t_start, 1),
        }
        out = Table(title="demo summary", show_header=False)
        for key, value in summary.items():
            out.add_row(escape(key), escape(f"{value:,}" if isinstance(value, int) else str(value)))
        console.print(out)
    finally:
        stop_collector.set()
        world.stop()
        _stop(ingest)
    if opts.serve:
        _serve(db, opts, console)
    return summary


def _wait_polled(collector: Collector, t_s: float, timeout_s: float) -> None:
    """Until every polled meter was attempted at simulated instant `t_s` (a failing one is not waited for)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pending = [s for s in collector.meter_stats() if (s.last_attempt_s or 0.0) < t_s and s.consecutive_failures < 2]
        if not pending:
            return
        time.sleep(0.005)


def _wait_quiet(conninfo: str, timeout_s: float = 120.0) -> int:
    last, since = -1, time.monotonic()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rows, _ = _counts(conninfo)
        if rows != last:
            last, since = rows, time.monotonic()
        elif time.monotonic() - since >= DRAIN_QUIET_S:
            return rows
        time.sleep(0.5)
    return last


def _refresh_dashboards(conninfo: str) -> None:
    with psycopg.connect(conninfo, autocommit=True) as conn, contextlib.suppress(psycopg.errors.UndefinedFunction):
        conn.execute("SELECT * FROM refresh_dashboard_aggregates()").fetchall()


def _serve(db: DatabaseServer, opts: DemoOptions, console: Console) -> None:
    from dashboards.app import create_app
    from dashboards.auth import resolve_auth

    # Authenticated like `amr dashboard`: the environment's credentials, else the generated ones.
    choice = resolve_auth(state_dir=db.settings.state_dir, host=opts.host)
    app = create_app(db.conninfo(Role.READER), auth=choice.auth)
    console.rule("dashboards")
    console.print(
        f"dashboards at [bold]http://{opts.host}:{opts.port}/[/bold], {escape(choice.notice)}  (Ctrl-C stops)"
    )
    app.run(host=opts.host, port=opts.port, debug=False)


__all__ = ["DemoOptions", "run_demo"]
