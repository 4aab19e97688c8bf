"""Consumption against the robust z-score rule (median / MAD of the meter's trailing history,
alert above 6): clean load shapes stay well below it, injected MINOR spikes far above it."""

from __future__ import annotations

import collections

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from tools.simulator.settings import Settings
from tools.simulator.simulation import Simulation
from udfs.reading_parser import parse_reading

MAD_SCALE = 1.4826  # MAD of a normal distribution -> sigma


def interval_kwh(sim: Simulation) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per meter: the ts of each reading but the first, and the kWh used since the one before."""
    registers = collections.defaultdict(list)
    for record in sim.records():
        if record.outcome in ("accepted", "late"):
            reading = parse_reading(record.value)
            registers[record.meter_id].append((reading.ts_ms, reading.kwh_import))
    series = {}
    for meter, points in registers.items():
        ts, kwh = np.array(sorted(points)).T
        series[meter] = ts[1:], np.diff(kwh)
    return series


def trailing_z(used: np.ndarray, window: int) -> np.ndarray:
    """z of each interval against the `window` intervals before it."""
    history = sliding_window_view(used[:-1], window)
    median = np.median(history, axis=1)
    mad = np.median(np.abs(history - median[:, None]), axis=1)
    return (used[window:] - median) / (MAD_SCALE * mad)


def test_clean_load_shapes_stay_far_below_the_spike_threshold_over_a_day_or_a_week():
    sim = Simulation(Settings(meters=250, days=8.0, seed=5).clean())
    worst = 0.0
    for meter, (_, used) in interval_kwh(sim).items():
        per_day = 24 * 60 // int(sim.fleet.interval_min[sim.fleet.ids.index(meter)])
        for window in (per_day, 7 * per_day):
            worst = max(worst, float(trailing_z(used, window).max()))
    assert 2.0 < worst < 4.5  # the rule fires above 6


def test_injected_minor_spikes_stand_far_above_the_trailing_day():
    sim = Simulation(Settings(meters=1000, days=2.0, seed=7))
    used = interval_kwh(sim)
    spikes = [e for e in sim.truth() if e["expected_severity"] == "MINOR"
              and e["type"] == "CONSUMPTION_SPIKE"]
    assert spikes
    for e in spikes:
        per_day = 24 * 60 // int(sim.fleet.interval_min[sim.fleet.ids.index(e["meter_id"])])
        ts, kwh = used[e["meter_id"]]
        at = int(np.flatnonzero(ts == e["start_ts"])[0])
        window = min(per_day, at)
        assert trailing_z(kwh[at - window:at + 1], window)[-1] > 10
