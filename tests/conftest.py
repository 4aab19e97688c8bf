"""Fixtures that start the real parts: the local Kafka broker and PostgreSQL server (and, for
cluster tests, the standalone Flink cluster). Nothing is mocked. A service a fixture starts is
stopped at the end of the session; one that was already running is left alone."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from jobs.config import REPO_ROOT, JobConfig, load_config
from tools import flink_cluster, stack

LOCAL_CONFIG = REPO_ROOT / "conf" / "local.yaml"
MIN = 60_000  # one minute in milliseconds
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z: scenario time starts here


@pytest.fixture(scope="session")
def local_stack() -> JobConfig:
    config = load_config(LOCAL_CONFIG)
    was_running = stack.status_running(config)
    stack.up(config)
    yield config
    if not was_running:
        stack.kafka_down()
        stack.postgres_down()


@pytest.fixture(scope="session")
def local_flink_cluster(local_stack) -> str:
    was_running = bool(flink_cluster.cluster_pids())
    flink_cluster.up()
    yield flink_cluster.rest_url()
    if not was_running:
        flink_cluster.down()


@dataclass(frozen=True)
class Scenario:
    """An isolated slice of the real stack: its own topics and its own meter ids."""

    config: JobConfig
    config_path: Path
    tag: str
    tmp: Path

    def meter(self, n: int) -> str:
        return f"{self.tag}-m{n:04d}"

    def meter_named(self, name: str) -> str:
        return f"{self.tag}-{name}"

    def create_topic(self, name: str, partitions: int = 1) -> str:
        from kafka import KafkaAdminClient
        from kafka.admin import NewTopic

        admin = KafkaAdminClient(**stack.kafka_python_kwargs(self.config))
        admin.create_topics([NewTopic(name, partitions, 1)])
        admin.close()
        return name

    def produce(self, payloads: list[tuple[str, bytes]], partition: int | None = None,
                compression: str | None = None) -> None:
        """Send to the readings topic; with `partition`, all into that one partition, in order."""
        from kafka import KafkaProducer

        producer = KafkaProducer(**stack.kafka_python_kwargs(self.config), linger_ms=5,
                                 compression_type=compression)
        for key, value in payloads:
            producer.send(self.config.topics.readings.name, key=key.encode(), value=value,
                          partition=partition)
        producer.flush()
        producer.close()

    def consume(self, topic: str, expected: int, timeout_s: float = 30,
                read_committed: bool = False) -> list[dict]:
        """Every record on `topic` (JSON values), waiting until at least `expected` arrived."""
        import time

        from kafka import KafkaConsumer

        consumer = KafkaConsumer(topic, **stack.kafka_python_kwargs(self.config),
                                 auto_offset_reset="earliest", enable_auto_commit=False,
                                 consumer_timeout_ms=1000,
                                 isolation_level="read_committed" if read_committed
                                 else "read_uncommitted")
        records, deadline = [], time.monotonic() + timeout_s
        while len(records) < expected and time.monotonic() < deadline:
            records.extend(json.loads(m.value) for m in consumer)
        for message in consumer:  # whatever is left, so extra records are seen too
            records.append(json.loads(message.value))
        consumer.close()
        return records

    def query(self, sql: str, *params) -> list[tuple]:
        import psycopg

        with psycopg.connect(**stack.pg_connect_kwargs(self.config)) as conn:
            return conn.execute(sql, params).fetchall()

    def job_command(self, job: str, *args: str, parallelism: int = 1,
                    group_id: str | None = None) -> list[str]:
        return [sys.executable, "-m", f"jobs.{job}", "--config", str(self.config_path),
                "--group-id", group_id or f"{self.tag}-{uuid.uuid4().hex[:6]}",
                "-D", f"parallelism.default={parallelism}",
                # A failure must fail the test, not retry forever.
                "-D", "restart-strategy.type=none", *args]

    def run_job(self, job: str, *args: str, parallelism: int = 1,
                group_id: str | None = None) -> None:
        """Run jobs/<job>.py in an embedded MiniCluster over what the topic holds now."""
        command = self.job_command(job, "--bounded", *args, parallelism=parallelism,
                                   group_id=group_id)
        result = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True,
                                timeout=600)
        assert result.returncode == 0, f"{job} failed:\n{result.stdout}\n{result.stderr[-4000:]}"

    @contextlib.contextmanager
    def running_job(self, job: str, *args: str, parallelism: int = 1):
        """jobs/<job>.py running unbounded in a MiniCluster for the duration of the block."""
        process = subprocess.Popen(self.job_command(job, *args, parallelism=parallelism),
                                   cwd=REPO_ROOT, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, start_new_session=True)
        try:
            yield process
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _merge(base: dict, overrides: dict) -> dict:
    merged = dict(base)
    for key, value in overrides.items():
        merged[key] = (_merge(base.get(key, {}), value) if isinstance(value, dict)
                       else value)
    return merged


def _scenario(tmp_path: Path, partitions: int, overrides: dict | None = None) -> Scenario:
    tag = f"t{uuid.uuid4().hex[:8]}"
    raw = _merge(yaml.safe_load(LOCAL_CONFIG.read_text()), overrides or {})
    raw["topics"] = stack.isolated_topics(tag, partitions)
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(raw))
    scenario = Scenario(load_config(path), path, tag, tmp_path)
    stack.create_topics(scenario.config)
    return scenario


@pytest.fixture
def scenario(local_stack, tmp_path) -> Scenario:
    """Fresh topics (readings with 2 partitions) and a unique meter-id prefix."""
    return _scenario(tmp_path, partitions=2)


@pytest.fixture(scope="module")
def module_scenario(local_stack, tmp_path_factory):
    """A factory of scenarios shared by a module's tests (one job run, many assertions)."""
    def make(name: str, partitions: int = 2, overrides: dict | None = None) -> Scenario:
        return _scenario(tmp_path_factory.mktemp(name), partitions, overrides)
    return make


def reading(meter: str, ts_ms: int, **fields) -> tuple[str, bytes]:
    """A meter.readings record (key, JSON value) as a meter would send it."""
    body = {"meter_id": meter, "ts": ts_ms, "kwh_import": 100.0, **fields}
    return meter, json.dumps(body).encode()
