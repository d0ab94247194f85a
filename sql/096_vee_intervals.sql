-- Interval-level validated results of profile meters (docs/vee.md section 2): the VEE service (billing.continuous,
-- billing.intervals) writes one row per interval slot of a series whose interval is shorter than a day (30-min
-- cumulative register reads), over the same closed days it writes to vee_daily, in the same transaction.
--
-- Current values only: vee_daily_versions keeps the history. `version` is the daily version of the slot's local
-- day (the day of interval_end - 1 s) that was current when this value was written; a pass upserts only the slots
-- whose energy, quality or method changed, so a day versioned again for other reasons (flags) leaves its unchanged
-- slots on the version that made them. A day a person edited (vee_daily.locked) keeps its intervals.
-- quality: AEMO NEM12 interval flag: A actual (the register difference of two valid reads one interval apart),
-- S substituted (estimated between valid reads), E forward estimate (flat at the last rate: a meter replacement),
-- N null (reserved). method: AEMO substitution method, NULL for actual: 14 retrospective like day (the series'
-- like-day profile shape, scaled to the register difference), 17 linear interpolation, 25 average daily load
-- (flat rate). An open gap (no valid read after it) and one beyond estimation.max_s (GAP_TOO_LONG) are not written.
CREATE TABLE vee_intervals (
    meter_id     integer NOT NULL,
    channel_id   smallint NOT NULL,
    interval_end timestamptz NOT NULL,          -- the slot is (interval_end - interval, interval_end]
    energy_kwh   double precision NOT NULL,     -- after the multiplier [kWh]
    quality      char(1) NOT NULL CHECK (quality IN ('A', 'S', 'E', 'N')),
    method       smallint CHECK (method IN (14, 17, 24, 25)),
    version      integer NOT NULL CHECK (version >= 1),  -- vee_daily_versions.version of the slot's day
    made_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, channel_id, interval_end)
);
-- 48 rows a day per profile series: chunks of a week, as meter_events; the primary key serves the per-meter reads.
SELECT create_hypertable('vee_intervals', 'interval_end', chunk_time_interval => interval '7 days',
                         create_default_indexes => false);

-- The VEE service (billing role) writes; the reader reads (as vee_daily, sql/080_continuous_vee.sql).
GRANT SELECT, INSERT, UPDATE, DELETE ON vee_intervals TO amr_billing;
GRANT SELECT ON vee_intervals TO amr_reader;
