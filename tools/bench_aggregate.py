"""`make bench-aggregate`: catch-up throughput of the aggregate job, side by side with the
engine's ceiling.

Preloads (once; reruns reuse it) a simulated fleet into a benchmark topic (default 100,000
meters x 6 hours, about 2.2M readings) and loads its registry, then runs, each over the
whole topic from the start, in one sitting:

  job -> PostgreSQL      the aggregate job as deployed: Python validator, SQL pipeline, JDBC
  job -> blackhole       the same job with blackhole sinks (what PostgreSQL costs)
  SQL -> blackhole       the same pipeline with the validator replaced by Flink SQL JSON
                         functions and blackhole sinks: the engine's ceiling

Each is timed from job submission to the end of the bounded input (JVM start excluded) and
repeated --repeat times; medians are printed with the ratio to the ceiling.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from jobs.config import REPO_ROOT, load_config
from tools.bench_ingest import ensure_topic, topic_size
from tools.job_progress import run_with_progress

VARIANTS = ("job-postgres", "job-blackhole", "sql-blackhole")
LABELS = {"job-postgres": "job -> PostgreSQL", "job-blackhole": "job -> blackhole",
          "sql-blackhole": "SQL -> blackhole (ceiling)"}


def bench_topic(meters: int, days: float) -> str:
    """The preloaded topic of a fleet size and span (bench-detect reads the same one)."""
    return f"bench.aggregate.{meters}x{days}"


def preload(config, topic: str, meters: int, days: float, workdir: Path) -> None:
    if topic_size(config, topic) > 0:
        print(f"reusing {topic} ({topic_size(config, topic):,} records)")
        return
    ensure_topic(config, topic, config.topics.readings.partitions)
    subprocess.run([sys.executable, "-m", "tools.simulate", "--mode", "replay",
                    "--meters", str(meters), "--days", str(days), "--seed", "2026",
                    "--topic", topic, "--registry", str(workdir / "registry.csv"),
                    "--truth", str(workdir / "truth.jsonl"),
                    "--summary", str(workdir / "summary.json")], cwd=REPO_ROOT, check=True)


def run_variant(variant: str, config_path: str, group: str) -> float:
    """Build and run one variant in this process; returns seconds from submission to end."""
    from jobs import aggregate
    from jobs.config import with_flink_options
    from jobs.ingestion import READINGS_SOURCE, readings_source_ddl
    from jobs.runtime import create_table_env

    config = with_flink_options(load_config(config_path), ["restart-strategy.type=none"])
    t_env = create_table_env(config, f"bench-aggregate-{variant}")
    t_env.execute_sql(readings_source_ddl(
        config, bounded=True, group_id=group,
        watermark_delay_ms=aggregate.watermark_delay_ms(config)))
    sinks = aggregate.declare_sinks(t_env, config)
    if variant != "job-postgres":
        sinks = _blackhole_sinks(t_env)
    if variant == "sql-blackhole":
        statements = _sql_pipeline(t_env, sinks, config)
    else:
        statements = aggregate.build_pipeline(t_env, READINGS_SOURCE, sinks, config)
    started = time.monotonic()
    statements.execute().wait()
    return time.monotonic() - started


def _blackhole_sinks(t_env):
    from jobs.aggregate import AggregateSinks

    names = AggregateSinks("bh_intervals", "bh_feeder", "bh_region", "bh_late", "bh_dead")
    for name, like in zip((names.intervals, names.feeder_load, names.region_load, names.late,
                           names.dead_letters), ("intervals_store", "feeder_load_store",
                                                 "region_load_store", "late_readings",
                                                 "dead_letters"), strict=True):
        t_env.execute_sql(f"CREATE TEMPORARY TABLE {name} WITH ('connector' = 'blackhole') "
                          f"LIKE {like} (EXCLUDING ALL)")
    return names


def _sql_pipeline(t_env, sinks, config):
    """The aggregate pipeline with the reading parsed by Flink SQL's JSON functions instead
    of the Python validator (no dead letters: a parse failure is a NULL)."""
    from jobs.aggregate import register_aggregation
    from jobs.ingestion import READINGS_SOURCE, VALID_VIEW, register_enrichment

    def field(name: str, sql_type: str) -> str:
        return f"TRY_CAST(JSON_VALUE(`value`, '$.{name}') AS {sql_type}) AS {name}"

    t_env.execute_sql(f"""
        CREATE TEMPORARY VIEW `{VALID_VIEW}` AS
        SELECT JSON_VALUE(`value`, '$.meter_id') AS meter_id, source_time AS event_time,
               TIMESTAMPDIFF(SECOND, TIMESTAMP '1970-01-01 00:00:00',
                             CAST(source_time AS TIMESTAMP(3))) * CAST(1000 AS BIGINT) AS ts_ms,
               {field("seq", "BIGINT")}, {field("kwh_import", "DOUBLE")},
               {field("kwh_export", "DOUBLE")}, {field("voltage_v", "DOUBLE")},
               {field("current_a", "DOUBLE")}, {field("power_factor", "DOUBLE")},
               {field("frequency_hz", "DOUBLE")}, CAST(NULL AS ARRAY<STRING>) AS status,
               kafka_partition, kafka_offset, PROCTIME() AS proc_time
        FROM `{READINGS_SOURCE}`
        WHERE source_time IS NOT NULL AND JSON_VALUE(`value`, '$.meter_id') IS NOT NULL""")
    views = register_aggregation(t_env, register_enrichment(t_env, VALID_VIEW, config), config)
    statements = t_env.create_statement_set()
    statements.add_insert_sql(f"""
        INSERT INTO {sinks.intervals}
        SELECT meter_id, CAST(interval_start AS TIMESTAMP(3)), CAST(interval_end AS TIMESTAMP(3)),
               feeder_id, region, kwh_import, kwh_export, voltage_min, voltage_max, voltage_avg,
               power_factor_avg, reading_count, quality, `rollover`, `rollback`
        FROM `{views["intervals"]}`""")
    for sink, view, keys in ((sinks.feeder_load, "feeder_load", "feeder_id, region"),
                             (sinks.region_load, "region_load", "region")):
        statements.add_insert_sql(f"""
            INSERT INTO {sink}
            SELECT {keys}, CAST(period_start AS TIMESTAMP(3)), CAST(period_end AS TIMESTAMP(3)),
                   kwh_import, kwh_export, peak_kw, avg_kw, meters_reporting, 0
            FROM `{views[view]}`""")
    statements.add_insert_sql(f"INSERT INTO {sinks.late} SELECT meter_id, CAST(ts_ms AS STRING) "
                              f"FROM `{views['late']}`")
    return statements


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_aggregate",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(REPO_ROOT / "conf" / "local.yaml"))
    parser.add_argument("--meters", type=int, default=100_000)
    parser.add_argument("--days", type=float, default=0.25)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--run-variant", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--group", default=f"bench-{uuid.uuid4().hex[:8]}",
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_variant:
        print(json.dumps({"seconds": run_variant(args.run_variant, args.config, args.group)}))
        return 0

    config = load_config(args.config)
    topic = bench_topic(args.meters, args.days)
    workdir = REPO_ROOT / ".stack" / "bench" / topic
    workdir.mkdir(parents=True, exist_ok=True)
    preload(config, topic, args.meters, args.days, workdir)
    readings = topic_size(config, topic)

    from tools import registry

    registry.load(config, workdir / "registry.csv")
    raw = yaml.safe_load(Path(args.config).read_text())
    raw["topics"]["readings"] = {"name": topic, "partitions": config.topics.readings.partitions}
    results: dict[str, list[float]] = {v: [] for v in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.yaml"
        path.write_text(yaml.safe_dump(raw))
        for round_ in range(args.repeat):
            for variant in VARIANTS:
                group = f"bench-{uuid.uuid4().hex[:8]}"
                out = run_with_progress(
                    [sys.executable, "-m", "tools.bench_aggregate", "--config", str(path),
                     "--run-variant", variant, "--group", group],
                    config, topic, group, LABELS[variant].strip()).result
                if out.returncode != 0:
                    print(out.stderr[-3000:], file=sys.stderr)
                    return 1
                seconds = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
                results[variant].append(seconds)
                print(f"  round {round_ + 1}: {LABELS[variant]:<28} {seconds:7.1f}s", flush=True)

    ceiling = readings / statistics.median(results["sql-blackhole"])
    print()
    print(f"aggregate job, {readings:,} readings over {args.meters:,} meters, "
          f"{config.topics.readings.partitions} partitions, parallelism "
          f"{config.flink.parallelism}, python {config.flink.python_execution_mode} mode, "
          f"median of {args.repeat}")
    for variant in VARIANTS:
        rate = readings / statistics.median(results[variant])
        print(f"  {LABELS[variant]:<28} {rate:>10,.0f} readings/s   {rate / ceiling:5.2f} of "
              f"ceiling")
    return 0


if __name__ == "__main__":
    sys.exit(main())
