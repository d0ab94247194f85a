"""A simulated data concentrator (DCU): reads its meters every interval of the shared simulated clock and pushes
``DcuUplink`` JSON to ``amr/v1/dcu/<dcu id>/uplink`` (QoS 1, broker account ``dcu``, MQTT client id = the DCU
id); see docs/dcu-uplink.md and docs/delivery.md.

``start_dcu(dcu_id, meters, endpoint, clock, interval_s, outbox_dir=...) -> DcuHandle`` (``.stop()``,
``.published_count``).

Store and forward: every uplink goes to the outbox on disk (simulators.dcu.outbox, as a real concentrator keeps
it on flash) and leaves it when ingest confirms its seq (``confirm=False``: on its PUBACK). The outbox also keeps
the DCU's last seq and the next interval to read, so a restarted DCU sends what it held, reuses no seq and
back-reads the intervals it missed while it was down (up to ``MAX_BACKREAD_INTERVALS``; a stored position from
another simulated time, e.g. a later start of the same outbox with an earlier clock, is not resumed).

Maximum packet size: an uplink must fit the broker's maximum packet size (its CONNACK; the last one seen is kept
in the outbox). A message that would not is halved (its reads, then its events); a single read or event that can
never fit is refused: logged as an error, counted (``refused``) and kept in the outbox's refused table.

Faults (``DcuFaults``), all on the simulated clock:
- ``offline``: windows in which the uplink is down: reads are buffered in the outbox and replayed oldest first.
- ``power_down``: windows in which the DCU has no power: it reads nothing; at power-up it back-reads every missed
  interval (the meters kept their registers) and reports power_down / power_up events for its meters.
- ``duplicate_every``: every n-th message is pushed twice (same seq), as after a lost PUBACK.
- ``reorder_every``: every n-th message is held back and pushed after the next one (out of order).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from amr.broker.confirm import (
    CONFIRM_TIMEOUT_S,
    DEFAULT_MAX_PACKET_BYTES,
    PacketTooLarge,
    max_payload_bytes,
    publish_packet_bytes,
)
from amr.broker.mosquitto import BrokerEndpoint
from amr.broker.topics import dcu_uplink_topic
from amr.messages import DcuEvent, DcuRead, encode
from simulators.dcu.outbox import DEFAULT_OUTBOX_LIMIT, Outbox, OutboxItem
from simulators.dcu.publisher import DEFAULT_WINDOW, UplinkPublisher
from simulators.dcu.uplink import interval_reads, make_uplink, next_boundary, power_events, split_reads
from simulators.dlms.source import Clock, MeterSource

LOG = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 1800
TICK_S = 0.02  # real seconds between looks at the simulated clock
STOP_DRAIN_S = 10.0
# A restarted DCU back-reads at most this many missed intervals (30 days of 30-min reads), as the meters' load
# profiles hold about that much; a stored position further back is from another run and is not resumed.
MAX_BACKREAD_INTERVALS = 1_440
NEXT_READ_KEY = "next_read"
MAX_PACKET_KEY = "broker.max_packet_bytes"


def _inside(windows: Sequence[tuple[datetime, datetime]], at: datetime) -> tuple[datetime, datetime] | None:
    return next(((a, b) for a, b in windows if a <= at < b), None)


@dataclass(frozen=True, kw_only=True)
class DcuFaults:
    offline: tuple[tuple[datetime, datetime], ...] = ()
    power_down: tuple[tuple[datetime, datetime], ...] = ()
    duplicate_every: int = 0
    reorder_every: int = 0


@dataclass(kw_only=True)
class SimulatedDcu:
    dcu_id: str
    meters: Sequence[MeterSource]
    clock: Clock
    outbox: Outbox
    interval_s: int = DEFAULT_INTERVAL_S
    faults: DcuFaults = field(default_factory=DcuFaults)
    start: datetime | None = None  # first interval boundary read; default: the next one after starting
    confirm: bool = True  # uplinks carry the confirmation properties (their size counts)
    seq: int = 0
    read_times: list[datetime] = field(default_factory=list)  # boundaries read, in order
    events_sent: list[DcuEvent] = field(default_factory=list)
    refused: int = 0  # reads and events that alone exceed the broker's maximum packet size
    max_packet_bytes: int = DEFAULT_MAX_PACKET_BYTES
    _held: bool = False

    def __post_init__(self) -> None:
        self.seq = max(self.seq, self.outbox.last_seq)  # a restarted DCU reuses no seq
        known = self.outbox.get_state(MAX_PACKET_KEY)
        if known is not None:
            self.max_packet_bytes = int(known)

    def set_max_packet(self, limit: int) -> None:
        """The broker's maximum packet size (from its CONNACK), kept for the next start."""
        if limit != self.max_packet_bytes:
            self.max_packet_bytes = limit
            self.outbox.set_state(MAX_PACKET_KEY, str(limit))

    def first_read(self, now: datetime) -> datetime:
        """Where reading starts: the stored next interval (a restart), else `start`, else the next boundary."""
        stored = self.outbox.get_state(NEXT_READ_KEY)
        if stored is not None:
            at = datetime.fromisoformat(stored)
            backlog = (now - at).total_seconds() / self.interval_s
            if -1 <= backlog <= MAX_BACKREAD_INTERVALS:
                return at
            LOG.warning("DCU %s: stored next read %s is not near %s: not resumed", self.dcu_id, at, now)
        return self.start or next_boundary(now, self.interval_s)

    def step(self, now: datetime, next_ts: datetime) -> datetime:
        """Read every boundary up to `now` (unless powered down); returns the next boundary to read."""
        if _inside(self.faults.power_down, now):
            return next_ts
        events: list[DcuEvent] = []
        for down, up in self.faults.power_down:
            if up <= now and not any(e.event == "power_down" and e.ts == down for e in self.events_sent):
                events += power_events(self.meters, down, up)
        while next_ts <= now:
            following = next_ts + timedelta(seconds=self.interval_s)
            self._emit(now, next_ts, events, following)
            events = []
            next_ts = following
        if events:
            self._emit(now, None, events, next_ts)
        return next_ts

    def _emit(self, now: datetime, at: datetime | None, events: list[DcuEvent], next_read: datetime) -> None:
        reads = interval_reads(self.meters, at) if at is not None else []
        if at is not None:
            self.read_times.append(at)
        self.events_sent += events
        # One transaction: the interval's messages and the next interval to read are stored together.
        with self.outbox.transaction():
            for index, chunk in enumerate(split_reads(reads)):
                for item in self._pack(now, chunk, events if index == 0 else []):
                    self._queue(item)
            self.outbox.set_state(NEXT_READ_KEY, next_read.isoformat())

    def _pack(self, now: datetime, reads: list[DcuRead], events: list[DcuEvent]) -> list[OutboxItem]:
        """Uplinks that fit the broker's maximum packet size, halving `reads` (then `events`) as needed."""
        topic = dcu_uplink_topic(self.dcu_id)
        payload = encode(make_uplink(self.dcu_id, self.seq + 1, now, reads, events))
        if len(payload) <= max_payload_bytes(self.max_packet_bytes, topic, self.dcu_id if self.confirm else None):
            self.seq += 1
            return [OutboxItem(seq=self.seq, payload=payload)]
        if len(reads) + len(events) <= 1:
            error = PacketTooLarge(topic, publish_packet_bytes(topic, len(payload)), self.max_packet_bytes)
            what = f"read of {reads[0].serial}" if reads else f"event {events[0].event} of {events[0].serial}"
            LOG.error("DCU %s: %s refused at the source: %s", self.dcu_id, what, error)
            self.refused += 1
            self.outbox.refuse(0, payload, f"{what}: {error}")  # seq 0: it never got one
            return []
        if len(reads) > 1:
            half = len(reads) // 2
            return self._pack(now, reads[:half], events) + self._pack(now, reads[half:], [])
        half = len(events) // 2
        return self._pack(now, reads, events[:half]) + self._pack(now, [], events[half:])

    def _queue(self, item: OutboxItem) -> None:
        f = self.faults
        if self._held:
            self.outbox.put(item)
            self.outbox.release_held()  # the held message goes out behind this one
            self._held = False
        elif f.reorder_every and item.seq % f.reorder_every == 0:
            self.outbox.put(item, held=True)  # stored at once: a crash while holding loses nothing
            self._held = True
        else:
            self.outbox.put(item)
        if f.duplicate_every and item.seq % f.duplicate_every == 0:
            self.outbox.put(item)

    def flush_held(self) -> None:
        self.outbox.release_held()
        self._held = False


