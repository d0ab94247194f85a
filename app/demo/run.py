"""`amr demo`: the main job end to end on one machine.

Database and broker up -> fleet generated -> simulators of every protocol (Modbus TCP, RTU over TCP, RTU on a
serial pty, DLMS/COSEM, MQTT concentrators) with a share of faults -> the collector and an ingest worker ->
the simulated days of a billing period on a stepped clock -> VEE and billing -> exports -> the same network
live on wall-clock time (app/demo/live.py) beside the dashboards, until Ctrl-C.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from amr.broker.mosquitto import BrokerEndpoint, LocalMosquitto, broker_endpoint
from amr.db.server import DatabaseServer, Role
from amr.errors import ConfigError, ServiceError
from app.demo.live import (
    LIVE_LOOKBACK,
    LIVE_POLL_S,
    LIVE_REFRESH_S,
    READ_INTERVAL_MIN,
    LiveNetwork,
    NetworkNow,
    continuous_figures,
    count_rows,
    refresh_dashboards,
    start_ingest,
    start_live,
    start_vee,
    stop_process,
    wait_quiet,
)
from app.demo.plan import collector_toml, count_by_protocol, group_gateways, local_midnights, period_days
from app.demo.world import fetch_live_meters, start_world
from billing.continuous import drain
from billing.cycles import BillingPeriod
from billing.rules import read_vee_rules
from collectors.config import parse_collector_config
from collectors.runner import Collector
from collectors.stats import MeterStats
from simulators.clock import SimClock

DEFAULT_FAULTS = {"no_answer": 0.02, "drift": 0.05, "spikes": 0.02, "stuck": 0.01, "power_down": 0.02}
STEP_WAIT_S = 5.0  # the longest one simulated instant waits for its reads (a dead meter: two timeouts and a back-off)
DEMO_PERIOD = BillingPeriod(2026, 10)  # the billing month the demo simulates and bills by default


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
    # The live phase after the billing run: None runs it until Ctrl-C when serving and skips it otherwise;
    # a number of seconds bounds it (0: none).
    live_for_s: float | None = None
    live_poll_s: float = LIVE_POLL_S
    live_refresh_s: float = LIVE_REFRESH_S

    def live_budget_s(self) -> float | None:
        """Seconds of live phase: None = until Ctrl-C, 0 = none."""
        if self.live_for_s is None:
            return None if self.serve else 0.0
        return self.live_for_s


def run_demo(db: DatabaseServer, broker: LocalMosquitto | None, opts: DemoOptions, console: Console) -> dict[str, Any]:
    """Run the demo; returns the summary. Serves the dashboards until Ctrl-C when `opts.serve`."""
    from billing.run import run_period
    from fleet.registry import build_fleet
    from fleet.store import write_fleet

    t_start = time.perf_counter()
    live_s = opts.live_budget_s()
    if live_s is not None and live_s < 0:
        raise ConfigError(f"must be >= 0 seconds, got {live_s:g}", key="--live-for")
    first_day, last_day = period_days(opts.period, list(range(1, 29)))
    steps_hint = local_midnights(first_day, last_day, opts.step_min)
    if live_s != 0 and steps_hint[-1] > datetime.now(UTC) - LIVE_LOOKBACK:
        # Live readings (and the day of DLMS load profile a fresh collector reads back) would land among the
        # simulated ones of the period being billed.
        raise ConfigError(
            f"the simulated period {opts.period} runs to {steps_hint[-1]:%Y-%m-%d %H:%M} UTC, less than"
            f" {LIVE_LOOKBACK} before now: the live phase would write into it; pick an earlier period or"
            " --live-for 0",
            key="--period",
        )
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
    ingest = start_ingest(db.settings.state_dir / "demo-ingest.log")
    vee_service = start_vee(db.settings.state_dir / "demo-vee.log")
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
                wait_polled(collector, t.timestamp(), STEP_WAIT_S)
                rows, dead = count_rows(owner)
                progress.update(task, advance=1, description=f"{t:%Y-%m-%d %H:%M} UTC, {rows:,} rows stored")
        stop_collector.set()
        collector_thread.join(timeout=30)
        world.stop()
        rows = wait_quiet(owner)
        stop_process(ingest)
        rows, dead = count_rows(owner)
        console.print(f"stored {rows:,} readings, {dead:,} dead letters")
        # The service validated the days as they landed; what the last seconds stored is validated here, so that
        # the bill run sees every day (its own pass would wait for the service's lock, not interleave with it).
        tail = drain(db.conninfo(Role.BILLING), rules=read_vee_rules(None))
        stop_process(vee_service)  # the live phase runs its own beside its ingest
        vee_figures = continuous_figures(owner)
        console.print(
            f"continuous VEE: {vee_figures['validated days']:,} validated days, {len(tail)} closing pass(es),"
            f" {vee_figures['open episodes']:,} open exception episodes"
        )

        console.rule(f"VEE and billing, period {opts.period}")
        bill = run_period(
            db.conninfo(Role.BILLING),
            period=opts.period,
            kind="bill",
            out_dir=db.settings.state_dir / "exports",
            override_hold=opts.override_hold,
            source="continuous",  # the VEE service's validated days: the month is not validated again
        )
        refresh_dashboards(owner)
        summary = {
            "meters in registry": len(fleet.unit_id),
            "meters simulated live": len(meters),
            "readings stored": rows,
            "dead letters": dead,
            "validated days": vee_figures["validated days"],
            "open exception episodes": vee_figures["open episodes"],
            "billing run": bill.run_id,
            "status": bill.status,
            "customers billed": bill.billed,
            "customers held": bill.held,
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
        stop_process(ingest)
        stop_process(vee_service)
    if live_s == 0:
        if opts.serve:
            _serve(db, opts, console)
        return summary

    console.rule(f"live network: polled every {opts.live_poll_s:g} s of real time" + _until(live_s))

    def on_refresh(now: NetworkNow) -> None:
        console.print(
            f"{now.refreshed_at:%H:%M:%S} network: {now.read_interval:,} of {now.remote_meters:,} remote meters"
            f" read in the last {READ_INTERVAL_MIN} min, {now.read_24h:,} in 24 h"
        )

    def on_error(exc: Exception) -> None:
        console.print(f"[yellow]dashboard aggregate refresh failed: {escape(str(exc))}[/yellow]")

    rows_before, _ = count_rows(owner)
    live = start_live(
        gateways,
        seed=opts.seed,
        fault_shares=opts.faults,
        baud=opts.baud,
        run_dir=run_dir / "live",
        endpoint=endpoint,
        owner_conninfo=owner,
        ingest_log=db.settings.state_dir / "demo-ingest.log",
        poll_interval_s=opts.live_poll_s,
        refresh_s=opts.live_refresh_s,
        on_refresh=on_refresh,
        on_error=on_error,
    )
    timer: threading.Timer | None = None
    try:
        if opts.serve:
            if live_s is not None:  # the dashboards stay up after the live phase ends
                timer = threading.Timer(live_s, live.stop)
                timer.daemon = True
                timer.start()
            _serve(db, opts, console)
        else:
            assert live_s is not None
            with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends the live phase early, with its summary
                time.sleep(live_s)
    finally:
        if timer is not None:
            timer.cancel()
        live.stop()
    live_summary = _live_summary(live, owner, rows_before)
    console.print(", ".join(f"{k}: {v:,}" for k, v in live_summary.items()))
    summary |= live_summary
    return summary


def _until(live_s: float | None) -> str:
    return " until Ctrl-C" if live_s is None else f" for {live_s:g} s"


def _live_summary(live: LiveNetwork, owner: str, rows_before: int) -> dict[str, int]:
    rows, _ = count_rows(owner)
    return {
        "live readings stored": rows - rows_before,
        "meters read live": live.meters_read_live(),
        "live aggregate refreshes": live.refresher.refreshes,
        "meters read in the last interval": last.read_interval if (last := live.refresher.last) else 0,
    }


class _HasMeterStats(Protocol):
    def meter_stats(self) -> list[MeterStats]: ...


def wait_polled(collector: _HasMeterStats, t_s: float, timeout_s: float) -> None:
    """Until every polled meter was read at simulated instant `t_s`, or failed twice in a row (a dead meter is
    not waited for), or `timeout_s` passed.

    A meter whose first try at `t_s` failed once (a timeout on a loaded machine) is retried by the collector after
    its back-off while the clock still shows `t_s`; moving on at the first failure lost that instant's read and
    made the demo's bills depend on the machine's load."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pending = [s for s in collector.meter_stats() if (s.last_success_s or 0.0) < t_s and s.consecutive_failures < 2]
        if not pending:
            return
        time.sleep(0.005)


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
