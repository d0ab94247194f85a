"""VEE on arrival: one pass validates and estimates the (meter, local day) units ingest marked in vee_pending,
with the history the rules need, and writes what changed as new versions of the validated days, the rule
occurrences of its window, and the exception episodes (sql/080_continuous_vee.sql, docs/vee.md).

A pass is one transaction: results, episodes, the watermark and the deletion of the units it validated commit
together, so a pass killed at any point leaves the units pending and the next pass redoes them; a pass over data
it has already validated writes no version (results are compared with the current ones first), so redoing is
harmless. Passes take an advisory lock: two services on one database do not interleave.

The window of a pass runs from the earliest pending day, less the longest span an estimate can cover (a late
read changes the estimates of the gap before it), to the latest pending day plus that span (and the gap after
it); a series' days are written only from its first read to the last day its reads close (a read at midnight
closes the day before), so days not yet read are not written as empty ones and a profile meter's day is written
once complete, not at each push. At most MAX_WINDOW_DAYS of pending days go in one pass; older backlogs drain
over several passes."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd
import psycopg
from psycopg import sql

from amr import pgcopy
from amr.db.params import int_array_literal
from amr.timebase import DAY_S, LOCAL_UTC_OFFSET_S, local_day_number
from billing import episodes as E
from billing import flags as F
from billing import kernels as K
from billing.binary_copy import copy_frame_binary
from billing.intervals import interval_frame, store_intervals
from billing.load import IdFilter, copy_out_records, fetch_readings
from billing.quality import ESTIMATE_CODES, FINAL, day_quality
from billing.rules import VeeRules
from billing.series_state import STATE_ROWS, StoredStates, load_states, save_states, states_of
from billing.store import copy_frame
from billing.vee import (
    CLOCK_CHANNEL,
    ENERGY_CHANNELS,
    PeriodWindow,
    ReadingArrays,
    VeeResult,
    series_key,
    validate_estimate,
)

_SEGMENT_STRIDE_S = 1 << 33  # above any epoch second this side of year 2200: series apart in one sorted array
SERVICE = "vee-service"  # made_by of automatic versions and the vee_state row
PASS_LOCK = 0x56_45_45_31  # pg advisory lock key ("VEE1"): one pass at a time per database
# Units per pass: a day of a whole city is 2.5 M meters; 200,000 keeps one pass's readings (with 14 history days
# on 5 channels) near 100 MB and its transaction a few seconds long.
MAX_PASS_UNITS = 200_000
# Meters per partition: a pass window (~3 weeks with the history) of daily reads on 5 channels is ~100 reads a
# meter, so 50,000 meters keep a partition's readings near 250 MB, as billing's partitions.
PASS_PARTITION_METERS = 50_000
# A meter resumed from its states reads a day or so of readings, not the window with its history (~6 rows a day
# for a daily meter with a 10 % chance of a profile, against ~100): its partitions hold this many times the meters
# (a city's day: 10 partitions of 250,000 meters, ~1.5 M readings each, two at a time).
RESUMED_PARTITION_FACTOR = 5
# Partitions validated at once here (no Dask): one's readings stream from the server (the socket wait releases the
# GIL) while another's kernels and frames run; two bound the memory to two partitions' readings.
PARTITION_THREADS = 2
MAX_WINDOW_DAYS = 62  # pending days per pass: a backlog of months drains oldest first
SERVE_INTERVAL_S = 5.0  # between passes when idle: a reading is validated within seconds of landing
BUSY_RETRY_S = 1.0  # another pass holds the lock
EPISODE_HORIZON_DAYS = 62  # occurrences this far before the window are re-read to rebuild its episodes
# Series-level artefacts of where a window starts, not of the meter: a new meter has no read before its first.
WINDOW_RULES = ("LEADING_GAP",)
COMPARED = ("measured_kwh", "estimated_kwh", "n_measured", "n_estimated", "flags", "methods", "quality", "method")
DAILY_COLUMNS = (
    "meter_id",
    "channel_id",
    "day",
    "version",
    "measured_kwh",
    "estimated_kwh",
    "n_measured",
    "n_estimated",
    "flags",
    "methods",
    "quality",
    "method",
    "reason",
)


@dataclass(kw_only=True)
class PassSummary:
    units: int = 0  # (meter, day) units validated
    meters: int = 0
    readings: int = 0
    first_day: date | None = None
    last_day: date | None = None
    versions: dict[str, int] = field(default_factory=dict)  # new versions by reason
    episodes_opened: int = 0
    episodes_cleared: int = 0
    resumed: int = 0  # meters validated from their state (sql/097_vee_series_state.sql), not their history
    busy: bool = False  # another pass held the lock
    seconds: dict[str, float] = field(default_factory=dict)


_PENDING_ROWS = pgcopy.FixedRows(("meter_id", "int4"), ("day", "int4"), ("marks", "int8"))  # day: since 1970
# the current versions _current_rows reads (day: days since 1970; quality: its ASCII code; method 0: none)
_CURRENT_ROWS = pgcopy.FixedRows(
    ("meter_id", "int4"),
    ("channel_id", "int2"),
    ("day", "int4"),
    ("version", "int4"),
    ("measured_kwh", "float8"),
    ("estimated_kwh", "float8"),
    ("n_measured", "int4"),
    ("n_estimated", "int4"),
    ("flags", "int4"),
    ("methods", "int2"),
    ("quality", "int2"),
    ("method", "int2"),
    ("locked", "bool"),
)
_METER_ROWS = pgcopy.FixedRows(("meter_id", "int4"), ("multiplier", "float8"), ("register_digits", "int2"))


def estimate_span_days(rules: VeeRules) -> int:
    """Days an estimate can span (rules.estimation.max_s), rounded up, plus the day it ends in."""
    return -(-rules.estimation.max_s // DAY_S) + 1


def run_pass(
    conninfo: str,
    *,
    rules: VeeRules,
    until: date | None = None,
    max_units: int = MAX_PASS_UNITS,
    service: str = SERVICE,
    partition_meters: int = PASS_PARTITION_METERS,
    dask_scheduler: str | None = None,
) -> PassSummary:
    """Validate pending units (those of days up to `until` when given) on the database at `conninfo` (the billing
    role's); see the module docstring. The pass's meters split into partitions of `partition_meters`, validated on
    the Dask cluster at `dask_scheduler` when given (every worker reaches the database with `conninfo`)."""
    summary = PassSummary()
    t0 = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        if not conn.execute("SELECT pg_try_advisory_lock(%s)", (PASS_LOCK,)).fetchone()[0]:  # type: ignore[index]
            summary.busy = True
            return summary
        try:
            with conn.transaction():
                _pass(conn, conninfo=conninfo, rules=rules, until=until, max_units=max_units, service=service,
                      summary=summary, partition_meters=partition_meters, dask_scheduler=dask_scheduler)  # fmt: skip
                summary.seconds["total"] = time.perf_counter() - t0
                _save_state(conn, service, summary)
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (PASS_LOCK,))
    return summary


def _pass(
    conn: psycopg.Connection,
    *,
    conninfo: str,
    rules: VeeRules,
    until: date | None,
    max_units: int,
    service: str,
    summary: PassSummary,
    partition_meters: int,
    dask_scheduler: str | None,
) -> None:
    t = time.perf_counter()
    pending = _claim_units(conn, until, max_units)
    summary.seconds["claim: units"] = time.perf_counter() - t
    if pending.shape[0] == 0:
        return
    first_pending = int(pending[:, 1].min())
    pending = pending[pending[:, 1] < first_pending + MAX_WINDOW_DAYS]
    span = estimate_span_days(rules)
    first_day, last_day = first_pending - span, int(pending[:, 1].max()) + span
    window = PeriodWindow(first_day=_date(first_day), n_days=last_day - first_day + 1)
    meter_ids = np.unique(pending[:, 0]).astype(np.int32)
    ids = IdFilter("meter_id", meter_ids)
    meters = copy_out_records(
        conn,
        sql.SQL(
            "COPY (SELECT meter_id, multiplier, register_digits FROM meters WHERE {} ORDER BY meter_id)"
            " TO STDOUT (FORMAT BINARY)"
        ).format(ids.condition()),
        _METER_ROWS,
    )
    if (keep := ids.wanted(meters["meter_id"])) is not None:
        meters = meters[keep]
    known = meters["meter_id"].astype(np.int32)
    multiplier = meters["multiplier"].astype(np.float64)
    digits = meters["register_digits"].astype(np.int64)
    summary.seconds["claim"] = time.perf_counter() - t

    meter_first_pending = pd.Series(pending[:, 1]).groupby(pending[:, 0]).min()
    pending_midnight_s = meter_first_pending.reindex(known).fillna(meter_first_pending.min()).to_numpy(np.int64) * DAY_S
    pending_midnight_s -= LOCAL_UTC_OFFSET_S
    t = time.perf_counter()
    stored = load_states(conn, known, rules=rules)
    resumable, resume_s = _resumable(known, pending_midnight_s, stored)
    summary.seconds["claim: states"] = time.perf_counter() - t

    def jobs_of(sel: np.ndarray, states: StoredStates | None, from_s: int = -1) -> list[_PassJob]:
        ids, mult, dig, mid = known[sel], multiplier[sel], digits[sel], pending_midnight_s[sel]
        size = partition_meters * (RESUMED_PARTITION_FACTOR if states is not None else 1)
        return [
            _PassJob(conninfo=conninfo, meter_ids=ids[lo : lo + size], multiplier=mult[lo : lo + size],
                     digits=dig[lo : lo + size], pending_midnight_s=mid[lo : lo + size], window=window, rules=rules,
                     states=None if states is None else _states_of(states, ids[lo : lo + size]), resume_s=from_s)
            for lo in range(0, len(ids), size)
        ]  # fmt: skip

    # Meters that resume from their states, one window per states' midnight (a backlog's meters may differ).
    jobs = [job for r in np.unique(resume_s[resumable])
            for job in jobs_of(resumable & (resume_s == r), stored, int(r))]  # fmt: skip
    parts = _run_parts(jobs, dask_scheduler)
    _add_seconds(summary, parts)
    fallback = np.unique(np.concatenate([p.fallback for p in parts] + [np.zeros(0, np.int32)]))
    summary.resumed = int(resumable.sum()) - int(fallback.size)
    # The other meters are validated from their history (a read of many days, from disk at a city's scale) on
    # their own connections while this one stores the resumed meters' results: the two sets of meters are
    # disjoint, and both go in this one transaction.
    t_store = time.perf_counter()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="vee-history") as pool:
        later = pool.submit(_from_history, jobs_of(~resumable | np.isin(known, fallback), None), dask_scheduler,
                            conninfo, window)  # fmt: skip
        written = _store_parts(conn, parts, window, service, summary)
        t = time.perf_counter()
        history_parts, history_current = later.result()
        summary.seconds["wait: history"] = time.perf_counter() - t
    _add_seconds(summary, history_parts)
    written = pd.concat([written, _store_parts(conn, history_parts, window, service, summary, history_current)])
    parts += history_parts
    t = time.perf_counter()
    _settle_pending(conn, pending)
    summary.seconds["store: pending"] = time.perf_counter() - t
    t = time.perf_counter()
    save_states(
        conn,
        _concat_columns([p.states for p in parts]),
        (np.concatenate([p.states_gone[0] for p in parts]), np.concatenate([p.states_gone[1] for p in parts])),
        read=stored,
    )
    summary.seconds["store: states"] = time.perf_counter() - t
    summary.seconds["store"] = time.perf_counter() - t_store  # with the overlapped validation of the others

    summary.units = len(pending)
    summary.meters = len(known)
    summary.readings = sum(p.readings for p in parts)  # what was read: a resumed and then fallen back meter twice
    summary.first_day, summary.last_day = window.first_day, _date(last_day)
    reasons = written["reason"].value_counts().sort_index()
    summary.versions = {str(k): int(v) for k, v in reasons.items()}


def _claim_units(conn: psycopg.Connection, until: date | None, max_units: int) -> np.ndarray:
    """The pending units (meter_id, day number, marks) a pass takes, oldest days first: all of them when they
    are at most max_units (read unordered and sorted here: PostgreSQL's sort of a city's day, 2.7 M units, cost
    seconds), else the max_units first by (day, meter_id)."""
    where = "WHERE day <= %s" if until is not None else ""
    head = (until,) if until is not None else ()

    def claim(order: str, limit: int) -> np.ndarray:
        units = copy_out_records(
            conn,
            f"COPY (SELECT meter_id, (day - date '1970-01-01')::integer, marks FROM vee_pending {where}"
            f" {order} LIMIT %s) TO STDOUT (FORMAT BINARY)",
            _PENDING_ROWS,
            (*head, limit),
        )
        return np.stack([units[c].astype(np.int64) for c in _PENDING_ROWS.names], axis=1)

    pending = claim("", max_units + 1)
    if pending.shape[0] > max_units:
        return claim("ORDER BY day, meter_id", max_units)
    return pending[np.lexsort((pending[:, 0], pending[:, 1]))]


def _add_seconds(summary: PassSummary, parts: list[_PassPart]) -> None:
    for part in parts:
        for stage, seconds in part.seconds.items():
            summary.seconds[stage] = summary.seconds.get(stage, 0.0) + seconds


def _from_history(
    jobs: list[_PassJob], dask_scheduler: str | None, conninfo: str, window: PeriodWindow
) -> tuple[list[_PassPart], pd.DataFrame]:
    """The meters that cannot resume, validated from their history, and the current versions of the days they may
    replace: both read from disk at a city's scale, on connections of their own while the pass's connection stores
    the resumed meters (other meters: under READ COMMITTED this reads what the pass's connection would)."""
    parts = _run_parts(jobs, dask_scheduler)
    if not parts:
        return parts, pd.DataFrame()
    t = time.perf_counter()
    with psycopg.connect(conninfo, autocommit=True) as conn:
        current = _current_rows(conn, pd.concat([p.fresh for p in parts], ignore_index=True), window)
    parts[0].seconds["fetch: history current"] = time.perf_counter() - t
    return parts, current


def _store_parts(
    conn: psycopg.Connection,
    parts: list[_PassPart],
    window: PeriodWindow,
    service: str,
    summary: PassSummary,
    current: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Compare and write these partitions' days, interval slots, occurrences and episodes (their meters' own: no
    other call of a pass stores the same meters); adds each stage's seconds and the episodes to `summary` and
    returns the reasons of the new versions written. `current`: the current versions of their days (_current_rows),
    when already read."""
    if not parts:
        return pd.DataFrame({"reason": pd.Series([], dtype=object)})
    fresh = pd.concat([p.fresh for p in parts], ignore_index=True)
    flags = pd.concat([p.flags for p in parts], ignore_index=True)
    intervals = pd.concat([p.intervals for p in parts], ignore_index=True)
    flags_from_s = pd.concat([p.flags_from_s for p in parts]).sort_index()
    t = time.perf_counter()

    def lap(stage: str) -> None:
        nonlocal t
        now = time.perf_counter()
        summary.seconds[stage] = summary.seconds.get(stage, 0.0) + now - t
        t = now

    if current is None:
        current = _current_rows(conn, fresh, window)
    lap("store: current")
    new_versions = _changed(fresh, current)
    lap("store: compare")
    _write_versions(conn, new_versions, service)
    lap("store: versions")
    store_intervals(conn, intervals, new_versions)
    lap("store: intervals")
    flagged = _replace_flags(conn, flags_from_s.index.to_numpy(np.int32), flags_from_s.to_numpy(np.int64), window,
                             flags)  # fmt: skip
    opened, cleared = _rebuild_episodes(conn, flagged, window)
    summary.episodes_opened += opened
    summary.episodes_cleared += cleared
    lap("store: flags and episodes")
    return new_versions[["reason"]]


@dataclass(kw_only=True)
class _PassJob:
    """One meter-id partition of a pass: what a (Dask) worker needs to validate it on its own connection."""

    conninfo: str
    meter_ids: np.ndarray  # sorted
    multiplier: np.ndarray
    digits: np.ndarray
    pending_midnight_s: np.ndarray  # per meter: the local midnight of its first pending day [UTC epoch s]
    window: PeriodWindow
    rules: VeeRules
    # the stored states of the partition's series, when its meters resume from them (_resumable); None: the meters
    # are validated from their history
    states: StoredStates | None = None
    resume_s: int = -1  # the local midnight the states are at [UTC epoch s]


@dataclass(kw_only=True)
class _PassPart:
    fresh: pd.DataFrame  # the days the partition's new readings can change (see _daily_frame)
    flags: pd.DataFrame  # its rule occurrences over the window
    flags_from_s: pd.Series  # per meter id: its occurrences ending after this [UTC epoch s] are the pass's
    intervals: pd.DataFrame  # the profile series' interval slots over the days of `fresh` (billing.intervals)
    states: dict[str, np.ndarray]  # the series' states to store (billing.series_state.STATE_ROWS columns)
    states_gone: tuple[np.ndarray, np.ndarray]  # (meter ids, channel ids) of series whose stored state goes
    fallback: np.ndarray  # meters that could not resume from their state (left out of the rest): validate in full
    readings: int
    seconds: dict[str, float]


def _validate_partition(job: _PassJob) -> _PassPart:
    """Read one partition's readings (with the rules' history, or from the state its series resume from) and run
    the kernels; nothing is written here: the pass compares and writes every partition's results in its one
    transaction."""
    if job.states is not None:
        return _resume_partition(job, job.states)
    seconds: dict[str, float] = {}
    window, rules = job.window, job.rules
    t = time.perf_counter()
    with psycopg.connect(job.conninfo, autocommit=True) as conn:
        readings = fetch_readings(
            conn,
            meter_ids=job.meter_ids,
            channels=(*ENERGY_CHANNELS, CLOCK_CHANNEL),
            from_s=window.day0_s - rules.history.days * DAY_S,
            to_s=window.end_s,
        )
    seconds["fetch: history"] = time.perf_counter() - t
    t = time.perf_counter()
    vee = validate_estimate(readings, rules=rules, window=window, meter_ids=job.meter_ids, register_digits=job.digits)
    seconds["vee"] = time.perf_counter() - t
    t = time.perf_counter()
    fresh = _daily_frame(vee, readings.meter_id, readings.channel_id, readings.ts_s, job.meter_ids, job.multiplier,
                         job.pending_midnight_s)  # fmt: skip
    flags = _beyond_data_dropped(vee.exceptions[~vee.exceptions["rule"].isin(WINDOW_RULES)], readings)
    seconds["results: days"] = time.perf_counter() - t
    intervals = interval_frame(vee, readings, fresh, job.meter_ids, job.multiplier, job.digits, rules)
    seconds["results"] = time.perf_counter() - t
    every = np.arange(vee.series_meter.shape[0])
    no_state = vee.state.state_s < 0
    return _PassPart(
        fresh=fresh, flags=flags, flags_from_s=pd.Series(window.day0_s, index=job.meter_ids, dtype=np.int64),
        intervals=intervals, states=states_of(vee, every, rules=rules),
        states_gone=(vee.series_meter[no_state], vee.series_channel[no_state]), fallback=np.zeros(0, np.int32),
        readings=len(readings), seconds=seconds,
    )  # fmt: skip


def _resumable(
    meter_ids: np.ndarray, pending_midnight_s: np.ndarray, stored: StoredStates
) -> tuple[np.ndarray, np.ndarray]:
    """Per meter: whether it can resume from its stored states, and from when [UTC epoch s]. Its series' states
    must be at one local midnight, at or before its first pending day's (the readings that landed are all later:
    the pass reads everything after the states, days not pending included)."""
    resume_s = np.full(meter_ids.shape[0], -1, np.int64)
    if len(stored) == 0:
        return np.zeros(meter_ids.shape[0], bool), resume_s
    at = np.searchsorted(meter_ids, stored.seeds.meter_id)
    earliest = np.full(meter_ids.shape[0], np.iinfo(np.int64).max)
    np.minimum.at(earliest, at, stored.read_s)
    np.maximum.at(resume_s, at, stored.read_s)
    ok = (resume_s >= 0) & (earliest == resume_s) & (resume_s <= pending_midnight_s)
    return ok, np.where(ok, resume_s, -1)


def _states_of(stored: StoredStates, meter_ids: np.ndarray) -> StoredStates:
    return stored.take(np.isin(stored.seeds.meter_id, meter_ids))


# The estimates that need a series' like-day profile or its history (flat at the last rate over a replacement,
# or nothing to estimate from: GAP_TOO_LONG): a series resumed from its state has neither, so its meter is validated
# in full instead.
_NEEDS_HISTORY_METHODS = F.METHOD_HISTORICAL | F.METHOD_FLAT
_NEEDS_HISTORY_FLAGS = F.REPLACEMENT | F.GAP_TOO_LONG


def _resume_partition(job: _PassJob, states: StoredStates) -> _PassPart:
    """A partition whose meters resume from their states, all at one local midnight (job.resume_s): only the readings
    after it are read, each series starting at its state's read (put back in front of them), and only the days
    from then on are written. A meter with a series that has no state, another interval than its state's, or an
    estimate that needs the like-day profile or the history is handed back (`fallback`) for a full validation."""
    seconds: dict[str, float] = {}
    rules = job.rules
    from_s = job.resume_s
    window = PeriodWindow(first_day=_date(local_day_number(from_s)), n_days=(job.window.end_s - from_s) // DAY_S)
    t = time.perf_counter()
    with psycopg.connect(job.conninfo, autocommit=True) as conn:
        landed = fetch_readings(
            conn, meter_ids=job.meter_ids, channels=(*ENERGY_CHANNELS, CLOCK_CHANNEL), from_s=from_s, to_s=window.end_s
        )
    seconds["fetch: resumed"] = time.perf_counter() - t
    t = time.perf_counter()
    readings = _with_state_reads(landed, states)
    vee = validate_estimate(readings, rules=rules, window=window, meter_ids=job.meter_ids, register_digits=job.digits,
                            states=states.seeds)  # fmt: skip
    seconds["vee"] = time.perf_counter() - t
    t = time.perf_counter()
    fresh = _daily_frame(vee, readings.meter_id, readings.channel_id, readings.ts_s, job.meter_ids, job.multiplier,
                         job.pending_midnight_s)  # fmt: skip
    key = series_key(states.seeds.meter_id, states.seeds.channel_id)
    at = np.clip(np.searchsorted(key, series_key(vee.series_meter, vee.series_channel)), 0, max(key.shape[0] - 1, 0))
    # a gap beyond linear interpolation is estimated from the like-day profile, which a resumed series does not have
    long_gap = vee.state.longest_span_s > rules.estimation.linear_max_s
    cannot = ~vee.seeded | (states.interval_s[at] != vee.series_interval_s) | long_gap
    needs_history = ((fresh["methods"] & _NEEDS_HISTORY_METHODS) != 0) | ((fresh["flags"] & _NEEDS_HISTORY_FLAGS) != 0)
    fallback = np.union1d(vee.series_meter[cannot], fresh["meter_id"][needs_history])
    fallback = fallback.astype(np.int32)
    keep = ~np.isin(fresh["meter_id"].to_numpy(), fallback)
    fresh = fresh[keep].reset_index(drop=True)
    flags = _beyond_data_dropped(vee.exceptions[~vee.exceptions["rule"].isin(WINDOW_RULES)], readings)
    flags = flags[~np.isin(flags["meter_id"].to_numpy(), fallback)]
    seconds["results: days"] = time.perf_counter() - t
    intervals = interval_frame(vee, readings, fresh, job.meter_ids, job.multiplier, job.digits, rules)
    seconds["results"] = time.perf_counter() - t
    resumed = job.meter_ids[~np.isin(job.meter_ids, fallback)]
    series = np.flatnonzero(~np.isin(vee.series_meter, fallback))
    return _PassPart(
        fresh=fresh, flags=flags, flags_from_s=pd.Series(from_s, index=resumed, dtype=np.int64), intervals=intervals,
        states=states_of(vee, series, rules=rules), states_gone=(np.zeros(0, np.int32), np.zeros(0, np.int16)),
        fallback=fallback, readings=len(landed), seconds=seconds,
    )  # fmt: skip


def _with_state_reads(landed: ReadingArrays, states: StoredStates) -> ReadingArrays:
    """The readings with each stored state's read put back in front of its series (quality 0: it was valid)."""
    s = states.seeds
    at = np.searchsorted(series_key(landed.meter_id, landed.channel_id), series_key(s.meter_id, s.channel_id))
    return ReadingArrays(
        meter_id=np.insert(landed.meter_id, at, s.meter_id),
        channel_id=np.insert(landed.channel_id, at, s.channel_id),
        ts_s=np.insert(landed.ts_s, at, states.read_s),
        value=np.insert(landed.value, at, states.register_kwh),
        quality=np.insert(landed.quality, at, np.zeros(len(states), np.int16)),
    )


