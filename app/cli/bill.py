"""`amr bill`: VEE and billing runs for a period (validated consumption, EVN tariffs, exports, exceptions)."""

from __future__ import annotations

import difflib
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from amr.errors import ConfigError, ServiceError
from app.cli.context import console, database, settings

app = typer.Typer(help="Billing: validate, estimate and bill a period's readings on EVN tariffs.", no_args_is_help=True)

_PERIOD = typer.Option(..., "--period", help="billing month YYYY-MM (cycles end on each customer's read day)")
_CITY = typer.Option(None, "--city", help="HN or HCM")
_COMPANY = typer.Option(None, "--power-company", help="power company code, e.g. PE0100")
_RULES = typer.Option(None, "--rules", help="VEE rules TOML (default: billing/vee_rules.toml)")
_WORKERS = typer.Option(1, "--workers", min=1, help="processes for the meter-id partitions")
_DASK = typer.Option(
    None,
    "--dask-scheduler",
    envvar="AMR_DASK_SCHEDULER",
    help="run the partitions on a Dask cluster: tcp://host:8786, or 'local' (a LocalCluster)",
)
_READ_DAY = typer.Option(
    None,
    "--read-day",
    min=1,
    max=31,
    help="only customers read on this day (bill each read-day batch once its reads are in)",
)


EXIT_HELD = 3  # the run is recorded and its files written, but not released: review, then --override-hold
EXIT_EMPTY = 4  # the filters select no customer: an 'empty' run is recorded, nothing billed, no files written
_MAX_SUGGESTIONS = 3


def _code_ranges(companies: dict[str, str]) -> str:
    """'30 in HN (PD0100 .. PD3000), 15 in HCM (PE0100 .. PE1600)': the registry's codes, short."""
    parts = []
    for city in sorted(set(companies.values())):
        codes = sorted(code for code, c in companies.items() if c == city)
        parts.append(f"{len(codes)} in {city} ({codes[0]} .. {codes[-1]})")
    return ", ".join(parts)


def check_filters(conninfo: str, *, city: str | None, power_company: str | None) -> None:
    """Refuse a city or power company the registry does not know, before any run is recorded (a wrong filter is a
    typing mistake to fix, not an empty run); ConfigError names the option."""
    import psycopg

    if city is None and power_company is None:
        return
    try:
        with psycopg.connect(conninfo) as conn:
            companies: dict[str, str] = dict(conn.execute("SELECT code, city FROM power_companies").fetchall())
    except psycopg.OperationalError as exc:
        raise ServiceError(f"database not reachable: {exc}") from exc
    cities = sorted(set(companies.values()))
    if city is not None and city not in cities:
        raise ConfigError(f"unknown city {city!r}; known: {', '.join(cities)}", source="--city")
    if power_company is not None:
        if power_company not in companies:
            close = difflib.get_close_matches(power_company, companies, n=_MAX_SUGGESTIONS)
            hint = f"did you mean {' or '.join(close)}?" if close else f"known: {_code_ranges(companies)}"
            raise ConfigError(
                f"unknown power company {power_company!r} (not in power_companies); {hint}", source="--power-company"
            )
        if city is not None and companies[power_company] != city:
            raise ConfigError(
                f"power company {power_company} serves {companies[power_company]}, not {city}", source="--power-company"
            )


