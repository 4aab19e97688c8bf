"""Print a topic's records as a read_committed consumer sees them, key and value per line.

    python -m tools.consume meter.alerts                 from now on, until Ctrl-C
    python -m tools.consume meter.alerts --from-beginning --limit 20
"""

from __future__ import annotations

import argparse
import sys

from jobs.config import REPO_ROOT, ConfigError, load_config
from tools.stack import kafka_python_kwargs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.consume",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("topic")
    parser.add_argument("--config", default=str(REPO_ROOT / "conf" / "local.yaml"))
    parser.add_argument("--from-beginning", action="store_true")
    parser.add_argument("--limit", type=int, help="stop after this many records")
    args = parser.parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from kafka import KafkaConsumer
    from kafka.errors import NoBrokersAvailable

    try:
        consumer = KafkaConsumer(args.topic, **kafka_python_kwargs(config), group_id=None,
                                 isolation_level="read_committed",
                                 auto_offset_reset="earliest" if args.from_beginning
                                 else "latest")
    except NoBrokersAvailable:
        print(f"error: no Kafka broker at {config.kafka.bootstrap_servers}: start it with "
              f"`make up`", file=sys.stderr)
        return 1
    shown = 0
    try:
        for record in consumer:
            key = record.key.decode(errors="replace") if record.key else ""
            print(f"{key}\t{record.value.decode(errors='replace')}", flush=True)
            shown += 1
            if args.limit and shown >= args.limit:
                break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