def _concat_columns(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {name: np.concatenate([p[name] for p in parts]) for name in STATE_ROWS.names} if parts else {
        name: np.zeros(0) for name in STATE_ROWS.names}  # fmt: skip


def _run_parts(jobs: list[_PassJob], dask_scheduler: str | None) -> list[_PassPart]:
    """Every partition's results in job order: on the Dask cluster at `dask_scheduler` ('local': a LocalCluster),
    else here, PARTITION_THREADS at a time."""
    if dask_scheduler and len(jobs) > 1:
        from billing.distributed import run_on_dask

        out: list[_PassPart | None] = [None] * len(jobs)
        for k, part in run_on_dask(_validate_partition, jobs, dask_scheduler):
            out[k] = part
        return [p for p in out if p is not None]
    if len(jobs) == 1 or not K.concurrent_calls_safe():
        return [_validate_partition(job) for job in jobs]
    with ThreadPoolExecutor(max_workers=PARTITION_THREADS, thread_name_prefix="vee-partition") as pool:
        return list(pool.map(_validate_partition, jobs))


def _beyond_data_dropped(exceptions: pd.DataFrame, readings: Any) -> pd.DataFrame:
    """Without the occurrences that start at or after their energy series' last read: the kernel estimates a
    billing period's tail up to its end (GAP_TOO_LONG when that is long), which for data still arriving is the
    future."""
    if exceptions.empty or len(readings) == 0:
        return exceptions
    key = series_key(readings.meter_id, readings.channel_id)
    last = np.flatnonzero(np.r_[key[1:] != key[:-1], True])  # sorted by (meter, channel, ts): a series' last row
    newest = pd.DataFrame({"_key": key[last], "_last_s": readings.ts_s[last]})
    exc_key = series_key(exceptions["meter_id"].to_numpy(), exceptions["channel_id"].to_numpy())
    merged = pd.DataFrame({"_key": exc_key}).merge(newest, on="_key", how="left")
    start_s = E.epoch_s(exceptions["interval_start"])
    keep = ~(merged["_last_s"].notna().to_numpy() & (start_s >= merged["_last_s"].fillna(0).to_numpy(np.int64)))
    # a clock-offset occurrence is its read itself (interval_start = the read), never an estimate beyond it
    keep |= exceptions["channel_id"].to_numpy() == CLOCK_CHANNEL
    return exceptions[keep]


def _date(day_number: int) -> date:
    return date(1970, 1, 1) + timedelta(days=int(day_number))


def _daily_frame(
    vee: VeeResult,
    read_meter: np.ndarray,
    read_channel: np.ndarray,
    read_ts_s: np.ndarray,
    meter_ids: np.ndarray,
    multiplier: np.ndarray,
    pending_midnight_s: np.ndarray,
) -> pd.DataFrame:
    """The days of each series the pass's new readings can change, energy x multiplier [kWh], with quality: from
    the day of the series' last read before its meter's first pending day (a gap after it is re-estimated) to its
    last read. The rest of the window is context only: re-validating settled days with a window that slid a day
    would version them again for nothing but the shifted history (averages, like-day profiles)."""
    s_count, d_count = vee.measured.shape
    if s_count == 0:
        return pd.DataFrame(columns=[c for c in DAILY_COLUMNS if c not in ("version", "reason")])
    # each series' first and last local day with a read (a read at midnight closes the day before)
    energy = np.isin(read_channel, ENERGY_CHANNELS)
    key = series_key(read_meter[energy], read_channel[energy])
    ts = read_ts_s[energy]
    starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
    ends = np.r_[starts[1:], key.shape[0]] - 1
    keys = series_key(vee.series_meter, vee.series_channel)
    pos = np.searchsorted(key[starts], keys)
    first_read_day = local_day_number(ts[starts][pos])
    # Closed days only: the last day written is the one before the day of the last read (a read at midnight closes
    # the day before). A profile meter's day is written once its midnight read is in, not at every push of it.
    last_read_day = local_day_number(ts[ends][pos]) - 1
    # the last read before the meter's first pending local midnight, per series: one searchsorted on ts offset by
    # the segment number (segments are contiguous and each is sorted by ts)
    segment = np.repeat(np.arange(starts.shape[0], dtype=np.int64), np.diff(np.r_[starts, key.shape[0]]))
    shifted = ts + segment * _SEGMENT_STRIDE_S
    target = pending_midnight_s[np.searchsorted(meter_ids, vee.series_meter)] + pos * _SEGMENT_STRIDE_S
    before = np.searchsorted(shifted, target, side="left") - 1
    has_before = before >= starts[pos]
    write_from = np.where(has_before, local_day_number(ts[np.maximum(before, 0)]), first_read_day)
    first_read_day = np.maximum(first_read_day, write_from)
    day_numbers = int(local_day_number(vee.window.day0_s)) + np.arange(d_count)
    inside = (day_numbers[None, :] >= first_read_day[:, None]) & (day_numbers[None, :] <= last_read_day[:, None])
    s_idx, d_idx = np.nonzero(inside)
    mult = multiplier[np.searchsorted(meter_ids, vee.series_meter)]
    n_meas, n_est = vee.n_measured[s_idx, d_idx], vee.n_estimated[s_idx, d_idx]
    methods = vee.day_methods[s_idx, d_idx].astype(np.int16)
    quality, method = day_quality(n_meas, n_est, methods)
    return pd.DataFrame(
        {
            "meter_id": vee.series_meter[s_idx].astype(np.int32),
            "channel_id": vee.series_channel[s_idx].astype(np.int16),
            "day": pd.to_datetime(day_numbers[d_idx], unit="D").date,
            "measured_kwh": vee.measured[s_idx, d_idx] * mult[s_idx],
            "estimated_kwh": vee.estimated[s_idx, d_idx] * mult[s_idx],
            "n_measured": n_meas.astype(np.int32),
            "n_estimated": n_est.astype(np.int32),
            "flags": vee.day_flags[s_idx, d_idx].astype(np.int64).astype(np.int32),
            "methods": methods,
            "quality": quality.astype(object),
            "method": method,
        }
    )


def _current_rows(conn: psycopg.Connection, fresh: pd.DataFrame, window: PeriodWindow) -> pd.DataFrame:
    """The current versions of the days `fresh` may replace: per meter, from its first fresh day to the window's
    end. Meters are read in groups of one first day (a day's resumed meters all start at that day, whose rows are
    mostly not there yet), each group's id range whole when it is most of it (as fetch_readings)."""
    columns = [*DAILY_COLUMNS[:3], "version", *COMPARED, "locked"]
    if fresh.empty:
        return pd.DataFrame(columns=columns)
    last = window.first_day + timedelta(days=window.n_days - 1)
    day_number = np.asarray(fresh["day"].to_numpy(), dtype="datetime64[D]").astype(np.int64)
    meter = fresh["meter_id"].to_numpy(np.int64)
    meters, at = np.unique(meter, return_inverse=True)
    first = np.full(meters.shape[0], np.iinfo(np.int64).max)
    np.minimum.at(first, at, day_number)
    parts = []
    for day_n in np.unique(first):
        ids = IdFilter("meter_id", meters[first == day_n])
        got = copy_out_records(
            conn,
            sql.SQL(
                "COPY (SELECT meter_id, channel_id, (day - date '1970-01-01')::integer, version, measured_kwh,"
                " estimated_kwh, n_measured, n_estimated, flags, methods, ascii(quality)::smallint,"
                " coalesce(method, 0)::smallint, locked FROM vee_daily WHERE {} AND day BETWEEN %s AND %s)"
                " TO STDOUT (FORMAT BINARY)"
            ).format(ids.condition()),
            _CURRENT_ROWS,
            (_date(int(day_n)), last),
        )
        if (keep := ids.wanted(got["meter_id"])) is not None:
            got = got[keep]
        parts.append(got)
    rows = np.concatenate(parts)
    frame = pd.DataFrame({name: rows[name].astype(rows[name].dtype.newbyteorder("=")) for name in _CURRENT_ROWS.names})
    frame["day"] = pd.to_datetime(frame["day"].to_numpy(np.int64), unit="D").date  # as _daily_frame's
    frame["quality"] = frame["quality"].to_numpy(np.uint8).view("S1").astype(str).astype(object)
    frame["locked"] = frame["locked"].astype(bool)
    return frame[columns]


def _changed(fresh: pd.DataFrame, current: pd.DataFrame) -> pd.DataFrame:
    """The fresh rows that differ from the current version (or have none), with their version and reason; days a
    person edited (locked) are left alone. A final version (F: the estimate a bill used) stands while the fresh
    row is an estimate by the same method with no more measured intervals: a pass whose window read other history
    splits a gap a little differently, and that is not a reason to correct a bill. Reads that arrive for the day,
    or another method (a forward estimate interpolated once the closing read is in), replace it."""
    key = ["meter_id", "channel_id", "day"]
    if current.empty:  # a day's first pass (most of a resumed city's days): all new, nothing to compare
        out = fresh[[*key, *COMPARED]].copy()
        out["version"] = np.ones(len(out), np.int32)
        out["reason"] = "first_pass"
        return out.reset_index(drop=True)
    merged = fresh.merge(current, on=key, how="left", suffixes=("", "_cur"), indicator=True)
    is_new = (merged["_merge"] == "left_only").to_numpy()
    same = np.ones(len(merged), bool)
    for c in COMPARED:
        a, b = merged[c].to_numpy(), merged[f"{c}_cur"].to_numpy()
        if c in ("measured_kwh", "estimated_kwh"):
            same &= np.isclose(a.astype(float), np.nan_to_num(b.astype(float), nan=np.inf), rtol=1e-12, atol=1e-9)
        else:
            same &= a == b
    locked = merged["locked"].fillna(False).to_numpy(bool)
    final_stands = (
        (merged["quality_cur"].to_numpy() == FINAL)
        & np.isin(merged["quality"].to_numpy(), ESTIMATE_CODES)
        & (merged["method"].to_numpy() == merged["method_cur"].to_numpy())
        & (merged["n_measured"].to_numpy() <= merged["n_measured_cur"].fillna(0).to_numpy())
    )
    take = (is_new | ~same) & ~locked & ~final_stands
    out = merged.loc[take, [*key, *COMPARED]].copy()
    cur = merged.loc[take]
    out["version"] = np.where(is_new[take], 1, cur["version"].fillna(0).to_numpy() + 1).astype(np.int32)
    # more measured intervals than before: reads arrived for the day (replacing an estimate, or completing a day)
    more_measured = cur["n_measured"].to_numpy() > cur["n_measured_cur"].fillna(0).to_numpy()
    reason = np.where(more_measured, "late_data", "revalidation")
    out["reason"] = np.where(is_new[take], "first_pass", reason)
    return out.reset_index(drop=True)


def _write_versions(conn: psycopg.Connection, rows: pd.DataFrame, made_by: str) -> None:
    """Every row to the history by one binary COPY; the first versions (no current row: an edit never makes one)
    straight into vee_daily by another; only the days versioned again go through a staging table and an upsert.
    Both tables get the transaction's now() as made_at."""
    if rows.empty:
        return
    frame = rows.assign(method=rows["method"].astype("Int16").mask(rows["method"] == 0))[list(DAILY_COLUMNS)]
    made_at = conn.execute("SELECT now()").fetchone()[0]  # type: ignore[index]
    copy_frame_binary(conn, "vee_daily_versions", frame.assign(made_by=made_by, made_at=made_at))
    first = (frame["version"] == 1).to_numpy()
    copy_frame_binary(conn, "vee_daily", frame[first].assign(locked=False, made_at=made_at))
    if first.all():
        return
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS vee_daily_new (LIKE vee_daily) ON COMMIT DROP")
    copy_frame_binary(conn, "vee_daily_new", frame[~first].assign(locked=False, made_at=made_at))
    conn.execute(
        "INSERT INTO vee_daily SELECT * FROM vee_daily_new"
        " ON CONFLICT (meter_id, channel_id, day) DO UPDATE SET version = excluded.version,"
        " measured_kwh = excluded.measured_kwh, estimated_kwh = excluded.estimated_kwh,"
        " n_measured = excluded.n_measured, n_estimated = excluded.n_estimated, flags = excluded.flags,"
        " methods = excluded.methods, quality = excluded.quality, method = excluded.method,"
        " reason = excluded.reason, locked = false, made_at = excluded.made_at"
    )
    conn.execute("DROP TABLE vee_daily_new")


def _replace_flags(
    conn: psycopg.Connection, meter_ids: np.ndarray, from_s: np.ndarray, window: PeriodWindow, flags: pd.DataFrame
) -> np.ndarray:
    """The occurrences of these meters in their part of the window (from from_s [UTC epoch s] per meter: the
    window's start, or a resumed meter's state) become this pass's (the kernel reports every read whose interval
    overlaps it, and so this deletes exactly what it can re-create). Returns the meters that had or have an
    occurrence there (sorted): the only ones whose episodes can change."""
    end = pd.Timestamp(window.end_s, unit="s", tz="UTC")
    deleted = conn.execute(
        "WITH gone AS (DELETE FROM vee_flags f USING unnest(%s::integer[], %s::bigint[]) AS u(m, s)"
        " WHERE f.meter_id = u.m AND f.interval_end > to_timestamp(u.s) AND f.interval_start < %s"
        " RETURNING f.meter_id) SELECT DISTINCT meter_id FROM gone",
        (int_array_literal(meter_ids), int_array_literal(from_s), end.to_pydatetime()),
    ).fetchall()
    flagged = np.union1d(np.array([m for (m,) in deleted], np.int64), flags["meter_id"].to_numpy(np.int64))
    if flags.empty:
        return flagged
    frame = flags.drop_duplicates(["meter_id", "channel_id", "rule", "interval_start"])
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS vee_flags_new (LIKE vee_flags) ON COMMIT DROP")
    copy_frame(conn, "vee_flags_new", frame[["meter_id", "channel_id", "rule", "interval_start", "interval_end",
                                              "severity", "value"]])  # fmt: skip
    conn.execute("INSERT INTO vee_flags SELECT * FROM vee_flags_new ON CONFLICT DO NOTHING")
    conn.execute("DROP TABLE vee_flags_new")
    return flagged


def _rebuild_episodes(conn: psycopg.Connection, meter_ids: np.ndarray, window: PeriodWindow) -> tuple[int, int]:
    """Episodes of these meters from their occurrences since the horizon; (opened, cleared)."""
    if meter_ids.size == 0:
        return 0, 0
    horizon = pd.Timestamp(window.day0_s - EPISODE_HORIZON_DAYS * DAY_S, unit="s", tz="UTC").to_pydatetime()
    ids = [int(m) for m in meter_ids]
    with conn.cursor() as cur:
        cur.execute(
            "SELECT meter_id, channel_id, rule, interval_start, interval_end, severity, value FROM vee_flags"
            " WHERE meter_id = ANY(%s) AND interval_end > %s",
            (ids, horizon),
        )
        flags = pd.DataFrame(
            cur.fetchall(),
            columns=["meter_id", "channel_id", "rule", "interval_start", "interval_end", "severity", "value"],
        )
        cur.execute(
            "SELECT episode_id, meter_id, channel_id, rule, first_start, last_end, status, occurrences, severity,"
            " value_min, value_max FROM vee_episodes"
            " WHERE meter_id = ANY(%s) AND last_end > %s AND status <> 'auto_resolved'"
            " ORDER BY episode_id",
            (ids, horizon),
        )
        stored = pd.DataFrame(
            cur.fetchall(),
            columns=["episode_id", "meter_id", "channel_id", "rule", "first_start", "last_end", "status",
                     "occurrences", "severity", "value_min", "value_max"],
        )  # fmt: skip
    plan = E.plan_episodes(E.islands(flags), stored)
    with conn.cursor() as cur:
        if not plan.updates.empty:
            cur.executemany(
                "UPDATE vee_episodes SET first_start = %s, last_end = %s, occurrences = %s, severity = %s,"
                " value_min = %s, value_max = %s, status = %s, updated_at = now(),"
                " closed_at = CASE WHEN %s IN ('open', 'acknowledged') THEN NULL ELSE closed_at END"
                " WHERE episode_id = %s",
                [(*_episode_values(r), r["status"], int(r["episode_id"])) for r in plan.updates.to_dict("records")],
            )
        if not plan.inserts.empty:
            cur.executemany(
                "INSERT INTO vee_episodes (meter_id, channel_id, rule, first_start, last_end, occurrences, severity,"
                " value_min, value_max, status) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, 'open')",
                [
                    (int(r["meter_id"]), int(r["channel_id"]), str(r["rule"]), *_episode_values(r)[:-1])
                    for r in plan.inserts.to_dict("records")
                ],
            )
        if plan.cleared:
            cur.execute(
                "UPDATE vee_episodes SET status = 'auto_resolved', closed_at = now(), closed_by = %s,"
                " updated_at = now() WHERE episode_id = ANY(%s)",
                (SERVICE, plan.cleared),
            )
    return len(plan.inserts), len(plan.cleared)


def _episode_values(r: dict[Any, Any]) -> tuple[Any, ...]:
    def num(x: Any) -> float | None:
        return None if x is None or pd.isna(x) else float(x)

    return (
        r["first_start"].to_pydatetime(),
        r["last_end"].to_pydatetime(),
        int(r["occurrences"]),
        str(r["severity"]),
        num(r["value_min"]),
        num(r["value_max"]),
        r["status"],
    )


def _settle_pending(conn: psycopg.Connection, pending: np.ndarray) -> None:
    """Delete the validated units whose mark count is still what the pass read (a batch that landed since bumped
    it: that unit stays for the next pass)."""
    conn.execute(
        "DELETE FROM vee_pending p USING unnest(%s::integer[], %s::integer[], %s::bigint[]) AS u(m, d, k)"
        " WHERE p.meter_id = u.m AND p.day = date '1970-01-01' + u.d AND p.marks = u.k",
        (int_array_literal(pending[:, 0]), int_array_literal(pending[:, 1]), int_array_literal(pending[:, 2])),
    )


def _save_state(conn: psycopg.Connection, service: str, s: PassSummary) -> None:
    conn.execute(
        "INSERT INTO vee_state (service, last_pass_at, last_day, passes, units, versions, last_seconds, detail)"
        " VALUES (%s, now(), %s, 1, %s, %s, %s, %s)"
        " ON CONFLICT (service) DO UPDATE SET last_pass_at = now(),"
        " last_day = greatest(vee_state.last_day, excluded.last_day), passes = vee_state.passes + 1,"
        " units = vee_state.units + excluded.units, versions = vee_state.versions + excluded.versions,"
        " last_seconds = excluded.last_seconds, detail = excluded.detail",
        (
            service,
            s.last_day,
            s.units,
            sum(s.versions.values()),
            s.seconds.get("total"),
            json.dumps({"versions": s.versions, "seconds": {k: round(v, 3) for k, v in s.seconds.items()}}),
        ),
    )


def drain(
    conninfo: str,
    *,
    rules: VeeRules,
    until: date | None = None,
    max_units: int = MAX_PASS_UNITS,
    on_pass: Any = None,
    dask_scheduler: str | None = None,
) -> list[PassSummary]:
    """Passes until nothing is pending (for days up to `until`); `on_pass(summary)` after each."""
    out: list[PassSummary] = []
    while True:
        s = run_pass(conninfo, rules=rules, until=until, max_units=max_units, dask_scheduler=dask_scheduler)
        if s.busy:
            time.sleep(BUSY_RETRY_S)
            continue
        if s.units == 0:
            return out
        out.append(s)
        if on_pass is not None:
            on_pass(s)


def serve(
    conninfo: str,
    *,
    rules: VeeRules,
    stop: Any,
    interval_s: float = SERVE_INTERVAL_S,
    max_units: int = MAX_PASS_UNITS,
    on_pass: Any = None,
    on_error: Any = None,
    dask_scheduler: str | None = None,
) -> None:
    """The long-running service: drain what is pending, sleep `interval_s`, again, until `stop` (an Event) is set.
    A failed pass (the database restarting) is reported to `on_error` and retried after the interval: its units
    are still pending."""
    while not stop.is_set():
        try:
            drain(conninfo, rules=rules, max_units=max_units, on_pass=on_pass, dask_scheduler=dask_scheduler)
        except psycopg.OperationalError as exc:
            if on_error is None:
                raise
            on_error(exc)
        stop.wait(interval_s)