def _execute(
    kind: str,
    period: str,
    city: str | None,
    power_company: str | None,
    read_day: int | None,
    out: Path | None,
    override_hold: bool,
    rules: Path | None,
    workers: int,
    dask_scheduler: str | None = None,
    source: str = "readings",
) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from amr.db.roles import Role
    from billing.cycles import BillingPeriod
    from billing.metrics import TEXTFILE_NAME
    from billing.run import run_period, summary_items

    billing_period = BillingPeriod.parse(period)  # the one parse: a wrong --period is refused before anything runs
    conninfo = database().conninfo(Role.BILLING)
    check_filters(conninfo, city=city, power_company=power_company)
    period = billing_period.label
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
    ) as progress:
        task = progress.add_task(f"{kind} {period}: meters", total=None)

        def on_progress(done: int, total: int, stage: str) -> None:
            progress.update(task, completed=done, total=total, description=f"{kind} {period}: {stage}")

        summary = run_period(
            conninfo,
            period=billing_period,
            kind=kind,
            city=city,
            power_company=power_company,
            read_day=read_day,
            out_dir=out,
            override_hold=override_hold,
            rules_file=rules,
            workers=workers,
            dask_scheduler=dask_scheduler,
            source=source,
            on_progress=on_progress,
            metrics_file=settings().state_dir / "metrics" / TEXTFILE_NAME,  # node_exporter's textfile collector
        )
    if summary.status == "empty":
        console.print(
            f"[yellow]EMPTY:[/yellow] run {summary.run_id}: no customer matches these filters for "
            f"period {period}; nothing {'billed' if kind == 'bill' else 'validated'}, no files written."
        )
        raise typer.Exit(EXIT_EMPTY)
    table = Table(title=f"{kind} run {summary.run_id}, period {period}", show_header=False)
    for key, value in summary_items(summary).items():
        text = f"{value:,}" if isinstance(value, int) and not key.startswith("run") else str(value)
        table.add_row(escape(key), escape(text))
    console.print(table)
    for path in summary.files:
        console.print(f"[dim]wrote {path}[/dim]")
    if summary.final_days:
        console.print(
            f"{summary.final_days:,} estimated day(s) of {summary.final_bills:,} bill(s) made final (quality F, reason"
            " 'billed'): a later version of them is a correction (amr bill corrections)."
        )
    if summary.held:
        console.print(
            f"[yellow]{summary.held:,} customer(s) held[/yellow]: their cycle is not bill-ready (bills status 'held',"
            " reasons in hold_reasons); they are billed by a later run once their days are validated."
        )
    if summary.status == "held":
        console.print(
            f"[red]HELD:[/red] {summary.hold_reason}. Review the exceptions, then re-run with "
            "--override-hold to release."
        )
        raise typer.Exit(EXIT_HELD)


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
    source: str = typer.Option(
        "continuous",
        "--source",
        help="continuous: from the VEE service's validated days, customers not bill-ready held; readings: VEE run "
        "on the month's raw readings",
    ),
) -> None:
    """Bills for a period: billing_runs record, bills, CSV / Parquet / Excel exports; exit 3 when held, 4 when no
    customer matches the filters (an 'empty' run, no files), 2 on an unknown city / power company or source."""
    _execute(
        "bill",
        period,
        city,
        power_company,
        read_day,
        out or settings().state_dir / "exports",
        override_hold,
        rules,
        workers,
        dask_scheduler,
        source,
    )


@app.command("corrections")
def corrections(
    period: str = _PERIOD,
    do_rebill: bool = typer.Option(False, "--rebill", help="bill the differences: a cancel-and-rebill run"),
    by: str | None = typer.Option(None, "--by", help="operator name for the audit trail (default: the login name)"),
    limit: int = typer.Option(50, "--limit", min=1, help="rows shown"),
) -> None:
    """Released bills of the period whose validated data changed since (late reads, edits), with the difference
    in kWh and VND; --rebill issues the cancel-and-rebill pairs."""
    import getpass

    from amr.db.roles import Role
    from billing.corrections import NoReleasedRun, find_corrections, rebill
    from billing.cycles import BillingPeriod

    billing_period = BillingPeriod.parse(period)
    conninfo = database().conninfo(Role.BILLING)
    try:
        report = find_corrections(conninfo, period=billing_period)
    except NoReleasedRun as exc:
        raise ConfigError(str(exc), source="--period") from None
    changes = report.changes
    table = Table(title=f"corrections to run {report.run_id} ({period}): {len(changes):,} of {report.bills:,} bills")
    for col in ("serial", "power company", "billed kWh", "now kWh", "diff kWh", "billed VND", "now VND", "diff VND"):
        table.add_column(col, justify="left" if col in ("serial", "power company") else "right")
    for c in changes.head(limit).to_dict("records"):
        table.add_row(str(c["serial"]), str(c["power_company"]), f"{c['billed_kwh']:,}", f"{c['new_kwh']:,}",
                      f"{c['diff_kwh']:+,}", f"{c['billed_total_vnd']:,}", f"{c['new_total_vnd']:,}",
                      f"{c['diff_total_vnd']:+,}")  # fmt: skip
    console.print(table)
    if len(changes):
        console.print(f"in all: {int(changes['diff_kwh'].sum()):+,} kWh, {int(changes['diff_total_vnd'].sum()):+,} VND")
    if do_rebill and len(changes):
        run_id = rebill(conninfo, period=billing_period, operator=by or getpass.getuser())
        console.print(f"rebill run {run_id}: {len(changes):,} cancel-and-rebill pairs, released")


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
    """Validation and estimation only: daily_consumption and vee_exceptions for the period's cycles; exit codes
    as `bill run` (4: no customer matches the filters)."""
    _execute("vee", period, city, power_company, read_day, None, False, rules, workers, dask_scheduler)
