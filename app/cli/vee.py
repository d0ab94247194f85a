"""`amr vee`: the continuous VEE service, one-shot passes, the exception review queue and editing (docs/vee.md)."""

from __future__ import annotations

import getpass
from datetime import date
from pathlib import Path

import typer
from rich.table import Table

from amr.db.roles import Role
from app.cli.context import console, database

app = typer.Typer(
    help="Continuous VEE: validate and estimate readings as they land, review exception episodes, edit days.",
)

_RULES = typer.Option(None, "--rules", help="VEE rules TOML (default: billing/vee_rules.toml)")
_ROLE = typer.Option("billing", "--role", help="database role to act as: billing (may edit) or reader (may not)")
_BY = typer.Option(None, "--by", help="operator name for the audit trail (default: the login name)")
_CHANNEL = typer.Option(1, "--channel", min=1, help="channel id (1 = 1.0.1.8.0 total import)")
_ROLES = {"billing": Role.BILLING, "reader": Role.READER}
_DASK = typer.Option(
    None,
    "--dask-scheduler",
    envvar="AMR_DASK_SCHEDULER",
    help="validate a pass's meter partitions on a Dask cluster: tcp://host:8786, or 'local' (a LocalCluster)",
)


def _conninfo(role: str = "billing") -> str:
    from amr.errors import ConfigError

    if role not in _ROLES:
        raise ConfigError(f"unknown role {role!r} (billing or reader)", source="--role")
    return database().conninfo(_ROLES[role])


def _pass_row(table: Table, s: object) -> None:
    from billing.continuous import PassSummary

    assert isinstance(s, PassSummary)
    table.add_row(
        f"{s.first_day} .. {s.last_day}",
        f"{s.units:,}",
        f"{s.meters:,}",
        f"{s.resumed:,}",
        f"{s.readings:,}",
        ", ".join(f"{k} {v:,}" for k, v in s.versions.items()) or "-",
        f"{s.episodes_opened:,} / {s.episodes_cleared:,}",
        f"{s.seconds.get('total', 0.0):.2f}",
    )


def _pass_table() -> Table:
    table = Table(title="VEE passes")
    for col in ("window", "units", "meters", "resumed", "readings", "new versions", "episodes opened / cleared", "s"):
        table.add_column(col, justify="left" if col in ("window", "new versions") else "right")
    return table


@app.callback(invoke_without_command=True)
def service(
    ctx: typer.Context,
    interval_s: float = typer.Option(5.0, "--interval-s", min=0.1, help="seconds between passes when idle"),
    rules: Path | None = _RULES,
    dask_scheduler: str | None = _DASK,
) -> None:
    """Without a command: run the VEE service until Ctrl-C (validates what ingest marked, every few seconds)."""
    if ctx.invoked_subcommand is not None:
        return
    import threading

    from billing.continuous import serve
    from billing.rules import read_vee_rules

    stop = threading.Event()
    conninfo = _conninfo()
    console.print(f"VEE service: a pass every {interval_s} s when idle; Ctrl-C stops it")

    def report(s: object) -> None:
        table = _pass_table()
        _pass_row(table, s)
        console.print(table)

    try:
        serve(conninfo, rules=read_vee_rules(rules), stop=stop, interval_s=interval_s, on_pass=report,
              on_error=lambda exc: console.print(f"[yellow]pass failed, retrying:[/yellow] {exc}"),
              dask_scheduler=dask_scheduler)  # fmt: skip
    except KeyboardInterrupt:
        stop.set()


@app.command("run")
def run(
    until: str | None = typer.Option(None, "--until", help="only units of local days up to this date (YYYY-MM-DD)"),
    rules: Path | None = _RULES,
    dask_scheduler: str | None = _DASK,
) -> None:
    """One-shot: pass until nothing is pending, then exit with a table of the passes."""
    from billing.continuous import drain
    from billing.rules import read_vee_rules

    until_day = _day(until, "--until") if until else None
    table = _pass_table()
    passes = drain(_conninfo(), rules=read_vee_rules(rules), until=until_day, on_pass=lambda s: _pass_row(table, s),
                   dask_scheduler=dask_scheduler)  # fmt: skip
    if passes:
        console.print(table)
    else:
        console.print("nothing pending")


def _day(text: str, option: str) -> date:
    from amr.errors import ConfigError

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ConfigError(f"{text!r} is not a date YYYY-MM-DD", source=option) from None


