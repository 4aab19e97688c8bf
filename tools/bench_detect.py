"""`make bench-detect`: the detect job's catch-up throughput side by side with a naive baseline,
and its alert latency at fixed live rates.

Catch-up. Reuses bench-aggregate's preloaded topic (default 100,000 meters x 6 hours, about
2.2M readings; preloaded once by tools/bench_aggregate.preload, so a rerun produces nothing)
and loads its registry, then runs over the whole topic from the start, in one sitting,
--repeat times (medians printed):

  detect job (Flink)   jobs/detect.py bounded, as deployed (validator, registry lookups, the
                       keyed Python functions, exactly-once alerts with the CRITICAL fast path,
                       the alerts table): by default submitted with `flink run` to the local
                       cluster (started if needed, stopped after if so), timed by the cluster
                       from submission to the end of the bounded input; with --engine embedded
                       in a MiniCluster, timed from submission (JVM start excluded)
  baseline             tools/detect_baseline.py: one Python process with kafka-python and the
                       same rules, timed from its start (registry load included) to its last
                       alert flushed
  reading ceiling      once, after the rounds: Flink reading the topic and nothing else (the
                       jobs' source with its per-partition watermark, into a blackhole, pure
                       SQL, embedded MiniCluster, timed from submission, its start-up
                       included): what no job on this machine can beat, to put the ratio to
                       the baseline in proportion (on a topic of seconds, start-up dominates)

Alerts go to fresh benchmark topics (deleted at the end) and the alerts table (upserts, so a
rerun rewrites the same rows). State bytes per meter: len(pickle.dumps((state, meta,
deadline))), the value the job keeps in its one ValueState, averaged over the baseline's meters
after its run.

Live latency. Per rate (--rates, default 1000 5000 20000 readings/s): a fresh readings topic,
the detect job started unbounded on it (submitted to the local cluster, or with --engine
embedded as a subprocess `python -m jobs.detect`), one normal reading per meter to warm its
state and lookup cache, then a last gasp (POWER_FAIL) from a warm-up meter on every partition:
the job is running once their OUTAGE alerts are readable. Then readings at the rate from a
paced kafka-python producer, round robin over --live-meters meters: --warmup seconds (a new
job's JIT, caches and first checkpoints; reported apart) and --duration seconds measured;
--anomaly-share of them anomalous (a last gasp or a severe sag: CRITICAL: on the fast-path
topic too; a sag or a frequency excursion: MAJOR), each cleared by the meter's next reading.
Latency of an alert = wall time at which a read_committed consumer (its own process) receives
it minus the Kafka timestamp of the reading that caused it (CreateTime, set by the producer at
send), matched by (meter_id, event_ts) == (meter, ts).
The baseline runs each rate too, after the job, for its latency side by side (kafka-python,
at-least-once, no checkpoints; --no-live-baseline skips it).
The job's lag is read from the offsets it commits at each checkpoint. The 5,000/s run's
samples go to .stack/bench/detect-latency.json (`python -m tools.report --latency`).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import copy
import dataclasses
import json
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from jobs.config import REPO_ROOT, ConfigError, JobConfig, load_config
from jobs.preflight import PreflightError, check_services
from tools import flink_cluster
from tools.bench_aggregate import bench_topic, preload
from tools.bench_ingest import ensure_topic, topic_size
from tools.job_progress import run_with_progress
from tools.live_traffic import (
    Collector,
    Lag,
    LiveProducer,
    percentile,
    stop_process_group,
)
from tools.processes import StackError

BENCH_DIR = REPO_ROOT / ".stack" / "bench"
LATENCY_FILE = BENCH_DIR / "detect-latency.json"
LATENCY_FILE_RATE = 5000
# Benchmark jobs checkpoint here, not next to the deployed jobs' checkpoints; removed after.
CHECKPOINTS = REPO_ROOT / ".stack" / "checkpoints" / "bench-detect"
CATCHUP_JOB_NAME = "bench-detect"
READY_TIMEOUT_S = 300
LAG_EVERY_S = 2.0
PROGRESS_EVERY_S = 10.0


# --------------------------------------------------------------------------- shared


def bench_config(raw: dict, directory: Path, name: str, topics: dict[str, tuple[str, int]]) -> Path:
    """A copy of the job config `raw` with these topics and the benchmark's checkpoint folder."""
    raw = copy.deepcopy(raw)
    raw["topics"] = {**raw.get("topics", {}),
                     **{key: {"name": topic, "partitions": partitions}
                        for key, (topic, partitions) in topics.items()}}
    flink = raw.setdefault("flink", {})
    flink["options"] = {**(flink.get("options") or {}),
                        "execution.checkpointing.dir": CHECKPOINTS.as_uri()}
    path = directory / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def delete_topics(config: JobConfig, topics: list[str]) -> None:
    from kafka import KafkaAdminClient

    from tools.stack import kafka_python_kwargs

    admin = KafkaAdminClient(**kafka_python_kwargs(config))
    try:
        admin.delete_topics(topics, raise_errors=False)
    except Exception as err:  # cleaning up must not hide the figures
        print(f"  (could not delete topics {', '.join(topics)}: {err})", file=sys.stderr)
    finally:
        admin.close()


