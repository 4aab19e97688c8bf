"""Checks of one reading (against its predecessor where a rule compares registers), as plain
functions. Each returns the abnormal `Condition` it finds, or None when the reading is normal
for that rule; whether a condition opens, holds or clears an alert is meter_detector.py's
business. Every comparison is strict, as DESIGN words them: a value on a limit is normal.
"""

from __future__ import annotations

from typing import NamedTuple

from udfs.alert_record import (
    CRITICAL,
    MAJOR,
    OUTAGE,
    REGISTER_ROLLBACK,
    REVERSE_FLOW,
    VOLTAGE_SAG,
    VOLTAGE_SWELL,
)
from udfs.alert_record import FREQUENCY_EXCURSION as FREQUENCY
from udfs.detection_thresholds import VoltageBand

REVERSE_FLOW_CODES = ("REVERSE_FLOW", "TAMPER")


class Condition(NamedTuple):
    type: str
    severity: str
    value: float | None      # what was measured (V, Hz, kWh ...)
    threshold: float | None  # the limit it crossed, same unit
    message: str


def outage(voltage_v: float | None, status: tuple[str, ...],
           outage_v: float) -> Condition | None:
    """A last gasp (POWER_FAIL), or voltage below the outage level."""
    if "POWER_FAIL" in status:
        return Condition(OUTAGE, CRITICAL, voltage_v, outage_v, "power failure (last gasp)")
    if voltage_v is not None and voltage_v < outage_v:
        return Condition(OUTAGE, CRITICAL, voltage_v, outage_v,
                         f"no supply: {voltage_v:g} V < {outage_v:g} V")
    return None


def voltage_excursion(voltage_v: float, band: VoltageBand) -> Condition | None:
    """VOLTAGE_SAG or VOLTAGE_SWELL, CRITICAL beyond the severe level; for a powered reading."""
    if voltage_v < band.low:
        if voltage_v < band.severe_low:
            return Condition(VOLTAGE_SAG, CRITICAL, voltage_v, band.severe_low,
                             f"severe sag: {voltage_v:g} V < {band.severe_low:g} V")
        return Condition(VOLTAGE_SAG, MAJOR, voltage_v, band.low,
                         f"sag: {voltage_v:g} V < {band.low:g} V")
    if voltage_v > band.high:
        if voltage_v > band.severe_high:
            return Condition(VOLTAGE_SWELL, CRITICAL, voltage_v, band.severe_high,
                             f"severe swell: {voltage_v:g} V > {band.severe_high:g} V")
        return Condition(VOLTAGE_SWELL, MAJOR, voltage_v, band.high,
                         f"swell: {voltage_v:g} V > {band.high:g} V")
    return None


def frequency_excursion(frequency_hz: float, low_hz: float, high_hz: float) -> Condition | None:
    if frequency_hz < low_hz:
        return Condition(FREQUENCY, MAJOR, frequency_hz, low_hz,
                         f"frequency {frequency_hz:g} Hz < {low_hz:g} Hz")
    if frequency_hz > high_hz:
        return Condition(FREQUENCY, MAJOR, frequency_hz, high_hz,
                         f"frequency {frequency_hz:g} Hz > {high_hz:g} Hz")
    return None


def reverse_flow(status: tuple[str, ...], export_before: float | None,
                 export_now: float | None, has_generation: bool) -> Condition | None:
    """A TAMPER / REVERSE_FLOW status on any meter, or the export register rising on a meter
    without generation (a meter that can export is expected to)."""
    for code in REVERSE_FLOW_CODES:
        if code in status:
            return Condition(REVERSE_FLOW, MAJOR, None, None, f"status {code}")
    if (not has_generation and export_before is not None and export_now is not None
            and export_now > export_before):
        rise = export_now - export_before
        return Condition(REVERSE_FLOW, MAJOR, rise, 0.0,
                         f"export register rose {rise:g} kWh on a meter without generation")
    return None


def import_delta(before_kwh: float, now_kwh: float, register_max_kwh: float,
                 top_fraction: float, bottom_fraction: float) -> float | None:
    """kWh imported between two readings; a wrap past register_max counts through it. None for
    a rollback: the register went down and not from its top tenth into its bottom tenth."""
    if now_kwh >= before_kwh:
        return now_kwh - before_kwh
    if before_kwh >= top_fraction * register_max_kwh and now_kwh <= bottom_fraction * \
            register_max_kwh:
        return register_max_kwh - before_kwh + now_kwh
    return None


def register_rollback(before_kwh: float, now_kwh: float) -> Condition:
    """The Condition for a drop that import_delta called a rollback."""
    drop = before_kwh - now_kwh
    return Condition(REGISTER_ROLLBACK, MAJOR, drop, 0.0,
                     f"import register went down {drop:g} kWh ({before_kwh:g} -> {now_kwh:g})")
