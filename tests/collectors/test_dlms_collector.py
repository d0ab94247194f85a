"""The DLMS collector against the DLMS simulator over real TCP."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from amr.errors import ProtocolError, ServiceError
from amr.messages import Reading
from amr.obis import BY_OBIS
from amr.timebase import LOCAL_TZ
from collectors.config import DlmsMeterConfig
from collectors.dlms import ClockStepped, DlmsAssociationRefused, fetch_dlms_meter
from collectors.dlms.decode import ScalerUnit, clock_offset_s, decode_cosem_datetime, scaled_value
from collectors.dlms.fetch import clock_step_s
from collectors.dlmspoll import DlmsPoller
from simulators.clock import SimClock
from simulators.dlms import REGISTERS, start_dlms_server
from simulators.faults import Faults
from simulators.meter import SimulatedMeter

AT = datetime(2026, 5, 4, 15, 41, 7, tzinfo=UTC)


@pytest.fixture()
def clock() -> SimClock:
    return SimClock.fixed(AT)


@pytest.fixture()
def meter() -> SimulatedMeter:
    return SimulatedMeter(serial="VN26DLMC0001", seed=21, tariff_class="household", city="HCM")


def test_readings_match_the_meter(meter: SimulatedMeter, clock: SimClock) -> None:
    with start_dlms_server([meter], clock=clock, passwords=b"00000000") as server:
        since = AT - timedelta(hours=5)
        result = fetch_dlms_meter(
            "127.0.0.1", server.port, logical_address=16, password="00000000", since=since, timeout_s=5, now=clock.now
        )
        # Nothing new when asked again from the newest entry; two entries after an hour.
        again = fetch_dlms_meter(
            "127.0.0.1",
            server.port,
            logical_address=16,
            password="00000000",
            since=result.profile_last_ts,
            timeout_s=5,
            now=clock.now,
        )
        clock.advance(3600)
        later = fetch_dlms_meter(
            "127.0.0.1",
            server.port,
            logical_address=16,
            password="00000000",
            since=result.profile_last_ts,
            timeout_s=5,
            now=clock.now,
        )
    assert result.serial == "VN26DLMC0001" and result.missing == []
    expected = meter.read_registers(AT)
    registers = {r.obis: r for r in result.readings if r.ts == AT and r.obis != "0.0.1.0.0.255"}
    assert len(registers) == 18  # every class-3 register of the catalogue, incl. 1.0.15.8.0 (import + export)
    for obis, reading in registers.items():
        assert reading.unit == BY_OBIS[obis].unit
        spec = REGISTERS[obis]  # the simulator's resolution: half a step of the register's scaler
        assert reading.value == pytest.approx(expected[obis], abs=0.5 * 10**spec.scaler / spec.base_per_unit + 1e-9)
        assert reading.meter == "VN26DLMC0001"
    profile = [r for r in result.readings if r.ts != AT]
    stamps = sorted({r.ts for r in profile})
    assert stamps == [ts for ts, _ in meter.load_profile(since + timedelta(seconds=1), AT, 1800)]
    assert len(stamps) == 10 and all(since < ts <= AT for ts in stamps)
    by_key = {(r.ts, r.obis): r for r in profile}
    for ts, values in meter.load_profile(since, AT, 1800):
        if ts == since:
            assert (ts, "1.0.1.8.0.255") not in by_key  # `since` itself was read last time
            continue
        reading = by_key[(ts, "1.0.1.8.0.255")]
        assert reading.value == pytest.approx(values["1.0.1.8.0.255"], abs=0.0006)
        assert reading.quality == int(values["0.0.96.10.1.255"])
    assert result.profile_last_ts == stamps[-1]
    assert [r for r in again.readings if r.obis == "1.0.1.8.0.255" and r.ts != AT] == []
    new = sorted(r.ts for r in later.readings if r.obis == "1.0.1.8.0.255" and r.ts != AT + timedelta(hours=1))
    assert new == [datetime(2026, 5, 4, 16, 0, tzinfo=UTC), datetime(2026, 5, 4, 16, 30, tzinfo=UTC)]


def test_clock_drift_is_measured(clock: SimClock) -> None:
    drifting = SimulatedMeter(serial="VN26DLMC0002", seed=22, faults=Faults(drift_s_per_day=-40.0))
    # A running clock on the server and the collector's real clock: the round trip matters here.
    running = SimClock(datetime.now(UTC), 1.0)
    with start_dlms_server([drifting], clock=running) as server:
        result = fetch_dlms_meter("127.0.0.1", server.port, logical_address=16, timeout_s=5, read_profile=False)
    truth = drifting.clock_offset_s(datetime.now(UTC))
    assert truth < -1000
    assert result.clock_offset_s == pytest.approx(truth, abs=0.25)
    [offset] = [r for r in result.readings if r.obis == "0.0.1.0.0.255"]
    assert offset.unit == "s" and offset.value == result.clock_offset_s


def test_wrong_password_and_unreachable_meter(meter: SimulatedMeter, clock: SimClock) -> None:
    with (
        start_dlms_server([meter], clock=clock, passwords=b"right") as server,
        pytest.raises(DlmsAssociationRefused, match="AUTHENTICATION_FAILED"),
    ):
        fetch_dlms_meter("127.0.0.1", server.port, logical_address=16, password="wrong", timeout_s=5)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
    with pytest.raises(ServiceError, match="cannot connect"):
        fetch_dlms_meter("127.0.0.1", closed_port, logical_address=16, timeout_s=1, attempts=2, retry_pause_s=0.05)


def test_a_meter_that_hangs_up_fails_instead_of_hanging() -> None:
    # A peer that accepts and closes at once: dlms-cosem alone would spin on the closed socket.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()

    def hang_up() -> None:
        for _ in range(2):
            conn, _addr = listener.accept()
            conn.recv(100)
            conn.close()

    thread = threading.Thread(target=hang_up, daemon=True)
    thread.start()
    try:
        with pytest.raises(ServiceError):
            fetch_dlms_meter(
                "127.0.0.1", listener.getsockname()[1], logical_address=16, timeout_s=2, retry_pause_s=0.05, attempts=2
            )
    finally:
        listener.close()


def test_decoding_is_pure() -> None:
    assert scaled_value("1.0.1.8.0.255", 1234567, ScalerUnit(scaler=0, unit_code=30)) == (1234.567, "kWh")
    assert scaled_value("1.0.32.7.0.255", 2236, ScalerUnit(scaler=-1, unit_code=35)) == (223.6, "V")
    assert scaled_value("1.0.1.8.0.255", 1234, ScalerUnit(scaler=2, unit_code=30)) == (123.4, "kWh")
    with pytest.raises(ProtocolError, match="catalogue expects"):
        scaled_value("1.0.1.8.0.255", 1, ScalerUnit(scaler=0, unit_code=35))
    utc = bytes.fromhex("07ea0504ff0f29070000" + "0000")  # 2026-05-04 15:41:07, deviation 0 = UTC
    local = bytes.fromhex("07ea0504ff16290700" + "800000")  # 22:41:07, deviation not specified
    assert decode_cosem_datetime(utc, LOCAL_TZ) == AT
    assert decode_cosem_datetime(local, LOCAL_TZ) == AT
    sent = AT
    assert clock_offset_s(AT + timedelta(seconds=10.5), sent, sent + timedelta(seconds=1)) == 10.0


class _SteppingClock:
    """A stepped simulated clock (as `amr demo` drives it) that moves a day on at its `step_at`-th reading, so the
    step falls inside a read. The server (one reading per request) and the collector share it."""

    def __init__(self, at: datetime, step_at: int) -> None:
        self.t = at
        self.step_at = step_at
        self.calls = 0
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            self.calls += 1
            if self.calls == self.step_at:
                self.t += timedelta(days=1)
            return self.t

    def now_s(self) -> float:
        return self.now().timestamp()


def _assert_one_instant(meter: SimulatedMeter, readings: list[Reading], since: datetime) -> datetime:
    """The registers and the clock offset of a read are one snapshot: one timestamp, the meter's values at it; the
    profile entries (on 30-min boundaries, which AT is not) are the meter's captures after `since`."""
    registers = [r for r in readings if r.ts.timestamp() % 1800]
    stamps = sorted({r.ts for r in registers})
    assert len(stamps) == 1, f"one read's registers carry {stamps}"
    [at] = stamps
    assert at in (AT, AT + timedelta(days=1)), f"registers stamped {at}"
    values = meter.read_registers(at)
    assert len(registers) == 19  # 18 registers and the clock offset
    for r in registers:
        if r.obis == "0.0.1.0.0.255":
            assert r.value == pytest.approx(meter.clock_offset_s(at), abs=1.0), f"clock offset at {at}"
        else:
            spec = REGISTERS[r.obis]
            tolerance = 0.5 * 10**spec.scaler / spec.base_per_unit + 1e-9
            assert r.value == pytest.approx(values[r.obis], abs=tolerance), f"{r.obis} at {at}"
    expected = dict(meter.load_profile(since, at, 1800))
    profile = [r for r in readings if not r.ts.timestamp() % 1800]
    assert profile and all(since < r.ts <= at for r in profile)
    for r in profile:
        assert r.value == pytest.approx(expected[r.ts][r.obis], abs=0.0006), f"{r.obis} at {r.ts}"
    return at