def count_alerts(config: JobConfig, topic: str, timeout_s: float = 60) -> collections.Counter:
    """Committed alerts on `topic` by type (what a read_committed consumer sees)."""
    from kafka import KafkaConsumer, TopicPartition

    from tools.stack import kafka_python_kwargs

    consumer = KafkaConsumer(**kafka_python_kwargs(config), group_id=None,
                             enable_auto_commit=False, isolation_level="read_committed")
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    ends = consumer.end_offsets(partitions)
    counts: collections.Counter = collections.Counter()
    deadline = time.monotonic() + timeout_s
    while (any(consumer.position(tp) < ends[tp] for tp in partitions)
           and time.monotonic() < deadline):
        for records in consumer.poll(timeout_ms=500).values():
            counts.update(json.loads(record.value)["type"] for record in records)
    consumer.close()
    return counts


# --------------------------------------------------------------------------- catch-up


def run_flink(config_path: str, group: str) -> float:
    """The detect job bounded, built as `python -m jobs.detect --bounded` builds it, in this
    process; returns seconds from submission to the end of the input."""
    from jobs import detect
    from jobs.config import with_flink_options
    from jobs.ingestion import READINGS_SOURCE, readings_source_ddl
    from jobs.runtime import connector_jars, create_table_env

    config = detect.job_config(with_flink_options(load_config(config_path),
                                                  ["restart-strategy.type=none"]))
    connector_jars()
    check_services(config, config_path)
    t_env = create_table_env(config, CATCHUP_JOB_NAME)
    t_env.execute_sql(readings_source_ddl(config, bounded=True, group_id=group))
    sinks = detect.declare_sinks(t_env, config, transactional_id_prefix=group)
    statements = detect.build_pipeline(t_env, READINGS_SOURCE, sinks, config)
    started = time.monotonic()
    statements.execute().wait()
    return time.monotonic() - started


def run_ceiling(config_path: str, group: str) -> float:
    """Flink reading the readings topic and nothing else: the source with its per-partition
    watermark, as every job declares it, into a blackhole (pure SQL, no Python, no state).
    No job on this machine reads faster; returns seconds from submission to the end."""
    from jobs.config import with_flink_options
    from jobs.ingestion import READINGS_SOURCE, readings_source_ddl
    from jobs.runtime import create_table_env

    config = with_flink_options(load_config(config_path), ["restart-strategy.type=none"])
    t_env = create_table_env(config, f"{CATCHUP_JOB_NAME}-ceiling")
    t_env.execute_sql(readings_source_ddl(config, bounded=True, group_id=group))
    t_env.execute_sql("CREATE TABLE ceiling_sink (n INT) WITH ('connector' = 'blackhole')")
    started = time.monotonic()
    t_env.execute_sql(
        f"INSERT INTO ceiling_sink SELECT CHAR_LENGTH(`value`) FROM {READINGS_SOURCE}").wait()
    return time.monotonic() - started


