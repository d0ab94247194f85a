-- Reading-network state for the dashboards, kept small so pages never scan raw readings.
-- Written by ingest from the collectors' status messages (amr/v1/status/<client>) and from each committed batch.

CREATE TABLE collector_status (
    source      text PRIMARY KEY,                 -- collector, ingest worker or DCU id
    kind        text NOT NULL CHECK (kind IN ('collector', 'ingest', 'dcu')),
    state       text NOT NULL CHECK (state IN ('online', 'offline')),
    updated_at  timestamptz NOT NULL,
    spool_depth integer,                          -- readings held on disk, not yet acknowledged by the broker
    reads_per_s double precision,
    lag_s       double precision,                 -- ingest: now() - oldest unacknowledged reading's receive time
    detail      jsonb
);

CREATE TABLE meter_comm_stats (
    meter_id        integer PRIMARY KEY,
    source          text NOT NULL,                -- the collector polling the meter
    attempts        bigint NOT NULL DEFAULT 0,
    successes       bigint NOT NULL DEFAULT 0,
    last_attempt_at timestamptz,
    last_success_at timestamptz,
    last_error      text,
    last_error_at   timestamptz,
    updated_at      timestamptz NOT NULL DEFAULT now()
);

-- Per meter: the newest reading stored, maintained by ingest per committed batch (one upsert per meter).
CREATE TABLE meter_last_seen (
    meter_id         integer PRIMARY KEY,
    last_reading_ts  timestamptz NOT NULL,
    last_received_at timestamptz NOT NULL
);

GRANT SELECT, INSERT, UPDATE ON collector_status, meter_comm_stats, meter_last_seen TO amr_ingest;
GRANT SELECT ON collector_status, meter_comm_stats, meter_last_seen TO amr_billing;
