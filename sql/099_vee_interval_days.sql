-- Profile series' validated intervals by day (docs/vee.md section 2): one row per (meter, channel, local day) with
-- the day's slots as arrays, in place of one row per slot (sql/096_vee_intervals.sql). A city's day is ~12 M slots
-- of 250,000 profile series: written as rows they were a fifth of a VEE pass at 2.5 M meters (24.2 s of 124.5 s),
-- as day rows they are 250,000 rows. `vee_intervals` stays as a view with the rows and columns it had, for readers.
--
-- Slot k (1-based) of a day ends at the day's local midnight + k * interval_s: a day has 86400 / interval_s slots
-- (Vietnam keeps no daylight saving time). A slot with no value (an open gap's tail, a gap beyond estimation.max_s:
-- never written before either) has energy NaN and quality 'N' (AEMO: null data) and is left out of the view.
-- `version` is the vee_daily_versions.version of the day that was current when the day's slots were last written:
-- a pass rewrites the row only when a slot's energy, quality or method changed.
CREATE TABLE vee_interval_days (
    meter_id     integer NOT NULL,
    channel_id   smallint NOT NULL,
    day          date NOT NULL,                 -- local (Asia/Ho_Chi_Minh) day
    interval_s   integer NOT NULL CHECK (interval_s > 0 AND 86400 % interval_s = 0),
    energy_kwh   double precision[] NOT NULL,   -- per slot, after the multiplier [kWh]; NaN: no value
    quality      text NOT NULL CHECK (quality ~ '^[ASEN]+$'),  -- per slot, one AEMO NEM12 flag (see 096)
    method       smallint[] NOT NULL,           -- per slot, AEMO substitution method (14, 17, 24, 25); 0: none
    version      integer NOT NULL CHECK (version >= 1),
    made_at      timestamptz NOT NULL,
    PRIMARY KEY (meter_id, channel_id, day),
    CHECK (cardinality(energy_kwh) = 86400 / interval_s AND length(quality) = 86400 / interval_s
           AND cardinality(method) = 86400 / interval_s)
);
-- ~250,000 rows a day at a city's scale: chunks of a week, as vee_intervals.
SELECT create_hypertable('vee_interval_days', 'day', chunk_time_interval => interval '7 days',
                         create_default_indexes => false);

-- The slots already written, day by day (a series' interval: the shortest step between its slots).
INSERT INTO vee_interval_days (meter_id, channel_id, day, interval_s, energy_kwh, quality, method, version, made_at)
WITH steps AS (
    SELECT meter_id, channel_id,
           interval_end - lag(interval_end) OVER (PARTITION BY meter_id, channel_id ORDER BY interval_end) AS step
    FROM vee_intervals
), series AS (
    SELECT meter_id, channel_id, coalesce(extract(epoch FROM min(step))::integer, 1800) AS interval_s
    FROM steps GROUP BY meter_id, channel_id
), slots AS (
    SELECT v.*, s.interval_s, ((v.interval_end - interval '1 second') AT TIME ZONE 'Asia/Ho_Chi_Minh')::date AS day
    FROM vee_intervals v JOIN series s USING (meter_id, channel_id)
    WHERE 86400 % s.interval_s = 0
), days AS (
    SELECT meter_id, channel_id, day, interval_s, max(version) AS version, max(made_at) AS made_at
    FROM slots GROUP BY meter_id, channel_id, day, interval_s
)
SELECT d.meter_id, d.channel_id, d.day, d.interval_s,
       array_agg(coalesce(s.energy_kwh, 'NaN') ORDER BY k), string_agg(coalesce(s.quality, 'N'), '' ORDER BY k),
       array_agg(coalesce(s.method, 0) ORDER BY k), d.version, d.made_at
FROM days d
CROSS JOIN LATERAL generate_series(1, 86400 / d.interval_s) AS k
LEFT JOIN slots s ON s.meter_id = d.meter_id AND s.channel_id = d.channel_id
    AND s.interval_end = (d.day::timestamp AT TIME ZONE 'Asia/Ho_Chi_Minh') + make_interval(secs => k * d.interval_s)
GROUP BY d.meter_id, d.channel_id, d.day, d.interval_s, d.version, d.made_at;

DROP TABLE vee_intervals;

-- The slots as rows (those with a value), as sql/096_vee_intervals.sql had them.
CREATE VIEW vee_intervals AS
SELECT d.meter_id, d.channel_id,
       (d.day::timestamp AT TIME ZONE 'Asia/Ho_Chi_Minh') + make_interval(secs => s.k * d.interval_s) AS interval_end,
       s.energy_kwh, s.quality::char(1) AS quality, nullif(s.method, 0) AS method, d.version, d.made_at
FROM vee_interval_days d
CROSS JOIN LATERAL unnest(d.energy_kwh, string_to_array(d.quality, NULL), d.method)
    WITH ORDINALITY AS s (energy_kwh, quality, method, k)
WHERE s.quality <> 'N';

GRANT SELECT, INSERT, UPDATE, DELETE ON vee_interval_days TO amr_billing;
GRANT SELECT ON vee_interval_days TO amr_reader;
GRANT SELECT ON vee_intervals TO amr_billing, amr_reader;
