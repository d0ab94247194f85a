"""`amr db`: the project-local PostgreSQL + TimescaleDB cluster, or the server in AMR_DATABASE_URL."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from amr.db.roles import Role
from app.cli.context import console, database

if TYPE_CHECKING:
    from amr.db.migrate import Migration

app = typer.Typer(help="Database: start, stop, migrate and inspect PostgreSQL with TimescaleDB.", no_args_is_help=True)


def _print_migrations(applied: list[Migration], notices: list[str]) -> None:
    for note in notices:
        console.print(f"[dim]server: {note}[/dim]")
    if applied:
        console.print("applied migrations: " + ", ".join(f"{m.version:03d}_{m.name}" for m in applied))
    else:
        console.print("migrations: up to date")


@app.command()
def up() -> None:
    """Start the local cluster (initialising it on first use), create roles and database, apply migrations."""
    db = database()
    applied, notices = db.up()
    where = "external server (AMR_DATABASE_URL)" if db.is_external else f"127.0.0.1:{db.settings.db.port}"
    console.print(f"database [bold]{db.settings.db.name}[/bold] ready on {where}")
    _print_migrations(applied, notices)


@app.command()
def down() -> None:
    """Stop the local cluster (data stays in its data directory)."""
    stopped = database().down()
    console.print("database stopped" if stopped else "database was not running")


@app.command()
def migrate() -> None:
    """Apply pending migrations from sql/ (each once, in order, in its own transaction)."""
    from amr.db.migrate import apply_migrations

    applied, notices = apply_migrations(database().conninfo(Role.OWNER))
    _print_migrations(applied, notices)


@app.command()
def status() -> None:
    """PostgreSQL and TimescaleDB versions, edition, hypertables and their chunk counts."""
    info = database().status()
    table = Table(title="database", show_header=False)
    for key in ("server", "postgresql", "timescaledb", "edition"):
        table.add_row(key, str(info[key]))
    count, latest = info["migrations"]
    table.add_row("migrations", f"{count} applied, latest {latest:03d}" if latest else "none")
    console.print(table)
    hyper = Table(title="hypertables")
    hyper.add_column("hypertable")
    hyper.add_column("chunks", justify="right")
    for name, chunks in info["hypertables"]:
        hyper.add_row(name, str(chunks))
    console.print(hyper)


@app.command()
def psql(role: Role = typer.Option(Role.OWNER, help="connect as this role")) -> None:
    """Open psql on the platform database."""
    conninfo = database().conninfo(role)
    os.execvp("psql", ["psql", conninfo])
