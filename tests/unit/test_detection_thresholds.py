"""The numbers of DESIGN's detection table: defaults, the two voltage profiles, validation."""

import pytest

from udfs.detection_thresholds import DetectionThresholds, VoltageBand, voltage_band

MIN = 60_000


def test_defaults_are_designs():
    t = DetectionThresholds()
    assert (t.voltage_profile, t.outage_voltage_fraction) == ("EN50160", 0.05)
    assert (t.feeder_outage_share, t.feeder_outage_min_meters, t.feeder_outage_window_ms) == (
        0.5, 3, 60_000)
    assert (t.severe_low_fraction, t.severe_high_fraction) == (0.85, 1.15)
    assert (t.stale_after_intervals, t.zero_consumption_ms) == (3, 24 * 60 * MIN)
    assert (t.spike_z, t.frequency_tolerance_fraction) == (6.0, 0.01)
    assert (t.default_interval_minutes, t.default_register_max_kwh) == (15, 1_000_000.0)
    assert (t.rollover_top_fraction, t.rollover_bottom_fraction) == (0.9, 0.1)


def test_en50160_band_is_230_v_plus_minus_10_percent_at_50_hz():
    t = DetectionThresholds()
    assert t.voltage_band(230.0) == VoltageBand(207.0, 253.0, 195.5, 264.5)
    assert t.frequency_band == (49.5, 50.5)
    assert t.nominal_voltage_v == 230.0
    assert t.outage_voltage(230.0) == 11.5


def test_ansi_c84_1_range_a_is_114_to_126_v_at_120_v_and_60_hz():
    t = DetectionThresholds(voltage_profile="ANSI_C84_1")
    assert t.voltage_band(120.0) == VoltageBand(114.0, 126.0, 102.0, 138.0)
    assert t.voltage_band(240.0) == VoltageBand(228.0, 252.0, 204.0, 276.0)
    assert t.frequency_band == (59.4, 60.6)
    assert t.nominal_voltage_v == 120.0
    assert t.outage_voltage(120.0) == 6.0


def test_voltage_band_function_takes_a_nominal_voltage_and_profile():
    assert voltage_band(230.0) == VoltageBand(207.0, 253.0, 195.5, 264.5)
    assert voltage_band(120.0, "ANSI_C84_1") == VoltageBand(114.0, 126.0, 102.0, 138.0)


def test_an_explicit_default_nominal_voltage_wins_over_the_profiles():
    assert DetectionThresholds(default_nominal_voltage_v=240.0).nominal_voltage_v == 240.0


def test_spike_history_is_a_day_of_the_meters_intervals():
    t = DetectionThresholds()
    assert (t.spike_history_length(15 * MIN), t.spike_history_length(30 * MIN)) == (96, 48)
    assert (t.spike_min_history(15 * MIN), t.spike_min_history(30 * MIN)) == (84, 42)


@pytest.mark.parametrize("registered, needed", [(1, 3), (4, 3), (5, 3), (6, 3), (7, 4),
                                                (10, 5), (250, 125), (251, 126)])
def test_feeder_outage_needs_half_the_feeder_and_at_least_three(registered, needed):
    assert DetectionThresholds().feeder_outage_meters(registered) == needed


def test_feeder_share_is_not_fooled_by_floating_point():
    assert DetectionThresholds(feeder_outage_share=0.6).feeder_outage_meters(5) == 3


@pytest.mark.parametrize("field, value, message", [
    ("voltage_profile", "IEEE", "voltage_profile: 'IEEE' is not one of EN50160, ANSI_C84_1"),
    ("outage_voltage_fraction", 0.0, "outage_voltage_fraction: must be > 0"),
    ("severe_low_fraction", 0.95, "severe_low_fraction: must be below the EN50160 band"),
    ("severe_high_fraction", 1.05, "severe_high_fraction: must be above the EN50160 band"),
    ("feeder_outage_share", 1.5, "feeder_outage_share: must be > 0 and <= 1"),
    ("feeder_outage_min_meters", 0, "feeder_outage_min_meters: must be >= 1"),
    ("stale_after_intervals", 0, "stale_after_intervals: must be >= 1"),
    ("spike_z", float("nan"), "spike_z: must be a finite number"),
    ("spike_min_history_ms", 25 * 60 * MIN, "spike_min_history_ms: must be > 0 and <="),
    ("rollover_top_fraction", 0.05, "rollover_top_fraction: need 0 <"),
])
def test_a_bad_value_names_its_field(field, value, message):
    with pytest.raises(ValueError) as err:
        DetectionThresholds(**{field: value})
    assert str(err.value).startswith(message)


def test_severe_fractions_are_checked_against_the_chosen_profile():
    # 0.92 is inside EN 50160's 10% band but outside ANSI's 5% one.
    with pytest.raises(ValueError):
        DetectionThresholds(severe_low_fraction=0.92)
    assert DetectionThresholds(voltage_profile="ANSI_C84_1",
                               severe_low_fraction=0.92).voltage_band(120.0).severe_low == 110.4
