-- Hourly (configurable) load per feeder and per region, from the per-meter intervals.
CREATE TABLE IF NOT EXISTS feeder_load (
    feeder_id          text             NOT NULL,
    region             text             NOT NULL,
    period_start       timestamptz      NOT NULL,
    period_end         timestamptz      NOT NULL,
    kwh_import         double precision NOT NULL,
    kwh_export         double precision NOT NULL,
    peak_kw            double precision,          -- highest interval demand within the period
    avg_kw             double precision,
    meters_reporting   integer          NOT NULL,
    meters_registered  integer          NOT NULL,
    updated_at         timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (feeder_id, period_start)
);

CREATE TABLE IF NOT EXISTS region_load (
    region             text             NOT NULL,
    period_start       timestamptz      NOT NULL,
    period_end         timestamptz      NOT NULL,
    kwh_import         double precision NOT NULL,
    kwh_export         double precision NOT NULL,
    peak_kw            double precision,
    avg_kw             double precision,
    meters_reporting   integer          NOT NULL,
    meters_registered  integer          NOT NULL,
    updated_at         timestamptz      NOT NULL DEFAULT now(),
    PRIMARY KEY (region, period_start)
);

CREATE INDEX IF NOT EXISTS feeder_load_start_brin ON feeder_load USING brin (period_start);
CREATE INDEX IF NOT EXISTS region_load_start_brin ON region_load USING brin (period_start);
