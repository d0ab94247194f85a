"""`amr bill`: VEE and billing runs for a period (validated consumption, EVN tariffs, exports, exceptions)."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from amr.cli.context import console, database, settings

app = typer.Typer(help="Billing: validate, estimate and bill a period's readings on EVN tariffs.",
                  no_args_is_help=True)

_PERIOD = typer.Option(..., "--period", help="billing month YYYY-MM (cycles end on each customer's read day)")
_CITY = typer.Option(None, "--city", help="HN or HCM")
_COMPANY = typer.Option(None, "--power-company", help="power company code, e.g. PE0100")
_RULES = typer.Option(None, "--rules", help="VEE rules TOML (default: billing/vee_rules.toml)")
_WORKERS = typer.Option(1, "--workers", min=1, help="processes for the meter-id partitions")
_DASK = typer.Option(None, "--dask-scheduler", envvar="AMR_DASK_SCHEDULER",
                     help="run the partitions on a Dask cluster: tcp://host:8786, or 'local' (a LocalCluster)")
_READ_DAY = typer.Option(None, "--read-day", min=1, max=31,
                         help="only customers read on this day (bill each read-day batch once its reads are in)")


def _execute(kind: str, period: str, city: str | None, power_company: str | None, read_day: int | None,
             out: Path | None, override_hold: bool, rules: Path | None, workers: int,
             dask_scheduler: str | None = None) -> None:
    from billing.run import run_period, summary_items

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task(f"{kind} {period}: meters", total=None)

        def on_progress(done: int, total: int, stage: str) -> None:
            progress.update(task, completed=done, total=total, description=f"{kind} {period}: {stage}")

        summary = run_period(database(), period=period, kind=kind, city=city, power_company=power_company,
                             read_day=read_day, out_dir=out, override_hold=override_hold, rules_file=rules,
                             workers=workers, dask_scheduler=dask_scheduler, on_progress=on_progress)
    table = Table(title=f"{kind} run {summary.run_id}, period {period}", show_header=False)
    for key, value in summary_items(summary).items():
        text = f"{value:,}" if isinstance(value, int) and not key.startswith("run") else str(value)
        table.add_row(escape(key), escape(text))
    console.print(table)
    for path in summary.files:
        console.print(f"[dim]wrote {path}[/dim]")
    if summary.status == "held":
        console.print(f"[red]HELD:[/red] {summary.hold_reason}. Review the exceptions, then re-run with "
                      "--override-hold to release.")
        raise typer.Exit(3)


@app.command("run")
def run(
    period: str = _PERIOD,
    city: str | None = _CITY,
    power_company: str | None = _COMPANY,
    read_day: int | None = _READ_DAY,
    out: Path | None = typer.Option(None, "--out", help="export directory (default: <state_dir>/exports)"),
    override_hold: bool = typer.Option(False, "--override-hold", help="release even when a quality check fails"),
    rules: Path | None = _RULES,
    workers: int = _WORKERS,
    dask_scheduler: str | None = _DASK,
) -> None:
    """VEE + bills for a period: billing_runs record, bills, CSV / Parquet / Excel exports; exit 3 when held."""
    _execute("bill", period, city, power_company, read_day, out or settings().state_dir / "exports", override_hold,
             rules, workers, dask_scheduler)


@app.command("vee")
def vee(
    period: str = _PERIOD,
    city: str | None = _CITY,
    power_company: str | None = _COMPANY,
    read_day: int | None = _READ_DAY,
    rules: Path | None = _RULES,
    workers: int = _WORKERS,
    dask_scheduler: str | None = _DASK,
) -> None:
    """Validation and estimation only: daily_consumption and vee_exceptions for the period's cycles."""
    _execute("vee", period, city, power_company, read_day, None, False, rules, workers, dask_scheduler)
