"""Per-meter communication counters, kept by whoever polls the meter and published in ClientStatus."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from amr.messages import MeterCommStats


def _utc(epoch_s: float) -> datetime:
    return datetime.fromtimestamp(epoch_s, tz=UTC)


@dataclass(kw_only=True)
class MeterStats:
    """Mutable counters of one meter; `snapshot()` gives the wire form."""

    meter: str
    attempts: int = 0
    successes: int = 0
    consecutive_failures: int = 0
    last_attempt_s: float | None = None
    last_success_s: float | None = None
    last_error: str | None = None
    last_error_s: float | None = None
    readings: int = 0
    failures: int = 0  # failed attempts (timeouts included): with successes, the reads' outcomes for /metrics
    timeouts: int = 0
    extra: dict[str, float] = field(default_factory=dict)

    def attempt(self, now_s: float) -> None:
        self.attempts += 1
        self.last_attempt_s = now_s

    def success(self, now_s: float, n_readings: int) -> None:
        self.successes += 1
        self.consecutive_failures = 0
        self.last_success_s = now_s
        self.readings += n_readings

    def failure(self, now_s: float, error: str, *, timeout: bool = False) -> None:
        self.consecutive_failures += 1
        self.failures += 1
        self.last_error = error[:500]
        self.last_error_s = now_s
        if timeout:
            self.timeouts += 1

    def snapshot(self) -> MeterCommStats:
        return MeterCommStats(
            meter=self.meter,
            attempts=self.attempts,
            successes=self.successes,
            last_attempt_at=_utc(self.last_attempt_s) if self.last_attempt_s is not None else None,
            last_success_at=_utc(self.last_success_s) if self.last_success_s is not None else None,
            last_error=self.last_error,
            last_error_at=_utc(self.last_error_s) if self.last_error_s is not None else None,
        )
