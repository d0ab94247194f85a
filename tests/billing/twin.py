"""Plain-Python twin of the VEE kernels: the rules of billing/vee.py written out again with lists and dicts,
without numba, to check the kernels against on random input, pass by pass: twin_validate (the validation kernel),
twin_days (the daily aggregation kernel), twin_use_check (use_check_kernel); twin_series runs all three.
holidays: the local day numbers (days since 1970-01-01, local calendar) the like-day profile leaves out."""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field
from itertools import pairwise

from amr.obis import STATUS_BITS
from amr.timebase import DAY_S, LOCAL_UTC_OFFSET_S, UNIX_EPOCH_WEEKDAY, local_day_number
from billing import flags as F
from billing.kernels import SPIKE_LOOKAHEAD_READS
from billing.rules import VeeRules


@dataclass
class TwinValidation:
    """Per read: flags, interval start, register delta (NaN: not valid); the series' interval and history."""

    interval: int = 0
    flags: list[int] = field(default_factory=list)
    start: list[int] = field(default_factory=list)
    delta: list[float] = field(default_factory=list)
    hist: float = math.nan
    first_valid: int = -1
    # after the last valid read at a local midnight: (read [s], register, rate, unchanged since, average day)
    state: tuple[int, float, float, int, float] | None = None


@dataclass
class SeriesOut:
    flags: list[int] = field(default_factory=list)
    start: list[int] = field(default_factory=list)
    delta: list[float] = field(default_factory=list)
    measured: dict[int, float] = field(default_factory=dict)
    estimated: dict[int, float] = field(default_factory=dict)
    n_meas: dict[int, int] = field(default_factory=dict)
    n_est: dict[int, int] = field(default_factory=dict)
    day_flags: dict[int, int] = field(default_factory=dict)
    methods: dict[int, int] = field(default_factory=dict)
    series_flags: int = 0
    interval: int = 0
    hist: float = math.nan
    last_valid: int = -1


def _day(t_end: int, day0: int) -> int:
    return math.floor((t_end - 1 - day0) / DAY_S)


def twin_series(
    ts: list[int],
    values: list[float],
    quality: list[int],
    *,
    modulus: float,
    rules: VeeRules,
    day0: int,
    n_days: int,
    end_s: int,
    holidays: Collection[int],
) -> SeriesOut:
    v = twin_validate(ts, values, quality, modulus=modulus, rules=rules, day0=day0)
    out = twin_days(ts, v, rules=rules, day0=day0, n_days=n_days, end_s=end_s, holidays=holidays)
    twin_use_check(out, rules=rules, n_days=n_days)
    return out


