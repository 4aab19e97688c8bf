"""The command line every job shares: --config, --bounded, --group-id and -D."""

from __future__ import annotations

import argparse


def parse_job_args(job: str, description: str, argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=f"python -m jobs.{job}", description=description)
    parser.add_argument("--config", required=True, help="job config, e.g. conf/local.yaml")
    parser.add_argument("--bounded", action="store_true",
                        help="stop after the records present at start-up (catch-up runs, tests)")
    parser.add_argument("--group-id",
                        help=f"Kafka consumer group (default: <kafka.group_id>-{job})")
    parser.add_argument("-D", dest="flink_options", action="append", default=[],
                        metavar="KEY=VALUE", help="a Flink option for this run (as flink run -D)")
    return parser.parse_args(argv)