@pytest.mark.parametrize("step_at", [2, 3, 4, 5, 6, 7, 30, 60, 80, 84])
def test_a_clock_step_during_a_read_does_not_mix_two_instants(step_at: int) -> None:
    # `amr demo` steps its simulated clock by a day while the collector reads: the clock GET straddling the step
    # gave a reading stamped at the midpoint (local noon) with a 43,200 s offset and the next midnight's registers,
    # and a step after the clock GET stamped later registers' values with the earlier instant. Which meter and
    # which GET a step hit depended on timing, so the bills changed from run to run.
    drifting = SimulatedMeter(
        serial="VN26DLMC0003", seed=23, faults=Faults(drift_s_per_day=-40.0), installed=AT - timedelta(days=30)
    )
    clock = _SteppingClock(AT, step_at)
    since = AT - timedelta(hours=3)
    with start_dlms_server([drifting], clock=clock) as server:
        result = fetch_dlms_meter(
            "127.0.0.1", server.port, logical_address=16, since=since, timeout_s=5, now=clock.now, attempts=1
        )
    assert clock.calls >= step_at, "the step must fall inside the read"
    at = _assert_one_instant(drifting, result.readings, since)
    assert result.read_at == at


@pytest.mark.parametrize("step_at", [5, 7, 40, 85])
def test_the_poller_counts_a_read_at_the_instant_its_readings_carry(step_at: int) -> None:
    # `amr demo` moves its clock on once every meter's last success is at the current instant: a read that began
    # before a step and ended after it must not count as a read at the new instant. A poll here reads the clock 85
    # times (the attempt, one per request, two around the clock GET, one after each answer); 85 is the release: the
    # read is whole at AT and must count at AT.
    meter = SimulatedMeter(serial="VN26DLMC0004", seed=24)
    clock = _SteppingClock(AT, step_at)
    since = AT - timedelta(hours=3)
    got: list[Reading] = []

    def sink(readings: list[Reading], on_durable: Callable[[], None]) -> None:
        got.extend(readings)
        on_durable()

    with start_dlms_server([meter], clock=clock) as server:
        poller = DlmsPoller(
            meters=[
                DlmsMeterConfig(
                    serial=meter.serial, host="127.0.0.1", port=server.port, logical_address=16, timeout_s=5.0
                )
            ],
            sink=sink,
            load_since=lambda _serial: since,
            save_since=lambda _serial, _ts: None,
            wall_clock=clock.now_s,
        )
        assert asyncio.run(poller._poll(poller.meters[0], poller.stats[0]))
    assert clock.calls >= step_at, "the step must fall inside the poll"
    at = _assert_one_instant(meter, got, since)
    assert poller.stats[0].last_success_s == at.timestamp()


def test_clock_step_detection() -> None:
    assert clock_step_s(AT, AT, 30.0) is None  # a stepped clock standing still through a slow read
    assert clock_step_s(AT, AT + timedelta(seconds=2.5), 2.0) is None  # a real clock
    assert clock_step_s(AT, AT + timedelta(days=1), 0.2) == pytest.approx(86_399.8)  # the demo's step
    assert clock_step_s(AT, AT - timedelta(seconds=5), 0.2) == pytest.approx(-5.2)  # stepped back


def test_a_clock_that_keeps_jumping_gives_no_read(meter: SimulatedMeter) -> None:
    class Jumping:
        t = AT

        def now(self) -> datetime:
            self.t += timedelta(minutes=5)
            return self.t

    clock = Jumping()
    with start_dlms_server([meter], clock=clock) as server, pytest.raises(ClockStepped, match="jumped during 3 reads"):
        fetch_dlms_meter("127.0.0.1", server.port, logical_address=16, timeout_s=5, now=clock.now, attempts=1)
