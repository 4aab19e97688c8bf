"""Detect job: anomaly alerts per meter and per feeder, OPEN and CLEARED, within a second.

    python -m jobs.detect --config conf/local.yaml

Readings pass the shared ingestion stage (validation, dead letters, registry enrichment, plus
the number of meters registered on the reading's feeder), then two keyed Python functions in
thread mode, driving the pure logic in udfs/:

1. keyed by meter: udfs.meter_detector.MeterDetector, every per-meter rule of DESIGN's table,
   with the meter's detector state in one ValueState and an event-time timer for STALE_METER
   (the watermark is generated per Kafka partition and skips idle partitions, so a quiet
   partition does not keep a stale meter's timer from firing);
2. keyed by feeder: udfs.feeder_correlation.FeederCorrelator, which turns a feeder's worth of
   meter OUTAGEs into one FEEDER_OUTAGE; other alerts pass through.

Why Python with keyed state here, when DESIGN measured it slow: the rules are stateful per
meter (previous registers, a day of interval history, open alerts, timers) and change at
every reading, which SQL can only express as several self-joined OVER aggregates. The price,
measured (README, Benchmarks): every reading is handed to keyed Python, and in thread mode a
TaskManager runs all its Python under one interpreter lock, so the job scales with
TaskManagers (one slot each), not with slots: ~12.7k readings/s on the local cluster's two
TaskManagers. Readings are keyed in Java (keyed_by_first_field), so each one enters Python
twice (validator, meter function), not three times. Alerts are rare, so everything after the
meter function is cheap.

Alerts go to meter.alerts (key: meter id, or feeder id) as DESIGN's JSON, and to the alerts
table (upsert on alert_id). detect.delivery chooses Kafka transactions for meter.alerts
(read_committed consumers see an alert when the checkpoint completes) or at-least-once;
with detect.critical_fast_path, CRITICAL alerts are also written at once, at-least-once, to
topics.critical_alerts for pagers. Alert ids are deterministic, so a repeat is recognisable.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from dataclasses import dataclass

from jobs.cli import parse_job_args
from jobs.config import ConfigError, JobConfig, load_config, with_flink_options
from jobs.connectors import create_table_ddl, jdbc_table_options, kafka_table_options
from jobs.ingestion import (
    READINGS_SOURCE,
    dead_letter_sink_ddl,
    readings_source_ddl,
    register_enrichment,
    register_validation,
    registered_counts_ddl,
    registry_lookup_ddl,
)
from jobs.preflight import PreflightError, check_services
from jobs.runtime import SetupError, connector_jars, create_table_env, execute

JOB_NAME = "gridstream-detect"

# What the meter function reads from the enriched readings, in this order.
READING_COLUMNS = (
    "meter_id", "ts_ms", "seq", "kwh_import", "kwh_export", "voltage_v", "current_a",
    "power_factor", "frequency_hz", "status", "feeder_id", "region", "nominal_voltage_v",
    "has_generation", "service_limit_kw", "interval_minutes", "register_max_kwh",
    "received_ms", "feeder_meters",
)
# An alert between the functions and into the sinks: DESIGN's fields, the JSON payload for
# Kafka, the Kafka key, opened_ts for the table, and the feeder's registered meters.
ALERT_FIELDS = (
    ("alert_id", "STRING"), ("meter_id", "STRING"), ("feeder_id", "STRING"),
    ("region", "STRING"), ("type", "STRING"), ("severity", "STRING"), ("state", "STRING"),
    ("event_ts", "LONG"), ("detected_ts", "LONG"), ("value", "DOUBLE"),
    ("threshold", "DOUBLE"), ("message", "STRING"), ("opened_ts", "LONG"),
    ("alert_key", "STRING"), ("payload", "STRING"), ("feeder_meters", "INT"),
)


def alert_type_info():
    from pyflink.common import Types

    kinds = {"STRING": Types.STRING(), "LONG": Types.LONG(), "DOUBLE": Types.DOUBLE(),
             "INT": Types.INT()}
    return Types.ROW_NAMED([name for name, _ in ALERT_FIELDS],
                           [kinds[kind] for _, kind in ALERT_FIELDS])


def alert_row(alert, feeder_meters: int):
    from pyflink.common import Row

    from udfs.alert_record import to_json_bytes

    opened = getattr(alert, "opened_ts", None)
    return Row(alert.alert_id, alert.meter_id, alert.feeder_id, alert.region, alert.type,
               alert.severity, alert.state, int(alert.event_ts), int(alert.detected_ts),
               alert.value, alert.threshold, alert.message,
               int(opened if opened is not None else alert.event_ts), alert.key,
               to_json_bytes(alert).decode(), int(feeder_meters))


def row_alert(row):
    """The udfs Alert inside an alert row (the feeder function's input)."""
    from udfs.alert_record import Alert

    return Alert(*(row[i] for i in range(len(Alert._fields))))


def meter_alerting_function(config: JobConfig):
    """The per-meter KeyedProcessFunction (built here so that PyFlink is imported lazily)."""
    from pyflink.common import Types
    from pyflink.datastream import KeyedProcessFunction
    from pyflink.datastream.state import ValueStateDescriptor

    from jobs.job_metrics import JobMetrics
    from udfs.meter_detector import MeterDetector, MeterMeta
    from udfs.reading_parser import Reading

    thresholds = config.detect.rules

    class MeterAlerting(KeyedProcessFunction):
        def open(self, runtime_context):
            # (detector state, registry metadata, pending stale deadline): the timer callback
            # needs the meter's interval and feeder, which only readings carry.
            self.state = runtime_context.get_state(
                ValueStateDescriptor("meter", Types.PICKLED_BYTE_ARRAY()))
            self.detector = MeterDetector(thresholds)
            self.metrics = JobMetrics(runtime_context.get_metrics_group())

        def process_element(self, row, ctx):
            self.metrics.lag(row[17])
            reading = Reading(row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7],
                              row[8], _status_codes(row[9]))
            meta = MeterMeta(row[10], row[11], row[12], bool(row[13]), row[14], row[15],
                             row[16])
            stored = self.state.value()
            state, _, deadline = stored if stored is not None else (None, None, None)
            if state is not None and reading.ts_ms <= state.last_ts:
                return  # a duplicate, replayed or out-of-order reading decides nothing
            state, alerts = self.detector.on_reading(state, reading, meta, _now_ms())
            deadline = self._rearm(ctx, state, meta, deadline)
            self.state.update((state, meta, deadline))
            for alert in alerts:
                yield alert_row(alert, row[18])

        def on_timer(self, timestamp, ctx):
            stored = self.state.value()
            if stored is None:
                return
            state, meta, deadline = stored
            if deadline != timestamp:
                return  # superseded by a later reading (deletion raced the firing)
            state, alerts = self.detector.on_stale_timer(
                state, ctx.get_current_key(), timestamp, meta, _now_ms(),
                ctx.timer_service().current_watermark())
            # The timer has fired and is gone. Re-arm only for a later deadline: at the end of
            # a bounded input (no STALE opens) the deadline is this very timer, and registering
            # it again would fire it again, forever.
            deadline = self.detector.stale_deadline(state, meta)
            if deadline is not None and deadline > timestamp:
                ctx.timer_service().register_event_time_timer(deadline)
            else:
                deadline = None
            self.state.update((state, meta, deadline))
            for alert in alerts:
                yield alert_row(alert, 0)

        def _rearm(self, ctx, state, meta, pending):
            deadline = self.detector.stale_deadline(state, meta)
            if deadline != pending:
                timers = ctx.timer_service()
                if pending is not None:
                    timers.delete_event_time_timer(pending)
                if deadline is not None:
                    timers.register_event_time_timer(deadline)
            return deadline

    return MeterAlerting()


