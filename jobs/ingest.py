"""Ingest job: meter.readings -> validated readings in PostgreSQL (+ dead letters to Kafka).

    python -m jobs.ingest --config conf/local.yaml            # embedded MiniCluster
    flink run -pym jobs.ingest -pyfs jobs,udfs ... --config conf/local.yaml   # a cluster

`build_pipeline` wires injected source and sink tables; `main` declares the Kafka source, the
JDBC sink on `meter_readings` (upsert on meter_id, ts) and the dead-letter topic.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from jobs.cli import parse_job_args
from jobs.config import ConfigError, JobConfig, load_config, with_flink_options
from jobs.connectors import create_table_ddl, jdbc_table_options
from jobs.ingestion import (
    READINGS_SOURCE,
    dead_letter_sink_ddl,
    readings_source_ddl,
    register_deduplication,
    register_validation,
)
from jobs.preflight import PreflightError, check_services
from jobs.runtime import SetupError, connector_jars, create_table_env, execute

JOB_NAME = "gridstream-ingest"
READINGS_TABLE = "meter_readings"

READINGS_SINK_COLUMNS = (
    "meter_id STRING",
    "ts TIMESTAMP(3)",
    "seq BIGINT",
    "kwh_import DOUBLE",
    "kwh_export DOUBLE",
    "voltage_v DOUBLE",
    "current_a DOUBLE",
    "power_factor DOUBLE",
    "frequency_hz DOUBLE",
    "status STRING",  # JSON array; a jsonb column in PostgreSQL
    "kafka_partition INT",
    "kafka_offset BIGINT",
    "PRIMARY KEY (meter_id, ts) NOT ENFORCED",
)


@dataclass(frozen=True)
class IngestSinks:
    readings: str
    dead_letters: str


def build_pipeline(t_env, source: str, sinks: IngestSinks, config: JobConfig):
    """Validated, deduplicated readings from `source` into `sinks.readings`, rejects into
    `sinks.dead_letters`. Returns the StatementSet; the caller executes it.

    The upsert on (meter_id, ts) alone would also keep replays out, but the last copy would
    win; deduplicating first keeps the same (first) copy every other job keeps."""
    valid, dead_letters = register_validation(t_env, source, config)
    unique = register_deduplication(t_env, valid, config)
    statements = t_env.create_statement_set()
    statements.add_insert_sql(f"""
        INSERT INTO `{sinks.readings}`
        SELECT meter_id, CAST(event_time AS TIMESTAMP(3)), seq, kwh_import, kwh_export,
               voltage_v, current_a, power_factor, frequency_hz, JSON_STRING(status),
               kafka_partition, kafka_offset
        FROM `{unique}`""")
    statements.add_insert_sql(f"INSERT INTO `{sinks.dead_letters}` SELECT * FROM `{dead_letters}`")
    return statements


def readings_sink_ddl(config: JobConfig, name: str = "readings_store") -> str:
    return create_table_ddl(name, READINGS_SINK_COLUMNS, jdbc_table_options(config, READINGS_TABLE))


def main(argv: list[str] | None = None) -> int:
    args = parse_job_args("ingest", __doc__.split("\n")[0], argv)
    try:
        config = with_flink_options(load_config(args.config), args.flink_options)
        connector_jars()
        check_services(config, args.config)
        t_env = create_table_env(config, JOB_NAME)
    except (ConfigError, SetupError, PreflightError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    group_id = args.group_id or f"{config.kafka.group_id}-ingest"
    t_env.execute_sql(readings_source_ddl(config, bounded=args.bounded, group_id=group_id))
    t_env.execute_sql(readings_sink_ddl(config))
    t_env.execute_sql(dead_letter_sink_ddl(config))
    statements = build_pipeline(t_env, READINGS_SOURCE,
                                IngestSinks("readings_store", "dead_letters"), config)
    execute(statements)
    return 0


if __name__ == "__main__":
    sys.exit(main())
