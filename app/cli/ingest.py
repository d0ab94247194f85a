"""`amr ingest`: consume readings, events, DCU uplinks and status messages from MQTT into TimescaleDB."""

from __future__ import annotations

from pathlib import Path

import typer

from amr.db.roles import Role
from amr.errors import ConfigError
from app.cli.context import console, database, settings
from ingest import limits
from ingest.strategy import Strategy


def ingest(
    workers: int = typer.Option(1, "--workers", "-w", min=1, max=64, help="worker processes on this machine"),
    name: str = typer.Option("", help="client id prefix (default ingest-<hostname>); keep it stable"),
    status_dir: Path | None = typer.Option(None, help="JSON status files (default <state dir>/ingest)"),
    metrics_port: int | None = typer.Option(None, help="serve Prometheus text on 127.0.0.1:PORT/metrics"),
    live: bool = typer.Option(True, help="show the live status line"),
    batch_rows: int = typer.Option(limits.BATCH_MAX_ROWS, min=1, help="rows per COPY batch"),
    batch_age_s: float = typer.Option(limits.BATCH_MAX_AGE_S, min=0.01, help="commit a batch after this long"),
    strategy: Strategy = typer.Option(Strategy.SAVEPOINT, help="write path (raw is NOT idempotent)"),
) -> None:
    """Run ingest workers until Ctrl-C: shared subscription, ack after commit, dead letters for bad payloads."""
    from amr.broker.mosquitto import broker_endpoint
    from amr.credentials import read_or_create_credentials
    from ingest.supervisor import default_name, run, worker_configs
    from ingest.worker import WorkerConfig

    s = settings()
    if strategy is Strategy.RAW:
        raise ConfigError("the raw write path is for benchmarks only: duplicates would fail whole batches",
                          source="--strategy")  # fmt: skip
    base = WorkerConfig(
        broker=broker_endpoint(s, read_or_create_credentials(s.credentials_file), "ingest"),
        conninfo=database().conninfo(Role.INGEST),
        client_id="unset",
        status_dir=status_dir or s.state_dir / "ingest",
        batch_max_rows=batch_rows,
        batch_max_age_s=batch_age_s,
        strategy=strategy,
    )
    configs = worker_configs(base, name=name or default_name(), workers=workers)
    console.print(f"ingest: {workers} worker(s) -> {base.broker.as_url()}, status files in {base.status_dir}")
    run(configs, console=console, live=live, metrics_port=metrics_port)
