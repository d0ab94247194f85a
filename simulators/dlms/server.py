"""DLMS/COSEM server over TCP (IEC 62056-47 wrapper), many meters behind one port.

Addressing: one TCP port serves every meter; each meter is a logical device with its own server SAP (the wrapper's
destination wPort), assigned in order from ``FIRST_LOGICAL_ADDRESS`` (16, the first SAP open for assignment) unless
the caller gives them. A client addresses meter *k* by ``logical_address=handle.addresses[serial]``. A request for
an unknown wPort (or another wrapper version) is discarded, as 62056-47 says: the client sees its own timeout.
(Closing the connection instead would hang dlms-cosem's BlockingTcpIO, which loops on a closed socket.)
Frames: version 0x0001, source wPort, destination wPort, length, then one APDU.

``start_dlms_server`` runs the asyncio server on its own thread and returns a handle with ``.port`` and
``.stop()``, so synchronous callers (the CLI, tests, the demo) can use it; ``DlmsServer`` is the asyncio core.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from amr.errors import ServiceError
from simulators.dlms.objects import CosemMeter, ProfileConfig
from simulators.dlms.session import DlmsSession
from simulators.dlms.source import Clock, MeterSource, WallClock
from simulators.faults import FaultDice

LOG = logging.getLogger(__name__)

WRAPPER_VERSION = 1
WRAPPER_HEADER_BYTES = 8
FIRST_LOGICAL_ADDRESS = 16
MAX_LOGICAL_ADDRESS = 0x3FFF  # wPorts are 16-bit; HDLC-compatible logical addresses stop at 14 bits
START_TIMEOUT_S = 10.0
# A client that stays silent this long loses its connection, as meters drop idle TCP sessions.
IDLE_TIMEOUT_S = 120.0


@dataclass(frozen=True, kw_only=True)
class DlmsDevice:
    """One logical device: the meter, its server SAP and its LLS password (None: no authentication)."""

    meter: MeterSource
    logical_address: int
    password: bytes | None = None


def assign_devices(
    meters: Sequence[MeterSource], passwords: Mapping[str, bytes] | bytes | None = None
) -> list[DlmsDevice]:
    """Meters -> devices with SAPs 16, 17, ...; `passwords` is one password for all or per serial."""
    if len(meters) > MAX_LOGICAL_ADDRESS - FIRST_LOGICAL_ADDRESS + 1:
        raise ValueError(f"at most {MAX_LOGICAL_ADDRESS - FIRST_LOGICAL_ADDRESS + 1} meters per DLMS server")
    devices = []
    for index, meter in enumerate(meters):
        password = passwords if isinstance(passwords, bytes) or passwords is None else passwords.get(meter.serial)
        devices.append(DlmsDevice(meter=meter, logical_address=FIRST_LOGICAL_ADDRESS + index, password=password))
    return devices


def _no_answer_share(meter: MeterSource) -> float:
    # simulators.faults.Faults.no_answer, when the model carries faults: a share of requests gets no reply.
    faults = getattr(meter, "faults", None)
    return float(getattr(faults, "no_answer", 0.0) or 0.0)


@dataclass
class DlmsServer:
    """The asyncio server; one task per TCP connection, sessions keyed by (client SAP, server SAP)."""

    devices: Sequence[DlmsDevice]
    clock: Clock = field(default_factory=WallClock)
    profile: ProfileConfig = field(default_factory=ProfileConfig)
    host: str = "127.0.0.1"
    port: int = 0
    seed: int = 0
    requests_served: int = 0
    _server: asyncio.AbstractServer | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self._by_address = {d.logical_address: d for d in self.devices}
        if len(self._by_address) != len(self.devices):
            raise ValueError("two DLMS devices share a logical address")
        self._models = {d.logical_address: CosemMeter(d.meter, self.profile) for d in self.devices}
        self._dice = FaultDice(self.seed)

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2.0)
            self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sessions: dict[tuple[int, int], DlmsSession] = {}
        try:
            while True:
                header = await asyncio.wait_for(reader.readexactly(WRAPPER_HEADER_BYTES), IDLE_TIMEOUT_S)
                version = int.from_bytes(header[0:2], "big")
                source = int.from_bytes(header[2:4], "big")
                destination = int.from_bytes(header[4:6], "big")
                length = int.from_bytes(header[6:8], "big")
                apdu = await asyncio.wait_for(reader.readexactly(length), IDLE_TIMEOUT_S)
                device = self._by_address.get(destination)
                if version != WRAPPER_VERSION or device is None:
                    LOG.info("DLMS: discarding a frame: wrapper version %s, wPort %s", version, destination)
                    continue
                now = self.clock.now()
                # A pure function of (seed, meter, instant, request), not the n-th draw of a shared generator.
                draws = self._dice.request(device.meter.serial, now.timestamp(), header[2:4] + apdu)
                if draws.hit("no_answer", _no_answer_share(device.meter)):
                    continue
                session = sessions.get((source, destination))
                if session is None:
                    session = DlmsSession(meter=self._models[destination], password=device.password)
                    sessions[(source, destination)] = session
                answer = session.handle(apdu, now)
                self.requests_served += 1
                writer.write(wrap(answer, source=destination, destination=source))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            return
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


def wrap(apdu: bytes, *, source: int, destination: int) -> bytes:
    """One IEC 62056-47 wrapper frame around an APDU."""
    if len(apdu) > 0xFFFF:
        raise ValueError(f"APDU of {len(apdu)} bytes does not fit a wrapper frame")
    return (
        WRAPPER_VERSION.to_bytes(2, "big")
        + source.to_bytes(2, "big")
        + destination.to_bytes(2, "big")
        + len(apdu).to_bytes(2, "big")
        + apdu
    )


class DlmsServerHandle:
    """A running server on its own thread: ``.port``, ``.addresses`` (serial -> logical address), ``.stop()``."""

    def __init__(self, server: DlmsServer) -> None:
        self.server = server
        self._loop = asyncio.new_event_loop()
        self._started = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"dlms-server-{id(self):x}", daemon=True)

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def addresses(self) -> dict[str, int]:
        return {d.meter.serial: d.logical_address for d in self.server.devices}

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self.server.start())
        except BaseException as exc:
            self._error = exc
            self._started.set()
            return
        self._started.set()
        self._loop.run_forever()
        self._loop.run_until_complete(self.server.stop())
        pending = asyncio.all_tasks(self._loop)
        for task in pending:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        self._loop.close()

    def start(self) -> DlmsServerHandle:
        self._thread.start()
        if not self._started.wait(START_TIMEOUT_S) or self._error is not None:
            raise ServiceError(f"DLMS server did not start on {self.server.host}:{self.server.port}: {self._error}")
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    def __enter__(self) -> DlmsServerHandle:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def start_dlms_server(
    meters: Sequence[MeterSource],
    host: str = "127.0.0.1",
    port: int = 0,
    clock: Clock | None = None,
    *,
    passwords: Mapping[str, bytes] | bytes | None = None,
    profile: ProfileConfig | None = None,
    seed: int = 0,
) -> DlmsServerHandle:
    """Serve `meters` (SAPs 16, 17, ... in order) on host:port (0 picks a free port); returns a started handle."""
    server = DlmsServer(
        devices=assign_devices(meters, passwords),
        clock=clock or WallClock(),
        profile=profile or ProfileConfig(),
        host=host,
        port=port,
        seed=seed,
    )
    return DlmsServerHandle(server).start()
