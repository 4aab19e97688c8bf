"""The ingestion stage every job shares: meter.readings from Kafka, validated, with event time.

The source keeps the payload raw so that a dead letter carries it intact and generates the
watermark per Kafka partition. The validator (udfs.reading_parser) splits the stream into
valid readings, with its event time, and dead letters for meter.readings.dlq.
"""

from __future__ import annotations

from jobs.config import JobConfig
from jobs.connectors import create_table_ddl, jdbc_table_options, kafka_table_options
from jobs.job_metrics import count_records

READINGS_SOURCE = "readings_raw"

def interval_sql(milliseconds: int) -> str:
    """A SQL interval literal of any length (a plain SECOND literal allows only 2 digits)."""
    seconds, millis = divmod(int(milliseconds), 1000)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return (f"INTERVAL '{days} {hours:02d}:{minutes:02d}:{seconds:02d}.{millis:03d}' "
            f"DAY TO SECOND(3)")


# The watermark is generated inside the Kafka source, per partition, so that partitions read
# at different speeds (a catch-up) do not make each other's readings late, and an idle
# partition is marked idle instead of holding everyone back. It needs the event time before
# the validator has run: `source_time` reads `ts` in SQL (integer epoch ms or RFC 3339 with an
# offset, as udfs/reading_parser.py does); rows then carry the validator's own time, and
# source_time serves the watermark only.
# The `ts` token by plain string functions over the raw payload: what follows the first "ts"
# key up to the next quote, comma or brace. JSON_VALUE parses the whole document on every call,
# and Flink's REGEXP_EXTRACT compiles its pattern on every call: with the token read by one,
# the watermark column was a tenth of the detect job's JVM time (profiled). The generated code
# evaluates the token several times, so it looks only at the 48 characters after the key (an
# RFC 3339 time with microseconds and an offset takes 32). Whitespace around the colon may be
# spaces, not tabs or line breaks, and a nested object with its own "ts" key could mislead the
# watermark; neither ever changes a reading's time, which is the validator's.
_TS = """RTRIM(SPLIT_INDEX(SPLIT_INDEX(SPLIT_INDEX(
      TRIM(LEADING ' :"' FROM SUBSTRING(`value` FROM POSITION('"ts"' IN `value`) + 4 FOR 48)),
      '"', 0), ',', 0), '}', 0))"""
_ZONE = r"'(Z|[+-][0-9]{2}:[0-9]{2})$'"
_FRACTION = r"'^.{19}[.]([0-9]+)'"
# Integer epoch ms first (the common form: no regular expression), RFC 3339 otherwise.
_PARSED_TS = f"""CASE WHEN POSITION('"ts"' IN `value`) = 0 THEN CAST(NULL AS TIMESTAMP_LTZ(3))
      WHEN TRY_CAST({_TS} AS BIGINT) IS NOT NULL
      THEN TO_TIMESTAMP_LTZ(TRY_CAST({_TS} AS BIGINT), 3)
      ELSE TO_TIMESTAMP_LTZ(
        UNIX_TIMESTAMP(CONCAT(SUBSTRING({_TS}, 1, 19), REGEXP_EXTRACT({_TS}, {_ZONE}, 1)),
                       'yyyy-MM-dd''T''HH:mm:ssXXX') * 1000
        + COALESCE(CAST(RPAD(SUBSTRING(REGEXP_EXTRACT({_TS}, {_FRACTION}, 1), 1, 3), 3, '0')
                        AS INT), 0), 3) END"""


def source_time_sql(skew_ms: int) -> str:
    """`ts` as read in SQL, NULL when dated beyond the allowed skew after its arrival (the
    validator dead-letters those; a NULL never moves the watermark). LEAST/NULLIF rather than
    a CASE, which would parse `ts` twice."""
    limit = f"`kafka_ts` + {interval_sql(skew_ms)}"
    return f"NULLIF(LEAST({_PARSED_TS}, {limit}), {limit})"


