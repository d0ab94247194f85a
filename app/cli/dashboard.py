"""`amr dashboard`: serve the Dash dashboards (read-only role amr_reader), or refresh their aggregates."""

from __future__ import annotations

import time

import typer
from rich.markup import escape
from rich.table import Table

from amr.db.roles import Role
from amr.errors import ServiceError
from app.cli.context import console, database, settings

app = typer.Typer(
    help="Dashboards: serve the Dash app (rollout, network, data quality, billing) or refresh its aggregates.",
    invoke_without_command=True,
)


@app.callback()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="address to listen on"),
    port: int = typer.Option(8050, min=1, max=65535, help="TCP port"),
    no_auth: bool = typer.Option(False, "--no-auth", help="serve without authentication (loopback host only)"),
) -> None:
    """Serve the dashboards and print their address and login. HTTP basic auth always, unless --no-auth on a
    loopback address: AMR_DASHBOARD_USER and AMR_DASHBOARD_PASSWORD (both, or neither), else a generated
    password for user 'operator' in <state_dir>/dashboard-credentials.toml (mode 0600)."""
    if ctx.invoked_subcommand is not None:
        return
    from dashboards.app import create_app
    from dashboards.auth import resolve_auth

    choice = resolve_auth(state_dir=settings().state_dir, host=host, no_auth=no_auth)
    dash_app = create_app(database().conninfo(Role.READER), auth=choice.auth)
    console.print(f"dashboards on [bold]http://{host}:{port}/[/bold], {escape(choice.notice)} (Ctrl-C stops)")
    dash_app.run(host=host, port=port, debug=False)


@app.command()
def refresh(
    interval_s: float = typer.Option(0.0, "--every", min=0.0, help="repeat every this many seconds (0 = once)"),
    read_interval_min: int = typer.Option(30, min=1, help="the meters' read interval [min], for 'read last interval'"),
) -> None:
    """Refresh the dashboard aggregates (rollout, map sample, network, VEE summaries) in one transaction."""
    import psycopg

    conninfo = database().conninfo(Role.OWNER)
    while True:
        try:
            with psycopg.connect(conninfo, autocommit=True) as conn:
                rows = conn.execute(
                    "SELECT name, row_count, duration_ms FROM refresh_dashboard_aggregates(make_interval(mins => %s))",
                    (read_interval_min,),
                ).fetchall()
        except psycopg.OperationalError as exc:
            raise ServiceError(f"database not reachable: {exc}") from exc
        table = Table(title="dashboard aggregates refreshed")
        table.add_column("aggregate")
        table.add_column("rows", justify="right")
        table.add_column("time [ms]", justify="right")
        for name, count, ms in rows:
            table.add_row(name, f"{count:,}", f"{ms:,.0f}")
        console.print(table)
        if interval_s <= 0:
            return
        time.sleep(interval_s)
