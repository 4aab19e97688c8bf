"""Readings as the JSON bytes of the meter.readings contract (orjson, compact)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import orjson

from tools.simulator.fleet import Fleet


class Timestamps:
    """The ts field: epoch ms, or RFC 3339 local time with offset for the meters that send
    strings (their firmware does)."""

    def __init__(self, fleet: Fleet):
        self.offsets = sorted({int(o) for o in fleet.utc_offset_min})
        self.zone = np.searchsorted(self.offsets, fleet.utc_offset_min)
        self.rfc3339 = fleet.rfc3339

    def one(self, ts_ms: int, meter: int) -> int | str:
        if not self.rfc3339[meter]:
            return ts_ms
        return rfc3339(ts_ms, self.offsets[self.zone[meter]])

    def column(self, ts_ms: int, meters: np.ndarray) -> list:
        values = np.full(len(meters), ts_ms, dtype=object)
        strings = meters[self.rfc3339[meters]]
        if len(strings):
            texts = np.array([rfc3339(ts_ms, offset) for offset in self.offsets], dtype=object)
            values[self.rfc3339[meters]] = texts[self.zone[strings]]
        return values.tolist()


def rfc3339(ts_ms: int, offset_min: int) -> str:
    zone = timezone(timedelta(minutes=offset_min))
    return datetime.fromtimestamp(ts_ms / 1000, zone).isoformat(timespec="seconds")


def readings(ids: list[str], ts: list, seq: list, kwh_import: list, kwh_export: list,
             voltage: list, current: list, power_factor: list, frequency: list) -> list[bytes]:
    # orjson returns each result in a 4 KiB allocation; 100,000 of those per step cost 400 MB
    # and page faults. An exact-size copy is cheaper than keeping them (measured: 2x faster).
    dumps = orjson.dumps
    return [bytes(memoryview(dumps({"meter_id": m, "ts": t, "seq": q, "kwh_import": i,
                                    "kwh_export": e, "voltage_v": v, "current_a": c,
                                    "power_factor": p, "frequency_hz": f})))
            for m, t, q, i, e, v, c, p, f in zip(ids, ts, seq, kwh_import, kwh_export, voltage,
                                                 current, power_factor, frequency, strict=True)]


def with_status(value: bytes, codes: list[str]) -> bytes:
    return orjson.dumps({**orjson.loads(value), "status": codes})


def event(meter_id: str, ts: int | str, seq: int, kwh_import: float, kwh_export: float,
          status: str, voltage: float, frequency: float | None) -> bytes:
    """A last gasp (at 0 V, no frequency to measure) or a restoration message."""
    doc = {"meter_id": meter_id, "ts": ts, "seq": seq, "kwh_import": kwh_import,
           "kwh_export": kwh_export, "voltage_v": voltage, "current_a": 0.0}
    if frequency is not None:
        doc["frequency_hz"] = frequency
    doc["status"] = [status]
    return orjson.dumps(doc)
