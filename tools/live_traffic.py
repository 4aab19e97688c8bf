"""Live traffic against a running detect job, and what comes out: a paced producer of readings
over a fleet of meters with a share of anomalies (each cleared by the meter's next reading),
consumers that timestamp every alert as it becomes readable, and the job's lag from the
offsets it commits. Used by `make bench-detect` (latency at fixed rates) and `make demo`.

Latency of an alert = wall time at which a consumer (its own process) receives it minus the
Kafka timestamp of the reading that caused it (CreateTime, set by the producer at send),
matched by (meter_id, event_ts) == (meter, ts).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import multiprocessing
import os
import queue
import random
import signal
import subprocess
import time

from jobs.config import JobConfig

LINGER_MS = 5  # as the simulator's live mode: a last gasp must not wait for a batch to fill


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest rank: the smallest value with at least q of the samples at or below it."""
    return sorted_values[max(0, min(len(sorted_values) - 1,
                                    math.ceil(q * len(sorted_values)) - 1))]


def stop_process_group(process: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Lag:
    """Readings not yet processed by the job: end offsets minus the offsets it commits when
    a checkpoint completes (so up to a checkpoint interval behind)."""

    def __init__(self, config: JobConfig, topic: str, group: str):
        from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

        from tools.stack import kafka_python_kwargs

        client = kafka_python_kwargs(config)
        self.admin, self.consumer = KafkaAdminClient(**client), KafkaConsumer(**client)
        self.partitions = [TopicPartition(topic, p)
                           for p in sorted(self.consumer.partitions_for_topic(topic))]
        self.group = group

    def __call__(self) -> int | None:
        try:
            committed = self.admin.list_group_offsets(self.group).get(self.group, {})
            ends = self.consumer.end_offsets(self.partitions)
        except Exception:
            return None
        return sum(end - (committed[tp].offset if tp in committed else 0)
                   for tp, end in ends.items())

    def close(self) -> None:
        self.admin.close()
        self.consumer.close()


def collect_alerts(kafka_kwargs: dict, topic: str, isolation: str, out, stop) -> None:
    """In its own process: every alert on `topic` as (received wall ms, subject, event_ts,
    type, severity, state), in lists through `out`; None at the end."""
    import orjson
    from kafka import KafkaConsumer, TopicPartition

    consumer = KafkaConsumer(**kafka_kwargs, group_id=None, enable_auto_commit=False,
                             isolation_level=isolation, fetch_max_wait_ms=20)
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    while not stop.is_set():
        batch = consumer.poll(timeout_ms=100)
        received = time.time_ns() / 1e6
        rows = []
        for records in batch.values():
            for record in records:
                alert = orjson.loads(record.value)
                rows.append((received, alert["meter_id"] or alert["feeder_id"], alert["event_ts"],
                             alert["type"], alert["severity"], alert["state"]))
        if rows:
            out.put(rows)
    consumer.close()
    out.put(None)


class Collector:
    """A collect_alerts process and what it has received so far."""

    def __init__(self, config: JobConfig, topic: str, isolation: str):
        from tools.stack import kafka_python_kwargs

        context = multiprocessing.get_context("spawn")
        self.queue, self.stop_event = context.Queue(), context.Event()
        self.process = context.Process(
            target=collect_alerts, daemon=True,
            args=(kafka_python_kwargs(config), topic, isolation, self.queue, self.stop_event))
        self.process.start()
        self.first: dict[tuple[str, int], tuple] = {}  # (subject, event_ts) -> first receipt
        self.repeats = 0

    def drain(self) -> None:
        while True:
            try:
                rows = self.queue.get_nowait()
            except queue.Empty:
                return
            if rows is not None:
                self._add(rows)

    def _add(self, rows: list[tuple]) -> None:
        for row in rows:
            key = (row[1], row[2])
            if key in self.first:
                self.repeats += 1
            else:
                self.first[key] = row

    def close(self) -> None:
        self.stop_event.set()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                rows = self.queue.get(timeout=1)
            except queue.Empty:
                continue
            if rows is None:
                break
            self._add(rows)
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()


@dataclasses.dataclass
class Anomaly:
    name: str
    severity: str
    fields: str  # JSON members of the reading after kwh_import


def anomalies(config: JobConfig) -> list[Anomaly]:
    """Readings that open one alert each, for a meter of unknown registry (the profile's
    nominal voltage), from the configured thresholds."""
    rules = config.detect.rules
    nominal = float(config.registry.default_nominal_voltage_v or rules.nominal_voltage_v)
    band, hz = rules.voltage_band(nominal), rules.profile.nominal_hz
    low_hz = rules.frequency_band[0]
    return [
        Anomaly("last gasp", "CRITICAL", f'"voltage_v":0.0,"frequency_hz":{hz},'
                                         f'"status":["POWER_FAIL"]'),
        Anomaly("severe sag", "CRITICAL",
                f'"voltage_v":{round(band.severe_low - 0.05 * nominal, 1)},"frequency_hz":{hz}'),
        Anomaly("sag", "MAJOR",
                f'"voltage_v":{round((band.low + band.severe_low) / 2, 1)},"frequency_hz":{hz}'),
        Anomaly("frequency", "MAJOR",
                f'"voltage_v":{nominal},"frequency_hz":{round(low_hz - 0.2, 3)}'),
    ]


class LiveProducer:
    """Readings round robin over `meters` meters, each with its own rising register, at the
    wall clock's event time; remembers the readings expected to raise an alert."""

    def __init__(self, config: JobConfig, topic: str, tag: str, meters: int, share: float,
                 seed: int = 2026):
        from kafka import KafkaConsumer, KafkaProducer
        from kafka.partitioner.default import murmur2

        from tools.simulator.kafka_writer import compression
        from tools.stack import kafka_python_kwargs

        client = kafka_python_kwargs(config)
        self.producer = KafkaProducer(**client, linger_ms=LINGER_MS, acks=1,
                                      compression_type=compression())
        probe = KafkaConsumer(**client)
        self.partitions = sorted(probe.partitions_for_topic(topic))
        probe.close()
        self.topic, self.tag, self.share = topic, tag, share
        self.ids = [f"{tag}-m{i:06d}" for i in range(meters)]
        self.keys = [meter.encode() for meter in self.ids]
        self.partition = [self.partitions[(murmur2(k) & 0x7FFFFFFF) % len(self.partitions)]
                          for k in self.keys]
        self.kwh = [1000.0 + (i % 997) for i in range(meters)]
        self.last_ts = [0] * meters
        self.open: list[Anomaly | None] = [None] * meters  # what the next reading clears
        self.kinds = anomalies(config)
        rules = config.detect.rules
        nominal = float(config.registry.default_nominal_voltage_v or rules.nominal_voltage_v)
        self.normal = f'"voltage_v":{nominal},"frequency_hz":{rules.profile.nominal_hz}'
        self.expected: dict[tuple[str, int], str] = {}  # (meter, ts) -> severity expected
        self.random = random.Random(seed)
        self.cursor = 0
        self.injected = 0

    def _send(self, i: int, fields: str) -> int:
        ts = max(time.time_ns() // 1_000_000, self.last_ts[i] + 1)
        self.last_ts[i] = ts
        self.kwh[i] += 0.01
        value = (f'{{"meter_id":"{self.ids[i]}","ts":{ts},"kwh_import":{self.kwh[i]:.3f},'
                 f'{fields}}}').encode()
        self.producer.send(self.topic, key=self.keys[i], value=value,
                           partition=self.partition[i], timestamp_ms=ts)
        return ts

    def prime(self) -> list[str]:
        """One normal reading per meter, then a last gasp of a warm-up meter on every
        partition; returns the warm-up meters (their OUTAGE alerts say the job is running)."""
        for i in range(len(self.ids)):
            self._send(i, self.normal)
        warmups = []
        for partition in self.partitions:
            meter = f"{self.tag}-w{partition}"
            ts = time.time_ns() // 1_000_000
            self.producer.send(self.topic, key=meter.encode(), partition=partition,
                               timestamp_ms=ts, value=(
                                   f'{{"meter_id":"{meter}","ts":{ts},"kwh_import":1.0,'
                                   f'{self.kinds[0].fields}}}').encode())
            warmups.append(meter)
        self.producer.flush()
        return warmups

    def send_next(self) -> None:
        i = self.cursor
        self.cursor = (i + 1) % len(self.ids)
        cleared = self.open[i]
        if cleared is not None:
            self.expected[(self.ids[i], self._send(i, self.normal))] = cleared.severity
            self.open[i] = None
        elif self.random.random() < self.share:
            kind = self.kinds[self.injected % len(self.kinds)]
            self.injected += 1
            self.expected[(self.ids[i], self._send(i, kind.fields))] = kind.severity
            self.open[i] = kind
        else:
            self._send(i, self.normal)

    def close(self) -> None:
        self.producer.flush()
        self.producer.close()
