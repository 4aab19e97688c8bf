"""Supply standards the fleet is simulated against, and the margins clean data keeps."""

from __future__ import annotations

from dataclasses import dataclass

# Clean readings stay this close to nominal: well inside the tighter of the two alert bands
# (ANSI Range A, +-5%), so a clean fleet raises no voltage alert under either profile.
CLEAN_VOLTAGE_SPREAD = 0.035
# Grid frequency wanders less than this in clean data; the alert limit is +-1%.
CLEAN_FREQUENCY_SPREAD = 0.002
# Beyond these fractions of nominal a sag or swell is CRITICAL under both standards.
SEVERE_LOW, SEVERE_HIGH = 0.85, 1.15


@dataclass(frozen=True)
class PowerProfile:
    name: str
    nominal_v: float
    nominal_hz: float
    # The alert band as fractions of nominal: EN 50160 +-10%, ANSI C84.1 Range A +-5%.
    band_low: float
    band_high: float
    # Fixed UTC offsets (minutes) of the regions' local time: load shapes follow local time and
    # RFC 3339 timestamps carry it.
    utc_offsets_min: tuple[int, ...]


PROFILES = {
    "en50160": PowerProfile("en50160", 230.0, 50.0, 0.90, 1.10, (60, 60, 60, 120)),
    "ansi": PowerProfile("ansi", 120.0, 60.0, 0.95, 1.05, (-300, -360, -420, -480)),
}
