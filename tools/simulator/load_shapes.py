"""Daily and weekly load shapes, solar output, and bounded noise.

The shapes are smooth on purpose. A robust z-score (median / MAD of a meter's trailing
history) reacts to any interval far from the bulk of that history; a narrow peak, or a load
that sits at one level most of the day, makes the MAD tiny and the next change look like a
spike. With these shapes and noise truncated at two sigma, clean readings stay below z = 4
(the detection threshold is 6) for a trailing day or week of history, checked in
tests/unit/test_simulator_load.py. A history shorter than a day holds no full daily cycle:
no realistic load passes that, so the detector needs at least a day.
"""

from __future__ import annotations

import numpy as np

from tools.simulator import randomness
from tools.simulator.fleet import Fleet

SLOTS = 96
DAY_MS = 86_400_000
SLOT_MS = DAY_MS // SLOTS
NOISE_SIGMA = 0.10
NOISE_CLIP = 2.0  # sigmas: no heavy tails
DAILY_SWING = 0.05  # day-to-day level change (weather, routine), +-
# Row of SHAPES per (customer class, day type).
RES_WEEKDAY, RES_WEEKEND, COM_WEEKDAY, COM_SATURDAY, COM_SUNDAY = range(5)

_hours = (np.arange(SLOTS) + 0.5) / 4


def _bump(center: float, width: float) -> np.ndarray:
    distance = (_hours - center + 12) % 24 - 12
    return np.exp(-0.5 * (distance / width) ** 2)


def _plateau(on: float, off: float, edge: float) -> np.ndarray:
    return 1 / (1 + np.exp(-(_hours - on) / edge)) - 1 / (1 + np.exp(-(_hours - off) / edge))


def _unit_mean(shape: np.ndarray) -> np.ndarray:
    return shape / shape.mean()


SHAPES = np.stack([
    # Residential: breakfast, a daytime floor, the evening peak; later and flatter at weekends.
    _unit_mean(0.5 + 0.5 * _bump(7.5, 1.5) + 0.35 * _bump(13, 3.0) + 0.9 * _bump(19.5, 2.6)),
    _unit_mean(0.5 + 0.45 * _bump(9.5, 2.0) + 0.5 * _bump(13.5, 3.0) + 0.85 * _bump(19, 2.7)),
    # Commercial: business hours over a base of lighting, refrigeration and ventilation. Weekends
    # stay close to weekdays: a Sunday far below Monday would make Monday morning a "spike".
    _unit_mean(0.6 + _plateau(6.5, 19.5, 1.3)),
    _unit_mean(0.6 + 0.8 * _plateau(7.5, 17.5, 1.3)) * 0.9,
    _unit_mean(0.6 + 0.6 * _plateau(8.5, 16.5, 1.3)) * 0.8,
])
# Clear-sky solar output over a ten-hour day centred on 12:30 local time.
SOLAR = np.clip(np.sin(np.pi * (_hours - 7.5) / 10), 0, None) ** 1.5


def _slot_weekday(local_ms: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (local_ms // SLOT_MS) % SLOTS, (local_ms // DAY_MS + 3) % 7  # 1970-01-01: Thursday


def shape_rows(commercial: np.ndarray, weekday: np.ndarray) -> np.ndarray:
    residential = np.where(weekday >= 5, RES_WEEKEND, RES_WEEKDAY)
    business = np.select([weekday == 5, weekday == 6], [COM_SATURDAY, COM_SUNDAY], COM_WEEKDAY)
    return np.where(commercial, business, residential)


def day_conditions(fleet: Fleet, seed: int, day: int) -> tuple[np.ndarray, np.ndarray]:
    """Per meter for one UTC day: the load level (around 1) and the clear-sky fraction."""
    rng = randomness.stream(seed, randomness.DAY, day)
    level = 1.0 + DAILY_SWING * rng.uniform(-1.0, 1.0, len(fleet))
    sky = rng.uniform(0.15, 0.9, len(fleet.region_ids))[fleet.region]
    return level, sky


def load_kw(fleet: Fleet, start_ms: int, day_level: np.ndarray,
            rng: np.random.Generator) -> np.ndarray:
    """Average load of every meter over the 15 minutes from start_ms."""
    slot, weekday = _slot_weekday(start_ms + fleet.utc_offset_min.astype(np.int64) * 60_000)
    shape = SHAPES[shape_rows(fleet.commercial, weekday), (slot + fleet.shape_shift) % SLOTS]
    noise = np.clip(rng.normal(0.0, NOISE_SIGMA, len(fleet)),
                    -NOISE_CLIP * NOISE_SIGMA, NOISE_CLIP * NOISE_SIGMA)
    return fleet.mean_kw * shape * day_level * (1.0 + noise)


def solar_kw(fleet: Fleet, start_ms: int, sky: np.ndarray) -> np.ndarray:
    """Average solar output of every meter over the 15 minutes from start_ms."""
    slot, _ = _slot_weekday(start_ms + fleet.utc_offset_min.astype(np.int64) * 60_000)
    return fleet.pv_kw * SOLAR[slot] * sky


def expected_load_wh(fleet: Fleet, meter: int, start_ms: int, steps: int) -> float:
    """Import of one meter over `steps` 15-minute steps from start_ms, noise averaged out."""
    local = (start_ms + np.arange(steps, dtype=np.int64) * SLOT_MS
             + int(fleet.utc_offset_min[meter]) * 60_000)
    slot, weekday = _slot_weekday(local)
    rows = shape_rows(np.full(steps, fleet.commercial[meter]), weekday)
    shape = SHAPES[rows, (slot + fleet.shape_shift[meter]) % SLOTS]
    return float(fleet.mean_kw[meter] * shape.sum() * 250.0)
