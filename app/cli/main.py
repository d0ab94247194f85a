"""Entry point: `amr --help` lists the command groups."""

from __future__ import annotations

import importlib
import sys

import typer

from amr.errors import AmrError
from app.cli import bill, broker, db
from app.cli.context import err_console

app = typer.Typer(
    help="AMR/AMI metering data platform: collect meter readings, ingest them into TimescaleDB, "
    "validate, estimate and bill them, and show the rollout on dashboards.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(db.app, name="db")
app.add_typer(broker.app, name="broker")
app.add_typer(importlib.import_module("app.cli.fleet").app, name="fleet")
app.add_typer(bill.app, name="bill")
app.add_typer(importlib.import_module("app.cli.dashboard").app, name="dashboard")
app.command(name="collect")(importlib.import_module("app.cli.collect").collect)
app.command(name="ingest")(importlib.import_module("app.cli.ingest").ingest)
app.command(name="simulate")(importlib.import_module("app.cli.simulate").simulate)


app.command(name="demo")(importlib.import_module("app.cli.demo").demo)


def main() -> None:
    try:
        app()
    except AmrError as exc:
        err_console.print(f"[red]error:[/red] {exc}")
        sys.exit(2)
