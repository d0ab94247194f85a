"""Modbus simulator cost: server CPU per meter read.

The simulated gateways (`amr simulate`, values computed from the meter model at the simulated clock, speed 1 and
1440) beside pymodbus's own asyncio ``ModbusTcpServer`` serving a static register block (the baseline: no model,
no encoding), each in its own process, read by the same raw asyncio MBAP client (16 connections, one request in
flight each, 34 input registers per read). Figure: server CPU microseconds per read (from /proc), and the reads/s
a server core could carry at that cost.

    .venv/bin/python -m benchmarks.bench_modbus_sim [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from simulators.modbus.process import SimulateProcess

# `amr simulate` run by this interpreter, in a process of its own
SIMULATE_COMMAND = (sys.executable, "-m", "app", "simulate")
GATEWAYS = 16
METERS = 10
REGISTERS = 34

_PYMODBUS_SERVER = """
import asyncio, sys
from pymodbus.datastore import ModbusDeviceContext, ModbusSequentialDataBlock, ModbusServerContext
from pymodbus.server import StartAsyncTcpServer
devices = {u: ModbusDeviceContext(ir=ModbusSequentialDataBlock(1, list(range(100)))) for u in range(1, 11)}
context = ModbusServerContext(devices=devices, single=False)
asyncio.run(StartAsyncTcpServer(context, address=("127.0.0.1", int(sys.argv[1]))))
"""


def _cpu_s(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _drive(endpoints: list[tuple[str, int, list[int]]], seconds: float) -> int:
    count = 0

    async def one(host: str, port: int, units: list[int], stop: float) -> None:
        nonlocal count
        r, w = await asyncio.open_connection(host, port)
        tid = 0
        while time.monotonic() < stop:
            for u in units:
                tid = (tid + 1) & 0xFFFF
                w.write(struct.pack(">HHHBBHH", tid, 0, 6, u, 4, 0, REGISTERS))
                head = await r.readexactly(7)
                body = await r.readexactly(struct.unpack(">H", head[4:6])[0] - 1)
                if body[0] & 0x80:
                    raise RuntimeError(f"exception reply {body!r}")
                count += 1
        w.close()

    stop = time.monotonic() + seconds
    await asyncio.gather(*(one(h, p, u, stop) for h, p, u in endpoints))
    return count


def _measure(pid: int, endpoints: list[tuple[str, int, list[int]]], seconds: float) -> dict[str, float]:
    asyncio.run(_drive(endpoints, 0.3))  # warm up connections and caches
    c0, t0 = _cpu_s(pid), time.monotonic()
    n = asyncio.run(_drive(endpoints, seconds))
    cpu, wall = _cpu_s(pid) - c0, time.monotonic() - t0
    return {"reads": n, "reads_per_s": n / wall, "server_cpu_us_per_read": 1e6 * cpu / max(n, 1)}


def run(quick: bool) -> dict[str, Any]:
    seconds = 1.5 if quick else 4.0
    results: dict[str, Any] = {}
    port = _free_port()
    base = subprocess.Popen([sys.executable, "-c", _PYMODBUS_SERVER, str(port)], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        results["baseline_pymodbus_static"] = _measure(
            base.pid, [("127.0.0.1", port, list(range(1, METERS + 1)))] * GATEWAYS, seconds
        )
    finally:
        os.kill(base.pid, signal.SIGTERM)
        base.wait(timeout=10)
    for speed in (1, 1440):
        cfg = f"[simulate]\nspeed = {speed}\nmeters_per_gateway = {METERS}\n[simulate.gateways]\ntcp = {GATEWAYS}\n"
        with SimulateProcess(cfg, command=SIMULATE_COMMAND) as sim:
            eps = [(r["host"], r["port"], r["units"]) for r in sim.listeners]
            results[f"simulator_speed_{speed}"] = _measure(sim.pid, eps, seconds)
    b = results["baseline_pymodbus_static"]["server_cpu_us_per_read"]
    for key in ("simulator_speed_1", "simulator_speed_1440"):
        results[key]["cpu_ratio_to_baseline"] = results[key]["server_cpu_us_per_read"] / b
    return results


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short run")
    res = run(ap.parse_args().quick)
    table = Table(title=f"Modbus TCP simulator: {GATEWAYS} gateways x {METERS} meters, {REGISTERS} registers/read")
    table.add_column("server", no_wrap=True)
    for col in ("reads/s (client-bound)", "server CPU us/read", "reads/s per server core", "CPU vs baseline"):
        table.add_column(col, justify="right")
    for name, r in res.items():
        ratio = r.get("cpu_ratio_to_baseline")
        table.add_row(
            name,
            f"{r['reads_per_s']:,.0f}",
            f"{r['server_cpu_us_per_read']:.1f}",
            f"{1e6 / max(r['server_cpu_us_per_read'], 1e-9):,.0f}",
            "1.00 (baseline)" if ratio is None else f"{ratio:.2f}",
        )
    Console().print(table)


if __name__ == "__main__":
    main()
