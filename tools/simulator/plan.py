"""The injection plan: which meter misbehaves when, decided before the first reading.

Injections on one meter never overlap (with a margin of normal readings between them), so
every ground-truth entry maps to exactly one expected alert or outcome.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from tools.simulator import randomness
from tools.simulator.effects import Effect
from tools.simulator.fleet import Fleet
from tools.simulator.settings import QUARTER_MS, Settings

# Normal readings kept between two injections on the same meter (2 h), so the detector's
# state for the first has settled before the second begins.
MARGIN_STEPS = 8
TRIES = 200


class Timeline:
    """The span as 15-minute steps; step s covers [start(s), end(s)) and its readings carry
    ts = end(s), the end of the interval."""

    def __init__(self, start_ms: int, steps: int):
        self.start_ms = start_ms
        self.steps = steps
        self._reporting: dict[int, np.ndarray] = {}

    def start(self, step: int) -> int:
        return self.start_ms + int(step) * QUARTER_MS

    def end(self, step: int) -> int:
        return self.start_ms + (int(step) + 1) * QUARTER_MS

    def reports(self, interval_min: int) -> np.ndarray:
        """Steps at whose end a meter with this interval reports (30-min meters at :00, :30)."""
        if interval_min not in self._reporting:
            ends = self.start_ms + (np.arange(self.steps, dtype=np.int64) + 1) * QUARTER_MS
            self._reporting[interval_min] = np.flatnonzero(ends % (interval_min * 60_000) == 0)
        return self._reporting[interval_min]


class Placement(NamedTuple):
    lo: int                                # first step the injection occupies
    hi: int                                # last step (inclusive)
    effects: list[tuple[int, Effect]]      # (step, effect)
    truth: dict | None


class Calendar:
    """The steps of each meter already taken by an injection."""

    def __init__(self):
        self._taken: dict[int, list[tuple[int, int]]] = collections.defaultdict(list)

    def free(self, meter: int, lo: int, hi: int) -> bool:
        return all(hi < a or lo > b for a, b in self._taken.get(meter, ()))

    def take(self, meter: int, lo: int, hi: int) -> None:
        self._taken[meter].append((lo, hi))


class Planner:
    def __init__(self, settings: Settings, fleet: Fleet, start_ms: int):
        self.settings = settings
        self.fleet = fleet
        self.rng = randomness.stream(settings.seed, randomness.PLAN)
        self.timeline = Timeline(start_ms, settings.steps)
        self.calendar = Calendar()
        self.effects: dict[int, list[Effect]] = collections.defaultdict(list)
        self.truth: list[dict] = []
        self.register0_wh = fleet.register0_wh.copy()
        # Let the detector see some normal history before the first injection.
        self.warmup = min(24, settings.steps // 4)

    def count(self, rate: float, exposure: float) -> int:
        return 0 if rate <= 0 else max(1, round(rate * exposure))

    def reports(self, meter: int) -> np.ndarray:
        return self.timeline.reports(int(self.fleet.interval_min[meter]))

    def pick(self, steps: np.ndarray, first: int, last: int) -> int | None:
        """A random index j with first <= steps[j] <= last, or None."""
        lo, hi = np.searchsorted(steps, first), np.searchsorted(steps, last, side="right")
        return int(self.rng.integers(lo, hi)) if hi > lo else None

    def add(self, placement: Placement, meters: list[int], margin: int) -> None:
        for meter in meters:
            self.calendar.take(meter, placement.lo - margin, placement.hi + margin)
        for step, effect in placement.effects:
            self.effects[step].append(effect)
        if placement.truth is not None:
            self.truth.append(placement.truth)

    def feeder_quiet(self, feeder: int, start_ts: int, end_ts: int,
                     margin_ms: int = 30 * 60_000) -> bool:
        """No other outage on the feeder from start_ts to end_ts (with a margin): unrelated
        outages must never add up to, or blur into, a feeder outage."""
        feeder_id = self.fleet.feeder_ids[feeder]
        return all(e["feeder_id"] != feeder_id or e["end_ts"] + margin_ms < start_ts
                   or e["start_ts"] - margin_ms > end_ts
                   for e in self.truth if e["type"] in ("OUTAGE", "FEEDER_OUTAGE"))

    def place(self, count: int, pool: np.ndarray, build: Callable[[int, int], Placement | None],
              margin: int = MARGIN_STEPS) -> None:
        """Place `count` injections built by build(meter, nth) on meters drawn from `pool`.
        One that finds no room in TRIES draws is left out (the summary counts what was)."""
        for nth in range(count):
            for _ in range(TRIES if len(pool) else 0):
                meter = int(self.rng.choice(pool))
                placement = build(meter, nth)
                if placement and self.calendar.free(meter, placement.lo - margin,
                                                    placement.hi + margin):
                    self.add(placement, [meter], margin)
                    break
