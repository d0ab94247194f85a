"""`amr simulate`: start a fleet of meter simulators speaking the real protocols and list where they listen.

The config (a TOML file's [simulate] table, or options) and the starters live in :mod:`simulators.orchestrate`;
this module parses the options, prints the listing and waits for Ctrl-C.
"""

from __future__ import annotations

import functools
import json
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from amr.errors import ConfigError
from app.cli.context import console, settings

if TYPE_CHECKING:
    from simulators.listener import Listener
    from simulators.orchestrate import SimulateConfig, Starter


def _units(units: list[int]) -> str:
    return f"{units[0]}-{units[-1]}" if len(units) > 1 and units == list(range(units[0], units[-1] + 1)) else str(units)


def listing_table(listeners: list[Listener], cfg: SimulateConfig) -> Table:
    table = Table(title=f"simulators: start {cfg.start.isoformat()} x{cfg.speed:g}, seed {cfg.seed}")
    table.add_column("protocol")
    table.add_column("listens on", no_wrap=True)
    for col in ("units", "meters", "serials"):
        table.add_column(col)
    for li in listeners:
        serials = li.serials if len(li.serials) <= 3 else [li.serials[0], "...", li.serials[-1]]
        table.add_row(li.protocol, li.endpoint, _units(li.units), str(len(li.serials)), " ".join(serials))
    return table


def bound_starters(cfg: SimulateConfig) -> dict[str, Starter]:
    """The starters that need the project's services, bound to them: the DCUs' broker (account dcu) and state
    directory, resolved here (the simulators read no settings) and only when DCUs are asked for (reading the
    credentials may create them)."""
    if not cfg.gateways.get("dcu"):
        return {}
    from amr.broker.mosquitto import broker_endpoint
    from amr.credentials import read_or_create_credentials
    from simulators.dcu.cli import start_listener as start_dcu_listener

    s = settings()
    broker = broker_endpoint(s, read_or_create_credentials(s.credentials_file), "dcu")
    return {"dcu": functools.partial(start_dcu_listener, broker=broker, state_dir=s.state_dir)}


def simulate(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML file with a \\[simulate] table")] = None,
    tcp: Annotated[int | None, typer.Option(help="Modbus TCP gateways")] = None,
    rtu_tcp: Annotated[int | None, typer.Option(help="RTU-over-TCP gateways")] = None,
    serial: Annotated[int | None, typer.Option(help="RTU serial lines (socat pty pairs)")] = None,
    dlms: Annotated[int | None, typer.Option(help="DLMS/COSEM servers (TCP wrapper, one port each)")] = None,
    dcu: Annotated[int | None, typer.Option(help="MQTT data concentrators pushing to the broker")] = None,
    meters_per_gateway: Annotated[int | None, typer.Option(help="meters (unit ids) per gateway")] = None,
    register_map: Annotated[str | None, typer.Option(help="Modbus register map name or file")] = None,
    baud: Annotated[int | None, typer.Option(help="serial baud rate")] = None,
    fault: Annotated[list[str] | None, typer.Option(help="NAME=SHARE, e.g. no_answer=0.05 (repeatable)")] = None,
    start: Annotated[str | None, typer.Option(help="simulated start time, ISO with offset")] = None,
    speed: Annotated[float | None, typer.Option(help="simulated seconds per real second")] = None,
    seed: Annotated[int | None, typer.Option(help="fleet seed")] = None,
    host: Annotated[str | None, typer.Option(help="listen address")] = None,
    base_port: Annotated[int | None, typer.Option(help="first TCP port (0: any free port)")] = None,
    listing: Annotated[Path | None, typer.Option(help="write the listeners as JSON here (for scripts)")] = None,
    duration: Annotated[float | None, typer.Option(help="stop after this many real seconds")] = None,
) -> None:
    """Start meter simulators (Modbus TCP / RTU-over-TCP / RTU serial, and any registered protocol) until Ctrl-C."""
    from simulators.clock import SimClock
    from simulators.orchestrate import read_simulate_config, start_fleet

    overrides: dict[str, Any] = {
        "start": start, "speed": speed, "seed": seed, "host": host, "base_port": base_port,
        "meters_per_gateway": meters_per_gateway,
    }  # fmt: skip
    cli_gateways = {
        k: v
        for k, v in (("tcp", tcp), ("rtu-tcp", rtu_tcp), ("rtu-serial", serial), ("dlms", dlms), ("dcu", dcu))
        if v is not None
    }
    base = read_simulate_config(config, {})
    if cli_gateways:
        overrides["gateways"] = cli_gateways if config is None else {**base.gateways, **cli_gateways}
    if fault:
        shares = dict(base.faults)
        for item in fault:
            name, sep, value = item.partition("=")
            try:
                shares[name.strip()] = float(value)
            except ValueError:
                raise ConfigError(f"--fault wants NAME=SHARE, got {item!r}", key="fault") from None
            if not sep:
                raise ConfigError(f"--fault wants NAME=SHARE, got {item!r}", key="fault")
        overrides["faults"] = shares
    if register_map or baud:
        opts = {k: dict(v) for k, v in base.options.items()}
        for proto in ("tcp", "rtu-tcp", "rtu-serial"):
            if register_map:
                opts.setdefault(proto, {})["register_map"] = register_map
        if baud:
            opts.setdefault("rtu-serial", {})["baud"] = baud
        overrides["options"] = opts
    cfg = read_simulate_config(config, overrides)
    starters = bound_starters(cfg)
    clock = SimClock(cfg.start, speed=cfg.speed)
    stop = threading.Event()
    previous = {s: signal.signal(s, lambda *_: stop.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    run_dir = Path(tempfile.mkdtemp(prefix="amr-simulate-"))
    listeners = start_fleet(cfg, clock, run_dir, starters=starters)
    try:
        console.print(listing_table(listeners, cfg))
        if listing:
            rows = [
                {"protocol": li.protocol, "endpoint": li.endpoint, "units": li.units, "serials": li.serials, **li.extra}
                for li in listeners
            ]
            listing.write_text(json.dumps({"start": cfg.start.isoformat(), "speed": cfg.speed, "listeners": rows}))
        console.print("running; Ctrl-C or SIGTERM stops")
        deadline = time.monotonic() + duration if duration else None
        while not stop.wait(0.2):
            if deadline and time.monotonic() >= deadline:
                break
    finally:
        for li in listeners:
            li.stop()
        for s, h in previous.items():
            signal.signal(s, h)
        import shutil

        shutil.rmtree(run_dir, ignore_errors=True)
    console.print(f"stopped {len(listeners)} simulator(s)")
