"""Numba VEE kernels on contiguous arrays sorted by (series, ts); one series = one meter's cumulative channel.

Private: call them through ``billing.vee``, whose wrapper checks dtypes, shapes and sortedness. Times are UTC
epoch seconds [s]; ``day0_s`` is the UTC instant of the first local (UTC+7) midnight of the period; values are
register units [kWh] before the multiplier. Parallel over chunks of series (``prange``); each chunk writes only its
own rows, so no locks. ``cache=True``: compiled once per machine, not per run.

Per reading (in each series' scratch): flags (billing.flags bits), interval start [s] (the last valid read before
it) and the register delta [kWh] (NaN when the read is not valid); only reads with a flag are kept (records). Per
series and local day: measured and estimated energy, interval counts, flags and estimation methods. The
plain-Python twin in tests/billing/twin.py follows the same rules line by line; the rules themselves are documented
in billing/vee.py.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from billing import flags as F
from billing import rules as R

DAY_S = 86400
LOCAL_OFFSET_S = 7 * 3600  # Asia/Ho_Chi_Minh is UTC+7, no DST
EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday (Monday = 0)

_DUPLICATE = np.uint32(F.DUPLICATE)
_STATUS_INVALID = np.uint32(F.STATUS_INVALID)
_STATUS_WARN = np.uint32(F.STATUS_WARN)
_INTERVAL_SIZE = np.uint32(F.INTERVAL_SIZE)
_GAP = np.uint32(F.GAP)
_NEGATIVE = np.uint32(F.NEGATIVE)
_ROLLOVER = np.uint32(F.ROLLOVER)
_REPLACEMENT = np.uint32(F.REPLACEMENT)
_SPIKE = np.uint32(F.SPIKE)
# A spike is a read the register falls back below within this many later reads (a glitch of a few reads).
SPIKE_LOOKAHEAD_READS = 4
_FLAT_LINE = np.uint32(F.FLAT_LINE)
_GAP_TOO_LONG = np.uint32(F.GAP_TOO_LONG)
_LEADING_GAP = np.uint32(F.LEADING_GAP)
_HIGH_USE = np.uint32(F.HIGH_USE)
_LOW_USE = np.uint32(F.LOW_USE)
_ZERO_USE = np.uint32(F.ZERO_USE)
_TOU_SUM = np.uint32(F.TOU_SUM)
_ESTIMATED = np.uint32(F.ESTIMATED)
_M_LINEAR = np.uint8(F.METHOD_LINEAR)
_M_HISTORICAL = np.uint8(F.METHOD_HISTORICAL)
_M_FLAT = np.uint8(F.METHOD_FLAT)
_M_SCALED = np.uint8(F.METHOD_SCALED)


@njit(cache=True)
def _day_of_end(t_end: int, day0_s: int) -> int:
    """Local day index of the interval that ends at t_end (an interval ending at midnight belongs to the day before)."""
    return (t_end - 1 - day0_s) // DAY_S


INTERVAL_SAMPLE_READS = 256  # enough steps to find a series' interval through gaps, without a full extra pass


@njit(cache=True)
def _series_interval(ts: np.ndarray, lo: int, hi: int, allowed: np.ndarray, default_s: int) -> int:
    """The most common allowed interval between the first INTERVAL_SAMPLE_READS reads of a series
    (ties: the shorter)."""
    counts = np.zeros(allowed.shape[0], dtype=np.int64)
    for i in range(lo + 1, min(hi, lo + INTERVAL_SAMPLE_READS)):
        dt = ts[i] - ts[i - 1]
        for k in range(allowed.shape[0]):
            if dt == allowed[k]:
                counts[k] += 1
                break
    best = -1
    best_count = 0
    for k in range(allowed.shape[0]):
        if counts[k] > best_count:
            best = k
            best_count = counts[k]
    return allowed[best] if best >= 0 else default_s


@njit(cache=True)
def _profile_index(t_start: int, interval_s: int, n_slots: int) -> int:
    """Like-day profile cell (weekday x slot of the local day) of an interval starting at t_start."""
    loc = t_start + LOCAL_OFFSET_S
    slot = (loc % DAY_S) // interval_s if n_slots > 1 else 0
    return ((loc // DAY_S + EPOCH_WEEKDAY) % 7) * n_slots + slot


@njit(cache=True)
def _profile_weight(
    t_start: int, length_s: int, interval_s: int, n_slots: int, prof_sum: np.ndarray, prof_cnt: np.ndarray
) -> float:
    """Like-day energy [kWh] for an interval: mean of valid intervals in the same weekday and slot, else the same
    slot on any day; -1 when the series has no valid interval in that slot."""
    k = _profile_index(t_start, interval_s, n_slots)
    slot = k % n_slots
    if prof_cnt[k] > 0:
        return prof_sum[k] / prof_cnt[k] * length_s / interval_s
    total = 0.0
    count = 0
    for w in range(7):
        total += prof_sum[w * n_slots + slot]
        count += prof_cnt[w * n_slots + slot]
    if count > 0:
        return total / count * length_s / interval_s
    return -1.0


@njit(cache=True)
def _add_estimate(
    s: int,
    t_end: int,
    energy: float,
    method: np.uint8,
    day0_s: int,
    n_days: int,
    estimated: np.ndarray,
    n_est: np.ndarray,
    day_flags: np.ndarray,
    day_methods: np.ndarray,
) -> None:
    di = _day_of_end(t_end, day0_s)
    if 0 <= di < n_days:
        estimated[s, di] += energy
        n_est[s, di] += 1
        day_flags[s, di] |= _ESTIMATED
        day_methods[s, di] |= method


@njit(cache=True)
def _flag_days(s: int, a: int, b: int, flag: np.uint32, day0_s: int, n_days: int, day_flags: np.ndarray) -> None:
    """Flag every day an open interval (a, b] touches."""
    d_first = max(_day_of_end(a + 1, day0_s), 0)
    d_last = min(_day_of_end(b, day0_s), n_days - 1)
    for di in range(d_first, d_last + 1):
        day_flags[s, di] |= flag


@njit(cache=True)
def _estimate_between(
    s: int,
    a: int,
    b: int,
    delta: float,
    interval_s: int,
    linear_max_s: float,
    n_slots: int,
    prof_sum: np.ndarray,
    prof_cnt: np.ndarray,
    day0_s: int,
    n_days: int,
    estimated: np.ndarray,
    n_est: np.ndarray,
    day_flags: np.ndarray,
    day_methods: np.ndarray,
) -> None:
    """Spread a register delta [kWh] between two valid reads over the missing intervals of (a, b]:
    linear up to linear_max_s, like-day weights beyond; both scaled to sum exactly to the delta."""
    span = b - a
    use_profile = span > linear_max_s
    weight_sum = 0.0
    if use_profile:
        st = a
        while st < b:
            en = min(st + interval_s, b)
            w = _profile_weight(st, en - st, interval_s, n_slots, prof_sum, prof_cnt)
            if w < 0.0:
                use_profile = False
                break
            weight_sum += w
            st = en
        if weight_sum <= 0.0:
            use_profile = False
    method = (_M_HISTORICAL if use_profile else _M_LINEAR) | _M_SCALED
    st = a
    while st < b:
        en = min(st + interval_s, b)
        if use_profile:
            share = _profile_weight(st, en - st, interval_s, n_slots, prof_sum, prof_cnt) / weight_sum
        else:
            share = (en - st) / span
        _add_estimate(s, en, delta * share, method, day0_s, n_days, estimated, n_est, day_flags, day_methods)
        st = en


@njit(cache=True)
def _estimate_open(
    s: int,
    a: int,
    b: int,
    rate_kw_s: float,
    interval_s: int,
    linear_max_s: float,
    n_slots: int,
    prof_sum: np.ndarray,
    prof_cnt: np.ndarray,
    day0_s: int,
    n_days: int,
    estimated: np.ndarray,
    n_est: np.ndarray,
    day_flags: np.ndarray,
    day_methods: np.ndarray,
) -> bool:
    """Estimate (a, b] with one valid side only: flat load at the last valid rate [kWh/s] up to linear_max_s,
    like-day energy beyond (flat where a slot has no history). False when nothing is known to estimate from."""
    use_profile = (b - a) > linear_max_s
    st = a
    while st < b:
        en = min(st + interval_s, b)
        w = _profile_weight(st, en - st, interval_s, n_slots, prof_sum, prof_cnt) if use_profile else -1.0
        if w < 0.0 and rate_kw_s < 0.0:
            return False
        st = en
    st = a
    while st < b:
        en = min(st + interval_s, b)
        w = _profile_weight(st, en - st, interval_s, n_slots, prof_sum, prof_cnt) if use_profile else -1.0
        if w >= 0.0:
            _add_estimate(s, en, w, _M_HISTORICAL, day0_s, n_days, estimated, n_est, day_flags, day_methods)
        else:
            _add_estimate(
                s, en, rate_kw_s * (en - st), _M_FLAT, day0_s, n_days, estimated, n_est, day_flags, day_methods
            )
        st = en
    return True


@njit(cache=True)
def _vee_series(
    s: int,
    lo: int,
    hi: int,
    ts: np.ndarray,
    value: np.ndarray,
    quality: np.ndarray,
    modulus: float,
    params: np.ndarray,
    allowed: np.ndarray,
    day0_s: int,
    n_days: int,
    period_end_s: int,
    out_flags: np.ndarray,
    out_start: np.ndarray,
    out_delta: np.ndarray,
    measured: np.ndarray,
    estimated: np.ndarray,
    n_meas: np.ndarray,
    n_est: np.ndarray,
    day_flags: np.ndarray,
    day_methods: np.ndarray,
    series_flags: np.ndarray,
    series_interval: np.ndarray,
    hist_kwh_per_day: np.ndarray,
    first_valid_s: np.ndarray,
    last_valid_s: np.ndarray,
) -> None:
    """One series, reads [lo, hi). out_flags / out_start / out_delta are the series' own scratch, indexed i - lo."""
    interval_s = _series_interval(ts, lo, hi, allowed, int(params[R.P_DEFAULT_INTERVAL_S]))
    series_interval[s] = interval_s
    tol = params[R.P_ALIGN_TOL_S]
    max_kw = params[R.P_MAX_PLAUSIBLE_KW]
    repl_max = params[R.P_REPLACEMENT_MAX_KWH]
    spike_factor = params[R.P_SPIKE_FACTOR]
    spike_min_kw = params[R.P_SPIKE_MIN_KW]
    flat_s = params[R.P_FLAT_LINE_S]
    linear_max_s = params[R.P_LINEAR_MAX_S]
    est_max_s = params[R.P_ESTIMATE_MAX_S]
    inv_mask = np.int64(params[R.P_STATUS_INVALID_MASK])
    rev_mask = np.int64(params[R.P_STATUS_REVIEW_MASK])

    # -- pass 1: validate each read against the last valid one; like-day profile and history from the valid
    # single intervals as they are accepted ----------------------------------------------------------------------
    # Integer divisions dominate the per-read cost, so on the regular grid (the common case) the alignment, the
    # profile cell and the day index are carried forward from the previous read instead of recomputed.
    n_slots = DAY_S // interval_s if interval_s < DAY_S else 1
    n_cells = 7 * n_slots
    cell_step = interval_s // DAY_S if interval_s >= DAY_S else 1
    prof_sum = np.zeros(n_cells, dtype=np.float64)
    prof_cnt = np.zeros(n_cells, dtype=np.int64)
    hist_kwh = 0.0
    hist_s = 0
    aligned_prev = False
    base_cell = 0
    has_base = False
    base_ts = 0
    base_val = 0.0
    has_prev = False
    prev_ts = 0
    last_rate = -1.0
    zero_start = -1
    first_valid_s[s] = -1
    for i in range(lo, hi):
        t = ts[i]
        v = value[i]
        q = np.int64(quality[i])
        f = np.uint32(0)
        out_delta[i - lo] = np.nan
        if has_prev and t == prev_ts:
            out_flags[i - lo] = _DUPLICATE
            out_start[i - lo] = prev_ts
            continue
        if has_prev and t - prev_ts > interval_s:
            f |= _GAP
        if has_prev and aligned_prev and t - prev_ts == interval_s:
            aligned = True
        else:
            r = (t - day0_s) % interval_s
            aligned = min(r, interval_s - r) <= tol
        if not aligned:
            f |= _INTERVAL_SIZE
        aligned_prev = aligned
        prev_ts = t
        has_prev = True
        invalid = False
        if q & inv_mask:
            f |= _STATUS_INVALID
            invalid = True
        if q & rev_mask:
            f |= _STATUS_WARN
        if not has_base:
            out_start[i - lo] = t
            out_flags[i - lo] = f
            if not invalid:
                has_base = True
                base_ts = t
                base_val = v
                base_cell = _profile_index(t, interval_s, n_slots)
                first_valid_s[s] = t
            continue
        out_start[i - lo] = base_ts
        if invalid:
            out_flags[i - lo] = f
            continue
        dt = t - base_ts
        d = v - base_val
        if d < 0.0:
            wrapped = d + modulus
            if wrapped >= 0.0 and wrapped <= max_kw * dt / 3600.0:
                f |= _ROLLOVER
                d = wrapped
            elif v <= repl_max:
                # The new register restarts near zero: what the old meter counted after base_ts is unknown, so
                # the interval is estimated (flat load) and the new read becomes the base.
                out_flags[i - lo] = f | _REPLACEMENT
                base_ts = t
                base_val = v
                base_cell = _profile_index(t, interval_s, n_slots)
                zero_start = -1
                continue
            else:
                out_flags[i - lo] = f | _NEGATIVE
                continue
        ref = last_rate * dt if last_rate > 0.0 else 0.0
        if d > spike_factor * ref and d > spike_min_kw * dt / 3600.0:
            f |= _SPIKE
            # The register comes back down within the next few reads: this read is bad, not the energy. A meter
            # glitch can hold for more than one read, so look beyond the next one.
            j = i + 1
            seen = 0
            bad = False
            while j < hi and seen < SPIKE_LOOKAHEAD_READS:
                if ts[j] != t:
                    seen += 1
                    if value[j] < v:
                        bad = True
                        break
                j += 1
            if bad:
                out_flags[i - lo] = f
                continue
        if d == 0.0:
            if zero_start < 0:
                zero_start = base_ts
            if t - zero_start >= flat_s:
                f |= _FLAT_LINE
        else:
            zero_start = -1
        out_delta[i - lo] = d
        out_flags[i - lo] = f
        if dt == interval_s:
            prof_sum[base_cell] += d
            prof_cnt[base_cell] += 1
            base_cell += cell_step
            while base_cell >= n_cells:
                base_cell -= n_cells
        else:
            base_cell = _profile_index(t, interval_s, n_slots)
        if t <= day0_s:
            hist_kwh += d
            hist_s += dt
        last_rate = d / dt
        base_ts = t
        base_val = v
    hist_kwh_per_day[s] = hist_kwh / hist_s * DAY_S if hist_s > 0 else np.nan

    # -- pass 2: measured and estimated energy per local day ----------------------------------------------------
    last_rate = -1.0
    sflags = np.uint32(0)
    last_valid = -1
    day_lo = 0
    day_hi = 0  # [day_lo, day_hi): offsets from day0_s (of t - 1) that belong to day di
    di = 0
    for i in range(lo, hi):
        t = ts[i]
        f = out_flags[i - lo]
        x = t - 1 - day0_s
        if x < day_lo or x >= day_hi:
            di = x // DAY_S
            day_lo = di * DAY_S
            day_hi = day_lo + DAY_S
        if 0 <= di < n_days:
            day_flags[s, di] |= f
        a = out_start[i - lo]
        if f & _REPLACEMENT:
            last_valid = t
            if not _estimate_open(
                s,
                a,
                t,
                last_rate,
                interval_s,
                linear_max_s,
                n_slots,
                prof_sum,
                prof_cnt,
                day0_s,
                n_days,
                estimated,
                n_est,
                day_flags,
                day_methods,
            ):
                out_flags[i - lo] |= _GAP_TOO_LONG
                _flag_days(s, a, t, _GAP_TOO_LONG, day0_s, n_days, day_flags)
            continue
        d = out_delta[i - lo]
        if np.isnan(d):
            continue
        last_valid = t
        span = t - a
        if span <= interval_s:
            if 0 <= di < n_days:
                measured[s, di] += d
                n_meas[s, di] += 1
        elif span > est_max_s:
            # Beyond the estimation limit: the register delta is real energy, but how it spreads over the days is
            # unknown; it stays on the closing read's day, flagged for review.
            out_flags[i - lo] |= _GAP_TOO_LONG
            _flag_days(s, a, t, _GAP_TOO_LONG, day0_s, n_days, day_flags)
            if 0 <= di < n_days:
                measured[s, di] += d
                n_meas[s, di] += 1
        else:
            _estimate_between(
                s,
                a,
                t,
                d,
                interval_s,
                linear_max_s,
                n_slots,
                prof_sum,
                prof_cnt,
                day0_s,
                n_days,
                estimated,
                n_est,
                day_flags,
                day_methods,
            )
        last_rate = d / span

    last_valid_s[s] = last_valid
    first = first_valid_s[s]
    if first < 0 or first > day0_s:
        sflags |= _LEADING_GAP
        _flag_days(s, day0_s, period_end_s if first < 0 else first, _LEADING_GAP, day0_s, n_days, day_flags)
    tail_s = period_end_s - last_valid
    tail_ok = True
    if last_valid >= 0 and tail_s >= interval_s:
        tail_ok = tail_s <= est_max_s and _estimate_open(
            s,
            last_valid,
            period_end_s,
            last_rate,
            interval_s,
            linear_max_s,
            n_slots,
            prof_sum,
            prof_cnt,
            day0_s,
            n_days,
            estimated,
            n_est,
            day_flags,
            day_methods,
        )
    if not tail_ok:
        sflags |= _GAP_TOO_LONG
        _flag_days(s, last_valid, period_end_s, _GAP_TOO_LONG, day0_s, n_days, day_flags)
    series_flags[s] = sflags


