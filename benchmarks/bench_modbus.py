"""Modbus collection throughput.

1. Meter reads per second from ONE collector process against many simulated Modbus TCP gateways (one bus
   task per gateway, one request in flight per gateway, every meter read decoded into Readings), beside
   pymodbus's ``AsyncModbusTcpClient`` doing the same reads (same gateways, one task per gateway, decoded
   with the codec) in the same run, and the ratio.
2. The fraction of the physical limit reached on a simulated 9,600-baud RTU bus (socat pty, the simulator
   paces its replies at the baud rate and answers no sooner than 3.5 characters after the request ended, as a
   half-duplex slave does): the time the counted bytes occupy the line (bytes x bits per character / baud;
   8N1 = 10 bits, 11 with parity) over the elapsed time, counted over whole transactions (from the end of
   one to the end of a later one, so every counted byte's wire time lies inside the window), beside the best
   possible fraction given the mandatory 3.5-character silences between frames. Neither can exceed 1.
   (It read 1.04 while the simulator answered during the request's own wire time, with no silence.)

The simulators run in a separate process so their CPU is not counted against the collector.

    .venv/bin/python -m benchmarks.bench_modbus [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.table import Table

from amr.modbus.codec import decode_block_bytes, plan_reads
from amr.modbus.registermap import MAPS_DIR, read_register_map
from collectors.modbus.bus import BusPoller
from collectors.modbus.meterread import ModbusMeterReader, read_compiled_map
from collectors.modbus.transport import SerialRtuClient, TcpClient

MAP = "vn_sim_meter"
BAUD = 9600
BYTESIZE, PARITY, STOPBITS = 8, "N", 1  # 8N1, as the simulator's serial line is set up
SILENCE_CHARS = 3.5  # Modbus over serial line v1.02, 2.5.1.1: t3.5 between frames
RTU_READ_REQUEST_BYTES = 8  # unit, function, address (2), count (2), CRC (2)
RTU_READ_RESPONSE_OVERHEAD_BYTES = 5  # unit, function, byte count, CRC (2); then 2 bytes per register


def bits_per_char(*, bytesize: int = BYTESIZE, parity: str = PARITY, stopbits: int = STOPBITS) -> int:
    """Bits one RTU character takes on the line: start + data + parity (if any) + stop bits."""
    return 1 + bytesize + (0 if parity == "N" else 1) + stopbits


def wire_fraction(bytes_on_wire: int, elapsed_s: float, *, baud: int, bits: int) -> float:
    """Share of `elapsed_s` during which the line carried `bytes_on_wire` bytes of `bits` bits each.

    Count the bytes of whole transactions and time them from the end of an earlier transaction: then each
    byte's wire time lies inside the window and, on a half-duplex line, the figure cannot exceed 1."""
    if elapsed_s <= 0:
        raise ValueError(f"elapsed time must be > 0, got {elapsed_s}")
    if bytes_on_wire < 0 or baud <= 0 or bits <= 0:
        raise ValueError(f"bytes {bytes_on_wire}, baud {baud} and bits {bits} must be positive")
    return bytes_on_wire * bits / baud / elapsed_s


def best_fraction(frame_bytes: list[tuple[int, int]], *, silence_chars: float = SILENCE_CHARS) -> float:
    """The most of the line's time a poller can fill with bytes: each (request, response) pair of frames is
    followed by a silence, so (bytes) / (bytes + 2 silences per pair)."""
    total = sum(req + resp for req, resp in frame_bytes)
    return total / (total + 2 * silence_chars * len(frame_bytes))


class _TransactionLog:
    """A client wrapper that notes (end time, bytes sent + received so far) after every transaction."""

    def __init__(self, client: SerialRtuClient) -> None:
        self.client = client
        self.name = client.name
        self.ends: list[tuple[float, int]] = []

    async def read_registers(self, unit_id: int, function: int, address: int, count: int, timeout_s: float) -> bytes:
        try:
            return await self.client.read_registers(unit_id, function, address, count, timeout_s)
        finally:
            self.ends.append((time.perf_counter(), self.client.bytes_sent + self.client.bytes_received))

    async def close(self) -> None:
        await self.client.close()

    def window(self, t0: float, t1: float) -> tuple[int, float]:
        """(bytes, seconds) between the first and the last transaction that ended inside [t0, t1]."""
        inside = [e for e in self.ends if t0 <= e[0] <= t1]
        if len(inside) < 2:
            raise RuntimeError(f"fewer than 2 transactions ended in {t1 - t0:.1f} s: the bus is not answering")
        (ta, ba), (tb, bb) = inside[0], inside[-1]
        return bb - ba, tb - ta


