"""Aggregate job: per-meter energy intervals and feeder / region load, in event time.

    python -m jobs.aggregate --config conf/local.yaml

Readings pass the shared ingestion stage (validation, dead letters, registry enrichment), then
everything per record runs in Flink SQL (no Python after the validator):

1. Late split. The watermark trails the newest event time by the out-of-orderness plus the
   allowed lateness, so a reading within the allowed lateness is on time for every operator
   below; one behind the watermark goes to meter.readings.late (counted, never dropped).
2. Per meter, in event-time order (an OVER window): the previous reading, hence register
   deltas. A second copy of a (meter, ts) is dropped here. A drop in a register near its
   maximum is a rollover (the delta wraps); any other drop is a rollback (flagged, not summed).
   A delta spanning k > 1 intervals is spread evenly over them (quality 'estimated').
3. Intervals: a tumbling window per meter; a reading at exactly an interval's end belongs to
   that interval (`ts` is the end of the measured interval), hence the 1 ms window offset.
4. Feeder and region load per period from the interval rows: energy, peak and average
   demand, meters reporting against meters registered.

Every sink is an upsert on its primary key, so replays and restarts never add rows. The
optional Parquet cold storage (aggregate.parquet) gets the same interval rows, partitioned
dt=YYYY-MM-DD/region=...; it is append-only, committed with each checkpoint, so a replay
rewrites files rather than updating them: point a replay at a fresh path.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from jobs.cli import parse_job_args
from jobs.config import ConfigError, JobConfig, load_config, with_flink_options
from jobs.connectors import create_table_ddl, jdbc_table_options, kafka_table_options
from jobs.ingestion import (
    READINGS_SOURCE,
    dead_letter_sink_ddl,
    interval_sql,
    readings_source_ddl,
    register_enrichment,
    register_validation,
    registered_counts_ddl,
    registry_lookup_ddl,
)
from jobs.job_metrics import count_records
from jobs.preflight import PreflightError, check_services
from jobs.runtime import SetupError, connector_jars, create_table_env, execute, format_jars

JOB_NAME = "gridstream-aggregate"

INTERVAL_COLUMNS = (
    "meter_id STRING", "interval_start TIMESTAMP(3)", "interval_end TIMESTAMP(3)",
    "feeder_id STRING", "region STRING", "kwh_import DOUBLE", "kwh_export DOUBLE",
    "voltage_min DOUBLE", "voltage_max DOUBLE", "voltage_avg DOUBLE", "power_factor_avg DOUBLE",
    "reading_count INT", "quality STRING", "`rollover` BOOLEAN", "`rollback` BOOLEAN",
    "PRIMARY KEY (meter_id, interval_start) NOT ENFORCED",
)
LOAD_COLUMNS = (
    "period_start TIMESTAMP(3)", "period_end TIMESTAMP(3)", "kwh_import DOUBLE",
    "kwh_export DOUBLE", "peak_kw DOUBLE", "avg_kw DOUBLE", "meters_reporting INT",
    "meters_registered INT",
)


@dataclass(frozen=True)
class AggregateSinks:
    intervals: str
    feeder_load: str
    region_load: str
    late: str
    dead_letters: str
    cold_storage: str | None = None


def register_aggregation(t_env, readings: str, config: JobConfig) -> dict[str, str]:
    """Views over enriched `readings`: intervals, feeder_load, region_load and late readings.
    Returns their names by role."""
    agg = config.aggregate
    interval_ms, period_ms = int(agg.interval), int(agg.load_period)
    if period_ms % interval_ms:
        raise ConfigError(f"aggregate.load_period ({period_ms} ms) must be a whole number of "
                          f"aggregate.interval ({interval_ms} ms)")
    # Until the first watermark CURRENT_WATERMARK is NULL: nothing can be late yet.
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW agg_input AS
        SELECT *, CURRENT_WATERMARK(event_time) AS watermark_time FROM `{readings}`""")
    t_env.execute_sql("""
        CREATE TEMPORARY VIEW agg_late AS
        SELECT * FROM agg_input WHERE watermark_time IS NOT NULL AND event_time <= watermark_time
    """)
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW agg_ordered AS
        SELECT meter_id, feeder_id, region, event_time, ts_ms, kwh_import, kwh_export,
               voltage_v, power_factor,
               COALESCE(register_max_kwh, CAST({agg.default_register_max_kwh} AS DOUBLE))
                 AS register_max,
               CASE WHEN COUNT(*) OVER w = 2 THEN FIRST_VALUE(ts_ms) OVER w END AS prev_ts,
               CASE WHEN COUNT(*) OVER w = 2 THEN FIRST_VALUE(kwh_import) OVER w END
                 AS prev_import,
               CASE WHEN COUNT(*) OVER w = 2 THEN FIRST_VALUE(kwh_export) OVER w END
                 AS prev_export
        FROM agg_input
        WHERE watermark_time IS NULL OR event_time > watermark_time
        -- The previous reading is the first of a two-row frame. ROWS, not RANGE (nor LAG,
        -- which is RANGE): rows with the same time, duplicates, must see each other as
        -- previous rows rather than share one frame.
        WINDOW w AS (PARTITION BY meter_id ORDER BY event_time
                     ROWS BETWEEN 1 PRECEDING AND CURRENT ROW)""")
    # Interval index of a reading: the interval it ends, (ts - 1 ms) div interval.
    delta = _register_delta_sql
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW agg_deltas AS
        SELECT *,
               CASE WHEN k BETWEEN 1 AND {agg.max_gap_intervals} THEN import_delta / k
                    WHEN k = 0 THEN import_delta END AS import_share,
               CASE WHEN k BETWEEN 1 AND {agg.max_gap_intervals} THEN export_delta / k
                    WHEN k = 0 THEN export_delta END AS export_share
        FROM (
          SELECT meter_id, feeder_id, region, event_time, voltage_v, power_factor,
                 (ts_ms - 1) / {interval_ms} AS interval_idx,
                 (prev_ts - 1) / {interval_ms} AS prev_idx,
                 (ts_ms - 1) / {interval_ms} - (prev_ts - 1) / {interval_ms} AS k,
                 {delta("kwh_import", "prev_import")} AS import_delta,
                 {delta("kwh_export", "prev_export")} AS export_delta,
                 {_rollover_sql("kwh_import", "prev_import")} AS `rollover`,
                 prev_import IS NOT NULL AND kwh_import < prev_import
                   AND NOT {_rollover_sql("kwh_import", "prev_import")} AS `rollback`
          FROM agg_ordered
          -- the same (meter, ts) again: a duplicate, already counted
          WHERE prev_ts IS NULL OR ts_ms > prev_ts)""")
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW agg_reading_intervals AS
        SELECT meter_id,
               MIN(interval_idx) AS interval_idx,
               LAST_VALUE(feeder_id) AS feeder_id, LAST_VALUE(region) AS region,
               SUM(import_share) AS kwh_import, SUM(export_share) AS kwh_export,
               MIN(voltage_v) AS voltage_min, MAX(voltage_v) AS voltage_max,
               AVG(voltage_v) AS voltage_avg, AVG(power_factor) AS power_factor_avg,
               CAST(COUNT(*) AS INT) AS reading_count,
               CASE WHEN MAX(CASE WHEN import_share IS NULL THEN 1 ELSE 0 END) = 1
                      THEN 'partial'
                    WHEN MAX(CASE WHEN k > 1 THEN 1 ELSE 0 END) = 1 THEN 'estimated'
                    ELSE 'complete' END AS quality,
               MAX(CASE WHEN `rollover` THEN 1 ELSE 0 END) = 1 AS `rollover`,
               MAX(CASE WHEN `rollback` THEN 1 ELSE 0 END) = 1 AS `rollback`
        FROM TABLE(TUMBLE(TABLE agg_deltas, DESCRIPTOR(event_time),
                          {interval_sql(interval_ms)}, {interval_sql(1)}))
        GROUP BY meter_id, window_start, window_end""")
    # Intervals inside a gap have no reading: each gets its share of the delta that spans it.
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW agg_gap_intervals AS
        SELECT meter_id, prev_idx + CAST(i AS BIGINT) AS interval_idx, feeder_id, region,
               import_share AS kwh_import, export_share AS kwh_export,
               CAST(NULL AS DOUBLE) AS voltage_min, CAST(NULL AS DOUBLE) AS voltage_max,
               CAST(NULL AS DOUBLE) AS voltage_avg, CAST(NULL AS DOUBLE) AS power_factor_avg,
               0 AS reading_count, 'estimated' AS quality, FALSE AS `rollover`,
               FALSE AS `rollback`
        FROM agg_deltas
        CROSS JOIN UNNEST(SPLIT(CONCAT('x', REPEAT(',x', CAST(k - 2 AS INT))), ','))
          WITH ORDINALITY AS gap(marker, i)
        WHERE k BETWEEN 2 AND {agg.max_gap_intervals} AND import_share IS NOT NULL""")
    intervals = t_env.sql_query(f"""
        SELECT meter_id, interval_idx,
               TO_TIMESTAMP_LTZ(interval_idx * {interval_ms}, 3) AS interval_start,
               TO_TIMESTAMP_LTZ((interval_idx + 1) * {interval_ms}, 3) AS interval_end,
               interval_idx * {interval_ms} / {period_ms} AS period_idx,
               feeder_id, region, kwh_import, kwh_export, voltage_min, voltage_max,
               voltage_avg, power_factor_avg, reading_count, quality, `rollover`, `rollback`
        FROM (SELECT * FROM agg_reading_intervals UNION ALL SELECT * FROM agg_gap_intervals)""")
    # Materialised once: otherwise each consumer (sink, feeder and region load) would get its
    # own copy of the window aggregation, with its own state.
    t_env.create_temporary_view("agg_intervals",
                                t_env.from_data_stream(t_env.to_data_stream(intervals)))
    # The load sinks' keys follow the group-by keys; no upsert materializer (and its unbounded
    # state) is needed in front of them.
    t_env.get_config().set("table.exec.sink.upsert-materialize", "NONE")
    # No table.exec.mini-batch here, though it makes the load aggregation ~2.7x faster: its
    # processing-time MiniBatchAssigner goes in after every source and swallows the event-time
    # watermarks, so the late split and the interval windows would stop seeing event time.
    views = {"intervals": "agg_intervals", "late": "agg_late"}
    for level, keys in (("feeder", "feeder_id, region"), ("region", "region")):
        views[f"{level}_load"] = _register_load(t_env, level, keys, interval_ms, period_ms,
                                                config)
    return views