# Series are processed in this many parallel chunks (enough to balance two to a few dozen cores). Each chunk keeps
# scratch buffers for its series' flags, interval starts and deltas, and records only the reads with a flag, densely
# from its first read's index on: full-length outputs would cost a page fault per 4 KiB on first touch, which on
# this kind of machine costs more than the VEE itself.
VEE_CHUNKS = 64


@njit(cache=True)
def chunk_series(n_series: int, n_chunks: int, c: int) -> tuple[int, int]:
    """Series [first, end) of chunk c when n_series series are split into n_chunks chunks."""
    size = (n_series + n_chunks - 1) // n_chunks
    first = min(c * size, n_series)
    return first, min(first + size, n_series)


@njit(cache=True)
def _is_exception(f: np.uint32, mask: np.uint32, ts: int, start: int, day0_s: int, period_end_s: int) -> bool:
    """A flagged read becomes exception rows when its interval (start, ts] overlaps the period (history reads
    before it were judged by the previous period's run)."""
    return (f & mask) != 0 and ts > day0_s and start < period_end_s


@njit(cache=True, parallel=True)
def vee_kernel(
    seg: np.ndarray,
    ts: np.ndarray,
    value: np.ndarray,
    quality: np.ndarray,
    modulus: np.ndarray,
    params: np.ndarray,
    allowed: np.ndarray,
    day0_s: int,
    n_days: int,
    period_end_s: int,
    rule_bits: np.ndarray,
    rec_read: np.ndarray,
    rec_flags: np.ndarray,
    rec_start: np.ndarray,
    rec_rows: np.ndarray,
    exc_counts: np.ndarray,
    measured: np.ndarray,
    estimated: np.ndarray,
    n_meas: np.ndarray,
    n_est: np.ndarray,
    day_flags: np.ndarray,
    day_methods: np.ndarray,
    series_flags: np.ndarray,
    series_interval: np.ndarray,
    hist_kwh_per_day: np.ndarray,
    first_valid_s: np.ndarray,
    last_valid_s: np.ndarray,
) -> None:
    """VEE over all series, in rec_rows.shape[0] parallel chunks of series (chunk_series).

    Flag records: chunk c writes its reads with a nonzero flag (read index, flags, interval start [s]) to
    rec_read / rec_flags / rec_start from seg[first series of c] on, in read order, rec_rows[c] of them; reads
    without a record have flags 0. The record arrays need n elements but only the written ones are touched (np.empty
    is right). exc_counts[c, k] (zeroed by the caller): chunk c's records that are exceptions (_is_exception) with
    rule_bits[k] set.
    """
    n_series = seg.shape[0] - 1
    n_chunks = rec_rows.shape[0]
    mask = np.uint32(0)
    for k in range(rule_bits.shape[0]):
        mask |= np.uint32(rule_bits[k])
    for c in prange(n_chunks):
        s_first, s_end = chunk_series(n_series, n_chunks, c)
        longest = 0
        for s in range(s_first, s_end):
            longest = max(longest, seg[s + 1] - seg[s])
        flags_buf = np.empty(longest, dtype=np.uint32)
        start_buf = np.empty(longest, dtype=np.int64)
        delta_buf = np.empty(longest, dtype=np.float64)
        k = seg[s_first]
        for s in range(s_first, s_end):
            lo = seg[s]
            hi = seg[s + 1]
            _vee_series(
                s,
                lo,
                hi,
                ts,
                value,
                quality,
                modulus[s],
                params,
                allowed,
                day0_s,
                n_days,
                period_end_s,
                flags_buf,
                start_buf,
                delta_buf,
                measured,
                estimated,
                n_meas,
                n_est,
                day_flags,
                day_methods,
                series_flags,
                series_interval,
                hist_kwh_per_day,
                first_valid_s,
                last_valid_s,
            )
            for i in range(lo, hi):  # the series is still in cache
                f = flags_buf[i - lo]
                if f == 0:
                    continue
                start = start_buf[i - lo]
                rec_read[k] = i
                rec_flags[k] = f
                rec_start[k] = start
                k += 1
                if _is_exception(f, mask, ts[i], start, day0_s, period_end_s):
                    for b in range(rule_bits.shape[0]):
                        if f & rule_bits[b]:
                            exc_counts[c, b] += 1
        rec_rows[c] = k - seg[s_first]


