"""The Modbus benchmark's RTU bus figure: the fraction computation, and a short run on a real pty bus."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from amr.modbus.registermap import read_register_map
from benchmarks.bench_modbus import (
    BAUD,
    MAP,
    best_fraction,
    bits_per_char,
    rtu_bus,
    wire_fraction,
)
from simulators.clock import SimClock
from simulators.meter import SimulatedMeter
from simulators.modbus import ModbusMeter, start_modbus_gateway
from tests.collectors.fleet import serial_pair


def test_bits_per_character_count_start_parity_and_stop_bits() -> None:
    assert bits_per_char(bytesize=8, parity="N", stopbits=1) == 10
    assert bits_per_char(bytesize=8, parity="E", stopbits=1) == 11  # the Modbus serial default
    assert bits_per_char(bytesize=8, parity="N", stopbits=2) == 11


def test_wire_fraction_is_line_time_over_elapsed_time() -> None:
    # 9,600 baud 8N1 carries 960 bytes a second: 960 bytes in 1 s fill the line, 480 in 1 s half of it.
    assert wire_fraction(960, 1.0, baud=9600, bits=10) == pytest.approx(1.0)
    assert wire_fraction(480, 1.0, baud=9600, bits=10) == pytest.approx(0.5)
    # With parity a byte takes 11 bits: the same bytes take longer.
    assert wire_fraction(480, 1.0, baud=9600, bits=11) == pytest.approx(0.55)
    with pytest.raises(ValueError, match="elapsed"):
        wire_fraction(10, 0.0, baud=9600, bits=10)


def test_best_fraction_leaves_two_silences_per_transaction() -> None:
    # One read of 36 registers: an 8-byte request, a 5 + 72-byte response, two 3.5-character silences.
    assert best_fraction([(8, 77)]) == pytest.approx(85 / 92)
    assert best_fraction([(8, 77), (8, 9)]) == pytest.approx(102 / 116)
    assert 0 < best_fraction([(8, 5)]) < 1


@pytest.mark.slow
def test_rtu_bus_figure_stays_within_the_line() -> None:
    """The benchmark's own measurement on the simulated 9,600-baud bus: it read 1.04 while the simulator
    answered during the request's wire time and without the 3.5-character silence."""
    clock = SimClock(datetime(2026, 10, 1, tzinfo=UTC))
    regmap = read_register_map(MAP)
    meters = [
        ModbusMeter(unit_id=u, meter=SimulatedMeter(serial=f"BS{u:03d}", seed=u), regmap=regmap) for u in (1, 2, 3)
    ]
    with serial_pair() as (sim_end, col_end):
        handle = start_modbus_gateway("rtu-serial", meters, clock=clock, serial_path=sim_end, baud=BAUD)
        try:
            rtu = asyncio.run(rtu_bus(col_end, 3.0))
        finally:
            handle.stop()
    assert rtu["errors"] == 0
    assert rtu["best"] < 1
    assert rtu["fraction"] <= rtu["best"], rtu
    assert rtu["fraction"] > 0.5 * rtu["best"], rtu  # the bus was kept busy: the figure measures something
