"""Robust z-score of a meter's interval energy against its trailing history (median / MAD),
and the bounded ring that holds that history in the meter's state.

The ring holds one value per interval of the day (96 slots at 15 min): an interval's energy
goes to the slot of its time of day, overwriting the day before's. A history ordered by
arrival instead drifts out of phase with the day after any gap: a solar meter silent through
a night ends up with two days' worth of sunny zero-import slots and a median of ~0, and its
ordinary evening load reads as z > 100 (seen with the simulator's feeder outages). Indexed by
time of day, a missed interval keeps the value of the same interval a day earlier, so the
history always covers the whole daily cycle once.

array('f') keeps it compact (4 bytes a slot, pickled as one bytes object) and cheap to update
from Python; numpy reads it in place for the median and MAD. Empty slots are NaN, which sorts
last, so the statistics take the first `count` sorted values.
"""

from __future__ import annotations

import math
from array import array

import numpy as np

# MAD x 1.4826 estimates the standard deviation of normally distributed data.
MAD_SCALE = 1.4826
# When more than half the history is one value the MAD is 0; the mean absolute deviation
# x sqrt(pi / 2) is the fallback spread (Iglewicz & Hoaglin's modified z-score).
MEAN_AD_SCALE = 1.2533
_EMPTY = array("f", [math.nan])


def new_ring(capacity: int) -> array:
    return _EMPTY * capacity


def slot(ts_ms: int, interval_ms: int, capacity: int) -> int:
    """The ring slot of the interval a reading at ts_ms closes (the aggregate job's interval:
    the one ending at or after ts)."""
    return ((ts_ms - 1) // interval_ms) % capacity


def put(ring: array, at: int, value: float) -> bool:
    """Store value in slot `at`; True when the slot was empty (the history grew by one)."""
    was_empty = math.isnan(ring[at])
    ring[at] = value
    return was_empty


def median_and_spread(history: np.ndarray | array,
                      count: int | None = None) -> tuple[float, float] | None:
    """(median, scaled MAD) of the history's values (NaN: empty slots; `count`, when known, is
    how many are not); None when they have no spread at all or there are none."""
    values = np.frombuffer(history, dtype=np.float32) if isinstance(history, array) else history
    if count is None:
        count = len(values) - int(np.count_nonzero(np.isnan(values)))
    if count == 0:
        return None
    ordered = np.sort(values)[:count].astype(np.float64)
    median = _middle(ordered)
    deviation = np.abs(ordered - median)
    deviation.sort()
    mad = _middle(deviation)
    if mad > 0.0:
        return median, MAD_SCALE * mad
    mean_ad = float(deviation.mean())
    if mean_ad > 0.0:
        return median, MEAN_AD_SCALE * mean_ad
    return None


def _middle(ordered: np.ndarray) -> float:
    n = len(ordered)
    half = n // 2
    if n % 2:
        return float(ordered[half])
    return (float(ordered[half - 1]) + float(ordered[half])) * 0.5


def robust_z(value: float, history: np.ndarray | array, count: int | None = None) -> float | None:
    """How many robust standard deviations value lies above the history's median; None for a
    history without spread (a constant series says nothing about what is unusual)."""
    stats = median_and_spread(history, count)
    if stats is None:
        return None
    median, spread = stats
    return (value - median) / spread


def robust_limit(history: np.ndarray | array, z: float, count: int | None = None) -> float | None:
    """The value whose robust z-score is exactly z: above it is a spike. None as robust_z."""
    stats = median_and_spread(history, count)
    if stats is None:
        return None
    median, spread = stats
    return median + z * spread


def trailing_robust_z(values: np.ndarray, window: int) -> np.ndarray:
    """The robust z-score of each value of a gap-free series against the `window` values before
    it (NaN for the first `window` and where the history has no spread): the batch form, for
    backtests and for checking the per-reading form."""
    values = np.asarray(values, dtype=np.float64)
    out = np.full(len(values), np.nan)
    if len(values) <= window:
        return out
    history = np.lib.stride_tricks.sliding_window_view(values[:-1], window)
    median = np.median(history, axis=1)
    deviation = np.abs(history - median[:, None])
    spread = MAD_SCALE * np.median(deviation, axis=1)
    spread = np.where(spread > 0, spread, MEAN_AD_SCALE * deviation.mean(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        out[window:] = np.where(spread > 0, (values[window:] - median) / spread, np.nan)
    return out
