"""`amr up` / `amr down` / `amr status`: the platform's long-running parts under one supervisor (app/services)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape
from rich.table import Table

from amr.errors import ServiceError
from app.cli.context import console, err_console, settings

if TYPE_CHECKING:
    from app.services.status import Report

UP_WAIT_S = 120.0  # the local database's first start (initdb, migrations) takes most of this
DOWN_WAIT_S = 120.0  # the supervisor's own stop timeout per child (30 s) plus the database's shutdown
POLL_S = 0.25
EXIT_WAIT_S = 10.0  # after the supervisor released its lock: its interpreter's exit


def up(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="services file (default $AMR_SERVICES_CONFIG or ./amr-services.toml)"
    ),
    foreground: bool = typer.Option(False, "--foreground", help="run the supervisor here until Ctrl-C / SIGTERM"),
    wait_s: float = typer.Option(UP_WAIT_S, "--wait", min=0.0, help="seconds to wait for every service to run"),
    daemonized: bool = typer.Option(False, "--daemonized", hidden=True),
) -> None:
    """Start the database and broker (unless external), ingest workers, collectors, the aggregate refresh and the
    dashboards under a supervisor that restarts what dies; logs in <state dir>/logs/."""
    from app.services.config import read_services_config, services_file
    from app.services.plan import make_plan
    from app.services.supervisor import Supervisor, logs_dir, supervisor_pid

    s = settings()
    path = services_file(config)
    services = read_services_config(path)
    plan = make_plan(s, services)  # every config is checked here, before anything starts
    running = supervisor_pid(s.state_dir)
    if running is not None:
        raise ServiceError(f"a supervisor already runs on {s.state_dir} (pid {running}): `amr status`, `amr down`")
    if foreground:
        Supervisor(
            state_dir=s.state_dir,
            children=plan.children,
            daemons=plan.daemons,
            restart=services.restart,
            logs=services.logs,
            external=plan.external,
            echo=None if daemonized else (lambda text: console.print(escape(text))),
        ).run()
        return
    logs = logs_dir(s.state_dir)
    logs.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "app", "up", "--foreground", "--daemonized"]
    if path is not None:
        argv += ["--config", str(path.resolve())]
    env = dict(os.environ) | {"AMR_STATE_DIR": str(s.state_dir)}
    with open(logs / "supervisor.out", "ab") as out:  # tracebacks of the supervisor itself, if any
        proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    names = [c.name for c in plan.children] + [d.name for d in plan.daemons]
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (logs / "supervisor.out").read_text(errors="replace")[-2000:]
            raise ServiceError(f"the supervisor exited ({proc.returncode}):\n{tail}")
        if _all_running(s.state_dir, names):
            break
        time.sleep(POLL_S)
    else:
        err_console.print(f"[yellow]not every service runs after {wait_s:.0f} s; see {logs}[/yellow]")
    console.print(f"supervisor pid {proc.pid}; logs in {logs}")
    _print_status(s.state_dir)


def _all_running(state_dir: Path, names: list[str]) -> bool:
    from app.services.supervisor import read_state

    document = read_state(state_dir) or {}
    services = document.get("services", {})
    return all(services.get(n, {}).get("state") == "running" for n in names)


def down(
    wait_s: float = typer.Option(DOWN_WAIT_S, "--wait", min=1.0, help="seconds to wait for a clean stop"),
) -> None:
    """Stop the supervisor and everything it runs (SIGTERM, then SIGKILL after the stop timeout)."""
    from app.services.supervisor import read_state, supervisor_pid

    state_dir = settings().state_dir
    pid = supervisor_pid(state_dir)
    if pid is not None and pid > 0:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + wait_s
        while supervisor_pid(state_dir) is not None and time.monotonic() < deadline:
            time.sleep(POLL_S)
        if supervisor_pid(state_dir) is not None:
            err_console.print(f"[yellow]the supervisor (pid {pid}) did not stop in {wait_s:.0f} s: SIGKILL[/yellow]")
            os.kill(pid, signal.SIGKILL)
        # It lets go of its lock a moment before its interpreter has exited: done when the process is gone too.
        while _is_running(pid) and time.monotonic() < deadline + EXIT_WAIT_S:
            time.sleep(POLL_S)
    # Children a dead supervisor left behind (killed with -9, or just now): their groups, by the state file.
    left = _kill_leftovers((read_state(state_dir) or {}).get("services", {}))
    if pid is None and not left:
        console.print("nothing runs")
        return
    console.print("stopped" + (f" (and {left} process(es) a dead supervisor left)" if left else ""))


def _kill_leftovers(services: dict[str, dict[str, object]]) -> int:
    count = 0
    for entry in services.values():
        pid = entry.get("pid")
        if not isinstance(pid, int) or entry.get("kind") == "daemon" or not _is_our_child(pid):
            continue
        count += 1
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _is_our_child(pid) and time.monotonic() < deadline:
            time.sleep(POLL_S)
        if _is_our_child(pid):
            os.killpg(pid, signal.SIGKILL)
    return count


def _is_running(pid: int) -> bool:
    """Whether `pid` exists and is not a zombie (a container's init may never reap the daemonized supervisor)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _is_our_child(pid: int) -> bool:
    """Whether `pid` still is a `python -m app ...` process (pids are reused)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z" and b"-m" in argv and b"app" in argv


def status(
    as_json: bool = typer.Option(False, "--json", help="machine-readable: one object per service"),
) -> None:
    """Each service's state, pid, uptime, restarts, and its throughput and lag where it reports them."""
    if as_json:
        from dataclasses import asdict

        report = _report(settings().state_dir)
        typer.echo(json.dumps({"supervisor_pid": report.supervisor_pid, "services": [asdict(r) for r in report.rows]}))
        return
    _print_status(settings().state_dir)


def _report(state_dir: Path) -> Report:
    from amr.db.roles import Role
    from amr.errors import AmrError
    from app.cli.context import database
    from app.services.status import collect_report

    try:
        conninfo: str | None = database().conninfo(Role.READER)
    except AmrError:
        conninfo = None
    return collect_report(state_dir, reader_conninfo=conninfo)


def _print_status(state_dir: Path) -> None:
    from app.services.status import format_uptime

    report = _report(state_dir)
    title = f"services (supervisor pid {report.supervisor_pid})" if report.supervisor_pid else "services (not running)"
    table = Table(title=title)
    columns = ["service", "state", "pid", "uptime", "restarts", "last exit", "throughput", "lag"]
    with_metrics = any(row.metrics for row in report.rows)  # no empty column when no service serves metrics
    if with_metrics:
        columns.append("metrics")
    for column in columns:
        table.add_column(column, justify="right" if column in ("pid", "restarts") else "left")
    for row in report.rows:
        style = "green" if row.state == "running" else ("dim" if not row.pid else "yellow")
        cells = [
            row.name,
            f"[{style}]{escape(row.state)}[/{style}]",
            str(row.pid or ""),
            format_uptime(row.uptime_s),
            "" if row.restarts is None else str(row.restarts),
            escape(row.last_exit),
            row.throughput,
            row.lag,
        ]
        table.add_row(*cells, *([row.metrics] if with_metrics else []))
    console.print(table)
