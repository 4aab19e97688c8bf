"""`make bench-ingest`: catch-up throughput of the ingest job on a preloaded topic.

Preloads N readings (default 1,000,000; 10,000 meters) into a benchmark topic once (reruns
reuse it), then runs the ingest job bounded in a MiniCluster from the start of the topic into
PostgreSQL and prints readings/s. A run over an empty topic, side by side, gives the fixed
start-up cost, so the steady rate is shown too.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from jobs.config import REPO_ROOT, load_config
from tools.stack import kafka_python_kwargs, pg_connect_kwargs

QUARTER_HOUR_MS = 15 * 60_000
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def topic_size(config, topic: str) -> int:
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka_python_kwargs(config))
    partitions = consumer.partitions_for_topic(topic) or set()
    ends = consumer.end_offsets([TopicPartition(topic, p) for p in partitions])
    consumer.close()
    return sum(ends.values())


def ensure_topic(config, topic: str, partitions: int) -> None:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic
    from kafka.errors import TopicAlreadyExistsError

    admin = KafkaAdminClient(**kafka_python_kwargs(config))
    try:
        admin.create_topics([NewTopic(topic, partitions, 1)])
    except TopicAlreadyExistsError:
        pass
    finally:
        admin.close()


def preload(config, topic: str, count: int, meters: int) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(**kafka_python_kwargs(config), linger_ms=50,
                             batch_size=512 * 1024)
    started = time.monotonic()
    for i in range(count):
        meter = f"bench-{i % meters:06d}"
        step = i // meters
        value = json.dumps({"meter_id": meter, "ts": T0 + step * QUARTER_HOUR_MS, "seq": step,
                            "kwh_import": 1000.0 + step * 0.25, "voltage_v": 230.1,
                            "current_a": 3.2, "power_factor": 0.97, "frequency_hz": 50.0})
        producer.send(topic, key=meter.encode(), value=value.encode())
        if i % 100_000 == 0 and i:
            print(f"  preloaded {i:,} ({i / (time.monotonic() - started):,.0f}/s)", flush=True)
    producer.flush()
    producer.close()


def run_ingest(config_path: Path, group: str) -> float:
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "jobs.ingest", "--config", str(config_path),
                    "--bounded", "--group-id", group], cwd=REPO_ROOT, check=True)
    return time.monotonic() - started


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_ingest",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(REPO_ROOT / "conf" / "local.yaml"))
    parser.add_argument("--readings", type=int, default=1_000_000)
    parser.add_argument("--meters", type=int, default=10_000)
    args = parser.parse_args(argv)
    config = load_config(args.config)
    partitions = config.topics.readings.partitions
    topic = f"bench.ingest.{args.readings}.{args.meters}"
    empty_topic = f"bench.ingest.empty.{uuid.uuid4().hex[:6]}"
    ensure_topic(config, topic, partitions)
    ensure_topic(config, empty_topic, partitions)
    if topic_size(config, topic) != args.readings:
        print(f"preloading {args.readings:,} readings into {topic} ...", flush=True)
        preload(config, topic, args.readings, args.meters)
    assert topic_size(config, topic) == args.readings, "benchmark topic has unexpected records"

    import psycopg

    with psycopg.connect(**pg_connect_kwargs(config), autocommit=True) as conn:
        conn.execute("DELETE FROM meter_readings WHERE meter_id LIKE 'bench-%'")

    raw = yaml.safe_load(Path(args.config).read_text())
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for name, topic_name in (("full", topic), ("empty", empty_topic)):
            raw["topics"] = {"readings": {"name": topic_name, "partitions": partitions}}
            paths[name] = Path(tmp) / f"{name}.yaml"
            paths[name].write_text(yaml.safe_dump(raw))
        fixed = run_ingest(paths["empty"], f"bench-{uuid.uuid4().hex[:6]}")
        total = run_ingest(paths["full"], f"bench-{uuid.uuid4().hex[:6]}")

    with psycopg.connect(**pg_connect_kwargs(config)) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM meter_readings WHERE meter_id LIKE 'bench-%'").fetchone()[0]
    print()
    print(f"ingest job, {args.readings:,} readings over {args.meters:,} meters, "
          f"{partitions} partitions, parallelism {config.flink.parallelism}, "
          f"python {config.flink.python_execution_mode} mode")
    print(f"  rows written               {rows:>12,}")
    print(f"  wall time                  {total:>11.1f}s  -> {args.readings / total:,.0f} "
          f"readings/s end to end")
    print(f"  start-up (empty topic)     {fixed:>11.1f}s  -> {args.readings / (total - fixed):,.0f}"
          f" readings/s once running")
    return 0 if rows == args.readings else 1


if __name__ == "__main__":
    sys.exit(main())
