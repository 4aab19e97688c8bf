"""The naive baseline `make bench-detect` compares the detect job with: the same rules in one
Python process, no Flink.

    python -m tools.detect_baseline --config conf/local.yaml [--bounded]

A kafka-python consumer reads topics.readings from the beginning in poll batches; each record
goes through udfs.reading_parser.parse_reading (a rejection goes to topics.dead_letters as the
job writes it), then udfs.meter_detector.MeterDetector with the meter's (state, meta, deadline)
kept in a dict, exactly the tuple the job keeps in its ValueState; OUTAGE alerts go through
udfs.feeder_correlation.FeederCorrelator with a dict of feeder states. Registry metadata
(meter_registry, feeder_meter_counts) is read once from PostgreSQL at start, with the job's
defaults for unknown meters. STALE_METER timers fire on a watermark computed as the job's
source does: per partition, newest event time minus event_time.max_out_of_orderness, the
minimum over partitions that are neither finished nor idle. Alerts go to topics.alerts with
kafka-python (at-least-once, no transactions, no alerts table: what the job does on top of
that is not counted against the baseline).

--bounded stops at the end offsets present at start and prints one JSON line: seconds from
start (registry load included) to the last alert flushed, record and alert counts, and the
pickled size of the per-meter state. Without it, it runs until SIGTERM or Ctrl-C.
"""

from __future__ import annotations

import argparse
import collections
import heapq
import json
import pickle
import signal
import sys
import time

import orjson

from jobs.config import REPO_ROOT, JobConfig, load_config
from udfs.alert_record import OUTAGE, to_json_bytes
from udfs.feeder_correlation import FeederCorrelator
from udfs.meter_detector import MeterDetector, MeterMeta
from udfs.reading_parser import Rejection, parse_reading

UNKNOWN = "unknown"
MIN_WATERMARK = -(2**63)  # Flink's watermark before the first one (Long.MIN_VALUE)
POLL_RECORDS = 5000
# Small fetches keep the partitions in step. With the default (1 MB per partition, tens of
# thousands of zstd-compressed readings) kafka-python hands out one partition's whole fetch
# before the next, the partitions drift hours apart in event time, and the feeder correlation
# sees a feeder's restorations before the last gasps of its members on other partitions.
PARTITION_FETCH_BYTES = 64 * 1024


def registry_metadata(config: JobConfig) -> tuple[dict[str, MeterMeta], dict[str, int]]:
    """Every meter's MeterMeta as the job's enrichment builds it, and meters per feeder."""
    import psycopg

    from tools.stack import pg_connect_kwargs

    nominal = _default_nominal(config)
    interval = config.registry.default_interval_minutes
    register_max = config.aggregate.default_register_max_kwh
    with psycopg.connect(**pg_connect_kwargs(config)) as conn:
        metas = {row[0]: MeterMeta(row[1], row[2],
                                   row[3] if row[3] is not None else nominal, bool(row[4]),
                                   row[5], row[6] if row[6] is not None else interval,
                                   row[7] if row[7] is not None else register_max)
                 for row in conn.execute(
                     "SELECT meter_id, feeder_id, region, nominal_voltage_v, has_generation, "
                     "service_limit_kw, interval_minutes, register_max_kwh FROM meter_registry")}
        feeders = dict(conn.execute("SELECT feeder_id, meters FROM feeder_meter_counts"))
    return metas, feeders


def unknown_meta(config: JobConfig) -> MeterMeta:
    """What the job's enrichment gives a meter missing from the registry."""
    return MeterMeta(UNKNOWN, UNKNOWN, _default_nominal(config), False, None,
                     config.registry.default_interval_minutes,
                     config.aggregate.default_register_max_kwh)