def feeder_correlation_function(config: JobConfig):
    """Keyed by feeder: OUTAGE alerts through udfs.feeder_correlation, the rest unchanged."""
    from pyflink.common import Types
    from pyflink.datastream import KeyedProcessFunction
    from pyflink.datastream.state import ValueStateDescriptor

    from jobs.job_metrics import JobMetrics
    from udfs.alert_record import OUTAGE
    from udfs.feeder_correlation import FeederCorrelator

    thresholds = config.detect.rules

    class FeederCorrelation(KeyedProcessFunction):
        def open(self, runtime_context):
            self.state = runtime_context.get_state(
                ValueStateDescriptor("feeder", Types.PICKLED_BYTE_ARRAY()))
            self.correlator = FeederCorrelator(thresholds)
            # Every alert the job emits passes here: the one place to count them.
            self.metrics = JobMetrics(runtime_context.get_metrics_group())

        def process_element(self, row, ctx):
            for alert in self._correlate(row, ctx):
                self.metrics.inc("alerts", (("type", alert[4]), ("severity", alert[5]),
                                            ("state", alert[6])))
                yield alert

        def _correlate(self, row, ctx):
            if row[4] != OUTAGE:
                return [row]
            meters = row[15] or 0
            state, alerts = self.correlator.on_meter_outage(
                self.state.value(), row_alert(row), meters, _now_ms(),
                ctx.timer_service().current_watermark())
            self.state.update(state)
            return [alert_row(alert, meters) for alert in alerts]

    return FeederCorrelation()


