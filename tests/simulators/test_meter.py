"""The simulated meter: determinism, monotonic registers, TOU rates, consumption shape, and its faults."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from amr.obis import BY_OBIS, STATUS_BITS
from amr.timebase import DAY_S, LOCAL_TZ_NAME
from simulators.clock import SimClock
from simulators.faults import Faults
from simulators.meter import OBIS_IMPORT, OBIS_RATE, SimulatedMeter
from simulators.shapes import HOUSEHOLD_BUCKET_SHARES, tou_rate_at

HCM = ZoneInfo(LOCAL_TZ_NAME)  # the tz database, not the fixed offset the meter uses
T0 = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday
ENERGY = ("1.0.1.8.0.255", *OBIS_RATE, "1.0.2.8.0.255", "1.0.3.8.0.255", "1.0.4.8.0.255")


def meter(**kw) -> SimulatedMeter:
    args = {"serial": "T-METER-1", "seed": 42, "tariff_class": "household", "city": "HN"}
    args.update(kw)
    return SimulatedMeter(**args)


def test_every_catalogue_channel_is_reported_in_range() -> None:
    regs = meter(tariff_class="business").read_registers(T0 + timedelta(hours=3))
    assert set(regs) == set(BY_OBIS)
    assert 200 < regs["1.0.32.7.0.255"] < 240 and 200 < regs["1.0.72.7.0.255"] < 240
    assert 49.9 < regs["1.0.14.7.0.255"] < 50.1
    assert 0.7 < regs["1.0.13.7.0.255"] < 1.0
    assert regs["1.0.1.7.0.255"] > 0 and regs["1.0.31.7.0.255"] > 0


def test_deterministic_and_independent_of_call_order() -> None:
    times = [T0 + timedelta(days=d, minutes=37 * d) for d in range(0, 400, 23)]
    a, b = meter(), meter()
    forward = [a.read_registers(t) for t in times]
    backward = [b.read_registers(t) for t in reversed(times)][::-1]
    assert forward == backward
    assert meter(seed=43).read_registers(times[3]) != forward[3]


def test_registers_monotonic_and_rates_sum_to_total() -> None:
    m = meter(tariff_class="production", multiplier=40.0)
    prev = None
    for k in range(0, 24 * 40):
        regs = m.read_registers(T0 + timedelta(minutes=61 * k))
        assert sum(regs[o] for o in OBIS_RATE) == pytest.approx(regs[OBIS_IMPORT], rel=1e-12)
        if prev is not None:
            for o in ENERGY:
                assert regs[o] >= prev[o] - 1e-9, o
        prev = regs


def test_rates_follow_vietnamese_tou_windows_in_local_time() -> None:
    m = meter(tariff_class="business", seed=7)
    start = datetime(2025, 3, 8, 0, 0, tzinfo=HCM)  # Saturday local, then Sunday
    for minute in range(0, 2 * 1440, 10):
        t0 = (start + timedelta(minutes=minute)).astimezone(UTC)
        a, b = m.read_registers(t0), m.read_registers(t0 + timedelta(minutes=10))
        local = t0.astimezone(HCM)
        sunday = local.weekday() == 6
        rate = tou_rate_at(local.hour * 60 + local.minute, 2 if sunday else 1)
        grew = [b[o] - a[o] > 1e-12 for o in OBIS_RATE]
        assert grew == [r == rate for r in (1, 2, 3)], (local, grew)
        if sunday:
            assert not grew[1]  # Sunday has no peak


def test_household_evening_peak_weekend_and_hot_season() -> None:
    fleet = [meter(seed=s, serial=f"T-HH-{s}") for s in range(40)]

    def kwh(m: SimulatedMeter, a: datetime, b: datetime) -> float:
        return m.read_registers(b)[OBIS_IMPORT] - m.read_registers(a)[OBIS_IMPORT]

    day = datetime(2025, 3, 5, tzinfo=HCM)
    evening = sum(kwh(m, day.replace(hour=20), day.replace(hour=23)) for m in fleet)
    night = sum(kwh(m, day.replace(hour=2), day.replace(hour=5)) for m in fleet)
    assert evening > 2.0 * night
    june = sum(kwh(m, datetime(2025, 6, 1, tzinfo=HCM), datetime(2025, 7, 1, tzinfo=HCM)) for m in fleet)
    feb = sum(kwh(m, datetime(2025, 2, 1, tzinfo=HCM), datetime(2025, 3, 1, tzinfo=HCM)) for m in fleet)
    assert june / 30 > 1.3 * feb / 28
    year = sum(kwh(m, datetime(2024, 1, 1, tzinfo=HCM), datetime(2025, 1, 1, tzinfo=HCM)) for m in fleet)
    target = sum(m.monthly_kwh for m in fleet) * 12
    assert year == pytest.approx(target, rel=0.1)


def test_household_monthly_kwh_follows_evn_distribution() -> None:
    drawn = [SimulatedMeter(serial=f"D{s}", seed=s).monthly_kwh for s in range(4000)]
    shares = [sum(lo <= x < hi for x in drawn) / len(drawn) for lo, hi in ((0, 100), (100, 200), (200, 300))]
    total = sum(HOUSEHOLD_BUCKET_SHARES)
    for got, want in zip(shares, HOUSEHOLD_BUCKET_SHARES, strict=False):
        assert got == pytest.approx(want / total, abs=0.03)


def test_load_profile_boundaries_and_monotonic() -> None:
    m = meter()
    rows = m.load_profile(T0 + timedelta(minutes=5), T0 + timedelta(days=1), interval_s=1800)
    assert len(rows) == 48
    assert rows[0][0] == T0 + timedelta(minutes=30) and rows[-1][0] == T0 + timedelta(days=1)
    for (ta, a), (_tb, b) in itertools.pairwise(rows):
        assert b[OBIS_IMPORT] > a[OBIS_IMPORT]
        assert a[OBIS_IMPORT] == m.read_registers(ta)[OBIS_IMPORT]


def test_rollover_wraps_the_dial() -> None:
    at = T0 + timedelta(days=10, hours=5)
    m = meter(register_digits=5, faults=Faults(rollover_at=at))
    before = m.read_registers(at - timedelta(hours=2))[OBIS_IMPORT]
    after = m.read_registers(at + timedelta(hours=2))[OBIS_IMPORT]
    assert 99_000 < before < 100_000 and after < 10


def test_replacement_new_serial_and_registers_restart() -> None:
    at = T0 + timedelta(days=3)
    m = meter(faults=Faults(replaced_at=at))
    old = m.read_registers(at - timedelta(minutes=1))
    new = m.read_registers(at + timedelta(hours=6))
    assert m.serial_at(at - timedelta(seconds=1)) == "T-METER-1" != m.serial_at(at)
    assert new[OBIS_IMPORT] < old[OBIS_IMPORT] and 0 < new[OBIS_IMPORT] < 20


def test_stuck_register_and_clock_drift() -> None:
    frm, until = T0 + timedelta(days=1), T0 + timedelta(days=2)
    m = meter(faults=Faults(stuck_from=frm, stuck_until=until, drift_s_per_day=30.0))
    a = m.read_registers(frm + timedelta(hours=1))[OBIS_IMPORT]
    b = m.read_registers(frm + timedelta(hours=20))[OBIS_IMPORT]
    c = m.read_registers(until + timedelta(hours=1))[OBIS_IMPORT]
    assert a == b < c
    days = (T0 - m.installed).total_seconds() / DAY_S
    assert m.clock_offset_s(T0) == pytest.approx(30.0 * days)
    assert m.read_registers(T0)["0.0.96.10.1.255"] == float(STATUS_BITS["CLOCK_INVALID"])
    assert meter().clock_offset_s(T0) == 0.0


def test_power_down_zero_volts_flag_and_no_energy() -> None:
    m = meter(faults=Faults(power_down_share=1.0))
    hits = 0
    for k in range(0, 24 * 60 * 3, 5):
        t = T0 + timedelta(minutes=k)
        if m.in_outage(t):
            regs, later = m.read_registers(t), m.read_registers(t + timedelta(seconds=60))
            if m.in_outage(t + timedelta(seconds=60)):
                assert later[OBIS_IMPORT] == regs[OBIS_IMPORT]
            assert regs["1.0.32.7.0.255"] == 0.0
            assert int(regs["0.0.96.10.1.255"]) & STATUS_BITS["POWER_DOWN"]
            hits += 1
    assert hits > 0


def test_spikes_are_transient() -> None:
    m = meter(faults=Faults(spike_share=0.2))
    plain = meter()
    spiked = 0
    for k in range(200):
        t = T0 + timedelta(minutes=30 * k + 1)
        d = m.read_registers(t)[OBIS_IMPORT] - plain.read_registers(t)[OBIS_IMPORT]
        spiked += d > 1
    assert 10 < spiked < 80


def test_sim_clock_speed_and_fixed() -> None:
    c = SimClock.fixed(T0)
    assert c.now() == T0
    c.advance(90)
    assert c.now() == T0 + timedelta(seconds=90)
    fast = SimClock(T0, speed=1440)
    import time

    time.sleep(0.05)
    assert fast.now() - T0 >= timedelta(seconds=60)
