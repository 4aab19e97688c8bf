"""Live mode: each record leaves no earlier than its event time on the wall clock, and no
faster than --rate.

Meters report at their interval's end, so at every quarter hour the readings due (all meters
at :00 and :30, the 15-minute meters at :15 and :45) leave as one burst, ts = the burst's
start, at `rate` readings/s: a burst of B readings takes B / rate seconds, and must end within
600 s (checked at start: rate >= meters / 600). Last gasps and restorations leave at their own
instant between bursts. So:

    average readings/s = meters x (1 - share_30min / 2) / 900   (whatever --rate is)
    meters for a target average R = R x 900 / (1 - share_30min / 2)   (R x 1000 at 20%)

e.g. 10,000 meters at --rate 2000: a 5 s burst every 15 minutes, 10 readings/s on average.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator

from tools.simulator.settings import SimulatorError
from tools.simulator.simulation import Batch

# A burst must end well inside its 15 minutes, or live mode would fall behind the clock.
MAX_BURST_SECONDS = 600
CHUNK_SECONDS = 0.05


def check_rate(meters: int, rate: float) -> None:
    seconds = meters / rate
    if seconds > MAX_BURST_SECONDS:
        raise SimulatorError(
            f"--rate {rate:g} is too slow for {meters:,} meters: the burst at every :00 would "
            f"take {seconds:,.0f} s of its 900: raise --rate to at least "
            f"{math.ceil(meters / MAX_BURST_SECONDS)} or lower --meters")


class Pacer:
    def __init__(self, rate: float):
        self.rate = rate
        self.chunk = max(1, int(rate * CHUNK_SECONDS))
        self.free_at = 0.0  # wall time (s) when the rate allows the next record

    def slices(self, batch: Batch) -> Iterator[tuple[int, int]]:
        """(start, stop) ranges of the batch, each yielded when it may be sent."""
        ts, start = batch.ts, 0
        while start < len(ts):
            stop = min(len(ts), start + self.chunk)
            # A chunk never spans a later event time: that part waits for its own instant.
            for k in range(start + 1, stop):
                if ts[k] > ts[start]:
                    stop = k
                    break
            due = max(ts[start] / 1000, self.free_at)
            _sleep_until(due)
            self.free_at = max(due, time.time()) + (stop - start) / self.rate
            yield start, stop
            start = stop


def _sleep_until(wall_s: float) -> None:
    # Short naps against the wall clock: one long sleep runs on the monotonic clock and can
    # wake late when the wall clock is stepped or the machine is paused.
    while (left := wall_s - time.time()) > 0:
        time.sleep(min(left, 1.0))