def _status_codes(encoded: str | None) -> tuple[str, ...]:
    if not encoded or encoded == "[]":
        return ()
    return tuple(json.loads(encoded))


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass(frozen=True)
class DetectSinks:
    alerts: str                  # meter.alerts, every alert, delivery per detect.delivery
    critical_alerts: str | None  # meter.alerts.critical, at once (the CRITICAL fast path)
    alerts_table: str
    dead_letters: str


def register_detection(t_env, readings: str, config: JobConfig) -> str:
    """A view of alert rows (ALERT_FIELDS) over enriched `readings`; returns its name."""
    from pyflink.common import Types
    from pyflink.table import Schema

    register_max = f"CAST({config.aggregate.default_register_max_kwh} AS DOUBLE)"
    special = {
        "register_max_kwh": f"COALESCE(r.register_max_kwh, {register_max})",
        # The validator's array comes back from the stream conversion as a legacy type that
        # to_data_stream cannot convert again; codes are [A-Z_] words, so a joined string is
        # lossless for what the rules read.
        "status": "JSON_STRING(r.status)",
    }
    columns = ", ".join(special.get(c, f"r.{c}") for c in READING_COLUMNS[:-1])
    # (meter id, reading): keyed in Java by the first field (see keyed_by_first_field).
    rows = t_env.sql_query(f"""
        SELECT r.meter_id AS k, ROW({columns}, COALESCE(c.meters, 0)) AS reading
        FROM `{readings}` AS r
        LEFT JOIN feeder_meter_counts FOR SYSTEM_TIME AS OF r.proc_time AS c
          ON r.feeder_id = c.feeder_id""")
    meter_alerts = (keyed_by_first_field(t_env, rows, Types.STRING())
                    .process(meter_alerting_function(config), output_type=alert_type_info())
                    .name("meter rules"))
    alerts = (meter_alerts
              .key_by(lambda row: row[2], key_type=Types.STRING())
              .process(feeder_correlation_function(config), output_type=alert_type_info())
              .name("feeder correlation"))
    t_env.create_temporary_view("detect_alerts", t_env.from_data_stream(
        alerts, Schema.new_builder().build()))
    return "detect_alerts"


def keyed_by_first_field(t_env, table, key_type):
    """`table`'s (key, value) rows as a stream keyed by the key, whose keyed functions receive
    the value.

    PyFlink's key_by(selector) runs the selector as a Python function that turns every record
    into (key, record), then keys that in Java: one more trip into Python and back per reading,
    with the whole row converted both ways. Rows that SQL already shaped as (key, value) take
    the same Java key selector directly (measured: README, Benchmarks). The Python keyed
    operator wants its input as a RowTypeInfo, which the legacy append conversion gives."""
    from pyflink.common import Types
    from pyflink.common.typeinfo import _from_java_type
    from pyflink.datastream.data_stream import KeyedStream
    from pyflink.java_gateway import get_gateway

    gateway = get_gateway()
    pair = _from_java_type(gateway.jvm.org.apache.flink.table.types.utils.TypeConversions
                           .fromDataTypeToLegacyInfo(table._j_table.getResolvedSchema()
                                                     .toPhysicalRowDataType()))
    stream = t_env.to_append_stream(table, pair)
    keyed = stream._j_data_stream.keyBy(gateway.jvm.KeyByKeySelector(),
                                        Types.ROW([key_type]).get_java_type_info())
    return KeyedStream(keyed, pair.get_field_types()[1], stream)