def _last_json(out: subprocess.CompletedProcess, what: str) -> dict:
    if out.returncode != 0:
        print(out.stdout[-2000:], out.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"error: {what} failed (exit {out.returncode})")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_flink_sampled(config: JobConfig, path: Path, topic: str,
                      engine: str) -> tuple[float, float | None]:
    """The detect job bounded over `topic`, with progress lines: run_flink in a subprocess
    (embedded), or `flink run` of jobs.detect on the local cluster, timed by the cluster from
    submission to the end (cluster). Returns its seconds, and its rate once reading
    (tools.job_progress.JobRun.steady_rate)."""
    group = f"bench-detect-{uuid.uuid4().hex[:8]}"
    if engine == "embedded":
        run = run_with_progress([sys.executable, "-m", "tools.bench_detect", "--config",
                                 str(path), "--run-flink", group], config, topic, group,
                                "detect job")
        return _last_json(run.result, "the detect job")["seconds"], run.steady_rate()
    command = flink_cluster.submission("detect", [
        "--config", str(path), "--bounded", "--group-id", group,
        "-D", "restart-strategy.type=none", "-D", f"pipeline.name={CATCHUP_JOB_NAME}"],
        detached=False)
    try:
        run = run_with_progress(command, config, topic, group, "detect job",
                                env=flink_cluster.cluster_env())
    except BaseException:  # Ctrl-C, or SIGTERM's exit
        # Stopping the attached `flink run` client leaves its bounded job running.
        for job_id in flink_cluster.active_jobs(CATCHUP_JOB_NAME):
            flink_cluster.cancel(job_id)
        raise
    found = flink_cluster.SUBMITTED_ID.search(run.result.stdout)
    details = flink_cluster.job_details(found.group(1)) if found else None
    if run.result.returncode != 0 or not details or details.get("state") != "FINISHED":
        print(run.result.stdout[-2000:], run.result.stderr[-3000:], sep="\n", file=sys.stderr)
        raise SystemExit(f"error: the detect job failed on the cluster (flink run exit "
                         f"{run.result.returncode}, state "
                         f"{details.get('state') if details else 'unknown'})")
    return details["duration"] / 1000, run.steady_rate()


