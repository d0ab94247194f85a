"""Building simulated meters for gateways, and the Modbus starters `amr simulate` uses.

Deterministic from the fleet seed: the same config starts the same meters with the same faults.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from amr.errors import ConfigError, ServiceError
from amr.modbus.registermap import RegisterMap, read_register_map
from simulators.clock import SimClock
from simulators.faults import Faults
from simulators.meter import SimulatedMeter, meter_seed
from simulators.modbus.gateway import ModbusMeter
from simulators.modbus.servers import start_modbus_gateway
from simulators.shapes import uniform

# Fault names accepted in [simulate.faults] (share of meters that get each fault).
FAULT_NAMES = ("no_answer", "exception", "bad_crc", "drift", "rollover", "replacement", "stuck", "spikes", "power_down")
CLASS_MIX = (("household", 0.85), ("business", 0.10), ("production", 0.05))  # share of meters per tariff class
_S_CLASS, _S_FAULT = 101, 200


@dataclass(kw_only=True)
class Listener:
    """One running simulator endpoint, as `amr simulate` lists it."""

    protocol: str
    endpoint: str
    units: list[int]
    serials: list[str]
    stop: Callable[[], None]
    extra: dict[str, Any] = field(default_factory=dict)


def faults_for(fleet_seed: int, index: int, shares: Mapping[str, float], start: datetime) -> Faults:
    """Faults of meter ``index`` of a fleet: each fault drawn independently with its share."""
    got: dict[str, Any] = {}

    def hit(k: int, name: str) -> bool:
        return uniform(fleet_seed, _S_FAULT + k, index) < shares.get(name, 0.0)

    # Event faults happen within the first simulated days so a demo sees them.
    when = start + timedelta(hours=6 + 72 * uniform(fleet_seed, _S_FAULT + 50, index))
    if hit(0, "no_answer"):
        got["no_answer"] = 1.0
    if hit(1, "exception"):
        got["exception_code"] = 4
    if hit(2, "bad_crc"):
        got["bad_crc"] = 0.5
    if hit(3, "drift"):
        got["drift_s_per_day"] = 20.0 + 100.0 * uniform(fleet_seed, _S_FAULT + 51, index)
    if hit(4, "rollover"):
        got["rollover_at"] = when
    if hit(5, "replacement"):
        got["replaced_at"] = when
    if hit(6, "stuck"):
        got["stuck_from"], got["stuck_until"] = when, when + timedelta(days=2)
    if hit(7, "spikes"):
        got["spike_share"] = 0.02
    if hit(8, "power_down"):
        got["power_down_share"] = 0.3
    return Faults(**got)


def build_meters(
    *, fleet_seed: int, first_index: int, count: int, city: str, start: datetime, fault_shares: Mapping[str, float],
    serial_prefix: str = "SIM",
) -> list[SimulatedMeter]:  # fmt: skip
    """``count`` meters numbered from ``first_index`` in the fleet (the index also makes the serial)."""
    out = []
    for i in range(first_index, first_index + count):
        u = uniform(fleet_seed, _S_CLASS, i)
        acc, cls = 0.0, CLASS_MIX[0][0]
        for name, share in CLASS_MIX:
            acc += share
            if u < acc:
                cls = name
                break
        c = city if city in ("HN", "HCM") else ("HN" if i % 2 == 0 else "HCM")
        out.append(
            SimulatedMeter(
                serial=f"{serial_prefix}{c}{i:07d}",
                seed=meter_seed(fleet_seed, i),
                tariff_class=cls,
                city=c,
                multiplier=1.0 if cls == "household" else 40.0,
                faults=faults_for(fleet_seed, i, fault_shares, start),
            )
        )
    return out


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
