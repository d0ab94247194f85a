"""Per-meter fault flags with their parameters.

Protocol-level faults (``no_answer``, ``exception_code``/``exception_share``, ``bad_crc``) are consumed by the
protocol servers, through :class:`FaultDice`; the others change what :class:`simulators.meter.SimulatedMeter`
reports.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

MODBUS_EXCEPTION_CODES = (1, 2, 3, 4)


@dataclass(frozen=True, kw_only=True)
class Faults:
    """What is wrong with one meter. The default is a healthy meter.

    - ``no_answer``: share of requests [0..1] that get no reply at all (1.0 = a dead meter: timeouts).
    - ``exception_code`` / ``exception_share``: reply with this Modbus exception code (1..4) to that share of
      requests.
    - ``bad_crc``: share of RTU replies whose CRC is corrupted (ignored by Modbus TCP, which has no CRC).
    - ``drift_s_per_day``: the meter clock runs fast (+) or slow (-) by this many seconds per day since install.
    - ``rollover_at``: the energy total's dial wraps (at ``10**register_digits``) at this instant.
    - ``replaced_at`` / ``replacement_serial``: the meter is swapped at this instant; the new meter has a new
      serial (derived from the old one when not given) and its registers restart from 0.
    - ``stuck_from`` / ``stuck_until``: the energy registers freeze in this window (open-ended when no end).
    - ``spike_share``: share of 30-min intervals in which the import registers read too high by a spike.
    - ``power_down_share``: share of days with one outage (5 min .. 4 h): no energy, 0 V, POWER_DOWN flag.
    """

    no_answer: float = 0.0
    exception_code: int | None = None
    exception_share: float = 1.0
    bad_crc: float = 0.0
    drift_s_per_day: float = 0.0
    rollover_at: datetime | None = None
    replaced_at: datetime | None = None
    replacement_serial: str | None = None
    stuck_from: datetime | None = None
    stuck_until: datetime | None = None
    spike_share: float = 0.0
    power_down_share: float = 0.0

    def __post_init__(self) -> None:
        for name in ("no_answer", "exception_share", "bad_crc", "spike_share", "power_down_share"):
            share = getattr(self, name)
            if not 0.0 <= share <= 1.0:
                raise ValueError(f"fault {name} is a share in [0, 1], got {share}")
        if self.exception_code is not None and self.exception_code not in MODBUS_EXCEPTION_CODES:
            raise ValueError(f"fault exception_code must be one of {MODBUS_EXCEPTION_CODES}, got {self.exception_code}")
        for name in ("rollover_at", "replaced_at", "stuck_from", "stuck_until"):
            t = getattr(self, name)
            if t is not None and t.tzinfo is None:
                raise ValueError(f"fault {name} must be an aware UTC datetime, got {t!r}")

    @property
    def any_protocol_fault(self) -> bool:
        return self.no_answer > 0 or self.exception_code is not None or self.bad_crc > 0


NO_FAULTS = Faults()


def fault_draw(seed: int, meter: str, at_s: float, request: bytes, occurrence: int, fault: str) -> float:
    """A uniform draw in [0, 1) for one fault decision: a pure function of its arguments (no process-dependent
    hashing), so the same request to the same meter at the same simulated instant is decided alike in every run."""
    key = f"{seed}|{meter}|{at_s!r}|{occurrence}|{fault}|".encode() + request
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") / 2.0**64


@dataclass(frozen=True, slots=True)
class FaultDraws:
    """The draws of one request: ``hit(fault, share)`` decides each fault the request may suffer."""

    seed: int
    meter: str
    at_s: float
    request: bytes
    occurrence: int

    def hit(self, fault: str, share: float) -> bool:
        if share <= 0.0:
            return False
        if share >= 1.0:
            return True
        return fault_draw(self.seed, self.meter, self.at_s, self.request, self.occurrence, fault) < share


class FaultDice:
    """Protocol fault decisions of one server as a pure function of (server seed, meter, simulated instant, request
    bytes, how many times this meter got the same request at that instant before).

    A shared generator's n-th draw made a meter's faults depend on how many requests any meter of the server had
    got before (polling speed, retries, reconnects, the other meters' traffic), so which read failed changed from
    run to run. Here every request is one independent uniform draw per fault, as before, so fault shares are
    unchanged; a request repeated at the same instant (a retry under a stepped clock) takes the next draw instead of
    the same fate. Not thread-safe: callers serialise (the servers answer under a lock or on one event loop).
    """

    def __init__(self, seed: int = 0) -> None:
        self.seed = int(seed)
        self._seen: dict[str, tuple[float, dict[bytes, int]]] = {}  # meter -> (its current instant, request counts)

    def request(self, meter: str, at_s: float, request: bytes) -> FaultDraws:
        """The draws for `request` to `meter` at simulated time `at_s` (epoch seconds)."""
        seen = self._seen.get(meter)
        if seen is None or seen[0] != at_s:
            seen = self._seen[meter] = (at_s, {})
        counts = seen[1]
        occurrence = counts.get(request, 0)
        counts[request] = occurrence + 1
        return FaultDraws(self.seed, meter, at_s, request, occurrence)
