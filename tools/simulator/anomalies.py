"""Anomalies of DESIGN's detection table, injected clear-cut, each with its ground truth.

Every level sits far from the thresholds (a MAJOR sag halfway between the band and the
severe level, a spike 8-15x the meter's typical interval), so detection is unambiguous.
Severities and variants alternate, so two injections of a type already cover both.
"""

from __future__ import annotations

import math

import numpy as np

from tools.simulator import truth
from tools.simulator.effects import (
    DROP,
    ENERGY,
    EVENT,
    EXPORT,
    FREEZE,
    FREQUENCY,
    PRESET,
    SCALE,
    SILENT,
    STATUS,
    VOLTAGE,
    Effect,
    Event,
)
from tools.simulator.load_shapes import expected_load_wh
from tools.simulator.plan import MARGIN_STEPS, Placement, Planner
from tools.simulator.profiles import PROFILES, SEVERE_HIGH, SEVERE_LOW
from tools.simulator.settings import QUARTER_MS

HOUR_MS = 3_600_000
STALE_AFTER_INTERVALS = 3         # DESIGN: no reading for 3 expected intervals
ZERO_ALERT_MS = 24 * HOUR_MS      # DESIGN: zero import delta for 24 h
ZERO_MIN_MS = 26 * HOUR_MS        # frozen at least this long, so the alert surely opens
FEEDER_SHARE = (0.7, 1.0)         # share of a feeder's meters that lose power (rule: >= 50%)
CRITICAL_SAG, CRITICAL_SWELL = 0.78, 1.22
FREQUENCY_OFF = 0.016             # 49.2 / 50.8 Hz; the alert limit is +-1%
REVERSE_FLOW_VARIANTS = ("export_rise", "TAMPER", "REVERSE_FLOW")


def inject(p: Planner) -> None:
    s, fleet = p.settings, p.fleet
    everyone = np.arange(len(fleet))
    # Solar meters export and their import dips at noon: keep register and energy anomalies
    # on meters whose registers only the anomaly moves.
    consumers = np.flatnonzero(~fleet.generation)
    md = s.meter_days
    # Controls first: they hold their meter for the whole span.
    p.place(p.count(s.rollover_rate, md), consumers, lambda m, n: _rollover(p, m), margin=0)
    _feeder_outages(p, p.count(s.feeder_outage_rate, len(fleet.feeder_ids) * s.days))
    p.place(p.count(s.outage_rate, md), everyone, lambda m, n: _outage(p, m))
    for kind, rate in (("VOLTAGE_SAG", s.voltage_sag_rate),
                       ("VOLTAGE_SWELL", s.voltage_swell_rate)):
        p.place(p.count(rate, md), everyone, lambda m, n, kind=kind: _voltage(p, m, n, kind))
    p.place(p.count(s.stale_rate, md), everyone, lambda m, n: _stale(p, m))
    p.place(p.count(s.zero_consumption_rate, md), consumers, lambda m, n: _zero(p, m))
    p.place(p.count(s.rollback_rate, md), consumers, lambda m, n: _rollback(p, m))
    p.place(p.count(s.reverse_flow_rate, md), consumers, lambda m, n: _reverse_flow(p, m, n))
    p.place(p.count(s.spike_rate, md), consumers, lambda m, n: _spike(p, m, n))
    p.place(p.count(s.frequency_rate, md), everyone, lambda m, n: _frequency(p, m, n))


def _second_in_step(p: Planner) -> int:
    """An offset into a step, in whole seconds and clear of both ends."""
    return int(p.rng.integers(60, 780)) * 1000


def _window(p: Planner, meter: int, length: int, first: int | None = None):
    """Reporting steps R of the meter and an index j with a reading before R[j] and `length`
    more after it, or (R, None)."""
    steps = p.reports(meter)
    j = p.pick(steps, p.warmup if first is None else first, p.timeline.steps - 1)
    if j is None or j < 1 or j + length >= len(steps):
        return steps, None
    return steps, j