def _rollover_sql(register: str, previous: str) -> str:
    # A drop from the top tenth of the register's range into its bottom tenth is a wrap.
    return (f"({previous} IS NOT NULL AND {register} < {previous} "
            f"AND {previous} >= 0.9 * register_max AND {register} <= 0.1 * register_max)")


def _register_delta_sql(register: str, previous: str) -> str:
    return (f"CASE WHEN {previous} IS NULL OR {register} IS NULL THEN CAST(NULL AS DOUBLE) "
            f"WHEN {register} >= {previous} THEN {register} - {previous} "
            f"WHEN {_rollover_sql(register, previous)} "
            f"THEN register_max - {previous} + {register} END")


def _register_load(t_env, level: str, keys: str, interval_ms: int, period_ms: int,
                   config: JobConfig) -> str:
    """Load per `level` (feeder or region) and period. The group-by state for a period is
    kept as long as an interval row can still change it (TTL)."""
    ttl = f"{int(config.aggregate.allowed_lateness) + 2 * period_ms} ms"
    hours = {"interval": interval_ms / 3_600_000, "period": period_ms / 3_600_000}
    key_cols = [k.strip() for k in keys.split(",")]
    key = key_cols[0]
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW {level}_interval_energy AS
        SELECT /*+ STATE_TTL('agg_intervals' = '{ttl}') */
               {keys}, period_idx, interval_idx,
               SUM(COALESCE(kwh_import, 0)) AS kwh_import,
               SUM(COALESCE(kwh_export, 0)) AS kwh_export
        FROM agg_intervals GROUP BY {keys}, period_idx, interval_idx""")
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW {level}_period_energy AS
        SELECT /*+ STATE_TTL('{level}_interval_energy' = '{ttl}') */
               {keys}, period_idx, SUM(kwh_import) AS kwh_import, SUM(kwh_export) AS kwh_export,
               MAX(kwh_import) / {hours["interval"]} AS peak_kw,
               SUM(kwh_import) / {hours["period"]} AS avg_kw
        FROM {level}_interval_energy GROUP BY {keys}, period_idx""")
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW {level}_period_meters AS
        SELECT /*+ STATE_TTL('agg_intervals' = '{ttl}') */
               {key}, period_idx,
               CAST(COUNT(DISTINCT meter_id) AS INT) AS meters_reporting
        FROM agg_intervals WHERE reading_count > 0 GROUP BY {key}, period_idx""")
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW {level}_load AS
        SELECT /*+ STATE_TTL('e' = '{ttl}', 'm' = '{ttl}') */
               {", ".join(f"e.{c}" for c in key_cols)},
               TO_TIMESTAMP_LTZ(e.period_idx * {period_ms}, 3) AS period_start,
               TO_TIMESTAMP_LTZ((e.period_idx + 1) * {period_ms}, 3) AS period_end,
               e.kwh_import, e.kwh_export, e.peak_kw, e.avg_kw,
               COALESCE(m.meters_reporting, 0) AS meters_reporting
        FROM {level}_period_energy AS e
        LEFT JOIN {level}_period_meters AS m
          ON e.{key} = m.{key} AND e.period_idx = m.period_idx""")
    return f"{level}_load"


