-- Each series' VEE state after its last valid read at a local midnight (docs/vee.md section 1, "Resuming from the
-- state"): what the next pass of the VEE service resumes from (billing.kernels.SeriesSeed) instead of reading the
-- series' history again, when the meter's first pending day is the one that read opens.
--
-- A cache, derivable from the readings: UNLOGGED (no WAL: a crash empties it, and the passes then read the history
-- as before and fill it again; a standby has none, with the same effect after a failover). Written in the pass's
-- transaction, so a pass killed at any point leaves it as the committed results are.
CREATE UNLOGGED TABLE vee_series_state (
    meter_id         integer NOT NULL,
    channel_id       smallint NOT NULL,
    read_s           bigint NOT NULL,            -- the read [UTC epoch s], at a local midnight
    register_kwh     double precision NOT NULL,  -- its register value, before the multiplier [kWh]
    rate_kwh_per_s   double precision NOT NULL,  -- the last valid interval's rate then [kWh/s], -1: none
    zero_since_s     bigint NOT NULL,            -- the register unchanged since [UTC epoch s], -1: changing
    avg_kwh_per_day  double precision NOT NULL,  -- smoothed average day [kWh/day] (NaN: none): the day checks' history
    zero_days        integer NOT NULL,           -- zero days in a row up to the read (ZERO_USE)
    interval_s       integer NOT NULL,           -- the series' read interval [s]
    rules_key        bigint NOT NULL,            -- the VEE rules it was made under (billing.series_state.rules_key):
                                                 -- under other rules a pass reads the history instead
    PRIMARY KEY (meter_id, channel_id)
) WITH (fillfactor = 50);  -- every pass rewrites its series' rows: room on the page keeps the updates HOT

GRANT SELECT, INSERT, UPDATE, DELETE ON vee_series_state TO amr_billing;
