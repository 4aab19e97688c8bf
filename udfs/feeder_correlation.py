"""Feeder-level correlation of meter outages: one FEEDER_OUTAGE instead of a storm of OUTAGEs.

The detect job routes every OUTAGE alert of the meter detectors (OPEN and CLEARED) through a
second keyed function, keyed by feeder id, that calls

    state, alerts = correlator.on_meter_outage(state, outage_alert, registered_meters, now_ms)

and emits what comes back, in order, instead of the meter's alert. `registered_meters` is the
feeder's row count in meter_registry (view feeder_meter_counts); a feeder that is `unknown` or
has no registered meters never correlates.

Rule: when at least `feeder_outage_share` of the feeder's registered meters (and at least
`feeder_outage_min_meters`) have gone into OUTAGE within `feeder_outage_window_ms` of event
time and are still out, FEEDER_OUTAGE opens (CRITICAL; meter_id null; event_ts = the earliest
of those meters' outages, so its id is stable under replay; value = meters grouped,
threshold = meters needed). Every meter of the feeder that goes out while it is open joins the
group; it clears at the restoration of the last grouped meter.

Suppression (a decision, documented for the operators): OUTAGE is CRITICAL at once and must
go out within seconds, so the OUTAGEs that come before the feeder alert are emitted as they
happen - up to `share` of the feeder; nothing can know yet that they will add up. The OUTAGE
that completes the group, and any member outage while the feeder alert is open, are folded
into it: neither their OPEN nor their CLEARED is emitted. The OUTAGEs emitted before get their
CLEARED at their own restoration. suppresses_meter_outage(state) tells whether a feeder alert
is open now.
"""

from __future__ import annotations

from udfs.alert_record import (
    CLEARED,
    CRITICAL,
    FEEDER_OUTAGE,
    OPEN,
    OUTAGE,
    Alert,
    alert_id,
)
from udfs.detection_thresholds import DetectionThresholds

UNKNOWN = "unknown"
MESSAGE_IDS = 10  # meter ids listed in a FEEDER_OUTAGE message; the rest are counted


class FeederState:
    """Per feeder, picklable: meters out but not grouped, and the open feeder alert's group."""

    __slots__ = ("group", "newest_ts", "open_ts", "out", "threshold")

    def __init__(self):
        self.out: dict[str, int] = {}       # meter -> outage start, within the window, ungrouped
        self.group: dict[str, bool] = {}    # meter -> its OUTAGE alert folded (not emitted)
        self.open_ts: int | None = None     # event_ts of the open FEEDER_OUTAGE
        self.threshold = 0                  # meters it took to open it
        self.newest_ts = 0                  # newest outage event time seen (the window's end)

    def __getstate__(self):
        return self.out, self.group, self.open_ts, self.threshold, self.newest_ts

    def __setstate__(self, values) -> None:
        self.out, self.group, self.open_ts, self.threshold, self.newest_ts = values

    def __repr__(self) -> str:
        return (f"FeederState(out={self.out}, group={self.group}, open_ts={self.open_ts}, "
                f"threshold={self.threshold})")


def suppresses_meter_outage(state: FeederState | None) -> bool:
    """True while the feeder's FEEDER_OUTAGE is open: its members' OUTAGEs are folded into it."""
    return state is not None and state.open_ts is not None


class FeederCorrelator:
    def __init__(self, thresholds: DetectionThresholds | None = None):
        self.thresholds = thresholds or DetectionThresholds()

    def on_meter_outage(self, state: FeederState | None, outage: Alert, registered_meters: int,
                        now_ms: int) -> tuple[FeederState, list[Alert]]:
        """`outage`: a meter's OUTAGE alert, OPEN or CLEARED, from MeterDetector. Returns the
        alerts to emit for it: the alert itself unless folded, and FEEDER_OUTAGE's OPEN or
        CLEARED when this outage opens or ends the feeder's."""
        if outage.type != OUTAGE or outage.meter_id is None:
            raise ValueError(f"on_meter_outage takes a meter's OUTAGE alert, got {outage.type}")
        state = state if state is not None else FeederState()
        if outage.state == OPEN:
            return state, self._opened(state, outage, registered_meters, now_ms)
        return state, self._restored(state, outage, now_ms)

    def _opened(self, state: FeederState, outage: Alert, registered: int,
                now_ms: int) -> list[Alert]:
        meter, ts = outage.meter_id, outage.event_ts
        state.newest_ts = max(state.newest_ts, ts)
        if state.open_ts is not None:
            state.group[meter] = True
            return []
        state.out[meter] = ts
        window_start = state.newest_ts - self.thresholds.feeder_outage_window_ms
        # Outages older than the window can no longer add up to a feeder outage; their CLEARED
        # goes out as any ungrouped meter's does.
        state.out = {m: t for m, t in state.out.items() if t >= window_start}
        if outage.feeder_id == UNKNOWN or registered <= 0:
            return [outage]
        needed = self.thresholds.feeder_outage_meters(registered)
        if len(state.out) < needed:
            return [outage]
        state.open_ts = min(state.out.values())
        state.threshold = needed
        state.group = dict.fromkeys(state.out, False)
        state.group[meter] = True  # the completing outage is reported by the feeder alert
        members = sorted(state.out, key=lambda m: (state.out[m], m))
        state.out = {}
        return [self._feeder_alert(outage, OPEN, state.open_ts, now_ms, len(members), needed,
                                   f"{len(members)} of {registered} meters of feeder "
                                   f"{outage.feeder_id} lost power within "
                                   f"{self.thresholds.feeder_outage_window_ms // 1000} s: "
                                   f"{_listing(members)}")]

    def _restored(self, state: FeederState, outage: Alert, now_ms: int) -> list[Alert]:
        meter = outage.meter_id
        if meter not in state.group:
            state.out.pop(meter, None)
            return [outage]
        folded = state.group.pop(meter)
        alerts = [] if folded else [outage]
        if not state.group:
            alerts.append(self._feeder_alert(outage, CLEARED, state.open_ts, now_ms, 0.0,
                                             float(state.threshold),
                                             f"every meter of feeder {outage.feeder_id} in the "
                                             f"outage is restored (last: {meter})",
                                             event_ts=outage.event_ts))
            state.open_ts, state.threshold = None, 0
        return alerts

    def _feeder_alert(self, outage: Alert, state: str, open_ts: int, now_ms: int, value: float,
                      threshold: float, message: str, event_ts: int | None = None) -> Alert:
        feeder = outage.feeder_id
        return Alert(alert_id(feeder, FEEDER_OUTAGE, open_ts), None, feeder, outage.region,
                     FEEDER_OUTAGE, CRITICAL, state, open_ts if event_ts is None else event_ts,
                     now_ms, float(value), float(threshold), message,
                     open_ts if state == CLEARED else None)


def _listing(meters: list[str]) -> str:
    shown = ", ".join(meters[:MESSAGE_IDS])
    return shown if len(meters) <= MESSAGE_IDS else f"{shown} and {len(meters) - MESSAGE_IDS} more"
