"""The dashboards on gunicorn (`amr dashboard`): a production WSGI server in this process (the master) with
several worker processes, each with threads (gthread: a Dash callback mostly waits on the database).

The app is built in each worker after the fork (no preload): a connection pool opened before a fork would be
shared by every worker's sockets."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gunicorn.app.base import BaseApplication

# A page's callbacks at fleet scale take well under a second (benchmarks/bench_dashboards.py); a worker silent for
# this long is stuck and gunicorn replaces it.
WORKER_TIMEOUT_S = 120
GRACEFUL_TIMEOUT_S = 20  # on SIGTERM, requests in flight get this long; below the supervisor's stop timeout (30 s)
KEEPALIVE_S = 5


def bind_address(host: str, port: int) -> str:
    return f"[{host.strip('[]')}]:{port}" if ":" in host else f"{host}:{port}"


class DashboardServer(BaseApplication):
    def __init__(self, factory: Callable[[], Any], options: dict[str, Any]) -> None:
        self._factory = factory
        self._options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self._options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        return self._factory()


def serve(factory: Callable[[], Any], *, host: str, port: int, workers: int, threads: int) -> None:
    """Serve the WSGI app `factory` builds (in each worker) until SIGTERM / SIGINT."""
    options: dict[str, Any] = {
        "bind": [bind_address(host, port)],
        "workers": workers,
        "threads": threads,
        "worker_class": "gthread",
        "timeout": WORKER_TIMEOUT_S,
        "graceful_timeout": GRACEFUL_TIMEOUT_S,
        "keepalive": KEEPALIVE_S,
        "preload_app": False,
        "proc_name": "amr-dashboards",
        "accesslog": "-",
        "errorlog": "-",
    }
    DashboardServer(factory, options).run()
