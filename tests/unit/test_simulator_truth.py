"""The ground truth tells what the records show: for every injected anomaly, fault and control,
the meter's readings (as the validator parses them) and the send order bear it out."""

from __future__ import annotations

import collections
import functools
import itertools
from dataclasses import dataclass

import pytest

from tools.simulator.settings import Settings
from tools.simulator.simulation import Record, Simulation
from udfs.reading_parser import Reading, parse_reading

WALL_MS = 1_798_761_600_000  # 2027-01-01T00:00:00Z
HOUR_MS = 3_600_000
BAND, SEVERE = (207.0, 253.0), (195.5, 264.5)  # EN 50160 at 230 V, and 85% / 115%


@dataclass(frozen=True)
class Fleet:
    sim: Simulation
    records: list[Record]
    truth: list[dict]
    series: dict[str, list[Reading]]        # delivered readings per meter, by event time
    sent_at: dict[tuple[str, int], list[int]]  # (meter, ts) -> positions in send order

    def of(self, type_: str) -> list[dict]:
        found = [e for e in self.truth if e["type"] == type_]
        assert found, f"no {type_} injected"
        return found

    def meter(self, meter_id: str) -> int:
        return self.sim.fleet.ids.index(meter_id)

    def at(self, meter_id: str, ts: int) -> Reading:
        (reading,) = [r for r in self.series[meter_id] if r.ts_ms == ts]
        return reading

    def before(self, meter_id: str, ts: int) -> Reading:
        return [r for r in self.series[meter_id] if r.ts_ms < ts][-1]

    def between(self, meter_id: str, start: int, end: int) -> list[Reading]:
        return [r for r in self.series[meter_id] if start < r.ts_ms < end]


@functools.lru_cache
def fleet() -> Fleet:
    sim = Simulation(Settings(meters=1000, days=2.0, seed=7), wall_clock_ms=lambda: WALL_MS)
    records = list(sim.records())
    series, sent_at = collections.defaultdict(list), collections.defaultdict(list)
    for position, record in enumerate(records):
        sent_at[record.meter_id, record.ts_ms].append(position)
        if record.outcome in ("accepted", "late"):
            series[record.meter_id].append(parse_reading(record.value))
    for readings in series.values():
        readings.sort(key=lambda r: r.ts_ms)
    return Fleet(sim, records, sim.truth(), series, sent_at)


# --------------------------------------------------------------------------- anomalies

def test_outage_is_a_last_gasp_silence_and_a_restoration():
    f = fleet()
    for e in f.of("OUTAGE"):
        meter, start, end = e["meter_id"], e["start_ts"], e["end_ts"]
        gasp, back = f.at(meter, start), f.at(meter, end)
        assert gasp.status == ("POWER_FAIL",) and gasp.voltage_v == 0
        assert back.status == ("POWER_RESTORED",) and BAND[0] < back.voltage_v < BAND[1]
        assert f.between(meter, start, end) == []
        assert back.kwh_import == gasp.kwh_import  # nothing consumed while off
        assert e["expected_severity"] == "CRITICAL"


def test_feeder_outage_takes_most_of_a_feeder_down_within_a_minute():
    f = fleet()
    for e in f.of("FEEDER_OUTAGE"):
        feeder_size = e["detail"]["feeder_meters"]
        assert len(e["meters"]) >= max(3, 0.6 * feeder_size)
        for meter in e["meters"]:
            (gasp,) = [r for r in f.series[meter] if r.status == ("POWER_FAIL",)
                       and e["start_ts"] <= r.ts_ms <= e["end_ts"]]
            assert gasp.ts_ms - e["start_ts"] < 60_000
            (back,) = [r for r in f.between(meter, gasp.ts_ms, e["end_ts"] + 1)
                       if r.status == ("POWER_RESTORED",)]
            assert f.between(meter, gasp.ts_ms, back.ts_ms) == []
        members = set(e["meters"])
        assert not [o for o in f.truth if o["type"] == "OUTAGE" and o["meter_id"] in members
                    and o["start_ts"] <= e["end_ts"] and o["end_ts"] >= e["start_ts"]]


@pytest.mark.parametrize("type_", ["VOLTAGE_SAG", "VOLTAGE_SWELL"])
def test_voltage_excursions_are_outside_the_band_until_the_alert_clears(type_):
    f = fleet()
    for e in f.of(type_):
        meter = e["meter_id"]
        during = [f.at(meter, e["start_ts"]),
                  *f.between(meter, e["start_ts"], e["end_ts"])]
        assert len(during) == e["detail"]["readings"]
        for reading in during:
            volts = reading.voltage_v
            if type_ == "VOLTAGE_SAG":
                assert volts < BAND[0]
                assert (volts < SEVERE[0]) == (e["expected_severity"] == "CRITICAL")
            else:
                assert volts > BAND[1]
                assert (volts > SEVERE[1]) == (e["expected_severity"] == "CRITICAL")
        assert BAND[0] < f.at(meter, e["end_ts"]).voltage_v < BAND[1]


def test_stale_meter_falls_silent_for_four_intervals_or_more():
    f = fleet()
    for e in f.of("STALE_METER"):
        meter, last = e["meter_id"], e["detail"]["last_reading_ts"]
        interval = f.sim.fleet.interval_ms(f.meter(meter))
        assert f.at(meter, last) and f.at(meter, e["end_ts"])
        assert f.between(meter, last, e["end_ts"]) == []
        assert e["end_ts"] - last >= 5 * interval
        assert e["start_ts"] == last + 3 * interval


