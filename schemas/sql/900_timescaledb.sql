-- TimescaleDB when the server has it (detected, not assumed): the time-series tables become
-- hypertables partitioned on their time column. Without it they stay plain tables with the
-- BRIN indexes above. Every primary key includes the time column, as hypertables require.
DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb')
       AND current_setting('shared_preload_libraries') LIKE '%timescaledb%' THEN
        CREATE EXTENSION IF NOT EXISTS timescaledb;
        PERFORM create_hypertable('meter_readings', 'ts',
                                  chunk_time_interval => interval '1 day',
                                  if_not_exists => true, migrate_data => true);
        PERFORM create_hypertable('meter_intervals', 'interval_start',
                                  chunk_time_interval => interval '7 days',
                                  if_not_exists => true, migrate_data => true);
        PERFORM create_hypertable('feeder_load', 'period_start',
                                  chunk_time_interval => interval '30 days',
                                  if_not_exists => true, migrate_data => true);
        PERFORM create_hypertable('region_load', 'period_start',
                                  chunk_time_interval => interval '30 days',
                                  if_not_exists => true, migrate_data => true);
        RAISE NOTICE 'timescaledb: time-series tables are hypertables';
    ELSE
        RAISE NOTICE 'timescaledb: not available; plain tables with BRIN time indexes';
    END IF;
END
$$;
