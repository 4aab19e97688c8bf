"""The shared ingestion stage through the real broker and database: validation, dead letters,
deduplication and registry enrichment. Every reading that enters is accounted for:
readings in = unique valid readings out + dead letters + duplicates dropped."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import jsonschema
import pytest

from jobs.config import REPO_ROOT, with_flink_options
from jobs.connectors import create_table_ddl, kafka_table_options
from jobs.ingestion import (
    READINGS_SOURCE,
    dead_letter_sink_ddl,
    readings_source_ddl,
    register_deduplication,
    register_enrichment,
    register_validation,
    registry_lookup_ddl,
)
from jobs.runtime import create_table_env
from tests.conftest import MIN, T0, reading
from tools import registry

pytestmark = pytest.mark.integration

REGISTRY_HEADER = "meter_id,feeder_id,region,nominal_voltage_v,has_generation,service_limit_kw\n"


def utc(ts_ms: int) -> str:
    return datetime.fromtimestamp(ts_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]


def run_stage(scenario, parallelism: int) -> None:
    """Kafka -> validation -> dedup -> enrichment -> a JSON topic, and dead letters."""
    config = with_flink_options(scenario.config, [f"parallelism.default={parallelism}",
                                                  "restart-strategy.type=none"])
    t_env = create_table_env(config, "test-ingestion-stage")
    t_env.execute_sql(readings_source_ddl(config, bounded=True, group_id=scenario.tag))
    t_env.execute_sql(registry_lookup_ddl(config))
    t_env.execute_sql(dead_letter_sink_ddl(config))
    out = kafka_table_options(config.kafka, scenario.create_topic(f"{scenario.tag}.enriched"))
    out.update({"format": "json", "sink.delivery-guarantee": "at-least-once"})
    t_env.execute_sql(create_table_ddl("enriched_out", [
        "meter_id STRING", "event_time STRING", "kwh_import DOUBLE", "feeder_id STRING",
        "region STRING", "nominal_voltage_v DOUBLE", "has_generation BOOLEAN",
        "service_limit_kw DOUBLE"], out))
    valid, dead_letters = register_validation(t_env, READINGS_SOURCE, config)
    enriched = register_enrichment(t_env, register_deduplication(t_env, valid, config), config)
    statements = t_env.create_statement_set()
    statements.add_insert_sql(f"""
        INSERT INTO enriched_out
        SELECT meter_id, CAST(CAST(event_time AS TIMESTAMP(3)) AS STRING), kwh_import,
               feeder_id, region, nominal_voltage_v, has_generation, service_limit_kw
        FROM `{enriched}`""")
    statements.add_insert_sql(f"INSERT INTO dead_letters SELECT * FROM `{dead_letters}`")
    statements.execute().wait()


@pytest.mark.parametrize("parallelism", [1, 2])
def test_every_reading_is_accounted_for(scenario, tmp_path, parallelism):
    m = scenario.meter
    csv = tmp_path / "registry.csv"
    csv.write_text(REGISTRY_HEADER + f"{m(0)},F-7,north,230,false,15\n"
                                     f"{m(1)},F-7,north,230,true,15\n"
                                     f"{m(2)},F-9,south,120,false,\n")
    registry.load(scenario.config, csv)
    # m(3) is not in the registry: it is still processed, with the defaults.
    valid = [reading(m(i), T0 + k * 15 * MIN, kwh_import=10.0 * i + k)
             for i in range(4) for k in range(5)]
    duplicates = [valid[0], valid[7], valid[7], valid[19]]
    faults = {
        b"{not json": "not JSON",
        json.dumps({"meter_id": m(0), "ts": T0, "kwh_import": "7"}).encode():
            "kwh_import: expected a number",
        json.dumps({"meter_id": m(0), "ts": T0}).encode(): "kwh_import: missing",
        json.dumps({"ts": T0, "kwh_import": 1}).encode(): "meter_id: missing",
        # Dated a day after its arrival: the meter's clock is wrong.
        json.dumps({"meter_id": m(1), "kwh_import": 1,
                    "ts": int(datetime.now(timezone.utc).timestamp() * 1000) + 86_400_000}
                   ).encode(): "ts: more than 300000 ms after arrival",
    }
    scenario.produce(valid + duplicates + [(m(9), raw) for raw in faults])

    run_stage(scenario, parallelism)

    out = scenario.consume(f"{scenario.tag}.enriched", len(valid))
    dead = scenario.consume(scenario.config.topics.dead_letters.name, len(faults))
    produced = len(valid) + len(duplicates) + len(faults)
    assert produced == len(out) + len(dead) + len(duplicates)

    profile = {0: ("F-7", "north", 230.0, False, 15.0), 1: ("F-7", "north", 230.0, True, 15.0),
               2: ("F-9", "south", 120.0, False, None), 3: ("unknown", "unknown", 230.0, False,
                                                            None)}
    expected = {(m(i), utc(T0 + k * 15 * MIN), 10.0 * i + k, *profile[i])
                for i in range(4) for k in range(5)}
    assert sorted((o["meter_id"], o["event_time"], o["kwh_import"], o["feeder_id"],
                   o["region"], o["nominal_voltage_v"], o["has_generation"],
                   o["service_limit_kw"]) for o in out) == sorted(expected)
    assert sorted((d["raw"], d["error"][:len(faults[d["raw"].encode()])]) for d in dead) == \
        sorted((raw.decode(), reason) for raw, reason in faults.items())


def test_source_watermark_time_agrees_with_the_validator(scenario):
    """The source reads `ts` in SQL for its per-partition watermark; for every form the
    validator accepts it must read the same instant, and nothing from a clock in the future."""
    from udfs.reading_parser import parse_reading

    now_ms = int(datetime.now(timezone.utc).timestamp() * 1000)
    stamps = [T0, "2026-01-01T00:00:00Z", "2026-01-01T01:00:00+01:00",
              "2025-12-31T18:30:00.5-05:30", "2026-01-01T00:00:00.123456Z", 0,
              now_ms + 86_400_000]
    payloads = [json.dumps({"meter_id": "m", "ts": ts, "kwh_import": 1}).encode()
                for ts in stamps]
    scenario.produce([(str(i), raw) for i, raw in enumerate(payloads)], partition=0)
    t_env = create_table_env(with_flink_options(scenario.config, ["parallelism.default=1"]),
                             "test-source-time")
    t_env.execute_sql(readings_source_ddl(scenario.config, bounded=True, group_id=scenario.tag))
    with t_env.sql_query("SELECT `key`, CAST(CAST(source_time AS TIMESTAMP(3)) AS STRING) "
                         "FROM readings_raw").execute().collect() as rows:
        read = {int(key): value for key, value in rows}
    expected = {i: utc(parse_reading(raw).ts_ms) for i, raw in enumerate(payloads[:-1])}
    assert read == {**expected, len(payloads) - 1: None}


def test_simulated_fleet_is_accounted_for_exactly(scenario, tmp_path):
    """A simulated day of 300 meters with every data fault, through the real broker: each
    record is a valid reading out, a dead letter with the reason the ground truth expects, or
    a dropped duplicate."""
    from tools.simulator.fleet import write_registry
    from tools.simulator.settings import Settings
    from tools.simulator.simulation import Simulation

    sim = Simulation(Settings(meters=300, days=1, seed=11))
    records = list(sim.records())
    write_registry(sim.fleet, tmp_path / "registry.csv")
    registry.load(scenario.config, tmp_path / "registry.csv")
    # zstd, as the simulator sends: the Kafka connector must be able to read it.
    scenario.produce([(r.key, r.value) for r in records], compression="zstd")

    run_stage(scenario, parallelism=2)

    outcomes = sim.summary()["records_by_outcome"]
    out = scenario.consume(f"{scenario.tag}.enriched", outcomes["accepted"] + outcomes["late"])
    dead = scenario.consume(scenario.config.topics.dead_letters.name, outcomes["dead_letter"])
    # Late readings are valid here; only the aggregate job has an allowed lateness.
    assert len(out) == outcomes["accepted"] + outcomes["late"]
    assert len(records) == len(out) + len(dead) + outcomes["duplicate"]
    assert {o["feeder_id"] for o in out}.isdisjoint({"unknown"})
    expected = sorted(e["expected_reason"] for e in sim.truth()
                      if e["expected_outcome"] == "dead_letter")
    schema = json.loads((REPO_ROOT / "schemas" / "json" / "dead-letter.schema.json").read_text())
    for record in dead:
        jsonschema.validate(record, schema)
    reasons = set(expected)
    assert expected == sorted(next((r for r in reasons if d["error"].startswith(r)), d["error"])
                              for d in dead)
