"""Scheduling DLMS/COSEM meters: each on its own TCP association, a few in parallel, each read in a worker
thread (``collectors.dlms.fetch.fetch_dlms_meter`` is blocking). The newest load-profile timestamp read is kept
per meter (in the spool database, saved only once the readings are durable) so the next read asks only for
newer entries, across restarts too."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from amr.errors import AmrError
from amr.messages import Reading
from collectors.config import DlmsMeterConfig
from collectors.stats import MeterStats

MAX_PARALLEL_DLMS = 4  # associations at once: each holds a thread while its meter answers
BACKOFF_MAX_S = 3600.0


@dataclass(kw_only=True)
class DlmsPoller:
    meters: list[DlmsMeterConfig]
    sink: Callable[[list[Reading], Callable[[], None]], None]  # readings, on_durable
    load_since: Callable[[str], datetime | None]
    save_since: Callable[[str, datetime], None]
    wall_clock: Callable[[], float] = time.time
    stats: list[MeterStats] = field(default_factory=list, init=False)
    meter_reads: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.stats = [MeterStats(meter=m.serial) for m in self.meters]

    async def run(self, stop: asyncio.Event) -> None:
        if not self.meters:
            await stop.wait()
            return
        gate = asyncio.Semaphore(MAX_PARALLEL_DLMS)
        await asyncio.gather(*(self._meter_loop(i, gate, stop) for i in range(len(self.meters))))

    async def _meter_loop(self, i: int, gate: asyncio.Semaphore, stop: asyncio.Event) -> None:
        meter, stats = self.meters[i], self.stats[i]
        while not stop.is_set():
            async with gate:
                ok = await self._poll(meter, stats)
            if ok:
                delay = meter.poll_interval_s
            else:
                delay = min(
                    max(meter.poll_interval_s, 1.0) * 2 ** min(stats.consecutive_failures - 1, 16), BACKOFF_MAX_S
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(delay, 0.01))

    async def _poll(self, meter: DlmsMeterConfig, stats: MeterStats) -> bool:
        from collectors.dlms.fetch import fetch_dlms_meter

        stats.attempt(self.wall_clock())
        clock = self.wall_clock

        def now() -> datetime:
            return datetime.fromtimestamp(clock(), tz=UTC)

        try:
            result = await asyncio.to_thread(
                fetch_dlms_meter,
                meter.host,
                meter.port,
                logical_address=meter.logical_address,
                password=meter.password,
                since=self.load_since(meter.serial),
                timeout_s=meter.timeout_s,
                serial=meter.serial,
                attempts=1,
                now=now,
            )
        except (AmrError, OSError, TimeoutError) as exc:
            stats.failure(self.wall_clock(), str(exc) or type(exc).__name__, timeout=isinstance(exc, TimeoutError))
            return False
        self.meter_reads += 1
        # The read's own instant, not the clock after it: a stepped clock may have moved on since, and the read
        # must not count as one at the new instant (`amr demo` steps on once every meter was read at the current one).
        stats.success(result.read_at.timestamp(), len(result.readings))
        newest = result.profile_last_ts

        def saved() -> None:
            if newest is not None:
                self.save_since(meter.serial, newest)

        self.sink(result.readings, saved)
        return True
