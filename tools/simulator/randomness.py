"""Independent random streams derived from the seed.

Each part of the simulation draws from its own stream, and every 15-minute step from a
stream of its own, so a value never depends on how much randomness another part consumed:
the same seed gives the same fleet, plan and readings.
"""

from __future__ import annotations

import numpy as np

FLEET, PLAN, STEP, DAY = 1, 2, 3, 4


def stream(seed: int, purpose: int, *index: int) -> np.random.Generator:
    return np.random.default_rng([seed, purpose, *index])
