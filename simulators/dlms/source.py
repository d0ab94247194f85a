"""What the DLMS server and the DCU need from a simulated meter: any object with these members serves.

`simulators.meter.SimulatedMeter` has them; the protocol layers depend only on this shape so they can be tested
and reused with any model (a replayed real meter, a fixed table).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Protocol


class MeterSource(Protocol):
    """A meter's data. All times are timezone-aware; values are in the catalogue unit (amr.obis), keyed by full
    OBIS code."""

    @property
    def serial(self) -> str: ...

    def read_registers(self, at: datetime) -> Mapping[str, float]:
        """Register values at true time `at`: cumulative energies [kWh, kvarh], instantaneous values."""
        ...

    def load_profile(
        self, start: datetime, end: datetime, interval_s: int
    ) -> Sequence[tuple[datetime, Mapping[str, float]]]:
        """Interval captures (end-of-interval timestamps) between start and end."""
        ...

    def clock_offset_s(self, at: datetime) -> float:
        """How far the meter's own clock is ahead of true time at `at` [s] (negative: behind)."""
        ...


class Clock(Protocol):
    """A source of the current (possibly simulated) time; `simulators.clock.SimClock` is one."""

    def now(self) -> datetime: ...


class WallClock:
    """Real UTC time, for servers run without a simulated clock."""

    def now(self) -> datetime:
        return datetime.now(UTC)
