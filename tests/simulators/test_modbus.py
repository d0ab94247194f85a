"""Modbus gateway simulators read with pymodbus's client (an independent implementation) over real TCP
sockets and a real socat pty pair."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pymodbus.client import ModbusSerialClient, ModbusTcpClient
from pymodbus.exceptions import ModbusException
from pymodbus.framer import FramerType

from amr.modbus.codec import decode_block, plan_reads
from amr.modbus.framing import crc16
from amr.modbus.registermap import RegisterMap, read_register_map
from simulators.clock import SimClock
from simulators.faults import Faults
from simulators.meter import OBIS_IMPORT, OBIS_RATE, SimulatedMeter
from simulators.modbus import Gateway, GatewayHandle, ModbusMeter, start_modbus_gateway

T0 = datetime(2025, 4, 14, 3, 0, tzinfo=UTC)
VN = read_register_map("vn_sim_meter")
# Tolerance per channel = the map's resolution (scale), plus float noise.
TOL = {r.obis: abs(r.scale) * 0.51 + 1e-9 for r in VN.registers}


def fleet(n: int, regmap: RegisterMap = VN, faults: dict[int, Faults] | None = None, **kw) -> list[ModbusMeter]:
    faults = faults or {}
    return [
        ModbusMeter(
            unit_id=u,
            meter=SimulatedMeter(serial=f"TMB{u:05d}", seed=1000 + u, faults=faults.get(u, Faults()), **kw),
            regmap=regmap,
        )
        for u in range(1, n + 1)
    ]


def tcp_port(h: GatewayHandle) -> int:
    assert h.port is not None, "a TCP gateway has a port"
    return h.port


def read_all(client, unit: int, regmap: RegisterMap = VN) -> dict[str, float]:
    out: dict[str, float] = {}
    for req in plan_reads(regmap):
        fn = client.read_input_registers if req.function == "input" else client.read_holding_registers
        r = fn(req.address, count=req.count, device_id=unit)
        assert not r.isError(), r
        out.update(decode_block(req, r.registers))
    return out


def assert_matches(got: dict[str, float], want: dict[str, float]) -> None:
    for obis, value in got.items():
        assert value == pytest.approx(want[obis], abs=TOL[obis]), obis


@pytest.fixture()
def clock() -> SimClock:
    return SimClock.fixed(T0)


@pytest.fixture()
def pty_pair() -> Iterator[tuple[str, str]]:
    assert shutil.which("socat"), "socat is needed for serial tests (scripts/setup-system.sh installs it)"
    d = Path(tempfile.mkdtemp(prefix="amr-pty-"))
    a, b = d / "sim", d / "client"
    proc = subprocess.Popen(
        ["socat", "-d", "-d", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not (a.exists() and b.exists()):
            assert time.monotonic() < deadline, "socat did not create the pty pair"
            time.sleep(0.02)
        yield str(a), str(b)
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize(("kind", "framer"), [("tcp", FramerType.SOCKET), ("rtu-tcp", FramerType.RTU)])
def test_tcp_kinds_serve_the_right_values_per_unit(clock: SimClock, kind: str, framer: FramerType) -> None:
    meters = fleet(5, tariff_class="business")
    h = start_modbus_gateway(kind, meters, clock=clock)
    client = ModbusTcpClient("127.0.0.1", port=tcp_port(h), framer=framer, timeout=3, retries=0)
    try:
        assert client.connect()
        for m in (meters[0], meters[2], meters[4]):
            assert_matches(read_all(client, m.unit_id), m.meter.read_registers(T0))
        clock.advance(3600)
        assert_matches(read_all(client, 2), meters[1].meter.read_registers(T0 + timedelta(hours=1)))
    finally:
        client.close()
        h.stop()


def test_serial_pty_line_serves_several_units_and_survives_a_dead_one(
    clock: SimClock, pty_pair: tuple[str, str]
) -> None:
    sim_end, client_end = pty_pair
    meters = fleet(4, faults={3: Faults(no_answer=1.0)})
    h = start_modbus_gateway("rtu-serial", meters, clock=clock, serial_path=sim_end, baud=38400)
    client = ModbusSerialClient(client_end, framer=FramerType.RTU, baudrate=38400, timeout=1, retries=0)
    try:
        assert client.connect()
        for m in (meters[0], meters[1]):
            assert_matches(read_all(client, m.unit_id), m.meter.read_registers(T0))
        with pytest.raises(ModbusException):  # the dead meter on the bus: a timeout
            r = client.read_input_registers(0, count=34, device_id=3)
            assert r.isError()
            raise ModbusException("error result")
        for m in (meters[3], meters[0]):  # ... and the bus carries on
            assert_matches(read_all(client, m.unit_id), m.meter.read_registers(T0))
    finally:
        client.close()
        h.stop()


def test_9600_baud_bus_is_as_slow_as_the_bytes_need(clock: SimClock, pty_pair: tuple[str, str]) -> None:
    sim_end, client_end = pty_pair
    h = start_modbus_gateway("rtu-serial", fleet(2), clock=clock, serial_path=sim_end, baud=9600)
    client = ModbusSerialClient(client_end, framer=FramerType.RTU, baudrate=9600, timeout=3, retries=0)
    reads = 6
    try:
        assert client.connect()
        start = time.monotonic()
        for i in range(reads):
            r = client.read_input_registers(0, count=34, device_id=1 + i % 2)
            assert not r.isError()
        elapsed = time.monotonic() - start
    finally:
        client.close()
        h.stop()
    reply_bytes = 1 + 1 + 1 + 68 + 2
    assert elapsed >= reads * reply_bytes * 10 / 9600  # 76 ms per reply at 9600 baud, 8N1


def test_registers_monotonic_while_the_clock_runs_and_rates_sum() -> None:
    clock = SimClock(T0, speed=7200)  # two simulated hours per real second
    meters = fleet(3, tariff_class="production", multiplier=40.0)
    h = start_modbus_gateway("tcp", meters, clock=clock)
    client = ModbusTcpClient("127.0.0.1", port=tcp_port(h), timeout=3, retries=0)
    cumulative = [r.obis for r in VN.registers if r.unit in ("kWh", "kvarh")]
    try:
        assert client.connect()
        prev: dict[int, dict[str, float]] = {}
        for _ in range(15):
            for u in (1, 2, 3):
                regs = read_all(client, u)
                assert sum(regs[o] for o in OBIS_RATE) == pytest.approx(regs[OBIS_IMPORT], abs=0.0035)
                if u in prev:
                    assert all(regs[o] >= prev[u][o] for o in cumulative)
                prev[u] = regs
            time.sleep(0.05)
        assert clock.now() - T0 > timedelta(minutes=30)
    finally:
        client.close()
        h.stop()


def test_rollover_and_replacement_break_monotonicity_as_the_fault_says(clock: SimClock) -> None:
    at = T0 + timedelta(hours=6)
    faults = {1: Faults(rollover_at=at), 2: Faults(replaced_at=at)}
    meters = fleet(2, faults=faults, register_digits=5)
    h = start_modbus_gateway("tcp", meters, clock=clock)
    client = ModbusTcpClient("127.0.0.1", port=tcp_port(h), timeout=3, retries=0)
    try:
        assert client.connect()
        clock.set(at - timedelta(minutes=30))
        before = {u: read_all(client, u)[OBIS_IMPORT] for u in (1, 2)}
        clock.set(at + timedelta(minutes=30))
        after = {u: read_all(client, u)[OBIS_IMPORT] for u in (1, 2)}
    finally:
        client.close()
        h.stop()
    assert before[1] > 99_990 and after[1] < 5  # the 5-digit dial wrapped
    assert after[2] < before[2] and after[2] < 5  # the new meter starts near 0
    assert meters[1].meter.serial_at(at) != meters[1].meter.serial


def test_dead_meter_times_out_while_the_others_answer(clock: SimClock) -> None:
    meters = fleet(3, faults={2: Faults(no_answer=1.0)})
    h = start_modbus_gateway("rtu-tcp", meters, clock=clock)
    client = ModbusTcpClient("127.0.0.1", port=tcp_port(h), framer=FramerType.RTU, timeout=0.5, retries=0)
    try:
        assert client.connect()
        assert not client.read_input_registers(0, count=34, device_id=1).isError()
        start = time.monotonic()
        with pytest.raises(ModbusException):
            r = client.read_input_registers(0, count=34, device_id=2)
            assert r.isError()  # pymodbus versions differ: raise or an error result
            raise ModbusException("error result")
        assert time.monotonic() - start >= 0.45  # it waited for its timeout: nothing came back
        client.close()
        assert client.connect()
        for u in (3, 1):
            assert_matches(read_all(client, u), meters[u - 1].meter.read_registers(T0))
    finally:
        client.close()
        h.stop()


@pytest.mark.parametrize("kind", ["tcp", "rtu-tcp"])
def test_exception_replies_arrive_as_modbus_exceptions(clock: SimClock, kind: str) -> None:
    meters = fleet(2, faults={1: Faults(exception_code=4)})
    h = start_modbus_gateway(kind, meters, clock=clock)
    framer = FramerType.SOCKET if kind == "tcp" else FramerType.RTU
    client = ModbusTcpClient("127.0.0.1", port=tcp_port(h), framer=framer, timeout=3, retries=0)
    try:
        assert client.connect()
        r = client.read_input_registers(0, count=34, device_id=1)
        assert r.isError() and r.exception_code == 4
        r = client.read_input_registers(30, count=10, device_id=2)  # past the end of the map
        assert r.isError() and r.exception_code == 2
        r = client.read_holding_registers(0, count=2, device_id=2)  # this map has no holding registers
        assert r.isError() and r.exception_code == 1
        assert not client.read_input_registers(0, count=34, device_id=2).isError()
    finally:
        client.close()
        h.stop()


def test_too_many_registers_is_illegal_data_value(clock: SimClock) -> None:
    h = start_modbus_gateway("tcp", fleet(1), clock=clock)
    try:
        with socket.create_connection(("127.0.0.1", h.port), timeout=3) as s:
            s.sendall(struct.pack(">HHHBBHH", 7, 0, 6, 1, 4, 0, 126))  # pymodbus refuses to send this itself
            reply = s.recv(64)
        assert reply == struct.pack(">HHHBBB", 7, 0, 3, 1, 0x84, 3)
    finally:
        h.stop()


def test_bad_crc_is_detected_by_the_client(clock: SimClock) -> None:
    meters = fleet(2, faults={1: Faults(bad_crc=1.0)})
    h = start_modbus_gateway("rtu-tcp", meters, clock=clock)
    try:
        # Raw look first: the reply is complete but its CRC does not match.
        with socket.create_connection(("127.0.0.1", h.port), timeout=3) as s:
            req = struct.pack(">BBHH", 1, 4, 0, 2)
            s.sendall(req + struct.pack("<H", crc16(req)))
            data = b""
            while len(data) < 9:
                data += s.recv(64)
            assert data[:3] == bytes((1, 4, 4))
            assert struct.unpack("<H", data[7:9])[0] != crc16(data[:7])
        client = ModbusTcpClient("127.0.0.1", port=tcp_port(h), framer=FramerType.RTU, timeout=1, retries=0)
        try:
            assert client.connect()
            with pytest.raises(ModbusException):
                r = client.read_input_registers(0, count=34, device_id=1)
                assert r.isError()
                raise ModbusException("error result")
        finally:
            client.close()
    finally:
        h.stop()


def test_unknown_unit_on_tcp_gateway_gets_gateway_exception(clock: SimClock) -> None:
    h = start_modbus_gateway("tcp", fleet(1), clock=clock)
    client = ModbusTcpClient("127.0.0.1", port=tcp_port(h), timeout=3, retries=0)
    try:
        assert client.connect()
        r = client.read_input_registers(0, count=2, device_id=99)
        assert r.isError() and r.exception_code == 0x0B
    finally:
        client.close()
        h.stop()


def test_sdm630_map_decodes_a_simulated_sdm630(clock: SimClock) -> None:
    sdm = read_register_map("eastron_sdm630")
    meters = fleet(2, regmap=sdm, tariff_class="business")
    h = start_modbus_gateway("tcp", meters, clock=clock)
    client = ModbusTcpClient("127.0.0.1", port=tcp_port(h), timeout=3, retries=0)
    try:
        assert client.connect()
        want = meters[1].meter.read_registers(T0)
        # Independent decode with pymodbus's own float32 conversion at the published SDM630 addresses.
        r = client.read_input_registers(0x0000, count=12, device_id=2)
        v1, _v2, v3, _i1, i2, _i3 = (
            client.convert_from_registers(r.registers[k : k + 2], data_type=client.DATATYPE.FLOAT32)
            for k in range(0, 12, 2)
        )
        assert v1 == pytest.approx(want["1.0.32.7.0.255"], rel=1e-6)
        assert v3 == pytest.approx(want["1.0.72.7.0.255"], rel=1e-6)
        assert i2 == pytest.approx(want["1.0.51.7.0.255"], rel=1e-6)
        r = client.read_input_registers(0x0034, count=2, device_id=2)
        watts = client.convert_from_registers(r.registers, data_type=client.DATATYPE.FLOAT32)
        assert watts == pytest.approx(want["1.0.1.7.0.255"] * 1000, rel=1e-6)
        r = client.read_input_registers(0x0048, count=2, device_id=2)
        kwh = client.convert_from_registers(r.registers, data_type=client.DATATYPE.FLOAT32)
        assert kwh == pytest.approx(want[OBIS_IMPORT], rel=1e-6)
        # And the map-driven decode agrees on every mapped channel.
        got = read_all(client, 2, sdm)
        for obis, value in got.items():
            assert value == pytest.approx(want[obis], rel=1e-6, abs=1e-6), obis
    finally:
        client.close()
        h.stop()


def test_fault_decisions_depend_on_the_instant_and_request_not_on_other_traffic() -> None:
    # The gateway drew no-answer / bad-CRC / exception decisions from one generator shared by its units: unit 2's
    # polls or an earlier instant's retries changed which of unit 1's requests failed.
    faults = {1: Faults(no_answer=0.3, bad_crc=0.5, exception_code=4, exception_share=0.3), 2: Faults(bad_crc=0.5)}
    pdus = [struct.pack(">BHH", 4, address, 2) for address in range(0, 24, 2)] + [struct.pack(">BHH", 4, 0, 2)] * 3
    clock = SimClock.fixed(T0)
    quiet = Gateway(fleet(2, faults=faults), clock, seed=3)
    alone = [quiet.respond(1, pdu) for pdu in pdus]
    clock.set(T0 - timedelta(minutes=5))
    busy = Gateway(fleet(2, faults=faults), clock, seed=3)
    for pdu in pdus[:5]:
        busy.respond(1, pdu)
        busy.respond(2, pdu)
    clock.set(T0)
    got = []
    for pdu in pdus:
        busy.respond(2, pdu)
        got.append(busy.respond(1, pdu))
    assert got == alone
    kinds = {"silent" if r.pdu is None else ("exception" if r.pdu[0] & 0x80 else "data") for r in alone if r}
    assert kinds == {"silent", "exception", "data"} and any(r and r.corrupt_crc for r in alone)
