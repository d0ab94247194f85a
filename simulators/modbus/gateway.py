"""What one gateway answers: unit-id routing, register images from each meter at the shared clock's now,
and the protocol-level faults (no answer, exception replies, bad CRC).

Per request the cost is one dict lookup when the meter's image for the current simulated second is cached,
otherwise one meter read (~20 us) and one image encoding.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

from amr.modbus.codec import ImageEncoder
from amr.modbus.framing import (
    EXC_ILLEGAL_ADDRESS,
    EXC_ILLEGAL_FUNCTION,
    EXC_ILLEGAL_VALUE,
    MAX_READ_REGISTERS,
    exception_pdu,
    read_reply_pdu,
)
from amr.modbus.registermap import RegisterMap
from simulators.clock import SimClock
from simulators.faults import FaultDice
from simulators.meter import SimulatedMeter

_FUNCTIONS = {3: "holding", 4: "input"}
IMAGE_RESOLUTION_S = 1.0  # simulated seconds an image stays valid: meters update their registers about once a second
IMAGE_MIN_REAL_S = 0.005  # ... but at high clock speeds an image lives at least 5 ms of real time (cheap reads)


@dataclass(kw_only=True)
class ModbusMeter:
    """One meter on a gateway: its unit id (1..247), the model and the register map it is served with."""

    unit_id: int
    meter: SimulatedMeter
    regmap: RegisterMap
    _key: float = field(default=-1.0, repr=False)
    _images: dict[str, bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not 1 <= self.unit_id <= 247:
            raise ValueError(f"unit id must be 1..247, got {self.unit_id}")


@dataclass(frozen=True, slots=True)
class Reply:
    """A reply PDU (None: stay silent) and whether its RTU CRC must be corrupted."""

    pdu: bytes | None
    corrupt_crc: bool = False


SILENT = Reply(None)


class Gateway:
    """The meters behind one gateway (or on one RS-485 bus), answering PDUs."""

    def __init__(self, meters: Iterable[ModbusMeter], clock: SimClock, *, seed: int = 0) -> None:
        self.meters: dict[int, ModbusMeter] = {}
        for m in meters:
            if m.unit_id in self.meters:
                raise ValueError(f"unit id {m.unit_id} is used twice on one gateway")
            self.meters[m.unit_id] = m
        self.clock = clock
        self._resolution_s = max(IMAGE_RESOLUTION_S, clock.speed * IMAGE_MIN_REAL_S)
        self._encoders: dict[int, ImageEncoder] = {}
        self._dice = FaultDice(seed)
        self._lock = threading.Lock()  # serial gateways answer from their own thread
        self.requests = 0

    def _encoder(self, regmap: RegisterMap) -> ImageEncoder:
        enc = self._encoders.get(id(regmap))
        if enc is None:
            enc = self._encoders[id(regmap)] = ImageEncoder(regmap)
        return enc

    def image(self, m: ModbusMeter, function: str) -> bytes:
        """Wire bytes of a meter's register image for ``function`` at the clock's now."""
        now = self.clock.now_s()
        key = now // self._resolution_s
        if key != m._key:
            values = m.meter.read_registers_ts(now)
            enc = self._encoder(m.regmap)
            m._images = {f: enc.encode(f, values) for f in enc.sizes}
            m._key = key
        return m._images.get(function, b"")

    def respond(self, unit_id: int, pdu: bytes) -> Reply | None:
        """The reply to ``pdu`` for ``unit_id``; None when no meter has that unit id."""
        m = self.meters.get(unit_id)
        if m is None:
            return None
        with self._lock:
            self.requests += 1
            faults = m.meter.faults
            # A pure function of (seed, meter, instant, request), not the n-th draw of a shared generator.
            draws = self._dice.request(m.meter.serial, self.clock.now_s(), bytes([unit_id]) + pdu)
            if draws.hit("no_answer", faults.no_answer):
                return SILENT
            corrupt = draws.hit("bad_crc", faults.bad_crc)
            if not pdu:
                return SILENT
            fc = pdu[0]
            if faults.exception_code is not None and draws.hit("exception", faults.exception_share):
                return Reply(exception_pdu(fc, faults.exception_code), corrupt)
            function = _FUNCTIONS.get(fc)
            if function is None or len(pdu) != 5:
                return Reply(exception_pdu(fc, EXC_ILLEGAL_FUNCTION), corrupt)
            address, count = struct.unpack_from(">HH", pdu, 1)
            if not 1 <= count <= MAX_READ_REGISTERS:
                return Reply(exception_pdu(fc, EXC_ILLEGAL_VALUE), corrupt)
            image = self.image(m, function)
            if not image:
                return Reply(exception_pdu(fc, EXC_ILLEGAL_FUNCTION), corrupt)
            end = 2 * (address + count)
            if end > len(image):
                return Reply(exception_pdu(fc, EXC_ILLEGAL_ADDRESS), corrupt)
            return Reply(read_reply_pdu(fc, image[2 * address : end]), corrupt)