def catch_up(config: JobConfig, raw: dict, args, tmp: Path) -> None:
    topic = bench_topic(args.meters, args.days)
    workdir = BENCH_DIR / topic
    workdir.mkdir(parents=True, exist_ok=True)
    preload(config, topic, args.meters, args.days, workdir)
    readings = topic_size(config, topic)

    from tools import registry

    registry.load(config, workdir / "registry.csv")
    partitions = config.topics.readings.partitions
    alert_partitions = config.topics.alerts.partitions
    seconds: dict[str, list[float]] = {"flink": [], "baseline": []}
    alerts: dict[str, collections.Counter] = {}
    baseline: dict = {}
    steady: list[float] = []
    for round_ in range(args.repeat):
        tag = f"bench.detect.{uuid.uuid4().hex[:6]}"
        paths, created = {}, []
        for system in ("flink", "baseline"):
            names = {"readings": (topic, partitions),
                     "alerts": (f"{tag}.{system}.alerts", alert_partitions),
                     "dead_letters": (f"{tag}.{system}.dlq", 1)}
            for name, count in list(names.values())[1:]:
                ensure_topic(config, name, count)
                created.append(name)
            paths[system] = bench_config(raw, tmp, f"catchup-{system}", names)
        try:
            flink_s, flink_steady = run_flink_sampled(config, paths["flink"], topic,
                                                      args.engine)
            seconds["flink"].append(flink_s)
            if flink_steady is not None:
                steady.append(flink_steady)
            alerts["flink"] = count_alerts(config, f"{tag}.flink.alerts")
            print(f"  round {round_ + 1}: {'detect job (Flink)':<30} {flink_s:7.1f}s", flush=True)
            out = subprocess.run([sys.executable, "-m", "tools.detect_baseline", "--config",
                                  str(paths["baseline"]), "--bounded"],
                                 cwd=REPO_ROOT, capture_output=True, text=True)
            baseline = _last_json(out, "the baseline")
            seconds["baseline"].append(baseline["seconds"])
            alerts["baseline"] = collections.Counter(baseline["alerts_by_type"])
            print(f"  round {round_ + 1}: {'baseline (one Python process)':<30} "
                  f"{baseline['seconds']:7.1f}s", flush=True)
        finally:
            delete_topics(config, created)
            shutil.rmtree(CHECKPOINTS, ignore_errors=True)

    out = subprocess.run([sys.executable, "-m", "tools.bench_detect", "--config",
                          str(paths["flink"]), "--run-ceiling",
                          f"bench-ceiling-{uuid.uuid4().hex[:8]}"],
                         cwd=REPO_ROOT, capture_output=True, text=True)
    ceiling = readings / _last_json(out, "the reading ceiling")["seconds"]
    flink = readings / statistics.median(seconds["flink"])
    naive = readings / statistics.median(seconds["baseline"])
    print()
    print(f"detect, catch-up: {readings:,} records over {args.meters:,} meters ({topic}), "
          f"{partitions} partitions, {engine_label(args.engine)}, "
          f"parallelism {config.flink.parallelism}, python "
          f"{config.flink.python_execution_mode} mode, checkpoint every "
          f"{int(config.detect.checkpoint_interval)} ms, median of {args.repeat}")
    print(f"  {'detect job (Flink)':<32} {flink:>10,.0f} readings/s   "
          f"{sum(alerts['flink'].values()):>7,} alerts")
    if steady:
        print(f"  {'  once reading (commits)':<32} {statistics.median(steady):>10,.0f} "
              f"readings/s   (from its first committed offsets: start-up left out)")
    print(f"  {'baseline (one Python process)':<32} {naive:>10,.0f} readings/s   "
          f"{sum(alerts['baseline'].values()):>7,} alerts")
    print(f"  {'Flink / baseline':<32} {flink / naive:>10.2f}x   (issue 5 target: >= 5x)")
    print(f"  {'reading ceiling':<32} {ceiling:>10,.0f} readings/s   {ceiling / naive:.2f}x "
          f"the baseline: Flink reading the topic and nothing else (source and watermark, "
          f"pure SQL, blackhole, embedded MiniCluster, timed from submission like the job)")
    differ = sorted(t for t in set(alerts["flink"]) | set(alerts["baseline"])
                    if alerts["flink"][t] != alerts["baseline"][t])
    if differ:
        print("  alerts that differ by type (Flink / baseline): " + ", ".join(
            f"{t} {alerts['flink'][t]}/{alerts['baseline'][t]}" for t in differ))
    else:
        print("  same alerts by type from both")
    print(f"  state per meter: {baseline['state_bytes_mean']:,.0f} bytes mean, "
          f"{baseline['state_bytes_max']:,} max, over {baseline['meters']:,} meters: "
          f"len(pickle.dumps((state, meta, deadline))), the job's one ValueState value "
          f"(RocksDB key, timers and overhead not included)")


# --------------------------------------------------------------------------- live latency


@dataclasses.dataclass
class LiveResult:
    rate: int
    system: str
    sent: int = 0
    seconds: float = 0.0
    ready_s: float = 0.0
    expected: int = 0
    samples: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    uncommitted_critical: list[float] = dataclasses.field(default_factory=list)
    fast_critical: list[float] = dataclasses.field(default_factory=list)
    missing: int = 0
    unexpected: int = 0
    repeats: int = 0
    lags: list[tuple[float, int]] = dataclasses.field(default_factory=list)
    # Readings sent before this wall time (ms) are the warm-up: their alerts are reported
    # apart from the steady state's.
    steady_from_ms: float = 0.0
    warmup: dict[str, list[float]] = dataclasses.field(default_factory=dict)
    drained_s: float | None = None
    error: str | None = None
    note: str | None = None


