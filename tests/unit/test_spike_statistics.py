"""Robust z-score (median / MAD) and the time-of-day ring that holds a meter's history."""

import math
from array import array

import numpy as np
import pytest

from udfs.spike_statistics import (
    MAD_SCALE,
    MEAN_AD_SCALE,
    median_and_spread,
    new_ring,
    put,
    robust_limit,
    robust_z,
    slot,
    trailing_robust_z,
)

Q = 900_000


def test_median_and_scaled_mad():
    history = np.array([1.0, 2.0, 3.0, 4.0, 100.0])  # the outlier moves neither
    assert median_and_spread(history) == (3.0, MAD_SCALE * 1.0)
    assert robust_z(3.0 + 6 * MAD_SCALE, history) == pytest.approx(6.0)
    assert robust_limit(history, 6.0) == pytest.approx(3.0 + 6 * MAD_SCALE)


def test_an_even_history_takes_the_mean_of_the_middle_pair():
    history = np.array([0.25, 0.5] * 48)
    median, spread = median_and_spread(history)
    assert (median, spread) == (0.375, MAD_SCALE * 0.125)


def test_a_mad_of_zero_falls_back_to_the_mean_absolute_deviation():
    history = np.array([1.0] * 60 + [2.0] * 36)  # over half alike: MAD 0
    median, spread = median_and_spread(history)
    assert median == 1.0 and spread == pytest.approx(MEAN_AD_SCALE * 36 / 96)


def test_a_constant_history_has_no_z_score():
    assert median_and_spread(np.zeros(96)) is None
    assert robust_z(5.0, np.full(96, 0.3)) is None
    assert robust_limit(np.full(96, 0.3), 6.0) is None
    assert median_and_spread(new_ring(96)) is None  # empty


def test_the_ring_has_a_slot_per_interval_of_the_day():
    day = 96 * Q
    assert slot(Q, Q, 96) == 0          # the reading at 00:15 closes the 00:00 interval
    assert slot(day, Q, 96) == 95       # and the one at midnight the 23:45 one
    assert slot(day + Q, Q, 96) == 0    # a day later: the same slot
    assert slot(5 * day + 7 * Q, Q, 96) == 6


def test_put_overwrites_the_same_interval_a_day_later_and_counts_new_slots():
    ring = new_ring(4)
    assert len(ring) == 4 and all(math.isnan(v) for v in ring)
    assert put(ring, 1, 0.5) is True
    assert put(ring, 1, 0.75) is False
    assert ring[1] == 0.75


def test_empty_slots_are_left_out_of_the_statistics():
    ring = new_ring(8)
    for at, value in enumerate([1.0, 2.0, 3.0, 4.0, 100.0]):
        put(ring, at, value)
    assert median_and_spread(ring, 5) == (3.0, MAD_SCALE * 1.0)
    assert median_and_spread(ring) == (3.0, MAD_SCALE * 1.0)  # count found when not given


def test_float32_storage_and_in_place_view():
    ring = array("f", [0.1, 0.2, 0.3])
    median, _ = median_and_spread(ring)
    assert median == pytest.approx(0.2, abs=1e-7)


def test_trailing_form_agrees_with_the_per_reading_form():
    rng = np.random.default_rng(1)
    values = rng.gamma(2.0, 0.2, 200)
    z = trailing_robust_z(values, 96)
    assert np.isnan(z[:96]).all()
    for k in (96, 150, 199):
        assert z[k] == pytest.approx(robust_z(values[k], values[k - 96:k]))
