"""One ingest worker: take messages from the consumer's queue, decode and validate them, batch by size and age,
write each batch in one transaction, acknowledge its messages after the commit and confirm them to their sources
(docs/delivery.md), retry with backoff while the database is down (the broker holds everything unacknowledged),
and report its figures.

Nothing a client sends may stop it: every failure of one message, expected (PayloadError) or not (any exception
from decoding, validation or the meter look-up), becomes that message's dead letter and the worker carries on; a
batch the database refuses is written message by message so that only the guilty one is dead-lettered; a
redelivered message that killed workers before is dead-lettered by the poison ledger (ingest.poison) instead of
killing this one; and an unexpected error of the loop itself restarts the loop in place, with the same broker
session, so no unacknowledged message is lost."""

from __future__ import annotations

import json
import logging
import os
import queue
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt
import psycopg

from amr.broker import topics
from amr.broker.confirm import encode_confirmation
from amr.broker.mosquitto import BrokerEndpoint
from amr.errors import PayloadError
from ingest import limits
from ingest.consumer import Consumer, Incoming
from ingest.decode import Validated, parse_message, serials_of, topic_source, validate_message
from ingest.last_seen import PendingLastSeen, write_last_seen
from ingest.meters import MeterCache
from ingest.metrics import Counters, RateMeter, write_status_file
from ingest.poison import count_delivery, message_digest, settle, uncount_delivery
from ingest.writer import BatchContent, DeadLetter, Strategy, prepare_session, write_batch, write_dead_letters
from ingest.writer import write_ingest_status as write_status_row

log = logging.getLogger(__name__)
T = TypeVar("T")

# Connection-level failures: the server is down, restarting or unreachable, or a deadlock/serialization
# failure rolled the transaction back. The batch is retried unchanged; anything else is about the data.
RETRYABLE = (psycopg.OperationalError, psycopg.InterfaceError)


@dataclass(frozen=True, kw_only=True)
class WorkerConfig:
    broker: BrokerEndpoint
    conninfo: str  # DatabaseServer.conninfo(Role.INGEST)
    client_id: str  # stable across restarts: the broker keeps this worker's persistent session under it
    status_dir: Path
    share_group: str = topics.INGEST_SHARE_GROUP
    batch_max_rows: int = limits.BATCH_MAX_ROWS
    batch_max_age_s: float = limits.BATCH_MAX_AGE_S
    batch_max_messages: int = limits.BATCH_MAX_MESSAGES
    batch_idle_s: float = limits.BATCH_IDLE_S
    strategy: Strategy = Strategy.SAVEPOINT
    last_seen_interval_s: float = limits.LAST_SEEN_INTERVAL_S  # 0: meter_last_seen inside every batch
    max_delivery_attempts: int = limits.MAX_DELIVERY_ATTEMPTS
    # Fault injection for tests: called with each message before it is decoded (may raise anything).
    fault: Callable[[Incoming], None] | None = None


class Stopped(Exception):
    """Raised inside a retry loop when the worker is asked to stop: leave without acknowledging."""


@dataclass
class _Pending:
    item: Incoming
    part: Validated | None
    dead: DeadLetter | None
    digest: bytes | None = None  # poison-ledger key of a redelivered message, settled when its batch commits


@dataclass
class _Batch:
    entries: list[_Pending] = field(default_factory=list)
    rows: int = 0
    first_s: float = 0.0  # monotonic time the first message joined

    def add(self, entry: _Pending) -> None:
        if not self.entries:
            self.first_s = time.monotonic()
        self.entries.append(entry)
        self.rows += entry.part.rows if entry.part else 0