def readings_source_ddl(config: JobConfig, *, name: str = READINGS_SOURCE,
                        bounded: bool = False, group_id: str | None = None,
                        watermark_delay_ms: int | None = None) -> str:
    """DDL of the raw readings source. `bounded` stops at the offsets current at start-up:
    used by tests and catch-up benchmarks so that a job ends once it has read a preloaded
    topic. The watermark trails the newest event time by `watermark_delay_ms` (default: the
    configured out-of-orderness); a reading dated beyond the allowed clock skew after its
    arrival (dead-lettered by the validator) never moves it."""
    delay = (int(config.event_time.max_out_of_orderness) if watermark_delay_ms is None
             else watermark_delay_ms)
    skew = int(config.ingestion.max_future_skew)
    columns = [
        "`key` STRING",
        "`value` STRING",
        "`kafka_topic` STRING METADATA FROM 'topic' VIRTUAL",
        "`kafka_partition` INT METADATA FROM 'partition' VIRTUAL",
        "`kafka_offset` BIGINT METADATA FROM 'offset' VIRTUAL",
        "`kafka_ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL",
        f"`source_time` AS {source_time_sql(skew)}",
        f"WATERMARK FOR `source_time` AS `source_time` - {interval_sql(delay)}",
    ]
    options = kafka_table_options(config.kafka, config.topics.readings.name)
    options.update({
        "properties.group.id": group_id or config.kafka.group_id,
        "scan.startup.mode": config.kafka.startup_mode,
        "key.format": "raw",
        "key.fields": "key",
        "value.format": "raw",
        "value.fields-include": "EXCEPT_KEY",
        "scan.watermark.idle-timeout": f"{int(config.event_time.idle_timeout)} ms",
        "scan.watermark.emit.strategy": config.event_time.watermark_emission,
    })
    if config.kafka.startup_mode == "group-offsets":
        # A first run of a new consumer group starts from the beginning of the topic.
        options["properties.auto.offset.reset"] = "earliest"
    if bounded:
        options["scan.bounded.mode"] = "latest-offset"
    return create_table_ddl(name, columns, options)


# --------------------------------------------------------------------------- validation

# The validator's verdict as a SQL row; `error` is NULL for a valid reading.
PARSED_FIELDS = (
    ("error", "STRING"),
    ("meter_id", "STRING"),
    ("ts_ms", "BIGINT"),
    ("seq", "BIGINT"),
    ("kwh_import", "DOUBLE"),
    ("kwh_export", "DOUBLE"),
    ("voltage_v", "DOUBLE"),
    ("current_a", "DOUBLE"),
    ("power_factor", "DOUBLE"),
    ("frequency_hz", "DOUBLE"),
    ("status", "ARRAY<STRING>"),
    ("received_ms", "BIGINT"),
)


