"""Building the simulated meters of a fleet and their faults, whatever protocol they will speak.

Deterministic from the fleet seed: the same config starts the same meters with the same faults.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from simulators.faults import Faults
from simulators.meter import SimulatedMeter, meter_seed
from simulators.shapes import uniform

# Fault names accepted in [simulate.faults] (share of meters that get each fault).
FAULT_NAMES = ("no_answer", "exception", "bad_crc", "drift", "rollover", "replacement", "stuck", "spikes", "power_down")
CLASS_MIX = (("household", 0.85), ("business", 0.10), ("production", 0.05))  # share of meters per tariff class
_S_CLASS, _S_FAULT = 101, 200


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
