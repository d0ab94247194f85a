"""The `amr simulate` starter for Modbus gateways ('tcp', 'rtu-tcp', 'rtu-serial'), and the socat pty pair a
serial line needs."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from amr.errors import ConfigError, ServiceError
from amr.modbus.registermap import RegisterMap, read_register_map
from simulators.clock import SimClock
from simulators.listener import Listener
from simulators.meter import SimulatedMeter
from simulators.modbus.gateway import ModbusMeter
from simulators.modbus.servers import start_modbus_gateway


def modbus_meters(meters: list[SimulatedMeter], regmap: RegisterMap) -> list[ModbusMeter]:
    if len(meters) > 247:
        raise ConfigError(f"a Modbus gateway holds at most 247 unit ids, asked for {len(meters)}")
    return [ModbusMeter(unit_id=u, meter=m, regmap=regmap) for u, m in enumerate(meters, start=1)]


class PtyPair:
    """A socat pty pair: the simulator opens ``sim_path``, a collector opens ``client_path``."""

    def __init__(self, directory: Path, name: str) -> None:
        if not shutil.which("socat"):
            raise ServiceError("socat is needed to make a serial pty pair (apt-get install socat)")
        directory.mkdir(parents=True, exist_ok=True)
        self.sim_path = str(directory / f"{name}-sim")
        self.client_path = str(directory / f"{name}")
        self.proc = subprocess.Popen(
            ["socat", f"pty,raw,echo=0,link={self.sim_path}", f"pty,raw,echo=0,link={self.client_path}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while not (os.path.exists(self.sim_path) and os.path.exists(self.client_path)):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.close()
                raise ServiceError(f"socat did not create the pty pair {self.client_path}")
            time.sleep(0.02)

    def close(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=5)


def start_modbus_listener(
    *, protocol: str, meters: list[SimulatedMeter], clock: SimClock, host: str, port: int, options: Mapping[str, Any],
    index: int, run_dir: Path,
) -> Listener:  # fmt: skip
    """The `amr simulate` starter for 'tcp', 'rtu-tcp' and 'rtu-serial' gateways.

    ``options``: register_map (name or path), baud (serial, default 9600), pace_baud (TCP kinds), serial_path
    (rtu-serial: an existing device; otherwise a socat pty pair is made in ``run_dir``).
    """
    regmap = read_register_map(options.get("register_map", "vn_sim_meter"))
    mm = modbus_meters(meters, regmap)
    serials = [m.serial for m in meters]
    units = [m.unit_id for m in mm]
    if protocol == "rtu-serial":
        baud = int(options.get("baud", 9600))
        pair = None
        path = options.get("serial_path")
        if not path:
            pair = PtyPair(run_dir, f"rtu{index}")
            path = pair.sim_path
        try:
            h = start_modbus_gateway("rtu-serial", mm, clock=clock, serial_path=path, baud=baud, seed=index)
        except Exception:
            if pair:
                pair.close()
            raise

        def stop() -> None:
            h.stop()
            if pair:
                pair.close()

        shown = pair.client_path if pair else path
        return Listener(
            protocol=protocol, endpoint=f"{shown} @ {baud} baud", units=units, serials=serials, stop=stop,
            extra={"serial_path": shown, "baud": baud, "register_map": regmap.name},
        )  # fmt: skip
    h = start_modbus_gateway(
        protocol, mm, clock=clock, host=host, port=port, pace_baud=options.get("pace_baud"), seed=index
    )
    return Listener(
        protocol=protocol, endpoint=f"{h.host}:{h.port}", units=units, serials=serials, stop=h.stop,
        extra={"host": h.host, "port": h.port, "register_map": regmap.name},
    )  # fmt: skip
