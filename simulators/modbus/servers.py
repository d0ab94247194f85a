"""Modbus gateway servers: Modbus TCP (MBAP), RTU-over-TCP (RTU frames with CRC on a TCP socket, as cheap
gateways do) and RTU on a serial device (pyserial; a socat pty in tests).

TCP kinds run on one shared asyncio loop in a background thread; each serial line gets its own thread so the
bus timing (3.5 character times of silence between frames, 10 bits per byte at the baud rate) is honoured.

    handle = start_modbus_gateway("tcp", [ModbusMeter(unit_id=1, meter=m, regmap=rm)], clock=clock)
    handle.port   # the TCP port (0 asks the OS for a free one)
    handle.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal

import serial

from amr.errors import ServiceError
from amr.modbus.framing import (
    EXC_GATEWAY_TARGET_FAILED,
    MBAP_HEADER_BYTES,
    crc_ok,
    exception_pdu,
    mbap,
    rtu_request_length,
    with_crc,
)
from simulators.clock import SimClock
from simulators.modbus.gateway import Gateway, ModbusMeter, Reply

GatewayKind = Literal["tcp", "rtu-tcp", "rtu-serial"]
GATEWAY_KINDS: tuple[str, ...] = ("tcp", "rtu-tcp", "rtu-serial")
BITS_PER_CHAR = 10  # 8N1: start + 8 data + stop
_MAX_BUFFER = 4096  # a client sending garbage cannot grow a connection's buffer without bound
_PACE_CHUNK_BYTES = 8  # write serial replies in small chunks so bytes arrive at the line's rate


def char_time_s(baud: int) -> float:
    return BITS_PER_CHAR / baud


def frame_silence_s(baud: int) -> float:
    """Silence that ends an RTU frame: 3.5 character times, fixed 1.75 ms above 19,200 baud (Modbus serial spec)."""
    return 3.5 * char_time_s(baud) if baud <= 19200 else 0.00175


def _corrupt(frame: bytes) -> bytes:
    return frame[:-2] + bytes((frame[-2] ^ 0x5A, frame[-1] ^ 0xA5))


# ---- the shared asyncio loop for TCP kinds ---------------------------------------------------------------------


class _Loop:
    _lock = threading.Lock()
    _loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def get(cls) -> asyncio.AbstractEventLoop:
        with cls._lock:
            if cls._loop is None or cls._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="modbus-sim-loop", daemon=True).start()
                cls._loop = loop
            return cls._loop


class _TcpProtocol(asyncio.Protocol):
    def __init__(self, gateway: Gateway, rtu: bool, conns: set[asyncio.Transport], pace_baud: int | None) -> None:
        self.gateway = gateway
        self.rtu = rtu
        self.conns = conns
        self.pace_baud = pace_baud
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.conns.add(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            self.conns.discard(self.transport)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > _MAX_BUFFER:
            self.buf.clear()
        if self.rtu:
            self._rtu_frames()
        else:
            self._mbap_frames()

    def _send(self, out: bytes, request_len: int) -> None:
        assert self.transport is not None
        if self.pace_baud:
            # A gateway in front of an RS-485 bus: request and reply both cross the bus before the answer returns.
            delay = (request_len + len(out)) * char_time_s(self.pace_baud)
            asyncio.get_running_loop().call_later(delay, self._write_if_open, out)
        else:
            self.transport.write(out)

    def _write_if_open(self, out: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(out)

    def _mbap_frames(self) -> None:
        buf = self.buf
        while len(buf) >= MBAP_HEADER_BYTES:
            tid = (buf[0] << 8) | buf[1]
            length = (buf[4] << 8) | buf[5]
            if length < 2 or length > 254:
                buf.clear()
                return
            total = 6 + length
            if len(buf) < total:
                return
            unit = buf[6]
            pdu = bytes(buf[MBAP_HEADER_BYTES:total])
            del buf[:total]
            reply = self.gateway.respond(unit, pdu)
            if reply is None:  # nothing behind that unit id: what a TCP gateway says
                reply = Reply(exception_pdu(pdu[0] if pdu else 0, EXC_GATEWAY_TARGET_FAILED))
            if reply.pdu is not None:
                self._send(mbap(tid, unit, reply.pdu), total)

    def _rtu_frames(self) -> None:
        buf = self.buf
        while buf:
            n = rtu_request_length(buf)
            if n is None:
                return
            if n == 0 or (len(buf) >= n and not crc_ok(buf[:n])):
                buf.clear()  # unknown function or line noise: a real slave waits for silence and drops it all
                return
            if len(buf) < n:
                return
            frame = bytes(buf[:n])
            del buf[:n]
            reply = self.gateway.respond(frame[0], frame[1:-2])
            if reply is None or reply.pdu is None:
                continue
            out = with_crc(bytes((frame[0],)) + reply.pdu)
            self._send(_corrupt(out) if reply.corrupt_crc else out, n)


# ---- serial line ----------------------------------------------------------------------------------------------


def _serve_serial(gateway: Gateway, port: serial.Serial, baud: int, turnaround_s: float, stop: threading.Event) -> None:
    silence = frame_silence_s(baud)
    char = char_time_s(baud)
    while not stop.is_set():
        port.timeout = 0.1
        port.inter_byte_timeout = None
        try:
            first = port.read(1)
        except (serial.SerialException, OSError, TypeError):
            if stop.is_set():
                return
            time.sleep(0.05)
            continue
        if not first:
            continue
        # On a pty the whole request is readable at once; on a wire it occupies the line for its characters,
        # and the slave sees its end only after a 3.5-character silence. Reply no sooner (the bus is half
        # duplex): the request is taken to start when its first byte is read (exact on a pty, one character
        # late on a real line, which only delays the reply).
        reply_not_before = time.monotonic()
        frame = _read_rtu_request(port, first, silence, char)
        reply_not_before += len(frame) * char + silence
        n = rtu_request_length(frame)
        if not n or len(frame) < n or not crc_ok(frame[:n]):
            continue  # incomplete, unknown or corrupted frame: discarded, no reply (as a slave does)
        reply = gateway.respond(frame[0], frame[1 : n - 2])
        if reply is None or reply.pdu is None:
            continue
        out = with_crc(bytes((frame[0],)) + reply.pdu)
        if reply.corrupt_crc:
            out = _corrupt(out)
        wait = reply_not_before - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        if turnaround_s:
            time.sleep(turnaround_s)
        # Pace the reply: each byte takes 10 bits at the baud rate, like a real bus.
        start = time.monotonic()
        for i in range(0, len(out), _PACE_CHUNK_BYTES):
            chunk = out[i : i + _PACE_CHUNK_BYTES]
            due = start + (i + len(chunk)) * char  # a byte is there once its last bit is on the wire
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            port.write(chunk)
        rest = start + len(out) * char - time.monotonic()
        if rest > 0:
            time.sleep(rest)  # the line is busy until the last bit is out
        with contextlib.suppress(serial.SerialException, OSError):
            port.flush()


def _read_rtu_request(port: serial.Serial, first: bytes, silence_s: float, char_s: float) -> bytes:
    """Read one request frame by its length (function code), ending early at a silence.

    pyserial's inter_byte_timeout is ignored by its select-based read on Linux, so a frame is read by the
    length the function code gives, each read bounded by the bytes still due plus one silence.
    """
    frame = bytearray(first)
    while True:
        n = rtu_request_length(frame)
        if n is not None and (n == 0 or len(frame) >= n):
            break
        need = 1 if n is None else n - len(frame)
        port.timeout = silence_s + need * char_s + 0.02
        try:
            chunk = port.read(need)
        except (serial.SerialException, OSError, TypeError):
            break
        if not chunk:
            break  # the line went silent: a short frame, discarded by the caller
        frame += chunk
    if rtu_request_length(frame) == 0:  # unknown function code: drain until the line is silent
        port.timeout = silence_s + 0.02
        with contextlib.suppress(serial.SerialException, OSError, TypeError):
            frame += port.read(512)
    return bytes(frame)


# ---- handle and entry point ---------------------------------------------------------------------------------


@dataclass(kw_only=True)
class GatewayHandle:
    """A running gateway: where it listens and which units answer there."""

    kind: str
    gateway: Gateway
    host: str | None = None
    port: int | None = None
    serial_path: str | None = None
    baud: int | None = None
    _stop: list = field(default_factory=list, repr=False)

    @property
    def unit_ids(self) -> list[int]:
        return sorted(self.gateway.meters)

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.port}" if self.port is not None else f"{self.serial_path} @ {self.baud} baud"

    def stop(self) -> None:
        """Stop serving and close every connection (idempotent)."""
        while self._stop:
            self._stop.pop()()


def start_modbus_gateway(
    kind: GatewayKind | str,
    meters: Iterable[ModbusMeter],
    *,
    clock: SimClock,
    host: str = "127.0.0.1",
    port: int = 0,
    serial_path: str | None = None,
    baud: int = 9600,
    pace_baud: int | None = None,
    turnaround_s: float = 0.0,
    seed: int = 0,
) -> GatewayHandle:
    """Start one gateway serving ``meters`` by unit id, values from the meters at ``clock.now()``.

    ``kind``: 'tcp' (Modbus TCP), 'rtu-tcp' (RTU frames over TCP) or 'rtu-serial' (RTU on ``serial_path`` at
    ``baud``). ``pace_baud`` makes a TCP kind answer as slowly as an RS-485 bus behind it would (default: at once).
    ``seed`` drives the random choices of share-based protocol faults.
    """
    gateway = Gateway(meters, clock, seed=seed)
    if kind in ("tcp", "rtu-tcp"):
        loop = _Loop.get()
        conns: set[asyncio.Transport] = set()
        rtu = kind == "rtu-tcp"

        async def start() -> asyncio.base_events.Server:
            return await loop.create_server(
                lambda: _TcpProtocol(gateway, rtu, conns, pace_baud), host, port, reuse_address=True
            )

        try:
            server = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=10)
        except OSError as exc:
            raise ServiceError(f"modbus {kind} gateway cannot listen on {host}:{port}: {exc.strerror}") from exc
        bound = server.sockets[0].getsockname()[1]

        def stop_tcp() -> None:
            async def close() -> None:
                server.close()
                for t in list(conns):
                    t.close()
                await server.wait_closed()

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(close(), loop).result(timeout=10)

        return GatewayHandle(kind=kind, gateway=gateway, host=host, port=bound, _stop=[stop_tcp])
    if kind == "rtu-serial":
        if not serial_path:
            raise ServiceError("an rtu-serial gateway needs serial_path (e.g. one end of a socat pty pair)")
        try:
            line = serial.Serial(serial_path, baudrate=baud, bytesize=8, parity="N", stopbits=1, timeout=0.1)
        except (serial.SerialException, OSError) as exc:
            raise ServiceError(f"modbus rtu-serial gateway cannot open {serial_path}: {exc}") from exc
        stop = threading.Event()
        thread = threading.Thread(
            target=_serve_serial,
            args=(gateway, line, baud, turnaround_s, stop),
            name=f"modbus-rtu-{serial_path}",
            daemon=True,
        )
        thread.start()

        def stop_serial() -> None:
            stop.set()
            thread.join(timeout=5)
            line.close()

        return GatewayHandle(kind=kind, gateway=gateway, serial_path=serial_path, baud=baud, _stop=[stop_serial])
    raise ServiceError(f"unknown modbus gateway kind {kind!r}; expected one of {GATEWAY_KINDS}")
