"""`make demo`: the ingest job end to end on the embedded stack, then a summary.

Produces a small fleet's readings (plus a few malformed ones) into meter.readings, runs the
ingest job in an embedded MiniCluster over them, and prints what landed where.
"""

from __future__ import annotations

import argparse
import collections
import json
import subprocess
import sys
import time
import uuid

from jobs.config import REPO_ROOT, load_config
from tools.stack import kafka_python_kwargs, pg_connect_kwargs

QUARTER_HOUR_MS = 15 * 60_000


def demo_records(tag: str, meters: int, readings: int, start_ms: int):
    for i in range(readings):
        for m in range(meters):
            meter = f"{tag}-{m:05d}"
            yield meter, json.dumps({
                "meter_id": meter, "ts": start_ms + i * QUARTER_HOUR_MS, "seq": i,
                "kwh_import": round(1000 + m % 97 + i * 0.31, 3), "voltage_v": 230.0,
            }).encode()
    yield f"{tag}-bad-1", b"{not json"
    yield f"{tag}-bad-2", json.dumps({"meter_id": "x", "ts": "soon", "kwh_import": 1}).encode()
    yield f"{tag}-bad-3", json.dumps({"meter_id": "x", "ts": start_ms, "kwh_import": -4}).encode()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(REPO_ROOT / "conf" / "local.yaml"))
    parser.add_argument("--meters", type=int, default=2000)
    parser.add_argument("--readings", type=int, default=8, help="readings per meter")
    args = parser.parse_args(argv)
    config = load_config(args.config)

    from kafka import KafkaConsumer, KafkaProducer

    tag = f"demo{uuid.uuid4().hex[:6]}"
    start_ms = (int(time.time() * 1000) // QUARTER_HOUR_MS - args.readings) * QUARTER_HOUR_MS
    producer = KafkaProducer(**kafka_python_kwargs(config), linger_ms=20, batch_size=256 * 1024)
    sent = 0
    for key, value in demo_records(tag, args.meters, args.readings, start_ms):
        producer.send(config.topics.readings.name, key=key.encode(), value=value)
        sent += 1
    producer.flush()
    print(f"demo: produced {sent} records to {config.topics.readings.name} "
          f"({args.meters} meters x {args.readings} readings + 3 malformed)")

    print("demo: running the ingest job in an embedded MiniCluster ...", flush=True)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "jobs.ingest", "--config", args.config,
                             "--bounded", "--group-id", f"{tag}-ingest"], cwd=REPO_ROOT)
    if result.returncode != 0:
        print("error: the ingest job failed; its log is in .stack/log/", file=sys.stderr)
        return 1
    took = time.monotonic() - started

    import psycopg

    with psycopg.connect(**pg_connect_kwargs(config)) as conn:
        stored = conn.execute("SELECT count(*) FROM meter_readings WHERE meter_id LIKE %s",
                              (f"{tag}-%",)).fetchone()[0]
    consumer = KafkaConsumer(config.topics.dead_letters.name, **kafka_python_kwargs(config),
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    reasons = collections.Counter(
        json.loads(m.value)["error"].split(":")[0] for m in consumer
        if m.key and m.key.decode().startswith(tag))
    consumer.close()
    print()
    print(f"  records in                {sent:>10}")
    print(f"  rows in meter_readings    {stored:>10}")
    for reason, count in sorted(reasons.items()):
        print(f"  dead letters: {reason:<11} {count:>10}")
    print(f"  job wall time             {took:>9.1f}s")
    print()
    print(f"Look around: psql -h {config.postgres.host} -p {config.postgres.port} "
          f"-U {config.postgres.user} {config.postgres.database}   (`make down` stops the stack)")
    return 0 if stored == sent - 3 and sum(reasons.values()) == 3 else 1


if __name__ == "__main__":
    sys.exit(main())
