"""Lean asyncio Modbus clients, one per bus: Modbus TCP (MBAP), RTU frames over TCP, and RTU on a serial line.

Each client carries one request at a time (the bus scheduler guarantees it) and checks that an answer belongs
to its request: transaction id on Modbus TCP, unit id and function code always, CRC on RTU. A late answer to
a request that already timed out is discarded rather than taken for the next one's (by transaction id on
TCP; on RTU framing by flushing what is buffered before each request).

Why not pymodbus's client: for many small reads its per-request overhead dominates the collector's CPU
(see benchmarks/bench_modbus.py); this client is an ``asyncio.Protocol`` parsing frames straight out of one
buffer.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import serial

from amr.errors import ProtocolError
from amr.modbus.framing import (
    MBAP_HEADER_BYTES,
    check_mbap,
    check_rtu_frame,
    parse_read_pdu,
    read_pdu,
    rtu_request,
    rtu_response_length,
    tcp_request,
)

RECONNECT_MIN_S = 0.5
RECONNECT_MAX_S = 30.0
RTU_FAST_T35_S = 0.00175  # Modbus over serial line v1.02, 2.5.1.1: fixed t3.5 above 19,200 baud


def char_time_s(baudrate: int, *, bits_per_char: int = 11) -> float:
    """Seconds one RTU character takes on the wire (start + 8 data + parity or 2nd stop + stop = 11 bits)."""
    return bits_per_char / baudrate


def silence_t35_s(baudrate: int, bits_per_char: int = 11) -> float:
    """The 3.5-character inter-frame silence an RTU bus needs between frames [s]."""
    return RTU_FAST_T35_S if baudrate > 19_200 else 3.5 * char_time_s(baudrate, bits_per_char=bits_per_char)


class ModbusClient(Protocol):
    """What the bus scheduler needs from a client."""

    name: str

    async def read_registers(self, unit_id: int, function: int, address: int, count: int, timeout_s: float) -> bytes:
        """The register bytes (2 per register, big-endian) or an exception (TimeoutError, OSError,
        ProtocolError incl. ModbusException)."""
        ...

    async def close(self) -> None: ...


class _FrameProtocol(asyncio.Protocol):
    """Collects bytes from the socket; the client parses them when a request is waiting."""

    def __init__(self, owner: _TcpBase) -> None:
        self.owner = owner
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.owner._on_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.owner._on_lost(exc)


class _TcpBase:
    """Connection handling shared by both TCP framings: lazy connect, reconnect with back-off."""

    def __init__(self, name: str, host: str, port: int, *, connect_timeout_s: float = 3.0) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.connect_timeout_s = connect_timeout_s
        self._proto: _FrameProtocol | None = None
        self._buf = bytearray()
        self._waiter: asyncio.Future[bytes] | None = None
        self._next_connect_at = 0.0
        self._reconnect_delay_s = RECONNECT_MIN_S
        self.stale_frames = 0  # answers that arrived after their request timed out
        self.bytes_sent = 0
        self.bytes_received = 0

    async def _ensure_connected(self) -> asyncio.Transport:
        if self._proto is not None and self._proto.transport is not None:
            return self._proto.transport
        now = time.monotonic()
        if now < self._next_connect_at:
            raise ConnectionError(
                f"{self.name}: {self.host}:{self.port} unreachable, retrying in {self._next_connect_at - now:.1f} s"
            )
        loop = asyncio.get_running_loop()
        try:
            _, proto = await asyncio.wait_for(
                loop.create_connection(lambda: _FrameProtocol(self), self.host, self.port), self.connect_timeout_s
            )
        except (OSError, TimeoutError) as exc:
            self._next_connect_at = time.monotonic() + self._reconnect_delay_s
            self._reconnect_delay_s = min(self._reconnect_delay_s * 2, RECONNECT_MAX_S)
            raise ConnectionError(f"{self.name}: cannot connect to {self.host}:{self.port}: {exc}") from exc
        self._reconnect_delay_s = RECONNECT_MIN_S
        self._buf.clear()
        self._proto = proto
        assert proto.transport is not None
        return proto.transport

    def _on_lost(self, exc: Exception | None) -> None:
        self._proto = None
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(f"{self.name}: connection closed by peer ({exc})"))

    def _on_data(self, data: bytes) -> None:
        self.bytes_received += len(data)
        self._buf += data
        if self._waiter is not None and not self._waiter.done():
            try:
                frame = self._take_frame()
            except ProtocolError as exc:
                self._waiter.set_exception(exc)
                return
            if frame is not None:
                self._waiter.set_result(frame)

    def _take_frame(self) -> bytes | None:
        raise NotImplementedError

    async def _transact(self, frame: bytes, timeout_s: float) -> bytes:
        transport = await self._ensure_connected()
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bytes] = loop.create_future()
        self._waiter = waiter
        transport.write(frame)
        self.bytes_sent += len(frame)
        try:
            return await asyncio.wait_for(waiter, timeout_s)
        finally:
            self._waiter = None

    async def close(self) -> None:
        if self._proto is not None and self._proto.transport is not None:
            self._proto.transport.close()
        self._proto = None


class TcpClient(_TcpBase):
    """Modbus TCP (MBAP header): a transaction id per request; answers with an old id are stale, dropped."""

    def __init__(self, name: str, host: str, port: int, **kwargs: float) -> None:
        super().__init__(name, host, port, **kwargs)
        self._tid = 0
        self._unit = 0
        self._function = 0
        self._count = 0

    def _take_frame(self) -> bytes | None:
        buf = self._buf
        while len(buf) >= MBAP_HEADER_BYTES:
            length = (buf[4] << 8) | buf[5]
            end = 6 + length
            if len(buf) < end:
                return None
            tid = (buf[0] << 8) | buf[1]
            if tid != self._tid:
                self.stale_frames += 1
                del buf[:end]
                continue
            frame = bytes(buf[:end])
            del buf[:end]
            pdu_len = check_mbap(frame[:MBAP_HEADER_BYTES], transaction_id=self._tid, unit_id=self._unit)
            pdu = frame[MBAP_HEADER_BYTES : MBAP_HEADER_BYTES + pdu_len]
            return parse_read_pdu(pdu, unit_id=self._unit, function=self._function, count=self._count)
        return None

    async def read_registers(self, unit_id: int, function: int, address: int, count: int, timeout_s: float) -> bytes:
        self._tid = (self._tid + 1) & 0xFFFF
        self._unit, self._function, self._count = unit_id, function, count
        return await self._transact(tcp_request(self._tid, unit_id, read_pdu(function, address, count)), timeout_s)


class RtuOverTcpClient(_TcpBase):
    """RTU frames (address + PDU + CRC) through a transparent TCP gateway. RTU has no transaction id: what is
    still buffered when a new request goes out is a late answer and is thrown away."""

    def __init__(self, name: str, host: str, port: int, **kwargs: float) -> None:
        super().__init__(name, host, port, **kwargs)
        self._unit = 0
        self._function = 0
        self._count = 0

    def _take_frame(self) -> bytes | None:
        buf = self._buf
        if len(buf) < 3:
            return None
        end = rtu_response_length(buf[1], buf[2])
        if len(buf) < end:
            return None
        frame = bytes(buf[:end])
        del buf[:end]
        pdu = check_rtu_frame(frame, unit_id=self._unit)
        return parse_read_pdu(pdu, unit_id=self._unit, function=self._function, count=self._count)

    async def read_registers(self, unit_id: int, function: int, address: int, count: int, timeout_s: float) -> bytes:
        if self._buf:
            self.stale_frames += 1
            self._buf.clear()
        self._unit, self._function, self._count = unit_id, function, count
        return await self._transact(rtu_request(unit_id, read_pdu(function, address, count)), timeout_s)


class SerialRtuClient:
    """Modbus RTU on a serial line (pyserial). Blocking I/O runs in one thread per line, so a slow bus never
    blocks the event loop; the 3.5-character silence is kept before every request."""

    def __init__(
        self, name: str, device: str, *, baudrate: int, parity: str = "N", stopbits: int = 1, bytesize: int = 8
    ) -> None:
        self.name = name
        self.device = device
        self.baudrate = baudrate
        bits = 1 + bytesize + (0 if parity == "N" else 1) + stopbits
        self.char_s = char_time_s(baudrate, bits_per_char=bits)
        self.t35_s = silence_t35_s(baudrate, bits_per_char=bits)
        self._port: serial.Serial | None = None
        self._params = {"baudrate": baudrate, "parity": parity, "stopbits": stopbits, "bytesize": bytesize}
        self._last_activity = 0.0
        self._executor: ThreadPoolExecutor | None = None
        self.bytes_sent = 0
        self.bytes_received = 0
        self.stale_frames = 0

    def _open(self) -> serial.Serial:
        if self._port is None:
            try:
                self._port = serial.Serial(self.device, timeout=0, exclusive=True, **self._params)
            except (OSError, ValueError, serial.SerialException) as exc:
                raise ConnectionError(f"{self.name}: cannot open {self.device}: {exc}") from exc
        return self._port

    def _blocking_read(self, frame: bytes, unit_id: int, function: int, count: int, timeout_s: float) -> bytes:
        port = self._open()
        silence = self._last_activity + self.t35_s - time.monotonic()
        if silence > 0:
            time.sleep(silence)
        stale = port.in_waiting
        if stale:
            self.stale_frames += 1
            port.reset_input_buffer()
        sent_at = time.monotonic()
        port.write(frame)
        port.flush()
        self.bytes_sent += len(frame)
        # The request occupies the line until its last bit is out. flush() waits for that on a real UART; a pty
        # returns at once, so wait out the frame time here (a no-op on real hardware).
        on_wire = sent_at + len(frame) * self.char_s - time.monotonic()
        if on_wire > 0:
            time.sleep(on_wire)
        deadline = time.monotonic() + timeout_s
        head = self._read_exactly(port, 3, deadline)
        end = rtu_response_length(head[1], head[2])
        body = self._read_exactly(port, end - 3, deadline)
        self._last_activity = time.monotonic()
        self.bytes_received += end
        pdu = check_rtu_frame(head + body, unit_id=unit_id)
        return parse_read_pdu(pdu, unit_id=unit_id, function=function, count=count)

    def _read_exactly(self, port: serial.Serial, n: int, deadline: float) -> bytes:
        data = bytearray()
        while len(data) < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._last_activity = time.monotonic()
                raise TimeoutError(f"{self.name}: no complete answer ({len(data)} of {n} bytes)")
            port.timeout = remaining
            data += port.read(n - len(data))
        return bytes(data)

    async def read_registers(self, unit_id: int, function: int, address: int, count: int, timeout_s: float) -> bytes:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"rtu-{self.name}")
        frame = rtu_request(unit_id, read_pdu(function, address, count))
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self._blocking_read, frame, unit_id, function, count, timeout_s
        )

    async def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._port is not None:
            with contextlib.suppress(OSError):
                self._port.close()
            self._port = None