def live_run(config: JobConfig, raw: dict, args, tmp: Path, rate: int,
             system: str) -> LiveResult:
    result = LiveResult(rate, system)
    tag = f"bench-live-{uuid.uuid4().hex[:6]}"
    topics = {"readings": (f"{tag}.readings", config.topics.readings.partitions),
              "alerts": (f"{tag}.alerts", config.topics.alerts.partitions),
              "critical_alerts": (f"{tag}.alerts.critical",
                                  config.topics.critical_alerts.partitions),
              "dead_letters": (f"{tag}.dlq", 1)}
    path = bench_config(raw, tmp, f"live-{rate}-{system}", topics)
    group = f"{tag}-{system}"
    job_args = ["--config", str(path), "--group-id", group, "-D", "restart-strategy.type=none"]
    if system == "flink":
        command = [sys.executable, "-m", "jobs.detect", *job_args]
    else:
        command = [sys.executable, "-m", "tools.detect_baseline", "--config", str(path)]
    BENCH_DIR.mkdir(parents=True, exist_ok=True)
    log_path = BENCH_DIR / f"detect-live-{rate}-{system}.log"
    readings_topic, alerts_topic = topics["readings"][0], topics["alerts"][0]
    # Undone in reverse order: the job stops first, the topics and alert rows go last.
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(_remove_live_traces, config, tag, [n for n, _ in topics.values()])
        for name, partitions in topics.values():
            ensure_topic(config, name, partitions)
        committed = Collector(config, alerts_topic, "read_committed")
        cleanup.callback(committed.close)
        uncommitted = Collector(config, alerts_topic, "read_uncommitted")
        cleanup.callback(uncommitted.close)
        # The pagers' topic: CRITICAL alerts written at once (detect.critical_fast_path).
        fast = Collector(config, topics["critical_alerts"][0], "read_committed")
        cleanup.callback(fast.close)
        producer = LiveProducer(config, readings_topic, tag, args.live_meters,
                                args.anomaly_share)
        cleanup.callback(producer.close)
        lag = Lag(config, readings_topic, group) if system == "flink" else None
        if lag is not None:
            cleanup.callback(lag.close)
        if system == "flink" and args.engine == "cluster":
            job = ClusterJob(flink_cluster.submit_detached("detect", job_args))
            log_path = flink_cluster.FLINK_STACK / "log"
            # Cancelled jobs keep their last checkpoint (conf/flink); a benchmark's is no use.
            cleanup.callback(shutil.rmtree, flink_cluster.FLINK_STACK / "checkpoints" / job.job_id,
                             ignore_errors=True)
            cleanup.callback(flink_cluster.cancel, job.job_id)
        else:
            with log_path.open("w") as log:
                job = subprocess.Popen(command, cwd=REPO_ROOT, stdout=log,
                                       stderr=subprocess.STDOUT, start_new_session=True)
            cleanup.callback(stop_process_group, job)
        started = time.monotonic()
        warmups = set(producer.prime())
        while not warmups <= {key[0] for key in committed.first}:
            if not committed.process.is_alive():
                raise SystemExit("error: the alerts consumer process died")
            if job.poll() is not None or time.monotonic() - started > READY_TIMEOUT_S:
                result.error = (f"the job {'exited' if job.poll() is not None else 'was not'} "
                                f"ready after {time.monotonic() - started:.0f} s; see {log_path}")
                return result
            time.sleep(0.2)
            committed.drain()
        result.ready_s = time.monotonic() - started
        print(f"  {rate:,}/s {system}: ready after {result.ready_s:.1f} s (start-up and "
              f"{args.live_meters:,} warm-up readings); producing for {args.warmup:g} s of "
              f"warm-up, then {args.duration:g} s measured", flush=True)
        result.steady_from_ms = time.time() * 1000 + args.warmup * 1000
        _produce(producer, committed, uncommitted, lag, rate, args.warmup + args.duration,
                 result)
        _drain(producer, committed, uncommitted, lag, job, args.drain_timeout, result)
        fast.drain()
    _score(producer, committed, uncommitted, fast, result)
    return result


class ClusterJob:
    """A job on the local cluster, answering poll() as the embedded job's Popen does."""

    def __init__(self, job_id: str):
        self.job_id = job_id
        self.returncode: int | None = None

    def poll(self) -> int | None:
        state = flink_cluster.job_state(self.job_id)
        if state in flink_cluster.ENDED_STATES:
            self.returncode = 0 if state == "FINISHED" else 1
        return self.returncode


