"""The jobs' own Flink metrics, in the group `gridstream` of the operator that counts them:

    dead_letters   {reason}                  rejected records by kind of reason (the field
                                             named, or "not JSON": udfs.reading_parser), all jobs
    late_readings                            readings behind the watermark, written to
                                             meter.readings.late (aggregate job)
    alerts         {type, severity, state}   alerts emitted (detect job)
    lag_ms                                   wall clock minus the Kafka append time of the
                                             reading the meter rules last evaluated (detect job):
                                             how far behind the alert path runs

Readings in are Flink's own count at the Kafka source (numRecordsIn of the operator
"Source: readings_raw"), and a job's lag in records is the Kafka consumer's records_lag_max
there: both counted in Java at no cost. The local cluster's Prometheus reporter serves all of
them, e.g. flink_taskmanager_job_task_operator_gridstream_alerts{type=...} (runbook: Metrics).

Only DataStream functions count: PyFlink hands a scalar function's metrics to Flink in
process mode only and drops them in thread mode. An update crosses from Python into Java in
thread mode: 0.52 us per counter increment, 0.35 us per gauge update (measured in a map
function, 200,000 calls), against hundreds of microseconds per reading for the job; so
metrics are updated per record and are current whenever they are scraped.
"""

from __future__ import annotations

import json
import time

GROUP = "gridstream"


class JobMetrics:
    """The counters and the lag gauge of one parallel function instance."""

    def __init__(self, metric_group):
        self._group = metric_group.add_group(GROUP)
        self._counters: dict[tuple, object] = {}
        self._lag = None

    def inc(self, name: str, labels: tuple[tuple[str, str], ...] = ()) -> None:
        counter = self._counters.get((name, labels))
        if counter is None:
            group = self._group
            for key, value in labels:
                group = group.add_group(key, value)  # a label in Prometheus
            counter = self._counters[(name, labels)] = group.counter(name)
        counter.inc(1)

    def lag(self, appended_ms: int | None) -> None:
        if appended_ms is None:
            return
        if self._lag is None:
            self._lag = self._register_lag()
        self._lag(time.time_ns() // 1_000_000 - appended_ms)

    def _register_lag(self):
        if ".embedded." in type(self._group).__module__:
            # Thread mode: a Java gauge holding the last value handed to it. (A callable gauge
            # would be called from the reporter's thread, outside the interpreter's.)
            return self._group.distribution("lag_ms").update
        latest = [0]
        self._group.gauge("lag_ms", lambda: latest[0])

        def update(lag_ms: int) -> None:
            latest[0] = lag_ms
        return update


def count_records(t_env, source_view: str, counted_view: str, metric: str, *,
                  by_reason: bool = False) -> str:
    """Register `counted_view`: the rows of `source_view` (`key`, `value` STRING, as written to
    a Kafka topic) unchanged, counted as `metric` on the way; by_reason labels each count with
    the kind of the dead letter's `error`. For few records (dead letters, late readings): one
    Python call each."""
    from pyflink.common import Types
    from pyflink.datastream import MapFunction

    from udfs.reading_parser import reason_kind

    class CountRecords(MapFunction):
        def open(self, runtime_context):
            self.metrics = JobMetrics(runtime_context.get_metrics_group())

        def map(self, row):
            labels = ((("reason", reason_kind(json.loads(row[1])["error"])),) if by_reason
                      else ())
            self.metrics.inc(metric, labels)
            return row

    row_type = Types.ROW_NAMED(["key", "value"], [Types.STRING(), Types.STRING()])
    stream = (t_env.to_data_stream(t_env.from_path(source_view))
              .map(CountRecords(), output_type=row_type).name(f"count {metric}"))
    t_env.create_temporary_view(counted_view, t_env.from_data_stream(stream))
    return counted_view
