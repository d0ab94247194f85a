"""`amr dashboard`: serve the Dash dashboards (read-only role amr_reader), or refresh their aggregates."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from amr.db.roles import Role
from amr.errors import ServiceError
from app.cli.context import console, database, settings

if TYPE_CHECKING:
    from dashboards.app import Guard

app = typer.Typer(
    help="Dashboards: serve the Dash app (rollout, network, data quality, billing) or refresh its aggregates.",
    invoke_without_command=True,
)


@app.callback()
def serve(
    ctx: typer.Context,
    host: str = typer.Option("127.0.0.1", help="address to listen on (loopback unless told otherwise)"),
    port: int = typer.Option(8050, min=1, max=65535, help="TCP port"),
    no_auth: bool = typer.Option(False, "--no-auth", help="serve without authentication (loopback host only)"),
    workers: int = typer.Option(2, "--workers", min=1, max=64, help="gunicorn worker processes"),
    threads: int = typer.Option(4, "--threads", min=1, max=64, help="threads per worker"),
    trust_proxy_header: bool = typer.Option(
        False,
        "--trust-proxy-header",
        help="accept the user a reverse proxy names in X-Forwarded-User (loopback bind only; deploy/README.md)",
    ),
    dev: bool = typer.Option(
        False, "--dev", help="Flask's development server instead of gunicorn (never in production)"
    ),
) -> None:
    """Serve the dashboards on gunicorn (--workers processes x --threads threads) and print their address and
    login. HTTP basic auth always, unless --no-auth on a loopback address: AMR_DASHBOARD_USER and
    AMR_DASHBOARD_PASSWORD (both, or neither), else a generated password for user 'operator' in
    <state_dir>/dashboard-credentials.toml (mode 0600). Behind a reverse proxy on this machine,
    --trust-proxy-header also lets in the requests the proxy authenticated (X-Forwarded-User)."""
    if ctx.invoked_subcommand is not None:
        return
    from dashboards.auth import resolve_auth

    choice = resolve_auth(state_dir=settings().state_dir, host=host, no_auth=no_auth)
    conninfo = database().conninfo(Role.READER)
    guard: Guard | None = choice.auth
    notice = choice.notice
    if trust_proxy_header:
        from dashboards.proxy_auth import PROXY_USER_HEADER, ProxyHeaderAuth

        guard = ProxyHeaderAuth.for_host(host, fallback=choice.auth)
        notice = f"{PROXY_USER_HEADER} from the reverse proxy, or {notice}"
    if dev:
        from dashboards.app import wsgi_server

        console.print(f"dashboards (Flask dev server) on [bold]http://{host}:{port}/[/bold], {escape(notice)}")
        wsgi_server(conninfo, guard=guard).run(host=host, port=port, debug=False)
        return
    from app.services.web import serve as serve_gunicorn

    def factory() -> Any:
        from dashboards.app import wsgi_server  # in each worker, after the fork

        return wsgi_server(conninfo, guard=guard)

    console.print(
        f"dashboards on [bold]http://{host}:{port}/[/bold] (gunicorn, {workers} worker(s) x {threads} thread(s)), "
        f"{escape(notice)} (Ctrl-C stops)"
    )
    serve_gunicorn(factory, host=host, port=port, workers=workers, threads=threads)


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
