-- Pre-aggregates for the Data quality and Billing pages, filled by refresh_dashboard_aggregates() (replaced here,
-- doing everything sql/040 did plus the two sections below), so a page load reads a few hundred rows instead of
-- every validated meter-day or every bill of a run.
--
-- Data quality: the current validated days of the total-import channel (1.0.1.8.0, channel 1) per local day, city,
-- power company and AEMO quality code, for the page's 30-day window (and a day's margin). A refresh re-counts only
-- the days that can have changed: the days not counted yet, the days with a version made since an hour before the
-- previous refresh (VEE passes, late data and edits all write a version; made_at is its transaction's start, hence
-- the hour), found through a BRIN index on vee_daily_versions (made_at), and, as a safety net for a version from a
-- transaction longer than that hour, up to two days (vee_quality_rotate_days) counted more than six hours ago
-- (vee_quality_recount_after), the longest ago first: every day is re-counted within about seven hours whatever
-- happened. A day costs a read of its vee_daily rows (about 16 s for the 5.5 M meters of both cities on a 2-core
-- machine), so a refresh reads the changed days only, not all 31 (the first one reads them all);
-- vee_quality_days says when each day was counted.
--
-- Billing: per finished bill run (kind 'bill', status not 'running'; bills do not change once a run is finished,
-- later differences are rebill runs of their own), its totals, its totals per power company, the distribution of
-- its billed customers' total [VND] and energy [kWh] in 1-2-5 bins, the household energy falling in each EVN
-- tier, and its held customers per reason. Each run is summarised once, at the first refresh after it finished.
-- Held customers and corrections (rebill runs) stay live queries: held ones through the partial index below,
-- corrections from the rebill runs' own rows.

CREATE TABLE vee_quality_daily (
    day           date NOT NULL,               -- local (Asia/Ho_Chi_Minh) day
    power_company text NOT NULL,
    city          text NOT NULL,
    quality       char(1) NOT NULL,            -- AEMO quality flag of the current version
    meter_days    bigint NOT NULL,
    measured_kwh  double precision NOT NULL,
    estimated_kwh double precision NOT NULL,
    PRIMARY KEY (day, power_company, quality)
);

CREATE TABLE vee_quality_days (
    day        date PRIMARY KEY,
    counted_at timestamptz NOT NULL,           -- when the refresh last counted this day's validated days
    meter_days bigint NOT NULL
);

CREATE TABLE bill_run_summary (
    run_id          bigint PRIMARY KEY,        -- billing_runs.run_id (kind 'bill')
    period          text NOT NULL,
    summarized_at   timestamptz NOT NULL,
    bills           bigint NOT NULL,           -- every customer of the run, whatever its status
    billed          bigint NOT NULL,
    held            bigint NOT NULL,
    no_data         bigint NOT NULL,
    no_tariff       bigint NOT NULL,
    energy_kwh      bigint NOT NULL,           -- billed customers
    amount_vnd      bigint NOT NULL,
    total_vnd       bigint NOT NULL,
    household_bills bigint NOT NULL,           -- billed customers on the household (tiered) tariff
    household_kwh   bigint NOT NULL,
    -- household_kwh split into EVN's six tiers: 50, 50, 100, 100, 100 kWh per month and household, then the rest
    -- (tier sizes x the households on the meter; the pro-rating by cycle days and price changes is left out)
    tier_kwh        bigint[] NOT NULL
);

CREATE TABLE bill_company_summary (
    run_id        bigint NOT NULL,
    power_company text NOT NULL,
    city          text NOT NULL,
    bills         bigint NOT NULL,
    billed        bigint NOT NULL,
    held          bigint NOT NULL,
    energy_kwh    bigint NOT NULL,             -- billed customers
    total_vnd     bigint NOT NULL,
    PRIMARY KEY (run_id, power_company)
);

