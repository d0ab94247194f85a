"""Each series' VEE state between passes (sql/097_vee_series_state.sql, docs/vee.md "Resuming from the state"):
read for the meters a pass claims, written from the pass's results, both by binary COPY of fixed-width rows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import psycopg
from psycopg import sql

from amr import pgcopy
from billing.load import copy_out_records
from billing.rules import VeeRules
from billing.vee import SeriesStates, VeeResult

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


def rules_key(rules: VeeRules) -> int:
    """A 63-bit digest of the rules: a state made under other rules (thresholds, intervals, status bits) would not
    judge the reads after it as a validation from the history does, so it is not resumed from."""
    digest = hashlib.sha256(rules.model_dump_json().encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@dataclass(frozen=True, kw_only=True)
class StoredStates:
    """The stored states of some meters' series, sorted by (meter_id, channel_id)."""

    seeds: SeriesStates
    read_s: np.ndarray  # int64, the state's read: a local midnight [UTC epoch s]
    register_kwh: np.ndarray  # float64, its register value [kWh]
    interval_s: np.ndarray  # int64

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


def load_states(conn: psycopg.Connection, meter_ids: np.ndarray, *, rules: VeeRules) -> StoredStates:
    """The stored states of these meters' series (meter_ids sorted) made under `rules`. The meters' id range is
    read whole and the others dropped here (a pass claims most of a range: cheaper than an `= ANY(array)` test on
    every row)."""
    if meter_ids.size == 0:
        records = STATE_ROWS.decode(pgcopy.HEADER + pgcopy.TRAILER)
    else:
        query = sql.SQL(
            "COPY (SELECT {} FROM vee_series_state WHERE meter_id BETWEEN {} AND {} ORDER BY meter_id, channel_id)"
            " TO STDOUT (FORMAT BINARY)"
        ).format(
            sql.SQL(", ").join(sql.Identifier(c) for c in STATE_ROWS.names),
            sql.Literal(int(meter_ids[0])),
            sql.Literal(int(meter_ids[-1])),
        )
        records = copy_out_records(conn, query, STATE_ROWS)
    states = _from_columns({name: records[name] for name in STATE_ROWS.names})
    if len(states) and meter_ids.size:
        pos = np.clip(np.searchsorted(meter_ids, states.seeds.meter_id), 0, meter_ids.size - 1)
        same_rules = records["rules_key"].astype(np.int64) == rules_key(rules)
        states = states.take((meter_ids[pos] == states.seeds.meter_id) & same_rules)
    return states


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


def save_states(conn: psycopg.Connection, rows: dict[str, np.ndarray], gone: tuple[np.ndarray, np.ndarray]) -> int:
    """Upsert these state rows (STATE_ROWS columns; one per series) and delete the series in `gone` (meter ids,
    channel ids): those a pass validated from their history and left without a state. Returns the rows upserted."""
    gone_meter, gone_channel = gone
    if gone_meter.size:
        conn.execute(
            "DELETE FROM vee_series_state s USING unnest(%s::integer[], %s::smallint[]) AS g(m, c)"
            " WHERE s.meter_id = g.m AND s.channel_id = g.c",
            ([int(m) for m in gone_meter], [int(c) for c in gone_channel]),
        )
    n = int(rows["meter_id"].shape[0])
    if n == 0:
        return 0
    conn.execute("CREATE TEMP TABLE IF NOT EXISTS vee_series_state_new (LIKE vee_series_state) ON COMMIT DROP")
    names = sql.SQL(", ").join(sql.Identifier(c) for c in STATE_ROWS.names)
    with conn.cursor() as cur:
        with cur.copy(sql.SQL("COPY vee_series_state_new ({}) FROM STDIN (FORMAT BINARY)").format(names)) as copy:
            copy.write(STATE_ROWS.encode(rows))
        updates = sql.SQL(", ").join(
            sql.SQL("{0} = excluded.{0}").format(sql.Identifier(c)) for c in STATE_ROWS.names[2:]
        )
        cur.execute(
            sql.SQL(
                "INSERT INTO vee_series_state ({}) SELECT {} FROM vee_series_state_new"
                " ON CONFLICT (meter_id, channel_id) DO UPDATE SET {}"
            ).format(names, names, updates)
        )
        cur.execute("DROP TABLE vee_series_state_new")
    return n
