"""Each series' VEE state between passes (sql/097_vee_series_state.sql, sql/098_vee_series_state_blocks.sql,
docs/vee.md "Resuming from the state"): read for the meters a pass claims, written from the pass's results. The
states are kept by blocks of meter ids, each a binary COPY stream of fixed-width rows (STATE_ROWS) in a bytea."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import logging

import numpy as np
import psycopg
from psycopg import sql

from amr import pgcopy
from amr.db.params import int_array_literal
from billing.load import IdFilter
from billing.rules import VeeRules
from billing.vee import SeriesStates, VeeResult, series_key

STATE_ROWS = pgcopy.FixedRows(
    ("meter_id", "int4"),
    ("channel_id", "int2"),
    ("read_s", "int8"),
    ("register_kwh", "float8"),
    ("rate_kwh_per_s", "float8"),
    ("zero_since_s", "int8"),
    ("avg_kwh_per_day", "float8"),
    ("zero_days", "int4"),
    ("interval_s", "int4"),
    ("rules_key", "int8"),
)
# A block holds the states of 1,024 consecutive meter ids (~100 kB at a city's density): a pass over a city's day
# rewrites ~2,400 rows; a small pass rewrites only the few blocks its meters fall in.
BLOCK_BITS = 10
_NO_RECORDS = STATE_ROWS.decode(pgcopy.HEADER + pgcopy.TRAILER)
_log = logging.getLogger(__name__)


def rules_key(rules: VeeRules) -> int:
    """A 63-bit digest of the rules: a state made under other rules (thresholds, intervals, status bits) would not
    judge the reads after it as a validation from the history does, so it is not resumed from."""
    digest = hashlib.sha256(rules.model_dump_json().encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclasses.dataclass(frozen=True, kw_only=True)
class StoredStates:
    """The stored states of some meters' series, sorted by (meter_id, channel_id)."""

    seeds: SeriesStates
    read_s: np.ndarray  # int64, the state's read: a local midnight [UTC epoch s]
    register_kwh: np.ndarray  # float64, its register value [kWh]
    interval_s: np.ndarray  # int64
    # what load_states read: the blocks (sorted ids) and all their rows (STATE_ROWS records, the other meters' and
    # other rules' too), which save_states merges into instead of reading them again
    blocks: np.ndarray | None = None
    block_records: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.seeds)

    def take(self, mask: np.ndarray) -> StoredStates:
        s = self.seeds
        return StoredStates(
            seeds=SeriesStates(
                meter_id=s.meter_id[mask],
                channel_id=s.channel_id[mask],
                rate=s.rate[mask],
                zero_since_s=s.zero_since_s[mask],
                avg_kwh_per_day=s.avg_kwh_per_day[mask],
                zero_days=s.zero_days[mask],
            ),
            read_s=self.read_s[mask],
            register_kwh=self.register_kwh[mask],
            interval_s=self.interval_s[mask],
        )


def _from_columns(c: dict[str, np.ndarray]) -> StoredStates:
    return StoredStates(
        seeds=SeriesStates(
            meter_id=c["meter_id"].astype(np.int32),
            channel_id=c["channel_id"].astype(np.int16),
            rate=c["rate_kwh_per_s"].astype(np.float64),
            zero_since_s=c["zero_since_s"].astype(np.int64),
            avg_kwh_per_day=c["avg_kwh_per_day"].astype(np.float64),
            zero_days=c["zero_days"].astype(np.int64),
        ),
        read_s=c["read_s"].astype(np.int64),
        register_kwh=c["register_kwh"].astype(np.float64),
        interval_s=c["interval_s"].astype(np.int64),
    )


def _decode_block(block: int, stream: bytes) -> np.ndarray | None:
    """A block's records, or None when it is not a stream of STATE_ROWS (another layout: no state, a cache)."""
    try:
        return STATE_ROWS.decode(stream)
    except pgcopy.CopyFormatError:
        _log.warning("vee_series_state_blocks block %d is not of the current layout: taken as no state", block)
        return None


def _read_blocks(conn: psycopg.Connection, query: sql.Composed | str, params: tuple[object, ...]) -> np.ndarray:
    """The records of the blocks the query returns (block, states), in block order."""
    with conn.cursor(binary=True) as cur:
        blocks = [_decode_block(b, bytes(st)) for b, st in cur.execute(query, params)]
    kept = [b for b in blocks if b is not None]
    return np.concatenate(kept) if kept else _NO_RECORDS


def stored_columns(conn: psycopg.Connection) -> dict[str, np.ndarray]:
    """Every stored state row (STATE_ROWS columns, native byte order): for inspection and tests."""
    records = _read_blocks(conn, "SELECT block, states FROM vee_series_state_blocks ORDER BY block", ())
    return {name: records[name].astype(records[name].dtype.newbyteorder("=")) for name in STATE_ROWS.names}


