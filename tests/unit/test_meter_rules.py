"""Per-reading checks at and around every limit, under both voltage profiles."""

import pytest

from udfs.detection_thresholds import DetectionThresholds
from udfs.meter_rules import (
    frequency_excursion,
    import_delta,
    outage,
    register_rollback,
    reverse_flow,
    voltage_excursion,
)

EN = DetectionThresholds()
ANSI = DetectionThresholds(voltage_profile="ANSI_C84_1")


def excursion(volts: float, thresholds=EN, nominal=None):
    band = thresholds.voltage_band(nominal or thresholds.nominal_voltage_v)
    found = voltage_excursion(volts, band)
    return None if found is None else (found.type, found.severity, found.threshold)


@pytest.mark.parametrize("volts, expected", [
    (230.0, None),
    (207.0, None),                                     # on the band: normal
    (206.9, ("VOLTAGE_SAG", "MAJOR", 207.0)),
    (195.5, ("VOLTAGE_SAG", "MAJOR", 207.0)),          # on the severe level: still MAJOR
    (195.4, ("VOLTAGE_SAG", "CRITICAL", 195.5)),
    (253.0, None),
    (253.1, ("VOLTAGE_SWELL", "MAJOR", 253.0)),
    (264.5, ("VOLTAGE_SWELL", "MAJOR", 253.0)),
    (264.6, ("VOLTAGE_SWELL", "CRITICAL", 264.5)),
])
def test_en50160_voltage_limits(volts, expected):
    assert excursion(volts) == expected


@pytest.mark.parametrize("volts, expected", [
    (120.0, None),
    (114.0, None),
    (113.9, ("VOLTAGE_SAG", "MAJOR", 114.0)),
    (102.0, ("VOLTAGE_SAG", "MAJOR", 114.0)),
    (101.9, ("VOLTAGE_SAG", "CRITICAL", 102.0)),
    (126.0, None),
    (126.1, ("VOLTAGE_SWELL", "MAJOR", 126.0)),
    (138.0, ("VOLTAGE_SWELL", "MAJOR", 126.0)),
    (138.1, ("VOLTAGE_SWELL", "CRITICAL", 138.0)),
])
def test_ansi_c84_1_voltage_limits(volts, expected):
    assert excursion(volts, ANSI) == expected


def test_the_band_follows_the_meters_nominal_voltage():
    assert excursion(227.0, ANSI, nominal=240.0) == ("VOLTAGE_SAG", "MAJOR", 228.0)
    assert excursion(228.0, ANSI, nominal=240.0) is None


@pytest.mark.parametrize("thresholds, volts, is_outage", [
    (EN, 11.5, False), (EN, 11.4, True), (EN, 0.0, True),
    (ANSI, 6.0, False), (ANSI, 5.9, True),
])
def test_outage_below_5_percent_of_nominal(thresholds, volts, is_outage):
    limit = thresholds.outage_voltage(thresholds.nominal_voltage_v)
    found = outage(volts, (), limit)
    assert (found is not None) == is_outage
    if found:
        assert (found.type, found.severity, found.value, found.threshold) == (
            "OUTAGE", "CRITICAL", volts, limit)


def test_a_last_gasp_is_an_outage_whatever_the_voltage():
    assert outage(None, ("POWER_FAIL",), 11.5).severity == "CRITICAL"
    assert outage(230.0, ("CLOCK_INVALID", "POWER_FAIL"), 11.5) is not None
    assert outage(None, ("POWER_RESTORED",), 11.5) is None
    assert outage(None, (), 11.5) is None


@pytest.mark.parametrize("thresholds, hertz, expected", [
    (EN, 50.0, None), (EN, 49.5, None), (EN, 50.5, None),
    (EN, 49.49, ("MAJOR", 49.5)), (EN, 50.51, ("MAJOR", 50.5)),
    (ANSI, 59.4, None), (ANSI, 60.6, None),
    (ANSI, 59.39, ("MAJOR", 59.4)), (ANSI, 60.61, ("MAJOR", 60.6)),
])
def test_frequency_within_one_percent_of_the_profiles_nominal(thresholds, hertz, expected):
    found = frequency_excursion(hertz, *thresholds.frequency_band)
    assert (None if found is None else (found.severity, found.threshold)) == expected
    if found:
        assert found.type == "FREQUENCY_EXCURSION"


def test_reverse_flow_from_export_on_a_meter_without_generation_or_a_status():
    assert reverse_flow((), 0.0, 0.4, has_generation=False).value == pytest.approx(0.4)
    assert reverse_flow((), 0.0, 0.4, has_generation=True) is None
    assert reverse_flow((), 0.4, 0.4, has_generation=False) is None
    assert reverse_flow((), None, 0.4, has_generation=False) is None
    assert reverse_flow((), 0.4, None, has_generation=False) is None
    for code in ("TAMPER", "REVERSE_FLOW"):
        found = reverse_flow((code,), None, None, has_generation=True)
        assert (found.type, found.severity, found.message) == ("REVERSE_FLOW", "MAJOR",
                                                               f"status {code}")


@pytest.mark.parametrize("before, now, expected", [
    (100.0, 100.0, 0.0),
    (100.0, 101.5, 1.5),
    (99_950.0, 10.0, 60.0),     # top tenth into bottom tenth: a wrap at 100,000 kWh
    (90_000.0, 10_000.0, 20_000.0),  # both ends exactly on the rule
    (95_000.0, 94_000.0, None),  # from the top, but not into the bottom: a rollback
    (85_000.0, 5.0, None),       # into the bottom, but not from the top: a rollback
    (500.0, 450.0, None),
])
def test_import_delta_wraps_a_rollover_and_refuses_a_rollback(before, now, expected):
    assert import_delta(before, now, 100_000.0, 0.9, 0.1) == expected


def test_rollback_reports_the_drop():
    found = register_rollback(500.0, 450.0)
    assert (found.type, found.severity, found.value, found.threshold) == (
        "REGISTER_ROLLBACK", "MAJOR", 50.0, 0.0)
