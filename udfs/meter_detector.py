"""Per-meter detection: every rule of DESIGN's table that one meter's readings decide, as a state
machine the detect job drives from a KeyedProcessFunction keyed by meter id.

    detector = MeterDetector(thresholds)
    state, alerts = detector.on_reading(state, reading, meta, now_ms)   # per reading
    deadline = detector.stale_deadline(state, meta)   # event-time timer for STALE_METER, or None
    state, alerts = detector.on_stale_timer(state, meter_id, timer_ts, meta, now_ms, watermark)

`state` is a `MeterState` (None before the meter's first reading); on_reading updates it in
place and returns it. The job keeps it in one ValueState, emits the alerts, and after either
call registers an event-time timer at stale_deadline() when that is not None (re-registering
the same timestamp is free in Flink; a timer made obsolete by a later reading is ignored).
OUTAGE alerts go through feeder_correlation.FeederCorrelator before they are emitted.

Lifecycle (matching tools/simulator's ground truth): a condition opens one alert (OPEN) at the
reading that shows it and clears it (CLEARED, same alert_id) at the first reading that does not:
OUTAGE, VOLTAGE_SAG / _SWELL, FREQUENCY_EXCURSION, REVERSE_FLOW hold while their readings last;
REGISTER_ROLLBACK and CONSUMPTION_SPIKE describe one interval, so the next reading clears them;
STALE_METER clears at the reading that resumes; ZERO_CONSUMPTION when the register moves again.
A reading dated at or before the last one processed (a duplicate, a replay, an out-of-order
reading) changes nothing and raises nothing.

Decisions:
- Severity escalation: a condition that gets worse while open (a MAJOR sag that turns severe,
  a MINOR spike followed by a MAJOR one) clears the open alert and opens a new one at the
  worse severity, so a CRITICAL reaches its consumers at once under its own id. One that gets
  milder stays under the alert it opened as until it clears: no churn. The simulator never
  changes an injection's severity midway, so its truth is the same under either choice.
- OUTAGE and the other rules: a reading in outage (last gasp, or under the outage voltage) is
  not a measurement of supply quality, so the voltage and frequency rules skip it (an open sag
  neither clears nor escalates on it). Registers are still checked: a last gasp carries real
  register values. While OUTAGE is open there is no STALE_METER (the meter said why it is
  silent; the simulator's outages are silent up to 6 h with no stale entry), and the time
  without supply does not count towards ZERO_CONSUMPTION ("while voltage is present").
- Spike history: a day of the meter's intervals by time of day (spike_statistics.py says why),
  and no z-score before it holds spike_min_history_ms of them (21 h: 84 of 96 slots). Only a
  reading exactly one interval after the previous one yields an interval's energy for the
  robust z-score (MINOR), and only those enter the history: a delta spanning a gap, or the
  part-interval around a last gasp or a restoration, is an estimate whose spread is not that
  of the meter's intervals (an outage's catch-up is not a spike). The physical limit (MAJOR)
  applies to every delta, against the service limit over the elapsed time (at least one
  interval); MAJOR values do not enter the history.
- ZERO_CONSUMPTION counts from the last reading at which the import register moved, or the
  meter was without supply; a reading without a voltage value does not interrupt it.
"""

from __future__ import annotations

from typing import NamedTuple

from udfs import meter_rules as rules
from udfs.alert_record import (
    CLEARED,
    CONSUMPTION_SPIKE,
    FREQUENCY_EXCURSION,
    MAJOR,
    MINOR,
    OPEN,
    OUTAGE,
    REGISTER_ROLLBACK,
    REVERSE_FLOW,
    SEVERITY_RANK,
    STALE_METER,
    VOLTAGE_SAG,
    VOLTAGE_SWELL,
    ZERO_CONSUMPTION,
    Alert,
    alert_id,
)
from udfs.detection_thresholds import HOUR_MS, MINUTE_MS, DetectionThresholds, VoltageBand
from udfs.meter_rules import Condition
from udfs.reading_parser import Reading
from udfs.spike_statistics import median_and_spread, new_ring, put, slot

# Flink's watermark at the end of a bounded input (Long.MAX_VALUE): it fires every pending
# timer, but a meter that stops when the input does is not stale.
END_OF_INPUT_WATERMARK = 2**63 - 1
UNKNOWN = "unknown"


class MeterMeta(NamedTuple):
    """A meter_registry row; None (or the defaults, for an unknown meter) means the thresholds'
    default: profile nominal voltage, 15-min interval, register max; no service limit check."""

    feeder_id: str = UNKNOWN
    region: str = UNKNOWN
    nominal_voltage_v: float | None = None
    has_generation: bool = False
    service_limit_kw: float | None = None
    interval_minutes: int | None = None
    register_max_kwh: float | None = None


