"""`make demo`: the platform end to end on the embedded stack, then a summary table.

    python -m tools.demo [--meters 10000] [--hours 6] [--keep]

1. Starts what is not running: Kafka and PostgreSQL (`make up`) and the local standalone
   Flink cluster (`make cluster-up`, with its Prometheus reporter).
2. Simulates a fleet (replay, every anomaly type and data fault at the simulator's default
   rates, event time ending now) into this run's own topics (demo<tag>.*), with its ground
   truth, and loads its registry.
3. Submits the aggregate and detect jobs to the cluster with `flink run --detached`
   (parallelism 1 each: the local cluster has two slots) and shows their progress through the
   fleet's readings, from the offsets they commit.
4. Live: readings at --live-rate for --live-seconds over 2,000 more meters, 1% of them
   anomalous; each alert is timed from its reading's Kafka append to a read_committed
   consumer (CRITICAL on the pagers' topic, the others on meter.alerts).
5. Prints the summary: readings in, intervals written, dead letters by reason, late readings
   (from the jobs' metrics, scraped from the cluster's Prometheus endpoint), alerts by type and
   severity, alert latency, precision and recall per type against the fleet's truth.
6. Cancels both jobs and stops what it started; --keep leaves it all running and says where
   to look.

CONSUMPTION_SPIKE needs ~21 h of a meter's history and ZERO_CONSUMPTION a day, more than the
demo's few hours: their rates are 0 here; `python -m tools.score_detection --days 3` scores
all ten types.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from jobs.config import REPO_ROOT, ConfigError, JobConfig, load_config
from tools import detection_score, flink_cluster, stack
from tools.live_traffic import Collector, Lag, LiveProducer, percentile
from tools.processes import StackError
from tools.score_detection import isolated_config, read_alerts

QUARTER_HOUR_MS = 15 * 60_000
CATCH_UP_TIMEOUT_S = 1800
PROGRESS_EVERY_S = 5.0
LIVE_METERS = 2000
LIVE_ANOMALY_SHARE = 0.01
JOBS = ("aggregate", "detect")


def say(message: str) -> None:
    print(f"demo: {message}", flush=True)


class Demo:
    def __init__(self, args):
        self.args = args
        self.tag = f"demo{uuid.uuid4().hex[:6]}"
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.tag}-"))
        self.started_stack = self.started_cluster = False
        self.job_ids: dict[str, str] = {}
        self.config: JobConfig | None = None
        self.path: Path | None = None

    # ----------------------------------------------------------------- steps

    def start_services(self) -> None:
        base = load_config(self.args.config)
        if not stack.status_running(base):
            say("starting Kafka and PostgreSQL")
            stack.up(base)
            self.started_stack = True
        if not flink_cluster.cluster_pids():
            say("starting the local Flink cluster")
            flink_cluster.up()
            self.started_cluster = True

    def simulate(self) -> dict:
        self.path = isolated_config(Path(self.args.config), self.tag, self.workdir, "en50160")
        self.config = load_config(self.path)
        stack.create_topics(self.config)
        span_ms = int(self.args.hours * 3_600_000)
        end_ms = int(time.time() * 1000) // QUARTER_HOUR_MS * QUARTER_HOUR_MS
        start = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime((end_ms - span_ms) / 1000))
        say(f"simulating {self.args.meters:,} meters x {self.args.hours:g} h (to now) into "
            f"{self.config.topics.readings.name}")
        command = [sys.executable, "-m", "tools.simulate", "--mode", "replay",
                   "--meters", str(self.args.meters), "--days", str(self.args.hours / 24),
                   "--start", start, "--seed", str(self.args.seed), "--id-prefix",
                   f"{self.tag}:", "--config", str(self.path),
                   "--topic", self.config.topics.readings.name,
                   "--spike-rate", "0", "--zero-consumption-rate", "0",
                   "--registry", str(self.workdir / "registry.csv"),
                   "--truth", str(self.workdir / "truth.jsonl"),
                   "--summary", str(self.workdir / "summary.json")]
        subprocess.run(command, cwd=REPO_ROOT, check=True)
        from tools import registry

        registry.load(self.config, self.workdir / "registry.csv")
        return json.loads((self.workdir / "summary.json").read_text())

    def submit_jobs(self) -> None:
        for job in JOBS:
            say(f"submitting the {job} job to the cluster (flink run --detached)")
            self.job_ids[job] = flink_cluster.submit_detached(job, [
                "--config", str(self.path), "--group-id", self.group(job),
                "-D", "parallelism.default=1"])

    def group(self, job: str) -> str:
        return f"{self.tag}-{job}"

    def wait_caught_up(self, what: str) -> None:
        """Until both jobs have committed every offset of the readings topic, with a progress
        line every few seconds."""
        topic = self.config.topics.readings.name
        lags = {job: Lag(self.config, topic, self.group(job)) for job in JOBS}
        total = sum(lags["detect"].consumer.end_offsets(lags["detect"].partitions).values())
        started = shown = time.monotonic()
        try:
            while True:
                behind = {job: lag() for job, lag in lags.items()}
                if all(b == 0 for b in behind.values()):
                    break
                self.check_jobs_running()
                elapsed = time.monotonic() - started
                if elapsed > CATCH_UP_TIMEOUT_S:
                    raise StackError(f"the jobs did not finish {what} in "
                                     f"{CATCH_UP_TIMEOUT_S} s; see {flink_cluster.rest_url()}")
                if time.monotonic() - shown >= PROGRESS_EVERY_S:
                    shown = time.monotonic()
                    done = "  ".join(
                        f"{job} {total - b if b is not None else 0:>9,}"
                        f" / {total:,}" for job, b in behind.items())
                    say(f"  {what}: {done} readings  ({elapsed:4.0f} s)")
                time.sleep(1)
        finally:
            for lag in lags.values():
                lag.close()
        say(f"  {what}: both jobs have read all {total:,} readings "
            f"({time.monotonic() - started:.0f} s)")

    def check_jobs_running(self) -> None:
        for job, job_id in self.job_ids.items():
            state = flink_cluster.job_state(job_id)
            if state not in ("RUNNING", "CREATED", "INITIALIZING", "RESTARTING"):
                raise StackError(f"the {job} job is {state}: see its exceptions at "
                                 f"{flink_cluster.rest_url()}/#/job/running/{job_id}")

    def live(self) -> dict:
        """Live readings; returns latency samples (ms) by path and the expected alerts."""
        config, args = self.config, self.args
        say(f"live: {args.live_rate:,} readings/s for {args.live_seconds:g} s over "
            f"{LIVE_METERS:,} meters, {LIVE_ANOMALY_SHARE:.0%} anomalous")
        committed = Collector(config, config.topics.alerts.name, "read_committed")
        fast = Collector(config, config.topics.critical_alerts.name, "read_committed")
        producer = LiveProducer(config, config.topics.readings.name, f"{self.tag}-live",
                                LIVE_METERS, LIVE_ANOMALY_SHARE)
        try:
            # One reading per meter to warm its state, and a last gasp per partition.
            primed = LIVE_METERS + len(producer.prime())
            started, sent = time.monotonic(), 0
            while (elapsed := time.monotonic() - started) < args.live_seconds:
                due = int(elapsed * args.live_rate) + 1 - sent
                for _ in range(max(0, min(due, 100))):
                    producer.send_next()
                    sent += 1
                ahead = sent / args.live_rate - (time.monotonic() - started)
                if ahead > 0:
                    time.sleep(min(ahead, 0.005))
            producer.producer.flush()
            expected = producer.expected
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                committed.drain()
                fast.drain()
                if all(key in committed.first for key in expected):
                    break
                time.sleep(0.2)
        finally:
            producer.close()
            committed.close()
            fast.close()
        samples = {"CRITICAL, pagers' topic": [], "others, meter.alerts": []}
        for key, severity in expected.items():
            if severity == "CRITICAL" and key in fast.first:
                samples["CRITICAL, pagers' topic"].append(fast.first[key][0] - key[1])
            elif severity != "CRITICAL" and key in committed.first:
                samples["others, meter.alerts"].append(committed.first[key][0] - key[1])
        missing = sum(1 for key in expected if key not in committed.first)
        return {"sent": sent + primed, "samples": samples, "expected": len(expected),
                "missing": missing}

    def wait_intervals_stable(self) -> int:
        """Intervals in the table once the aggregate job's last windows are written."""
        import psycopg

        previous, stable_since = -1, time.monotonic()
        with psycopg.connect(**stack.pg_connect_kwargs(self.config)) as conn:
            while True:
                count = conn.execute("SELECT count(*) FROM meter_intervals WHERE meter_id LIKE %s",
                                     (f"{self.tag}%",)).fetchone()[0]
                conn.commit()
                if count != previous:
                    previous, stable_since = count, time.monotonic()
                # The JDBC sink flushes at each checkpoint (flink.checkpoint_interval).
                elif time.monotonic() - stable_since > 15:
                    return count
                time.sleep(1)

    def stop(self) -> None:
        for job, job_id in self.job_ids.items():
            with contextlib.suppress(StackError):
                flink_cluster.cancel(job_id)
                say(f"cancelled the {job} job")
        if self.started_cluster:
            flink_cluster.down()
        if self.started_stack:
            stack.down()

    def look_around(self) -> None:
        config, pg = self.config, self.config.postgres
        psql = stack.postgres_bin() / "psql"
        print(f"""
Still running (--keep). Look around:
  Flink web UI      {flink_cluster.rest_url()}   (jobs gridstream-aggregate, gridstream-detect)
  metrics           curl -s {' '.join(flink_cluster.prometheus_urls()[1:])} | grep gridstream
  alerts (Kafka)    .venv/bin/python -m tools.consume {config.topics.alerts.name} \\
                      --from-beginning --config {self.path}
  alerts (SQL)      {psql} -h {pg.host} -p {pg.port} -U {pg.user} {pg.database} -c \\
                      "SELECT type, severity, count(*) FROM alerts WHERE meter_id LIKE
                       '{self.tag}%' OR feeder_id LIKE '{self.tag}%' GROUP BY 1, 2"
  report            .venv/bin/python -m tools.report
Stop it all:        make cluster-down down""")


