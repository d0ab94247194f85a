"""`amr ingest`: N workers (processes; one worker runs in-process), a live status line and optional Prometheus.

Each worker has a stable client id ``<name>-<index>`` so a restarted worker resumes its persistent session.
A worker process that dies is restarted by the supervisor after a short pause, and the thread of an in-process
worker that dies is started again; either way the broker delivers its unacknowledged messages again.
"""

from __future__ import annotations

import multiprocessing as mp
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import start_http_server
from rich.console import Console
from rich.live import Live
from rich.text import Text

from ingest.metrics import aggregate, metrics_registry, read_status_files
from ingest.worker import Worker, WorkerConfig, run_worker

RESTART_DELAY_S = 1.0
LIVE_REFRESH_S = 1.0


def default_name() -> str:
    return f"ingest-{socket.gethostname()}"


def worker_configs(base: WorkerConfig, *, name: str, workers: int) -> list[WorkerConfig]:
    return [replace(base, client_id=f"{name}-{i}") for i in range(workers)]


def status_line(status_dir: Path) -> Text:
    t = aggregate(read_status_files(status_dir))
    line = Text()
    line.append(f"ingest: {int(t['workers'])} worker(s)  ", style="bold")
    line.append(f"{t['messages_per_s']:>9,.0f} msg/s  {t['rows_per_s']:>11,.0f} rows/s  ")
    line.append(f"lag {t['lag_s']:6.2f} s  ")
    line.append(f"rows {int(t['rows']):,}  dup {int(t['duplicates']):,}  ")
    line.append(f"dead letters {int(t['dead_letters']):,}", style="red" if t["dead_letters"] else "")
    if t["db_errors"]:
        line.append(f"  db errors {int(t['db_errors']):,}", style="yellow")
    return line


METRICS_ADDR = "127.0.0.1"  # loopback: expose it further through a reverse proxy or the scraper's host only


def serve_metrics(port: int, status_dir: Path) -> WSGIServer:
    """Serve the workers' metrics (ingest.metrics.StatusFileCollector) as Prometheus text on 127.0.0.1:`port`
    (any path, /metrics by convention); returns the server (`.shutdown()` stops it)."""
    server, _thread = start_http_server(port, addr=METRICS_ADDR, registry=metrics_registry(status_dir))
    return server


def run(configs: list[WorkerConfig], *, console: Console, live: bool = True, metrics_port: int | None = None) -> None:
    """Run until SIGINT/SIGTERM; one worker in this process, several as child processes."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    status_dir = configs[0].status_dir
    status_dir.mkdir(parents=True, exist_ok=True)
    server = serve_metrics(metrics_port, status_dir) if metrics_port else None
    try:
        if len(configs) == 1:
            worker = Worker(configs[0])
            threads = [threading.Thread(target=worker.run, args=(stop,), name="ingest-worker")]
            threads[0].start()

            def tick() -> None:
                # The worker restarts its own loop after an error; a thread that still died (SystemExit, a bug in
                # the restart itself) is started again on the same Worker: its broker session resumes and the
                # broker delivers every unacknowledged message again.
                if not threads[-1].is_alive() and not stop.is_set():
                    console.print("[yellow]ingest worker thread died; restarting it[/yellow]")
                    worker.counters.restarts += 1
                    threads.append(threading.Thread(target=worker.run, args=(stop,), name="ingest-worker"))
                    threads[-1].start()

            _watch(stop, console, status_dir, live, tick=tick)
            threads[-1].join()
        else:
            _run_processes(configs, stop, console, status_dir, live)
    finally:
        if server is not None:
            server.shutdown()


def _run_processes(
    configs: list[WorkerConfig], stop: threading.Event, console: Console, status_dir: Path, live: bool
) -> None:
    ctx = mp.get_context("spawn")
    procs: dict[str, Any] = {}

    def start(cfg: WorkerConfig) -> None:
        p = ctx.Process(target=run_worker, args=(cfg,), name=cfg.client_id, daemon=False)
        p.start()
        procs[cfg.client_id] = p

    by_id = {c.client_id: c for c in configs}
    for cfg in configs:
        start(cfg)
    died_at: dict[str, float] = {}

    def tick() -> None:
        for cid, p in list(procs.items()):
            if not p.is_alive() and not stop.is_set():
                first = died_at.setdefault(cid, time.monotonic())
                if time.monotonic() - first >= RESTART_DELAY_S:
                    console.print(f"[yellow]worker {cid} exited ({p.exitcode}); restarting[/yellow]")
                    died_at.pop(cid)
                    start(by_id[cid])

    try:
        _watch(stop, console, status_dir, live, tick=tick)
    finally:
        for p in procs.values():
            if p.is_alive():
                p.terminate()  # SIGTERM: the worker stops taking messages and leaves the rest unacknowledged
        for p in procs.values():
            p.join(30)
            if p.is_alive():
                p.kill()
                p.join()


def _watch(stop: threading.Event, console: Console, status_dir: Path, live: bool, tick: Callable[[], Any]) -> None:
    if not live:
        while not stop.wait(LIVE_REFRESH_S):
            tick()
        return
    with Live(status_line(status_dir), console=console, refresh_per_second=2, transient=False) as view:
        while not stop.wait(LIVE_REFRESH_S):
            tick()
            view.update(status_line(status_dir))