class DcuHandle:
    """A running DCU (producer thread + uplink thread)."""

    def __init__(self, dcu: SimulatedDcu, publisher: UplinkPublisher) -> None:
        self.dcu = dcu
        self.publisher = publisher
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"dcu-{dcu.dcu_id}", daemon=True)

    @property
    def published_count(self) -> int:
        """Messages the broker acknowledged (a replayed or duplicated message counts each time)."""
        return self.publisher.acked_count

    @property
    def queued_count(self) -> int:
        return len(self.dcu.outbox)

    @property
    def dropped_count(self) -> int:
        return self.dcu.outbox.dropped

    @property
    def refused_count(self) -> int:
        return self.dcu.refused + self.publisher.refused_count

    def start(self) -> DcuHandle:
        self.publisher.start()
        self._thread.start()
        return self

    def _run(self) -> None:
        dcu = self.dcu
        next_ts = dcu.first_read(dcu.clock.now())
        while not self._stop.is_set():
            now = dcu.clock.now()
            cut_off = _inside(dcu.faults.offline, now) or _inside(dcu.faults.power_down, now)
            if cut_off:
                self.publisher.offline.set()
            else:
                self.publisher.offline.clear()
            try:
                next_ts = dcu.step(now, next_ts)
            except Exception:  # a model error must not kill the DCU silently
                LOG.exception("DCU %s: reading the meters failed", dcu.dcu_id)
            self._stop.wait(TICK_S)

    def stop(self, drain_s: float = STOP_DRAIN_S) -> None:
        """Stop reading; give the uplink up to `drain_s` to deliver what is buffered (sent and acknowledged by the
        broker; and, once ingest was heard confirming, confirmed), then disconnect. What is left stays in the
        outbox on disk for the next start."""
        self._stop.set()
        self._thread.join(5)
        self.dcu.flush_held()
        self.publisher.offline.clear()
        deadline = time.monotonic() + drain_s
        while not self.publisher.delivered() and time.monotonic() < deadline:
            time.sleep(0.05)
        # A head end that never confirmed in this run (e.g. an ingest without the protocol) is not waited for.
        while self.publisher.confirmations and not self.publisher.drained() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.publisher.stop()
        self.dcu.outbox.close()

    def __enter__(self) -> DcuHandle:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def start_dcu(
    dcu_id: str,
    meters: Sequence[MeterSource],
    endpoint: BrokerEndpoint,
    clock: Clock,
    interval_s: int = DEFAULT_INTERVAL_S,
    *,
    outbox_dir: Path,
    faults: DcuFaults | None = None,
    start: datetime | None = None,
    outbox_limit: int = DEFAULT_OUTBOX_LIMIT,
    window: int = DEFAULT_WINDOW,
    confirm: bool = True,
    confirm_timeout_s: float = CONFIRM_TIMEOUT_S,
) -> DcuHandle:
    """Start a DCU pushing to `endpoint` (the broker's ``dcu`` account); returns a running handle.

    `outbox_dir`: where its outbox lives (one directory per DCU; a restart with the same directory resumes).
    `confirm`: forget an uplink when ingest confirms it (docs/delivery.md); False: on its PUBACK, for a head end
    that does not confirm. `confirm_timeout_s`: the first re-send of an unconfirmed uplink (doubling)."""
    if interval_s <= 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s}")
    outbox = Outbox(outbox_dir, outbox_limit)
    dcu = SimulatedDcu(
        dcu_id=dcu_id,
        meters=meters,
        clock=clock,
        outbox=outbox,
        interval_s=interval_s,
        faults=faults or DcuFaults(),
        start=start,
        confirm=confirm,
    )
    publisher = UplinkPublisher(
        endpoint=endpoint,
        dcu_id=dcu_id,
        topic=dcu_uplink_topic(dcu_id),
        outbox=outbox,
        window=window,
        confirm=confirm,
        confirm_timeout_s=confirm_timeout_s,
        on_max_packet=dcu.set_max_packet,
    )
    return DcuHandle(dcu, publisher).start()
