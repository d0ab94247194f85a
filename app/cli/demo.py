"""`amr demo`: the main job end to end (what `make demo` runs)."""

from __future__ import annotations

import typer

from amr.errors import ConfigError
from app.cli.context import console, database, local_broker


def demo(
    scale: float = typer.Option(
        0.00002, help="fleet scale (1.0 = about 5.5 M meters); every remote meter is simulated live, so keep it small"
    ),
    period: str = typer.Option("2026-10", help="billing month YYYY-MM to simulate and bill"),
    seed: int = typer.Option(1, help="seed of the fleet, the meters and their faults"),
    step_min: int = typer.Option(1440, help="simulated minutes between polls (1440: daily register reads)"),
    baud: int = typer.Option(19200, help="baud rate of the simulated RS-485 lines"),
    faults: bool = typer.Option(True, help="give a share of meters faults (dead, drift, spikes, stuck, outages)"),
    non_interactive: bool = typer.Option(
        False, "--non-interactive", help="exit after the billing run (or after --live-for), serve no dashboards"
    ),
    live_for: float | None = typer.Option(
        None,
        "--live-for",
        min=0.0,
        help="seconds the network then runs live on real time (default: until Ctrl-C, none with --non-interactive)",
    ),
    host: str = typer.Option("127.0.0.1", help="dashboards listen address"),
    port: int = typer.Option(8050, help="dashboards port"),
    override_hold: bool = typer.Option(False, help="release the billing run even when a quality check fails"),
) -> None:
    """Database + broker, a generated fleet, simulators of every protocol, collector, ingest, a simulated billing
    period, VEE and bills with exports, then the same network live on real time beside the dashboards, so the
    Network page shows meters read in the last interval (Ctrl-C stops everything)."""
    from app.demo.run import DemoOptions, run_demo
    from billing.cycles import BillingPeriod

    if step_min < 15 or 1440 % step_min:
        raise ConfigError("must divide a day into whole steps of at least 15 minutes", key="--step-min")
    opts = DemoOptions(
        scale=scale,
        seed=seed,
        period=BillingPeriod.parse(period),
        step_min=step_min,
        baud=baud,
        faults=DemoOptions().faults if faults else {},
        serve=not non_interactive,
        host=host,
        port=port,
        override_hold=override_hold,
        live_for_s=live_for,
    )
    run_demo(database(), local_broker(), opts, console)
