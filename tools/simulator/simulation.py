"""The simulation as a library: a fleet, a plan of injections, and the step loop that turns
them into records in send order, plus the ground truth. No Kafka involved.

    sim = Simulation(Settings(meters=1000, days=2, seed=7))
    for record in sim.records():      # key, value (bytes), meter_id, ts_ms, outcome
        ...
    sim.truth()                       # complete once the records are exhausted

Each 15-minute step computes every meter at once (numpy) and yields one batch in event-time
order: last gasps and restorations inside the step (by ts), the regular readings at the step's
end, then the step's re-sent and broken copies, then late readings that fall due.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from typing import NamedTuple

import numpy as np

from tools.simulator import anomalies, encoding, faults, randomness
from tools.simulator.effects import (
    DROP,
    ENERGY,
    EVENT,
    EXPORT,
    FAULT,
    FREEZE,
    FREQUENCY,
    PRESET,
    SCALE,
    SILENT,
    STATUS,
    VOLTAGE,
    Effect,
)
from tools.simulator.fleet import build_fleet
from tools.simulator.load_shapes import DAY_MS, day_conditions, load_kw, solar_kw
from tools.simulator.measurements import Measurements, current_a
from tools.simulator.plan import Planner
from tools.simulator.profiles import PROFILES
from tools.simulator.settings import QUARTER_MS, Settings
from tools.simulator.truth import counts, entry, ordered

WH_PER_KW_STEP = 250.0  # 1 kW for 15 minutes
HALF_HOUR_MS = 2 * QUARTER_MS
OUTCOMES = ("accepted", "duplicate", "late", "dead_letter")


class Record(NamedTuple):
    key: str
    value: bytes
    meter_id: str
    ts_ms: int    # event time of the reading carried (interval end, or a last gasp's instant)
    outcome: str  # what the pipeline should do with it: one of OUTCOMES


class Batch(NamedTuple):
    """One step's records in send order, as parallel lists (the Kafka path's fast form)."""

    step: int
    meters: list[int]
    values: list[bytes]
    ts: list[int]
    outcomes: list[str]


class _MeterState:
    def __init__(self, fleet):
        n = len(fleet)
        self.import_wh = fleet.register0_wh.copy()
        self.export_wh = np.zeros(n, dtype=np.int64)
        self.reported_wh = self.import_wh.copy()
        self.seq = fleet.seq0.copy()
        self.frozen = np.zeros(n, dtype=bool)
        self.wrapped = np.zeros(n, dtype=bool)
        self.held: dict[int, tuple] = {}  # out-of-order: sent after the meter's next reading
        self.late: dict[int, list[tuple]] = collections.defaultdict(list)  # by delivery step


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class Simulation:
    def __init__(self, settings: Settings, wall_clock_ms: Callable[[], int] = now_ms):
        self.settings = settings.validate()
        # Only clock-skew copies read the wall clock (and live mode, for its start).
        self.wall_clock_ms = wall_clock_ms
        self.fleet = build_fleet(settings, PROFILES[settings.profile])
        start = (settings.start_ms() if settings.mode == "replay"
                 else wall_clock_ms() // QUARTER_MS * QUARTER_MS)
        planner = Planner(settings, self.fleet, start)
        anomalies.inject(planner)
        faults.inject(planner)
        self.timeline = planner.timeline
        self._effects = planner.effects
        self._planned = planner.truth
        self._truth = list(self._planned)
        self._ids = np.array(self.fleet.ids, dtype=object)
        self._timestamps = encoding.Timestamps(self.fleet)
        self._every_meter = np.arange(len(self.fleet))
        self._quarter_hourly = np.flatnonzero(self.fleet.interval_min == 15)
        self._day = (None, None, None)
        self.outcomes = collections.Counter()

    # ------------------------------------------------------------------ results

    def truth(self, until_ts: int | None = None) -> list[dict]:
        """Ground truth in event-time order; with until_ts, only what started by then."""
        return ordered([e for e in self._truth if until_ts is None or e["start_ts"] <= until_ts])

    def expected_records(self) -> int:
        thirty = len(self.fleet) - len(self._quarter_hourly)
        return (len(self._quarter_hourly) * self.timeline.steps
                + thirty * len(self.timeline.reports(30)))

    def summary(self, until_ts: int | None = None) -> dict:
        s = self.settings
        return {
            "mode": s.mode, "meters": s.meters, "days": s.days, "seed": s.seed,
            "profile": s.profile, "start": iso(self.timeline.start_ms),
            "end": iso(self.timeline.end(self.timeline.steps - 1)),
            "complete": until_ts is None,
            "reached": iso(until_ts if until_ts is not None else self.timeline.end(
                self.timeline.steps - 1)),
            "records": sum(self.outcomes.values()),
            "records_by_outcome": dict(self.outcomes),
            "truth": counts(self.truth(until_ts)),
        }

    # ------------------------------------------------------------------ the stream

    def records(self) -> Iterator[Record]:
        ids = self.fleet.ids
        for batch in self.batches():
            for meter, value, ts, outcome in zip(batch.meters, batch.values, batch.ts,
                                                 batch.outcomes, strict=True):
                yield Record(ids[meter], value, ids[meter], ts, outcome)

    def batches(self) -> Iterator[Batch]:
        """The stream from the start; each pass yields the same records (controls and counts
        start over)."""
        state = _MeterState(self.fleet)
        self._truth = list(self._planned)
        self.outcomes = collections.Counter(dict.fromkeys(OUTCOMES, 0))
        for step in range(self.timeline.steps):
            batch = self._step(step, state)
            yield batch
            # Counted once the consumer comes back for more: an interrupted run counts what
            # it finished sending.
            self.outcomes.update(batch.outcomes)

    def _step(self, step: int, st: _MeterState) -> Batch:
        fleet, ts = self.fleet, self.timeline.end(step)
        start = self.timeline.start(step)
        rng = randomness.stream(self.settings.seed, randomness.STEP, step)
        level, sky = self._conditions(start)
        load = load_kw(fleet, start, level, rng)
        solar = solar_kw(fleet, start, sky) * (1.0 + rng.uniform(-0.1, 0.1, len(fleet)))
        effects = collections.defaultdict(list)
        for effect in self._effects.get(step, ()):
            effects[effect.kind].append(effect)
        for e in effects[PRESET]:
            st.import_wh[e.meter] = e.value
        for e in effects[FREEZE]:
            st.frozen[e.meter] = True
        for e in effects[SCALE]:
            load[e.meter] *= e.value
            solar[e.meter] *= e.value
        for e in effects[ENERGY]:
            load[e.meter], solar[e.meter] = e.value / WH_PER_KW_STEP, 0.0
        net = load - solar
        imported = np.rint(np.clip(net, 0.0, None) * WH_PER_KW_STEP).astype(np.int64)
        exported = np.rint(np.clip(-net, 0.0, None) * WH_PER_KW_STEP).astype(np.int64)
        imported[st.frozen] = 0
        for e in effects[EXPORT]:
            exported[e.meter] += e.value
        quality = Measurements(fleet, step, load, rng)

        head = self._events(effects[EVENT], imported, exported, quality, st)
        st.import_wh += imported
        for e in effects[DROP]:
            st.import_wh[e.meter] -= e.value
        wrapped = st.import_wh >= fleet.register_max_wh
        if wrapped.any():
            st.import_wh[wrapped] -= fleet.register_max_wh[wrapped]
            st.wrapped |= wrapped
        st.export_wh += exported

        meters = self._reporting(ts, effects[SILENT])
        values = self._readings(meters, ts, imported + exported, quality, effects, st)
        self._controls(meters, ts, st)
        return self._assemble(step, ts, meters, values, head, effects[FAULT], st)

    def _conditions(self, start_ms: int):
        day = start_ms // DAY_MS
        if self._day[0] != day:
            self._day = (day, *day_conditions(self.fleet, self.settings.seed, day))
        return self._day[1], self._day[2]

    def _reporting(self, ts: int, silent: list[Effect]) -> np.ndarray:
        meters = self._every_meter if ts % HALF_HOUR_MS == 0 else self._quarter_hourly
        if silent:
            meters = meters[np.isin(meters, [e.meter for e in silent], invert=True)]
        return meters

    def _readings(self, meters: np.ndarray, ts: int, energy_wh: np.ndarray,
                  quality: Measurements, effects: dict, st: _MeterState) -> list[bytes]:
        fleet = self.fleet
        volts = np.round(quality.voltage[meters] * fleet.nominal_v, 1)
        hertz = np.round(quality.frequency[meters] * fleet.nominal_hz, 3)
        for e in effects[VOLTAGE]:
            volts[np.searchsorted(meters, e.meter)] = round(e.value * fleet.nominal_v, 1)
        for e in effects[FREQUENCY]:
            hertz[np.searchsorted(meters, e.meter)] = round(e.value * fleet.nominal_hz, 3)
        pf = np.round(quality.power_factor[meters], 3)
        amps = np.round(current_a(energy_wh[meters] / WH_PER_KW_STEP, volts, pf), 2)
        seq = st.seq[meters]
        st.seq[meters] += 1
        values = encoding.readings(
            self._ids[meters].tolist(), self._timestamps.column(ts, meters), seq.tolist(),
            (st.import_wh[meters] / 1000).tolist(), (st.export_wh[meters] / 1000).tolist(),
            volts.tolist(), amps.tolist(), pf.tolist(), hertz.tolist())
        for e in effects[STATUS]:
            at = np.searchsorted(meters, e.meter)
            values[at] = encoding.with_status(values[at], e.value)
        return values

    def _events(self, effects: list[Effect], imported: np.ndarray, exported: np.ndarray,
                quality: Measurements, st: _MeterState) -> list[tuple]:
        fleet, out = self.fleet, []
        for e in sorted(effects, key=lambda e: (e.value.ts_ms, e.meter)):
            meter, event = e.meter, e.value
            register = int(st.import_wh[meter]) + (int(imported[meter])
                                                   if event.after_consumption else 0)
            register %= int(fleet.register_max_wh[meter])
            export = int(st.export_wh[meter]) + (int(exported[meter])
                                                 if event.after_consumption else 0)
            value = encoding.event(
                fleet.ids[meter], self._timestamps.one(event.ts_ms, meter), int(st.seq[meter]),
                register / 1000, export / 1000, event.status,
                round(float(quality.voltage[meter]) * fleet.nominal_v, 1) if event.powered else 0.0,
                round(float(quality.frequency[meter]) * fleet.nominal_hz, 3)
                if event.powered else None)
            st.seq[meter] += 1
            out.append((meter, value, event.ts_ms, "accepted"))
        return out

    def _controls(self, meters: np.ndarray, ts: int, st: _MeterState) -> None:
        """A register that wrapped since the meter's last reading: a legitimate rollover."""
        for meter in meters[st.wrapped[meters]].tolist():
            self._truth.append(entry(
                self.fleet, "control", "REGISTER_ROLLOVER", meter, ts, ts, outcome="none",
                register_max_kwh=int(self.fleet.register_max_wh[meter]) / 1000,
                before_kwh=int(st.reported_wh[meter]) / 1000,
                after_kwh=int(st.import_wh[meter]) / 1000))
            st.wrapped[meter] = False
        st.reported_wh[meters] = st.import_wh[meters]

    def _assemble(self, step: int, ts: int, meters: np.ndarray, values: list[bytes],
                  head: list[tuple], fault_effects: list[Effect], st: _MeterState) -> Batch:
        """Send order: events, regular readings (with out-of-order ones moved), copies, late."""
        withheld: set[int] = set()      # positions of readings not sent now
        inserts: dict[int, tuple] = {}  # position -> a held reading sent right after it
        tail = []
        for meter in list(st.held):
            at = int(np.searchsorted(meters, meter))
            if at < len(meters) and meters[at] == meter:
                inserts[at] = st.held.pop(meter)
        for e in fault_effects:
            at, fault = int(np.searchsorted(meters, e.meter)), e.value
            if fault.name == "duplicate":
                tail.append((e.meter, values[at], ts, "duplicate"))
            elif fault.name == "out_of_order":
                withheld.add(at)
                st.held[e.meter] = (e.meter, values[at], ts, "accepted")
            elif fault.name == "late":
                withheld.add(at)
                st.late[step + fault.delay_steps].append((e.meter, values[at], ts, "late"))
            else:
                tail.append((e.meter, faults.corrupt(fault, values[at], self.wall_clock_ms()),
                             ts, "dead_letter"))
        tail += st.late.pop(step, [])

        out = _Sequence(step)
        out.add(head)
        listed, done = meters.tolist(), 0
        for at in sorted(withheld | inserts.keys()):
            out.add_regular(listed[done:at], values[done:at], ts)
            if at not in withheld:
                out.add_regular(listed[at:at + 1], values[at:at + 1], ts)
            out.add([inserts[at]] if at in inserts else [])
            done = at + 1
        out.add_regular(listed[done:], values[done:], ts)
        out.add(tail)
        return out.batch


class _Sequence:
    """A batch under construction: regular readings in bulk, single records in between."""

    def __init__(self, step: int):
        self.batch = Batch(step, [], [], [], [])

    def add_regular(self, meters: list[int], values: list[bytes], ts: int) -> None:
        self.batch.meters.extend(meters)
        self.batch.values.extend(values)
        self.batch.ts.extend([ts] * len(meters))
        self.batch.outcomes.extend(["accepted"] * len(meters))

    def add(self, records: list[tuple]) -> None:
        for meter, value, ts, outcome in records:
            self.batch.meters.append(meter)
            self.batch.values.append(value)
            self.batch.ts.append(ts)
            self.batch.outcomes.append(outcome)


def iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat().replace("+00:00", "Z")
