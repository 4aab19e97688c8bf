"""Interval energy from registers: the reference rules, story by story."""

import math

import numpy as np

from udfs.interval_math import Readings, intervals, register_delta, shares

MIN = 60_000
Q = 15 * MIN
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z, an interval boundary


def readings(*rows, register_max=1_000_000.0) -> Readings:
    """rows: (meter, ts, kwh_import[, voltage])."""
    def column(i, default=math.nan):
        return np.array([r[i] if len(r) > i else default for r in rows], dtype=float)
    return Readings(meter=np.array([r[0] for r in rows], dtype=np.int64),
                    ts=np.array([r[1] for r in rows], dtype=np.int64),
                    kwh_import=column(2), kwh_export=np.full(len(rows), math.nan),
                    voltage=column(3), power_factor=np.full(len(rows), math.nan),
                    register_max=np.full(len(rows), register_max))


def table(result, max_gap=96) -> list[tuple]:
    """(start offset from T0, kwh, count, quality, rollover, rollback) sorted by meter, start."""
    rows = sorted(zip(result.meter, result.index, result.kwh_import, result.reading_count,
                      result.quality, result.rollover, result.rollback, strict=True))
    return [(int(i) * Q - T0, None if math.isnan(kwh) else round(float(kwh), 9), int(n), str(q),
             bool(o), bool(b)) for _, i, kwh, n, q, o, b in rows]


def test_reading_at_an_interval_end_closes_that_interval():
    result = table(intervals(readings((1, T0, 10.0), (1, T0 + Q, 11.5)), Q, 96))
    assert result == [(-Q, None, 1, "partial", False, False), (0, 1.5, 1, "complete", False, False)]


def test_rollover_wraps_and_rollback_is_flagged():
    delta, rollover, rollback = register_delta(np.array([1.5, 450.0, 460.0]),
                                               np.array([999.5, 500.0, 450.0]),
                                               np.array([1000.0, 1000.0, 1000.0]))
    assert delta[0] == 2.0 and rollover.tolist() == [True, False, False]
    assert math.isnan(delta[1]) and rollback.tolist() == [False, True, False]
    assert delta[2] == 10.0


def test_drop_that_is_not_near_the_maximum_is_a_rollback_not_a_wrap():
    # 950 -> 900: top tenth, but not into the bottom tenth.
    _, rollover, rollback = register_delta(np.array([900.0]), np.array([950.0]),
                                           np.array([1000.0]))
    assert (rollover[0], rollback[0]) == (False, True)


def test_gap_is_shared_over_the_intervals_it_spans():
    result = table(intervals(readings((1, T0, 10.0), (1, T0 + 4 * Q, 18.0)), Q, 96))
    assert result[1:] == [(0, 2.0, 0, "estimated", False, False),
                          (Q, 2.0, 0, "estimated", False, False),
                          (2 * Q, 2.0, 0, "estimated", False, False),
                          (3 * Q, 2.0, 1, "estimated", False, False)]


def test_gap_beyond_the_maximum_is_not_spread():
    result = table(intervals(readings((1, T0, 10.0), (1, T0 + 4 * Q, 18.0)), Q, 3))
    assert result[1:] == [(3 * Q, None, 1, "partial", False, False)]


def test_duplicate_counts_once_and_order_of_arrival_does_not_matter():
    forward = intervals(readings((1, T0, 7.0), (1, T0 + Q, 8.0), (1, T0 + Q, 8.0)), Q, 96)
    shuffled = intervals(readings((1, T0 + Q, 8.0), (1, T0, 7.0), (1, T0 + Q, 8.0)), Q, 96)
    assert table(forward) == table(shuffled) == [(-Q, None, 1, "partial", False, False),
                                                 (0, 1.0, 1, "complete", False, False)]


def test_several_readings_in_one_interval_add_up():
    result = intervals(readings((1, T0, 1.0, 230.0), (1, T0 + 5 * MIN, 2.0, 228.0),
                                (1, T0 + 10 * MIN, 4.0, 232.0), (1, T0 + Q, 4.5, 231.0)), Q, 96)
    assert table(result)[1] == (0, 3.5, 3, "complete", False, False)
    assert (result.voltage_min[1], result.voltage_max[1], result.voltage_avg[1]) == (
        228.0, 232.0, (228.0 + 232.0 + 231.0) / 3)


def test_half_hourly_meter_in_quarter_hour_intervals_is_estimated():
    result = table(intervals(readings((1, T0, 0.0), (1, T0 + 2 * Q, 3.0)), Q, 96))
    assert result[1:] == [(0, 1.5, 0, "estimated", False, False),
                          (Q, 1.5, 1, "estimated", False, False)]


def test_meters_do_not_mix():
    result = table(intervals(readings((1, T0, 5.0), (2, T0 + Q, 100.0), (1, T0 + Q, 6.0)), Q, 96))
    assert [row[1] for row in result] == [None, 1.0, None]


def test_shares():
    assert shares(np.array([8.0, 8.0, 8.0]), np.array([4, 0, 5]), 4).tolist()[:2] == [2.0, 8.0]
    assert math.isnan(shares(np.array([8.0]), np.array([5]), 4)[0])
