"""Read one DLMS/COSEM meter: registers, clock drift, load profile since the last read -> Readings.

``fetch_dlms_meter`` is the entry point. It retries a meter that cannot be reached (ServiceError) a few times with
a growing pause; a meter that answers wrongly (ProtocolError) is not retried, since it would answer the same.

A read is one snapshot: the clock offset and every register carry the instant of the clock GET, so it is only
true while the collector's clock runs steadily through the read. A clock that jumps (an NTP step; ``amr demo``'s
simulated clock, stepped a day at a time while meters are being read) would put the registers of the later
instant, or the midpoint of a clock GET it straddled with a day-sized "offset", under one timestamp. A read during
which the clock jumped is therefore given up at the first answer after the jump and done again in the same
association (``ClockStepped`` if it keeps jumping).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone

from amr.errors import ProtocolError, ServiceError
from amr.messages import Reading
from amr.obis import CHANNELS
from amr.timebase import LOCAL_TZ  # Vietnamese meters keep local time
from collectors import clock_step
from collectors.clock_step import CLOCK_STEP_REREADS
from collectors.dlms import decode
from collectors.dlms.session import DlmsMeterSession

CLASS_DATA = 1
CLASS_REGISTER = 3
CLASS_PROFILE_GENERIC = 7
CLASS_CLOCK = 8
SERIAL_OBIS = "0.0.96.1.0.255"
LOAD_PROFILE_OBIS = "1.0.99.1.0.255"

LOG = logging.getLogger(__name__)


# Without a previous read, fetch this much load profile: a day covers a missed daily read without pulling a
# meter's whole buffer (weeks of entries) over a slow link.
DEFAULT_PROFILE_LOOKBACK = timedelta(days=1)
# Every catalogue register a meter carries as class 3 (status and the clock offset are not registers).
DEFAULT_REGISTERS: tuple[str, ...] = tuple(
    c.obis for c in CHANNELS if c.kind in ("cumulative", "demand", "instantaneous")
)


class ClockStepped(ServiceError):
    """The collector clock jumped during every try of a read: no consistent snapshot could be taken."""


@dataclass(frozen=True, kw_only=True)
class DlmsReadResult:
    serial: str
    readings: list[Reading]
    read_at: datetime  # the instant (collector clock, UTC) the clock offset and the registers are stamped with
    meter_time: datetime  # the meter's clock [UTC] when read
    clock_offset_s: float  # meter clock minus collector clock [s], round trip accounted for
    round_trip_s: float  # of the clock GET [s]
    profile_last_ts: datetime | None  # newest load-profile entry read: pass it as `since` next time
    missing: list[str] = field(default_factory=list)  # configured registers the meter does not have


def fetch_dlms_meter(
    host: str,
    port: int,
    *,
    logical_address: int,
    password: bytes | str | None = None,
    since: datetime | None = None,
    timeout_s: float = 10.0,
    serial: str | None = None,
    registers: Sequence[str] = DEFAULT_REGISTERS,
    read_profile: bool = True,
    meter_tz: timezone = LOCAL_TZ,
    attempts: int = 3,
    retry_pause_s: float = 1.0,
    now: Callable[[], datetime] | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> DlmsReadResult:
    """Read a meter; `since` is the newest load-profile timestamp already stored (entries after it are read).

    `now` is the collector's clock (default: real UTC); pass a simulated clock's ``now`` when the meter runs on
    one: a real-time or a stepped one (see the module docstring; `monotonic` measures the read's real duration).
    Raises ServiceError (unreachable after `attempts`, or ClockStepped), ProtocolError (wrong answers, refused
    association).
    """
    secret = password.encode() if isinstance(password, str) else password
    clock = now or (lambda: datetime.now(UTC))
    for attempt in range(1, attempts + 1):
        try:
            with DlmsMeterSession(
                host, port, logical_address=logical_address, password=secret, timeout_s=timeout_s
            ) as session:
                for _ in range(CLOCK_STEP_REREADS + 1):
                    gets = _SteadyGets(session, clock, monotonic)
                    try:
                        result = _read(
                            gets,
                            serial=serial,
                            registers=registers,
                            since=since,
                            read_profile=read_profile,
                            meter_tz=meter_tz,
                            clock=clock,
                        )
                        gets.check()  # the clock read after the last answer
                        return result
                    except _ClockJumped as jump:
                        LOG.info(
                            "%s: the collector clock jumped %+.0f s during the read; reading again",
                            session.where,
                            jump.step_s,
                        )
                raise ClockStepped(f"{session.where}: the collector clock jumped during {CLOCK_STEP_REREADS + 1} reads")
        except ServiceError:
            if attempt == attempts:
                raise
            time.sleep(retry_pause_s * attempt)
    raise AssertionError("unreachable")


def clock_step_s(started: datetime, ended: datetime, elapsed_s: float) -> float | None:
    """collectors.clock_step.clock_step_s on datetimes."""
    return clock_step.clock_step_s(started.timestamp(), ended.timestamp(), elapsed_s)


class _ClockJumped(Exception):
    def __init__(self, step_s: float) -> None:
        super().__init__(f"the collector clock jumped {step_s:+.0f} s")
        self.step_s = step_s


class _SteadyGets:
    """The session's GETs, each followed by a look at the collector clock: a read during which it jumped is given up
    at the first answer after the jump (``_ClockJumped``) rather than at its end, so it is read again at once."""

    def __init__(
        self, session: DlmsMeterSession, clock: Callable[[], datetime], monotonic: Callable[[], float]
    ) -> None:
        self.session = session
        self.where = session.where
        self._clock = clock
        self._monotonic = monotonic
        self._started = clock()
        self._started_mono = monotonic()

    def check(self) -> None:
        step_s = clock_step_s(self._started, self._clock(), self._monotonic() - self._started_mono)
        if step_s is not None:
            raise _ClockJumped(step_s)

    def get(self, class_id: int, obis: str, attribute: int) -> bytes:
        answer = self.session.get(class_id, obis, attribute)
        self.check()
        return answer

    def get_range(self, class_id: int, obis: str, attribute: int, start: datetime, end: datetime) -> bytes:
        answer = self.session.get_range(class_id, obis, attribute, start, end)
        self.check()
        return answer


def _read(
    session: _SteadyGets,
    *,
    serial: str | None,
    registers: Sequence[str],
    since: datetime | None,
    read_profile: bool,
    meter_tz: timezone,
    clock: Callable[[], datetime],
) -> DlmsReadResult:
    if serial is None:
        raw_serial = decode.parse_data(session.get(CLASS_DATA, SERIAL_OBIS, 2))
        serial = raw_serial.decode("ascii") if isinstance(raw_serial, bytes | bytearray) else str(raw_serial)

    sent_at = clock()
    raw_clock = decode.parse_data(session.get(CLASS_CLOCK, decode.CLOCK_OBIS, 2))
    received_at = clock()
    meter_time = decode.decode_cosem_datetime(bytes(raw_clock), meter_tz)
    offset_s = decode.clock_offset_s(meter_time, sent_at, received_at)
    read_at = sent_at + (received_at - sent_at) / 2
    readings = [Reading(meter=serial, obis=decode.CLOCK_OBIS, ts=read_at, value=offset_s, unit="s")]

    scalers: dict[str, decode.ScalerUnit] = {}
    missing: list[str] = []
    for obis in registers:
        try:
            scalers[obis] = decode.parse_scaler_unit(session.get(CLASS_REGISTER, obis, 3))
            raw_value = decode.parse_data(session.get(CLASS_REGISTER, obis, 2))
        except ProtocolError:
            missing.append(obis)
            continue
        if not isinstance(raw_value, int | float):
            raise ProtocolError(f"{session.where}: register {obis} value is not a number: {raw_value!r}")
        value, unit = decode.scaled_value(obis, raw_value, scalers[obis])
        readings.append(Reading(meter=serial, obis=obis, ts=read_at, value=value, unit=unit))

    profile_last_ts = since
    if read_profile:
        # The profile window is in the meter's own time base (its entries carry meter timestamps), so a meter
        # whose clock differs from ours still delivers the entries since the last read.
        profile = _read_profile(session, serial=serial, since=since, scalers=scalers, meter_tz=meter_tz, now=meter_time)
        readings += profile
        if profile:
            profile_last_ts = max(r.ts for r in profile)
    return DlmsReadResult(
        serial=serial,
        readings=readings,
        read_at=read_at,
        meter_time=meter_time,
        clock_offset_s=offset_s,
        round_trip_s=(received_at - sent_at).total_seconds(),
        profile_last_ts=profile_last_ts,
        missing=missing,
    )


def _read_profile(
    session: _SteadyGets,
    *,
    serial: str,
    since: datetime | None,
    scalers: dict[str, decode.ScalerUnit],
    meter_tz: timezone,
    now: datetime,
) -> list[Reading]:
    columns = decode.parse_capture_objects(session.get(CLASS_PROFILE_GENERIC, LOAD_PROFILE_OBIS, 3))
    for column in columns:
        if column.class_id == CLASS_REGISTER and column.obis not in scalers:
            scalers[column.obis] = decode.parse_scaler_unit(session.get(CLASS_REGISTER, column.obis, 3))
    start = (since + timedelta(seconds=1)) if since is not None else now - DEFAULT_PROFILE_LOOKBACK
    # The bounds go out in the meter's time zone with an explicit deviation; the end leaves room for a meter
    # clock running ahead of ours.
    end = now + timedelta(hours=1)
    raw = session.get_range(
        CLASS_PROFILE_GENERIC, LOAD_PROFILE_OBIS, 2, start.astimezone(meter_tz), end.astimezone(meter_tz)
    )
    buffer = decode.parse_data(raw)
    if not isinstance(buffer, list):
        raise ProtocolError(f"{session.where}: load profile buffer is not an array")
    return decode.profile_readings(
        serial=serial, buffer=buffer, columns=columns, scalers=scalers, meter_tz=meter_tz, after=since
    )
