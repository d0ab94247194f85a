-- VEE results and billing: runs, exceptions, validated + estimated daily consumption, bills.
-- Raw readings stay untouched: VEE writes only here. Energy is in kWh after the meter multiplier (CT/VT ratio);
-- days are local (Asia/Ho_Chi_Minh) calendar days; interval bounds are UTC.
-- run_id columns carry no foreign key: a city run COPYs millions of rows, and a row-level FK trigger per row
-- cost more than the COPY itself (measured); billing.run writes the billing_runs row first.

CREATE TABLE billing_runs (
    run_id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind            text NOT NULL CHECK (kind IN ('vee', 'bill')),
    period          text NOT NULL CHECK (period ~ '^[0-9]{4}-[0-9]{2}$'),   -- billing month YYYY-MM
    city            text CHECK (city IN ('HN', 'HCM')),
    power_company   text,
    started_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz,
    status          text NOT NULL CHECK (status IN ('running', 'released', 'held', 'overridden', 'failed')),
    rules_sha256    text,
    tariffs_sha256  text,
    customers       integer,
    energy_kwh      double precision,
    amount_vnd      bigint,                    -- before VAT
    vat_vnd         bigint,
    total_vnd       bigint,
    estimated_share double precision,          -- estimated intervals / all intervals in the billed cycles
    exceptions      jsonb,                     -- {rule code: count}
    hold_reason     text,
    export_dir      text,
    detail          jsonb
);
CREATE INDEX billing_runs_period ON billing_runs (period, kind);

CREATE TABLE vee_exceptions (
    exception_id   bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id         bigint NOT NULL,           -- billing_runs.run_id
    meter_id       integer NOT NULL,
    channel_id     smallint NOT NULL,
    interval_start timestamptz NOT NULL,
    interval_end   timestamptz NOT NULL,
    rule           text NOT NULL,
    severity       text NOT NULL CHECK (severity IN ('info', 'review', 'invalid')),
    value          double precision           -- the reading's value, or the day's kWh for daily checks
);
CREATE INDEX vee_exceptions_run_rule ON vee_exceptions (run_id, rule);
CREATE INDEX vee_exceptions_meter ON vee_exceptions (meter_id, interval_start);

-- One row per meter, channel and local day: the latest VEE run's result (a re-run replaces the rows).
CREATE TABLE daily_consumption (
    meter_id      integer NOT NULL,
    channel_id    smallint NOT NULL,
    day           date NOT NULL,
    measured_kwh  double precision NOT NULL,   -- from valid consecutive reads
    estimated_kwh double precision NOT NULL,   -- estimated intervals (flag ESTIMATED, methods below)
    n_measured    integer NOT NULL,            -- intervals measured
    n_estimated   integer NOT NULL,            -- intervals estimated
    flags         integer NOT NULL,            -- billing.flags bit mask (rule codes)
    methods       smallint NOT NULL,           -- billing.flags method bits: 1 linear, 2 historical, 4 flat, 8 scaled
    vee_run_id    bigint NOT NULL,             -- billing_runs.run_id of the run that wrote the row
    PRIMARY KEY (meter_id, channel_id, day)
);

CREATE TABLE bills (
    run_id           bigint NOT NULL,          -- billing_runs.run_id
    meter_id         integer NOT NULL,
    customer_code    text,
    city             text NOT NULL,
    power_company    text NOT NULL,
    tariff_class     text NOT NULL,
    cycle_start      date NOT NULL,            -- first local day billed
    cycle_end        date NOT NULL,            -- read day: first local day NOT billed
    days             smallint NOT NULL,
    households       smallint NOT NULL,
    multiplier       double precision NOT NULL,
    energy_kwh       bigint NOT NULL,          -- billed kWh (integer, after multiplier)
    normal_kwh       bigint,
    peak_kwh         bigint,
    offpeak_kwh      bigint,
    estimated_kwh    double precision NOT NULL,
    amount_vnd       bigint NOT NULL,          -- before VAT
    vat_percent      numeric(5, 2) NOT NULL,
    vat_vnd          bigint NOT NULL,
    total_vnd        bigint NOT NULL,
    tariff_versions  text NOT NULL,
    quality_flags    text NOT NULL,
    status           text NOT NULL CHECK (status IN ('billed', 'no_data', 'no_tariff')),
    PRIMARY KEY (run_id, meter_id)
);

-- Billing writes its own tables and nothing else; it keeps SELECT only on readings (granted in 001).
GRANT SELECT, INSERT, UPDATE, DELETE ON billing_runs, vee_exceptions, daily_consumption, bills TO amr_billing;
GRANT USAGE, SELECT ON SEQUENCE billing_runs_run_id_seq, vee_exceptions_exception_id_seq TO amr_billing;
-- Dashboards: read-only (also covered by 001's default privileges when the owner runs the migrations).
GRANT SELECT ON billing_runs, vee_exceptions, daily_consumption, bills TO amr_reader;
