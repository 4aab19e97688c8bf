-- Per meter, per interval (15 min by default): energy from register deltas and power quality.
-- Primary key (meter_id, interval_start): the Flink JDBC sink upserts, so a late reading
-- within the allowed lateness updates its row and replays never add rows.
CREATE TABLE IF NOT EXISTS meter_intervals (
    meter_id         text             NOT NULL,
    interval_start   timestamptz      NOT NULL,
    interval_end     timestamptz      NOT NULL,
    feeder_id        text             NOT NULL,
    region           text             NOT NULL,
    kwh_import       double precision,           -- NULL when no delta can be computed
    kwh_export       double precision,
    voltage_min      double precision,
    voltage_max      double precision,
    voltage_avg      double precision,
    power_factor_avg double precision,
    reading_count    integer          NOT NULL,
    -- complete: the register delta spans exactly this interval; partial: fewer readings than
    -- expected; estimated: the delta was spread over a gap of several intervals.
    quality          text             NOT NULL CHECK (quality IN ('complete', 'partial', 'estimated')),
    rollover         boolean          NOT NULL DEFAULT false,  -- register wrapped at its maximum
    rollback         boolean          NOT NULL DEFAULT false,  -- register went down: flagged, not summed
    updated_at       timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (meter_id, interval_start)
);

CREATE INDEX IF NOT EXISTS meter_intervals_start_brin ON meter_intervals USING brin (interval_start);
CREATE INDEX IF NOT EXISTS meter_intervals_feeder ON meter_intervals (feeder_id, interval_start);
