"""A simulated DCU as its own process, for kill -9 tests: ``python -m tests.simulators.dcu_proc``.

Its clock is anchored to an absolute real instant, so a restarted DCU continues the same simulated time, as a
real concentrator keeps its clock across a reboot. SIGTERM stops it cleanly; SIGKILL is the crash under test.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from amr.broker.mosquitto import BrokerEndpoint
from simulators.clock import SimClock
from simulators.dcu import start_dcu
from simulators.meter import SimulatedMeter

PASSWORD_VARIABLE = "AMR_TEST_DCU_PASSWORD"


def dcu_meters(prefix: str, count: int) -> list[SimulatedMeter]:
    return [SimulatedMeter(serial=f"{prefix}{i:04d}", seed=300 + i) for i in range(count)]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--dcu", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--outbox", type=Path, required=True)
    p.add_argument("--meters", type=int, default=3)
    p.add_argument("--serial-prefix", required=True)
    p.add_argument("--anchor-real", type=float, required=True)
    p.add_argument("--anchor-sim", required=True)
    p.add_argument("--speed", type=float, required=True)
    a = p.parse_args()
    anchor_sim = datetime.fromisoformat(a.anchor_sim).astimezone(UTC)
    clock = SimClock(anchor_sim + timedelta(seconds=a.speed * (time.time() - a.anchor_real)), speed=a.speed)
    # The password comes in the environment, not on the command line where any user's ps shows it.
    endpoint = BrokerEndpoint(host=a.host, port=a.port, username="dcu", password=os.environ[PASSWORD_VARIABLE])
    # The first boundary is the next one after the anchor; a restarted DCU resumes where its outbox says.
    handle = start_dcu(a.dcu, dcu_meters(a.serial_prefix, a.meters), endpoint, clock, 1800, outbox_dir=a.outbox)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("ready", flush=True)
    stop.wait()
    handle.stop()


if __name__ == "__main__":
    main()