UNKNOWN_METER = MeterMeta()


class MeterState:
    """What a meter's detector remembers between readings; plain and picklable (a tuple of
    numbers, one array('f') and a dict: ~60 bytes plus 4 per interval of spike history)."""

    __slots__ = ("history", "history_count", "last_export", "last_import", "last_ts", "open",
                 "zero_since")

    def __init__(self, last_ts: int, last_import: float, last_export: float | None,
                 zero_since: int, history, history_count: int = 0,
                 open_: dict[str, tuple[str, int]] | None = None):
        self.last_ts = last_ts
        self.last_import = last_import
        self.last_export = last_export
        self.zero_since = zero_since      # event time from which the register has not moved
        self.history = history            # array('f'): interval kWh by time of day (NaN: none)
        self.history_count = history_count  # slots of it filled
        # Open conditions: type -> (severity, event time it opened at). The alert_id follows
        # from them and the meter id, so it is not stored.
        self.open = {} if open_ is None else open_

    def __getstate__(self):
        return (self.last_ts, self.last_import, self.last_export, self.zero_since,
                self.history, self.history_count, self.open)

    def __setstate__(self, values) -> None:
        (self.last_ts, self.last_import, self.last_export, self.zero_since, self.history,
         self.history_count, self.open) = values

    def __eq__(self, other: object) -> bool:
        # By bytes: empty history slots are NaN, and NaN != NaN.
        return (isinstance(other, MeterState)
                and self.__getstate__()[:4] == other.__getstate__()[:4]
                and self.history.tobytes() == other.history.tobytes()
                and (self.history_count, self.open) == (other.history_count, other.open))

    __hash__ = None  # mutable

    def __repr__(self) -> str:
        return (f"MeterState(last_ts={self.last_ts}, last_import={self.last_import}, "
                f"last_export={self.last_export}, zero_since={self.zero_since}, "
                f"history={self.history_count}, open={self.open})")


class _Limits(NamedTuple):
    band: VoltageBand
    outage_v: float
    interval_ms: int
    limit_kw: float | None
    register_max_kwh: float
    history_capacity: int
    min_history: int


# One change to a meter's open conditions: (type, condition to open or None to clear,
# value and threshold to report if an open alert of that type clears).
_Change = tuple[str, Condition | None, float | None, float | None]