def load_states(conn: psycopg.Connection, meter_ids: np.ndarray, *, rules: VeeRules) -> StoredStates:
    """The stored states of these meters' series (meter_ids sorted) made under `rules`: the blocks they fall in are
    read whole (all of their id range when the meters fill most of it, a city's pass) and the others' rows dropped
    here."""
    if meter_ids.size == 0:
        return _from_columns({name: _NO_RECORDS[name] for name in STATE_ROWS.names})
    # the blocks the meters fall in: their whole range, or only those when the meters are far apart (a small pass)
    blocks = IdFilter("block", np.unique(meter_ids.astype(np.int64) >> BLOCK_BITS))
    query = sql.SQL("SELECT block, states FROM vee_series_state_blocks WHERE {} ORDER BY block")
    records = _read_blocks(conn, query.format(blocks.condition()), ())
    states = _from_columns({name: records[name] for name in STATE_ROWS.names})
    if len(states):
        pos = np.clip(np.searchsorted(meter_ids, states.seeds.meter_id), 0, meter_ids.size - 1)
        same_rules = records["rules_key"].astype(np.int64) == rules_key(rules)
        states = states.take((meter_ids[pos] == states.seeds.meter_id) & same_rules)
    return dataclasses.replace(states, blocks=blocks.returned(), block_records=records)


def states_of(vee: VeeResult, series: np.ndarray, *, rules: VeeRules) -> dict[str, np.ndarray]:
    """The state rows (STATE_ROWS columns) of these series of `vee` (indexes) that have one, made under `rules`."""
    st = vee.state
    s = series[st.state_s[series] >= 0]
    return {
        "meter_id": vee.series_meter[s],
        "channel_id": vee.series_channel[s],
        "read_s": st.state_s[s],
        "register_kwh": st.state_kwh[s],
        "rate_kwh_per_s": st.state_rate[s],
        "zero_since_s": st.state_zero_since_s[s],
        "avg_kwh_per_day": st.state_avg_kwh_per_day[s],
        "zero_days": vee.state_zero_days[s],
        "interval_s": vee.series_interval_s[s],
        "rules_key": np.full(s.shape[0], rules_key(rules), np.int64),
    }


def save_states(
    conn: psycopg.Connection,
    rows: dict[str, np.ndarray],
    gone: tuple[np.ndarray, np.ndarray],
    *,
    read: StoredStates | None = None,
) -> int:
    """Store these state rows (STATE_ROWS columns; one per series, replacing the series' stored one) and drop the
    series in `gone` (meter ids, channel ids): those a pass validated from their history and left without a state.
    Every block they fall in is rewritten whole: merged into what `read` (load_states' result in this transaction,
    under the pass lock: no other writer) read of it, or into the block read again. Returns the rows stored."""
    gone_meter, gone_channel = gone
    n = int(rows["meter_id"].shape[0])
    if n == 0 and gone_meter.size == 0:
        return 0
    new_key = series_key(rows["meter_id"], rows["channel_id"])
    touched = np.unique(np.concatenate([rows["meter_id"], gone_meter]).astype(np.int64) >> BLOCK_BITS)
    if (
        read is not None
        and read.blocks is not None
        and read.block_records is not None
        and np.isin(touched, read.blocks).all()
    ):
        old = read.block_records
        old = old[np.isin(old["meter_id"].astype(np.int64) >> BLOCK_BITS, touched)]
    else:
        old = _read_blocks(
            conn,
            "SELECT block, states FROM vee_series_state_blocks WHERE block = ANY(%s::integer[]) ORDER BY block"
            " FOR UPDATE",
            (int_array_literal(touched),),
        )
    old_key = series_key(old["meter_id"].astype(np.int32), old["channel_id"].astype(np.int16))
    keep = ~np.isin(old_key, np.concatenate([new_key, series_key(gone_meter, gone_channel)]))
    native = {name: old.dtype[name].newbyteorder("=") for name in STATE_ROWS.names}
    merged = {
        name: np.concatenate([old[name][keep].astype(native[name]), np.asarray(rows[name]).astype(native[name])])
        for name in STATE_ROWS.names
    }
    order = np.argsort(np.concatenate([old_key[keep], new_key]), kind="stable")
    merged = {name: col[order] for name, col in merged.items()}
    block = merged["meter_id"].astype(np.int64) >> BLOCK_BITS
    bounds = np.flatnonzero(np.r_[True, block[1:] != block[:-1], True]) if block.size else np.zeros(1, np.int64)
    conn.execute("DELETE FROM vee_series_state_blocks WHERE block = ANY(%s::integer[])", (int_array_literal(touched),))
    with (
        conn.cursor() as cur,
        cur.copy("COPY vee_series_state_blocks (block, series, states) FROM STDIN (FORMAT BINARY)") as copy,
    ):
        copy.set_types(["int4", "int4", "bytea"])
        for lo, hi in itertools.pairwise(bounds):
            part = {name: col[lo:hi] for name, col in merged.items()}
            copy.write_row((int(block[lo]), int(hi - lo), STATE_ROWS.encode(part)))
    return n
