"""`python -m tools.score_detection`: detection quality against the simulator's ground truth.

Simulates a fleet (replay, with every anomaly type and data fault at the default rates) into
fresh topics of the running stack, loads its registry, runs the detect job over it (bounded,
in a MiniCluster), reads meter.alerts as a read_committed consumer and prints precision and
recall per alert type (tools/detection_score.py says what counts as a match). With --clean
the fleet has no anomaly and no fault: any alert is a false positive.

    python -m tools.score_detection --meters 1000 --days 3
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import yaml

from jobs.config import REPO_ROOT, ConfigError, JobConfig, load_config
from jobs.preflight import PreflightError, check_services
from tools import detection_score, stack
from tools.job_progress import run_with_progress

PROFILES = {"en50160": "EN50160", "ansi": "ANSI_C84_1"}


@dataclass
class Scored:
    scores: dict[str, detection_score.Score]
    alerts: list  # udfs Alert, OPEN and CLEARED, as read from meter.alerts
    truth: list[dict]
    summary: dict
    config: JobConfig
    seconds: float  # the detect job, start to end of input


def isolated_config(base: Path, tag: str, workdir: Path, profile: str) -> Path:
    """A copy of `base` whose topics are this run's own."""
    raw = yaml.safe_load(base.read_text())
    partitions = raw.get("topics", {}).get("readings", {}).get("partitions", 4)
    raw["topics"] = stack.isolated_topics(tag, partitions)
    raw.setdefault("detect", {}).setdefault("rules", {})["voltage_profile"] = PROFILES[profile]
    path = workdir / "score.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def read_alerts(config: JobConfig, timeout_s: float = 60) -> list:
    """Every committed record on the alerts topic (the job has finished: all are committed)."""
    from kafka import KafkaConsumer, TopicPartition

    topic = config.topics.alerts.name
    consumer = KafkaConsumer(**stack.kafka_python_kwargs(config), enable_auto_commit=False,
                             isolation_level="read_committed", auto_offset_reset="earliest")
    partitions = [TopicPartition(topic, p) for p in range(config.topics.alerts.partitions)]
    consumer.assign(partitions)
    ends = consumer.end_offsets(partitions)
    alerts, deadline = [], time.monotonic() + timeout_s
    while (any(consumer.position(tp) < ends[tp] for tp in partitions)
           and time.monotonic() < deadline):
        for records in consumer.poll(timeout_ms=500).values():
            alerts += [detection_score.alert_from_record(json.loads(r.value)) for r in records]
    consumer.close()
    return alerts


def score_fleet(base_config: Path, *, meters: int, days: float, seed: int, profile: str,
                clean: bool, parallelism: int | None, workdir: Path,
                progress=print) -> Scored:
    tag = f"score{uuid.uuid4().hex[:8]}"
    path = isolated_config(base_config, tag, workdir, profile)
    config = load_config(path)
    stack.create_topics(config)
    progress(f"simulating {meters:,} meters x {days:g} days into {config.topics.readings.name}")
    simulate = [sys.executable, "-m", "tools.simulate", "--mode", "replay",
                "--meters", str(meters), "--days", str(days), "--seed", str(seed),
                "--profile", profile, "--id-prefix", f"{tag}:", "--config", str(path),
                "--topic", config.topics.readings.name,
                "--registry", str(workdir / "registry.csv"),
                "--truth", str(workdir / "truth.jsonl"),
                "--summary", str(workdir / "summary.json"), *(["--clean"] if clean else [])]
    subprocess.run(simulate, cwd=REPO_ROOT, check=True)
    from tools import registry

    registry.load(config, workdir / "registry.csv")
    progress("running the detect job over it (bounded)")
    command = [sys.executable, "-m", "jobs.detect", "--config", str(path), "--bounded",
               "--group-id", tag, "-D", "restart-strategy.type=none"]
    if parallelism:
        command += ["-D", f"parallelism.default={parallelism}"]
    started = time.monotonic()
    result = run_with_progress(command, config, config.topics.readings.name, tag,
                               "detect job").result
    seconds = time.monotonic() - started
    if result.returncode != 0:
        raise RuntimeError(f"the detect job failed:\n{result.stderr[-3000:]}")
    alerts = read_alerts(config)
    truth = [json.loads(line) for line in (workdir / "truth.jsonl").read_text().splitlines()]
    summary = json.loads((workdir / "summary.json").read_text())
    return Scored(detection_score.score(truth, alerts), alerts, truth, summary, config, seconds)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.score_detection",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(REPO_ROOT / "conf" / "local.yaml"))
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--days", type=float, default=3.0,
                        help="at least 2: ZERO_CONSUMPTION needs a day, spikes a day of history")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--profile", choices=sorted(PROFILES), default="en50160")
    parser.add_argument("--clean", action="store_true", help="no anomalies and no faults")
    parser.add_argument("--parallelism", type=int)
    args = parser.parse_args(argv)
    try:
        check_services(load_config(args.config), args.config)
    except (ConfigError, PreflightError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        try:
            run = score_fleet(Path(args.config), meters=args.meters, days=args.days,
                              seed=args.seed, profile=args.profile, clean=args.clean,
                              parallelism=args.parallelism, workdir=Path(tmp))
        except RuntimeError as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
    readings = run.summary["records"]
    print(f"\n{readings:,} records, {len(run.truth):,} truth entries, {len(run.alerts):,} alert "
          f"records; detect job {run.seconds:.1f}s (JVM start included)\n")
    print(detection_score.table(run.scores))
    members = detection_score.member_outages(run.truth, run.alerts)
    print(f"\nOUTAGEs paged before their feeder's FEEDER_OUTAGE opened (not scored): "
          f"{len(members)}")
    if args.clean:
        print(f"clean fleet: {len(run.alerts)} alert records (expected 0)")
        return 0 if not run.alerts else 1
    weakest = min(min(s.precision, s.recall) for s in run.scores.values())
    return 0 if weakest >= 0.95 else 1


if __name__ == "__main__":
    sys.exit(main())