@app.command("exceptions")
def exceptions(
    status: str = typer.Option("open", "--status", help="open, acknowledged, resolved, auto_resolved or all"),
    rule: str | None = typer.Option(None, "--rule", help="rule code, e.g. CLOCK_INVALID"),
    power_company: str | None = typer.Option(None, "--power-company", help="power company code"),
    serial: str | None = typer.Option(None, "--serial", help="one meter"),
    limit: int = typer.Option(50, "--limit", min=1, max=100_000),
) -> None:
    """The review queue: exception episodes, newest first, with a count by rule."""
    from billing.review import list_episodes

    rows, by_rule = list_episodes(
        _conninfo("reader"), status=status, rule=rule, power_company=power_company, serial=serial, limit=limit
    )
    counts = Table(title=f"episodes ({status}) by rule")
    counts.add_column("rule")
    counts.add_column("episodes", justify="right")
    for r, n in by_rule:
        counts.add_row(r, f"{n:,}")
    console.print(counts)
    table = Table(title=f"the {min(limit, len(rows))} newest")
    for col in ("id", "meter", "company", "ch", "rule", "severity", "first", "last", "n", "values", "status", "note"):
        table.add_column(col)
    for e in rows:
        table.add_row(*[str(x) if x is not None else "" for x in e])
    console.print(table)


def _operator(by: str | None) -> str:
    return by or getpass.getuser()


@app.command("edit")
def edit(
    serial: str = typer.Argument(..., help="meter serial"),
    day: str = typer.Option(..., "--day", help="local day YYYY-MM-DD"),
    kwh: float = typer.Option(..., "--kwh", help="the day's energy [kWh], after the multiplier"),
    reason: str = typer.Option(..., "--reason", help="why (kept in the audit trail)"),
    channel: int = _CHANNEL,
    role: str = _ROLE,
    by: str | None = _BY,
) -> None:
    """Set a day's energy by hand: a new version (quality S, manual_edit), audited, kept by later passes."""
    import psycopg

    from billing.editing import DayRef, edit_day

    with psycopg.connect(_conninfo(role)) as conn:
        v = edit_day(conn, DayRef(serial=serial, day=_day(day, "--day"), channel_id=channel), kwh=kwh, reason=reason,
                     operator=_operator(by))  # fmt: skip
    console.print(f"{serial} {day} channel {channel}: version {v.version}, {v.kwh:,.3f} kWh ({v.quality}, {v.reason})")


def _day_action(action: str, serial: str, day: str, reason: str, channel: int, role: str, by: str | None) -> None:
    import psycopg

    from billing import editing

    ref = editing.DayRef(serial=serial, day=_day(day, "--day"), channel_id=channel)
    with psycopg.connect(_conninfo(role)) as conn:
        if action == "estimate_again":
            editing.estimate_again(conn, ref, reason=reason, operator=_operator(by))
            console.print(f"{serial} {day}: queued for the next pass")
            return
        fn = editing.accept_day if action == "accept" else editing.undo_day
        v = fn(conn, ref, reason=reason, operator=_operator(by))
    console.print(f"{serial} {day} channel {channel}: version {v.version}, {v.kwh:,.3f} kWh ({v.quality}, {v.reason})")


_REASON = typer.Option(..., "--reason", help="why (kept in the audit trail)")
_DAY = typer.Option(..., "--day", help="local day YYYY-MM-DD")


@app.command("accept")
def accept(serial: str, day: str = _DAY, reason: str = _REASON, channel: int = _CHANNEL, role: str = _ROLE,
           by: str | None = _BY) -> None:  # fmt: skip
    """Accept a day's values as they are (a new version later passes keep)."""
    _day_action("accept", serial, day, reason, channel, role, by)


@app.command("estimate-again")
def estimate_again(serial: str, day: str = _DAY, reason: str = _REASON, channel: int = _CHANNEL,
                   role: str = _ROLE, by: str | None = _BY) -> None:  # fmt: skip
    """Drop a day's manual edit or acceptance and let the next pass estimate it again."""
    _day_action("estimate_again", serial, day, reason, channel, role, by)


@app.command("undo")
def undo(serial: str, day: str = _DAY, reason: str = _REASON, channel: int = _CHANNEL, role: str = _ROLE,
         by: str | None = _BY) -> None:  # fmt: skip
    """Restore the version before the current one (as a new version: history is kept)."""
    _day_action("undo", serial, day, reason, channel, role, by)


def _review(status: str, episode_id: int, note: str, role: str, by: str | None) -> None:
    import psycopg

    from billing.editing import review_episode

    with psycopg.connect(_conninfo(role)) as conn:
        review_episode(conn, episode_id, status=status, note=note, operator=_operator(by))
    console.print(f"episode {episode_id}: {status}")


_NOTE = typer.Option(..., "--note", help="what was found or done")


@app.command("ack")
def ack(episode_id: int, note: str = _NOTE, role: str = _ROLE, by: str | None = _BY) -> None:
    """Acknowledge an episode: seen and being handled (it still grows with new occurrences)."""
    _review("acknowledged", episode_id, note, role, by)


@app.command("resolve")
def resolve(episode_id: int, note: str = _NOTE, role: str = _ROLE, by: str | None = _BY) -> None:
    """Resolve an episode with a note."""
    _review("resolved", episode_id, note, role, by)
