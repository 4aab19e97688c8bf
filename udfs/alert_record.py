"""The `meter.alerts` record (DESIGN's contract, schemas/json/alert.schema.json) and its id.

Timestamps stay epoch milliseconds, as the schema wants them. The OPEN and CLEARED records of
one condition share their alert_id, which depends only on what the condition is (subject, type
and the event time it opened at): replaying the same readings gives the same ids, so a sink
keyed on alert_id and state deduplicates a replay.
"""

from __future__ import annotations

import hashlib
from typing import NamedTuple

import orjson

OPEN, CLEARED = "OPEN", "CLEARED"
CRITICAL, MAJOR, MINOR = "CRITICAL", "MAJOR", "MINOR"
SEVERITY_RANK = {MINOR: 1, MAJOR: 2, CRITICAL: 3}

OUTAGE = "OUTAGE"
FEEDER_OUTAGE = "FEEDER_OUTAGE"
VOLTAGE_SAG = "VOLTAGE_SAG"
VOLTAGE_SWELL = "VOLTAGE_SWELL"
STALE_METER = "STALE_METER"
ZERO_CONSUMPTION = "ZERO_CONSUMPTION"
REGISTER_ROLLBACK = "REGISTER_ROLLBACK"
REVERSE_FLOW = "REVERSE_FLOW"
CONSUMPTION_SPIKE = "CONSUMPTION_SPIKE"
FREQUENCY_EXCURSION = "FREQUENCY_EXCURSION"
ALERT_TYPES = (OUTAGE, FEEDER_OUTAGE, VOLTAGE_SAG, VOLTAGE_SWELL, STALE_METER, ZERO_CONSUMPTION,
               REGISTER_ROLLBACK, REVERSE_FLOW, CONSUMPTION_SPIKE, FREQUENCY_EXCURSION)


class Alert(NamedTuple):
    alert_id: str
    meter_id: str | None  # None for feeder alerts (the Kafka key is then the feeder id)
    feeder_id: str
    region: str
    type: str
    severity: str
    state: str            # OPEN | CLEARED
    event_ts: int         # epoch ms: event time of what opened or cleared it
    detected_ts: int      # epoch ms: wall clock at detection
    value: float | None
    threshold: float | None
    message: str
    # Not in the Kafka record (DESIGN's fields only): event time the alert opened at, for the
    # alerts table's opened_ts when a CLEARED row is written. None means event_ts (an OPEN).
    opened_ts: int | None = None

    @property
    def key(self) -> str:
        """The Kafka key: the meter id, or the feeder id for feeder alerts."""
        return self.meter_id if self.meter_id is not None else self.feeder_id


# DESIGN's meter.alerts fields, in order.
WIRE_FIELDS = ("alert_id", "meter_id", "feeder_id", "region", "type", "severity", "state",
               "event_ts", "detected_ts", "value", "threshold", "message")


def alert_id(subject_id: str, alert_type: str, open_event_ts_ms: int) -> str:
    # A unit separator cannot occur in ids (meter ids are [A-Za-z0-9_.:-]), so two different
    # triples never make the same canonical string.
    canonical = f"{subject_id}\x1f{alert_type}\x1f{int(open_event_ts_ms)}"
    return hashlib.sha1(canonical.encode()).hexdigest()[:32]


def to_json_bytes(alert: Alert) -> bytes:
    return orjson.dumps(dict(zip(WIRE_FIELDS, alert, strict=False)))
