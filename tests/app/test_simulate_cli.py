"""`amr simulate` as a user runs it: a real process, real ports, a listing, and a clean stop on SIGTERM."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from pymodbus.client import ModbusTcpClient
from pymodbus.framer import FramerType


def test_amr_simulate_serves_listed_gateways_and_stops_on_sigterm(tmp_path: Path) -> None:
    listing = tmp_path / "listing.json"
    cfg = tmp_path / "sim.toml"
    cfg.write_text(
        '[simulate]\nseed = 7\nspeed = 60\nmeters_per_gateway = 3\nstart = "2025-04-01T00:00:00+07:00"\n'
        "[simulate.gateways]\ntcp = 1\nrtu-tcp = 1\n"
        "[simulate.faults]\nno_answer = 0.0\n"
        '[simulate.options.rtu-tcp]\nregister_map = "eastron_sdm630"\n'
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "app", "simulate", "--config", str(cfg),
         "--listing", str(listing)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not listing.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "amr simulate did not start"
            time.sleep(0.1)
        rows = json.loads(listing.read_text())["listeners"]
        assert [r["protocol"] for r in rows] == ["tcp", "rtu-tcp"]
        assert rows[1]["register_map"] == "eastron_sdm630" and rows[0]["units"] == [1, 2, 3]
        for row, framer, count in ((rows[0], FramerType.SOCKET, 34), (rows[1], FramerType.RTU, 12)):
            client = ModbusTcpClient(row["host"], port=row["port"], framer=framer, timeout=3, retries=0)
            try:
                assert client.connect()
                for unit in row["units"]:
                    assert not client.read_input_registers(0, count=count, device_id=unit).isError()
            finally:
                client.close()
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert "stopped 2 simulator(s)" in out and "SIMHN0000000" in out
