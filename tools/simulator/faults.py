"""Data faults: what transport and firmware do to readings, each with its expected outcome.

Dead-letter faults (malformed JSON, wrong types, missing fields, clock skew) are extra broken
copies of a reading whose intact original is delivered too, so they never disturb detection.
Their expected reason is a prefix of what udfs.reading_parser returns for the exact payload.
"""

from __future__ import annotations

import numpy as np
import orjson

from tools.simulator import truth
from tools.simulator.effects import FAULT, Effect, Fault
from tools.simulator.plan import Placement, Planner
from tools.simulator.settings import QUARTER_MS

FAULT_MARGIN_STEPS = 2
# A late reading is delivered after the stream moved this many steps on (2 h 15 min - 3 h):
# past any allowed lateness short of 2 hours.
LATE_STEPS = (9, 13)
# One day after the wall clock when the copy is built (in live mode up to one interval before
# it leaves); the ingest job rejects readings more than 5 minutes after their arrival.
CLOCK_SKEW_MS = 86_400_000

# fault name -> [(variant, expected dead-letter reason prefix)]
DEAD_LETTERS = {
    "malformed_json": [("truncated", "not JSON")],
    "wrong_type": [("kwh_import", "kwh_import: expected a number"),
                   ("voltage_v", "voltage_v: expected a number"),
                   ("seq", "seq: expected an integer >= 0")],
    "missing_field": [("kwh_import", "kwh_import: missing"), ("meter_id", "meter_id: missing"),
                      ("ts", "ts: missing")],
    "clock_skew": [("ts_ahead_1_day", "ts: more than")],
}
OUTCOMES = {"duplicate": "duplicate", "out_of_order": "none", "late": "late",
            **dict.fromkeys(DEAD_LETTERS, "dead_letter")}


def inject(p: Planner) -> None:
    s = p.settings
    rates = {"duplicate": s.duplicate_rate, "out_of_order": s.out_of_order_rate,
             "late": s.late_rate, "clock_skew": s.clock_skew_rate,
             "malformed_json": s.malformed_rate, "wrong_type": s.wrong_type_rate,
             "missing_field": s.missing_field_rate}
    everyone = np.arange(len(p.fleet))
    # Swapped with the next reading, a 15-minute meter's reading is 15 minutes behind the
    # stream: inside the aggregate job's allowed lateness (30 min), so still processed.
    quarter_hourly = np.flatnonzero(p.fleet.interval_min == 15)
    for name, rate in rates.items():
        p.place(p.count(rate, s.meter_days), quarter_hourly if name == "out_of_order" else everyone,
                lambda m, n, name=name: _fault(p, m, n, name), margin=FAULT_MARGIN_STEPS)


def _fault(p: Planner, meter: int, nth: int, name: str) -> Placement | None:
    tl = p.timeline
    steps = p.reports(meter)
    delay = int(p.rng.integers(*LATE_STEPS)) if name == "late" else 0
    j = p.pick(steps, 0, tl.steps - 1 - delay)
    if j is None or (name == "out_of_order" and j + 1 >= len(steps)):
        return None
    step = int(steps[j])
    ts = tl.end(step)
    variant, reason, detail = None, None, {}
    if name in DEAD_LETTERS:
        variant, reason = DEAD_LETTERS[name][nth % len(DEAD_LETTERS[name])]
        detail = {"variant": variant, "original_also_sent": True}
    hi = step
    if name == "out_of_order":
        hi = int(steps[j + 1])
        detail = {"delivered_after_ts": tl.end(hi), "event_time_lag_ms": tl.end(hi) - ts}
    elif name == "late":
        detail = {"delivered_at_stream_ts": tl.end(step + delay),
                  "event_time_lag_ms": delay * QUARTER_MS}
    elif name == "duplicate":
        detail = {"resent": "at the end of the same interval's batch"}
    return Placement(step, hi, [(step, Effect(meter, FAULT, Fault(name, variant, delay)))],
                     truth.entry(p.fleet, "fault", name, meter, ts, ts, outcome=OUTCOMES[name],
                                 reason=reason, **detail))


def corrupt(fault: Fault, value: bytes, wall_clock_ms: int) -> bytes:
    """The broken copy of a reading's payload that a dead-letter fault sends."""
    if fault.name == "malformed_json":
        return value[: len(value) // 2]
    doc = orjson.loads(value)
    if fault.name == "wrong_type":
        doc[fault.variant] = str(doc[fault.variant])
    elif fault.name == "missing_field":
        del doc[fault.variant]
    else:  # clock_skew
        doc["ts"] = wall_clock_ms + CLOCK_SKEW_MS
    return orjson.dumps(doc)
