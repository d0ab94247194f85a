"""Validation, estimation and daily aggregation of register reads: the public face of billing.kernels.

Rules (thresholds in billing/vee_rules.toml), per series = one meter's cumulative channel, reads sorted by time:
- DUPLICATE: a read at the same instant as the previous one is ignored.
- GAP: reads missing before this one (more than the series' interval since the previous read);
  INTERVAL_SIZE: a read off the local interval grid by more than the tolerance. The series' interval is the most
  common allowed interval between its reads.
- STATUS_INVALID / STATUS_WARN: the meter's status bits (amr.obis.STATUS_BITS, in the quality column).
- A register that went backwards is a ROLLOVER when the wrapped delta (+ 10**register_digits) is plausible
  (at most max_plausible_kw over the interval), a REPLACEMENT when the register restarted at most
  replacement_max_kwh (interval estimated flat, the new read becomes the base), NEGATIVE (read not used) otherwise.
- SPIKE: delta above factor x the last valid rate over the same span and above min_kw; the read is not used
  when the register comes back down at the next read (a bad read), kept and flagged otherwise.
- FLAT_LINE: register unchanged for max_s or longer.
- Estimation between two valid reads: linear up to linear_max_s, like-day (same weekday and slot, else same
  slot) beyond, always scaled to the register delta; beyond estimation.max_s: GAP_TOO_LONG, the delta stays
  on the closing read's day for review. With one valid side only (a replaced meter, the period's tail): flat at
  the last valid rate, or like-day energy unscaled. LEADING_GAP: no valid read at or before the period start.
- The like-day profile excludes public holidays (Viet Nam's, Tet included: billing.public_holidays): an interval
  that starts on a holiday is validated and measured as any other but is not the reference for the weeks after
  it. A gap on a holiday itself is estimated from the same ordinary-day profile (there are too few holidays for
  a profile of their own): between reads it only gives the shape, scaled to the register delta; on an open gap
  it is an ordinary day's energy, an overestimate of a Tet day that stays flagged ESTIMATED.
- Per day, on total-register series: HIGH_USE / LOW_USE against the series' own average day over the history
  window, ZERO_USE after zero_days zero days (active customers only); TOU_SUM: T1+T2+T3 against the total.
- Per clock-offset reading (OBIS 0.0.1.0.0.255): CLOCK_SUSPECT / CLOCK_INVALID, also flagged on that meter's days.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from functools import cached_property

import numpy as np
import pandas as pd

from amr.timebase import DAY_S, local_midnight_utc_s
from billing import flags as F
from billing import kernels as K
from billing.kernels import VeeInputError, check_array, check_holiday_days
from billing.public_holidays import holiday_days as vn_holiday_days
from billing.rules import VeeRules, kernel_thresholds

TOTAL_CHANNEL = 1  # 1.0.1.8.0.255 active import total [kWh]
RATE_CHANNELS = (2, 3, 4)  # 1.0.1.8.1/2/3: normal, peak, off-peak [kWh]
ENERGY_CHANNELS = (1, 2, 3, 4)
CLOCK_CHANNEL = 20  # 0.0.1.0.0.255 clock offset [s]
DEFAULT_REGISTER_DIGITS = 6  # the meters table's default


@dataclass(frozen=True, kw_only=True)
class ReadingArrays:
    """Reads sorted by (meter_id, channel_id, ts_s); one element per reading."""

    meter_id: np.ndarray  # int32
    channel_id: np.ndarray  # int16
    ts_s: np.ndarray  # int64, UTC epoch [s]
    value: np.ndarray  # float64, register units [kWh] or [s] for the clock offset
    quality: np.ndarray  # int16, amr.obis.STATUS_BITS

    def __len__(self) -> int:
        return int(self.ts_s.shape[0])

    def take(self, mask: np.ndarray) -> ReadingArrays:
        return ReadingArrays(
            meter_id=self.meter_id[mask],
            channel_id=self.channel_id[mask],
            ts_s=self.ts_s[mask],
            value=self.value[mask],
            quality=self.quality[mask],
        )


@dataclass(frozen=True, kw_only=True)
class PeriodWindow:
    """Local days [first_day, first_day + n_days) that VEE reports on."""

    first_day: date
    n_days: int

    @property
    def day0_s(self) -> int:
        """UTC epoch [s] of the first day's local midnight."""
        return local_midnight_utc_s(self.first_day)

    @property
    def end_s(self) -> int:
        return self.day0_s + self.n_days * DAY_S

    def days(self) -> np.ndarray:
        return np.datetime64(self.first_day, "D") + np.arange(self.n_days)

    @property
    def last_day(self) -> date:
        return self.first_day + timedelta(days=self.n_days - 1)


