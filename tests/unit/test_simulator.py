"""The fleet simulator: its records honour the readings contract, dead letters die for the
reason the ground truth names, output is reproducible, and a clean fleet stays inside every
detection threshold. No Kafka: the simulator runs in process or writes a file."""

from __future__ import annotations

import csv
import functools
import itertools
import json
from dataclasses import dataclass

import jsonschema
import orjson
import pytest

from jobs.config import REPO_ROOT
from tools import simulate
from tools.simulator.faults import DEAD_LETTERS
from tools.simulator.fleet import REGISTRY_COLUMNS, write_registry
from tools.simulator.pacing import Pacer, check_rate
from tools.simulator.settings import QUARTER_MS, Settings, SimulatorError
from tools.simulator.simulation import Batch, Record, Simulation
from udfs.reading_parser import Reading, Rejection, parse_reading

WALL_MS = 1_798_761_600_000  # 2027-01-01T00:00:00Z, the "now" of these runs: after every reading
MAX_SKEW_MS = 300_000        # the ingest job's max_future_skew
ANOMALY_TYPES = {"OUTAGE", "FEEDER_OUTAGE", "VOLTAGE_SAG", "VOLTAGE_SWELL", "STALE_METER",
                 "ZERO_CONSUMPTION", "REGISTER_ROLLBACK", "REVERSE_FLOW", "CONSUMPTION_SPIKE",
                 "FREQUENCY_EXCURSION"}
FAULT_TYPES = {"duplicate", "out_of_order", "late", "clock_skew", "malformed_json", "wrong_type",
               "missing_field"}
SCHEMA = jsonschema.Draft202012Validator(
    json.loads((REPO_ROOT / "schemas" / "json" / "reading.schema.json").read_text()))


@dataclass(frozen=True)
class Run:
    sim: Simulation
    records: list[Record]
    truth: list[dict]


@functools.lru_cache
def run(**changes) -> Run:
    """A default-rate fleet (1,000 meters, 2 days) unless `changes` say otherwise."""
    settings = Settings(**{"meters": 1000, "days": 2.0, "seed": 7, **changes})
    sim = Simulation(settings, wall_clock_ms=lambda: WALL_MS)
    records = list(sim.records())
    return Run(sim, records, sim.truth())


@functools.lru_cache
def clean_run(**changes) -> Run:
    settings = Settings(**{"meters": 300, "days": 3.0, "seed": 11, **changes}).clean()
    sim = Simulation(settings, wall_clock_ms=lambda: WALL_MS)
    return Run(sim, list(sim.records()), sim.truth())


def parse(record: Record) -> Reading | Rejection:
    return parse_reading(record.value, received_ms=WALL_MS, max_future_skew_ms=MAX_SKEW_MS)


# --------------------------------------------------------------------------- the contract

def test_every_record_but_an_injected_dead_letter_is_a_valid_reading():
    for record in run(meters=200).records:
        if record.outcome != "dead_letter":
            SCHEMA.validate(orjson.loads(record.value))
    for record in run().records:
        if record.outcome != "dead_letter":
            assert isinstance(parse(record), Reading), record


def test_every_injected_dead_letter_is_rejected_for_the_reason_in_the_truth():
    fleet = run()
    expected = {(e["meter_id"], e["start_ts"]): e for e in fleet.truth
                if e["expected_outcome"] == "dead_letter"}
    dead = [r for r in fleet.records if r.outcome == "dead_letter"]
    assert len(dead) == len(expected)
    for record in dead:
        result = parse(record)
        assert isinstance(result, Rejection), record
        assert result.reason.startswith(expected[record.meter_id, record.ts_ms]["expected_reason"])
    reasons = {e["expected_reason"] for e in expected.values()}
    assert reasons == {reason for variants in DEAD_LETTERS.values() for _, reason in variants}


def test_records_are_keyed_by_meter_and_sent_in_event_time_order():
    fleet = run()
    assert all(r.key == r.meter_id for r in fleet.records)
    on_time = [r.ts_ms for r in fleet.records if r.outcome == "accepted"]
    # Only out-of-order faults step back: a 15-minute meter's reading after its next one.
    steps_back = [b - a for a, b in itertools.pairwise(on_time) if b < a]
    assert steps_back == [-QUARTER_MS] * sum(e["type"] == "out_of_order" for e in fleet.truth)


# --------------------------------------------------------------------------- injections

