"""Ingest job end to end: real Kafka in, real PostgreSQL out, dead letters on their topic.

Runs the job in an embedded MiniCluster (parallelism 1 and 2) and through `flink run` on the
local standalone cluster. Replaying the same readings must not add rows.
"""

from __future__ import annotations

import json

import pytest

from tests.conftest import MIN, T0, reading
from tools import flink_cluster

pytestmark = pytest.mark.integration

METERS = 12
READINGS_PER_METER = 8  # two hours of 15-minute readings


def fleet_readings(scenario) -> list[tuple[str, bytes]]:
    """METERS x READINGS_PER_METER valid readings with distinct, checkable values."""
    records = []
    for m in range(METERS):
        for i in range(READINGS_PER_METER):
            extra = {"status": ["POWER_FAIL"]} if (m, i) == (3, 5) else {}
            records.append(reading(scenario.meter(m), T0 + i * 15 * MIN,
                                   kwh_import=1000.0 * m + 0.25 * i, voltage_v=230.0 + m / 10,
                                   seq=i, **extra))
    return records


def expected_rows(scenario) -> set[tuple]:
    return {(scenario.meter(m), T0 + i * 15 * MIN, 1000.0 * m + 0.25 * i,
             round(230.0 + m / 10, 6), i, ("POWER_FAIL",) if (m, i) == (3, 5) else ())
            for m in range(METERS) for i in range(READINGS_PER_METER)}


BAD_RECORDS = [
    (b"{not json", "not JSON"),
    (json.dumps({"meter_id": "X", "ts": "yesterday", "kwh_import": 1}).encode(),
     "ts: neither RFC 3339 nor epoch ms"),
    (json.dumps({"meter_id": "X", "ts": T0, "kwh_import": -5}).encode(), "kwh_import: negative"),
]


def stored_rows(scenario) -> set[tuple]:
    rows = scenario.query(
        "SELECT meter_id, (extract(epoch FROM ts) * 1000)::bigint, kwh_import, voltage_v, seq, "
        "status FROM meter_readings WHERE meter_id LIKE %s", f"{scenario.tag}-%")
    return {(m, ts, kwh, round(v, 6), seq, tuple(status)) for m, ts, kwh, v, seq, status in rows}


@pytest.mark.parametrize("parallelism", [1, 2])
def test_minicluster_stores_exactly_the_valid_readings_and_replay_adds_none(scenario,
                                                                            parallelism):
    scenario.produce(fleet_readings(scenario))
    scenario.produce([(f"{scenario.tag}-bad{i}", raw) for i, (raw, _) in enumerate(BAD_RECORDS)])

    scenario.run_job("ingest", parallelism=parallelism)

    assert stored_rows(scenario) == expected_rows(scenario)
    dead = scenario.consume(scenario.config.topics.dead_letters.name, len(BAD_RECORDS))
    assert sorted((d["raw"], d["error"].split(":")[0]) for d in dead) == sorted(
        (raw.decode(), reason.split(":")[0]) for raw, reason in BAD_RECORDS)
    assert {d["topic"] for d in dead} == {scenario.config.topics.readings.name}
    assert all(isinstance(d["offset"], int) and isinstance(d["received_ts"], int) for d in dead)

    # Replay: a new consumer group reads the whole topic again, then the producer resends it.
    scenario.run_job("ingest", parallelism=parallelism)
    scenario.produce(fleet_readings(scenario))
    scenario.run_job("ingest", parallelism=parallelism)
    assert stored_rows(scenario) == expected_rows(scenario)


@pytest.mark.cluster
def test_flink_run_on_standalone_cluster_stores_exactly_the_valid_readings(scenario,
                                                                            local_flink_cluster):
    scenario.produce(fleet_readings(scenario))
    scenario.produce([(f"{scenario.tag}-bad{i}", raw) for i, (raw, _) in enumerate(BAD_RECORDS)])
    job_args = ["--config", str(scenario.config_path), "--bounded",
                "--group-id", f"{scenario.tag}-cluster", "-D", "restart-strategy.type=none"]

    assert flink_cluster.submit("ingest", job_args) == 0
    assert stored_rows(scenario) == expected_rows(scenario)
    dead = scenario.consume(scenario.config.topics.dead_letters.name, len(BAD_RECORDS))
    assert len(dead) == len(BAD_RECORDS)

    # The same job resubmitted from the beginning of the topic leaves the table as it was.
    job_args[job_args.index("--group-id") + 1] = f"{scenario.tag}-cluster-replay"
    assert flink_cluster.submit("ingest", job_args) == 0
    assert stored_rows(scenario) == expected_rows(scenario)