def parse_reading_function(max_future_skew_ms: int):
    """The reading validator (udfs.reading_parser) as a Flink scalar function returning a ROW."""
    import calendar

    from pyflink.common import Row
    from pyflink.table import DataTypes
    from pyflink.table.udf import udf

    from udfs.reading_parser import Rejection, parse_reading

    sql_types = {
        "STRING": DataTypes.STRING(), "BIGINT": DataTypes.BIGINT(),
        "DOUBLE": DataTypes.DOUBLE(), "ARRAY<STRING>": DataTypes.ARRAY(DataTypes.STRING()),
    }
    result_type = DataTypes.ROW([DataTypes.FIELD(n, sql_types[t]) for n, t in PARSED_FIELDS])
    # PyFlink's thread-mode array converter cannot take None, so a rejection carries [].
    empty = (None,) * (len(PARSED_FIELDS) - 3)

    def parse(value, received):
        # `received` is the Kafka timestamp as a naive UTC datetime.
        received_ms = (calendar.timegm(received.utctimetuple()) * 1000
                       + received.microsecond // 1000) if received is not None else None
        result = parse_reading(value, received_ms=received_ms,
                               max_future_skew_ms=max_future_skew_ms)
        if isinstance(result, Rejection):
            return Row(result.reason, *empty, [], received_ms)
        return Row(None, *result[:-1], list(result.status), received_ms)

    return udf(parse, result_type=result_type, deterministic=True)


PARSED_VIEW = "readings_parsed"
VALID_VIEW = "readings_valid"
DEAD_LETTER_VIEW = "readings_dead_letters"


def register_validation(t_env, source: str, config: JobConfig) -> tuple[str, str]:
    """Register two views over `source` and return their names:

    readings_valid: meter_id, event_time (rowtime, watermarked), ts_ms, seq, kwh_import, kwh_export,
        voltage_v, current_a, power_factor, frequency_hz, status, kafka_partition, kafka_offset,
        proc_time, received_ms (the Kafka append time).
    readings_dead_letters: `key`, `value` ready for the dead-letter topic (DESIGN's record).

    The validator runs once per record: its output is materialised as a stream (a plain
    Table view would be inlined into each branch, and every branch would call Python again).
    Event time is the validator's `ts`, so one parser decides what a reading's time is; the
    watermark is the source's, generated per Kafka partition (see readings_source_ddl).
    """
    from pyflink.table import Schema

    t_env.create_temporary_function(
        "parse_reading", parse_reading_function(int(config.ingestion.max_future_skew)))
    fields = ", ".join(f"r.{name} AS {name}" for name, _ in PARSED_FIELDS)
    parsed = t_env.sql_query(f"""
        SELECT `key`, `value`, kafka_topic, kafka_partition, kafka_offset, {fields}
        FROM (SELECT *, parse_reading(`value`, CAST(kafka_ts AS TIMESTAMP(3))) AS r
              FROM `{source}`)""")
    # A rejected record has no event time; 0 keeps the rowtime non-null, and rejected records
    # never reach a window.
    schema = (Schema.new_builder()
              .column_by_expression("event_time", "TO_TIMESTAMP_LTZ(COALESCE(ts_ms, 0), 3)")
              .column_by_expression("proc_time", "PROCTIME()")
              .watermark("event_time", "SOURCE_WATERMARK()")
              .build())
    t_env.create_temporary_view(PARSED_VIEW,
                                t_env.from_data_stream(t_env.to_data_stream(parsed), schema))
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW `{VALID_VIEW}` AS
        SELECT meter_id, event_time, ts_ms, seq, kwh_import, kwh_export, voltage_v, current_a,
               power_factor, frequency_hz, status, kafka_partition, kafka_offset, proc_time,
               received_ms
        FROM `{PARSED_VIEW}` WHERE error IS NULL""")
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW `{DEAD_LETTER_VIEW}_uncounted` AS
        SELECT `key`,
               JSON_OBJECT(KEY 'error' VALUE error, KEY 'raw' VALUE `value`,
                           KEY 'topic' VALUE kafka_topic, KEY 'partition' VALUE kafka_partition,
                           KEY 'offset' VALUE kafka_offset, KEY 'received_ts' VALUE received_ms
                           NULL ON NULL) AS `value`
        FROM `{PARSED_VIEW}` WHERE error IS NOT NULL""")
    # Counted on their own branch (few), not in the validator: PyFlink hands a scalar
    # function's metrics to Flink in process mode only, and drops them in thread mode.
    count_records(t_env, f"{DEAD_LETTER_VIEW}_uncounted", DEAD_LETTER_VIEW, "dead_letters",
                  by_reason=True)
    return VALID_VIEW, DEAD_LETTER_VIEW


UNIQUE_VIEW = "readings_unique"
ENRICHED_VIEW = "readings_enriched"
REGISTRY_LOOKUP = "meter_registry_lookup"


