-- Fleet generator runs (simulators/fleet, `amr fleet generate`) and the published rollout figures the
-- generator is calibrated on, which the dashboards draw as reference lines. Shares are fractions 0..1.

CREATE TABLE fleet_runs (
    run_id         integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    generated_at   timestamptz NOT NULL DEFAULT now(),
    seed           bigint NOT NULL,
    scale          double precision NOT NULL CHECK (scale > 0),
    horizon        date NOT NULL,                 -- the registry's "as of" date (connections end here)
    meters         integer NOT NULL,
    first_meter_id integer NOT NULL,              -- the run's meters are first_meter_id .. last_meter_id
    last_meter_id  integer NOT NULL,
    elapsed_s      double precision,
    replaced_at    timestamptz,                   -- NULL: the fleet in the meters table now
    CHECK (last_meter_id >= first_meter_id)
);
CREATE UNIQUE INDEX fleet_runs_one_active ON fleet_runs ((true)) WHERE replaced_at IS NULL;

CREATE TABLE rollout_reference (
    as_of             date NOT NULL,
    city              text NOT NULL CHECK (city IN ('HN', 'HCM')),
    customers         integer,                    -- customers (meters) when the source gives them
    electronic_meters integer,
    electronic_share  double precision CHECK (electronic_share BETWEEN 0 AND 1),
    remote_meters     integer,
    remote_share      double precision CHECK (remote_share BETWEEN 0 AND 1),
    kind              text NOT NULL DEFAULT 'measured' CHECK (kind IN ('measured', 'target')),
    source            text NOT NULL,
    note              text,
    PRIMARY KEY (as_of, city, kind)
);

INSERT INTO rollout_reference
    (as_of, city, customers, electronic_meters, electronic_share, remote_meters, remote_share, kind, source, note)
VALUES
    ('2017-09-15', 'HN', NULL, 699033, 0.33, 563800, 0.25, 'measured', 'Ministry of Industry and Trade report, 2017',
     'mid-Sep 2017; the shares imply 2.12 M (electronic) and 2.26 M (remote) customers'),
    ('2017-09-15', 'HCM', NULL, 413159, 0.19, 363632, 0.166, 'measured', 'Ministry of Industry and Trade report, 2017',
     'mid-Sep 2017'),
    ('2018-01-01', 'HN', NULL, NULL, NULL, NULL, 1.0, 'target', 'Government Resolution 36a',
     'target: complete remote reading (AMR) before 1 Jan 2018'),
    ('2018-01-01', 'HCM', NULL, NULL, NULL, NULL, 1.0, 'target', 'Government Resolution 36a',
     'target: complete remote reading (AMR) before 1 Jan 2018'),
    ('2023-05-31', 'HN', NULL, NULL, NULL, NULL, 1.0, 'measured', 'EVN, 2023', NULL),
    ('2023-05-31', 'HCM', NULL, NULL, NULL, NULL, 0.9998, 'measured', 'EVN, 2023', NULL),
    ('2024-02-01', 'HN', 2800000, NULL, 1.0, NULL, NULL, 'measured', 'EVNHANOI, 2024',
     'Feb 2024: more than 2.8 M customers, 100 % electronic meters');

GRANT SELECT ON fleet_runs, rollout_reference TO amr_billing;