def serve(spec: dict[str, Any]) -> None:
    """Child process: start the simulated gateways, print their ports, run until stdin closes."""
    from simulators.clock import SimClock
    from simulators.meter import SimulatedMeter
    from simulators.modbus import ModbusMeter, start_modbus_gateway

    clock = SimClock(datetime(2026, 10, 1, tzinfo=UTC))
    regmap = read_register_map(MAP)
    handles = []
    out: dict[str, Any] = {"tcp": []}
    for g in range(spec["gateways"]):
        meters = [
            ModbusMeter(unit_id=u, meter=SimulatedMeter(serial=f"B{g:03d}{u:03d}", seed=g * 1000 + u), regmap=regmap)
            for u in range(1, spec["meters"] + 1)
        ]
        h = start_modbus_gateway("tcp", meters, clock=clock)
        handles.append(h)
        out["tcp"].append(h.port)
    if spec.get("serial"):
        meters = [
            ModbusMeter(unit_id=u, meter=SimulatedMeter(serial=f"BS{u:03d}", seed=u), regmap=regmap) for u in (1, 2, 3)
        ]
        handles.append(start_modbus_gateway("rtu-serial", meters, clock=clock, serial_path=spec["serial"], baud=BAUD))
    print(json.dumps(out), flush=True)
    sys.stdin.read()
    for h in handles:
        h.stop()


def _readers(prefix: str, n: int) -> list[ModbusMeterReader]:
    compiled = read_compiled_map((MAPS_DIR / f"{MAP}.toml").resolve())
    return [
        ModbusMeterReader(serial=f"{prefix}{u:03d}", unit_id=u, poll_interval_s=0.0, multiplier=1.0, compiled=compiled)
        for u in range(1, n + 1)
    ]


async def lean_tcp(ports: list[int], meters: int, seconds: float) -> tuple[float, float, float]:
    """Meter reads/s, readings/s and collector CPU seconds per meter read with the collector's bus pollers."""
    readings = [0]

    def sink(batch: list[Any]) -> None:
        readings[0] += len(batch)

    buses = [
        BusPoller(name=f"g{i}", client=TcpClient(f"g{i}", "127.0.0.1", p), readers=_readers("B", meters), sink=sink)
        for i, p in enumerate(ports)
    ]
    stop = asyncio.Event()
    tasks = [asyncio.create_task(b.run(stop)) for b in buses]
    await asyncio.sleep(0.5)  # connect and warm up
    n0, r0, t0, c0 = sum(b.meter_reads for b in buses), readings[0], time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    n1, r1, t1, c1 = sum(b.meter_reads for b in buses), readings[0], time.perf_counter(), time.process_time()
    stop.set()
    await asyncio.gather(*tasks)
    return (n1 - n0) / (t1 - t0), (r1 - r0) / (t1 - t0), (c1 - c0) / max(n1 - n0, 1)


async def pymodbus_tcp(ports: list[int], meters: int, seconds: float) -> tuple[float, float]:
    """Meter reads/s with pymodbus's AsyncModbusTcpClient, one task per gateway, decoded with the codec."""
    from pymodbus.client import AsyncModbusTcpClient

    requests = plan_reads(read_register_map(MAP))
    count = [0]
    stop = asyncio.Event()

    async def gateway(port: int) -> None:
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2, retries=0)
        await client.connect()
        try:
            while not stop.is_set():
                for unit in range(1, meters + 1):
                    for req in requests:
                        rr = await client.read_input_registers(req.address, count=req.count, device_id=unit)
                        data = b"".join(w.to_bytes(2, "big") for w in rr.registers)
                        decode_block_bytes(req, data)
                    count[0] += 1
        finally:
            client.close()

    tasks = [asyncio.create_task(gateway(p)) for p in ports]
    await asyncio.sleep(0.5)
    n0, t0, c0 = count[0], time.perf_counter(), time.process_time()
    await asyncio.sleep(seconds)
    n1, t1, c1 = count[0], time.perf_counter(), time.process_time()
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return (n1 - n0) / (t1 - t0), (c1 - c0) / max(n1 - n0, 1)