def engine_label(engine: str) -> str:
    if engine == "embedded":
        return "embedded MiniCluster (one JVM)"
    return (f"local cluster ({flink_cluster.taskmanagers()} TaskManagers x 1 slot, "
            f"as `flink run` deploys)")


def _remove_live_traces(config: JobConfig, tag: str, topics: list[str]) -> None:
    """A live run's topics, checkpoints and rows in the alerts table."""
    import psycopg

    from tools.stack import pg_connect_kwargs

    delete_topics(config, topics)
    shutil.rmtree(CHECKPOINTS, ignore_errors=True)
    with psycopg.connect(**pg_connect_kwargs(config), autocommit=True) as conn:
        conn.execute("DELETE FROM alerts WHERE meter_id LIKE %s", (f"{tag}-%",))


def _produce(producer: LiveProducer, committed: Collector, uncommitted: Collector, lag,
             rate: int, duration: float, result: LiveResult) -> None:
    chunk = max(1, int(rate * 0.01))
    started = time.monotonic()
    next_lag, next_report = LAG_EVERY_S, PROGRESS_EVERY_S
    while (elapsed := time.monotonic() - started) < duration:
        burst = min(int(elapsed * rate) + 1 - result.sent, chunk)
        for _ in range(burst):
            producer.send_next()
        result.sent += max(0, burst)
        if elapsed >= next_lag:
            next_lag += LAG_EVERY_S
            committed.drain()
            uncommitted.drain()
            if lag is not None and (behind := lag()) is not None:
                result.lags.append((elapsed, behind))
        if elapsed >= next_report:
            next_report += PROGRESS_EVERY_S
            behind = f"{result.lags[-1][1]:,}" if result.lags else "n/a"
            print(f"    {elapsed:4.0f} s: sent {result.sent:,} ({result.sent / elapsed:,.0f}/s), "
                  f"alerts read {len(committed.first):,}, job lag {behind} readings", flush=True)
        ahead = result.sent / rate - (time.monotonic() - started)
        if ahead > 0:
            time.sleep(min(ahead, 0.005))
    producer.producer.flush()
    result.seconds = time.monotonic() - started


def _drain(producer: LiveProducer, committed: Collector, uncommitted: Collector, lag, job,
           timeout_s: float, result: LiveResult) -> None:
    """Wait for every expected alert (or the timeout): what a job that fell behind still owes."""
    started = time.monotonic()
    expected = producer.expected.keys()
    if lag is not None and (behind := lag()) is not None:
        result.lags.append((result.seconds, behind))
    while time.monotonic() - started < timeout_s and job.poll() is None:
        committed.drain()
        uncommitted.drain()
        if all(key in committed.first for key in expected):
            result.drained_s = time.monotonic() - started
            break
        time.sleep(0.2)
    if job.poll() is not None:
        result.note = f"the job exited during the run (code {job.returncode})"
    time.sleep(0.5)  # repeats and stragglers


def _score(producer: LiveProducer, committed: Collector, uncommitted: Collector,
           fast: Collector, result: LiveResult) -> None:
    expected = producer.expected
    result.expected = len(expected)
    # The reading's ts is its Kafka CreateTime, so key[1] is when it was sent.
    steady = {key for key in expected if key[1] >= result.steady_from_ms}
    samples: dict[str, list[float]] = {"CRITICAL": [], "other": []}
    warmup: dict[str, list[float]] = {"fast": [], "meter.alerts": []}
    result.fast_critical = [row[0] - key[1] for key, row in fast.first.items()
                            if key in steady and row[4] == "CRITICAL"]
    warmup["fast"] = [row[0] - key[1] for key, row in fast.first.items()
                      if key in expected and key not in steady and row[4] == "CRITICAL"]
    for key, row in committed.first.items():
        if key in steady:
            samples["CRITICAL" if row[4] == "CRITICAL" else "other"].append(row[0] - key[1])
        elif key in expected:
            warmup["meter.alerts"].append(row[0] - key[1])
        elif not key[0].startswith(f"{producer.tag}-w"):
            result.unexpected += 1
    result.samples = samples
    result.warmup = warmup
    result.uncommitted_critical = [row[0] - key[1] for key, row in uncommitted.first.items()
                                   if key in steady and row[4] == "CRITICAL"]
    result.missing = sum(1 for key in expected if key not in committed.first)
    result.repeats = committed.repeats