def test_default_rates_inject_every_anomaly_fault_and_control():
    truth = run().truth
    kinds = {(e["kind"], e["type"]) for e in truth}
    assert {("anomaly", t) for t in ANOMALY_TYPES} <= kinds
    assert {("fault", t) for t in FAULT_TYPES} <= kinds
    assert ("control", "REGISTER_ROLLOVER") in kinds

    def seen(type_, key):
        return {e[key] if key in e else e["detail"][key] for e in truth if e["type"] == type_}

    assert seen("CONSUMPTION_SPIKE", "expected_severity") == {"MINOR", "MAJOR"}
    assert seen("VOLTAGE_SAG", "expected_severity") == {"MAJOR", "CRITICAL"}
    assert seen("VOLTAGE_SWELL", "expected_severity") == {"MAJOR", "CRITICAL"}
    assert seen("REVERSE_FLOW", "variant") == {"export_rise", "TAMPER", "REVERSE_FLOW"}
    assert seen("wrong_type", "variant") == {"kwh_import", "voltage_v", "seq"}
    assert seen("missing_field", "variant") == {"kwh_import", "meter_id", "ts"}


def test_truth_entries_have_one_shape():
    fields = ["kind", "type", "meter_id", "feeder_id", "region", "start_ts", "end_ts",
              "expected_alert", "expected_severity", "expected_outcome", "expected_reason"]
    for e in run().truth:
        assert list(e)[:len(fields)] == fields and "detail" in e
        assert e["end_ts"] is None or e["end_ts"] >= e["start_ts"]
        if e["kind"] == "anomaly":
            assert e["expected_alert"] == e["type"] and e["expected_outcome"] == "alert"
            assert e["expected_severity"] in ("CRITICAL", "MAJOR", "MINOR")
        else:
            assert e["expected_alert"] is None and e["expected_severity"] is None
        assert (e["meter_id"] is None) == (e["type"] == "FEEDER_OUTAGE") == ("meters" in e)


def test_rates_are_expected_counts_per_meter_day():
    truth = run(meters=2000, days=1.0).truth
    outages = sum(e["type"] == "OUTAGE" for e in truth)
    assert outages == round(Settings().outage_rate * 2000)


# --------------------------------------------------------------------------- reproducibility

def test_the_same_seed_gives_the_same_bytes_and_truth_another_seed_does_not():
    def produce(seed):
        sim = Simulation(Settings(meters=200, days=1.0, seed=seed), wall_clock_ms=lambda: WALL_MS)
        return [(r.key, r.value) for r in sim.records()], sim.truth()

    first, again, other = produce(7), produce(7), produce(8)
    assert first == again
    assert first[0] != other[0] and first[1] != other[1]


# --------------------------------------------------------------------------- clean data

def test_a_clean_fleet_stays_inside_every_threshold():
    fleet = clean_run()
    sim = fleet.sim
    assert fleet.truth == []
    assert {r.outcome for r in fleet.records} == {"accepted"}
    by_meter: dict[str, list[dict]] = {}
    for record in fleet.records:
        doc = orjson.loads(record.value)
        assert "status" not in doc
        assert abs(doc["voltage_v"] / 230 - 1) < 0.04
        assert abs(doc["frequency_hz"] / 50 - 1) < 0.003
        by_meter.setdefault(record.meter_id, []).append(doc)
    for meter, docs in by_meter.items():
        i = sim.fleet.ids.index(meter)
        hours = sim.fleet.interval_min[i] / 60
        for before, after in itertools.pairwise(docs):
            used = after["kwh_import"] - before["kwh_import"]
            assert 0 <= used <= sim.fleet.limit_kw[i] * hours
            if not sim.fleet.generation[i]:
                assert after["kwh_export"] == before["kwh_export"] == 0


def test_the_ansi_profile_runs_at_120_v_and_60_hz():
    docs = [orjson.loads(r.value) for r in clean_run(profile="ansi", meters=100).records]
    assert all(114 < d["voltage_v"] < 126 and abs(d["voltage_v"] / 120 - 1) < 0.04 for d in docs)
    assert all(abs(d["frequency_hz"] / 60 - 1) < 0.003 for d in docs)
    sags = [e for e in run(profile="ansi").truth if e["type"] == "VOLTAGE_SAG"]
    assert {e["detail"]["voltage_v"] for e in sags} == {108.0, 93.6}  # MAJOR 90%, CRITICAL 78%


# --------------------------------------------------------------------------- registry