def watermark_delay_ms(config: JobConfig) -> int:
    """The readings source's watermark delay for this job: out-of-orderness plus the allowed
    lateness, so that no operator drops a reading the late split let through."""
    return int(config.event_time.max_out_of_orderness) + int(config.aggregate.allowed_lateness)


def build_pipeline(t_env, source: str, sinks: AggregateSinks, config: JobConfig):
    """Intervals and load from `source` (raw readings declared with watermark_delay_ms) into
    the sinks. Returns the StatementSet; the caller executes it."""
    valid, dead_letters = register_validation(t_env, source, config)
    views = register_aggregation(t_env, register_enrichment(t_env, valid, config), config)
    statements = t_env.create_statement_set()
    statements.add_insert_sql(f"""
        INSERT INTO `{sinks.intervals}`
        SELECT meter_id, CAST(interval_start AS TIMESTAMP(3)), CAST(interval_end AS TIMESTAMP(3)),
               feeder_id, region, kwh_import, kwh_export, voltage_min, voltage_max, voltage_avg,
               power_factor_avg, reading_count, quality, `rollover`, `rollback`
        FROM `{views["intervals"]}`""")
    for level, sink in (("feeder", sinks.feeder_load), ("region", sinks.region_load)):
        key = "feeder_id" if level == "feeder" else "region"
        keys = "l.feeder_id, l.region" if level == "feeder" else "l.region"
        statements.add_insert_sql(f"""
            INSERT INTO `{sink}`
            SELECT {keys}, CAST(l.period_start AS TIMESTAMP(3)),
                   CAST(l.period_end AS TIMESTAMP(3)), l.kwh_import, l.kwh_export, l.peak_kw,
                   l.avg_kw, l.meters_reporting, COALESCE(c.meters, 0)
            FROM (SELECT *, PROCTIME() AS proc_time FROM `{views[f"{level}_load"]}`) AS l
            LEFT JOIN {level}_meter_counts FOR SYSTEM_TIME AS OF l.proc_time AS c
              ON l.{key} = c.{key}""")
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW agg_late_records AS
        SELECT meter_id AS `key`, JSON_OBJECT(
                 KEY 'meter_id' VALUE meter_id, KEY 'ts' VALUE ts_ms,
                 KEY 'kwh_import' VALUE kwh_import, KEY 'kwh_export' VALUE kwh_export,
                 KEY 'voltage_v' VALUE voltage_v, KEY 'current_a' VALUE current_a,
                 KEY 'power_factor' VALUE power_factor, KEY 'frequency_hz' VALUE frequency_hz,
                 KEY 'seq' VALUE seq, KEY 'kafka_partition' VALUE kafka_partition,
                 KEY 'kafka_offset' VALUE kafka_offset,
                 KEY 'watermark_ts' VALUE CAST(watermark_time AS STRING),
                 KEY 'reason' VALUE 'behind the watermark by more than the allowed lateness'
                 ABSENT ON NULL) AS `value`
        FROM `{views["late"]}`""")
    late = count_records(t_env, "agg_late_records", "agg_late_counted", "late_readings")
    statements.add_insert_sql(f"INSERT INTO `{sinks.late}` SELECT * FROM `{late}`")
    statements.add_insert_sql(f"INSERT INTO `{sinks.dead_letters}` SELECT * FROM `{dead_letters}`")
    if sinks.cold_storage:
        statements.add_insert_sql(f"""
            INSERT INTO `{sinks.cold_storage}`
            SELECT meter_id, CAST(interval_start AS TIMESTAMP(3)),
                   CAST(interval_end AS TIMESTAMP(3)), feeder_id, kwh_import, kwh_export,
                   voltage_min, voltage_max, voltage_avg, power_factor_avg, reading_count,
                   quality, `rollover`, `rollback`,
                   DATE_FORMAT(interval_start, 'yyyy-MM-dd'), region
            FROM `{views["intervals"]}`""")
    return statements


def cold_storage_ddl(config: JobConfig, name: str = "intervals_parquet") -> str:
    parquet = config.aggregate.parquet
    columns = [c for c in INTERVAL_COLUMNS if not c.startswith(("PRIMARY", "region"))]
    return create_table_ddl(name, [*columns, "dt STRING", "region STRING"], {
        "connector": "filesystem",
        "path": parquet.path,
        "format": "parquet",
        # Timestamps are UTC instants; without this the writer shifts them to the JVM's zone.
        "parquet.utc-timezone": "true",
        "sink.rolling-policy.rollover-interval": f"{int(parquet.rolling_interval)} ms",
        "sink.partition-commit.policy.kind": "success-file",
    }, partitioned_by=("dt", "region"))


def declare_sinks(t_env, config: JobConfig) -> AggregateSinks:
    t_env.execute_sql(create_table_ddl("intervals_store", INTERVAL_COLUMNS,
                                       jdbc_table_options(config, "meter_intervals")))
    t_env.execute_sql(create_table_ddl(
        "feeder_load_store",
        ["feeder_id STRING", "region STRING", *LOAD_COLUMNS,
         "PRIMARY KEY (feeder_id, period_start) NOT ENFORCED"],
        jdbc_table_options(config, "feeder_load")))
    t_env.execute_sql(create_table_ddl(
        "region_load_store",
        ["region STRING", *LOAD_COLUMNS, "PRIMARY KEY (region, period_start) NOT ENFORCED"],
        jdbc_table_options(config, "region_load")))
    late = kafka_table_options(config.kafka, config.topics.late.name)
    late.update({"key.format": "raw", "key.fields": "key", "value.format": "raw",
                 "value.fields-include": "EXCEPT_KEY", "sink.delivery-guarantee": "at-least-once"})
    t_env.execute_sql(create_table_ddl("late_readings", ["`key` STRING", "`value` STRING"], late))
    t_env.execute_sql(dead_letter_sink_ddl(config))
    t_env.execute_sql(registry_lookup_ddl(config))
    for level in ("feeder", "region"):
        t_env.execute_sql(registered_counts_ddl(config, level))
    cold_storage = None
    if config.aggregate.parquet.enabled:
        cold_storage = "intervals_parquet"
        t_env.execute_sql(cold_storage_ddl(config, cold_storage))
    return AggregateSinks("intervals_store", "feeder_load_store", "region_load_store",
                          "late_readings", "dead_letters", cold_storage)


def main(argv: list[str] | None = None) -> int:
    args = parse_job_args("aggregate", __doc__.split("\n")[0], argv)
    try:
        config = with_flink_options(load_config(args.config), args.flink_options)
        connector_jars()
        check_services(config, args.config)
        t_env = create_table_env(config, JOB_NAME, extra_jars=(
            format_jars("parquet") if config.aggregate.parquet.enabled else ()))
        group_id = args.group_id or f"{config.kafka.group_id}-aggregate"
        t_env.execute_sql(readings_source_ddl(config, bounded=args.bounded, group_id=group_id,
                                              watermark_delay_ms=watermark_delay_ms(config)))
        statements = build_pipeline(t_env, READINGS_SOURCE, declare_sinks(t_env, config), config)
    except (ConfigError, SetupError, PreflightError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    execute(statements)
    return 0


if __name__ == "__main__":
    sys.exit(main())
