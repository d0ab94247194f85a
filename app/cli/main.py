"""Entry point: `amr --help` lists the command groups.

Every command module is imported here, so each keeps its module level cheap (typer, rich, the core's light
modules such as amr.errors, amr.db.roles, fleet.calibration) and imports what its command runs on (settings,
psycopg, numpy, the stages) inside the command's body: `amr --help` then starts in a fraction of a second.
tests/app/test_cli.py checks that `--help` loads none of the heavy packages."""

from __future__ import annotations

import sys

import typer

from amr.errors import AmrError
from app.cli import bill, broker, collect, dashboard, db, demo, fleet, ingest, services, simulate, vee
from app.cli.context import err_console

app = typer.Typer(
    help="AMR/AMI metering data platform: collect meter readings, ingest them into TimescaleDB, "
    "validate, estimate and bill them, and show the rollout on dashboards.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(broker.app, name="broker")
app.add_typer(fleet.app, name="fleet")
app.add_typer(bill.app, name="bill")
app.add_typer(dashboard.app, name="dashboard")
app.add_typer(vee.app, name="vee")
app.command(name="collect")(collect.collect)
app.command(name="ingest")(ingest.ingest)
app.command(name="simulate")(simulate.simulate)
app.command(name="demo")(demo.demo)
app.command(name="up")(services.up)
app.command(name="down")(services.down)
app.command(name="status")(services.status)


def main() -> None:
    try:
        app()
    except AmrError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
