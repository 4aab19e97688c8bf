"""Interval energy from cumulative registers, vectorised with numpy: the reference the
aggregate job (Flink SQL, jobs/aggregate.py) is checked against.

The rules, per meter, readings in event-time order (a second copy of a (meter, ts) dropped):

- a reading closes the interval that ends at or after its ts: index (ts - 1 ms) // interval;
- delta = register - previous register; a drop from the top tenth of the register's range into
  its bottom tenth is a rollover (the delta wraps); any other drop is a rollback (no delta);
- a delta spanning k intervals is shared equally among them (k > 1: quality 'estimated');
  beyond max_gap intervals it is not used; the first reading has no delta.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Readings:
    """One row per reading; parallel arrays (meters as integer codes)."""

    meter: np.ndarray       # int64 meter code
    ts: np.ndarray          # int64 event time, epoch ms
    kwh_import: np.ndarray  # float64
    kwh_export: np.ndarray  # float64, NaN when absent
    voltage: np.ndarray     # float64, NaN when absent
    power_factor: np.ndarray
    register_max: np.ndarray  # float64 per reading (the meter's)


@dataclass(frozen=True)
class Intervals:
    meter: np.ndarray
    index: np.ndarray        # interval index: start = index * interval_ms
    kwh_import: np.ndarray   # NaN: no value
    kwh_export: np.ndarray
    voltage_min: np.ndarray
    voltage_max: np.ndarray
    voltage_avg: np.ndarray
    power_factor_avg: np.ndarray
    reading_count: np.ndarray
    quality: np.ndarray      # 'complete' | 'partial' | 'estimated'
    rollover: np.ndarray
    rollback: np.ndarray


def register_delta(current: np.ndarray, previous: np.ndarray,
                   register_max: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(delta, rollover, rollback): delta NaN where unknown (no previous, rollback)."""
    rollover = ((current < previous) & (previous >= 0.9 * register_max)
                & (current <= 0.1 * register_max))
    rollback = (current < previous) & ~rollover
    delta = np.where(current >= previous, current - previous,
                     np.where(rollover, register_max - previous + current, np.nan))
    return delta, rollover, rollback


def shares(delta: np.ndarray, k: np.ndarray, max_gap: int) -> np.ndarray:
    """The part of a delta spanning k intervals that goes to each of them."""
    return np.where((k >= 1) & (k <= max_gap), delta / np.maximum(k, 1),
                    np.where(k == 0, delta, np.nan))


def intervals(readings: Readings, interval_ms: int, max_gap: int) -> Intervals:
    r = readings
    order = np.lexsort((r.ts, r.meter))  # stable: the first copy of a duplicate comes first
    meter, ts = r.meter[order], r.ts[order]
    keep = np.ones(len(ts), dtype=bool)
    keep[1:] = (meter[1:] != meter[:-1]) | (ts[1:] != ts[:-1])
    idx = order[keep]
    meter, ts = r.meter[idx], r.ts[idx]
    imp, exp, reg_max = r.kwh_import[idx], r.kwh_export[idx], r.register_max[idx]

    first = np.ones(len(ts), dtype=bool)
    first[1:] = meter[1:] != meter[:-1]
    prev = np.roll(np.arange(len(ts)), 1)
    prev_imp = np.where(first, np.nan, imp[prev])
    prev_exp = np.where(first, np.nan, exp[prev])
    index = (ts - 1) // interval_ms
    k = np.where(first, -1, index - (ts[prev] - 1) // interval_ms)

    imp_delta, rollover, rollback = register_delta(imp, prev_imp, reg_max)
    exp_delta, _, _ = register_delta(exp, prev_exp, reg_max)
    rollover &= ~first
    rollback &= ~first
    imp_share = np.where(first, np.nan, shares(imp_delta, k, max_gap))
    exp_share = np.where(first, np.nan, shares(exp_delta, k, max_gap))

    # Intervals with readings: group consecutive rows of the same (meter, index).
    starts = np.flatnonzero(np.r_[True, (meter[1:] != meter[:-1]) | (index[1:] != index[:-1])])
    reduce = _Reducer(starts, len(ts))
    missing = reduce.any(np.isnan(imp_share))
    quality = np.where(missing, "partial",
                       np.where(reduce.any(k > 1), "estimated", "complete"))
    with_readings = Intervals(
        meter=meter[starts], index=index[starts],
        kwh_import=reduce.nansum(imp_share), kwh_export=reduce.nansum(exp_share),
        voltage_min=reduce.nanmin(r.voltage[idx]), voltage_max=reduce.nanmax(r.voltage[idx]),
        voltage_avg=reduce.nanmean(r.voltage[idx]),
        power_factor_avg=reduce.nanmean(r.power_factor[idx]),
        reading_count=np.diff(np.r_[starts, len(ts)]), quality=quality,
        rollover=reduce.any(rollover), rollback=reduce.any(rollback))

    # Intervals inside a gap: each of the k - 1 gets a share; they have no reading.
    gap = (k >= 2) & (k <= max_gap) & ~np.isnan(imp_share)
    count = (k[gap] - 1).astype(np.int64)
    gap_index = np.repeat(index[gap] - k[gap], count) + _ranks(count)
    nan = np.full(len(gap_index), np.nan)
    gaps = Intervals(
        meter=np.repeat(meter[gap], count), index=gap_index,
        kwh_import=np.repeat(imp_share[gap], count), kwh_export=np.repeat(exp_share[gap], count),
        voltage_min=nan, voltage_max=nan, voltage_avg=nan, power_factor_avg=nan,
        reading_count=np.zeros(len(gap_index), dtype=np.int64),
        quality=np.full(len(gap_index), "estimated"),
        rollover=np.zeros(len(gap_index), dtype=bool), rollback=np.zeros(len(gap_index), bool))
    return Intervals(*(np.concatenate([a, b]) for a, b in
                       zip(_fields(with_readings), _fields(gaps), strict=True)))


def _fields(intervals_: Intervals) -> list[np.ndarray]:
    return [getattr(intervals_, name) for name in Intervals.__dataclass_fields__]


def _ranks(count: np.ndarray) -> np.ndarray:
    """1..n for each n in count, concatenated."""
    if not len(count):
        return np.zeros(0, dtype=np.int64)
    offsets = np.repeat(np.cumsum(count) - count, count)
    return np.arange(count.sum()) - offsets + 1


class _Reducer:
    """Reductions over consecutive groups that start at `starts`."""

    def __init__(self, starts: np.ndarray, n: int):
        self.starts = starts
        self.group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, n]))

    def any(self, values: np.ndarray) -> np.ndarray:
        return np.logical_or.reduceat(values.astype(bool), self.starts)

    def nansum(self, values: np.ndarray) -> np.ndarray:
        present = ~np.isnan(values)
        total = np.add.reduceat(np.where(present, values, 0.0), self.starts)
        return np.where(self.any(present), total, np.nan)

    def nanmin(self, values: np.ndarray) -> np.ndarray:
        low = np.minimum.reduceat(np.where(np.isnan(values), np.inf, values), self.starts)
        return np.where(np.isinf(low), np.nan, low)

    def nanmax(self, values: np.ndarray) -> np.ndarray:
        high = np.maximum.reduceat(np.where(np.isnan(values), -np.inf, values), self.starts)
        return np.where(np.isinf(high), np.nan, high)

    def nanmean(self, values: np.ndarray) -> np.ndarray:
        present = ~np.isnan(values)
        count = np.add.reduceat(present.astype(np.int64), self.starts)
        total = np.add.reduceat(np.where(present, values, 0.0), self.starts)
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)