@dataclass(frozen=True, kw_only=True)
class FlagRecords:
    """K.vee_kernel's records of the reads with a nonzero flag: chunk c's (K.chunk_series) at
    [seg[first series of c], + rows[c]) of read (index), flags and start (interval start [s])."""

    n_readings: int
    seg: np.ndarray
    read: np.ndarray
    flags: np.ndarray
    start: np.ndarray
    rows: np.ndarray

    def expand(self) -> np.ndarray:
        out = np.zeros(self.n_readings, np.uint32)
        if self.seg.shape[0] > 1:
            K.expand_flags(self.seg, self.read, self.flags, self.rows, out)
        return out


@dataclass(frozen=True, kw_only=True)
class SeriesStates:
    """The state each series resumes from (K.SeriesSeed, plus its zero days), sorted by (meter_id, channel_id):
    what a previous pass left after the series' last valid read at a local midnight. validate_estimate takes it
    up for the series whose first read in the batch is that read."""

    meter_id: np.ndarray  # int32
    channel_id: np.ndarray  # int16
    rate: np.ndarray  # float64, the last valid interval's rate [kWh/s], -1: none
    zero_since_s: np.ndarray  # int64, register unchanged since [s], -1: none
    avg_kwh_per_day: np.ndarray  # float64, smoothed average day [kWh/day], NaN: none
    zero_days: np.ndarray  # int64, zero days in a row up to that read (ZERO_USE)

    def __len__(self) -> int:
        return int(self.meter_id.shape[0])


@dataclass(kw_only=True)
class VeeResult:
    window: PeriodWindow
    series_meter: np.ndarray  # (S,) int32
    series_channel: np.ndarray  # (S,) int16
    measured: np.ndarray  # (S, D) float64 [kWh register units]
    estimated: np.ndarray  # (S, D) float64
    n_measured: np.ndarray  # (S, D) int32 intervals
    n_estimated: np.ndarray  # (S, D) int32 intervals
    day_flags: np.ndarray  # (S, D) uint32
    day_methods: np.ndarray  # (S, D) uint8
    series_flags: np.ndarray  # (S,) uint32
    series_interval_s: np.ndarray  # (S,) int64
    hist_kwh_per_day: np.ndarray  # (S,) float64, NaN without history (a resumed series: its state's average day)
    seeded: np.ndarray  # (S,) bool, resumed from a SeriesStates row
    state: K.SeriesArrays  # its state_* fields: each series' state after its last valid read at a local midnight
    state_zero_days: np.ndarray  # (S,) int64, zero days in a row up to that read
    flag_records: FlagRecords  # the energy reads with a flag; reading_flags expands them
    exceptions: pd.DataFrame  # meter_id, channel_id, interval_start, interval_end, rule, severity, value

    @cached_property
    def reading_flags(self) -> np.ndarray:
        """Flags per energy reading, uint32 (in the order of the energy reads; built on first use: billing runs
        only need the exception rows, and a full-length array costs page faults)."""
        return self.flag_records.expand()

    def series_index(self, meter_id: int, channel_id: int) -> int:
        hits = np.flatnonzero((self.series_meter == meter_id) & (self.series_channel == channel_id))
        if hits.size == 0:
            raise KeyError((meter_id, channel_id))
        return int(hits[0])


def series_key(meter_id: np.ndarray, channel_id: np.ndarray) -> np.ndarray:
    """One int64 per (meter, channel) series, ordered as the pair: meter << 16 | channel (channel ids fit 16 bits)."""
    return np.asarray(meter_id).astype(np.int64) << 16 | np.asarray(channel_id).astype(np.int64)