def _stats(samples: list[float]) -> str:
    if not samples:
        return "no samples"
    ordered = sorted(samples)
    return (f"p50 {percentile(ordered, 0.50):7,.0f}  p95 {percentile(ordered, 0.95):7,.0f}  "
            f"p99 {percentile(ordered, 0.99):7,.0f}  max {ordered[-1]:7,.0f} ms")


def print_live(result: LiveResult, args) -> None:
    label = "detect job (Flink)" if result.system == "flink" else "baseline (one Python process)"
    print(f"  {result.rate:,} readings/s, {label}")
    if result.error:
        print(f"    failed: {result.error}")
        return
    print(f"    sent {result.sent:,} readings in {result.seconds:.1f} s "
          f"({result.sent / result.seconds:,.0f}/s achieved); job ready after "
          f"{result.ready_s:.1f} s")
    if args.warmup:
        for path, samples in result.warmup.items():
            print(f"    {'warm-up (first ' + format(args.warmup, 'g') + ' s), ' + path:<38} "
                  f"{len(samples):>6,} alerts  {_stats(samples)}")
        print("    measured after the warm-up:")
    if result.system == "flink":
        paths = {"CRITICAL": "CRITICAL on meter.alerts (transactional)",
                 "other": "MAJOR on meter.alerts (transactional)"}
    else:
        paths = {"CRITICAL": "CRITICAL (at-least-once)", "other": "MAJOR (at-least-once)"}
    for key, name in paths.items():
        print(f"    {name:<38} {len(result.samples[key]):>6,} alerts  "
              f"{_stats(result.samples[key])}")
    if result.system == "flink":
        print(f"    {'CRITICAL on the fast-path topic':<38} "
              f"{len(result.fast_critical):>6,} alerts  {_stats(result.fast_critical)}")
        print(f"    {'CRITICAL, read_uncommitted consumer':<38} "
              f"{len(result.uncommitted_critical):>6,} alerts  "
              f"{_stats(result.uncommitted_critical)}")
    drained = (f"all in {result.drained_s:.1f} s after the last reading"
               if result.drained_s is not None else
               f"{result.missing:,} still missing {args.drain_timeout:g} s after the last reading")
    print(f"    expected {result.expected:,} alerts: {drained}; {result.unexpected} "
          f"unexpected, {result.repeats} repeated")
    if result.note:
        print(f"    {result.note}")
    if result.lags:
        shown = [*result.lags[:-1:max(1, len(result.lags) // 8)], result.lags[-1]]
        series = ", ".join(f"{behind:,} at {at:.0f} s" for at, behind in shown)
        print(f"    job lag, readings behind the offsets it commits at each checkpoint: {series}")


def write_latency_file(result: LiveResult, args, config: JobConfig) -> None:
    # What operators see: CRITICAL alerts on the pagers' topic, the others on meter.alerts.
    samples = result.fast_critical + result.samples["other"]
    label = (f"detect job, {result.rate:,} readings/s for {args.duration:g} s over "
             f"{args.live_meters:,} meters, {args.anomaly_share:.1%} anomalous: "
             f"{len(samples):,} alerts (CRITICAL on the fast-path topic, the others "
             f"transactional on meter.alerts), read_committed, "
             f"checkpoint {int(config.detect.checkpoint_interval)} ms")
    LATENCY_FILE.parent.mkdir(parents=True, exist_ok=True)
    LATENCY_FILE.write_text(json.dumps({"samples_ms": [round(s, 1) for s in samples],
                                        "label": label}))
    print(f"  latency samples of the {result.rate:,}/s run: {LATENCY_FILE}")


def live(config: JobConfig, raw: dict, args, tmp: Path) -> None:
    systems = ["flink", "baseline"] if args.live_baseline else ["flink"]
    print(f"detect, live latency: {args.live_meters:,} meters, {args.anomaly_share:.1%} "
          f"anomalous readings, {config.topics.readings.partitions} partitions, "
          f"{engine_label(args.engine)}, parallelism "
          f"{config.flink.parallelism}, python {config.flink.python_execution_mode} mode, "
          f"checkpoint every {int(config.detect.checkpoint_interval)} ms, "
          f"delivery {config.detect.delivery}, CRITICAL fast path "
          f"{'on' if config.detect.critical_fast_path else 'off'}", flush=True)
    results = []
    for rate in args.rates:
        for system in systems:
            results.append(live_run(config, raw, args, tmp, rate, system))
    print()
    for result in results:
        print_live(result, args)
    for result in results:
        if result.system == "flink" and result.rate == LATENCY_FILE_RATE and not result.error:
            write_latency_file(result, args, config)


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bench_detect",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO_ROOT / "conf" / "local.yaml"))
    parser.add_argument("--meters", type=int, default=100_000,
                        help="catch-up: fleet of bench-aggregate's preloaded topic")
    parser.add_argument("--days", type=float, default=0.25,
                        help="catch-up: span of bench-aggregate's preloaded topic")
    parser.add_argument("--repeat", type=int, default=1, help="catch-up rounds (medians)")
    parser.add_argument("--rates", type=int, nargs="+", default=[1000, 5000, 20000],
                        metavar="N", help="live: readings/s, one run each")
    parser.add_argument("--duration", type=float, default=60,
                        help="live: seconds measured per rate, after the warm-up")
    parser.add_argument("--warmup", type=float, default=20,
                        help="live: seconds at the rate before the measured ones (a new job's "
                             "JIT, caches and first checkpoints), reported apart")
    parser.add_argument("--live-meters", type=int, default=10_000,
                        help="live: meters the readings go round")
    parser.add_argument("--anomaly-share", type=float, default=0.01,
                        help="live: share of readings that raise an alert (and as many clear)")
    parser.add_argument("--drain-timeout", type=float, default=60,
                        help="live: seconds to wait for outstanding alerts after the last reading")
    parser.add_argument("--live-baseline", action=argparse.BooleanOptionalAction,
                        default=True, help="live: run the baseline at each rate too, side by "
                        "side with the job (default; --no-live-baseline skips it)")
    parser.add_argument("--engine", choices=("cluster", "embedded"), default="cluster",
                        help="run the detect job on the local standalone cluster, started if "
                             "needed and stopped after (default), or embedded in a MiniCluster")
    parser.add_argument("--skip-catchup", action="store_true")
    parser.add_argument("--skip-live", action="store_true")
    parser.add_argument("--run-flink", metavar="GROUP", help=argparse.SUPPRESS)
    parser.add_argument("--run-ceiling", metavar="GROUP", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.run_flink:
        print(json.dumps({"seconds": run_flink(args.config, args.run_flink)}))
        return 0
    if args.run_ceiling:
        print(json.dumps({"seconds": run_ceiling(args.config, args.run_ceiling)}))
        return 0

    # A SIGTERM unwinds like Ctrl-C: jobs stopped, benchmark topics deleted.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        config = load_config(args.config)
        check_services(config, args.config)
    except (ConfigError, PreflightError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    raw = yaml.safe_load(Path(args.config).read_text())
    try:
        run_benchmarks(config, raw, args)
    except KeyboardInterrupt:
        print("interrupted: jobs stopped, benchmark topics deleted", file=sys.stderr)
        return 130
    return 0


def run_benchmarks(config: JobConfig, raw: dict, args) -> None:
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as cleanup:
        if args.engine == "cluster" and not flink_cluster.overview():
            try:
                flink_cluster.up()
            except StackError as err:
                raise SystemExit(f"error: {err}") from None
            cleanup.callback(flink_cluster.down)
        if not args.skip_catchup:
            catch_up(config, raw, args, Path(tmp))
            print()
        if not args.skip_live:
            live(config, raw, args, Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
