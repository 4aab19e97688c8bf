-- Validated readings as they arrived: one row per meter and event time. The primary key
-- makes the Flink JDBC sink an upsert, so a replayed or restarted job never adds rows.
CREATE TABLE IF NOT EXISTS meter_readings (
    meter_id        text             NOT NULL,
    ts              timestamptz      NOT NULL,
    seq             bigint,
    kwh_import      double precision NOT NULL,
    kwh_export      double precision,
    voltage_v       double precision,
    current_a       double precision,
    power_factor    double precision,
    frequency_hz    double precision,
    status          jsonb,           -- array of event codes, e.g. ["POWER_FAIL"]
    kafka_partition integer,
    kafka_offset    bigint,
    PRIMARY KEY (meter_id, ts)
);

-- Time-range scans over an append-mostly table: a BRIN index is tiny and fast.
CREATE INDEX IF NOT EXISTS meter_readings_ts_brin ON meter_readings USING brin (ts);