@njit(cache=True, parallel=True)
def gather_exceptions(
    seg: np.ndarray,
    ts: np.ndarray,
    day0_s: int,
    period_end_s: int,
    rule_bits: np.ndarray,
    rec_read: np.ndarray,
    rec_flags: np.ndarray,
    rec_start: np.ndarray,
    rec_rows: np.ndarray,
    offsets: np.ndarray,
    row_read: np.ndarray,
    row_start: np.ndarray,
) -> None:
    """One exception row per (exception record, rule bit) from vee_kernel's records, rule by rule (rule_bits
    order), reads ascending within a rule: offsets[c, b] is where chunk c's rows of rule b begin."""
    n_series = seg.shape[0] - 1
    n_chunks = rec_rows.shape[0]
    mask = np.uint32(0)
    for k in range(rule_bits.shape[0]):
        mask |= np.uint32(rule_bits[k])
    for c in prange(n_chunks):
        s_first, _ = chunk_series(n_series, n_chunks, c)
        pos = offsets[c].copy()
        base = seg[s_first]
        for j in range(base, base + rec_rows[c]):
            i = rec_read[j]
            f = rec_flags[j]
            if not _is_exception(f, mask, ts[i], rec_start[j], day0_s, period_end_s):
                continue
            for b in range(rule_bits.shape[0]):
                if f & rule_bits[b]:
                    p = pos[b]
                    row_read[p] = i
                    row_start[p] = rec_start[j]
                    pos[b] = p + 1