def test_zero_consumption_freezes_the_register_for_26_hours_with_voltage_present():
    f = fleet()
    span_end = f.sim.timeline.end(f.sim.timeline.steps - 1)
    for e in f.of("ZERO_CONSUMPTION"):
        since = e["detail"]["frozen_since_ts"]
        frozen = [r for r in f.series[e["meter_id"]] if r.ts_ms >= since]
        assert len({r.kwh_import for r in frozen}) == 1
        assert all(BAND[0] < r.voltage_v < BAND[1] for r in frozen)
        assert span_end - since >= 26 * HOUR_MS
        assert e["start_ts"] == since + 24 * HOUR_MS and e["end_ts"] is None


def test_register_rollback_steps_down_by_tens_of_kwh_and_counts_on():
    f = fleet()
    for e in f.of("REGISTER_ROLLBACK"):
        meter = e["meter_id"]
        before, now, after = (f.before(meter, e["start_ts"]), f.at(meter, e["start_ts"]),
                              f.at(meter, e["end_ts"]))
        assert before.kwh_import - now.kwh_import > 10
        assert before.kwh_import < 0.9 * f.sim.fleet.register_max_wh[f.meter(meter)] / 1000
        assert after.kwh_import > now.kwh_import


def test_reverse_flow_is_export_on_a_meter_without_generation_or_a_status():
    f = fleet()
    for e in f.of("REVERSE_FLOW"):
        meter, variant = e["meter_id"], e["detail"]["variant"]
        assert not f.sim.fleet.generation[f.meter(meter)]
        now = f.at(meter, e["start_ts"])
        if variant == "export_rise":
            assert now.kwh_export > f.before(meter, e["start_ts"]).kwh_export
            end = f.at(meter, e["end_ts"])
            assert end.kwh_export == f.before(meter, e["end_ts"]).kwh_export
        else:
            assert now.status == (variant,)


def test_consumption_spike_is_minor_below_the_service_limit_and_major_above_it():
    f = fleet()
    for e in f.of("CONSUMPTION_SPIKE"):
        meter = e["meter_id"]
        i = f.meter(meter)
        hours = f.sim.fleet.interval_min[i] / 60
        limit = f.sim.fleet.limit_kw[i] * hours
        used = f.at(meter, e["start_ts"]).kwh_import - f.before(meter, e["start_ts"]).kwh_import
        if e["expected_severity"] == "MINOR":
            assert 8 * f.sim.fleet.mean_kw[i] * hours <= used + 0.01 and used < 0.7 * limit
        else:
            assert used > 1.4 * limit


def test_frequency_excursion_leaves_the_one_percent_band():
    f = fleet()
    for e in f.of("FREQUENCY_EXCURSION"):
        meter = e["meter_id"]
        during = [f.at(meter, e["start_ts"]), *f.between(meter, e["start_ts"], e["end_ts"])]
        assert len(during) == e["detail"]["readings"]
        assert all(abs(r.frequency_hz / 50 - 1) > 0.012 for r in during)
        assert abs(f.at(meter, e["end_ts"]).frequency_hz / 50 - 1) < 0.003


def test_rollover_controls_wrap_at_the_register_maximum():
    f = fleet()
    for e in f.of("REGISTER_ROLLOVER"):
        meter = e["meter_id"]
        i = f.meter(meter)
        before, now = f.before(meter, e["start_ts"]), f.at(meter, e["start_ts"])
        used = now.kwh_import + f.sim.fleet.register_max_wh[i] / 1000 - before.kwh_import
        assert now.kwh_import < before.kwh_import
        assert 0 <= used <= f.sim.fleet.limit_kw[i] * f.sim.fleet.interval_min[i] / 60
        assert e["kind"] == "control" and e["expected_alert"] is None


def test_injections_on_one_meter_never_overlap():
    by_meter = collections.defaultdict(list)
    for e in fleet().truth:
        for meter in e.get("meters") or [e["meter_id"]]:
            start = e["detail"].get("last_reading_ts", e["detail"].get("frozen_since_ts",
                                                                         e["start_ts"]))
            by_meter[meter].append((start, e["end_ts"] or float("inf")))
    for spans in by_meter.values():
        spans.sort()
        assert all(a_end < b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))


# --------------------------------------------------------------------------- faults

def test_a_duplicate_is_the_same_bytes_sent_again_later():
    f = fleet()
    for e in f.of("duplicate"):
        first, again = f.sent_at[e["meter_id"], e["start_ts"]]
        assert f.records[first].value == f.records[again].value
        assert (f.records[first].outcome, f.records[again].outcome) == ("accepted", "duplicate")


def test_an_out_of_order_reading_follows_the_meters_next_one():
    f = fleet()
    for e in f.of("out_of_order"):
        (mine,) = f.sent_at[e["meter_id"], e["start_ts"]]
        (next_one,) = f.sent_at[e["meter_id"], e["detail"]["delivered_after_ts"]]
        assert mine == next_one + 1
        assert f.records[mine].outcome == "accepted" and e["expected_outcome"] == "none"


def test_a_late_reading_arrives_after_the_stream_moved_two_hours_on():
    f = fleet()
    for e in f.of("late"):
        (mine,) = f.sent_at[e["meter_id"], e["start_ts"]]
        newest = max(r.ts_ms for r in f.records[:mine] if r.outcome == "accepted")
        assert newest - e["start_ts"] >= 2 * HOUR_MS
        assert f.records[mine].outcome == "late"
