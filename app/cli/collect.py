"""`amr collect --config FILE`: run a collector with a live status line."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from app.cli.context import console, settings

if TYPE_CHECKING:
    from amr.broker.mosquitto import BrokerEndpoint
    from collectors.runner import CollectorSnapshot


def _status_table(s: CollectorSnapshot) -> Table:
    table = Table(title=f"collector {s.collector_id}", show_header=True, header_style="bold")
    for column in ("meters ok", "meter reads", "reads/s", "readings", "errors", "spool depth", "published", "broker"):
        table.add_column(column, justify="right")
    table.add_row(
        f"{s.meters_ok}/{s.meters}",
        f"{s.meter_reads:,}",
        f"{s.reads_per_s:,.1f}",
        f"{s.readings:,}",
        f"{s.errors:,}",
        f"{s.spool_depth:,}",
        f"{s.published:,}",
        "[green]connected[/green]" if s.connected else "[red]disconnected[/red]",
    )
    return table


def _project_broker() -> BrokerEndpoint:
    """The project's broker (AMR_MQTT_URL or the local one) as account `collector`."""
    from amr.broker.mosquitto import broker_endpoint
    from amr.credentials import read_or_create_credentials

    s = settings()
    return broker_endpoint(s, read_or_create_credentials(s.credentials_file), "collector")


def collect(
    config: Path = typer.Option(..., "--config", "-c", help="collector config file (TOML)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no live status line (for services and logs)"),
    metrics_port: int | None = typer.Option(None, help="serve Prometheus metrics on 127.0.0.1:PORT/metrics"),
) -> None:
    """Poll Modbus buses and DLMS meters, bridge DCU uplinks, and publish normalized readings (Ctrl-C stops)."""
    from rich.live import Live

    from collectors.config import read_collector_config
    from collectors.runner import resolve_endpoint, run_collector

    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = read_collector_config(config)
    endpoint = resolve_endpoint(cfg, _project_broker)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    if quiet:
        final = run_collector(cfg, stop, endpoint=endpoint, metrics_port=metrics_port)
    else:
        with Live(console=console, refresh_per_second=2, transient=False) as live:
            final = run_collector(
                cfg, stop, endpoint=endpoint, metrics_port=metrics_port, on_tick=lambda s: live.update(_status_table(s))
            )
    console.print(_status_table(final))
    if final.spool_depth:
        console.print(f"{final.spool_depth} messages stay in the spool and are sent at the next start")