def _power_cut(p: Planner, meter: int, fail_ts: int, restore_ts: int) -> list:
    """Effects of a meter losing power at fail_ts and regaining it at restore_ts: a last gasp,
    no regular readings while off, a restoration message; nothing consumed in between."""
    tl = p.timeline
    fail_step = (fail_ts - tl.start_ms) // QUARTER_MS
    restore_step = (restore_ts - tl.start_ms) // QUARTER_MS
    off_before = (fail_ts - tl.start(fail_step)) / QUARTER_MS
    on_after = 1 - (restore_ts - tl.start(restore_step)) / QUARTER_MS
    effects = [(fail_step, Effect(meter, SCALE, off_before)),
               (fail_step, Effect(meter, EVENT, Event(fail_ts, "POWER_FAIL", False, True))),
               (restore_step, Effect(meter, SCALE, on_after)),
               (restore_step, Effect(meter, EVENT,
                                     Event(restore_ts, "POWER_RESTORED", True, False)))]
    effects += [(s, Effect(meter, SCALE, 0.0)) for s in range(fail_step + 1, restore_step)]
    reports = p.reports(meter)
    effects += [(int(s), Effect(meter, SILENT)) for s in reports
                if fail_step <= s < restore_step]
    return effects


def _outage(p: Planner, meter: int) -> Placement | None:
    silent = int(p.rng.integers(1, 7))
    steps, j = _window(p, meter, silent)
    if j is None:
        return None
    tl, per = p.timeline, int(p.fleet.interval_min[meter]) // 15
    fail_step = int(steps[j]) - int(p.rng.integers(0, per))
    fail_ts = tl.start(fail_step) + _second_in_step(p)
    restore_ts = tl.start(int(steps[j + silent])) + _second_in_step(p)
    if not p.feeder_quiet(int(p.fleet.feeder[meter]), fail_ts, restore_ts):
        return None
    return Placement(int(steps[j - 1]), int(steps[j + silent]),
                     _power_cut(p, meter, fail_ts, restore_ts),
                     truth.anomaly(p.fleet, "OUTAGE", meter, fail_ts, restore_ts, "CRITICAL",
                                   silent_intervals=silent))


def _feeder_outages(p: Planner, count: int) -> None:
    fleet, tl = p.fleet, p.timeline
    members_of = fleet.feeder_members()
    feeders = [f for f, members in enumerate(members_of) if len(members) >= 3]
    first, last = max(p.warmup, 2), tl.steps - 4
    if not feeders or last - first < 2:
        return
    for _ in range(count):
        for _ in range(50):
            feeder = int(p.rng.choice(feeders))
            fail_step = int(p.rng.integers(first, last - 1))
            restore_step = min(fail_step + int(p.rng.integers(2, 25)), last)
            fail_ts = tl.start(fail_step) + _second_in_step(p)
            restore_ts = tl.start(restore_step) + _second_in_step(p)
            lo, hi = fail_step - 2, restore_step + 1
            everyone = members_of[feeder]
            free = [int(m) for m in everyone
                    if p.calendar.free(int(m), lo - MARGIN_STEPS, hi + MARGIN_STEPS)]
            size = max(3, math.ceil(p.rng.uniform(*FEEDER_SHARE) * len(everyone)))
            if len(free) < size or not p.feeder_quiet(feeder, fail_ts, restore_ts):
                continue
            members = sorted(int(m) for m in p.rng.choice(free, size, replace=False))
            # Every member's last gasp within 20 s, every restoration within 40 s.
            effects, fails, restores = [], [], []
            for meter in members:
                fails.append(fail_ts + int(p.rng.integers(0, 21)) * 1000)
                restores.append(restore_ts + int(p.rng.integers(0, 41)) * 1000)
                effects += _power_cut(p, meter, fails[-1], restores[-1])
            entry = truth.anomaly(fleet, "FEEDER_OUTAGE", None, min(fails), max(restores),
                                  "CRITICAL", feeder=feeder, meters=members,
                                  feeder_meters=len(everyone))
            p.add(Placement(lo, hi, effects, entry), members, MARGIN_STEPS)
            break


