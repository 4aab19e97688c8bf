"""Meter-fleet simulator with ground truth; `python -m tools.simulate` is its command line,
`simulation.Simulation` its library form (records in send order and the truth, no Kafka).

How a run is built, in the order data flows:

    settings.py      every knob and its default (the command line is generated from it)
    profiles.py      EN 50160 (230 V / 50 Hz) and ANSI C84.1 (120 V / 60 Hz)
    fleet.py         regions, feeders of 50-400 meters, customers; the registry CSV
    load_shapes.py   daily and weekly load, solar output, bounded noise
    measurements.py  voltage, current, power factor and frequency at each interval's end
    plan.py          the step timeline and a per-meter calendar that keeps injections apart
    anomalies.py     DESIGN's detection table, injected clear-cut; rollover controls
    faults.py        duplicates, out-of-order, late and dead-letter records
    simulation.py    the step loop: every meter at once per 15-minute step
    encoding.py      JSON payloads;  truth.py  truth.jsonl and summary.json
    kafka_writer.py, file_writer.py, pacing.py (live mode), progress.py

Ground truth (truth.jsonl, one object per injection, in start_ts order). start_ts is the event
time at which the expected alert opens, end_ts the event time of the reading that clears it:

    OUTAGE               last gasp (POWER_FAIL, 0 V) .. POWER_RESTORED; silent 1-6 intervals
    FEEDER_OUTAGE        first .. last member's message; `meters` lists the members (>= 60%
                         of the feeder, >= 3, last gasps within 20 s); no OUTAGE entries for them
    VOLTAGE_SAG/_SWELL   first reading outside the band .. first back inside
    STALE_METER          last reading + 3 intervals .. the reading that resumes (silent 4-8)
    ZERO_CONSUMPTION     frozen_since_ts + 24 h .. None (frozen to the end of the span)
    REGISTER_ROLLBACK    the reading that steps down .. the next one
    REVERSE_FLOW         export rising on a meter without generation, or a TAMPER /
                         REVERSE_FLOW status .. the next normal reading
    CONSUMPTION_SPIKE    the interval's reading .. the next one; MINOR 8-15x typical below
                         the service limit, MAJOR 1.5-2.5x the limit
    FREQUENCY_EXCURSION  first reading beyond +-1.6% .. first back inside
    control REGISTER_ROLLOVER   a wrap at register_max_kwh; expected: no alert
    faults               start_ts = end_ts = the reading's own event time; expected_outcome
                         duplicate | late | none (out_of_order) | dead_letter with the
                         validator's reason prefix in expected_reason

Assumptions about the pipeline: the robust z-score history spans at least a day (see
load_shapes.py); duplicates are recognised by meter and ts within the same interval's batch;
an out-of-order reading (15-minute meters only) is 15 minutes of event time behind the stream,
inside the aggregate job's allowed lateness of 30 minutes; a late one is 2 h 15 min - 3 h
behind, beyond it.
"""
