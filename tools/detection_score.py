"""Alerts scored against the simulator's ground truth: precision and recall per alert type.

An alert matches a truth entry when type, meter (feeder for FEEDER_OUTAGE), opening event time
and severity agree and its CLEARED comes at the entry's end_ts (or never, for end_ts None).
The OUTAGEs of feeder-outage members that go out before the feeder's alert opens (up to half
the feeder, see udfs/feeder_correlation.py) are not in the truth, which expects none: they are
left out of the OUTAGE score and counted on their own (`paged_members`).

Used by the unit test on the detectors, the integration test on the job, tools.score_detection
and the demo's summary.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass

from udfs.alert_record import ALERT_TYPES, CLEARED, OPEN, OUTAGE, Alert


@dataclass(frozen=True)
class Score:
    correct: int
    alerts: int
    expected: int

    @property
    def precision(self) -> float:
        return self.correct / self.alerts if self.alerts else 1.0

    @property
    def recall(self) -> float:
        return self.correct / self.expected if self.expected else 1.0


def alert_from_record(record: dict) -> Alert:
    """A meter.alerts JSON value as an Alert."""
    return Alert(**{name: record[name] for name in Alert._fields if name in record})


def member_outages(truth: Iterable[dict], alerts: Iterable[Alert]) -> list[Alert]:
    """OUTAGE alerts of feeder-outage members, sent before their feeder's alert opened."""
    feeders = [e for e in truth if e["type"] == "FEEDER_OUTAGE"]
    return [a for a in alerts if a.type == OUTAGE and a.state == OPEN
            and any(a.meter_id in e["meters"]
                    and e["start_ts"] <= a.event_ts <= (e["end_ts"] or a.event_ts)
                    for e in feeders)]


def score(truth: list[dict], alerts: list[Alert]) -> dict[str, Score]:
    anomalies = [e for e in truth if e["kind"] == "anomaly"]
    cleared = {a.alert_id: a for a in alerts if a.state == CLEARED}
    members = {a.alert_id for a in member_outages(truth, alerts)}
    opened = collections.defaultdict(list)
    for a in alerts:
        if a.state == OPEN and a.alert_id not in members:
            opened[a.type, a.meter_id or a.feeder_id, a.event_ts].append(a)
    correct = collections.Counter()
    for e in anomalies:
        for a in opened.get((e["type"], e["meter_id"] or e["feeder_id"], e["start_ts"]), []):
            clear = cleared.get(a.alert_id)
            clear_ts = None if clear is None else clear.event_ts
            if a.severity == e["expected_severity"] and clear_ts == e["end_ts"]:
                correct[e["type"]] += 1
                break
    counted = collections.Counter()
    for (type_, _, _), group in opened.items():
        counted[type_] += len(group)
    expected = collections.Counter(e["type"] for e in anomalies)
    return {t: Score(correct[t], counted[t], expected[t]) for t in ALERT_TYPES}


def table(scores: dict[str, Score]) -> str:
    lines = [f"{'type':20} {'truth':>6} {'alerts':>7} {'correct':>8} {'precision':>10} "
             f"{'recall':>7}"]
    lines += [f"{t:20} {s.expected:6} {s.alerts:7} {s.correct:8} {s.precision:10.2f} "
              f"{s.recall:7.2f}" for t, s in scores.items()]
    return "\n".join(lines)
