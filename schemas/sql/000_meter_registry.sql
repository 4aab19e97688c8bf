-- Meter metadata, loaded from CSV by `python -m tools.registry load <file>` (upsert on meter_id).
-- Jobs enrich readings from it; a meter missing here is processed with region and feeder
-- 'unknown' and the configured default nominal voltage.
CREATE TABLE IF NOT EXISTS meter_registry (
    meter_id          text             PRIMARY KEY,
    feeder_id         text             NOT NULL,
    region            text             NOT NULL,
    nominal_voltage_v double precision NOT NULL CHECK (nominal_voltage_v > 0),
    has_generation    boolean          NOT NULL DEFAULT false,
    service_limit_kw  double precision CHECK (service_limit_kw > 0),
    interval_minutes  integer          NOT NULL DEFAULT 15 CHECK (interval_minutes > 0),
    customer_class    text,
    register_max_kwh  double precision CHECK (register_max_kwh > 0),
    -- Anything else the utility knows about the meter (location, tariff, firmware ...).
    attributes        jsonb            NOT NULL DEFAULT '{}'::jsonb,
    updated_at        timestamptz      NOT NULL DEFAULT now()
);

CREATE INDEX IF NOT EXISTS meter_registry_feeder ON meter_registry (feeder_id);
CREATE INDEX IF NOT EXISTS meter_registry_region ON meter_registry (region);

-- Meters registered per feeder and per region, for "meters reporting against registered".
CREATE OR REPLACE VIEW feeder_meter_counts AS
    SELECT feeder_id, count(*)::integer AS meters FROM meter_registry GROUP BY feeder_id;
CREATE OR REPLACE VIEW region_meter_counts AS
    SELECT region, count(*)::integer AS meters FROM meter_registry GROUP BY region;
