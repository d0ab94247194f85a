"""A simulated data concentrator (DCU): reads its meters every interval of the shared simulated clock and pushes
``DcuUplink`` JSON to ``amr/v1/dcu/<dcu id>/uplink`` (QoS 1, broker account ``dcu``); see docs/dcu-uplink.md.

``start_dcu(dcu_id, meters, endpoint, clock, interval_s) -> DcuHandle`` (``.stop()``, ``.published_count``).

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

from amr.broker.mosquitto import BrokerEndpoint
from amr.broker.topics import dcu_uplink_topic
from amr.messages import DcuEvent, encode
from simulators.dcu.outbox import DEFAULT_OUTBOX_LIMIT, Outbox, OutboxItem
from simulators.dcu.publisher import DEFAULT_WINDOW, UplinkPublisher
from simulators.dcu.uplink import interval_reads, make_uplink, next_boundary, power_events, split_reads
from simulators.dlms.source import Clock, MeterSource

LOG = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 1800
TICK_S = 0.02  # real seconds between looks at the simulated clock
STOP_DRAIN_S = 10.0


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
    seq: int = 0
    read_times: list[datetime] = field(default_factory=list)  # boundaries read, in order
    events_sent: list[DcuEvent] = field(default_factory=list)
    _held: OutboxItem | None = None

    def step(self, now: datetime, next_ts: datetime) -> datetime:
        """Read every boundary up to `now` (unless powered down); returns the next boundary to read."""
        if _inside(self.faults.power_down, now):
            return next_ts
        events: list[DcuEvent] = []
        for down, up in self.faults.power_down:
            if up <= now and not any(e.event == "power_down" and e.ts == down for e in self.events_sent):
                events += power_events(self.meters, down, up)
        while next_ts <= now:
            self._emit(now, next_ts, events)
            events = []
            next_ts += timedelta(seconds=self.interval_s)
        if events:
            self._emit(now, None, events)
        return next_ts

    def _emit(self, now: datetime, at: datetime | None, events: list[DcuEvent]) -> None:
        reads = interval_reads(self.meters, at) if at is not None else []
        if at is not None:
            self.read_times.append(at)
        self.events_sent += events
        for index, chunk in enumerate(split_reads(reads)):
            self.seq += 1
            uplink = make_uplink(self.dcu_id, self.seq, now, chunk, events if index == 0 else [])
            self._queue(OutboxItem(seq=self.seq, payload=encode(uplink)))

    def _queue(self, item: OutboxItem) -> None:
        f = self.faults
        if self._held is not None:
            self.outbox.put(item)
            self.outbox.put(self._held)
            self._held = None
        elif f.reorder_every and item.seq % f.reorder_every == 0:
            self._held = item
        else:
            self.outbox.put(item)
        if f.duplicate_every and item.seq % f.duplicate_every == 0:
            self.outbox.put(item)

    def flush_held(self) -> None:
        if self._held is not None:
            self.outbox.put(self._held)
            self._held = None


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

    def start(self) -> DcuHandle:
        self.publisher.start()
        self._thread.start()
        return self

    def _run(self) -> None:
        dcu = self.dcu
        next_ts = dcu.start or next_boundary(dcu.clock.now(), dcu.interval_s)
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
        """Stop reading; give the uplink up to `drain_s` to deliver what is buffered, then disconnect."""
        self._stop.set()
        self._thread.join(5)
        self.dcu.flush_held()
        self.publisher.offline.clear()
        deadline = time.monotonic() + drain_s
        while not self.publisher.drained() and time.monotonic() < deadline:
            time.sleep(0.05)
        self.publisher.stop()

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
    faults: DcuFaults | None = None,
    start: datetime | None = None,
    outbox_limit: int = DEFAULT_OUTBOX_LIMIT,
    window: int = DEFAULT_WINDOW,
) -> DcuHandle:
    """Start a DCU pushing to `endpoint` (the broker's ``dcu`` account); returns a running handle."""
    if interval_s <= 0:
        raise ValueError(f"interval_s must be > 0, got {interval_s}")
    outbox = Outbox(outbox_limit)
    dcu = SimulatedDcu(
        dcu_id=dcu_id,
        meters=meters,
        clock=clock,
        outbox=outbox,
        interval_s=interval_s,
        faults=faults or DcuFaults(),
        start=start,
    )
    publisher = UplinkPublisher(
        endpoint=endpoint, dcu_id=dcu_id, topic=dcu_uplink_topic(dcu_id), outbox=outbox, window=window
    )
    return DcuHandle(dcu, publisher).start()
