"""Parse and validate one meter reading (the `meter.readings` contract in DESIGN.md).

Pure Python, no Flink: every job calls this through a thin UDF, the tests call it directly.
A payload becomes either a `Reading` (event time as UTC epoch milliseconds) or a `Rejection`
whose reason names the field and the problem ("kwh_import: negative"). It never raises.
"""

from __future__ import annotations

import math
import re
from datetime import datetime
from typing import NamedTuple

import orjson

METER_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# RFC 3339 date-time with a mandatory offset; 'T' separator only (what the SQL event-time
# expression in jobs/ingestion.py accepts too).
RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?(Z|[+-]\d{2}:\d{2})"
)
MAX_EPOCH_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z

STATUS_CODES = ("POWER_FAIL", "POWER_RESTORED", "TAMPER", "CLOCK_INVALID", "REVERSE_FLOW")


class Reading(NamedTuple):
    meter_id: str
    ts_ms: int
    seq: int | None
    kwh_import: float
    kwh_export: float | None
    voltage_v: float | None
    current_a: float | None
    power_factor: float | None
    frequency_hz: float | None
    status: tuple[str, ...]


class Rejection(NamedTuple):
    reason: str


class _Invalid(Exception):
    pass


def parse_reading(payload: bytes | str | None, *, received_ms: int | None = None,
                  max_future_skew_ms: int | None = None) -> Reading | Rejection:
    """Validate `payload`. With `received_ms` and `max_future_skew_ms`, a reading dated more
    than the skew after its arrival is rejected: its clock is wrong, and letting it through
    would drag the watermark into the future."""
    if payload is None:
        return Rejection("not JSON: empty payload")
    try:
        doc = orjson.loads(payload)
    except orjson.JSONDecodeError as err:
        return Rejection(f"not JSON: {str(err).split(':', 1)[0]}")
    if not isinstance(doc, dict):
        return Rejection(f"not a JSON object: got {_json_type(doc)}")
    try:
        meter_id = doc.get("meter_id")
        if meter_id is None:
            raise _Invalid("meter_id: missing")
        if not isinstance(meter_id, str):
            raise _Invalid(f"meter_id: expected a string, got {_json_type(meter_id)}")
        if not METER_ID.fullmatch(meter_id):
            raise _Invalid("meter_id: must be 1-64 characters of A-Z a-z 0-9 _ . : -")
        ts_ms = _event_time(doc.get("ts", _MISSING))
        if (received_ms is not None and max_future_skew_ms is not None
                and ts_ms > received_ms + max_future_skew_ms):
            raise _Invalid(f"ts: more than {max_future_skew_ms} ms after arrival "
                           f"(meter clock ahead)")
        seq = doc.get("seq")
        if seq is not None and (not _is_int(seq) or seq < 0):
            raise _Invalid("seq: expected an integer >= 0")
        kwh_import = _number(doc, "kwh_import", required=True, minimum=0.0)
        reading = Reading(
            meter_id=meter_id,
            ts_ms=ts_ms,
            seq=seq,
            kwh_import=kwh_import,
            kwh_export=_number(doc, "kwh_export", minimum=0.0),
            voltage_v=_number(doc, "voltage_v", minimum=0.0),
            current_a=_number(doc, "current_a", minimum=0.0),
            power_factor=_number(doc, "power_factor", minimum=-1.0, maximum=1.0),
            frequency_hz=_number(doc, "frequency_hz", positive=True),
            status=_status(doc.get("status")),
        )
    except _Invalid as err:
        return Rejection(str(err))
    return reading


def reason_kind(reason: str) -> str:
    """What a rejection is about, for counting (a metric label): the field its reason names
    ("kwh_import"), or its fixed text before the detail ("not JSON" -> "not_json"); a small
    fixed set of identifiers, unlike the reasons."""
    return reason.split(":", 1)[0].strip().lower().replace(" ", "_")


_MISSING = object()


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _event_time(value: object) -> int:
    if value is _MISSING or value is None:
        raise _Invalid("ts: missing")
    if _is_int(value):
        if not 0 <= value <= MAX_EPOCH_MS:
            raise _Invalid("ts: epoch milliseconds out of range")
        return value
    if isinstance(value, str):
        match = RFC3339.fullmatch(value)
        if match:
            return _rfc3339_ms(match)
    raise _Invalid("ts: neither RFC 3339 nor epoch ms")


def _rfc3339_ms(match: re.Match[str]) -> int:
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    iso = f"{year}-{month}-{day}T{hour}:{minute}:{second}" + ("+00:00" if zone == "Z" else zone)
    try:
        moment = datetime.fromisoformat(iso)
    except ValueError:
        raise _Invalid("ts: neither RFC 3339 nor epoch ms") from None
    millis = int((fraction or "0")[:3].ljust(3, "0"))
    # Whole seconds then milliseconds: exact integers, no float rounding.
    ms = int(moment.timestamp()) * 1000 + millis
    if not 0 <= ms <= MAX_EPOCH_MS:
        raise _Invalid("ts: before 1970 or after 9999")
    return ms


def _number(doc: dict, field: str, *, required: bool = False, minimum: float | None = None,
            maximum: float | None = None, positive: bool = False) -> float | None:
    value = doc.get(field)
    if value is None:
        if required:
            raise _Invalid(f"{field}: missing")
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise _Invalid(f"{field}: expected a number, got {_json_type(value)}")
    value = float(value)
    if not math.isfinite(value):
        raise _Invalid(f"{field}: not a finite number")
    if minimum is not None and value < minimum:
        raise _Invalid(f"{field}: negative" if minimum == 0.0 else f"{field}: below {minimum:g}")
    if maximum is not None and value > maximum:
        raise _Invalid(f"{field}: above {maximum:g}")
    if positive and value <= 0:
        raise _Invalid(f"{field}: must be > 0")
    return value


def _status(value: object) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(code, str) for code in value):
        raise _Invalid("status: expected an array of strings")
    # Unknown codes are kept (DESIGN): a newer meter firmware must not be dead-lettered.
    return tuple(value)
