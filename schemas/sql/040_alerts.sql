-- Current state of every alert, one row per alert_id (deterministic: a replayed anomaly
-- maps to the same row). OPEN then CLEARED; the Kafka topic meter.alerts carries both events.
CREATE TABLE IF NOT EXISTS alerts (
    alert_id     text             PRIMARY KEY,
    meter_id     text,                         -- NULL for feeder-level alerts
    feeder_id    text             NOT NULL,
    region       text             NOT NULL,
    type         text             NOT NULL,
    severity     text             NOT NULL CHECK (severity IN ('CRITICAL', 'MAJOR', 'MINOR')),
    state        text             NOT NULL CHECK (state IN ('OPEN', 'CLEARED')),
    opened_ts    timestamptz      NOT NULL,    -- event time of the reading that opened it
    cleared_ts   timestamptz,                  -- event time of the reading that cleared it
    detected_ts  timestamptz      NOT NULL,    -- wall clock at the latest state change
    value        double precision,
    threshold    double precision,
    message      text             NOT NULL,
    updated_at   timestamptz      NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS alerts_open ON alerts (type, severity) WHERE state = 'OPEN';
CREATE INDEX IF NOT EXISTS alerts_opened_brin ON alerts USING brin (opened_ts);