def print_summary(demo: Demo, summary: dict, live: dict, intervals: int,
                  metrics: dict, alerts: list, scores: dict) -> None:
    aggregate = metrics.get("gridstream-aggregate", {})
    detect = metrics.get("gridstream-detect", {})
    rows: list[tuple[str, str]] = []
    sent = summary["records"] + live["sent"]
    rows.append(("readings sent to Kafka", f"{sent:,} ({summary['records']:,} fleet replay, "
                                           f"{live['sent']:,} live)"))
    for job, values in (("aggregate", aggregate), ("detect", detect)):
        rows.append((f"readings in, {job} job", f"{values.get(('readings_in', ()), 0):,.0f}"))
    rows.append(("intervals written", f"{intervals:,} (meter_intervals)"))
    dead = {dict(labels).get("reason"): n for (name, labels), n in aggregate.items()
            if name == "dead_letters"}
    outcomes = summary["records_by_outcome"]
    rows.append(("dead letters", f"{sum(dead.values()):,.0f} "
                                 f"(simulator sent {outcomes['dead_letter']:,})"))
    rows += [(f"  reason {reason}", f"{n:,.0f}") for reason, n in sorted(dead.items())]
    rows.append(("late readings", f"{aggregate.get(('late_readings', ()), 0):,.0f} "
                                  f"(simulator delayed {outcomes['late']:,}; one the "
                                  f"watermark has not passed yet is on time)"))
    opened = collections.Counter((a.type, a.severity) for a in alerts if a.state == "OPEN")
    rows.append(("alerts opened", f"{sum(opened.values()):,} (meter.alerts, fleet and live)"))
    rows += [(f"  {type_} {severity}", f"{n:,}") for (type_, severity), n in sorted(opened.items())]
    for path, samples in live["samples"].items():
        ordered = sorted(samples)
        value = (f"p50 {percentile(ordered, 0.5):,.0f} ms  p99 {percentile(ordered, 0.99):,.0f} "
                 f"ms  ({len(ordered)} alerts)" if ordered else "no samples")
        rows.append((f"alert latency, {path}", value))
    if live["missing"]:
        rows.append(("live alerts not seen within 60 s", f"{live['missing']}"))
    width = max(len(name) for name, _ in rows) + 2
    print()
    for name, value in rows:
        print(f"  {name:<{width}}{value}")
    print("\n  detection against the fleet's ground truth:")
    shown = {t: s for t, s in scores.items() if s.expected or s.alerts}
    print("  " + detection_score.table(shown).replace("\n", "\n  "))
    print("  (CONSUMPTION_SPIKE and ZERO_CONSUMPTION need a day of history: "
          "python -m tools.score_detection --days 3)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.demo",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--config", default=str(REPO_ROOT / "conf" / "local.yaml"))
    parser.add_argument("--meters", type=int, default=10_000)
    parser.add_argument("--hours", type=float, default=6.0, help="simulated span, ending now")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--live-rate", type=int, default=1000, help="live readings/s")
    parser.add_argument("--live-seconds", type=float, default=30)
    parser.add_argument("--keep", action="store_true",
                        help="leave the stack, the cluster and both jobs running")
    args = parser.parse_args(argv)
    import psycopg
    from kafka.errors import KafkaError

    demo = Demo(args)
    stopped = False
    try:
        demo.start_services()
        summary = demo.simulate()
        demo.submit_jobs()
        demo.wait_caught_up("fleet replay")
        live = demo.live()
        demo.wait_caught_up("live readings")
        say("waiting for the last intervals to be written")
        intervals = demo.wait_intervals_stable()
        metrics = flink_cluster.job_metrics()
        alerts = read_alerts(demo.config)
        truth = [json.loads(line) for line in
                 (demo.workdir / "truth.jsonl").read_text().splitlines()]
        fleet = [a for a in alerts if (a.meter_id or a.feeder_id or "").startswith(f"{demo.tag}:")]
        print_summary(demo, summary, live, intervals, metrics, alerts,
                      detection_score.score(truth, fleet))
        if args.keep:
            demo.look_around()
            stopped = True
        return 0
    except (ConfigError, StackError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except KafkaError as err:
        print(f"error: Kafka failed ({type(err).__name__}: {err}): check the broker with "
              f"`make status`", file=sys.stderr)
        return 1
    except psycopg.Error as err:
        print(f"error: PostgreSQL failed ({type(err).__name__}: "
              f"{str(err).strip().splitlines()[0] if str(err).strip() else ''}): check it "
              f"with `make status`", file=sys.stderr)
        return 1
    except subprocess.CalledProcessError as err:
        print(f"error: {' '.join(err.cmd[:3])} failed (exit {err.returncode})", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ndemo: interrupted; stopping what it started", file=sys.stderr)
        return 130
    finally:
        if not stopped:
            demo.stop()


if __name__ == "__main__":
    sys.exit(main())
