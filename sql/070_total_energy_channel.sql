-- Catalogue channel 1.0.15.8.0 (IEC 62056-61 / OBIS: active energy, absolute |+A| + |-A|, total), mirrored in
-- amr/obis.py. Eastron meters show it as "Total kWh" (input register 0x0156); for a consumer without export it
-- equals the import total 1.0.1.8.0. Id 9 was free between the maximum demand (8) and the voltages (10).
INSERT INTO channels (channel_id, obis, name, unit, kind) VALUES
    (9, '1.0.15.8.0.255', 'active_total_absolute', 'kWh', 'cumulative');
