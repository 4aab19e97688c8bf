"""The jobs' metrics on the local standalone cluster, scraped from its Prometheus reporter.

The aggregate and detect jobs run unbounded (`flink run --detached`) over one scenario's
readings; the test reads the TaskManager's /metrics endpoint as Prometheus would until every
count the jobs owe is there, then cancels both jobs.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import MIN, T0, reading
from tools import flink_cluster

pytestmark = [pytest.mark.integration, pytest.mark.cluster]

BAD = [b"{not json", b'{"meter_id": "x", "ts": 1, "kwh_import": -4}']


def wait_for(job: str, expected: dict[tuple, float], timeout_s: float = 180) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        seen = flink_cluster.job_metrics().get(job, {})
        if all(seen.get(key) == value for key, value in expected.items()):
            return seen
        if time.monotonic() > deadline:
            return seen
        time.sleep(1)


def test_jobs_expose_readings_dead_letters_late_readings_alerts_and_lag(module_scenario,
                                                                        local_flink_cluster):
    scenario = module_scenario("metrics", partitions=1)
    meter, gasp = scenario.meter(1), scenario.meter(2)
    on_time = [reading(meter, T0 + i * 15 * MIN, kwh_import=100.0 + i) for i in range(9)]
    # The last gasp opens one OUTAGE (CRITICAL) in the detect job.
    on_time.append(reading(gasp, T0 + 60 * MIN, voltage_v=0.0, status=["POWER_FAIL"]))
    scenario.produce(on_time + [(f"{scenario.tag}-bad{i}", raw) for i, raw in enumerate(BAD)])
    common = ["--config", str(scenario.config_path), "-D", "parallelism.default=1",
              "-D", "restart-strategy.type=none"]
    jobs = []
    try:
        for job in ("aggregate", "detect"):
            jobs.append(flink_cluster.submit_detached(
                job, [*common, "--group-id", f"{scenario.tag}-{job}"]))
        seen = wait_for("gridstream-aggregate", {("readings_in", ()): len(on_time) + 2})
        # The watermark now stands two hours past T0: a reading at T0 is behind it by more
        # than the allowed lateness (aggregate job), and is one more reading for both jobs.
        scenario.produce([reading(scenario.meter(3), T0, kwh_import=5.0)])

        expected_both = {
            ("readings_in", ()): len(on_time) + 3,
            ("dead_letters", (("reason", "not_json"),)): 1,
            ("dead_letters", (("reason", "kwh_import"),)): 1,
        }
        aggregate = wait_for("gridstream-aggregate",
                             {**expected_both, ("late_readings", ()): 1})
        detect = wait_for("gridstream-detect", {
            **expected_both,
            ("alerts", (("severity", "CRITICAL"), ("state", "OPEN"), ("type", "OUTAGE"))): 1})
    finally:
        for job_id in jobs:
            flink_cluster.cancel(job_id)

    for key, value in expected_both.items():
        assert aggregate.get(key) == value, (key, aggregate)
        assert detect.get(key) == value, (key, detect)
    assert aggregate.get(("late_readings", ())) == 1
    assert detect.get(("alerts", (("severity", "CRITICAL"), ("state", "OPEN"),
                                  ("type", "OUTAGE")))) == 1
    # The job started after the readings were appended: each was read some seconds behind.
    assert detect.get(("lag_ms", ()), 0) > 0
    assert seen  # the first wait saw the aggregate job's metrics at all
