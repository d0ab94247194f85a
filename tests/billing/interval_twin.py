"""Plain-Python twin of billing.intervals' kernel: the interval slots of one profile series written out again with
lists and dicts, from the plain-Python twin of the validation (tests/billing/twin.py: twin_validate's per-read
deltas and interval starts), not from the kernel's flags, so the two paths meet only in the rules."""

from __future__ import annotations

import math
from collections.abc import Collection

from amr.timebase import DAY_S, LOCAL_UTC_OFFSET_S, UNIX_EPOCH_WEEKDAY, local_day_number
from billing import flags as F
from billing.rules import VeeRules
from tests.billing.twin import twin_validate

# per slot end [s]: [energy, measured reads, estimate pieces, method bits]
Slots = dict[int, list[float]]


def twin_intervals(
    ts: list[int],
    values: list[float],
    quality: list[int],
    *,
    modulus: float,
    rules: VeeRules,
    day0: int,
    from_s: int,
    to_s: int,
    holidays: Collection[int],
) -> tuple[int, Slots]:
    """(the series' interval, its written slots ending in (from_s, to_s])."""
    v = twin_validate(ts, values, quality, modulus=modulus, rules=rules, day0=day0)
    interval = v.interval
    holiday_set = set(holidays)
    prof: dict[tuple[int, int], list[float]] = {}
    for i, d in enumerate(v.delta):
        if not math.isnan(d) and ts[i] - v.start[i] == interval and local_day_number(v.start[i]) not in holiday_set:
            loc = v.start[i] + LOCAL_UTC_OFFSET_S
            prof.setdefault(((loc // DAY_S + UNIX_EPOCH_WEEKDAY) % 7, (loc % DAY_S) // interval), []).append(d)

    def like_day(st: int, length: int) -> float | None:
        loc = st + LOCAL_UTC_OFFSET_S
        wd, slot = (loc // DAY_S + UNIX_EPOCH_WEEKDAY) % 7, (loc % DAY_S) // interval
        pool = prof.get((wd, slot)) or [x for w in range(7) for x in prof.get((w, slot), [])]
        return sum(pool) / len(pool) * length / interval if pool else None

    def pieces(a: int, b: int) -> list[tuple[int, int]]:
        return [(st, min(st + interval, b)) for st in range(a, b, interval)]

    slots: Slots = {}

    def add(t_end: int, kwh: float, method: int) -> None:
        # the grid point nearest t_end (local midnights are on the grid; a tie goes to the later one)
        end = math.floor((t_end + LOCAL_UTC_OFFSET_S) / interval + 0.5) * interval - LOCAL_UTC_OFFSET_S
        if not from_s < end <= to_s:
            return
        s = slots.setdefault(end, [0.0, 0, 0, 0])
        s[0] += kwh
        if method:
            s[2] += 1
            s[3] = int(s[3]) | method
        else:
            s[1] += 1

    last_rate = -1.0
    for i, t in enumerate(ts):
        a, f, d = v.start[i], v.flags[i], v.delta[i]
        if f & F.REPLACEMENT:
            use_profile = t - a > rules.estimation.linear_max_s
            plan = []
            for st, en in pieces(a, t):
                w = like_day(st, en - st) if use_profile else None
                if w is None and last_rate < 0:
                    plan = []
                    break
                plan.append(
                    (en, w, F.METHOD_HISTORICAL) if w is not None else (en, last_rate * (en - st), F.METHOD_FLAT)
                )
            for en, kwh, method in plan:
                add(en, kwh, method)  # type: ignore[arg-type]
            continue
        if math.isnan(d):
            continue
        span = t - a
        last_rate = d / span
        if span <= interval:
            add(t, d, 0)
        elif span <= rules.estimation.max_s:
            ps = pieces(a, t)
            weights = None
            if span > rules.estimation.linear_max_s:
                ws = [like_day(st, en - st) for st, en in ps]
                if all(w is not None for w in ws) and sum(ws) > 0:  # type: ignore[arg-type]
                    weights = ws
            for k, (st, en) in enumerate(ps):
                if weights is not None:
                    add(en, d * weights[k] / sum(weights), F.METHOD_HISTORICAL | F.METHOD_SCALED)  # type: ignore[arg-type,operator]
                else:
                    add(en, d * (en - st) / span, F.METHOD_LINEAR | F.METHOD_SCALED)
    return interval, slots