def _voltage(p: Planner, meter: int, nth: int, kind: str) -> Placement | None:
    readings = int(p.rng.integers(2, 5))
    steps, j = _window(p, meter, readings)
    if j is None:
        return None
    profile = PROFILES[p.settings.profile]
    critical = nth % 2 == 1
    if kind == "VOLTAGE_SAG":
        level = CRITICAL_SAG if critical else (SEVERE_LOW + profile.band_low) / 2
    else:
        level = CRITICAL_SWELL if critical else (SEVERE_HIGH + profile.band_high) / 2
    effects = [(int(s), Effect(meter, VOLTAGE, level * (1 + p.rng.uniform(-0.004, 0.004))))
               for s in steps[j:j + readings]]
    tl = p.timeline
    return Placement(int(steps[j - 1]), int(steps[j + readings]), effects,
                     truth.anomaly(p.fleet, kind, meter, tl.end(steps[j]),
                                   tl.end(steps[j + readings]),
                                   "CRITICAL" if critical else "MAJOR", readings=readings,
                                   voltage_v=round(level * profile.nominal_v, 1)))


def _stale(p: Planner, meter: int) -> Placement | None:
    silent = int(p.rng.integers(4, 9))
    steps, j = _window(p, meter, silent)
    if j is None:
        return None
    tl = p.timeline
    last_ts = tl.end(steps[j - 1])
    return Placement(int(steps[j - 1]), int(steps[j + silent]),
                     [(int(s), Effect(meter, SILENT)) for s in steps[j:j + silent]],
                     truth.anomaly(p.fleet, "STALE_METER", meter,
                                   last_ts + STALE_AFTER_INTERVALS * p.fleet.interval_ms(meter),
                                   tl.end(steps[j + silent]), "MINOR", last_reading_ts=last_ts,
                                   silent_intervals=silent))


def _zero(p: Planner, meter: int) -> Placement | None:
    """Frozen until the end of the span: a register that thaws after a day of zeros would
    face a MAD of 0 and look like a spike, which is not this entry's alert."""
    tl = p.timeline
    steps = p.reports(meter)
    last = (tl.end(tl.steps - 1) - ZERO_MIN_MS - tl.start_ms) // QUARTER_MS - 1
    j = p.pick(steps, p.warmup, last)
    if j is None or j < 1:
        return None
    since = tl.end(steps[j])
    return Placement(int(steps[j - 1]), tl.steps - 1,
                     [(int(steps[j]) + 1, Effect(meter, FREEZE))],
                     truth.anomaly(p.fleet, "ZERO_CONSUMPTION", meter, since + ZERO_ALERT_MS,
                                   None, "MINOR", frozen_since_ts=since))


def _rollback(p: Planner, meter: int) -> Placement | None:
    steps, j = _window(p, meter, 1)
    if j is None:
        return None
    typical_kwh = p.fleet.mean_kw[meter] * p.fleet.interval_min[meter] / 60
    # Tens of kWh below the last reading, whatever the meter's own interval consumption.
    drop_kwh = round(p.rng.uniform(20, 80) + 3 * typical_kwh, 3)
    tl = p.timeline
    return Placement(int(steps[j - 1]), int(steps[j + 1]),
                     [(int(steps[j]), Effect(meter, DROP, int(drop_kwh * 1000)))],
                     truth.anomaly(p.fleet, "REGISTER_ROLLBACK", meter, tl.end(steps[j]),
                                   tl.end(steps[j + 1]), "MAJOR", drop_kwh=drop_kwh))