def test_the_registry_has_one_row_per_meter_with_every_column(tmp_path):
    sim = run().sim
    path = tmp_path / "registry.csv"
    write_registry(sim.fleet, path)
    with path.open(newline="") as handle:
        reader = csv.DictReader(handle)
        rows = list(reader)
    assert tuple(reader.fieldnames) == REGISTRY_COLUMNS
    assert [row["meter_id"] for row in rows] == sim.fleet.ids
    assert {row["interval_minutes"] for row in rows} == {"15", "30"}
    assert {row["customer_class"] for row in rows} == {"residential", "commercial"}
    assert {row["nominal_voltage_v"] for row in rows} == {"230"}
    residential = [row for row in rows if row["customer_class"] == "residential"]
    solar = sum(row["has_generation"] == "true" for row in residential) / len(residential)
    assert 0.06 < solar < 0.14
    assert all(float(row["service_limit_kw"]) > 0 and int(row["register_max_kwh"]) >= 100_000
               and -90 < float(row["latitude"]) < 90 for row in rows)
    feeders = {row["feeder_id"] for row in rows}
    assert all(f.startswith(("R01-F", "R02-F")) for f in feeders) and len(feeders) >= 3


# --------------------------------------------------------------------------- command line

def outputs(tmp_path) -> list[str]:
    return ["--out", str(tmp_path / "readings.jsonl"), "--registry", str(tmp_path / "meters.csv"),
            "--truth", str(tmp_path / "truth.jsonl"), "--summary", str(tmp_path / "summary.json")]


def test_the_command_writes_records_registry_truth_and_summary(tmp_path, capsys):
    assert simulate.main(["--meters", "60", "--days", "2", "--seed", "3", *outputs(tmp_path)]) == 0
    lines = (tmp_path / "readings.jsonl").read_bytes().splitlines()
    summary = json.loads((tmp_path / "summary.json").read_text())
    truth = [json.loads(line) for line in (tmp_path / "truth.jsonl").read_text().splitlines()]
    assert len(lines) == summary["records"] == sum(summary["records_by_outcome"].values())
    assert len(truth) == sum(sum(types.values()) for types in summary["truth"].values())
    first = json.loads(lines[0])
    assert set(first) == {"key", "value"} and json.loads(first["value"])["meter_id"] == first["key"]
    assert len((tmp_path / "meters.csv").read_text().splitlines()) == 61
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 1 and printed[0].startswith("simulate: ")


def test_clean_disables_every_injection(tmp_path):
    assert simulate.main(["--meters", "40", "--days", "1", "--clean", *outputs(tmp_path)]) == 0
    assert (tmp_path / "truth.jsonl").read_text() == ""


@pytest.mark.parametrize("args, message", [
    (["--start", "2026-01-01T00:07:00Z"], "error: --start '2026-01-01T00:07:00Z': not on a "
                                          "15-minute boundary"),
    (["--start", "yesterday"], "error: --start 'yesterday': not an RFC 3339 instant"),
    (["--meters", "0"], "error: --meters 0: must be at least 1"),
    (["--outage-rate", "-1"], "error: --outage-rate -1: must be >= 0"),
    (["--mode", "live", "--meters", "1000000", "--rate", "100"],
     "error: --rate 100 is too slow for 1,000,000 meters"),
])
def test_user_errors_are_one_line_and_exit_2(args, message, capsys, tmp_path):
    assert simulate.main([*args, *outputs(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


# --------------------------------------------------------------------------- live mode

def test_live_mode_starts_at_the_current_interval():
    now = 1_767_226_321_000  # 2026-01-01T00:12:01Z
    sim = Simulation(Settings(mode="live", meters=5, days=0.1), wall_clock_ms=lambda: now)
    assert sim.timeline.start_ms == 1_767_225_600_000


def test_live_pacing_sends_each_event_time_as_its_own_slice():
    past = 1_000_000  # long gone: nothing waits
    batch = Batch(0, [0, 1, 2, 3, 4], [b""] * 5, [past, past + 1, past + 1, past + 1, past],
                  ["accepted"] * 5)
    # Two records per slice at 40/s; the earlier ts at the end (a late copy) rides along.
    assert list(Pacer(rate=40.0).slices(batch)) == [(0, 1), (1, 3), (3, 5)]
    with pytest.raises(SimulatorError, match="raise --rate to at least 10"):
        check_rate(6000, rate=5)
