"""A simulated electricity meter: deterministic from its seed and a pure function of time.

Interface (the DLMS, DCU and Modbus simulators all use it)::

    from simulators.meter import SimulatedMeter
    from simulators.faults import Faults
    from simulators.clock import SimClock

    m = SimulatedMeter(serial="HN0000001", seed=1, tariff_class="household", city="HN",
                       monthly_kwh=None,          # None: drawn from the EVN 2019 household distribution
                       register_digits=6,         # energy dials wrap at 10**6 (in register units)
                       multiplier=1.0,            # CT/VT ratio: registers are secondary-side values
                       faults=Faults(),           # healthy; see simulators/faults.py
                       installed=None,            # aware UTC datetime; default 2020-01-01 00:00 local
                       phases=None,               # 1 for households, 3 otherwise (None: by class)
                       solar_kwp=None)            # rooftop PV size [kWp] for export; None: drawn from the seed

    m.read_registers(at)        -> dict[str, float]   # FULL OBIS code -> value in the catalogue unit (amr/obis.py)
    m.read_registers_ts(at_s)   -> same, from UTC epoch seconds (the servers' fast path)
    m.load_profile(start, end, interval_s=1800) -> list[(datetime UTC, dict[str, float])]
                                  # cumulative energy registers + status at each interval boundary in [start, end]
    m.clock_offset_s(at)        -> float  # meter clock minus true time [s] (0 unless Faults.drift_s_per_day)
    m.meter_clock(at)           -> datetime  # what the meter's own clock shows (at + offset)
    m.serial_at(at)             -> str    # serial of the meter installed at `at` (changes at Faults.replaced_at)
    m.serial, m.seed, m.tariff_class, m.city, m.monthly_kwh, m.multiplier, m.register_digits, m.phases, m.faults

Keys of read_registers (all of amr.obis.CHANNELS): 1.0.1.8.0.255 import total [kWh], 1.0.1.8.1/2/3.255 rates
normal/peak/off-peak [kWh] (sum to the total unless a rollover/spike fault says otherwise), 1.0.2.8.0.255 export
[kWh], 1.0.15.8.0.255 import + export [kWh], 1.0.3.8.0.255 / 1.0.4.8.0.255 reactive import/export [kvarh],
1.0.1.6.0.255 max demand this month [kW], 1.0.32/52/72.7.0.255 voltages [V] (0 on absent phases),
1.0.31/51/71.7.0.255 currents [A], 1.0.1.7.0.255 active power [kW], 1.0.13.7.0.255 power factor,
1.0.14.7.0.255 frequency [Hz], 0.0.96.10.1.255 AMR status bits (amr.obis.STATUS_BITS, as a float),
0.0.1.0.0.255 clock offset [s].

Energy is the integral of a power shape: a per-day energy table (season x day type x lognormal day noise x the
customer's monthly kWh) computed per 512-day block from counter-based hashes of the seed, and a within-day
cumulative shape per (class, day type, season) at minute resolution. A read costs O(1) once its day is cached
(O(512) vector work for a new block). The TOU rates follow local time Asia/Ho_Chi_Minh (UTC+7, no DST).

Register values are what the meter shows: secondary-side energy/power/current (true value / multiplier), energy
dials modulo 10**register_digits, starting from a seed-drawn dial reading at installation. A replacement meter
starts from 0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from amr.obis import STATUS_BITS
from amr.timebase import DAY_S, local_day_and_second_s
from simulators.faults import NO_FAULTS, Faults
from simulators.shapes import (
    DayShape,
    day_shape,
    daytype_factors,
    draw_monthly_kwh,
    mix64,
    normal_array,
    season_factors,
    solar_shape,
    uniform,
    uniform_array,
)

OBIS_IMPORT = "1.0.1.8.0.255"
OBIS_RATE = ("1.0.1.8.1.255", "1.0.1.8.2.255", "1.0.1.8.3.255")
OBIS_EXPORT = "1.0.2.8.0.255"
OBIS_TOTAL_ABSOLUTE = "1.0.15.8.0.255"  # |import| + |export| (Eastron's "Total kWh")
OBIS_REACTIVE_IMPORT = "1.0.3.8.0.255"
OBIS_REACTIVE_EXPORT = "1.0.4.8.0.255"
OBIS_MAX_DEMAND = "1.0.1.6.0.255"
OBIS_VOLTAGE = ("1.0.32.7.0.255", "1.0.52.7.0.255", "1.0.72.7.0.255")
OBIS_CURRENT = ("1.0.31.7.0.255", "1.0.51.7.0.255", "1.0.71.7.0.255")
OBIS_POWER = "1.0.1.7.0.255"
OBIS_POWER_FACTOR = "1.0.13.7.0.255"
OBIS_FREQUENCY = "1.0.14.7.0.255"
OBIS_STATUS = "0.0.96.10.1.255"
OBIS_CLOCK_OFFSET = "0.0.1.0.0.255"
CUMULATIVE_OBIS = (OBIS_IMPORT, *OBIS_RATE, OBIS_EXPORT, OBIS_REACTIVE_IMPORT, OBIS_REACTIVE_EXPORT)

DEFAULT_INSTALLED = datetime(2019, 12, 31, 17, 0, tzinfo=UTC)  # 2020-01-01 00:00 in Hanoi
NOMINAL_VOLTAGE_V = 220.0  # Vietnam: 220 V phase / 380 V line
NOMINAL_FREQUENCY_HZ = 50.0
BLOCK_DAYS = 512  # days per cached energy-table block: one block's vector work is ~0.2 ms
_DAY_CACHE_SIZE = 4
_BLOCK_CACHE_SIZE = 3
_DAY_NOISE_SIGMA = 0.15  # day-to-day lognormal spread of daily energy
_SPIKE_INTERVAL_S = 1800
_CLOCK_INVALID_S = 600.0  # a drift beyond this sets CLOCK_INVALID

# Hash streams (any distinct integers): one per random quantity so they never correlate.
_S_DAY, _S_OUTAGE, _S_OUT_START, _S_OUT_LEN, _S_CLOUD = 11, 12, 13, 14, 15
_S_SPIKE, _S_POWER, _S_PF, _S_VOLT, _S_FREQ = 21, 22, 23, 24, 25
_S_PARAM = 31


@dataclass(frozen=True, slots=True)
class _Block:
    cum_rate: np.ndarray  # [n+1, 3] true kWh per rate from block start, after outages
    cum_export: np.ndarray  # [n+1]
    energy: np.ndarray  # [n] day energy before outages [kWh]
    export: np.ndarray  # [n]
    day_max_kw: np.ndarray  # [n] largest half-hour demand [kW]
    daytype: np.ndarray  # [n]
    hot: np.ndarray  # [n] bool
    outage_start_min: np.ndarray  # [n] -1 when no outage
    outage_end_min: np.ndarray


@dataclass(frozen=True, slots=True)
class _Day:
    start: tuple[float, float, float, float]  # true cumulative r1, r2, r3, export at local midnight [kWh]
    energy: float
    export: float
    shape: DayShape
    outage: tuple[float, float] | None  # local minutes [start, end)
    md_before_kw: float  # month-to-date max demand before this day [kW, true]
    month_start_day: int


def _interp(arr: tuple[float, ...], x_min: float) -> float:
    i = int(x_min)
    if i >= len(arr) - 1:
        return arr[-1]
    lo = arr[i]
    return lo + (arr[i + 1] - lo) * (x_min - i)


def _ts(t: datetime) -> float:
    if t.tzinfo is None:
        raise ValueError(f"meter times must be aware UTC datetimes, got naive {t!r}")
    return t.timestamp()


class SimulatedMeter:
    """One simulated meter; see the module docstring for the interface."""

    def __init__(
        self,
        *,
        serial: str,
        seed: int,
        tariff_class: str = "household",
        city: str = "HN",
        monthly_kwh: float | None = None,
        register_digits: int = 6,
        multiplier: float = 1.0,
        faults: Faults = NO_FAULTS,
        installed: datetime | None = None,
        phases: int | None = None,
        solar_kwp: float | None = None,
    ) -> None:
        if tariff_class not in ("household", "business", "production"):
            raise ValueError(f"tariff_class must be household|business|production, got {tariff_class!r}")
        if city not in ("HN", "HCM"):
            raise ValueError(f"city must be HN|HCM, got {city!r}")
        if not 3 <= register_digits <= 12:
            raise ValueError(f"register_digits must be 3..12, got {register_digits}")
        if multiplier <= 0:
            raise ValueError(f"multiplier must be > 0, got {multiplier}")
        self.serial = serial
        self.seed = int(seed) & ((1 << 63) - 1)
        self.tariff_class = tariff_class
        self.city = city
        self.register_digits = register_digits
        self.multiplier = float(multiplier)
        self.faults = faults
        self.installed = installed or DEFAULT_INSTALLED
        self._installed_s = _ts(self.installed)
        self._install_day, _ = local_day_and_second_s(self._installed_s)
        self._modulus = float(10**register_digits)

        p = lambda k: uniform(self.seed, _S_PARAM, k)  # noqa: E731 - per-meter parameter draws
        self.monthly_kwh = float(monthly_kwh) if monthly_kwh is not None else draw_monthly_kwh(tariff_class, p(0), p(1))
        self.phases = phases if phases is not None else (1 if tariff_class == "household" else 3)
        if solar_kwp is None:
            share, lo, hi = {"household": (0.04, 3, 8), "business": (0.15, 10, 60), "production": (0.2, 50, 300)}[
                tariff_class
            ]
            solar_kwp = lo + (hi - lo) * p(3) if p(2) < share else 0.0
        self.solar_kwp = float(solar_kwp)
        self._pf_mean = {"household": 0.93, "business": 0.9, "production": 0.88}[tariff_class] + 0.06 * (p(4) - 0.5)
        self._tan_phi = math.tan(math.acos(self._pf_mean))
        self._phase_split = self._draw_phase_split(p(5), p(6))
        self._daily_mean_kwh = self.monthly_kwh * 12.0 / 365.2425
        self._season = season_factors(city, tariff_class)
        self._daytype_f = daytype_factors(tariff_class)
        # Dial readings at installation, in register units (the meter was not new on the day it was fitted).
        start_scale = min(self._modulus * 0.05, self.monthly_kwh * 24.0 / self.multiplier)
        r = [start_scale * p(10) * f for f in (0.6, 0.15, 0.25)]
        self._offset_rate = [r[0], r[1], r[2]]
        self._offset_export = start_scale * 0.02 * p(11) if self.solar_kwp else 0.0
        self._offset_q_imp = start_scale * self._tan_phi * p(12)
        self._offset_q_exp = start_scale * 0.01 * p(13)

        self._blocks: dict[int, _Block] = {}
        self._block_start: dict[int, tuple[float, float, float, float]] = {}
        self._days: dict[int, _Day] = {}
        self._replaced_s = _ts(faults.replaced_at) if faults.replaced_at else None
        self._replacement_serial = faults.replacement_serial or self._derive_replacement_serial()
        self._stuck = (
            _ts(faults.stuck_from) if faults.stuck_from else None,
            _ts(faults.stuck_until) if faults.stuck_until else math.inf,
        )
        self._offset_total_extra = 0.0
        if faults.rollover_at is not None:
            # Choose the total's starting dial so it reaches 10**digits exactly at rollover_at; the extra goes into
            # rate 1 (normal) so the rates still sum to the total until the total wraps.
            val = self._true_cum(_ts(faults.rollover_at))[0:3]
            reg = sum(self._offset_rate) + sum(val) / self.multiplier
            extra = (self._modulus - reg) % self._modulus
            self._offset_rate[0] += extra

    # ---- parameters -------------------------------------------------------------------------------------------

    def _draw_phase_split(self, u1: float, u2: float) -> tuple[float, float, float]:
        if self.phases == 1:
            return (1.0, 0.0, 0.0)
        a = 1.0 + 0.12 * (u1 - 0.5)
        b = 1.0 + 0.12 * (u2 - 0.5)
        c = 3.0 - a - b
        return (a / 3.0, b / 3.0, c / 3.0)

    def _derive_replacement_serial(self) -> str:
        digits = "".join(ch for ch in self.serial if ch.isdigit())
        prefix = self.serial[: len(self.serial) - len(digits)] if self.serial.endswith(digits) else self.serial
        if digits and self.serial.endswith(digits):
            return f"{prefix}{(int(digits) + 5_000_000) % 10 ** max(len(digits), 7):0{len(digits)}d}"
        return f"{self.serial}R"

    # ---- the energy table ------------------------------------------------------------------------------------

    def _block(self, b: int) -> _Block:
        blk = self._blocks.get(b)
        if blk is not None:
            return blk
        days = np.arange(b * BLOCK_DAYS, (b + 1) * BLOCK_DAYS, dtype=np.int64)
        weekday = (days + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
        daytype = np.where(weekday < 5, 0, np.where(weekday == 5, 1, 2)).astype(np.int64)
        month0 = days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64) % 12
        season = self._season[month0]
        hot = season > 1.05
        noise = np.exp(_DAY_NOISE_SIGMA * normal_array(self.seed, _S_DAY, days) - 0.5 * _DAY_NOISE_SIGMA**2)
        live = days >= self._install_day
        energy = np.where(live, self._daily_mean_kwh * season * self._daytype_f[daytype] * noise, 0.0)
        n = len(days)
        hot_i = hot.astype(np.int64)
        rate_frac, hh_max = self._shape_tables()
        rate_e = rate_frac[daytype, hot_i].copy()
        day_max = hh_max[daytype, hot_i]
        rate_e *= energy[:, None]
        day_max_kw = energy * day_max * 2.0  # kWh in a half-hour -> kW
        out_start = np.full(n, -1.0)
        out_end = np.full(n, -1.0)
        if self.faults.power_down_share > 0:
            has = (uniform_array(self.seed, _S_OUTAGE, days) < self.faults.power_down_share) & live
            for i in np.nonzero(has)[0].tolist():
                d = int(days[i])
                s_min = uniform(self.seed, _S_OUT_START, d) * 1440.0
                e_min = min(1440.0, s_min + 5.0 + 235.0 * uniform(self.seed, _S_OUT_LEN, d) ** 2)
                out_start[i], out_end[i] = s_min, e_min
                grid = np.arange(1441.0)
                shape = day_shape(self.tariff_class, int(daytype[i]), bool(hot[i]))
                for r in range(3):
                    c = shape.cum_rate_np[r]
                    rate_e[i, r] -= energy[i] * (np.interp(e_min, grid, c) - np.interp(s_min, grid, c))
        if self.solar_kwp > 0:
            clouds = 0.35 + 0.85 * uniform_array(self.seed, _S_CLOUD, days)
            export = np.where(live, self.solar_kwp * 1.1 * clouds, 0.0)
        else:
            export = np.zeros(n)
        cum_rate = np.zeros((n + 1, 3))
        cum_rate[1:] = np.cumsum(rate_e, axis=0)
        cum_export = np.concatenate(([0.0], np.cumsum(export)))
        blk = _Block(cum_rate, cum_export, energy, export, day_max_kw, daytype, hot, out_start, out_end)
        if len(self._blocks) >= _BLOCK_CACHE_SIZE:
            self._blocks.pop(next(iter(self._blocks)))
        self._blocks[b] = blk
        return blk

    def _shape_tables(self) -> tuple[np.ndarray, np.ndarray]:
        """Rate fractions [daytype, hot, rate] and largest half-hour fraction [daytype, hot] of this class."""
        rate_frac = np.empty((3, 2, 3))
        hh_max = np.empty((3, 2))
        for dt in range(3):
            for h in range(2):
                shape = day_shape(self.tariff_class, dt, bool(h))
                rate_frac[dt, h] = shape.rate_fraction
                hh_max[dt, h] = shape.hh_max
        return rate_frac, hh_max

    def _start_of_block(self, b: int) -> tuple[float, float, float, float]:
        first = self._install_day // BLOCK_DAYS
        if b <= first:
            return (0.0, 0.0, 0.0, 0.0)
        got = self._block_start.get(b)
        if got is not None:
            return got
        known = max((k for k in self._block_start if k < b), default=first)
        acc = self._start_of_block(known) if known > first else (0.0, 0.0, 0.0, 0.0)
        for k in range(known, b):
            blk = self._block(k)
            r = blk.cum_rate[-1]
            acc = (acc[0] + float(r[0]), acc[1] + float(r[1]), acc[2] + float(r[2]), acc[3] + float(blk.cum_export[-1]))
            self._block_start[k + 1] = acc
        return acc

    def _day(self, day: int) -> _Day:
        rec = self._days.get(day)
        if rec is not None:
            return rec
        b, i = divmod(day, BLOCK_DAYS)
        base = self._start_of_block(b)
        blk = self._block(b)
        cr = blk.cum_rate[i]
        start = (
            base[0] + float(cr[0]),
            base[1] + float(cr[1]),
            base[2] + float(cr[2]),
            base[3] + float(blk.cum_export[i]),
        )
        shape = day_shape(self.tariff_class, int(blk.daytype[i]), bool(blk.hot[i]))
        outage = (
            (float(blk.outage_start_min[i]), float(blk.outage_end_min[i])) if blk.outage_start_min[i] >= 0 else None
        )
        month_start = int(np.datetime64(int(day), "D").astype("datetime64[M]").astype("datetime64[D]").astype(np.int64))
        md = 0.0
        for d in range(max(month_start, self._install_day), day):  # at most 30 days, once per day
            bb, ii = divmod(d, BLOCK_DAYS)
            md = max(md, float(self._block(bb).day_max_kw[ii]))
        rec = _Day(start, float(blk.energy[i]), float(blk.export[i]), shape, outage, md, month_start)
        if len(self._days) >= _DAY_CACHE_SIZE:
            self._days.pop(next(iter(self._days)))
        self._days[day] = rec
        return rec

    def _true_cum(self, t_s: float) -> tuple[float, float, float, float]:
        """True cumulative energy since installation (r1, r2, r3, export) [kWh] at t."""
        if t_s <= self._installed_s:
            return (0.0, 0.0, 0.0, 0.0)
        day, sec = local_day_and_second_s(t_s)
        rec = self._day(day)
        x = sec / 60.0
        s = rec.shape
        vals = []
        for r in range(3):
            c = s.cum_rate[r]
            v = _interp(c, x)
            if rec.outage is not None:
                o0, o1 = rec.outage
                v -= _interp(c, min(max(x, o0), o1)) - _interp(c, o0)
            vals.append(rec.start[r] + rec.energy * v)
        exp = rec.start[3] + rec.export * _interp(solar_shape().cum, x)
        return (vals[0], vals[1], vals[2], exp)

    # ---- public API -------------------------------------------------------------------------------------------

    def serial_at(self, at: datetime) -> str:
        """Serial of the meter in place at ``at`` (the replacement's serial after Faults.replaced_at)."""
        return self._serial_at_ts(_ts(at))

    def _serial_at_ts(self, t_s: float) -> str:
        if self._replaced_s is not None and t_s >= self._replaced_s:
            return self._replacement_serial
        return self.serial

    def clock_offset_s(self, at: datetime) -> float:
        """Meter clock minus true time [s]; grows linearly from installation (or replacement) with the drift fault."""
        return self._clock_offset_ts(_ts(at))

    def _clock_offset_ts(self, t_s: float) -> float:
        if not self.faults.drift_s_per_day:
            return 0.0
        since = self._replaced_s if self._replaced_s is not None and t_s >= self._replaced_s else self._installed_s
        return self.faults.drift_s_per_day * max(0.0, t_s - since) / DAY_S

    def meter_clock(self, at: datetime) -> datetime:
        """What the meter's own clock shows at true time ``at``."""
        return datetime.fromtimestamp(_ts(at) + self._clock_offset_ts(_ts(at)), tz=UTC)

    def in_outage(self, at: datetime) -> bool:
        """Whether the meter is without supply at ``at`` (power-down fault)."""
        day, sec = local_day_and_second_s(_ts(at))
        rec = self._day(day)
        return rec.outage is not None and rec.outage[0] <= sec / 60.0 < rec.outage[1]

    def _cumulative_registers(self, t_s: float) -> tuple[list[float], float, float, float]:
        """Register values (r1, r2, r3, total, export, q_import, q_export) before the modulus, at t."""
        replaced = self._replaced_s is not None and t_s >= self._replaced_s
        stuck_from, stuck_until = self._stuck
        t_eff = stuck_from if stuck_from is not None and stuck_from <= t_s < stuck_until else t_s
        if replaced:
            assert self._replaced_s is not None
            now = self._true_cum(max(t_eff, self._replaced_s))
            then = self._true_cum(self._replaced_s)
            cum = [a - b for a, b in zip(now, then, strict=True)]
            off_r, off_x, off_qi, off_qe = [0.0, 0.0, 0.0], 0.0, 0.0, 0.0
        else:
            cum = list(self._true_cum(t_eff))
            off_r, off_x, off_qi, off_qe = (
                self._offset_rate,
                self._offset_export,
                self._offset_q_imp,
                self._offset_q_exp,
            )
        m = self.multiplier
        rates = [off_r[r] + cum[r] / m for r in range(3)]
        active = (cum[0] + cum[1] + cum[2]) / m
        if (
            self.faults.spike_share
            and uniform(self.seed, _S_SPIKE, int(t_s // _SPIKE_INTERVAL_S)) < self.faults.spike_share
        ):
            spike = max(50.0, 3.0 * self.monthly_kwh) / m
            rates[0] += spike
        total = rates[0] + rates[1] + rates[2]
        return (
            [*rates, total],
            off_x + cum[3] / m,
            off_qi + active * self._tan_phi,
            off_qe + active * 0.01,
        )

    def _energy_registers(self, t_s: float) -> dict[str, float]:
        regs, exp, q_imp, q_exp = self._cumulative_registers(t_s)
        mod = self._modulus
        return {
            OBIS_IMPORT: regs[3] % mod,
            OBIS_RATE[0]: regs[0] % mod,
            OBIS_RATE[1]: regs[1] % mod,
            OBIS_RATE[2]: regs[2] % mod,
            OBIS_EXPORT: exp % mod,
            OBIS_TOTAL_ABSOLUTE: (regs[3] + exp) % mod,
            OBIS_REACTIVE_IMPORT: q_imp % mod,
            OBIS_REACTIVE_EXPORT: q_exp % mod,
        }

    def _status_bits(self, t_s: float, rec: _Day, sec: float) -> int:
        bits = 0
        if rec.outage is not None:
            interval_start_min = (sec - sec % _SPIKE_INTERVAL_S) / 60.0
            if rec.outage[0] <= sec / 60.0 and rec.outage[1] > interval_start_min:
                bits |= STATUS_BITS["POWER_DOWN"]
        if abs(self._clock_offset_ts(t_s)) >= _CLOCK_INVALID_S:
            bits |= STATUS_BITS["CLOCK_INVALID"]
        return bits

    def read_registers(self, at: datetime) -> dict[str, float]:
        """Every catalogue channel at true time ``at``: FULL OBIS code -> value in the catalogue unit."""
        return self.read_registers_ts(_ts(at))

    def read_registers_ts(self, t_s: float) -> dict[str, float]:
        """:meth:`read_registers` from UTC epoch seconds."""
        out = self._energy_registers(t_s)
        day, sec = local_day_and_second_s(t_s)
        rec = self._day(day)
        m = self.multiplier
        x = sec / 60.0
        minute = min(int(x), 1439)
        replaced_today = self._replaced_s is not None and t_s >= self._replaced_s
        before_install = t_s < self._installed_s
        down = before_install or (rec.outage is not None and rec.outage[0] <= x < rec.outage[1])
        tick = int(t_s // 10)  # instantaneous noise changes every 10 s
        if down:
            p_kw, volts, pf, freq = 0.0, (0.0, 0.0, 0.0), 1.0, 0.0
        else:
            p_kw = (
                rec.energy
                * rec.shape.density[minute]
                * 60.0
                * (1.0 + 0.12 * (uniform(self.seed, _S_POWER, tick) - 0.5))
            )
            pf = min(0.999, self._pf_mean + 0.03 * (uniform(self.seed, _S_PF, tick) - 0.5))
            load = rec.shape.density[minute] * 1440.0  # 1 = the day's mean power
            sag = 1.0 - 0.012 * min(load, 3.0)
            v = [
                NOMINAL_VOLTAGE_V * (1.02 * sag + 0.01 * (uniform(self.seed, _S_VOLT + k, tick) - 0.5))
                if self._phase_split[k] > 0
                else 0.0
                for k in range(3)
            ]
            volts = (v[0], v[1], v[2])
            freq = NOMINAL_FREQUENCY_HZ + 0.08 * (uniform(self.seed, _S_FREQ, tick) - 0.5)
        for k in range(3):
            out[OBIS_VOLTAGE[k]] = volts[k]
            share = self._phase_split[k]
            out[OBIS_CURRENT[k]] = (p_kw * share * 1000.0 / (volts[k] * pf)) / m if volts[k] > 0 else 0.0
        out[OBIS_POWER] = p_kw / m
        out[OBIS_POWER_FACTOR] = pf
        out[OBIS_FREQUENCY] = freq
        # Max demand: largest completed half-hour this local month (a replacement meter starts its own month).
        today_kw = rec.energy * rec.shape.hh_running_max[int(sec // 1800)] * 2.0
        md = max(rec.md_before_kw, today_kw) if not before_install else 0.0
        if replaced_today and self._replaced_s is not None:
            r_day, _ = local_day_and_second_s(self._replaced_s)
            md = today_kw if r_day == day else md if r_day < rec.month_start_day else max(today_kw, md)
        out[OBIS_MAX_DEMAND] = md / m
        out[OBIS_STATUS] = float(self._status_bits(t_s, rec, sec))
        out[OBIS_CLOCK_OFFSET] = self._clock_offset_ts(t_s)
        return out

    def load_profile(
        self, start: datetime, end: datetime, interval_s: int = 1800
    ) -> list[tuple[datetime, dict[str, float]]]:
        """Cumulative energy registers and the status at each interval boundary in [start, end] (true UTC times)."""
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        s, e = _ts(start), _ts(end)
        t = math.ceil(s / interval_s) * interval_s
        rows: list[tuple[datetime, dict[str, float]]] = []
        while t <= e:
            regs = self._energy_registers(float(t))
            day, sec = local_day_and_second_s(float(t))
            regs[OBIS_STATUS] = float(self._status_bits(float(t), self._day(day), sec))
            rows.append((datetime.fromtimestamp(t, tz=UTC), regs))
            t += interval_s
        return rows


def meter_seed(fleet_seed: int, index: int) -> int:
    """A well-spread per-meter seed from a fleet seed and the meter's index."""
    return mix64((fleet_seed << 20) ^ index) & ((1 << 63) - 1)