def twin_validate(
    ts: list[int],
    values: list[float],
    quality: list[int],
    *,
    modulus: float,
    rules: VeeRules,
    day0: int,
    seed: tuple[float, int, float] | None = None,
) -> TwinValidation:
    """seed: (rate [kWh/s], unchanged since [s], average day [kWh/day]) the series resumes from at its first valid
    read (None: nothing; -1 / -1 / NaN mean none of each)."""
    out = TwinValidation()
    r = rules
    inv_mask = sum(STATUS_BITS[b] for b in set(r.status.invalid_bits))
    rev_mask = sum(STATUS_BITS[b] for b in set(r.status.review_bits))
    spike_factor = r.spike.factor if r.spike.enabled else math.inf
    flat_s = r.flat_line.max_s if r.flat_line.enabled else math.inf

    # the series' interval: the most common allowed step among the first 256 reads (ties: the shorter)
    steps = [b - a for a, b in pairwise(ts[:256])]
    best, best_count = None, 0
    for size in sorted(r.interval.allowed_s):
        c = steps.count(size)
        if c > best_count:
            best, best_count = size, c
    interval = best if best is not None else r.interval.default_s
    out.interval = interval

    # pass 1: validation
    base: tuple[int, float] | None = None
    prev_t: int | None = None
    last_rate = -1.0
    zero_start: int | None = None
    first_valid = -1
    average: float | None = None  # the smoothed average day [kWh/day]
    kept_spike: int | None = None
    horizon_s = r.history.days * DAY_S
    n = len(ts)
    for i in range(n):
        t, v, q = ts[i], values[i], quality[i]
        f = 0
        if prev_t is not None and t == prev_t:
            out.flags.append(F.DUPLICATE)
            out.start.append(prev_t)
            out.delta.append(math.nan)
            continue
        if prev_t is not None and t - prev_t > interval:
            f |= F.GAP
        rem = (t - day0) % interval
        if min(rem, interval - rem) > r.interval.align_tolerance_s:
            f |= F.INTERVAL_SIZE
        prev_t = t
        bad_status = bool(q & inv_mask)
        if bad_status:
            f |= F.STATUS_INVALID
        if q & rev_mask:
            f |= F.STATUS_WARN
        if base is None:
            out.flags.append(f)
            out.start.append(t)
            out.delta.append(math.nan)
            if not bad_status:
                base = (t, v)
                first_valid = t
                if seed is not None:
                    last_rate = seed[0]
                    zero_start = None if seed[1] < 0 else seed[1]
                    average = None if math.isnan(seed[2]) else seed[2]
            continue
        out.start.append(base[0])
        if bad_status:
            out.flags.append(f)
            out.delta.append(math.nan)
            continue
        dt = t - base[0]
        d = v - base[1]
        if d < 0:
            if 0 <= d + modulus <= r.register_rules.max_plausible_kw * dt / 3600:
                f |= F.ROLLOVER
                d += modulus
            elif v <= r.register_rules.replacement_max_kwh:
                out.flags.append(f | F.REPLACEMENT)
                out.delta.append(math.nan)
                base = (t, v)
                zero_start = None
                continue
            else:
                out.flags.append(f | F.NEGATIVE)
                out.delta.append(math.nan)
                continue
        reference = last_rate * dt if last_rate > 0 else 0.0
        if d > spike_factor * reference and d > r.spike.min_kw * dt / 3600:
            f |= F.SPIKE
            later = [values[j] for j in range(i + 1, n) if ts[j] != t][:SPIKE_LOOKAHEAD_READS]
            if any(x < v for x in later):
                out.flags.append(f)
                out.delta.append(math.nan)
                continue
            kept_spike = i
        if d == 0:
            if zero_start is None:
                zero_start = base[0]
            if t - zero_start >= flat_s:
                f |= F.FLAT_LINE
        else:
            zero_start = None
        out.flags.append(f)
        out.delta.append(d)
        last_rate = d / dt
        per_day = last_rate * DAY_S
        average = per_day if average is None else average + (per_day - average) * min(1.0, dt / horizon_s)
        base = (t, v)
        # a state only where no read after it can still drop a spike kept before it
        settled = kept_spike is None or len([j for j in range(kept_spike + 1, i + 1) if ts[j] != ts[kept_spike]]) >= (
            SPIKE_LOOKAHEAD_READS
        )
        if (t + LOCAL_UTC_OFFSET_S) % DAY_S == 0 and settled:
            out.state = (t, v, last_rate, -1 if zero_start is None else zero_start, average)
    out.first_valid = first_valid

    # history: the valid reads up to the period start
    hist_kwh, hist_s = 0.0, 0
    for i in range(n):
        d = out.delta[i]
        if not math.isnan(d) and ts[i] <= day0:
            hist_kwh += d
            hist_s += ts[i] - out.start[i]
    out.hist = hist_kwh / hist_s * DAY_S if hist_s > 0 else math.nan
    return out


