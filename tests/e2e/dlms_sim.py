"""A DLMS/COSEM simulator as its own process, for kill -9 tests: ``python -m tests.e2e.dlms_sim``.

Its clock is anchored to an absolute real instant, so a restarted simulator continues the same simulated time
(the meter model is a pure function of time), as a real meter keeps its clock across a reboot.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from datetime import UTC, datetime, timedelta

from simulators.clock import SimClock
from simulators.dlms.server import start_dlms_server
from simulators.meter import SimulatedMeter


def e2e_meters(count: int, seed: int) -> list[SimulatedMeter]:
    return [
        SimulatedMeter(serial=f"E2E-{i:04d}", seed=seed + i, tariff_class="household", city="HN") for i in range(count)
    ]


def anchored_clock(anchor_real_s: float, anchor_sim: datetime, speed: float) -> SimClock:
    return SimClock(anchor_sim + timedelta(seconds=speed * (time.time() - anchor_real_s)), speed=speed)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--meters", type=int, default=4)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--anchor-real", type=float, required=True)
    p.add_argument("--anchor-sim", type=str, required=True)
    p.add_argument("--speed", type=float, required=True)
    a = p.parse_args()
    clock = anchored_clock(a.anchor_real, datetime.fromisoformat(a.anchor_sim).astimezone(UTC), a.speed)
    handle = start_dlms_server(e2e_meters(a.meters, a.seed), port=a.port, clock=clock)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"listening {handle.port}", flush=True)
    stop.wait()
    handle.stop()


if __name__ == "__main__":
    main()