def register_deduplication(t_env, valid: str, config: JobConfig) -> str:
    """Valid readings without duplicates: the first (meter_id, ts) seen within the configured
    horizon wins. Emits at once (keep-first on processing time) and keeps the rowtime.

    The horizon is the job-wide state TTL (`table.exec.state.ttl`): window aggregates are
    unaffected (they clear their state when a window fires), other regular state is not kept
    longer than the horizon either.
    """
    t_env.get_config().set("table.exec.state.ttl", f"{int(config.ingestion.dedup_horizon)} ms")
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW `{UNIQUE_VIEW}` AS
        SELECT meter_id, event_time, ts_ms, seq, kwh_import, kwh_export, voltage_v, current_a,
               power_factor, frequency_hz, status, kafka_partition, kafka_offset, proc_time
        FROM (SELECT *, ROW_NUMBER() OVER (PARTITION BY meter_id, event_time
                                           ORDER BY proc_time) AS occurrence
              FROM `{valid}`)
        WHERE occurrence = 1""")
    return UNIQUE_VIEW


def registry_lookup_ddl(config: JobConfig, name: str = REGISTRY_LOOKUP) -> str:
    """The meter registry as a JDBC lookup table with a per-TaskManager cache; unknown meters
    are cached too, so they do not query the database on every reading."""
    registry = config.registry
    options = jdbc_table_options(config, "meter_registry")
    options.update({
        "lookup.cache": "PARTIAL",
        "lookup.partial-cache.max-rows": str(registry.cache_rows),
        "lookup.partial-cache.expire-after-write": f"{int(registry.cache_ttl)} ms",
        "lookup.partial-cache.cache-missing-key": "true",
        "lookup.max-retries": "3",
    })
    columns = ["meter_id STRING", "feeder_id STRING", "region STRING",
               "nominal_voltage_v DOUBLE", "has_generation BOOLEAN", "service_limit_kw DOUBLE",
               "interval_minutes INT", "register_max_kwh DOUBLE",
               "PRIMARY KEY (meter_id) NOT ENFORCED"]
    return create_table_ddl(name, columns, options)


def registered_counts_ddl(config: JobConfig, level: str) -> str:
    """Meters registered per feeder or region (views over meter_registry), as a cached lookup
    table named <level>_meter_counts."""
    key = "feeder_id" if level == "feeder" else "region"
    options = jdbc_table_options(config, f"{level}_meter_counts")
    options.update({"lookup.cache": "PARTIAL", "lookup.partial-cache.max-rows": "100000",
                    "lookup.partial-cache.expire-after-write": "10 min",
                    "lookup.partial-cache.cache-missing-key": "true"})
    return create_table_ddl(f"{level}_meter_counts",
                            [f"{key} STRING", "meters INT", f"PRIMARY KEY ({key}) NOT ENFORCED"],
                            options)


def register_enrichment(t_env, readings: str, config: JobConfig,
                        registry: str = REGISTRY_LOOKUP) -> str:
    """`readings` with the meter's feeder, region, nominal voltage, generation flag, service
    limit, interval and register maximum; a meter not in the registry gets region and feeder
    'unknown' and the configured defaults."""
    defaults = config.registry
    nominal_v = defaults.default_nominal_voltage_v or config.detect.rules.nominal_voltage_v
    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW `{ENRICHED_VIEW}` AS
        SELECT r.*,
               COALESCE(m.feeder_id, 'unknown') AS feeder_id,
               COALESCE(m.region, 'unknown') AS region,
               COALESCE(m.nominal_voltage_v, CAST({nominal_v} AS DOUBLE))
                 AS nominal_voltage_v,
               COALESCE(m.has_generation, FALSE) AS has_generation,
               m.service_limit_kw AS service_limit_kw,
               COALESCE(m.interval_minutes, {defaults.default_interval_minutes})
                 AS interval_minutes,
               m.register_max_kwh AS register_max_kwh
        FROM `{readings}` AS r
        LEFT JOIN `{registry}` FOR SYSTEM_TIME AS OF r.proc_time AS m
          ON r.meter_id = m.meter_id""")
    return ENRICHED_VIEW


def dead_letter_sink_ddl(config: JobConfig, name: str = "dead_letters") -> str:
    options = kafka_table_options(config.kafka, config.topics.dead_letters.name)
    options.update({
        "key.format": "raw", "key.fields": "key",
        "value.format": "raw", "value.fields-include": "EXCEPT_KEY",
        "sink.delivery-guarantee": "at-least-once",
    })
    return create_table_ddl(name, ["`key` STRING", "`value` STRING"], options)
