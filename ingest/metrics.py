"""Worker counters, published as one JSON status file per worker (atomically replaced every second and after
each commit) in the status directory (default ``<state dir>/ingest/``). Other tools read those files; ``amr ingest``
aggregates them into its live line and, with ``--metrics-port``, serves them to Prometheus (``/metrics``) through
:class:`StatusFileCollector`, which reads the files of every worker process at each scrape (the workers are
separate processes: the files are the one place their counters meet).

File ``status-<client id>.json``: ``{"worker", "pid", "updated_at", "state", "messages", "rows", "duplicates",
"dead_letters", "dead_letter_reasons", "events", "flushes", "staging_flushes", "db_errors", "messages_per_s",
"rows_per_s", "lag_s", "queue_depth"}`` (counters are totals since the worker started; rates over the last interval;
``dead_letter_reasons`` maps a reason class of :data:`DEAD_LETTER_REASONS` to the dead letters of that class).
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

COUNTERS = (
    "messages", "rows", "duplicates", "dead_letters", "events", "flushes", "staging_flushes", "db_errors",
    "internal_errors", "poison", "restarts", "confirmations", "confirms_refused",
)  # fmt: skip
STALE_AFTER_S = 10.0  # a status file older than this belongs to a worker that is gone

# The `reason` label of amr_ingest_dead_letters_total: a fixed set of classes, never the reason's free text (which
# quotes client data: one label value per distinct text would grow the series without bound).
DEAD_LETTER_REASONS = (
    "oversize",  # payload over amr.messages.MAX_PAYLOAD_BYTES
    "nesting",  # JSON nested deeper than the guard allows
    "control_character",  # NUL or a control character in a string
    "malformed_json",  # empty, not JSON, or not a JSON object
    "schema",  # JSON, but not a valid message (fields, version, OBIS code, unit, value, quality, lengths)
    "unknown_meter",  # a serial the meters table does not hold (or not a clean identifier)
    "time_window",  # a timestamp before the earliest accepted or too far in the future
    "identity",  # the message names another client than its topic
    "topic",  # a topic outside the layout
    "poison",  # a redelivered message that killed the workers that took it before
    "internal",  # an unexpected error while processing or writing the message
    "database",  # the database refused the message
    "other",  # a reason no rule below knows: a new wording in ingest.decode or ingest.guard (add a rule)
)
# (prefix of the reason, class), tried in order; the reasons come from ingest.guard, ingest.decode and ingest.worker.
_PREFIX_RULES = (
    ("poison message", "poison"),
    ("internal error", "internal"),
    ("could not write", "internal"),
    ("database refused", "database"),
    ("oversize payload", "oversize"),
    ("JSON nested", "nesting"),
    ("NUL or control character", "control_character"),
    ("empty payload", "malformed_json"),
    ("unknown topic", "topic"),
    ("unsupported format version", "schema"),
)
_REJECTED = re.compile(r"\d+ item\(s\) rejected: ")


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
    # dead letters committed, by class (reason_class); a redelivered message's letter counts again although the
    # table stores it once (dead_letters above counts the rows stored)
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)

    def count_dead_letter(self, reason: str) -> None:
        cls = reason_class(reason)
        self.dead_letter_reasons[cls] = self.dead_letter_reasons.get(cls, 0) + 1


def reason_class(reason: str) -> str:
    """The class of a dead letter's reason (one of DEAD_LETTER_REASONS)."""
    for prefix, cls in _PREFIX_RULES:
        if reason.startswith(prefix):
            return cls
    rejected = _REJECTED.match(reason)
    if rejected is not None:  # per-item reasons: the class of the first item's ("readings[3]: unknown meter 'X'")
        first = reason[rejected.end() :].split("; ", 1)[0]
        if "unknown meter '" in first or "meter serial '" in first:
            return "unknown_meter"
        if ": timestamp " in first:
            return "time_window"
        return "schema"
    if reason.startswith("invalid "):
        return "malformed_json" if "malformed JSON" in reason or "a JSON " in reason else "schema"
    if "is not the topic's client" in reason:
        return "identity"
    return "other"


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


# Status-file counters exported as amr_ingest_<name>_total, with their help; rows, duplicates, events and the
# dead letters get names of their own below.
_PLAIN_COUNTERS = {
    "messages": "MQTT messages committed (stored or dead-lettered) and acknowledged",
    "flushes": "batches committed",
    "staging_flushes": "batches written through the staging table (a duplicate in the batch)",
    "db_errors": "database calls failed on a connection problem (each retried)",
    "internal_errors": "messages dead-lettered for an unexpected error while processing them",
    "poison": "redelivered messages dead-lettered by the poison ledger",
    "restarts": "in-place restarts of the worker loop after an unexpected error",
    "confirmations": "commit confirmations published to sources",
    "confirms_refused": "confirmation requests refused (another client's topic)",
}


class StatusFileCollector(Collector):
    """Prometheus metrics of every live ingest worker, read from their status files at each scrape (label
    `worker`: the stable client id). A restarted worker starts its counters at zero again, which Prometheus's
    rate() reads as a counter reset."""

    def __init__(self, status_dir: Path, *, max_age_s: float = STALE_AFTER_S) -> None:
        self.status_dir = status_dir
        self.max_age_s = max_age_s

    def collect(self) -> Iterator[Metric]:
        statuses = read_status_files(self.status_dir, max_age_s=self.max_age_s)

        def counter(name: str, doc: str, key: str) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=["worker"])
            for s in statuses:
                family.add_metric([str(s["worker"])], float(s.get(key, 0)))
            return family

        def gauge(name: str, doc: str, key: str) -> GaugeMetricFamily:
            family = GaugeMetricFamily(name, doc, labels=["worker"])
            for s in statuses:
                family.add_metric([str(s["worker"])], float(s.get(key, 0)))
            return family

        yield counter("amr_ingest_readings_stored_total", "readings inserted into the readings table", "rows")
        yield counter(
            "amr_ingest_readings_duplicate_total", "readings already stored (redelivered or re-sent)", "duplicates"
        )
        yield counter("amr_ingest_events_stored_total", "meter events stored", "events")
        dead = CounterMetricFamily(
            "amr_ingest_dead_letters_total",
            "messages dead-lettered, by reason class (a redelivered message's letter counts again)",
            labels=["worker", "reason"],
        )
        for s in statuses:
            by_reason = s.get("dead_letter_reasons") or {}
            for cls in DEAD_LETTER_REASONS:  # every class, zero included: rate() needs the series from the start
                dead.add_metric([str(s["worker"]), cls], float(by_reason.get(cls, 0)))
        yield dead
        for key, doc in _PLAIN_COUNTERS.items():
            yield counter(f"amr_ingest_{key}_total", doc, key)
        yield gauge(
            "amr_ingest_lag_seconds", "age of the oldest message of the last committed batch when it committed", "lag_s"
        )
        yield gauge("amr_ingest_queue_messages", "messages received from the broker, not yet in a batch", "queue_depth")
        online = GaugeMetricFamily("amr_ingest_worker_online", "1 when the worker is connected to the broker",
                                   labels=["worker"])  # fmt: skip
        for s in statuses:
            online.add_metric([str(s["worker"])], 1.0 if s.get("state") == "online" else 0.0)
        yield online
        yield GaugeMetricFamily("amr_ingest_workers", "workers with a fresh status file", value=len(statuses))


def metrics_registry(status_dir: Path) -> CollectorRegistry:
    """A registry holding only the workers' metrics (the supervisor's own process metrics would say little)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatusFileCollector(status_dir))
    return registry
