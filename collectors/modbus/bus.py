"""Bus-aware polling: one asyncio task per bus (a serial line or a gateway), one request in flight on it.

Meters on a bus are polled in order of their due time. Rules that keep one bad meter from hurting the rest:

- A timeout is never retried within the same poll: the meter's poll ends there and the bus moves on, so a
  silent meter costs at most one timeout each time it is due.
- A meter that failed is backed off: its next attempt waits ``max(poll_interval_s, BACKOFF_BASE_S) *
  2**(failures-1)``, capped at the gateway's ``max_backoff_s``; one answer resets it.
- Garbled or refused answers (CRC, wrong unit or function, Modbus exception 5/6 'busy') are retried
  ``retries`` times, since they cost little bus time.
- ``inter_request_delay_s`` is kept between any two requests on the bus (RTU-over-TCP gateways need it).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from amr.errors import ProtocolError
from amr.messages import Reading
from amr.modbus.framing import ModbusException
from collectors.clock_step import CLOCK_STEP_REREADS, clock_step_s
from collectors.modbus.transport import ModbusClient
from collectors.stats import MeterStats

BACKOFF_BASE_S = 1.0  # the shortest back-off, so that 'poll as fast as possible' meters still back off
RETRYABLE_EXCEPTIONS = {5, 6}  # acknowledge / server busy: the device will answer later


@dataclass(frozen=True, kw_only=True)
class Block:
    """One read request: `count` registers from `address` with `function` (3 holding, 4 input)."""

    function: int
    address: int
    count: int


class MeterReader(Protocol):
    """What the bus needs to poll one meter: its requests and how to turn the answers into readings.

    Built from a register map by :func:`collectors.modbus.meterread.build_reader`; any object with these
    attributes works (the tests use small ones)."""

    @property
    def serial(self) -> str: ...
    @property
    def unit_id(self) -> int: ...
    @property
    def poll_interval_s(self) -> float: ...
    @property
    def blocks(self) -> Sequence[Block]: ...

    def decode(self, answers: Sequence[bytes], ts_s: float) -> list[Reading]: ...


ReadingSink = Callable[[list[Reading]], None]


@dataclass(kw_only=True)
class _MeterState:
    reader: MeterReader
    stats: MeterStats
    due_s: float = 0.0  # monotonic


@dataclass(kw_only=True)
class BusPoller:
    """Polls the meters of one bus forever (until `stop` is set)."""

    name: str
    client: ModbusClient
    readers: Sequence[MeterReader]
    sink: ReadingSink
    timeout_s: float = 1.0
    retries: int = 1
    inter_request_delay_s: float = 0.0
    max_backoff_s: float = 300.0
    wall_clock: Callable[[], float] = time.time
    meters: list[_MeterState] = field(default_factory=list, init=False)
    requests: int = field(default=0, init=False)
    meter_reads: int = field(default=0, init=False)
    _last_request_end: float = field(default=0.0, init=False)

    def __post_init__(self) -> None:
        self.meters = [_MeterState(reader=r, stats=MeterStats(meter=r.serial)) for r in self.readers]

    @property
    def stats(self) -> list[MeterStats]:
        return [m.stats for m in self.meters]

    async def run(self, stop: asyncio.Event) -> None:
        start = time.monotonic()
        heap: list[tuple[float, int]] = []
        for i, m in enumerate(self.meters):
            m.due_s = start
            heap.append((start, i))
        heapq.heapify(heap)
        if not heap:
            await stop.wait()
            return
        try:
            while not stop.is_set():
                due, i = heap[0]
                delay = due - time.monotonic()
                if delay > 0:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    continue
                m = self.meters[i]
                ok = await self.poll_meter(m)
                now = time.monotonic()
                interval = m.reader.poll_interval_s
                if ok:
                    # Keep the schedule (due + interval) but never queue up missed polls after a stall.
                    m.due_s = max(due + interval, now) if interval > 0 else now
                else:
                    backoff = max(interval, BACKOFF_BASE_S) * 2 ** min(m.stats.consecutive_failures - 1, 16)
                    m.due_s = now + min(backoff, self.max_backoff_s)
                heapq.heapreplace(heap, (m.due_s, i))
        finally:
            await self.client.close()

    async def _read_blocks(self, m: _MeterState) -> list[bytes] | None:
        """Every block's answer, or None after recording the failure."""
        reader = m.reader
        answers: list[bytes] = []
        for block in reader.blocks:
            tries = 0
            while True:
                try:
                    answers.append(await self._request(reader.unit_id, block))
                    break
                except TimeoutError:
                    m.stats.failure(self.wall_clock(), f"timeout after {self.timeout_s} s", timeout=True)
                    return None
                except ModbusException as exc:
                    if exc.code in RETRYABLE_EXCEPTIONS and tries < self.retries:
                        tries += 1
                        continue
                    m.stats.failure(self.wall_clock(), str(exc))
                    return None
                except ProtocolError as exc:
                    if tries < self.retries:
                        tries += 1
                        continue
                    m.stats.failure(self.wall_clock(), str(exc))
                    return None
                except (ConnectionError, OSError) as exc:
                    m.stats.failure(self.wall_clock(), str(exc) or type(exc).__name__)
                    return None
        return answers

    async def _request(self, unit_id: int, block: Block) -> bytes:
        gap = self._last_request_end + self.inter_request_delay_s - time.monotonic()
        if gap > 0:
            await asyncio.sleep(gap)
        self.requests += 1
        try:
            return await self.client.read_registers(unit_id, block.function, block.address, block.count, self.timeout_s)
        finally:
            if self.inter_request_delay_s:
                self._last_request_end = time.monotonic()

    async def poll_meter(self, m: _MeterState) -> bool:
        """Read every block of one meter; on success hand its readings to the sink. Returns success.

        The readings carry the collector clock at the start of the read; a read during which that clock jumped (a
        stepped simulated clock, an NTP step) mixed two instants and is taken again (collectors.clock_step)."""
        reader = m.reader
        for _ in range(CLOCK_STEP_REREADS + 1):
            ts_s = self.wall_clock()
            started = time.monotonic()
            m.stats.attempt(ts_s)
            answers = await self._read_blocks(m)
            if answers is None:
                return False
            if clock_step_s(ts_s, self.wall_clock(), time.monotonic() - started) is None:
                break
        else:
            m.stats.failure(self.wall_clock(), f"the collector clock jumped during {CLOCK_STEP_REREADS + 1} reads")
            return False
        try:
            readings = reader.decode(answers, ts_s)
        except (ValueError, ProtocolError) as exc:
            m.stats.failure(self.wall_clock(), f"decode: {exc}")
            return False
        self.meter_reads += 1
        m.stats.success(ts_s, len(readings))  # the instant the readings carry, not when the read ended
        if readings:
            self.sink(readings)
        return True
