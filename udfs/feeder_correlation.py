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


# An outage interval stays known this long (event time) behind the newest outage start, or
# behind the watermark when that is older: in a catch-up, partitions read at different speeds
# can be days of event time apart, and a feeder's meters sit on several of them.
RETENTION_MS = 3_600_000


class FeederState:
    """Per feeder, picklable: recent ungrouped outage intervals, and the open feeder alert's
    group with each member's restoration time."""

    __slots__ = ("group", "newest_ts", "open_ts", "outages", "threshold")

    def __init__(self):
        self.outages: dict[str, list] = {}  # meter -> [start, end or None], not grouped
        self.group: dict[str, list] = {}    # meter -> [its OUTAGE folded?, end or None]
        self.open_ts: int | None = None     # event_ts of the open FEEDER_OUTAGE
        self.threshold = 0                  # meters it took to open it
        self.newest_ts = 0                  # newest outage start seen

    def __getstate__(self):
        return self.outages, self.group, self.open_ts, self.threshold, self.newest_ts

    def __setstate__(self, values) -> None:
        self.outages, self.group, self.open_ts, self.threshold, self.newest_ts = values

    def __repr__(self) -> str:
        return (f"FeederState(outages={self.outages}, group={self.group}, "
                f"open_ts={self.open_ts}, threshold={self.threshold})")


def suppresses_meter_outage(state: FeederState | None) -> bool:
    """True while the feeder's FEEDER_OUTAGE is open: its members' OUTAGEs are folded into it."""
    return state is not None and state.open_ts is not None


class FeederCorrelator:
    """Decides in event time, not arrival order: a meter counts at time t when its outage
    started within the window before t and had not ended by t. So a restoration that arrives
    before another member's last gasp (possible whenever meters sit on different Kafka
    partitions) does not hide the feeder outage, and a replay finds the same one."""

    def __init__(self, thresholds: DetectionThresholds | None = None):
        self.thresholds = thresholds or DetectionThresholds()

    def on_meter_outage(self, state: FeederState | None, outage: Alert, registered_meters: int,
                        now_ms: int, watermark_ms: int | None = None
                        ) -> tuple[FeederState, list[Alert]]:
        """`outage`: a meter's OUTAGE alert, OPEN or CLEARED, from MeterDetector. Returns the
        alerts to emit for it: the alert itself unless folded, and FEEDER_OUTAGE's OPEN or
        CLEARED when this outage opens or ends the feeder's. `watermark_ms` (the job's) keeps
        outages known while the slowest partition may still bring members."""
        if outage.type != OUTAGE or outage.meter_id is None:
            raise ValueError(f"on_meter_outage takes a meter's OUTAGE alert, got {outage.type}")
        state = state if state is not None else FeederState()
        if outage.state == OPEN:
            return state, self._opened(state, outage, registered_meters, now_ms, watermark_ms)
        return state, self._restored(state, outage, now_ms)

    def _opened(self, state: FeederState, outage: Alert, registered: int,
                now_ms: int, watermark_ms: int | None) -> list[Alert]:
        meter, ts = outage.meter_id, outage.event_ts
        state.newest_ts = max(state.newest_ts, ts)
        if state.open_ts is not None and ts >= state.open_ts:
            state.group[meter] = [True, None]
            return []
        state.outages[meter] = [ts, None]
        # The slower of the two clocks: the newest outage can be days ahead of a lagging
        # partition, and a reading can arrive behind the watermark (the detect job drops
        # nothing as late); an outage that far behind both is past correlating.
        newest = state.newest_ts if watermark_ms is None else min(state.newest_ts, watermark_ms)
        horizon = newest - RETENTION_MS
        state.outages = {m: i for m, i in state.outages.items() if i[0] >= horizon}
        if outage.feeder_id == UNKNOWN or registered <= 0 or state.open_ts is not None:
            return [outage]
        needed = self.thresholds.feeder_outage_meters(registered)
        members = self._group_at_earliest(state.outages, needed)
        if members is None:
            return [outage]
        state.open_ts = min(state.outages[m][0] for m in members)
        state.threshold = needed
        # The outage completing the group is reported by the feeder alert; members reported
        # before keep their own CLEARED (already out, or to come).
        state.group = {m: [m == meter, state.outages.pop(m)[1]] for m in members}
        alerts = [self._feeder_alert(outage, OPEN, state.open_ts, now_ms, len(members), needed,
                                     f"{len(members)} of {registered} meters of feeder "
                                     f"{outage.feeder_id} lost power within "
                                     f"{self.thresholds.feeder_outage_window_ms // 1000} s: "
                                     f"{_listing(sorted(members))}")]
        return alerts + self._clear_if_restored(state, outage, now_ms)

    def _group_at_earliest(self, outages: dict[str, list], needed: int) -> list[str] | None:
        """The meters out at the earliest outage start t at which `needed` of them started
        within the window before t and had not ended by t; None if there is no such t."""
        window = self.thresholds.feeder_outage_window_ms
        if len(outages) < needed:
            return None
        for t in sorted({start for start, _ in outages.values()}):
            members = [m for m, (start, end) in outages.items()
                       if t - window <= start <= t and (end is None or end > t)]
            if len(members) >= needed:
                return members
        return None

    def _restored(self, state: FeederState, outage: Alert, now_ms: int) -> list[Alert]:
        meter = outage.meter_id
        if meter not in state.group:
            if meter in state.outages:
                state.outages[meter][1] = outage.event_ts
            return [outage]
        member = state.group[meter]
        member[1] = outage.event_ts
        alerts = [] if member[0] else [outage]
        return alerts + self._clear_if_restored(state, outage, now_ms)

    def _clear_if_restored(self, state: FeederState, outage: Alert, now_ms: int) -> list[Alert]:
        ends = [end for _, end in state.group.values()]
        if not ends or any(end is None for end in ends):
            return []
        last = max(ends)
        alert = self._feeder_alert(outage, CLEARED, state.open_ts, now_ms, 0.0,
                                   float(state.threshold),
                                   f"every meter of feeder {outage.feeder_id} in the outage is "
                                   f"restored (last at {last})", event_ts=last)
        state.open_ts, state.threshold, state.group = None, 0, {}
        return [alert]

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