def _default_nominal(config: JobConfig) -> float:
    return float(config.registry.default_nominal_voltage_v
                 or config.detect.rules.nominal_voltage_v)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class Detection:
    """The job's two keyed functions over plain dicts, and its watermark and timers."""

    def __init__(self, config: JobConfig, metas: dict[str, MeterMeta], feeders: dict[str, int],
                 send_alert, partitions: list[int]):
        self.detector = MeterDetector(config.detect.rules)
        self.correlator = FeederCorrelator(config.detect.rules)
        self.metas, self.feeders, self.unknown = metas, feeders, unknown_meta(config)
        self.send_alert = send_alert
        self.states: dict[str, tuple] = {}       # meter -> (MeterState, MeterMeta, deadline)
        self.feeder_states: dict[str, object] = {}
        self.timers: list[tuple[int, str]] = []  # (deadline, meter); stale entries skipped
        self.delay = int(config.event_time.max_out_of_orderness)
        self.idle_ms = int(config.event_time.idle_timeout)
        self.newest = {p: None for p in partitions}   # partition -> newest event time
        self.heard = {p: time.monotonic() for p in partitions}
        self.finished: set[int] = set()
        self.watermark = MIN_WATERMARK
        self.alerts: collections.Counter = collections.Counter()
        self.duplicates = 0

    def on_reading(self, partition: int, reading) -> None:
        meter = reading.meter_id
        stored = self.states.get(meter)
        meta = self.metas.get(meter, self.unknown)
        state, deadline = (None, None) if stored is None else (stored[0], stored[2])
        ts = reading.ts_ms
        newest = self.newest[partition]
        if newest is None or ts > newest:
            self.newest[partition] = ts
        if state is not None and ts <= state.last_ts:
            self.duplicates += 1
            return
        state, alerts = self.detector.on_reading(state, reading, meta, _now_ms())
        new_deadline = self.detector.stale_deadline(state, meta)
        if new_deadline is not None and new_deadline != deadline:
            heapq.heappush(self.timers, (new_deadline, meter))
        self.states[meter] = (state, meta, new_deadline)
        if alerts:
            self._emit(alerts, self.feeders.get(meta.feeder_id, 0))

    def advance_watermark(self) -> None:
        """The job's watermark after a poll batch; fires the stale timers it passes."""
        now = time.monotonic()
        active = [ts for p, ts in self.newest.items()
                  if p not in self.finished and now - self.heard[p] < self.idle_ms / 1000]
        if not active or any(ts is None for ts in active):
            return
        watermark = min(active) - self.delay
        if watermark <= self.watermark:
            return
        self.watermark = watermark
        timers, states, detector = self.timers, self.states, self.detector
        while timers and timers[0][0] <= watermark:
            ts, meter = heapq.heappop(timers)
            state, meta, deadline = states[meter]
            if deadline != ts:
                continue  # superseded by a later reading
            state, alerts = detector.on_stale_timer(state, meter, ts, meta, _now_ms(), watermark)
            deadline = detector.stale_deadline(state, meta)
            if deadline is not None and deadline > ts:
                heapq.heappush(timers, (deadline, meter))
            else:
                deadline = None
            states[meter] = (state, meta, deadline)
            if alerts:
                self._emit(alerts, 0)

    def _emit(self, alerts, registered: int) -> None:
        for alert in alerts:
            if alert.type == OUTAGE:
                feeder = alert.feeder_id
                self.feeder_states[feeder], routed = self.correlator.on_meter_outage(
                    self.feeder_states.get(feeder), alert, registered, _now_ms(),
                    self.watermark)
            else:
                routed = (alert,)
            for out in routed:
                self.alerts[out.type] += 1
                self.send_alert(out)

    def state_bytes(self) -> tuple[float, int]:
        """Mean and largest pickled (state, meta, deadline): the job's ValueState value."""
        sizes = [len(pickle.dumps(value)) for value in self.states.values()]
        return (sum(sizes) / len(sizes) if sizes else 0.0), max(sizes, default=0)


def run(config: JobConfig, *, bounded: bool) -> dict:
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    from tools.stack import kafka_python_kwargs

    stopping = []
    if not bounded:
        signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    started = time.monotonic()
    metas, feeders = registry_metadata(config)
    client = kafka_python_kwargs(config)
    topic = config.topics.readings.name
    consumer = KafkaConsumer(**client, group_id=None, enable_auto_commit=False,
                             max_poll_records=POLL_RECORDS,
                             max_partition_fetch_bytes=PARTITION_FETCH_BYTES)
    partitions = [TopicPartition(topic, p)
                  for p in sorted(consumer.partitions_for_topic(topic) or ())]
    if not partitions:
        raise SystemExit(f"error: topic {topic} does not exist")
    consumer.assign(partitions)
    consumer.seek_to_beginning(*partitions)
    ends = consumer.end_offsets(partitions) if bounded else {}
    producer = KafkaProducer(**client)
    alerts_topic, dlq_topic = config.topics.alerts.name, config.topics.dead_letters.name

    def send_alert(alert) -> None:
        producer.send(alerts_topic, key=alert.key.encode(), value=to_json_bytes(alert))

    detection = Detection(config, metas, feeders, send_alert, [tp.partition for tp in partitions])
    skew = int(config.ingestion.max_future_skew)
    records = dead_letters = 0
    pending = {tp for tp in partitions if not bounded or ends[tp] > 0}
    detection.finished = {tp.partition for tp in partitions if tp not in pending}
    try:
        while (pending or not bounded) and not stopping:
            batch = consumer.poll(timeout_ms=200)
            for tp, batch_records in batch.items():
                end = ends.get(tp)
                detection.heard[tp.partition] = time.monotonic()
                for record in batch_records:
                    if end is not None and record.offset >= end:
                        break
                    records += 1
                    reading = parse_reading(record.value, received_ms=record.timestamp,
                                            max_future_skew_ms=skew)
                    if isinstance(reading, Rejection):
                        dead_letters += 1
                        producer.send(dlq_topic, key=record.key, value=orjson.dumps({
                            "error": reading.reason,
                            "raw": (None if record.value is None
                                    else record.value.decode("utf-8", "replace")),
                            "topic": record.topic, "partition": record.partition,
                            "offset": record.offset, "received_ts": record.timestamp}))
                        continue
                    detection.on_reading(tp.partition, reading)
                if end is not None and consumer.position(tp) >= end:
                    pending.discard(tp)
                    detection.finished.add(tp.partition)
                    consumer.pause(tp)
            detection.advance_watermark()
    except KeyboardInterrupt:
        pass
    producer.flush()
    seconds = time.monotonic() - started
    consumer.close()
    producer.close()
    mean_bytes, max_bytes = detection.state_bytes()
    return {"seconds": seconds, "records": records, "dead_letters": dead_letters,
            "duplicates": detection.duplicates, "meters": len(detection.states),
            "registered_meters": len(metas), "alerts": sum(detection.alerts.values()),
            "alerts_by_type": dict(sorted(detection.alerts.items())),
            "state_bytes_mean": mean_bytes, "state_bytes_max": max_bytes}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.detect_baseline",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(REPO_ROOT / "conf" / "local.yaml"))
    parser.add_argument("--bounded", action="store_true",
                        help="stop at the end offsets present at start; print JSON figures")
    args = parser.parse_args(argv)
    result = run(load_config(args.config), bounded=args.bounded)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
