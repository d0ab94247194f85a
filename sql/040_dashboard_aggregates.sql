-- Dashboard aggregates: small tables the Dash pages read instead of scanning the meter registry, meter_last_seen
-- or raw readings on a page load. Filled by refresh_dashboard_aggregates(), which the pipeline (or
-- `amr dashboard refresh`) runs after ingest/billing work; each refresh replaces the tables in one transaction,
-- so readers keep seeing the previous snapshot until it commits.

-- Rollout, sparse by day: one row per power company and day on which its counts changed, with the day's
-- increments and the cumulative counts at the end of that day. "As of D" = the newest row with day <= D.
CREATE TABLE rollout_daily (
    power_company text NOT NULL,
    day           date NOT NULL,
    city          text NOT NULL,
    new_customers integer NOT NULL,
    new_electronic integer NOT NULL,
    new_remote    integer NOT NULL,
    customers     integer NOT NULL,   -- metering points connected on or before day
    electronic    integer NOT NULL,   -- of which with an electronic (or smart) meter installed
    remote        integer NOT NULL,   -- of which read remotely (AMR)
    PRIMARY KEY (power_company, day)
);
CREATE INDEX rollout_daily_day ON rollout_daily (day);

-- Rollout, dense by month (cumulative counts at each month's end) for the progress chart.
CREATE TABLE rollout_monthly (
    power_company text NOT NULL,
    month_end     date NOT NULL,
    city          text NOT NULL,
    customers     integer NOT NULL,
    electronic    integer NOT NULL,
    remote        integer NOT NULL,
    PRIMARY KEY (power_company, month_end)
);

-- A deterministic sample of meters for the map (a few thousand points per city, never the whole fleet).
-- Coordinates fall back to the power company's centroid with a small deterministic scatter.
CREATE TABLE meter_map_sample (
    meter_id      integer PRIMARY KEY,
    city          text NOT NULL,
    power_company text NOT NULL,
    meter_kind    text NOT NULL,
    connected_on  date,
    installed_on  date,
    remote_since  date,
    latitude_deg  double precision NOT NULL,
    longitude_deg double precision NOT NULL,
    status        text NOT NULL CHECK (status IN ('read_24h', 'read_7d', 'silent', 'never', 'manual')),
    weight        integer NOT NULL    -- meters this point stands for
);
CREATE INDEX meter_map_sample_city ON meter_map_sample (city);

-- Reading network per power company and protocol, as of the refresh.
CREATE TABLE network_summary (
    power_company text NOT NULL,
    city          text NOT NULL,
    protocol      text NOT NULL,      -- 'none' for meters without a protocol
    meters        integer NOT NULL,
    remote_meters integer NOT NULL,
    read_interval integer NOT NULL,   -- remote meters with a reading newer than one read interval
    read_24h      integer NOT NULL,
    read_7d       integer NOT NULL,
    never_read    integer NOT NULL,
    attempts      bigint NOT NULL,
    successes     bigint NOT NULL,
    PRIMARY KEY (power_company, protocol)
);

-- Per gateway (Modbus gateway, DCU): meters behind it, how many answered, read success.
CREATE TABLE gateway_summary (
    gateway         text PRIMARY KEY,
    city            text NOT NULL,
    power_company   text NOT NULL,
    protocol        text NOT NULL,
    meters          integer NOT NULL,
    read_24h        integer NOT NULL,
    last_reading_ts timestamptz,
    attempts        bigint NOT NULL,
    successes       bigint NOT NULL,
    silent          boolean NOT NULL  -- no meter behind it read in the last 24 h
);
CREATE INDEX gateway_summary_company ON gateway_summary (city, power_company);

-- Remote-read meters without a reading in the last 24 h (or never), for the filterable list.
CREATE TABLE silent_meters (
    meter_id        integer PRIMARY KEY,
    serial          text NOT NULL,
    city            text NOT NULL,
    power_company   text NOT NULL,
    protocol        text NOT NULL,
    gateway         text,
    last_reading_ts timestamptz,
    last_success_at timestamptz,
    last_error      text,
    silence         text NOT NULL CHECK (silence IN ('24h', '7d', 'never'))
);
CREATE INDEX silent_meters_company ON silent_meters (city, power_company, silence);

-- VEE exceptions per finished run, power company, rule and severity (billing writes vee_exceptions, sql/010).
CREATE TABLE vee_exception_summary (
    run_id        bigint NOT NULL,
    period        text NOT NULL,
    power_company text NOT NULL,
    city          text NOT NULL,
    rule          text NOT NULL,
    severity      text NOT NULL,
    exceptions    bigint NOT NULL,
    meters        bigint NOT NULL,
    PRIMARY KEY (run_id, power_company, rule, severity)
);
CREATE INDEX vee_exception_summary_period ON vee_exception_summary (period);

-- Validated consumption per power company and local day (channel 1, active import), for the days of the
-- newest VEE periods: how much was measured and how much estimated.
CREATE TABLE quality_daily (
    power_company   text NOT NULL,
    day             date NOT NULL,
    city            text NOT NULL,
    meters          integer NOT NULL,
    n_measured      bigint NOT NULL,
    n_estimated     bigint NOT NULL,
    measured_kwh    double precision NOT NULL,
    estimated_kwh   double precision NOT NULL,
    flagged_days    integer NOT NULL,   -- meter-days with any VEE flag
    PRIMARY KEY (power_company, day)
);
CREATE INDEX quality_daily_day ON quality_daily (day);

-- When each aggregate was last refreshed, shown on the pages ("as of ...").
CREATE TABLE dashboard_refresh (
    name         text PRIMARY KEY,
    refreshed_at timestamptz NOT NULL,
    duration_ms  double precision NOT NULL,
    row_count    bigint NOT NULL
);

CREATE FUNCTION refresh_dashboard_aggregates(read_interval interval DEFAULT interval '30 minutes',
                                             map_points_per_city integer DEFAULT 3000,
                                             quality_periods integer DEFAULT 3)
RETURNS TABLE (name text, row_count bigint, duration_ms double precision)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public, pg_temp
AS $$
#variable_conflict use_column
DECLARE
    t0 timestamptz;
    n bigint;
    as_of timestamptz := now();
    today date := (now() AT TIME ZONE 'Asia/Ho_Chi_Minh')::date;
BEGIN
    -- One refresher at a time; readers are never blocked (DELETE + INSERT, not TRUNCATE).
    PERFORM pg_advisory_xact_lock(hashtext('refresh_dashboard_aggregates'));

    -- rollout ----------------------------------------------------------------------------------------------
    t0 := clock_timestamp();
    DELETE FROM rollout_daily;
    INSERT INTO rollout_daily
    SELECT power_company, day, city, nc, ne, nr,
           sum(nc) OVER w, sum(ne) OVER w, sum(nr) OVER w
    FROM (
        SELECT power_company, day, min(city) AS city,
               count(*) FILTER (WHERE what = 'c') AS nc,
               count(*) FILTER (WHERE what = 'e') AS ne,
               count(*) FILTER (WHERE what = 'r') AS nr
        FROM (
            SELECT m.power_company, m.city, x.what, x.day
            FROM meters m
            CROSS JOIN LATERAL (VALUES
                ('c', coalesce(m.connected_on, m.installed_on, DATE '1970-01-01')),
                ('e', CASE WHEN m.meter_kind <> 'mechanical'
                           THEN coalesce(m.installed_on, m.connected_on, DATE '1970-01-01') END),
                ('r', CASE WHEN m.remote_read
                           THEN coalesce(m.remote_since, m.installed_on, m.connected_on, DATE '1970-01-01') END)
            ) AS x (what, day)
            WHERE x.day IS NOT NULL
        ) ev
        GROUP BY power_company, day
    ) d
    WINDOW w AS (PARTITION BY power_company ORDER BY day);
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO dashboard_refresh VALUES ('rollout_daily', as_of, 1000 * extract(epoch FROM clock_timestamp() - t0), n)
    ON CONFLICT ON CONSTRAINT dashboard_refresh_pkey DO UPDATE
        SET refreshed_at = EXCLUDED.refreshed_at, duration_ms = EXCLUDED.duration_ms, row_count = EXCLUDED.row_count;
    name := 'rollout_daily'; row_count := n; duration_ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
    RETURN NEXT;

    t0 := clock_timestamp();
    DELETE FROM rollout_monthly;
    INSERT INTO rollout_monthly
    SELECT c.power_company, mo.month_end, c.city, r.customers, r.electronic, r.remote
    FROM (SELECT power_company, min(city) AS city, min(day) AS first_day FROM rollout_daily GROUP BY power_company) c
    CROSS JOIN LATERAL (
        SELECT (g + interval '1 month' - interval '1 day')::date AS month_end
        FROM generate_series(date_trunc('month', greatest(c.first_day, DATE '1990-01-01')),
                             date_trunc('month', today), interval '1 month') AS g
    ) mo
    CROSS JOIN LATERAL (
        SELECT rd.customers, rd.electronic, rd.remote FROM rollout_daily rd
        WHERE rd.power_company = c.power_company AND rd.day <= mo.month_end
        ORDER BY rd.day DESC LIMIT 1
    ) r;
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO dashboard_refresh VALUES ('rollout_monthly', as_of, 1000 * extract(epoch FROM clock_timestamp() - t0), n)
    ON CONFLICT ON CONSTRAINT dashboard_refresh_pkey DO UPDATE
        SET refreshed_at = EXCLUDED.refreshed_at, duration_ms = EXCLUDED.duration_ms, row_count = EXCLUDED.row_count;
    name := 'rollout_monthly'; row_count := n; duration_ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
    RETURN NEXT;

    -- map sample: every k-th meter per city, k chosen so each city gets about map_points_per_city points ------
    t0 := clock_timestamp();
    DELETE FROM meter_map_sample;
    INSERT INTO meter_map_sample
    SELECT m.meter_id, m.city, m.power_company, m.meter_kind, m.connected_on, m.installed_on,
           CASE WHEN m.remote_read THEN coalesce(m.remote_since, m.installed_on, m.connected_on) END,
           coalesce(m.latitude_deg, pc.latitude_deg + ((hashint4(m.meter_id) % 1000) / 1000.0) * 0.03),
           coalesce(m.longitude_deg, pc.longitude_deg + ((hashint4(m.meter_id + 7919) % 1000) / 1000.0) * 0.03),
           CASE WHEN NOT m.remote_read THEN 'manual'
                WHEN ls.last_reading_ts IS NULL THEN 'never'
                WHEN ls.last_reading_ts >= as_of - interval '24 hours' THEN 'read_24h'
                WHEN ls.last_reading_ts >= as_of - interval '7 days' THEN 'read_7d'
                ELSE 'silent' END,
           s.step
    FROM meters m
    JOIN (SELECT city, greatest(1, ceil(count(*)::numeric / greatest(map_points_per_city, 1)))::integer AS step
          FROM meters GROUP BY city) s ON s.city = m.city
    JOIN power_companies pc ON pc.code = m.power_company
    LEFT JOIN meter_last_seen ls ON ls.meter_id = m.meter_id
    WHERE m.meter_id % s.step = 0
      AND coalesce(m.latitude_deg, pc.latitude_deg) IS NOT NULL
      AND coalesce(m.longitude_deg, pc.longitude_deg) IS NOT NULL;
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO dashboard_refresh VALUES ('meter_map_sample', as_of, 1000 * extract(epoch FROM clock_timestamp() - t0), n)
    ON CONFLICT ON CONSTRAINT dashboard_refresh_pkey DO UPDATE
        SET refreshed_at = EXCLUDED.refreshed_at, duration_ms = EXCLUDED.duration_ms, row_count = EXCLUDED.row_count;
    name := 'meter_map_sample'; row_count := n; duration_ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
    RETURN NEXT;

    -- network -------------------------------------------------------------------------------------------------
    t0 := clock_timestamp();
    DELETE FROM network_summary;
    INSERT INTO network_summary
    SELECT m.power_company, min(m.city), coalesce(m.protocol, 'none'),
           count(*),
           count(*) FILTER (WHERE m.remote_read),
           count(*) FILTER (WHERE m.remote_read AND ls.last_reading_ts >= as_of - read_interval),
           count(*) FILTER (WHERE m.remote_read AND ls.last_reading_ts >= as_of - interval '24 hours'),
           count(*) FILTER (WHERE m.remote_read AND ls.last_reading_ts >= as_of - interval '7 days'),
           count(*) FILTER (WHERE m.remote_read AND ls.meter_id IS NULL),
           coalesce(sum(cs.attempts), 0), coalesce(sum(cs.successes), 0)
    FROM meters m
    LEFT JOIN meter_last_seen ls ON ls.meter_id = m.meter_id
    LEFT JOIN meter_comm_stats cs ON cs.meter_id = m.meter_id
    GROUP BY m.power_company, coalesce(m.protocol, 'none');
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO dashboard_refresh VALUES ('network_summary', as_of, 1000 * extract(epoch FROM clock_timestamp() - t0), n)
    ON CONFLICT ON CONSTRAINT dashboard_refresh_pkey DO UPDATE
        SET refreshed_at = EXCLUDED.refreshed_at, duration_ms = EXCLUDED.duration_ms, row_count = EXCLUDED.row_count;
    name := 'network_summary'; row_count := n; duration_ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
    RETURN NEXT;

    t0 := clock_timestamp();
    DELETE FROM gateway_summary;
    INSERT INTO gateway_summary
    SELECT m.gateway, min(m.city), min(m.power_company), coalesce(min(m.protocol), 'none'),
           count(*),
           count(*) FILTER (WHERE ls.last_reading_ts >= as_of - interval '24 hours'),
           max(ls.last_reading_ts),
           coalesce(sum(cs.attempts), 0), coalesce(sum(cs.successes), 0),
           count(*) FILTER (WHERE ls.last_reading_ts >= as_of - interval '24 hours') = 0
    FROM meters m
    LEFT JOIN meter_last_seen ls ON ls.meter_id = m.meter_id
    LEFT JOIN meter_comm_stats cs ON cs.meter_id = m.meter_id
    WHERE m.gateway IS NOT NULL
    GROUP BY m.gateway;
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO dashboard_refresh VALUES ('gateway_summary', as_of, 1000 * extract(epoch FROM clock_timestamp() - t0), n)
    ON CONFLICT ON CONSTRAINT dashboard_refresh_pkey DO UPDATE
        SET refreshed_at = EXCLUDED.refreshed_at, duration_ms = EXCLUDED.duration_ms, row_count = EXCLUDED.row_count;
    name := 'gateway_summary'; row_count := n; duration_ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
    RETURN NEXT;

    t0 := clock_timestamp();
    DELETE FROM silent_meters;
    INSERT INTO silent_meters
    SELECT m.meter_id, m.serial, m.city, m.power_company, coalesce(m.protocol, 'none'), m.gateway,
           ls.last_reading_ts, cs.last_success_at, cs.last_error,
           CASE WHEN ls.last_reading_ts IS NULL THEN 'never'
                WHEN ls.last_reading_ts >= as_of - interval '7 days' THEN '24h'
                ELSE '7d' END
    FROM meters m
    LEFT JOIN meter_last_seen ls ON ls.meter_id = m.meter_id
    LEFT JOIN meter_comm_stats cs ON cs.meter_id = m.meter_id
    WHERE m.remote_read AND (ls.last_reading_ts IS NULL OR ls.last_reading_ts < as_of - interval '24 hours');
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO dashboard_refresh VALUES ('silent_meters', as_of, 1000 * extract(epoch FROM clock_timestamp() - t0), n)
    ON CONFLICT ON CONSTRAINT dashboard_refresh_pkey DO UPDATE
        SET refreshed_at = EXCLUDED.refreshed_at, duration_ms = EXCLUDED.duration_ms, row_count = EXCLUDED.row_count;
    name := 'silent_meters'; row_count := n; duration_ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
    RETURN NEXT;

    -- data quality (skipped while billing's tables are missing) ----------------------------------------------
    IF to_regclass('public.vee_exceptions') IS NOT NULL AND to_regclass('public.billing_runs') IS NOT NULL THEN
        t0 := clock_timestamp();
        -- Runs are immutable once finished: summarise each finished run once, drop runs gone or re-opened.
        DELETE FROM vee_exception_summary s
        WHERE NOT EXISTS (SELECT 1 FROM billing_runs r WHERE r.run_id = s.run_id AND r.status <> 'running');
        INSERT INTO vee_exception_summary
        SELECT e.run_id, min(r.period), m.power_company, min(m.city), e.rule, e.severity, count(*),
               count(DISTINCT e.meter_id)
        FROM vee_exceptions e
        JOIN billing_runs r ON r.run_id = e.run_id
        JOIN meters m ON m.meter_id = e.meter_id
        WHERE r.status <> 'running'
          AND NOT EXISTS (SELECT 1 FROM vee_exception_summary s WHERE s.run_id = e.run_id)
        GROUP BY e.run_id, m.power_company, e.rule, e.severity;
        GET DIAGNOSTICS n = ROW_COUNT;
        INSERT INTO dashboard_refresh VALUES ('vee_exception_summary', as_of,
                                              1000 * extract(epoch FROM clock_timestamp() - t0), n)
        ON CONFLICT ON CONSTRAINT dashboard_refresh_pkey DO UPDATE
            SET refreshed_at = EXCLUDED.refreshed_at, duration_ms = EXCLUDED.duration_ms, row_count = EXCLUDED.row_count;
        name := 'vee_exception_summary'; row_count := n;
        duration_ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
        RETURN NEXT;
    END IF;

    IF to_regclass('public.daily_consumption') IS NOT NULL AND to_regclass('public.billing_runs') IS NOT NULL THEN
        t0 := clock_timestamp();
        DELETE FROM quality_daily;
        INSERT INTO quality_daily
        SELECT m.power_company, d.day, min(m.city), count(DISTINCT d.meter_id),
               sum(d.n_measured), sum(d.n_estimated), sum(d.measured_kwh), sum(d.estimated_kwh),
               count(*) FILTER (WHERE d.flags <> 0)
        FROM daily_consumption d
        JOIN meters m ON m.meter_id = d.meter_id
        -- The newest periods' months, plus the month before (billing cycles end on each meter's read day).
        JOIN (SELECT min(to_date(p.period, 'YYYY-MM')) - 31 AS first_day,
                     (max(to_date(p.period, 'YYYY-MM')) + interval '1 month')::date AS end_day
              FROM (SELECT DISTINCT period FROM billing_runs WHERE kind = 'vee' AND status <> 'running'
                    ORDER BY period DESC LIMIT quality_periods) p) per
          ON d.day >= per.first_day AND d.day < per.end_day
        WHERE d.channel_id = 1
        GROUP BY m.power_company, d.day;
        GET DIAGNOSTICS n = ROW_COUNT;
        INSERT INTO dashboard_refresh VALUES ('quality_daily', as_of, 1000 * extract(epoch FROM clock_timestamp() - t0), n)
        ON CONFLICT ON CONSTRAINT dashboard_refresh_pkey DO UPDATE
            SET refreshed_at = EXCLUDED.refreshed_at, duration_ms = EXCLUDED.duration_ms, row_count = EXCLUDED.row_count;
        name := 'quality_daily'; row_count := n; duration_ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
        RETURN NEXT;
    END IF;
END;
$$;

-- Least privilege: the reader sees the aggregates; the pipeline roles may refresh them (the function runs with
-- the owner's rights, so they need no write access to the tables themselves).
REVOKE ALL ON FUNCTION refresh_dashboard_aggregates(interval, integer, integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION refresh_dashboard_aggregates(interval, integer, integer) TO amr_ingest, amr_billing;
GRANT SELECT ON rollout_daily, rollout_monthly, meter_map_sample, network_summary, gateway_summary, silent_meters,
    vee_exception_summary, quality_daily, dashboard_refresh TO amr_reader;