def build_pipeline(t_env, source: str, sinks: DetectSinks, config: JobConfig):
    """Alerts from `source` (raw readings) into the sinks; returns the StatementSet."""
    valid, dead_letters = register_validation(t_env, source, config)
    alerts = register_detection(t_env, register_enrichment(t_env, valid, config), config)
    statements = t_env.create_statement_set()
    statements.add_insert_sql(
        f"INSERT INTO `{sinks.alerts}` SELECT alert_key, payload FROM `{alerts}`")
    if sinks.critical_alerts:
        statements.add_insert_sql(
            f"INSERT INTO `{sinks.critical_alerts}` SELECT alert_key, payload FROM `{alerts}`"
            f" WHERE severity = 'CRITICAL'")
    statements.add_insert_sql(f"""
        INSERT INTO `{sinks.alerts_table}`
        SELECT alert_id, meter_id, feeder_id, region, type, severity, state,
               {_utc("opened_ts")},
               CASE WHEN state = 'CLEARED' THEN {_utc("event_ts")} END,
               {_utc("detected_ts")}, `value`, threshold, message
        FROM `{alerts}`""")
    statements.add_insert_sql(f"INSERT INTO `{sinks.dead_letters}` SELECT * FROM `{dead_letters}`")
    return statements


def _utc(column: str) -> str:
    return f"CAST(TO_TIMESTAMP_LTZ({column}, 3) AS TIMESTAMP(3))"


def declare_sinks(t_env, config: JobConfig, *, transactional_id_prefix: str) -> DetectSinks:
    exactly_once = config.detect.delivery == "exactly-once"
    fast = config.detect.critical_fast_path
    for name, topic, guarantee in (
            ("alerts_out", config.topics.alerts.name,
             "exactly-once" if exactly_once else "at-least-once"),
            *([("critical_alerts_out", config.topics.critical_alerts.name, "at-least-once")]
              if fast else [])):
        options = kafka_table_options(config.kafka, topic)
        options.update({"key.format": "raw", "key.fields": "key", "value.format": "raw",
                        "value.fields-include": "EXCEPT_KEY",
                        "sink.delivery-guarantee": guarantee,
                        # A page must not wait for the producer to fill a batch.
                        "properties.linger.ms": "0"})
        if guarantee == "exactly-once":
            options["sink.transactional-id-prefix"] = transactional_id_prefix
        t_env.execute_sql(create_table_ddl(name, ["`key` STRING", "`value` STRING"], options))
    table = jdbc_table_options(config, "alerts")
    # Alerts are few and operators query the table: write them at once.
    table["sink.buffer-flush.interval"] = "200 ms"
    t_env.execute_sql(create_table_ddl("alerts_store", [
        "alert_id STRING", "meter_id STRING", "feeder_id STRING", "region STRING",
        "type STRING", "severity STRING", "state STRING", "opened_ts TIMESTAMP(3)",
        "cleared_ts TIMESTAMP(3)", "detected_ts TIMESTAMP(3)", "`value` DOUBLE",
        "threshold DOUBLE", "message STRING", "PRIMARY KEY (alert_id) NOT ENFORCED"], table))
    t_env.execute_sql(dead_letter_sink_ddl(config))
    t_env.execute_sql(registry_lookup_ddl(config))
    t_env.execute_sql(registered_counts_ddl(config, "feeder"))
    return DetectSinks("alerts_out", "critical_alerts_out" if fast else None, "alerts_store",
                       "dead_letters")


def job_config(config: JobConfig) -> JobConfig:
    """`config` with this job's own checkpointing and buffer timeout, and object reuse."""
    detect = config.detect
    config = dataclasses.replace(config, flink=dataclasses.replace(
        config.flink, checkpoint_interval=detect.checkpoint_interval))
    options = [f"execution.buffer-timeout.interval={int(detect.buffer_timeout)} ms",
               f"execution.checkpointing.min-pause={int(detect.checkpoint_min_pause)} ms",
               # Chained operators hand a record on instead of a deep copy of it: the copies
               # were a tenth of the source chain's JVM time (profiled). Safe here: the SQL
               # operators build new rows, and the Python functions get converted copies.
               "pipeline.object-reuse=true"]
    return with_flink_options(config, [*options, *(f"{k}={v}" for k, v in
                                                   config.flink.options.items())])


def main(argv: list[str] | None = None) -> int:
    args = parse_job_args("detect", __doc__.split("\n")[0], argv)
    try:
        config = job_config(with_flink_options(load_config(args.config), args.flink_options))
        connector_jars()
        check_services(config, args.config)
        t_env = create_table_env(config, JOB_NAME)
        group_id = args.group_id or f"{config.kafka.group_id}-detect"
        t_env.execute_sql(readings_source_ddl(config, bounded=args.bounded, group_id=group_id))
        sinks = declare_sinks(t_env, config, transactional_id_prefix=group_id)
        statements = build_pipeline(t_env, READINGS_SOURCE, sinks, config)
    except (ConfigError, SetupError, PreflightError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    execute(statements)
    return 0


if __name__ == "__main__":
    sys.exit(main())