@njit(cache=True, parallel=True)
def expand_flags(
    seg: np.ndarray, rec_read: np.ndarray, rec_flags: np.ndarray, rec_rows: np.ndarray, out_flags: np.ndarray
) -> None:
    """Per-read flags from vee_kernel's records into out_flags (zeroed by the caller)."""
    n_series = seg.shape[0] - 1
    n_chunks = rec_rows.shape[0]
    for c in prange(n_chunks):
        s_first, _ = chunk_series(n_series, n_chunks, c)
        base = seg[s_first]
        for j in range(base, base + rec_rows[c]):
            out_flags[rec_read[j]] = rec_flags[j]


@njit(cache=True, parallel=True)
def use_check_kernel(
    measured: np.ndarray,
    estimated: np.ndarray,
    n_meas: np.ndarray,
    n_est: np.ndarray,
    hist_kwh_per_day: np.ndarray,
    check: np.ndarray,
    active_min: float,
    high_factor: float,
    low_factor: float,
    zero_days: int,
    day_flags: np.ndarray,
) -> None:
    """High / low / zero use per day against the series' own average day [kWh/day] (active customers only)."""
    for s in prange(measured.shape[0]):
        h = hist_kwh_per_day[s]
        if not check[s] or np.isnan(h) or h < active_min:
            continue
        zero_run = 0
        for d in range(measured.shape[1]):
            if n_meas[s, d] + n_est[s, d] == 0:
                zero_run = 0
                continue
            total = measured[s, d] + estimated[s, d]
            if total > high_factor * h:
                day_flags[s, d] |= _HIGH_USE
            elif 0.0 < total < h / low_factor:
                day_flags[s, d] |= _LOW_USE
            if total == 0.0:
                zero_run += 1
                if zero_run >= zero_days:
                    day_flags[s, d] |= _ZERO_USE
            else:
                zero_run = 0