CREATE TABLE bill_distribution (
    run_id  bigint NOT NULL,
    measure text NOT NULL CHECK (measure IN ('total_vnd', 'energy_kwh')),
    bin     smallint NOT NULL,
    low     bigint NOT NULL,                   -- the bin is [low, high)
    high    bigint,                            -- NULL: open-ended
    bills   bigint NOT NULL,                   -- billed customers
    PRIMARY KEY (run_id, measure, bin)
);

CREATE TABLE bill_hold_summary (
    run_id bigint NOT NULL,
    reason text NOT NULL,                      -- a hold reason without its figures ("days not validated")
    bills  bigint NOT NULL,                    -- held customers giving it (a customer can give several)
    PRIMARY KEY (run_id, reason)
);

-- Versions are appended in made_at order: a BRIN index finds the newest ones without reading the others.
CREATE INDEX vee_daily_versions_made_at ON vee_daily_versions USING brin (made_at);

-- The Billing page lists a run's held customers (a few in a hundred) without reading the run's other bills.
CREATE INDEX bills_held ON bills (run_id, meter_id) WHERE status = 'held';

CREATE OR REPLACE FUNCTION refresh_dashboard_aggregates(read_interval interval DEFAULT interval '30 minutes',
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
    -- data quality: the page shows 30 days; a day's margin for a page opened after midnight before the next refresh
    vee_quality_window_days constant integer := 31;
    vee_quality_rotate_days constant integer := 2;   -- re-counted per refresh whatever changed, longest-counted first,
    vee_quality_recount_after constant interval := interval '6 hours';  -- when counted longer ago than this
    q_since timestamptz;
    q_first date;
    q_days date[];
    q_at timestamptz;
    -- billing: the 1-2-5 bins of the distributions (the last bin is open-ended)
    vnd_edges constant bigint[] := '{0, 50000, 100000, 200000, 500000, 1000000, 2000000, 5000000, 10000000, 20000000,
                                     50000000, 100000000}';
    kwh_edges constant bigint[] := '{0, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000, 50000, 100000}';
    b_runs bigint[];
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

    -- data quality of the continuous VEE (sql/080): its current validated days per local day, company and code -----
    t0 := clock_timestamp();
    q_first := today - (vee_quality_window_days - 1);
    DELETE FROM vee_quality_daily WHERE day < q_first OR day > today;
    DELETE FROM vee_quality_days WHERE day < q_first OR day > today;
    -- versions made since an hour before the previous refresh (a transaction's versions carry its start time)
    q_since := (SELECT r.refreshed_at FROM dashboard_refresh r WHERE r.name = 'vee_quality_daily') - interval '1 hour';
    q_days := ARRAY(
        SELECT g.d::date FROM generate_series(q_first::timestamp, today::timestamp, interval '1 day') AS g (d)
        WHERE NOT EXISTS (SELECT 1 FROM vee_quality_days c WHERE c.day = g.d::date)
        UNION
        SELECT v.day FROM vee_daily_versions v
        WHERE v.made_at >= q_since AND v.day BETWEEN q_first AND today AND v.channel_id = 1
        UNION
        (SELECT c.day FROM vee_quality_days c WHERE c.counted_at < as_of - vee_quality_recount_after
         ORDER BY c.counted_at, c.day LIMIT vee_quality_rotate_days)
    );
    DELETE FROM vee_quality_daily WHERE day = ANY(q_days);
    INSERT INTO vee_quality_daily
    SELECT d.day, m.power_company, min(m.city), d.quality, count(*), sum(d.measured_kwh), sum(d.estimated_kwh)
    FROM vee_daily d
    JOIN meters m ON m.meter_id = d.meter_id
    WHERE d.day = ANY(q_days) AND d.channel_id = 1   -- 1.0.1.8.0 active import total (the rates add up to it)
    GROUP BY d.day, m.power_company, d.quality;
    GET DIAGNOSTICS n = ROW_COUNT;
    q_at := clock_timestamp();
    INSERT INTO vee_quality_days (day, counted_at, meter_days)
    SELECT x.day, q_at, coalesce(sum(q.meter_days), 0)
    FROM unnest(q_days) AS x (day)
    LEFT JOIN vee_quality_daily q ON q.day = x.day
    GROUP BY x.day
    ON CONFLICT (day) DO UPDATE SET counted_at = EXCLUDED.counted_at, meter_days = EXCLUDED.meter_days;
    INSERT INTO dashboard_refresh VALUES ('vee_quality_daily', as_of, 1000 * extract(epoch FROM clock_timestamp() - t0), n)
    ON CONFLICT ON CONSTRAINT dashboard_refresh_pkey DO UPDATE
        SET refreshed_at = EXCLUDED.refreshed_at, duration_ms = EXCLUDED.duration_ms, row_count = EXCLUDED.row_count;
    name := 'vee_quality_daily'; row_count := n; duration_ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
    RETURN NEXT;

    -- bill runs: each finished bill run summarised once (a run's bills do not change once it is finished) --------
    t0 := clock_timestamp();
    DELETE FROM bill_run_summary s
    WHERE NOT EXISTS (SELECT 1 FROM billing_runs r WHERE r.run_id = s.run_id AND r.kind = 'bill' AND r.status <> 'running');
    DELETE FROM bill_company_summary s WHERE NOT EXISTS (SELECT 1 FROM bill_run_summary x WHERE x.run_id = s.run_id);
    DELETE FROM bill_distribution s WHERE NOT EXISTS (SELECT 1 FROM bill_run_summary x WHERE x.run_id = s.run_id);
    DELETE FROM bill_hold_summary s WHERE NOT EXISTS (SELECT 1 FROM bill_run_summary x WHERE x.run_id = s.run_id);
    b_runs := ARRAY(
        SELECT r.run_id FROM billing_runs r
        WHERE r.kind = 'bill' AND r.status <> 'running'
          AND NOT EXISTS (SELECT 1 FROM bill_run_summary s WHERE s.run_id = r.run_id)
    );
    INSERT INTO bill_run_summary
    SELECT r.run_id, min(r.period), as_of,
           count(b.meter_id),
           count(*) FILTER (WHERE b.status = 'billed'),
           count(*) FILTER (WHERE b.status = 'held'),
           count(*) FILTER (WHERE b.status = 'no_data'),
           count(*) FILTER (WHERE b.status = 'no_tariff'),
           coalesce(sum(b.energy_kwh) FILTER (WHERE b.status = 'billed'), 0),
           coalesce(sum(b.amount_vnd) FILTER (WHERE b.status = 'billed'), 0),
           coalesce(sum(b.total_vnd) FILTER (WHERE b.status = 'billed'), 0),
           count(*) FILTER (WHERE b.status = 'billed' AND b.tariff_class = 'household'),
           coalesce(sum(b.energy_kwh) FILTER (WHERE b.status = 'billed' AND b.tariff_class = 'household'), 0),
           -- the kWh in each tier: least(greatest(kWh - tier start, 0), tier size), tiers x households on the meter
           ARRAY[
               coalesce(sum(least(greatest(b.energy_kwh, 0), 50 * greatest(b.households, 1)))
                        FILTER (WHERE b.status = 'billed' AND b.tariff_class = 'household'), 0),
               coalesce(sum(least(greatest(b.energy_kwh - 50 * greatest(b.households, 1), 0), 50 * greatest(b.households, 1)))
                        FILTER (WHERE b.status = 'billed' AND b.tariff_class = 'household'), 0),
               coalesce(sum(least(greatest(b.energy_kwh - 100 * greatest(b.households, 1), 0), 100 * greatest(b.households, 1)))
                        FILTER (WHERE b.status = 'billed' AND b.tariff_class = 'household'), 0),
               coalesce(sum(least(greatest(b.energy_kwh - 200 * greatest(b.households, 1), 0), 100 * greatest(b.households, 1)))
                        FILTER (WHERE b.status = 'billed' AND b.tariff_class = 'household'), 0),
               coalesce(sum(least(greatest(b.energy_kwh - 300 * greatest(b.households, 1), 0), 100 * greatest(b.households, 1)))
                        FILTER (WHERE b.status = 'billed' AND b.tariff_class = 'household'), 0),
               coalesce(sum(greatest(b.energy_kwh - 400 * greatest(b.households, 1), 0))
                        FILTER (WHERE b.status = 'billed' AND b.tariff_class = 'household'), 0)
           ]::bigint[]
    FROM billing_runs r
    LEFT JOIN bills b ON b.run_id = r.run_id AND b.bill_kind = 'bill'
    WHERE r.run_id = ANY(b_runs)
    GROUP BY r.run_id;
    GET DIAGNOSTICS n = ROW_COUNT;
    INSERT INTO bill_company_summary
    SELECT b.run_id, b.power_company, min(b.city), count(*),
           count(*) FILTER (WHERE b.status = 'billed'),
           count(*) FILTER (WHERE b.status = 'held'),
           coalesce(sum(b.energy_kwh) FILTER (WHERE b.status = 'billed'), 0),
           coalesce(sum(b.total_vnd) FILTER (WHERE b.status = 'billed'), 0)
    FROM bills b
    WHERE b.run_id = ANY(b_runs) AND b.bill_kind = 'bill'
    GROUP BY b.run_id, b.power_company;
    -- every bin of both measures, empty ones too (the page trims the empty ones at either end)
    INSERT INTO bill_distribution
    SELECT r.run_id, e.measure, e.bin, e.edges[e.bin], e.edges[e.bin + 1], coalesce(x.bills, 0)
    FROM unnest(b_runs) AS r (run_id)
    CROSS JOIN (SELECT 'total_vnd' AS measure, vnd_edges AS edges, generate_subscripts(vnd_edges, 1) AS bin
                UNION ALL
                SELECT 'energy_kwh', kwh_edges, generate_subscripts(kwh_edges, 1)) AS e
    LEFT JOIN (
        SELECT b.run_id, v.measure, greatest(width_bucket(v.value, v.edges), 1) AS bin, count(*) AS bills
        FROM bills b
        CROSS JOIN LATERAL (VALUES ('total_vnd', b.total_vnd, vnd_edges),
                                   ('energy_kwh', b.energy_kwh, kwh_edges)) AS v (measure, value, edges)
        WHERE b.run_id = ANY(b_runs) AND b.bill_kind = 'bill' AND b.status = 'billed'
        GROUP BY 1, 2, 3
    ) x ON x.run_id = r.run_id AND x.measure = e.measure AND x.bin = e.bin;
    -- "3 of 31 days not validated; 42% of intervals estimated" -> "days not validated", "intervals estimated"
    INSERT INTO bill_hold_summary
    SELECT b.run_id,
           coalesce(nullif(btrim(regexp_replace(h.reason, '^[0-9]+%? of ([0-9]+ )?', '')), ''), 'unspecified'),
           count(DISTINCT b.meter_id)
    FROM bills b
    LEFT JOIN LATERAL unnest(string_to_array(b.hold_reasons, '; ')) AS h (reason) ON true
    WHERE b.run_id = ANY(b_runs) AND b.status = 'held'
    GROUP BY 1, 2;
    INSERT INTO dashboard_refresh VALUES ('bill_run_summary', as_of, 1000 * extract(epoch FROM clock_timestamp() - t0), n)
    ON CONFLICT ON CONSTRAINT dashboard_refresh_pkey DO UPDATE
        SET refreshed_at = EXCLUDED.refreshed_at, duration_ms = EXCLUDED.duration_ms, row_count = EXCLUDED.row_count;
    name := 'bill_run_summary'; row_count := n; duration_ms := 1000 * extract(epoch FROM clock_timestamp() - t0);
    RETURN NEXT;
END;
$$;

-- The reader sees the new aggregates; the function keeps its grants (CREATE OR REPLACE, same signature).
GRANT SELECT ON vee_quality_daily, vee_quality_days, bill_run_summary, bill_company_summary, bill_distribution,
    bill_hold_summary TO amr_reader;
