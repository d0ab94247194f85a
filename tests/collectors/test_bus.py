"""Bus scheduling against the real simulators: a dead meter costs at most one timeout per cycle and never
stalls its bus; answers from the wrong unit or with the wrong transaction id are refused."""

from __future__ import annotations

import asyncio
import struct
from datetime import UTC, datetime

import pytest

from amr.errors import ProtocolError
from amr.modbus.framing import crc16, rtu_request
from amr.modbus.registermap import MAPS_DIR
from collectors.modbus.bus import BusPoller
from collectors.modbus.meterread import ModbusMeterReader, read_compiled_map
from collectors.modbus.transport import RtuOverTcpClient, TcpClient
from simulators.clock import SimClock
from simulators.faults import Faults
from tests.collectors.fleet import start_gateway

TIMEOUT_S = 0.25


def _readers(prefix: str, units: list[int]) -> list[ModbusMeterReader]:
    compiled = read_compiled_map((MAPS_DIR / "vn_sim_meter.toml").resolve())
    return [
        ModbusMeterReader(serial=f"{prefix}{u:03d}", unit_id=u, poll_interval_s=0.0, multiplier=1.0, compiled=compiled)
        for u in units
    ]


async def _run_bus(port: int, units: list[int], seconds: float, prefix: str) -> BusPoller:
    bus = BusPoller(
        name="b",
        client=TcpClient("b", "127.0.0.1", port),
        readers=_readers(prefix, units),
        sink=lambda readings: None,
        timeout_s=TIMEOUT_S,
        retries=2,
    )
    stop = asyncio.Event()
    task = asyncio.create_task(bus.run(stop))
    await asyncio.sleep(seconds)
    stop.set()
    await task
    return bus


def test_dead_meter_costs_at_most_one_timeout_per_cycle() -> None:
    clock = SimClock(datetime(2026, 10, 1, tzinfo=UTC))
    gw = start_gateway("tcp", "TBUS", [1, 2, 3, 4], clock, faults={4: Faults(no_answer=1.0)})
    port = gw.handle.port
    assert port is not None
    try:
        healthy_only = asyncio.run(_run_bus(port, [1, 2, 3], 2.0, "TBUS"))
        with_dead = asyncio.run(_run_bus(port, [1, 2, 3, 4], 2.0, "TBUS"))
    finally:
        gw.handle.stop()
    dead = with_dead.meters[3].stats
    healthy = [m.stats for m in with_dead.meters[:3]]
    assert dead.successes == 0 and dead.attempts >= 1
    assert dead.timeouts == dead.attempts, "a timed-out meter was retried within its poll"
    cycles = min(s.successes for s in healthy)
    assert dead.attempts <= cycles + 1, "the dead meter was tried more than once per cycle"
    # Back-off: polled as fast as possible, the healthy meters made hundreds of cycles; the dead one a few.
    assert cycles > 10 * dead.attempts
    # Rate: the dead meter costs at most its timeouts (plus scheduling noise), not a stalled bus.
    rate_alone = min(m.stats.successes for m in healthy_only.meters) / 2.0
    rate_with = cycles / 2.0
    lost_s = dead.attempts * TIMEOUT_S
    assert rate_with >= 0.5 * rate_alone * (2.0 - lost_s) / 2.0


class _WrongAnswers(asyncio.Protocol):
    """A deliberately broken gateway: answers from another unit id, or with an old transaction id first."""

    def __init__(self, mode: str) -> None:
        self.mode = mode

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        payload = bytes((2, 0, 1))  # one register = 1
        if self.mode == "rtu-unit":
            body = bytes((data[0] + 1, 4)) + payload
            self.transport.write(body + struct.pack("<H", crc16(body)))
        elif self.mode == "rtu-crc":
            body = bytes((data[0], 4)) + payload
            self.transport.write(body + b"\x00\x00")
        else:
            tid, _, _, unit = struct.unpack(">HHHB", data[:7])
            pdu = bytes((4,)) + payload
            stale = struct.pack(">HHHB", (tid - 1) & 0xFFFF, 0, len(pdu) + 1, unit) + bytes((4, 2, 0, 99))
            good = struct.pack(">HHHB", tid, 0, len(pdu) + 1, unit if self.mode == "tcp-stale" else unit + 1) + pdu
            self.transport.write(stale + good)


async def _ask(mode: str) -> bytes:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _WrongAnswers(mode), "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    client = RtuOverTcpClient("x", "127.0.0.1", port) if mode.startswith("rtu") else TcpClient("x", "127.0.0.1", port)
    try:
        return await client.read_registers(3, 4, 0, 1, 2.0)
    finally:
        await client.close()
        server.close()


def test_answers_are_checked_against_the_request() -> None:
    assert asyncio.run(_ask("tcp-stale")) == b"\x00\x01"  # the stale transaction id is skipped
    with pytest.raises(ProtocolError, match="unit 4"):
        asyncio.run(_ask("tcp-unit"))
    with pytest.raises(ProtocolError, match="from unit 4"):
        asyncio.run(_ask("rtu-unit"))
    with pytest.raises(ProtocolError, match="CRC"):
        asyncio.run(_ask("rtu-crc"))


def test_rtu_crc_matches_the_specification_example() -> None:
    # Modbus over serial line v1.02, 6.2.2 example frame 'read 10 holding registers of unit 1 from 0'.
    assert rtu_request(1, bytes.fromhex("030000000a")).hex() == "01030000000ac5cd"


class _SteppedOnce:
    """A collector clock that a stepped simulation moves one day on, right after the first read started."""

    def __init__(self, t0_s: float) -> None:
        self.t_s, self.calls = t0_s, 0

    def __call__(self) -> float:
        self.calls += 1
        if self.calls == 2:
            self.t_s += 86_400.0
        return self.t_s


def test_a_read_during_which_the_clock_steps_is_taken_again_at_the_new_instant() -> None:
    sim = SimClock(datetime(2026, 10, 1, tzinfo=UTC))
    gw = start_gateway("tcp", "TSTEP", [1], sim)
    port = gw.handle.port
    assert port is not None
    got: list[list[object]] = []
    clock = _SteppedOnce(datetime(2026, 10, 1, 17, tzinfo=UTC).timestamp())
    bus = BusPoller(name="b", client=TcpClient("b", "127.0.0.1", port), readers=_readers("TSTEP", [1]),
                    sink=got.append, timeout_s=1.0, wall_clock=clock)  # fmt: skip

    async def once() -> bool:
        try:
            return await bus.poll_meter(bus.meters[0])
        finally:
            await bus.client.close()

    try:
        assert asyncio.run(once())
    finally:
        gw.handle.stop()
    stats = bus.meters[0].stats
    (readings,) = got
    stamps = {r.ts.timestamp() for r in readings}  # type: ignore[attr-defined]
    # one instant, the one after the step, and the success is counted at the instant the readings carry
    assert stamps == {clock.t_s} and stats.last_success_s == clock.t_s
    assert stats.attempts == 2  # the straddling read, then the clean one
