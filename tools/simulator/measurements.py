"""Voltage, current, power factor and frequency at an interval's end, for the whole fleet.

Clean values stay well inside the alert bands: voltage within nominal +-3.5% (EN 50160 alerts
outside +-10%, ANSI Range A outside +-5%), frequency within +-0.2% (alert: +-1%).
"""

from __future__ import annotations

import numpy as np

from tools.simulator.fleet import Fleet
from tools.simulator.profiles import CLEAN_FREQUENCY_SPREAD, CLEAN_VOLTAGE_SPREAD

LOAD_DROP = 0.01        # voltage drop at a meter's own peak load, fraction of nominal
VOLTAGE_NOISE = 0.003   # sigma, truncated at two sigma
METER_FREQUENCY_NOISE = 0.0002


class Measurements:
    """Per-meter arrays (fraction of nominal for voltage and frequency) for one step."""

    def __init__(self, fleet: Fleet, step: int, load_kw: np.ndarray, rng: np.random.Generator):
        n = len(fleet)
        noise = np.clip(rng.normal(0.0, VOLTAGE_NOISE, n), -2 * VOLTAGE_NOISE, 2 * VOLTAGE_NOISE)
        sag = LOAD_DROP * np.clip(load_kw / (2 * fleet.mean_kw), 0.0, 1.0)
        self.voltage = np.clip(1.0 + fleet.voltage_offset - sag + noise,
                               1 - CLEAN_VOLTAGE_SPREAD, 1 + CLEAN_VOLTAGE_SPREAD)
        # The grid's frequency is one value everywhere; meters add a little measurement error.
        grid = 0.0008 * np.sin(2 * np.pi * step / 37.3) + rng.uniform(-0.0004, 0.0004)
        self.frequency = np.clip(1.0 + grid + rng.uniform(-METER_FREQUENCY_NOISE,
                                                          METER_FREQUENCY_NOISE, n),
                                 1 - CLEAN_FREQUENCY_SPREAD, 1 + CLEAN_FREQUENCY_SPREAD)
        self.power_factor = np.minimum(fleet.power_factor + rng.uniform(-0.01, 0.01, n), 0.999)


def current_a(power_kw: np.ndarray, voltage_v: np.ndarray, power_factor: np.ndarray) -> np.ndarray:
    return power_kw * 1000.0 / (voltage_v * power_factor)
