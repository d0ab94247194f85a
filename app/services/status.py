"""`amr status`: the supervisor's state file joined with what the services report about themselves (ingest's
status files in ``<state dir>/ingest/``, the collectors' heartbeats that ingest stores in ``collector_status``)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.services.plan import INGEST_STATUS_DIR
from app.services.supervisor import read_state, supervisor_pid

# A collector heartbeat older than this is not shown as current throughput (collectors beat every 10 s by default).
COLLECTOR_STATUS_MAX_AGE_S = 60.0
METRICS_HOST = "127.0.0.1"  # ingest and collectors bind their endpoints to loopback only
DB_TIMEOUT_S = 2  # `amr status` must answer quickly even when the database does not


@dataclass(frozen=True, kw_only=True)
class ServiceRow:
    name: str
    state: str
    pid: int | None
    uptime_s: float | None
    restarts: int | None  # None: not a process the supervisor runs (external, the VEE slot)
    last_exit: str
    throughput: str
    lag: str
    metrics: str  # its Prometheus endpoint's URL, or ""


@dataclass(frozen=True, kw_only=True)
class Report:
    supervisor_pid: int | None
    rows: list[ServiceRow]


def _ingest_figures(state_dir: Path) -> dict[str, dict[str, Any]]:
    from ingest.metrics import read_status_files

    directory = state_dir / INGEST_STATUS_DIR
    if not directory.is_dir():
        return {}
    # `amr ingest` run by hand writes here; each worker `amr up` runs, in a folder of its own (plan.ingest_status_dir)
    folders = [directory, *sorted(p for p in directory.iterdir() if p.is_dir())]
    return {str(s.get("worker")): s for folder in folders for s in read_status_files(folder)}


def _collector_figures(conninfo: str | None, ids: list[str]) -> dict[str, dict[str, Any]]:
    if not ids or conninfo is None:
        return {}
    import psycopg

    try:
        with psycopg.connect(conninfo, connect_timeout=DB_TIMEOUT_S) as conn:
            rows = conn.execute(
                "SELECT source, state, extract(epoch FROM now() - updated_at), spool_depth, reads_per_s"
                " FROM collector_status WHERE source = ANY(%s)",
                (ids,),
            ).fetchall()
    except psycopg.Error:
        return {}  # no figures, the rest of the table still answers
    return {r[0]: {"state": r[1], "age_s": float(r[2]), "spool_depth": r[3], "reads_per_s": r[4]} for r in rows}


def _vee_figures(conninfo: str | None) -> dict[str, Any]:
    """The VEE service's last pass (vee_state) and its backlog (vee_pending)."""
    if conninfo is None:
        return {}
    import psycopg

    try:
        with psycopg.connect(conninfo, connect_timeout=DB_TIMEOUT_S) as conn:
            row = conn.execute(
                "SELECT (SELECT extract(epoch FROM now() - max(last_pass_at)) FROM vee_state),"
                " (SELECT sum(units) FROM vee_state), (SELECT count(*) FROM vee_pending)"
            ).fetchone()
    except psycopg.Error:
        return {}
    if row is None:
        return {}
    return {"age_s": None if row[0] is None else float(row[0]), "units": int(row[1] or 0), "pending": int(row[2])}


def collect_report(state_dir: Path, *, reader_conninfo: str | None) -> Report:
    """The rows of `amr status`; services of a state file left by a dead supervisor show as 'stopped'."""
    pid = supervisor_pid(state_dir)
    document = read_state(state_dir) or {}
    services: dict[str, dict[str, Any]] = document.get("services", {}) if pid is not None else {}
    external: dict[str, str] = document.get("external", {})
    now = time.time()
    ingest = _ingest_figures(state_dir)
    collectors = _collector_figures(
        reader_conninfo, [s["status_key"] for s in services.values() if s.get("kind") == "collector"]
    )
    vee = _vee_figures(reader_conninfo) if any(s.get("kind") == "vee" for s in services.values()) else {}
    rows: list[ServiceRow] = []
    for name, where in external.items():
        rows.append(_row(name, state=f"external ({where})"))
    for name, s in services.items():
        throughput, lag = "", ""
        if s.get("kind") == "ingest" and s.get("status_key") in ingest:
            figures = ingest[s["status_key"]]
            throughput = f"{float(figures.get('rows_per_s', 0)):,.0f} rows/s"
            lag = f"{float(figures.get('lag_s', 0)):.2f} s"
        elif s.get("kind") == "collector" and s.get("status_key") in collectors:
            figures = collectors[s["status_key"]]
            if figures["age_s"] <= COLLECTOR_STATUS_MAX_AGE_S and figures["reads_per_s"] is not None:
                throughput = f"{figures['reads_per_s']:,.1f} reads/s"
            if figures["spool_depth"] is not None:
                lag = f"spool {figures['spool_depth']:,}"
        elif s.get("kind") == "vee" and vee:
            throughput = f"{vee['units']:,} units validated"
            age = "no pass yet" if vee["age_s"] is None else f"last pass {vee['age_s']:.0f} s ago"
            lag = f"{vee['pending']:,} pending, {age}"
        state = str(s.get("state", "?"))
        if state == "backoff" and s.get("next_start_at"):
            state = f"backoff ({max(float(s['next_start_at']) - now, 0):.0f} s)"
        started = s.get("started_at")
        port = s.get("metrics_port")
        rows.append(
            ServiceRow(
                name=name,
                state=state,
                pid=s.get("pid"),
                uptime_s=now - float(started) if started and s.get("pid") else None,
                restarts=int(s.get("restarts", 0)),
                last_exit=str(s.get("last_exit") or ""),
                throughput=throughput,
                lag=lag,
                metrics=f"http://{METRICS_HOST}:{port}/metrics" if port else "",
            )
        )
    return Report(supervisor_pid=pid, rows=rows)


def _row(name: str, *, state: str) -> ServiceRow:
    return ServiceRow(
        name=name, state=state, pid=None, uptime_s=None, restarts=None, last_exit="", throughput="", lag="", metrics=""
    )


def format_uptime(seconds: float | None) -> str:
    if seconds is None:
        return ""
    s = int(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    if s < 86_400:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    return f"{s // 86_400} d {s % 86_400 // 3600:02d} h"
