-- The series' VEE states (sql/097_vee_series_state.sql) kept by blocks of meter ids, one row per block: a pass
-- over a city's day rewrote ~2.75 M state rows by upsert (8.2 s of a 124.5 s pass at 2.5 M meters, and 2.9 s to
-- read them back); as ~2,400 blocks it writes and reads a few hundred MB of bytea instead.
--
-- `states` is a complete binary COPY stream of the block's series (billing.series_state.STATE_ROWS: meter_id,
-- channel_id, read_s, register_kwh, rate_kwh_per_s, zero_since_s, avg_kwh_per_day, zero_days, interval_s,
-- rules_key; sorted by meter_id, channel_id): one home for the format, and self-checking (a block of another
-- layout fails to decode and is taken as no state). Still a cache: UNLOGGED, written in the pass's transaction.
DROP TABLE vee_series_state;

CREATE UNLOGGED TABLE vee_series_state_blocks (
    block   integer PRIMARY KEY,  -- meter_id >> billing.series_state.BLOCK_BITS
    series  integer NOT NULL,     -- series in the block
    states  bytea NOT NULL
);
-- Already dense numbers: compression would cost time on every pass and save little.
ALTER TABLE vee_series_state_blocks ALTER COLUMN states SET STORAGE EXTERNAL;

GRANT SELECT, INSERT, UPDATE, DELETE ON vee_series_state_blocks TO amr_billing;
