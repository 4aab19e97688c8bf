"""Ground truth: one JSON object per injected anomaly, data fault or control, and a summary.

Entry fields: kind (anomaly | fault | control), type (alert type or fault name), meter_id (None
for feeder entries), feeder_id, region, start_ts and end_ts (event time, epoch ms: when the
expected alert opens and clears; end_ts None if it does not end inside the simulated span),
expected_alert, expected_severity, expected_outcome (alert | dead_letter | duplicate | late |
none), expected_reason (a dead-letter reason prefix), meters (feeder entries) and detail.
"""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import orjson

from tools.simulator.fleet import Fleet


def entry(fleet: Fleet, kind: str, type_: str, meter: int | None, start_ts: int,
          end_ts: int | None, *, alert: str | None = None, severity: str | None = None,
          outcome: str = "alert", reason: str | None = None, feeder: int | None = None,
          meters: list[int] | None = None, **detail) -> dict:
    feeder = int(fleet.feeder[meter]) if meter is not None else feeder
    record = {
        "kind": kind,
        "type": type_,
        "meter_id": fleet.ids[meter] if meter is not None else None,
        "feeder_id": fleet.feeder_ids[feeder],
        "region": fleet.region_ids[fleet.feeder_region[feeder]],
        "start_ts": int(start_ts),
        "end_ts": None if end_ts is None else int(end_ts),
        "expected_alert": alert,
        "expected_severity": severity,
        "expected_outcome": outcome,
        "expected_reason": reason,
    }
    if meters is not None:
        record["meters"] = [fleet.ids[m] for m in meters]
    # Planner values are often numpy scalars, which JSON writers do not take.
    record["detail"] = {k: v.item() if isinstance(v, np.generic) else v for k, v in detail.items()}
    return record


def anomaly(fleet: Fleet, type_: str, meter: int | None, start_ts: int, end_ts: int | None,
            severity: str, **kwargs) -> dict:
    return entry(fleet, "anomaly", type_, meter, start_ts, end_ts, alert=type_,
                 severity=severity, **kwargs)


def ordered(entries: list[dict]) -> list[dict]:
    return sorted(entries, key=lambda e: (e["start_ts"], e["kind"], e["type"],
                                          e["meter_id"] or e["feeder_id"]))


def write_truth(entries: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        for item in ordered(entries):
            handle.write(orjson.dumps(item) + b"\n")


def counts(entries: list[dict]) -> dict[str, dict[str, int]]:
    by_kind: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for item in entries:
        by_kind[item["kind"]][item["type"]] += 1
    return {kind: dict(sorted(types.items())) for kind, types in sorted(by_kind.items())}


def write_summary(summary: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2) + b"\n")
