"""Per-meter fault flags with their parameters.

Protocol-level faults (``no_answer``, ``exception_code``/``exception_share``, ``bad_crc``) are consumed by the
protocol servers; the others change what :class:`simulators.meter.SimulatedMeter` reports.
"""

from __future__ import annotations

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