def twin_days(
    ts: list[int],
    v: TwinValidation,
    *,
    rules: VeeRules,
    day0: int,
    n_days: int,
    end_s: int,
    holidays: Collection[int],
) -> SeriesOut:
    """Daily aggregation of one validated series (v is not changed)."""
    r = rules
    interval = v.interval
    n = len(ts)
    out = SeriesOut(flags=list(v.flags), start=list(v.start), delta=list(v.delta), interval=interval, hist=v.hist)
    first_valid = v.first_valid

    # like-day profile from the valid single intervals, except those that start on a public holiday
    holiday_set = set(holidays)
    prof: dict[tuple[int, int], list[float]] = {}
    for i in range(n):
        d = out.delta[i]
        if math.isnan(d):
            continue
        if ts[i] - out.start[i] == interval and local_day_number(out.start[i]) not in holiday_set:
            loc = out.start[i] + LOCAL_UTC_OFFSET_S
            key = ((loc // DAY_S + UNIX_EPOCH_WEEKDAY) % 7, (loc % DAY_S) // interval if interval < DAY_S else 0)
            prof.setdefault(key, []).append(d)

    def like_day(st: int, length: int) -> float | None:
        loc = st + LOCAL_UTC_OFFSET_S
        wd = (loc // DAY_S + UNIX_EPOCH_WEEKDAY) % 7
        slot = (loc % DAY_S) // interval if interval < DAY_S else 0
        if (wd, slot) in prof:
            vals = prof[(wd, slot)]
            return sum(vals) / len(vals) * length / interval
        pool = [x for w in range(7) for x in prof.get((w, slot), [])]
        return sum(pool) / len(pool) * length / interval if pool else None

    def subintervals(a: int, b: int) -> list[tuple[int, int]]:
        out_ = []
        st = a
        while st < b:
            en = min(st + interval, b)
            out_.append((st, en))
            st = en
        return out_

    def add_est(en: int, energy: float, method: int) -> None:
        di = _day(en, day0)
        if 0 <= di < n_days:
            out.estimated[di] = out.estimated.get(di, 0.0) + energy
            out.n_est[di] = out.n_est.get(di, 0) + 1
            out.day_flags[di] = out.day_flags.get(di, 0) | F.ESTIMATED
            out.methods[di] = out.methods.get(di, 0) | method

    def flag_days(a: int, b: int, flag: int) -> None:
        for di in range(max(_day(a + 1, day0), 0), min(_day(b, day0), n_days - 1) + 1):
            out.day_flags[di] = out.day_flags.get(di, 0) | flag

    def estimate_open(a: int, b: int, rate: float) -> bool:
        use_profile = b - a > r.estimation.linear_max_s
        pieces = []
        for st, en in subintervals(a, b):
            w = like_day(st, en - st) if use_profile else None
            if w is None and rate < 0:
                return False
            pieces.append(
                (en, w if w is not None else rate * (en - st), F.METHOD_HISTORICAL if w is not None else F.METHOD_FLAT)
            )
        for en, energy, method in pieces:
            add_est(en, energy, method)
        return True

    # days
    last_rate = -1.0
    last_valid = -1
    for i in range(n):
        t, f, a = ts[i], out.flags[i], out.start[i]
        di = _day(t, day0)
        if 0 <= di < n_days:
            out.day_flags[di] = out.day_flags.get(di, 0) | f
        if f & F.REPLACEMENT:
            last_valid = t
            if not estimate_open(a, t, last_rate):
                out.flags[i] |= F.GAP_TOO_LONG
                flag_days(a, t, F.GAP_TOO_LONG)
            continue
        d = out.delta[i]
        if math.isnan(d):
            continue
        last_valid = t
        span = t - a
        if span <= interval or span > r.estimation.max_s:
            if span > interval:
                out.flags[i] |= F.GAP_TOO_LONG
                flag_days(a, t, F.GAP_TOO_LONG)
            if 0 <= di < n_days:
                out.measured[di] = out.measured.get(di, 0.0) + d
                out.n_meas[di] = out.n_meas.get(di, 0) + 1
        else:
            pieces = subintervals(a, t)
            weights = None
            if span > r.estimation.linear_max_s:
                ws = [like_day(st, en - st) for st, en in pieces]
                if all(w is not None for w in ws) and sum(ws) > 0:  # type: ignore[arg-type]
                    weights = ws
            for k, (st, en) in enumerate(pieces):
                if weights is not None:
                    add_est(en, d * weights[k] / sum(weights), F.METHOD_HISTORICAL | F.METHOD_SCALED)  # type: ignore
                else:
                    add_est(en, d * (en - st) / span, F.METHOD_LINEAR | F.METHOD_SCALED)
        last_rate = d / span

    if first_valid < 0 or first_valid > day0:
        out.series_flags |= F.LEADING_GAP
        flag_days(day0, end_s if first_valid < 0 else first_valid, F.LEADING_GAP)
    if (
        last_valid >= 0
        and end_s - last_valid >= interval
        and (end_s - last_valid > r.estimation.max_s or not estimate_open(last_valid, end_s, last_rate))
    ):
        out.series_flags |= F.GAP_TOO_LONG
        flag_days(last_valid, end_s, F.GAP_TOO_LONG)
    out.last_valid = last_valid
    return out


def twin_use_check(out: SeriesOut, *, rules: VeeRules, n_days: int) -> None:
    """Daily use against the series' own history (total register), into out.day_flags."""
    r = rules
    h = out.hist
    if not math.isnan(h) and h >= r.history.active_min_kwh_per_day:
        zero_run = 0
        for di in range(n_days):
            if out.n_meas.get(di, 0) + out.n_est.get(di, 0) == 0:
                zero_run = 0
                continue
            total = out.measured.get(di, 0.0) + out.estimated.get(di, 0.0)
            if total > r.history.high_factor * h:
                out.day_flags[di] = out.day_flags.get(di, 0) | F.HIGH_USE
            elif 0 < total < h / r.history.low_factor:
                out.day_flags[di] = out.day_flags.get(di, 0) | F.LOW_USE
            if total == 0:
                zero_run += 1
                if zero_run >= r.history.zero_days:
                    out.day_flags[di] = out.day_flags.get(di, 0) | F.ZERO_USE
            else:
                zero_run = 0


def twin_tou_sum(
    total: list[float | None], rates: list[list[float | None]], *, tol_kwh: float, tol_ratio: float
) -> list[bool]:
    """Per day: does the total register disagree with T1 + T2 + T3? (None = no data that day)"""
    out = []
    for d, tot in enumerate(total):
        parts = [r[d] for r in rates]
        if tot is None or any(p is None for p in parts):
            out.append(False)
            continue
        diff = abs(tot - sum(parts))  # type: ignore[arg-type]
        out.append(diff > tol_kwh and diff > tol_ratio * abs(tot))
    return out
