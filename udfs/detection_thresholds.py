"""Every number of DESIGN's detection table, with DESIGN's defaults, in one frozen dataclass.

The detect job builds a `DetectionThresholds` from its YAML config; the rules in
meter_detector.py and feeder_correlation.py read no other number. Invalid values raise
ValueError naming the field, so a bad config fails on load, not on the first reading.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import NamedTuple

MINUTE_MS = 60_000
HOUR_MS = 3_600_000


class VoltageProfile(NamedTuple):
    nominal_v: float
    nominal_hz: float
    band_low: float   # fractions of nominal voltage
    band_high: float


# EN 50160: 230 V +-10% (207-253 V), 50 Hz. ANSI C84.1 Range A: 114-126 V at 120 V, which is
# -5% / +5% of nominal, 60 Hz. The bands are fractions so that a 240 V ANSI service gets 228-252 V.
VOLTAGE_PROFILES = {
    "EN50160": VoltageProfile(230.0, 50.0, 0.90, 1.10),
    "ANSI_C84_1": VoltageProfile(120.0, 60.0, 0.95, 1.05),
}


class VoltageBand(NamedTuple):
    """Volts. Inside [low, high] is normal; below severe_low / above severe_high is CRITICAL."""

    low: float
    high: float
    severe_low: float
    severe_high: float


def voltage_band(nominal_v: float, profile: str = "EN50160", severe_low_fraction: float = 0.85,
                 severe_high_fraction: float = 1.15) -> VoltageBand:
    p = VOLTAGE_PROFILES[profile]
    # Rounded to the microvolt: 230 x 1.10 is 253.00000000000003 in floating point, and a
    # reading of exactly 253.0 V must sit on the band, not outside it.
    return VoltageBand(_volts(nominal_v * p.band_low), _volts(nominal_v * p.band_high),
                       _volts(nominal_v * severe_low_fraction),
                       _volts(nominal_v * severe_high_fraction))


def _volts(value: float) -> float:
    return round(value, 6)


@dataclass(frozen=True)
class DetectionThresholds:
    # "EN50160" or "ANSI_C84_1": the voltage band, nominal frequency and default nominal voltage.
    voltage_profile: str = "EN50160"
    # OUTAGE: a POWER_FAIL status, or voltage below this fraction of nominal.
    outage_voltage_fraction: float = 0.05
    # VOLTAGE_SAG / _SWELL beyond these fractions of nominal are CRITICAL (MAJOR inside them).
    severe_low_fraction: float = 0.85
    severe_high_fraction: float = 1.15
    # FREQUENCY_EXCURSION: outside the profile's nominal frequency +- this fraction.
    frequency_tolerance_fraction: float = 0.01
    # FEEDER_OUTAGE: at least this share (and this many) of a feeder's registered meters went
    # into OUTAGE within the window.
    feeder_outage_share: float = 0.5
    feeder_outage_min_meters: int = 3
    feeder_outage_window_ms: int = MINUTE_MS
    # STALE_METER: no reading for this many of the meter's intervals.
    stale_after_intervals: int = 3
    # ZERO_CONSUMPTION: the import register unchanged this long while powered.
    zero_consumption_ms: int = 24 * HOUR_MS
    # CONSUMPTION_SPIKE (MINOR): robust z-score of the interval's kWh above this.
    spike_z: float = 6.0
    # The history is a day of the meter's intervals, one slot per interval of the day (96 at
    # 15 min, 48 at 30 min): a whole daily cycle keeps the median and MAD of clean load stable
    # (tools/simulator/load_shapes.py).
    spike_history_ms: int = 24 * HOUR_MS
    # No z-score until the history holds this much of the day (84 of 96 slots, 42 of 48). The
    # worst clean z-score on the simulator's fleets, with a contiguous part of the day missing
    # from the history: none 4.3, an eighth 5.1, a sixth 6.2, a quarter 11. So a meter's first
    # day, and the day after it was silent for over 3 h, get no MINOR spike rather than false
    # ones; MAJOR (above the service limit) needs no history.
    spike_min_history_ms: int = 21 * HOUR_MS
    # Unknown meters (no registry row) and registry rows without a value.
    default_nominal_voltage_v: float | None = None  # None: the profile's nominal voltage
    default_interval_minutes: int = 15
    default_register_max_kwh: float = 1_000_000.0
    # A drop from the top tenth of register_max into its bottom tenth is a rollover (the
    # register wrapped); any other drop is a rollback. Same rule as the aggregate job.
    rollover_top_fraction: float = 0.9
    rollover_bottom_fraction: float = 0.1

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"{f.name}: must be a finite number, got {value!r}")
        if self.voltage_profile not in VOLTAGE_PROFILES:
            raise ValueError(f"voltage_profile: {self.voltage_profile!r} is not one of "
                             f"{', '.join(VOLTAGE_PROFILES)}")
        p = VOLTAGE_PROFILES[self.voltage_profile]
        _check(0 < self.outage_voltage_fraction < self.severe_low_fraction,
               "outage_voltage_fraction", "must be > 0 and below severe_low_fraction")
        _check(self.severe_low_fraction < p.band_low, "severe_low_fraction",
               f"must be below the {self.voltage_profile} band ({p.band_low:g})")
        _check(self.severe_high_fraction > p.band_high, "severe_high_fraction",
               f"must be above the {self.voltage_profile} band ({p.band_high:g})")
        _check(0 < self.frequency_tolerance_fraction < 1, "frequency_tolerance_fraction",
               "must be between 0 and 1")
        _check(0 < self.feeder_outage_share <= 1, "feeder_outage_share",
               "must be > 0 and <= 1")
        _check(self.feeder_outage_min_meters >= 1, "feeder_outage_min_meters", "must be >= 1")
        _check(self.feeder_outage_window_ms > 0, "feeder_outage_window_ms", "must be > 0")
        _check(self.stale_after_intervals >= 1, "stale_after_intervals", "must be >= 1")
        _check(self.zero_consumption_ms > 0, "zero_consumption_ms", "must be > 0")
        _check(self.spike_z > 0, "spike_z", "must be > 0")
        _check(self.spike_history_ms > 0, "spike_history_ms", "must be > 0")
        _check(0 < self.spike_min_history_ms <= self.spike_history_ms, "spike_min_history_ms",
               "must be > 0 and <= spike_history_ms")
        _check(self.default_nominal_voltage_v is None or self.default_nominal_voltage_v > 0,
               "default_nominal_voltage_v", "must be > 0")
        _check(self.default_interval_minutes >= 1, "default_interval_minutes", "must be >= 1")
        _check(self.default_register_max_kwh > 0, "default_register_max_kwh", "must be > 0")
        _check(0 < self.rollover_bottom_fraction < self.rollover_top_fraction < 1,
               "rollover_top_fraction", "need 0 < rollover_bottom_fraction < "
               "rollover_top_fraction < 1")

    @property
    def profile(self) -> VoltageProfile:
        return VOLTAGE_PROFILES[self.voltage_profile]

    @property
    def nominal_voltage_v(self) -> float:
        """For meters whose nominal voltage is unknown."""
        if self.default_nominal_voltage_v is not None:
            return self.default_nominal_voltage_v
        return self.profile.nominal_v

    @property
    def frequency_band(self) -> tuple[float, float]:
        hz, tolerance = self.profile.nominal_hz, self.frequency_tolerance_fraction
        return _volts(hz * (1 - tolerance)), _volts(hz * (1 + tolerance))

    def voltage_band(self, nominal_v: float) -> VoltageBand:
        return voltage_band(nominal_v, self.voltage_profile, self.severe_low_fraction,
                            self.severe_high_fraction)

    def outage_voltage(self, nominal_v: float) -> float:
        return _volts(nominal_v * self.outage_voltage_fraction)

    def spike_history_length(self, interval_ms: int) -> int:
        """Intervals the spike history of a meter with this interval holds."""
        return max(1, math.ceil(self.spike_history_ms / interval_ms))

    def spike_min_history(self, interval_ms: int) -> int:
        return max(1, math.ceil(self.spike_min_history_ms / interval_ms))

    def feeder_outage_meters(self, registered_meters: int) -> int:
        """Meters in OUTAGE within the window that make a FEEDER_OUTAGE."""
        # Rounded before ceil: 0.6 x 5 is 3.0000000000000004, and 3 of 5 is 60%.
        share = math.ceil(round(self.feeder_outage_share * registered_meters, 9))
        return max(self.feeder_outage_min_meters, share)


def _check(ok: bool, name: str, problem: str) -> None:
    if not ok:
        raise ValueError(f"{name}: {problem}")
