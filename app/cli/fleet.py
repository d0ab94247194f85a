"""`amr fleet`: the generated meter registry of Hanoi and Ho Chi Minh City (fleet)."""

from __future__ import annotations

import time
from datetime import date, datetime
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from amr.db.roles import Role
from amr.errors import AmrError
from amr.rollout_figures import COMPLETION_DATE, PUBLISHED
from app.cli.context import console, database
from fleet.calibration import CALIBRATION_DATE, CITIES, DEFAULT_SEED, HORIZON, MAX_SCALE

if TYPE_CHECKING:
    from fleet.counts import Coverage, FleetCounts

app = typer.Typer(
    help="Fleet generator: the meter registry of Hanoi (HN) and HCMC (HCM) per power company, calibrated on "
    "the published rollout (Sep 2017, target 1 Jan 2018, May 2023).",
    no_args_is_help=True,
)

_SCALE = typer.Option(1.0, min=1e-6, max=MAX_SCALE, help="1.0 = real size (about 5.5 M meters); tests use 0.001-0.01")
_SEED = typer.Option(DEFAULT_SEED, help="random seed: the same seed and scale give the same fleet")
_DATE_FORMATS = ["%Y-%m-%d"]


def _today() -> date:
    """Today, clamped to the registry's horizon (the generated fleet ends there)."""
    return min(date.today(), HORIZON)


def _pct(share: float | None) -> str:
    return "-" if share is None else f"{share * 100:.4g} %"


def _coverage_table(title: str, rows: list[tuple[str, date, Coverage]]) -> Table:
    table = Table(title=title, caption="published: electronic / remote share of customers (rollout reference)")
    for name in ("city", "as of", "customers", "electronic", "el. share", "remote", "rem. share", "published"):
        table.add_column(name, justify="left" if name in ("city", "as of") else "right", no_wrap=True)
    for city, as_of, cov in rows:
        ref = next((p for p in PUBLISHED if p.city == city and p.as_of == as_of), None)
        published = "" if ref is None else f"{_pct(ref.electronic_share)} / {_pct(ref.remote_share)}"
        table.add_row(
            city,
            as_of.isoformat(),
            f"{cov.customers:,}",
            f"{cov.electronic:,}",
            f"{cov.electronic_share:.2%}",
            f"{cov.remote:,}",
            f"{cov.remote_share:.2%}",
            published,
        )
    return table


def _summary_rows(counts: list[FleetCounts]) -> list[tuple[str, date, Coverage]]:
    return [(city, c.as_of, c.cities[city]) for city in CITIES for c in counts]


@app.command()
def generate(
    scale: float = _SCALE,
    seed: int = _SEED,
    replace: bool = typer.Option(False, "--replace", help="replace the generated fleet already in the database"),
) -> None:
    """Generate the registry and write it into the meters table (one transaction, binary COPY)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from fleet.counts import count_rollout
    from fleet.registry import build_fleet
    from fleet.store import fetch_active_run, write_fleet

    conninfo = database().conninfo(Role.OWNER)
    active = fetch_active_run(conninfo)
    if active and not replace:  # refuse before spending time on generation (write_fleet checks again)
        raise AmrError(
            f"a generated fleet is in the meters table (run {active[0]}, {active[1]:,} meters): "
            "pass --replace to replace it"
        )
    started = time.perf_counter()
    with console.status(f"generating the registry (scale {scale:g}, seed {seed})"):
        fleet = build_fleet(scale=scale, seed=seed)
    built_s = time.perf_counter() - started
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("COPY meters", total=len(fleet))
        run = write_fleet(conninfo, fleet, replace=replace, progress=lambda rows: progress.advance(task, rows))
    total_s = time.perf_counter() - started
    counts = [count_rollout(fleet.rollout, d) for d in (CALIBRATION_DATE, COMPLETION_DATE, _today())]
    console.print(
        _coverage_table(f"generated fleet (run {run.run_id}, scale {scale:g}, seed {seed})", _summary_rows(counts))
    )
    replaced = f", replaced {run.replaced_meters:,}" if run.replaced_meters else ""
    console.print(
        f"wrote {run.meters:,} meters (ids {run.first_meter_id}..{run.last_meter_id}{replaced}) in {total_s:.1f} s "
        f"(generate {built_s:.1f} s, write {run.elapsed_s:.1f} s: "
        + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in run.phases.items())
        + f"); registry as of {HORIZON}"
    )


@app.command()
def counts(
    as_of: datetime = typer.Option(CALIBRATION_DATE.isoformat(), formats=_DATE_FORMATS, help="date to count on"),
    scale: float = _SCALE,
    seed: int = _SEED,
    by_company: bool = typer.Option(False, "--by-company", help="one row per power company"),
) -> None:
    """Coverage the generator gives for a scale and seed on a date, computed without a database."""
    from fleet.counts import count_fleet

    result = count_fleet(as_of.date(), scale=scale, seed=seed)
    if not by_company:
        console.print(_coverage_table(f"fleet counts (scale {scale:g}, seed {seed})", _summary_rows([result])))
        return
    table = Table(title=f"fleet counts per power company on {as_of.date()} (scale {scale:g}, seed {seed})")
    for name in ("company", "customers", "electronic", "share", "remote", "share"):
        table.add_column(name, justify="left" if name == "company" else "right")
    for code, cov in result.companies.items():
        table.add_row(
            code,
            f"{cov.customers:,}",
            f"{cov.electronic:,}",
            f"{cov.electronic_share:.1%}",
            f"{cov.remote:,}",
            f"{cov.remote_share:.1%}",
        )
    console.print(table)


@app.command()
def status(
    as_of: datetime = typer.Option(None, formats=_DATE_FORMATS, help="date to count on (default: today)"),
) -> None:
    """Coverage per city in the database's meters table on a date."""
    from fleet.store import fetch_coverage

    day = as_of.date() if as_of else date.today()
    coverage = fetch_coverage(database().conninfo(Role.READER), day)
    console.print(_coverage_table("meters table", [(c, day, coverage[c]) for c in CITIES if c in coverage]))
