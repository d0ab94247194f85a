"""SimulateProcess runs the simulator command its caller names (here `amr simulate`, as the benchmarks do) in a
process of its own, reads where it listens, and stops it; a command that fails is reported with its error."""

from __future__ import annotations

import sys

import pytest
from pymodbus.client import ModbusTcpClient

from amr.errors import ServiceError
from simulators.modbus.process import SimulateProcess

AMR_SIMULATE = (sys.executable, "-m", "app", "simulate")
CONFIG = "[simulate]\nseed = 3\nmeters_per_gateway = 2\n[simulate.gateways]\ntcp = 1\n"
INPUT_REGISTERS = 34  # the default register map's block


def test_the_named_command_serves_its_listing_and_stops() -> None:
    with SimulateProcess(CONFIG, command=AMR_SIMULATE) as sim:
        [row] = sim.listeners
        assert row["protocol"] == "tcp" and row["units"] == [1, 2]
        client = ModbusTcpClient(row["host"], port=row["port"], timeout=3, retries=0)
        try:
            assert client.connect()
            assert not client.read_input_registers(0, count=INPUT_REGISTERS, device_id=1).isError()
        finally:
            client.close()
        assert sim.cpu_time_s() > 0
    assert sim.proc.poll() is not None  # stopped on leaving the block


def test_a_command_that_exits_names_itself_and_its_error() -> None:
    with pytest.raises(ServiceError, match=r"(?s)-m app simulate exited with 2: .*meters_per_gateway"):
        SimulateProcess("[simulate]\nmeters_per_gateway = 300\n", command=AMR_SIMULATE)
