"""Worker counters, published as one JSON status file per worker (atomically replaced every second and after
each commit) in the status directory (default ``<state dir>/ingest/``). Other tools read those files; ``amr ingest``
aggregates them into its live line and, with ``--metrics-port``, serves them as Prometheus text (``/metrics``).

File ``status-<client id>.json``: ``{"worker", "pid", "updated_at", "state", "messages", "rows", "duplicates",
"dead_letters", "events", "flushes", "staging_flushes", "db_errors", "messages_per_s", "rows_per_s", "lag_s",
"queue_depth"}`` (counters are totals since the worker started; rates over the last interval).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

COUNTERS = (
    "messages", "rows", "duplicates", "dead_letters", "events", "flushes", "staging_flushes", "db_errors",
    "internal_errors", "poison", "restarts", "confirmations", "confirms_refused",
)  # fmt: skip
STALE_AFTER_S = 10.0  # a status file older than this belongs to a worker that is gone


@dataclass
class Counters:
    messages: int = 0
    rows: int = 0
    duplicates: int = 0
    dead_letters: int = 0
    events: int = 0
    flushes: int = 0
    staging_flushes: int = 0
    db_errors: int = 0
    internal_errors: int = 0  # messages dead-lettered for an unexpected error while processing them
    poison: int = 0  # redelivered messages dead-lettered by the poison ledger
    restarts: int = 0  # in-place restarts of the worker loop after an unexpected error
    confirmations: int = 0  # commit confirmations published (one per client and batch)
    confirms_refused: int = 0  # messages asking for a confirmation on another client's topic


@dataclass
class RateMeter:
    """Rates over the interval since the previous snapshot."""

    last_s: float = field(default_factory=time.monotonic)
    last: Counters = field(default_factory=Counters)

    def rates(self, now: Counters) -> tuple[float, float]:
        t = time.monotonic()
        dt = max(t - self.last_s, 1e-6)
        msg_rate = (now.messages - self.last.messages) / dt
        row_rate = (now.rows - self.last.rows) / dt
        self.last_s, self.last = t, Counters(**asdict(now))
        return msg_rate, row_rate


def write_status_file(path: Path, status: dict[str, Any]) -> None:
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(status))
    os.replace(tmp, path)  # readers never see a half-written file


def read_status_files(directory: Path, *, max_age_s: float = STALE_AFTER_S) -> list[dict[str, Any]]:
    out = []
    now = time.time()
    for path in sorted(directory.glob("status-*.json")):
        try:
            status = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if now - float(status.get("updated_at", 0)) <= max_age_s:
            out.append(status)
    return out


def aggregate(statuses: list[dict[str, Any]]) -> dict[str, float]:
    total: dict[str, float] = {k: 0.0 for k in (*COUNTERS, "messages_per_s", "rows_per_s", "queue_depth")}
    for s in statuses:
        for k in total:
            total[k] += float(s.get(k, 0))
    total["lag_s"] = max((float(s.get("lag_s", 0)) for s in statuses), default=0.0)
    total["workers"] = len(statuses)
    return total


def render_prometheus(statuses: list[dict[str, Any]]) -> str:
    lines = []
    for name in COUNTERS:
        lines += [f"# TYPE amr_ingest_{name}_total counter"]
        lines += [f'amr_ingest_{name}_total{{worker="{s["worker"]}"}} {s.get(name, 0)}' for s in statuses]
    for name in ("messages_per_s", "rows_per_s", "lag_s", "queue_depth"):
        lines += [f"# TYPE amr_ingest_{name} gauge"]
        lines += [f'amr_ingest_{name}{{worker="{s["worker"]}"}} {s.get(name, 0)}' for s in statuses]
    return "\n".join(lines) + "\n"
