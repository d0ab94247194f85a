"""One simulated clock shared by every simulator of a run.

``SimClock(start, speed)`` runs ``speed`` times faster than real time from ``start`` (UTC): with
``speed=1440`` one simulated day passes per real minute. ``SimClock.fixed(t)`` stands still until
``set()`` or ``advance()`` moves it, which is what tests want.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


def _utc(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError(f"SimClock needs an aware UTC datetime, got naive {t!r}")
    return t.astimezone(UTC)


class SimClock:
    """Simulated UTC time: ``start + speed * real seconds elapsed`` (or fixed when ``speed == 0``)."""

    def __init__(self, start: datetime, speed: float = 1.0) -> None:
        if speed < 0:
            raise ValueError(f"SimClock speed must be >= 0, got {speed}")
        self._lock = threading.Lock()
        self._start_s = _utc(start).timestamp()
        self._speed = float(speed)
        self._t0 = time.monotonic()

    @classmethod
    def fixed(cls, t: datetime) -> SimClock:
        """A clock that stands at ``t`` until ``set``/``advance`` moves it."""
        return cls(t, speed=0.0)

    @property
    def speed(self) -> float:
        return self._speed

    def now_s(self) -> float:
        """Simulated time as UTC epoch seconds (the servers' fast path)."""
        return self._start_s + self._speed * (time.monotonic() - self._t0)

    def now(self) -> datetime:
        """Simulated time as an aware UTC datetime."""
        return datetime.fromtimestamp(self.now_s(), tz=UTC)

    def set(self, t: datetime) -> None:
        """Jump to ``t``; the clock keeps its speed from there."""
        with self._lock:
            self._start_s = _utc(t).timestamp()
            self._t0 = time.monotonic()

    def advance(self, seconds: float) -> None:
        """Move simulated time forward by ``seconds`` [s] (on top of any running speed)."""
        with self._lock:
            self._start_s += seconds