def series_of_key(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """series_key's (meter_id int32, channel_id int16) back."""
    key = np.asarray(key, dtype=np.int64)
    return (key >> 16).astype(np.int32), (key & 0xFFFF).astype(np.int16)


def check_readings(r: ReadingArrays, *, sorted_check: bool = True) -> None:
    """Refuse arrays the kernels cannot take: wrong dtype, unequal lengths, not C-contiguous, not sorted
    (validate_estimate checks the order while it finds the series, in the same pass)."""
    expected = {
        "meter_id": np.int32,
        "channel_id": np.int16,
        "ts_s": np.int64,
        "value": np.float64,
        "quality": np.int16,
    }
    for name, dtype in expected.items():
        check_array(name, getattr(r, name), dtype, length=len(r))
    if sorted_check:
        series_segments(r)


def series_segments(r: ReadingArrays) -> np.ndarray:
    """Offsets of each (meter, channel) series: seg[s]:seg[s + 1] (length S + 1); refuses unsorted rows."""
    seg = np.empty(len(r) + 1, dtype=np.int64)
    count = K.sorted_segments(r.meter_id, r.channel_id, r.ts_s, seg)
    if count < 0:
        raise VeeInputError("readings must be sorted by (meter_id, channel_id, ts_s)")
    return seg[: count + 1].copy()


def lookup_digits(series_meter: np.ndarray, meter_ids: np.ndarray, register_digits: np.ndarray) -> np.ndarray:
    """register_digits per series (meter_ids sorted ascending); the schema default for unknown meters."""
    digits = np.full(series_meter.shape[0], DEFAULT_REGISTER_DIGITS, dtype=np.int64)
    if meter_ids.size:
        pos = np.clip(np.searchsorted(meter_ids, series_meter), 0, meter_ids.size - 1)
        known = meter_ids[pos] == series_meter
        digits[known] = register_digits[pos[known]]
    return digits


def validate_estimate(
    readings: ReadingArrays,
    *,
    rules: VeeRules,
    window: PeriodWindow,
    meter_ids: np.ndarray | None = None,
    register_digits: np.ndarray | None = None,
    holiday_days: np.ndarray | None = None,
    states: SeriesStates | None = None,
) -> VeeResult:
    """Run every VEE rule over a batch of reads (energy channels 1-4 and the clock offset, channel 20).

    readings: sorted by (meter_id, channel_id, ts_s), covering the window plus the rules' history days before it;
    meter_ids / register_digits: the meters' register sizes (sorted by meter_id) for rollover detection;
    holiday_days: the local day numbers (amr.timebase.local_day_number; int64, strictly ascending) the like-day
    profiles leave out; None: default_holiday_days (Viet Nam's public holidays), an empty array: none;
    states: the state the series in it resume from (each such series' first read must be its state's read: the
    caller puts it there), with its average day as the history the day checks use.
    """
    check_readings(readings, sorted_check=False)
    if holiday_days is None:
        holiday_days = default_holiday_days(window)
    check_holiday_days(holiday_days)
    ch = readings.channel_id
    only_energy = len(readings) == 0 or (
        int(ch.min()) >= min(ENERGY_CHANNELS) and int(ch.max()) <= max(ENERGY_CHANNELS)
    )
    # the common case (energy channels only) runs on the caller's arrays without copying them
    if only_energy:
        energy, clock = readings, readings.take(np.zeros(0, np.int64))
    else:
        # a lookup table on the small channel ids: one gather instead of np.isin's sort
        lut = np.zeros(max(int(ch.max()), CLOCK_CHANNEL) + 1, np.uint8)
        lut[list(ENERGY_CHANNELS)] = 1
        lut[CLOCK_CHANNEL] = 2
        kind = lut[np.maximum(ch, 0)]
        energy, clock = readings.take(kind == 1), readings.take(kind == 2)
    seg = series_segments(energy)
    n_series = seg.shape[0] - 1
    series_meter = energy.meter_id[seg[:-1]] if n_series else np.zeros(0, np.int32)
    series_channel = energy.channel_id[seg[:-1]] if n_series else np.zeros(0, np.int16)
    ids = meter_ids if meter_ids is not None else np.zeros(0, np.int32)
    digits = register_digits if register_digits is not None else np.zeros(0, np.int64)
    modulus = np.power(10.0, lookup_digits(series_meter, ids, np.asarray(digits, dtype=np.int64)))

    n, d = len(energy), window.n_days
    # flag records: only the few written elements are ever touched (see K.VEE_CHUNKS)
    records = FlagRecords(
        n_readings=n,
        seg=seg,
        read=np.empty(n, np.int64),
        flags=np.empty(n, np.uint32),
        start=np.empty(n, np.int64),
        rows=np.zeros(K.VEE_CHUNKS, np.int64),
    )
    exc_counts = np.zeros((K.VEE_CHUNKS, _RULE_BITS.shape[0]), np.int64)
    days = K.new_day_arrays(n_series, d)
    series = K.new_series_arrays(n_series)
    seed, seeded, zero_run0 = _seed(series_meter, series_channel, states)
    zero_days = np.zeros(n_series, np.int64)
    allowed = np.asarray(rules.interval.allowed_s, dtype=np.int64)
    day0_s, end_s = window.day0_s, window.end_s
    if n_series:
        K.vee_kernel(
            seg,
            energy.ts_s,
            energy.value,
            energy.quality,
            modulus,
            kernel_thresholds(rules),
            allowed,
            holiday_days,
            day0_s,
            end_s,
            _RULE_BITS,
            records.read,
            records.flags,
            records.start,
            records.rows,
            exc_counts,
            days,
            series,
            seed,
        )
        series.hist_kwh_per_day[seeded] = seed.avg_kwh_per_day[seeded]
        h = rules.history
        state_day = np.where(series.state_s >= 0, (series.state_s - 1 - day0_s) // DAY_S, _NO_DAY)
        K.use_check_kernel(
            days,
            series.hist_kwh_per_day,
            series_channel == TOTAL_CHANNEL,
            h.active_min_kwh_per_day,
            h.high_factor,
            h.low_factor,
            h.zero_days,
            zero_run0,
            state_day,
            zero_days,
        )
        if rules.tou_sum.enabled:
            total_idx, rate_idx = tou_groups(series_meter, series_channel)
            K.tou_sum_kernel(total_idx, rate_idx, days, rules.tou_sum.tolerance_kwh, rules.tou_sum.tolerance_ratio)
    clock_flags = _clock_flags(clock, rules)
    _flag_clock_days(clock, clock_flags, series_meter, days.flags, day0_s, d)

    parts = [
        _energy_exceptions(energy, records, exc_counts, window) if n_series else None,
        _rows(
            clock.meter_id,
            clock.channel_id,
            clock.ts_s,
            clock.ts_s,
            clock_flags,
            clock.value,
            (clock.ts_s > day0_s) & (clock.ts_s < end_s),
        ),
        _day_exceptions(series_meter, series_channel, days, window),
        *_series_exceptions(series_meter, series_channel, series, window),
    ]
    exceptions = _exception_frame([p for p in parts if p is not None])
    return VeeResult(
        window=window,
        series_meter=series_meter,
        series_channel=series_channel,
        measured=days.measured_kwh,
        estimated=days.estimated_kwh,
        n_measured=days.n_measured,
        n_estimated=days.n_estimated,
        day_flags=days.flags,
        day_methods=days.methods,
        series_flags=series.flags,
        series_interval_s=series.interval_s,
        hist_kwh_per_day=series.hist_kwh_per_day,
        seeded=seeded,
        state=series,
        state_zero_days=zero_days,
        flag_records=records,
        exceptions=exceptions,
    )


_NO_DAY = -(1 << 62)  # a day index no window has


def _seed(
    series_meter: np.ndarray, series_channel: np.ndarray, states: SeriesStates | None
) -> tuple[K.SeriesSeed, np.ndarray, np.ndarray]:
    """Each series' seed from `states` (by meter and channel), whether it has one, its zero days before."""
    n = series_meter.shape[0]
    seed = K.no_seed(n)
    seeded = np.zeros(n, bool)
    zero_run0 = np.zeros(n, np.int64)
    if states is None or len(states) == 0 or n == 0:
        return seed, seeded, zero_run0
    key = series_key(states.meter_id, states.channel_id)
    if key.shape[0] > 1 and bool((key[1:] <= key[:-1]).any()):
        raise VeeInputError("states: rows must be sorted by (meter_id, channel_id), one per series")
    want = series_key(series_meter, series_channel)
    pos = np.clip(np.searchsorted(key, want), 0, key.shape[0] - 1)
    seeded = key[pos] == want
    at = pos[seeded]
    seed.rate[seeded] = states.rate[at]
    seed.zero_since_s[seeded] = states.zero_since_s[at]
    seed.avg_kwh_per_day[seeded] = states.avg_kwh_per_day[at]
    zero_run0[seeded] = states.zero_days[at]
    return seed, seeded, zero_run0


def default_holiday_days(window: PeriodWindow) -> np.ndarray:
    """Viet Nam's public holidays from the year before the window's first day (the history reads and the profile
    come from before the window) through the year of its last day, as local day numbers."""
    return vn_holiday_days(window.first_day.year - 1, window.last_day.year)


def tou_groups(series_meter: np.ndarray, series_channel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Series indices of meters that have the total and all three rate registers: (total_idx[G], rate_idx[G, 3])."""
    idx = np.arange(series_meter.shape[0])
    by_channel = {}
    for ch in (TOTAL_CHANNEL, *RATE_CHANNELS):
        m = series_channel == ch
        by_channel[ch] = (series_meter[m], idx[m])
    meters = by_channel[TOTAL_CHANNEL][0]
    for ch in RATE_CHANNELS:
        meters = np.intersect1d(meters, by_channel[ch][0])
    total_idx = by_channel[TOTAL_CHANNEL][1][np.searchsorted(by_channel[TOTAL_CHANNEL][0], meters)]
    rate_idx = (
        np.stack([by_channel[ch][1][np.searchsorted(by_channel[ch][0], meters)] for ch in RATE_CHANNELS], axis=1)
        if meters.size
        else np.zeros((0, 3), np.int64)
    )
    return total_idx.astype(np.int64), np.ascontiguousarray(rate_idx, dtype=np.int64)


def _clock_flags(clock: ReadingArrays, rules: VeeRules) -> np.ndarray:
    offset = np.abs(clock.value)
    out = np.zeros(len(clock), np.uint32)
    out[offset > rules.clock.suspect_s] = F.CLOCK_SUSPECT
    out[offset > rules.clock.invalid_s] = F.CLOCK_INVALID
    return out


def _flag_clock_days(
    clock: ReadingArrays,
    clock_flags: np.ndarray,
    series_meter: np.ndarray,
    day_flags: np.ndarray,
    day0_s: int,
    n_days: int,
) -> None:
    hit = np.flatnonzero(clock_flags)
    if hit.size == 0 or series_meter.size == 0:
        return
    day = (clock.ts_s[hit] - day0_s) // DAY_S
    keep = (day >= 0) & (day < n_days)
    hit, day = hit[keep], day[keep]
    meters = clock.meter_id[hit]
    lo = np.searchsorted(series_meter, meters, "left")
    hi = np.searchsorted(series_meter, meters, "right")
    counts = hi - lo
    rows = np.repeat(lo, counts) + (np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts))
    np.bitwise_or.at(day_flags, (rows, np.repeat(day, counts)), np.repeat(clock_flags[hit], counts))


# Exception rows are built as numpy columns (meter, channel, start [s], end [s], rule index into F.RULES, value)
# and become one DataFrame at the end: pandas' per-frame overhead dominated when every part and rule was a frame.
_Columns = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]
_RULE_BITS = np.array([rule.bit for rule in F.RULES], dtype=np.uint32)
_RULE_CODES = np.array([rule.code for rule in F.RULES], dtype=object)
_RULE_SEVERITIES = np.array([rule.severity for rule in F.RULES], dtype=object)


def _rows(
    meter: np.ndarray,
    channel: np.ndarray,
    start_s: np.ndarray,
    end_s: np.ndarray,
    bits: np.ndarray,
    value: np.ndarray,
    keep: np.ndarray | None = None,
) -> _Columns:
    """One exception row per (row, rule bit set in bits[row]) among the kept rows: rule by rule (F.RULES order),
    rows ascending within a rule."""
    bits = np.asarray(bits, dtype=np.uint32)
    if keep is not None:
        bits = np.where(keep, bits, np.uint32(0))
    present = int(np.bitwise_or.reduce(bits)) if bits.size else 0
    picks = [np.flatnonzero(bits & rule.bit) if present & rule.bit else np.zeros(0, np.int64) for rule in F.RULES]
    rows = np.concatenate(picks)
    rule = np.repeat(np.arange(len(F.RULES)), [p.size for p in picks])
    return (
        meter[rows],
        channel[rows],
        np.asarray(start_s)[rows],
        np.asarray(end_s)[rows],
        rule,
        np.asarray(value, dtype=np.float64)[rows],
    )


def _energy_exceptions(
    energy: ReadingArrays, records: FlagRecords, exc_counts: np.ndarray, window: PeriodWindow
) -> _Columns:
    """The reading exceptions among vee_kernel's flag records, in _rows' order."""
    per_rule = exc_counts.sum(axis=0)
    # rows of rule b: after all rows of the rules before it; chunk c's after those of the chunks before c
    offsets = (np.cumsum(per_rule) - per_rule)[None, :] + (np.cumsum(exc_counts, axis=0) - exc_counts)
    total = int(per_rule.sum())
    row_read = np.empty(total, np.int64)
    row_start = np.empty(total, np.int64)
    K.gather_exceptions(
        records.seg,
        energy.ts_s,
        window.day0_s,
        window.end_s,
        _RULE_BITS,
        records.read,
        records.flags,
        records.start,
        records.rows,
        np.ascontiguousarray(offsets),
        row_read,
        row_start,
    )
    rule = np.repeat(np.arange(_RULE_BITS.shape[0]), per_rule)
    return (
        energy.meter_id[row_read],
        energy.channel_id[row_read],
        row_start,
        energy.ts_s[row_read],
        rule,
        energy.value[row_read],
    )


def _utc(epoch_s: np.ndarray) -> pd.DatetimeIndex:
    return pd.DatetimeIndex(epoch_s.astype(np.int64) * 1_000_000_000, dtype="datetime64[ns, UTC]")


def _exception_frame(parts: list[_Columns]) -> pd.DataFrame:
    """Columns meter_id, channel_id, interval_start, interval_end (UTC, [ns]), rule, severity, value; the parts'
    rows in order."""
    if not parts:
        return empty_exceptions()
    meter, channel, start, end, rule, value = (np.concatenate([p[k] for p in parts]) for k in range(6))
    return pd.DataFrame(
        {
            "meter_id": meter.astype(np.int32, copy=False),
            "channel_id": channel.astype(np.int16, copy=False),
            "interval_start": _utc(start),
            "interval_end": _utc(end),
            # object, like the frames before: pandas would infer its str dtype from an object array of str
            "rule": pd.Series(_RULE_CODES[rule], dtype=object, copy=False),
            "severity": pd.Series(_RULE_SEVERITIES[rule], dtype=object, copy=False),
            "value": value.astype(np.float64, copy=False),
        }
    )


def empty_exceptions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "meter_id": pd.Series(dtype=np.int32),
            "channel_id": pd.Series(dtype=np.int16),
            "interval_start": pd.Series(dtype="datetime64[ns, UTC]"),
            "interval_end": pd.Series(dtype="datetime64[ns, UTC]"),
            "rule": pd.Series(dtype=object),
            "severity": pd.Series(dtype=object),
            "value": pd.Series(dtype=np.float64),
        }
    )


_DAY_RULES = F.HIGH_USE | F.LOW_USE | F.ZERO_USE | F.TOU_SUM


def _day_exceptions(
    series_meter: np.ndarray, series_channel: np.ndarray, days: K.DayArrays, window: PeriodWindow
) -> _Columns:
    s, d = np.nonzero(days.flags & _DAY_RULES)
    start = window.day0_s + d.astype(np.int64) * DAY_S
    return _rows(
        series_meter[s],
        series_channel[s],
        start,
        start + DAY_S,
        days.flags[s, d] & _DAY_RULES,
        days.measured_kwh[s, d] + days.estimated_kwh[s, d],
    )


def _series_exceptions(
    series_meter: np.ndarray, series_channel: np.ndarray, series: K.SeriesArrays, window: PeriodWindow
) -> list[_Columns]:
    lead = np.flatnonzero(series.flags & F.LEADING_GAP)
    lead_end = np.where(series.first_valid_s[lead] < 0, window.end_s, series.first_valid_s[lead])
    tail = np.flatnonzero(series.flags & F.GAP_TOO_LONG)
    return [
        _rows(
            series_meter[lead],
            series_channel[lead],
            np.full(lead.size, window.day0_s),
            lead_end,
            np.full(lead.size, F.LEADING_GAP, np.uint32),
            np.full(lead.size, np.nan),
        ),
        _rows(
            series_meter[tail],
            series_channel[tail],
            np.maximum(series.last_valid_s[tail], window.day0_s),
            np.full(tail.size, window.end_s),
            np.full(tail.size, F.GAP_TOO_LONG, np.uint32),
            np.full(tail.size, np.nan),
        ),
    ]
