"""Aggregate job scenarios on the real broker and database, with exact expected rows.

One fleet of small stories runs through one job; each test asserts on its own meters. The
production order matters where the watermark does: the watermark trails the newest event
time by out-of-orderness (30 s) plus allowed lateness (30 min).
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import MIN, T0, reading
from tools import registry

pytestmark = pytest.mark.integration

Q = 15 * MIN  # one interval

REGISTRY = """meter_id,feeder_id,region,nominal_voltage_v,register_max_kwh
{steady},{F1},{north},230,
{rollover},{F1},{north},230,1000
{rollback},{F1},{north},230,
{gap},{F2},{north},230,
{late},{F2},{north},230,
{dup},{F2},{north},230,
{silent},{F1},{north},230,
"""


def stories(m) -> list:
    """Readings in the order the fleet sends them: interval by interval, with a few out of
    line on purpose."""
    return [
        # steady: a reading every interval; the first has no previous register.
        # rollover: its register wraps at 1000 kWh. rollback: its register goes down.
        # gap: silent for three intervals. late: one reading arrives an interval late.
        # dup: one reading arrives twice.
        reading(m("steady"), T0, kwh_import=100.0),
        reading(m("rollover"), T0, kwh_import=998.5),
        reading(m("rollback"), T0, kwh_import=500.0),
        reading(m("gap"), T0, kwh_import=10.0),
        reading(m("late"), T0, kwh_import=50.0),
        reading(m("dup"), T0, kwh_import=7.0),
        reading(m("steady"), T0 + Q, kwh_import=101.5),
        reading(m("rollover"), T0 + Q, kwh_import=999.5),
        reading(m("rollback"), T0 + Q, kwh_import=450.0),
        reading(m("dup"), T0 + Q, kwh_import=8.0),
        reading(m("dup"), T0 + Q, kwh_import=8.0),
        reading(m("steady"), T0 + 2 * Q, kwh_import=103.0),
        reading(m("rollover"), T0 + 2 * Q, kwh_import=1.5),
        reading(m("rollback"), T0 + 2 * Q, kwh_import=460.0),
        reading(m("late"), T0 + 2 * Q, kwh_import=54.0),
        # Watermark now T0 + 2Q - 30.5 min: the T0 + Q reading is still on time.
        reading(m("late"), T0 + Q, kwh_import=51.0),
        reading(m("steady"), T0 + 3 * Q, kwh_import=103.0),
        reading(m("gap"), T0 + 4 * Q, kwh_import=18.0),
        reading(m("toolate"), T0 + 3 * 60 * MIN, kwh_import=5.0),
        # Watermark now T0 + 3h - 30.5 min: a reading from T0 + Q is beyond the lateness.
        reading(m("toolate"), T0 + Q, kwh_import=1.0),
    ]


def intervals(scenario, story: str) -> list[tuple]:
    rows = scenario.query(
        "SELECT (extract(epoch FROM interval_start) * 1000)::bigint, kwh_import, reading_count,"
        " quality, rollover, rollback FROM meter_intervals WHERE meter_id = %s"
        " ORDER BY interval_start", scenario.meter_named(story))
    return [(start - T0, kwh, count, quality, rollover, rollback)
            for start, kwh, count, quality, rollover, rollback in rows]


@pytest.fixture(scope="module", params=[1, 2], ids=["parallelism-1", "parallelism-2"])
def aggregated(request, module_scenario):
    # Watermarks move after every reading of a single partition, so which reading is late is
    # decided by the order of the records alone.
    scenario = module_scenario(f"aggregate-p{request.param}", partitions=1,
                               overrides={"event_time": {"watermark_emission": "on-event"}})
    m = scenario.meter_named
    csv = scenario.tmp / "registry.csv"
    csv.write_text(REGISTRY.format(**{s: m(s) for s in ("steady", "rollover", "rollback", "gap",
                                                         "late", "dup", "silent", "F1", "F2",
                                                         "north")}))
    registry.load(scenario.config, csv)
    scenario.produce(stories(m))
    scenario.run_job("aggregate", parallelism=request.param)
    return scenario


def test_steady_meter_gets_register_deltas(aggregated):
    assert intervals(aggregated, "steady") == [
        (-Q, None, 1, "partial", False, False),  # first reading: no previous register
        (0, 1.5, 1, "complete", False, False),
        (Q, 1.5, 1, "complete", False, False),
        (2 * Q, 0.0, 1, "complete", False, False),
    ]


def test_rollover_wraps_at_the_register_maximum(aggregated):
    assert intervals(aggregated, "rollover")[1:] == [
        (0, 1.0, 1, "complete", False, False),
        (Q, 2.0, 1, "complete", True, False),  # 999.5 -> 1000 -> 1.5
    ]


def test_rollback_is_flagged_not_summed(aggregated):
    assert intervals(aggregated, "rollback")[1:] == [
        (0, None, 1, "partial", False, True),
        (Q, 10.0, 1, "complete", False, False),
    ]


def test_gap_is_spread_over_the_intervals_it_spans(aggregated):
    # 8 kWh between T0 and T0 + 4Q: 2 kWh in each of the four intervals in between.
    assert intervals(aggregated, "gap")[1:] == [
        (0, 2.0, 0, "estimated", False, False),
        (Q, 2.0, 0, "estimated", False, False),
        (2 * Q, 2.0, 0, "estimated", False, False),
        (3 * Q, 2.0, 1, "estimated", False, False),
    ]


def test_late_reading_within_lateness_counts_in_its_interval(aggregated):
    assert intervals(aggregated, "late")[1:] == [
        (0, 1.0, 1, "complete", False, False),
        (Q, 3.0, 1, "complete", False, False),
    ]


def test_duplicate_reading_counts_once(aggregated):
    assert intervals(aggregated, "dup")[1:] == [(0, 1.0, 1, "complete", False, False)]


def test_reading_beyond_allowed_lateness_goes_to_the_late_topic(aggregated):
    late = aggregated.consume(aggregated.config.topics.late.name, 1)
    assert [(r["meter_id"], r["ts"], r["kwh_import"]) for r in late] == [
        (aggregated.meter_named("toolate"), T0 + Q, 1.0)]
    assert [row[0] for row in intervals(aggregated, "toolate")] == [3 * 60 * MIN - Q]


def test_feeder_and_region_load(aggregated):
    rows = aggregated.query(
        "SELECT feeder_id, (extract(epoch FROM period_start) * 1000)::bigint, kwh_import,"
        " peak_kw, avg_kw, meters_reporting, meters_registered FROM feeder_load"
        " WHERE feeder_id LIKE %s AND period_start >= to_timestamp(%s / 1000.0)"
        " AND period_start < to_timestamp(%s / 1000.0) ORDER BY 1, 2",
        f"{aggregated.tag}-%", T0, T0 + 60 * MIN)
    # Hour [T0, T0 + 1h): F1 = steady (1.5 + 1.5 + 0) + rollover (1 + 2) + rollback (10);
    # its busiest interval is [T0 + Q, T0 + 2Q) with 1.5 + 2 + 10 kWh = 54 kW.
    # F2 = gap (4 x 2) + late (1 + 3) + dup (1); busiest [T0 + Q, T0 + 2Q): 2 + 3 = 20 kW.
    f1, f2 = aggregated.meter_named("F1"), aggregated.meter_named("F2")
    assert rows == [
        (f1, T0, 16.0, 54.0, 16.0, 3, 4),
        (f2, T0, 13.0, 20.0, 13.0, 3, 3),
    ]
    region = aggregated.query(
        "SELECT kwh_import, peak_kw, avg_kw, meters_reporting, meters_registered"
        " FROM region_load WHERE region = %s AND period_start = to_timestamp(%s / 1000.0)",
        aggregated.meter_named("north"), T0)
    # Both feeders; the busiest interval is [T0 + Q, T0 + 2Q) with 13.5 + 5 kWh = 74 kW.
    assert region == [(29.0, 74.0, 29.0, 6, 7)]


def test_idle_partition_does_not_stall_the_intervals(module_scenario):
    # Two partitions, readings in only one: without idleness the silent partition would hold
    # the watermark back and no interval would ever be written while the job runs.
    scenario = module_scenario("aggregate-idle", partitions=2, overrides={
        "event_time": {"idle_timeout": "2s"}, "aggregate": {"allowed_lateness": "1min"}})
    meter = scenario.meter_named("busy")
    scenario.produce([reading(meter, T0 + i * Q, kwh_import=float(i)) for i in range(6)],
                     partition=0)
    with scenario.running_job("aggregate", parallelism=2) as job:
        deadline = time.monotonic() + 120
        rows = []
        while len(rows) < 4 and time.monotonic() < deadline and job.poll() is None:
            time.sleep(2)
            rows = intervals(scenario, "busy")
        assert job.poll() is None, job.stderr.read().decode()[-3000:]
    # The watermark (newest reading T0 + 5Q minus 1.5 min) has passed the first four ends.
    assert rows[:4] == [(-Q, None, 1, "partial", False, False),
                        (0, 1.0, 1, "complete", False, False),
                        (Q, 1.0, 1, "complete", False, False),
                        (2 * Q, 1.0, 1, "complete", False, False)]


def test_simulated_fleet_equals_the_reference_computation(module_scenario, tmp_path_factory):
    """100 meters x 2 days of simulated readings (anomalies, duplicates, late and broken
    records included) through the job; the interval and load tables equal udfs.interval_math
    and numpy over the same readings, row for row, and the Parquet cold storage holds the
    same interval rows."""
    import csv

    import numpy as np

    from tools.simulator.fleet import write_registry
    from tools.simulator.settings import Settings
    from tools.simulator.simulation import Simulation
    from udfs.interval_math import Readings
    from udfs.interval_math import intervals as reference_intervals
    from udfs.reading_parser import Reading, parse_reading

    # One partition per subtask: each lateness decision depends on that partition alone.
    cold = tmp_path_factory.mktemp("cold-storage")
    scenario = module_scenario("aggregate-sim", partitions=2, overrides={
        "event_time": {"watermark_emission": "on-event"},
        "aggregate": {"parquet": {"enabled": True, "path": cold.as_uri()}}})
    sim = Simulation(Settings(meters=100, days=2, seed=5, id_prefix=f"{scenario.tag}:"))
    records = list(sim.records())
    write_registry(sim.fleet, scenario.tmp / "registry.csv")
    registry.load(scenario.config, scenario.tmp / "registry.csv")
    scenario.produce([(r.key, r.value) for r in records], compression="zstd")
    scenario.run_job("aggregate", parallelism=2)

    with (scenario.tmp / "registry.csv").open() as handle:
        meters = {row["meter_id"]: row for row in csv.DictReader(handle)}
    codes = {meter_id: code for code, meter_id in enumerate(sorted(meters))}
    parsed = [parse_reading(r.value) for r in records if r.outcome in ("accepted", "duplicate")]
    assert all(isinstance(p, Reading) for p in parsed)
    reference = reference_intervals(Readings(
        meter=np.array([codes[p.meter_id] for p in parsed]),
        ts=np.array([p.ts_ms for p in parsed]),
        kwh_import=np.array([p.kwh_import for p in parsed]),
        kwh_export=np.array([np.nan if p.kwh_export is None else p.kwh_export for p in parsed]),
        voltage=np.array([np.nan if p.voltage_v is None else p.voltage_v for p in parsed]),
        power_factor=np.array([np.nan if p.power_factor is None else p.power_factor
                               for p in parsed]),
        register_max=np.array([float(meters[p.meter_id]["register_max_kwh"]) for p in parsed])),
        interval_ms=Q, max_gap=96)
    names = sorted(meters)

    def rounded(value):
        return None if value is None or (isinstance(value, float) and np.isnan(value)) \
            else round(float(value), 6)

    expected = sorted(
        (names[m], int(i) * Q, rounded(ki), rounded(ke), rounded(vmin), rounded(vmax),
         rounded(vavg), rounded(pf), int(n), str(q), bool(ro), bool(rb))
        for m, i, ki, ke, vmin, vmax, vavg, pf, n, q, ro, rb in zip(
            reference.meter, reference.index, reference.kwh_import, reference.kwh_export,
            reference.voltage_min, reference.voltage_max, reference.voltage_avg,
            reference.power_factor_avg, reference.reading_count, reference.quality,
            reference.rollover, reference.rollback, strict=True))
    stored = sorted(
        (m, start, rounded(ki), rounded(ke), rounded(vmin), rounded(vmax), rounded(vavg),
         rounded(pf), n, q, ro, rb)
        for m, start, ki, ke, vmin, vmax, vavg, pf, n, q, ro, rb in scenario.query(
            "SELECT meter_id, (extract(epoch FROM interval_start) * 1000)::bigint, kwh_import,"
            " kwh_export, voltage_min, voltage_max, voltage_avg, power_factor_avg,"
            " reading_count, quality, rollover, rollback FROM meter_intervals"
            " WHERE meter_id LIKE %s", f"{scenario.tag}:%"))
    assert len(stored) == len(expected)
    assert stored == expected

    import pyarrow.dataset as ds
    cold_rows = ds.dataset(cold, format="parquet", partitioning="hive").to_table().to_pylist()
    assert sorted(
        (r["meter_id"], int(r["interval_start"].timestamp() * 1000), rounded(r["kwh_import"]),
         rounded(r["kwh_export"]), rounded(r["voltage_min"]), rounded(r["voltage_max"]),
         rounded(r["voltage_avg"]), rounded(r["power_factor_avg"]), r["reading_count"],
         r["quality"], r["rollover"], r["rollback"]) for r in cold_rows) == expected
    # Partitioned by the interval's UTC date and the meter's region.
    assert all(r["dt"] == r["interval_start"].strftime("%Y-%m-%d")
               and r["region"] == meters[r["meter_id"]]["region"] for r in cold_rows)

    late = scenario.consume(scenario.config.topics.late.name, sim.summary()[
        "records_by_outcome"]["late"])
    assert sorted((r["meter_id"], r["ts"]) for r in late) == sorted(
        (r.meter_id, r.ts_ms) for r in records if r.outcome == "late")

    # Feeder load from the reference intervals, per hour.
    feeder_of = {codes[m]: row["feeder_id"] for m, row in meters.items()}
    hourly: dict = {}
    for m, i, kwh, n in zip(reference.meter, reference.index, reference.kwh_import,
                            reference.reading_count, strict=True):
        key = (feeder_of[int(m)], int(i) * Q // 3_600_000 * 3_600_000)
        totals, reporting = hourly.setdefault(key, ({}, set()))
        totals[int(i)] = totals.get(int(i), 0.0) + (0.0 if np.isnan(kwh) else float(kwh))
        if n > 0:
            reporting.add(int(m))
    registered = {f: sum(1 for row in meters.values() if row["feeder_id"] == f)
                  for f in set(feeder_of.values())}
    expected_load = sorted(
        (feeder, start, round(sum(t.values()), 6), round(max(t.values()) * 4, 6),
         len(reporting), registered[feeder])
        for (feeder, start), (t, reporting) in hourly.items())
    stored_load = sorted(
        (feeder, start, round(kwh, 6), round(peak, 6), reporting, reg)
        for feeder, start, kwh, peak, reporting, reg in scenario.query(
            "SELECT feeder_id, (extract(epoch FROM period_start) * 1000)::bigint, kwh_import,"
            " peak_kw, meters_reporting, meters_registered FROM feeder_load"
            " WHERE feeder_id LIKE %s", f"{scenario.tag}:%"))
    assert stored_load == expected_load