def _reverse_flow(p: Planner, meter: int, nth: int) -> Placement | None:
    variant = REVERSE_FLOW_VARIANTS[nth % len(REVERSE_FLOW_VARIANTS)]
    readings = int(p.rng.integers(2, 4)) if variant == "export_rise" else 1
    steps, j = _window(p, meter, readings)
    if j is None:
        return None
    if variant == "export_rise":
        effects = [(int(s), Effect(meter, EXPORT, int(p.rng.integers(300, 1500))))
                   for s in steps[j:j + readings]]
    else:
        effects = [(int(steps[j]), Effect(meter, STATUS, [variant]))]
    tl = p.timeline
    return Placement(int(steps[j - 1]), int(steps[j + readings]), effects,
                     truth.anomaly(p.fleet, "REVERSE_FLOW", meter, tl.end(steps[j]),
                                   tl.end(steps[j + readings]), "MAJOR", variant=variant,
                                   readings=readings))


def _spike(p: Planner, meter: int, nth: int) -> Placement | None:
    fleet, tl = p.fleet, p.timeline
    hours = fleet.interval_min[meter] / 60
    typical_kwh = fleet.mean_kw[meter] * hours
    limit_kwh = fleet.limit_kw[meter] * hours
    above_limit = nth % 2 == 1
    if above_limit:
        kwh, first = p.rng.uniform(1.5, 2.5) * limit_kwh, None
    else:
        # Below the limit with room to spare; and after a day of history (half the span if
        # shorter) so the trailing median and MAD exist.
        factor = min(p.rng.uniform(8, 15), 0.6 * limit_kwh / typical_kwh)
        if factor < 8:
            return None
        kwh, first = factor * typical_kwh, max(p.warmup, min(96, tl.steps // 2))
    steps, j = _window(p, meter, 1, first)
    if j is None:
        return None
    per = int(fleet.interval_min[meter]) // 15
    end = int(steps[j])
    effects = [(s, Effect(meter, ENERGY, kwh * 1000 / per)) for s in range(end - per + 1, end + 1)]
    return Placement(int(steps[j - 1]), int(steps[j + 1]), effects,
                     truth.anomaly(fleet, "CONSUMPTION_SPIKE", meter, tl.end(end),
                                   tl.end(steps[j + 1]), "MAJOR" if above_limit else "MINOR",
                                   interval_kwh=round(kwh, 3), typical_kwh=round(typical_kwh, 3),
                                   limit_kwh=round(limit_kwh, 3)))


def _frequency(p: Planner, meter: int, nth: int) -> Placement | None:
    readings = int(p.rng.integers(1, 4))
    steps, j = _window(p, meter, readings)
    if j is None:
        return None
    level = 1 + FREQUENCY_OFF if nth % 2 else 1 - FREQUENCY_OFF
    effects = [(int(s), Effect(meter, FREQUENCY, level + p.rng.uniform(-0.001, 0.001)))
               for s in steps[j:j + readings]]
    tl = p.timeline
    return Placement(int(steps[j - 1]), int(steps[j + readings]), effects,
                     truth.anomaly(p.fleet, "FREQUENCY_EXCURSION", meter, tl.end(steps[j]),
                                   tl.end(steps[j + readings]), "MAJOR", readings=readings,
                                   frequency_hz=round(level * p.fleet.nominal_hz, 2)))


def _rollover(p: Planner, meter: int) -> Placement | None:
    """A control: the register starts just short of its maximum and wraps to 0 about halfway
    through the span. Its ground truth is written when the wrap is reported."""
    tl = p.timeline
    if tl.steps < 8:
        return None
    wrap_step = int(p.rng.integers(tl.steps // 4, 3 * tl.steps // 4 + 1))
    headroom = expected_load_wh(p.fleet, meter, tl.start_ms, wrap_step)
    start_wh = int(p.fleet.register_max_wh[meter] - headroom)
    return Placement(0, tl.steps - 1, [(0, Effect(meter, PRESET, start_wh))], None)