class Worker:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        ep = config.broker
        self.consumer = Consumer(
            host=ep.host, port=ep.port, username=ep.username, password=ep.password,
            client_id=config.client_id, share_group=config.share_group,
        )  # fmt: skip
        self.meters = MeterCache()
        self.counters = Counters()
        self.rates = RateMeter()
        self.lag_s = 0.0
        self.db_state = "connecting"
        self._conn: psycopg.Connection[Any] | None = None
        self._batch = _Batch()
        self._next_status_s = 0.0
        self._next_metrics_s = 0.0
        self._rates = (0.0, 0.0)
        self._last_seen = PendingLastSeen()
        self._last_seen_due_s = 0.0
        config.status_dir.mkdir(parents=True, exist_ok=True)
        self.status_file = config.status_dir / f"status-{config.client_id}.json"

    # -- main loop -----------------------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        self.consumer.start()
        try:
            self._serve_until_stopped(stop)
        finally:
            self._flush_on_stop(stop)
            self.consumer.stop()
            self._write_last_seen_once()
            self._report(state="offline")
            if self._conn is not None:
                self._conn.close()

    def _serve_until_stopped(self, stop: threading.Event) -> None:
        """The loop, restarted in place after an unexpected error: the consumer, its broker session, the queue and
        the batch under way stay, so every unacknowledged message is still handled exactly as before."""
        delay = limits.RESTART_FIRST_S
        while not stop.is_set():
            try:
                self._serve(stop)
                return
            except Stopped:
                return
            except Exception:
                log.exception("ingest worker loop failed; restarting it in %.1f s (messages kept)", delay)
                self.counters.restarts += 1
                if self._conn is not None:  # it may be mid-transaction: start again from a fresh one
                    self._conn.close()
                    self._conn = None
                if stop.wait(delay):
                    return
                delay = min(delay * 2, limits.RESTART_MAX_S)

    def _serve(self, stop: threading.Event) -> None:
        while not stop.is_set():
            self._fill(stop)
            if self._batch.entries:
                self._flush(stop)
            self._periodic(stop)

    def _flush_on_stop(self, stop: threading.Event) -> None:
        """Commit what was taken before a clean stop (no retries: if the database is away, the broker delivers
        those messages again), so a stop does not make them redeliveries."""
        if not self._batch.entries:
            return
        try:
            self._flush(_ONE_SHOT)
        except (Stopped, psycopg.Error) as exc:
            log.info("batch of %d messages left unacknowledged on stop: %s", len(self._batch.entries), exc)
        except Exception:
            log.exception("batch of %d messages left unacknowledged on stop", len(self._batch.entries))

    def _fill(self, stop: threading.Event) -> None:
        """Take messages until the batch is full, old enough or no message came for a while (or the worker is
        asked to stop)."""
        cfg, q, batch = self.config, self.consumer.queue, self._batch
        while not stop.is_set():
            if batch.entries:
                timeout = batch.first_s + cfg.batch_max_age_s - time.monotonic()
                if timeout <= 0:
                    return
                timeout = min(timeout, cfg.batch_idle_s)
            else:
                timeout = 0.2
            try:
                item = q.get(timeout=timeout)
            except queue.Empty:
                if batch.entries:
                    return  # the stream paused: commit what waits rather than let it age
                self._periodic(stop)
                continue
            self._take(item, stop)
            if batch.rows >= cfg.batch_max_rows or len(batch.entries) >= cfg.batch_max_messages:
                return

    def _take(self, item: Incoming, stop: threading.Event) -> None:
        """Decode and validate one message into the batch. Whatever goes wrong with it becomes its dead letter."""
        digest = None
        if item.dup:
            digest = message_digest(item.topic, item.payload)
            attempts = self._with_db(partial(count_delivery, digest=digest, topic=item.topic), stop)
            if attempts > self.config.max_delivery_attempts:
                self.counters.poison += 1
                reason = (
                    f"poison message: delivered {attempts + 1} times, and the {attempts} workers that took it"
                    " after the first died while processing it"
                )
                self._batch.add(_Pending(item, None, self._letter(item, reason), digest))
                return
        try:
            if self.config.fault is not None:
                self.config.fault(item)
            entry = self._process(item, stop)
        except Stopped:
            raise
        except Exception as exc:  # a bug or a resource limit hit by this message: it must not stop ingest
            log.exception("message on %s could not be processed; dead-lettered", item.topic)
            self.counters.internal_errors += 1
            reason = f"internal error while processing the message: {type(exc).__name__}: {str(exc)[:300]}"
            entry = _Pending(item, None, self._letter(item, reason))
        if digest is not None:
            self._with_db(partial(uncount_delivery, digest=digest), stop)
            entry.digest = digest
        self._batch.add(entry)

    def _process(self, item: Incoming, stop: threading.Event) -> _Pending:
        try:
            _kind, message = parse_message(item.topic, item.payload)
        except PayloadError as exc:
            return _Pending(item, None, self._letter(item, exc.reason))
        serials = serials_of(message)
        meters = self.meters
        if meters.ids.keys() >= serials:  # all known: no database round trip, no connection check
            meter_ids = meters.ids
        else:
            meter_ids = self._with_db(lambda conn: meters.resolve(conn, serials), stop)
        part = validate_message(message, meter_ids=meter_ids, now_s=time.time())
        dead = None
        if part.reasons:
            shown = part.reasons[: limits.MAX_REASONS_PER_DEAD_LETTER]
            more = len(part.reasons) - len(shown)
            reason = f"{part.rejected} item(s) rejected: " + "; ".join(shown) + (f"; ... {more} more" if more else "")
            dead = DeadLetter(source=part.source or topic_source(item.topic), topic=item.topic,
                              payload=item.payload, reason=reason)  # fmt: skip
        return _Pending(item, part, dead)

    @staticmethod
    def _letter(item: Incoming, reason: str) -> DeadLetter:
        return DeadLetter(source=topic_source(item.topic), topic=item.topic, payload=item.payload, reason=reason)

    def _flush(self, stop: threading.Event) -> None:
        entries = self._batch.entries
        try:
            self._write(entries, stop)
        except Stopped:
            raise
        except Exception as exc:  # not a connection problem: some message's data; find it, keep the rest
            log.warning("batch refused (%s); writing its %d messages one by one", _first_line(exc), len(entries))
            for entry in entries:
                try:
                    self._write([entry], stop)
                except Stopped:
                    raise
                except Exception as one_exc:
                    where = "database refused" if isinstance(one_exc, psycopg.Error) else "could not write"
                    letter = DeadLetter(
                        source=entry.dead.source if entry.dead else topic_source(entry.item.topic),
                        topic=entry.item.topic, payload=entry.item.payload,
                        reason=f"{where} the message: {type(one_exc).__name__}: {_first_line(one_exc)}",
                    )  # fmt: skip
                    settled = [entry.digest] if entry.digest else []
                    self._with_db(partial(_write_letter, letter=letter, settled=settled), stop)
                    self.counters.dead_letters += 1
                    self.counters.count_dead_letter(letter.reason)
        self.consumer.ack_many([e.item for e in entries])
        self._confirm(entries)
        now = time.time()
        self.lag_s = now - min(e.item.received_s for e in entries)
        self.counters.messages += len(entries)
        self._batch = _Batch()
        self._maybe_write_last_seen(stop)
        # Readers of the status file (the live line, the benchmark) see each commit at once, not a second later;
        # flushes come at most a few dozen a second (BATCH_MAX_ROWS, BATCH_IDLE_S), so this costs little.
        self._write_metrics()

    def _confirm(self, entries: list[_Pending]) -> None:
        """Tell each source which of its messages are now committed (docs/delivery.md): one confirmation per
        client and batch, only to the client's own confirmation topic (whatever its message asked for)."""
        ids_by_topic: dict[str, list[int]] = {}
        for entry in entries:
            item = entry.item
            if item.correlation is None or item.response_topic is None:
                continue
            if item.response_topic != topics.confirm_topic(topic_source(item.topic)):
                self.counters.confirms_refused += 1
                continue
            ids_by_topic.setdefault(item.response_topic, []).append(item.correlation)
        for topic, ids in ids_by_topic.items():
            if self.consumer.confirm(topic, encode_confirmation(ids)):
                self.counters.confirmations += 1

    def _maybe_write_last_seen(self, stop: threading.Event) -> None:
        """meter_last_seen for the batches committed since the last time, once the interval is up."""
        now = time.monotonic()
        if not self._last_seen.pairs or (
            now < self._last_seen_due_s and self._last_seen.pairs < limits.LAST_SEEN_MAX_PENDING
        ):
            return
        self._last_seen_due_s = now + self.config.last_seen_interval_s
        meters, newest_us = self._last_seen.take()
        try:
            self._with_db(partial(_write_last_seen, meters=meters, newest_us=newest_us), stop)
        except psycopg.Error as exc:  # not a connection problem (those are retried): nothing to do but report it
            log.error("meter_last_seen not updated for %d meters: %s", len(meters), exc)

    def _write_last_seen_once(self) -> None:
        """On the way out: what is pending, if the database answers now (no retries while stopping)."""
        if not self._last_seen.pairs:
            return
        meters, newest_us = self._last_seen.take()
        try:
            _write_last_seen(self._connection(), meters=meters, newest_us=newest_us)
        except psycopg.Error as exc:
            log.warning("meter_last_seen of %d meters not written on stop: %s", len(meters), exc)

    def _write(self, entries: list[_Pending], stop: threading.Event) -> None:
        content = BatchContent.from_parts(
            [e.part for e in entries if e.part is not None],
            [e.dead for e in entries if e.dead is not None],
            [e.digest for e in entries if e.digest is not None],
        )
        inline = self.config.last_seen_interval_s <= 0
        result = self._with_db(lambda conn: write_batch(conn, content, self.config.strategy, last_seen=inline), stop)
        if not inline and content.readings is not None:
            self._last_seen.add(*content.readings.last_seen())
        c = self.counters
        c.rows += result.inserted
        c.duplicates += result.duplicates
        c.events += result.events
        c.dead_letters += result.dead_letters
        for letter in content.dead_letters:
            c.count_dead_letter(letter.reason)
        c.flushes += 1
        c.staging_flushes += int(result.used_staging)

    # -- database access with retry --------------------------------------------------------------------------
    def _with_db(self, fn: Callable[[psycopg.Connection[Any]], T], stop: threading.Event) -> T:
        delay = limits.RETRY_FIRST_S
        while True:
            try:
                return fn(self._connection())
            except RETRYABLE as exc:
                self.counters.db_errors += 1
                self.db_state = "retrying"
                log.warning("database unavailable (%s); retrying in %.1f s", str(exc).splitlines()[0], delay)
                if self._conn is not None and (self._conn.closed or self._conn.broken):
                    self._conn = None
                self._write_metrics()
                if stop.wait(delay):
                    raise Stopped from exc
                delay = min(delay * 2, limits.RETRY_MAX_S)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None or self._conn.closed or self._conn.broken:
            conn = psycopg.connect(
                self.config.conninfo, autocommit=True, connect_timeout=5, application_name=self.config.client_id
            )
            prepare_session(conn)
            self._conn = conn
        self.db_state = "ok"
        return self._conn

    # -- reporting ----------------------------------------------------------------------------------------
    def _periodic(self, stop: threading.Event) -> None:
        self._maybe_write_last_seen(stop)
        now = time.monotonic()
        if now >= self._next_metrics_s:
            self._next_metrics_s = now + limits.METRICS_INTERVAL_S
            self._rates = self.rates.rates(self.counters)
            if not self._batch.entries and self.consumer.queue.empty():
                self.lag_s = 0.0
            self._write_metrics()
        if now >= self._next_status_s:
            self._next_status_s = now + limits.STATUS_INTERVAL_S
            self._report(state="online")

    def _report(self, *, state: str) -> None:
        """The collector_status row; skipped (never retried) while the database is away."""
        detail = json.dumps({"messages_per_s": self._rates[0], "pid": os.getpid()} | vars(self.counters))
        try:
            write_status_row(
                self._connection(), source=self.config.client_id, state=state,
                reads_per_s=self._rates[1], lag_s=self.lag_s, detail=detail,
            )  # fmt: skip
        except RETRYABLE:
            self._conn = None
        if state == "offline":
            self._write_metrics(state="offline")

    def _write_metrics(self, state: str | None = None) -> None:
        write_status_file(
            self.status_file,
            {
                "worker": self.config.client_id, "pid": os.getpid(), "updated_at": time.time(),
                "state": state or ("online" if self.consumer.connected.is_set() else "connecting"),
                "db": self.db_state, **vars(self.counters), "messages_per_s": self._rates[0],
                "rows_per_s": self._rates[1], "lag_s": self.lag_s, "queue_depth": self.consumer.queue.qsize(),
                "broker_connects": self.consumer.connects,
            },
        )  # fmt: skip


def _write_last_seen(
    conn: psycopg.Connection[Any], *, meters: npt.NDArray[np.int32], newest_us: npt.NDArray[np.int64]
) -> None:
    with conn.transaction(), conn.cursor() as cur:
        write_last_seen(cur, meters, newest_us)


def _write_letter(conn: psycopg.Connection[Any], *, letter: DeadLetter, settled: list[bytes]) -> None:
    with conn.transaction(), conn.cursor() as cur:
        write_dead_letters(cur, [letter])
        settle(cur, settled)


def _first_line(exc: BaseException) -> str:
    return (str(exc).splitlines() or [""])[0][:300]


class _AlreadySet(threading.Event):
    """A stop event that is set: database calls on the way out are tried once, never retried."""

    def __init__(self) -> None:
        super().__init__()
        self.set()


_ONE_SHOT = _AlreadySet()


def run_worker(config: WorkerConfig) -> None:
    """Run until SIGTERM/SIGINT (in the main thread of this process)."""
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {config.client_id} %(levelname)s %(message)s")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    Worker(config).run(stop)
