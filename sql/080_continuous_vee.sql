-- Continuous meter-data management (docs/vee.md): VEE as data lands, versioned validated data with quality
-- codes, exception episodes with a review queue, manual edits with an audit trail.
-- Raw readings stay immutable; the VEE service (billing.continuous) writes only these tables.

-- The (meter, local day) units that received readings since the VEE service last validated them. Ingest marks
-- them in the transaction that stores the readings (a visible mark means its readings are visible); every batch
-- touching a unit bumps `marks`, and a pass deletes a unit only if `marks` is still what it read, so a reading
-- that lands during a pass is validated by the next one.
CREATE TABLE vee_pending (
    meter_id   integer NOT NULL,
    day        date NOT NULL,                  -- local (Asia/Ho_Chi_Minh) calendar day of the readings
    marks      bigint NOT NULL DEFAULT 1,
    touched_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, day)
);

-- The service's watermark and counters (one row per service name).
CREATE TABLE vee_state (
    service        text PRIMARY KEY,
    last_pass_at   timestamptz,
    last_day       date,                        -- newest local day validated by the last pass
    passes         bigint NOT NULL DEFAULT 0,
    units          bigint NOT NULL DEFAULT 0,   -- (meter, day) units validated in all
    versions       bigint NOT NULL DEFAULT 0,   -- daily versions written in all
    last_seconds   double precision,
    detail         jsonb
);

-- Every version of every validated (meter, channel, local day); the greatest version is the current one.
-- quality: AEMO NEM12 flag (A actual, E forward estimate, S substituted, F final substitute, N null, V variable:
-- measured and estimated intervals in the day); method: AEMO substitution method number of the day's estimate
-- (14 retrospective like day, 17 linear interpolation, 24 scaled to the register, 25 average daily load), NULL
-- for actual and edited days. reason: why the version was made.
CREATE TABLE vee_daily_versions (
    meter_id      integer NOT NULL,
    channel_id    smallint NOT NULL,
    day           date NOT NULL,
    version       integer NOT NULL CHECK (version >= 1),
    measured_kwh  double precision NOT NULL,    -- after the multiplier [kWh]
    estimated_kwh double precision NOT NULL,
    n_measured    integer NOT NULL,
    n_estimated   integer NOT NULL,
    flags         integer NOT NULL,             -- billing.flags rule bits of the day
    methods       smallint NOT NULL,            -- billing.flags method bits
    quality       char(1) NOT NULL CHECK (quality IN ('A', 'E', 'S', 'F', 'N', 'V')),
    method        smallint,
    reason        text NOT NULL CHECK (reason IN
                    ('first_pass', 'late_data', 're_estimate', 'revalidation', 'manual_edit', 'accept', 'undo')),
    made_by       text NOT NULL,                -- 'vee-service' or the operator
    made_at       timestamptz NOT NULL DEFAULT now(),
    note          text,
    PRIMARY KEY (meter_id, channel_id, day, version)
);

-- The current version of each unit, kept beside the history so that billing reads one row per day.
CREATE TABLE vee_daily (
    meter_id      integer NOT NULL,
    channel_id    smallint NOT NULL,
    day           date NOT NULL,
    version       integer NOT NULL,
    measured_kwh  double precision NOT NULL,
    estimated_kwh double precision NOT NULL,
    n_measured    integer NOT NULL,
    n_estimated   integer NOT NULL,
    flags         integer NOT NULL,
    methods       smallint NOT NULL,
    quality       char(1) NOT NULL,
    method        smallint,
    reason        text NOT NULL,
    locked        boolean NOT NULL DEFAULT false,   -- a manual edit: automatic passes leave the day alone
    made_at       timestamptz NOT NULL,
    PRIMARY KEY (meter_id, channel_id, day)
);
CREATE INDEX vee_daily_day ON vee_daily (day);

-- Rule occurrences as the latest pass over their window found them (a re-validation replaces the window's rows).
CREATE TABLE vee_flags (
    meter_id       integer NOT NULL,
    channel_id     smallint NOT NULL,
    rule           text NOT NULL,
    interval_start timestamptz NOT NULL,
    interval_end   timestamptz NOT NULL,
    severity       text NOT NULL,
    value          double precision,
    PRIMARY KEY (meter_id, channel_id, rule, interval_start)
);

-- Exception episodes: one per meter, channel, rule and contiguous run of occurrences.
CREATE TABLE vee_episodes (
    episode_id     bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    meter_id       integer NOT NULL,
    channel_id     smallint NOT NULL,
    rule           text NOT NULL,
    severity       text NOT NULL CHECK (severity IN ('info', 'review', 'invalid')),
    first_start    timestamptz NOT NULL,
    last_end       timestamptz NOT NULL,
    occurrences    integer NOT NULL,
    value_min      double precision,            -- the values that broke the rule
    value_max      double precision,
    status         text NOT NULL CHECK (status IN ('open', 'acknowledged', 'resolved', 'auto_resolved')),
    opened_at      timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    closed_at      timestamptz,
    closed_by      text,
    note           text
);
CREATE INDEX vee_episodes_meter ON vee_episodes (meter_id, channel_id, rule, first_start);
CREATE INDEX vee_episodes_status ON vee_episodes (status, rule);

-- Every action that changes validated data or an episode's review state, with who did it.
CREATE TABLE vee_audit (
    audit_id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    db_role     text NOT NULL DEFAULT current_user,
    operator    text NOT NULL,
    action      text NOT NULL,                   -- edit, estimate_again, accept, undo, acknowledge, resolve
    meter_id    integer,
    channel_id  smallint,
    day         date,
    episode_id  bigint,
    old_version integer,
    new_version integer,
    old_kwh     double precision,
    new_kwh     double precision,
    reason      text NOT NULL
);
CREATE INDEX vee_audit_meter ON vee_audit (meter_id, day);

-- Ingest marks units; the VEE service (billing role) does the rest. The reader only reads.
GRANT SELECT, INSERT, UPDATE ON vee_pending TO amr_ingest;
GRANT SELECT, INSERT, UPDATE, DELETE ON vee_pending, vee_state, vee_daily_versions, vee_daily, vee_flags,
    vee_episodes TO amr_billing;
GRANT SELECT, INSERT ON vee_audit TO amr_billing;
GRANT USAGE, SELECT ON SEQUENCE vee_episodes_episode_id_seq, vee_audit_audit_id_seq TO amr_billing;
GRANT SELECT ON vee_pending, vee_state, vee_daily_versions, vee_daily, vee_flags, vee_episodes, vee_audit
    TO amr_reader;