async def rtu_bus(device: str, seconds: float) -> dict[str, float]:
    client = SerialRtuClient("rtu", device, baudrate=BAUD, parity=PARITY, stopbits=STOPBITS, bytesize=BYTESIZE)
    log = _TransactionLog(client)
    bus = BusPoller(name="rtu", client=log, readers=_readers("BS", 3), sink=lambda r: None, timeout_s=1.0)
    stop = asyncio.Event()
    task = asyncio.create_task(bus.run(stop))
    await asyncio.sleep(1.0)
    n0, t0 = bus.meter_reads, time.perf_counter()
    await asyncio.sleep(seconds)
    n1, t1 = bus.meter_reads, time.perf_counter()
    stop.set()
    await task
    counted, elapsed_s = log.window(t0, t1)
    bits = bits_per_char()
    frames = [
        (RTU_READ_REQUEST_BYTES, RTU_READ_RESPONSE_OVERHEAD_BYTES + 2 * req.count)
        for req in plan_reads(read_register_map(MAP))
    ]  # one meter read of the map
    return {
        "bytes_per_s": counted / elapsed_s,
        "limit_bytes_per_s": BAUD / bits,
        "fraction": wire_fraction(counted, elapsed_s, baud=BAUD, bits=bits),
        "best": best_fraction(frames),
        "reads_per_s": (n1 - n0) / (t1 - t0),
        "errors": float(sum(m.stats.attempts - m.stats.successes for m in bus.meters)),
    }


def run(quick: bool) -> dict[str, Any]:
    from tests.collectors.fleet import serial_pair

    gateways, meters, seconds = (10, 10, 3.0) if quick else (40, 10, 8.0)
    with serial_pair() as (sim_end, col_end):
        child = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "benchmarks.bench_modbus",
                "--serve",
                json.dumps({"gateways": gateways, "meters": meters, "serial": sim_end}),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert child.stdout is not None and child.stdin is not None
            ports = json.loads(child.stdout.readline())["tcp"]
            lean_reads, lean_readings, lean_cpu = asyncio.run(lean_tcp(ports, meters, seconds))
            base_reads, base_cpu = asyncio.run(pymodbus_tcp(ports, meters, seconds))
            rtu = asyncio.run(rtu_bus(col_end, seconds))
        finally:
            if child.stdin is not None:
                child.stdin.close()
            child.wait(30)
    return {
        "gateways": gateways,
        "meters_per_gateway": meters,
        "seconds": seconds,
        "tcp_reads_per_s": lean_reads,
        "tcp_readings_per_s": lean_readings,
        "pymodbus_reads_per_s": base_reads,
        "ratio": lean_reads / base_reads if base_reads else float("inf"),
        "tcp_cpu_us_per_read": lean_cpu * 1e6,
        "pymodbus_cpu_us_per_read": base_cpu * 1e6,
        "cpu_ratio": base_cpu / lean_cpu if lean_cpu else float("inf"),
        "rtu": rtu,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run (10 gateways, 3 s each)")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(json.loads(args.serve))
        return
    r = run(args.quick)
    console = Console()
    table = Table(title=f"Modbus collection: {r['gateways']} TCP gateways x {r['meters_per_gateway']} meters ({MAP})")
    table.add_column("measure")
    table.add_column("collector", justify="right")
    table.add_column("pymodbus client (baseline)", justify="right")
    table.add_column("ratio", justify="right")
    table.add_row(
        "meter reads/s over TCP",
        f"{r['tcp_reads_per_s']:,.0f}",
        f"{r['pymodbus_reads_per_s']:,.0f}",
        f"{r['ratio']:.2f}x",
    )
    table.add_row(
        "collector CPU per meter read [us]",
        f"{r['tcp_cpu_us_per_read']:,.0f}",
        f"{r['pymodbus_cpu_us_per_read']:,.0f}",
        f"{r['cpu_ratio']:.2f}x less",
    )
    table.add_row(
        "reads/s one core could carry (1 / CPU per read)",
        f"{1e6 / r['tcp_cpu_us_per_read']:,.0f}",
        f"{1e6 / r['pymodbus_cpu_us_per_read']:,.0f}",
        "",
    )
    table.add_row("readings/s over TCP", f"{r['tcp_readings_per_s']:,.0f}", "", "")
    rtu = r["rtu"]
    table.add_row(
        f"RTU {BAUD} baud: bytes/s on the wire",
        f"{rtu['bytes_per_s']:,.1f}",
        f"limit {rtu['limit_bytes_per_s']:,.0f}",
        f"{rtu['fraction']:.1%}",
    )
    table.add_row("RTU: best possible (3.5-char silences)", f"{rtu['best']:.1%}", "", "")
    table.add_row("RTU: meter reads/s, errors", f"{rtu['reads_per_s']:.2f}", f"errors {rtu['errors']:.0f}", "")
    console.print(table)


if __name__ == "__main__":
    main()