@njit(cache=True, parallel=True)
def tou_sum_kernel(
    total_idx: np.ndarray,
    rate_idx: np.ndarray,
    measured: np.ndarray,
    estimated: np.ndarray,
    n_meas: np.ndarray,
    n_est: np.ndarray,
    tol_kwh: float,
    tol_ratio: float,
    day_flags: np.ndarray,
) -> None:
    """Per meter and day: the total register's energy against the sum of its rate registers (rate_idx[g, 3])."""
    for g in prange(total_idx.shape[0]):
        t = total_idx[g]
        for d in range(measured.shape[1]):
            if n_meas[t, d] + n_est[t, d] == 0:
                continue
            complete = True
            rates = 0.0
            for k in range(rate_idx.shape[1]):
                r = rate_idx[g, k]
                if n_meas[r, d] + n_est[r, d] == 0:
                    complete = False
                    break
                rates += measured[r, d] + estimated[r, d]
            if not complete:
                continue
            total = measured[t, d] + estimated[t, d]
            diff = abs(total - rates)
            if diff > tol_kwh and diff > tol_ratio * abs(total):
                day_flags[t, d] |= _TOU_SUM


@njit(cache=True, parallel=True)
def read_floor_kernel(ts: np.ndarray, value: np.ndarray, quality: np.ndarray) -> float:
    """The memory-read floor for benchmarks: one parallel pass over the bytes the VEE kernel reads."""
    total = 0.0
    for i in prange(value.shape[0]):
        total += value[i] + ts[i] + quality[i]
    return total


@njit(cache=True)
def sorted_segments(meter: np.ndarray, channel: np.ndarray, ts: np.ndarray, seg: np.ndarray) -> int:
    """One pass: fill seg with the start of each (meter, channel) series and return the series count, or -1 when
    the rows are not sorted by (meter, channel, ts). seg needs room for n + 1 entries."""
    n = ts.shape[0]
    if n == 0:
        seg[0] = 0
        return 0
    s = 0
    seg[0] = 0
    for i in range(1, n):
        if meter[i] != meter[i - 1] or channel[i] != channel[i - 1]:
            if meter[i] < meter[i - 1] or (meter[i] == meter[i - 1] and channel[i] < channel[i - 1]):
                return -1
            s += 1
            seg[s] = i
        elif ts[i] < ts[i - 1]:
            return -1
    seg[s + 1] = n
    return s + 1