class MeterDetector:
    def __init__(self, thresholds: DetectionThresholds | None = None):
        self.thresholds = t = thresholds or DetectionThresholds()
        self._frequency_low, self._frequency_high = t.frequency_band
        self._limits_cache: dict[tuple, _Limits] = {}

    # ------------------------------------------------------------------ readings

    def on_reading(self, state: MeterState | None, reading: Reading, meta: MeterMeta | None,
                   now_ms: int) -> tuple[MeterState, list[Alert]]:
        ts = reading.ts_ms
        if state is not None and ts <= state.last_ts:
            return state, []
        meta = meta or UNKNOWN_METER
        overdue: list[Alert] = []
        deadline = self.stale_deadline(state, meta)
        if deadline is not None and ts > deadline:
            # Silent past the deadline, and the timer has not fired: the watermark lags this
            # meter's own partition (a catch-up reads partitions at different speeds). The
            # silence is a fact in event time all the same: open STALE_METER at the deadline;
            # this reading clears it below.
            state, overdue = self.on_stale_timer(state, reading.meter_id, deadline, meta, now_ms)
        lim = self._limits(meta)
        status, volts = reading.status, reading.voltage_v
        changes: list[_Change] = []

        first = state is None
        if first:
            state = MeterState(ts, reading.kwh_import, reading.kwh_export, ts,
                               new_ring(lim.history_capacity))
        opened = state.open
        was_out = OUTAGE in opened
        if STALE_METER in opened:
            silent = (ts - state.last_ts) / lim.interval_ms
            changes.append((STALE_METER, None, silent,
                            float(self.thresholds.stale_after_intervals)))

        out = rules.outage(volts, status, lim.outage_v)
        _want(changes, opened, OUTAGE, out, volts, lim.outage_v)
        if out is None:
            if volts is not None:
                band = lim.band
                excursion = rules.voltage_excursion(volts, band)
                kind = excursion.type if excursion is not None else None
                _want(changes, opened, VOLTAGE_SAG, excursion if kind == VOLTAGE_SAG else None,
                      volts, band.low)
                _want(changes, opened, VOLTAGE_SWELL,
                      excursion if kind == VOLTAGE_SWELL else None, volts, band.high)
            hertz = reading.frequency_hz
            if hertz is not None:
                low, high = self._frequency_low, self._frequency_high
                _want(changes, opened, FREQUENCY_EXCURSION,
                      rules.frequency_excursion(hertz, low, high), hertz,
                      low if hertz < low else high)

        if first:
            _want(changes, opened, REVERSE_FLOW,
                  rules.reverse_flow(status, None, None, meta.has_generation), None, None)
        else:
            self._registers(state, reading, meta, lim, out is not None or was_out, changes)
        state.last_ts = ts
        return state, overdue + self._apply(state, changes, reading.meter_id, meta, ts, now_ms)

    def _registers(self, state: MeterState, reading: Reading, meta: MeterMeta, lim: _Limits,
                   unpowered: bool, changes: list[_Change]) -> None:
        """Rules that compare the reading's registers with the previous reading's."""
        t, opened, ts = self.thresholds, state.open, reading.ts_ms
        before, now = state.last_import, reading.kwh_import
        delta = rules.import_delta(before, now, lim.register_max_kwh, t.rollover_top_fraction,
                                   t.rollover_bottom_fraction)
        _want(changes, opened, REGISTER_ROLLBACK,
              rules.register_rollback(before, now) if delta is None else None, delta, 0.0)

        export = reading.kwh_export
        _want(changes, opened, REVERSE_FLOW,
              rules.reverse_flow(reading.status, state.last_export, export, meta.has_generation),
              None if export is None or state.last_export is None
              else export - state.last_export, 0.0)

        if delta is not None:
            spike = self._spike(state, lim, delta, ts - state.last_ts)
            _want(changes, opened, CONSUMPTION_SPIKE, spike, delta, None)
        elif CONSUMPTION_SPIKE in opened:  # a rollback is no spike, and closes the interval
            changes.append((CONSUMPTION_SPIKE, None, None, None))

        if delta is None or delta > 0.0:
            state.zero_since = ts
            _want(changes, opened, ZERO_CONSUMPTION, None, delta, 0.0)
        elif unpowered:
            state.zero_since = ts
        else:
            frozen_ms = ts - state.zero_since
            if frozen_ms >= t.zero_consumption_ms:
                hours, limit = frozen_ms / HOUR_MS, t.zero_consumption_ms / HOUR_MS
                _want(changes, opened, ZERO_CONSUMPTION,
                      Condition(ZERO_CONSUMPTION, MINOR, hours, limit,
                                f"import register unchanged for {hours:g} h with supply "
                                f"present (limit {limit:g} h)"), None, None)

        state.last_import = now
        if export is not None:
            state.last_export = export

    def _spike(self, state: MeterState, lim: _Limits, delta: float,
               elapsed_ms: int) -> Condition | None:
        if lim.limit_kw is not None:
            limit_kwh = lim.limit_kw * max(elapsed_ms, lim.interval_ms) / HOUR_MS
            if delta > limit_kwh:
                return Condition(CONSUMPTION_SPIKE, MAJOR, delta, limit_kwh,
                                 f"{delta:g} kWh in {elapsed_ms / MINUTE_MS:g} min is above "
                                 f"the service limit ({lim.limit_kw:g} kW: {limit_kwh:g} kWh)")
        if elapsed_ms != lim.interval_ms:
            return None
        history = state.history
        if len(history) != lim.history_capacity:  # the meter's interval changed: start over
            history = state.history = new_ring(lim.history_capacity)
            state.history_count = 0
        spike = None
        count = state.history_count
        if count >= lim.min_history:
            stats = median_and_spread(history, count)
            if stats is not None:
                median, spread = stats
                limit = median + self.thresholds.spike_z * spread
                if delta > limit:
                    z = (delta - median) / spread
                    spike = Condition(CONSUMPTION_SPIKE, MINOR, delta, limit,
                                      f"{delta:g} kWh in one interval: robust z {z:.1f} > "
                                      f"{self.thresholds.spike_z:g} (median {median:.4g} kWh "
                                      f"of {count} intervals of the last day)")
        if put(history, slot(state.last_ts + elapsed_ms, lim.interval_ms, len(history)), delta):
            state.history_count = count + 1
        return spike

    # ------------------------------------------------------------------ staleness

    def stale_deadline(self, state: MeterState | None, meta: MeterMeta | None) -> int | None:
        """Event time at which STALE_METER opens if no reading arrives before it; None when no
        timer is needed (no reading yet, STALE_METER already open, or the meter in OUTAGE)."""
        if state is None or STALE_METER in state.open or OUTAGE in state.open:
            return None
        interval_ms = self._limits(meta or UNKNOWN_METER).interval_ms
        return state.last_ts + self.thresholds.stale_after_intervals * interval_ms

    def on_stale_timer(self, state: MeterState | None, meter_id: str, timer_ts: int,
                       meta: MeterMeta | None, now_ms: int,
                       watermark_ms: int | None = None) -> tuple[MeterState | None, list[Alert]]:
        """Opens STALE_METER at the deadline (last reading + n intervals, the event time the
        meter became stale) if no reading arrived since the timer was set."""
        deadline = self.stale_deadline(state, meta)
        if deadline is None or timer_ts < deadline:
            return state, []
        if watermark_ms is not None and watermark_ms >= END_OF_INPUT_WATERMARK:
            return state, []
        meta = meta or UNKNOWN_METER
        n = float(self.thresholds.stale_after_intervals)
        state.open[STALE_METER] = (MINOR, deadline)
        return state, [Alert(alert_id(meter_id, STALE_METER, deadline), meter_id, meta.feeder_id,
                             meta.region, STALE_METER, MINOR, OPEN, deadline, now_ms, n, n,
                             f"no reading for {n:g} intervals since {state.last_ts}")]

    # ------------------------------------------------------------------ plumbing

    def _apply(self, state: MeterState, changes: list[_Change], meter_id: str, meta: MeterMeta,
               ts: int, now_ms: int) -> list[Alert]:
        """Alerts for the changes: every CLEARED before any OPEN of the same reading."""
        if not changes:
            return []
        alerts, opening = [], []
        for type_, condition, value, threshold in changes:
            held = state.open.pop(type_, None)
            if held is not None:
                severity, since = held
                if condition is None:
                    message = f"{type_} cleared" + _measured(value, threshold)
                else:
                    value, threshold = condition.value, condition.threshold
                    message = (f"{type_} escalated to {condition.severity}, reopened: "
                               f"{condition.message}")
                alerts.append(Alert(alert_id(meter_id, type_, since), meter_id, meta.feeder_id,
                                    meta.region, type_, severity, CLEARED, ts, now_ms, value,
                                    threshold, message, since))
            if condition is not None:
                opening.append(condition)
        for c in opening:
            state.open[c.type] = (c.severity, ts)
            alerts.append(Alert(alert_id(meter_id, c.type, ts), meter_id, meta.feeder_id,
                                meta.region, c.type, c.severity, OPEN, ts, now_ms, c.value,
                                c.threshold, c.message))
        return alerts

    def _limits(self, meta: MeterMeta) -> _Limits:
        key = (meta.nominal_voltage_v, meta.interval_minutes, meta.service_limit_kw,
               meta.register_max_kwh)
        limits = self._limits_cache.get(key)
        if limits is None:
            if len(self._limits_cache) > 4096:  # registries hold few distinct combinations
                self._limits_cache.clear()
            limits = self._limits_cache[key] = self._derive(meta)
        return limits

    def _derive(self, meta: MeterMeta) -> _Limits:
        t = self.thresholds
        nominal = meta.nominal_voltage_v if meta.nominal_voltage_v else t.nominal_voltage_v
        minutes = meta.interval_minutes if meta.interval_minutes else t.default_interval_minutes
        interval_ms = int(minutes) * MINUTE_MS
        limit_kw = meta.service_limit_kw if meta.service_limit_kw else None
        return _Limits(t.voltage_band(nominal), t.outage_voltage(nominal), interval_ms, limit_kw,
                       meta.register_max_kwh or t.default_register_max_kwh,
                       t.spike_history_length(interval_ms), t.spike_min_history(interval_ms))


def _want(changes: list[_Change], opened: dict, type_: str, condition: Condition | None,
          value: float | None, threshold: float | None) -> None:
    """Record what a rule found, if it changes the meter's alerts: a condition that is not
    open (or is open at a lower severity), or the end of one that is."""
    if condition is None:
        if type_ in opened:
            changes.append((type_, None, value, threshold))
        return
    held = opened.get(type_)
    if held is None or SEVERITY_RANK[condition.severity] > SEVERITY_RANK[held[0]]:
        changes.append((type_, condition, value, threshold))


def _measured(value: float | None, threshold: float | None) -> str:
    if value is None:
        return ""
    return f": {value:g}" + ("" if threshold is None else f" (limit {threshold:g})")
