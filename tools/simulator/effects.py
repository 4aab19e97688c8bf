"""What the plan tells the step loop to do differently for one meter in one 15-minute step."""

from __future__ import annotations

from typing import NamedTuple

SILENT = "silent"        # no regular reading this step (meter off, or its link down)
SCALE = "scale"          # consumption x value this step (the meter was off part of it)
ENERGY = "energy"        # consumption this step is value Wh (a spike)
FREEZE = "freeze"        # the import register stops counting from this step on
VOLTAGE = "voltage"      # voltage is value x nominal
FREQUENCY = "frequency"  # frequency is value x nominal
STATUS = "status"        # value (a list of codes) rides on the regular reading
DROP = "drop"            # the import register steps down by value Wh
EXPORT = "export"        # the export register rises by value Wh
EVENT = "event"          # value is an Event: an extra reading inside this step
FAULT = "fault"          # value is a Fault applied to this step's regular reading
PRESET = "preset"        # the import register starts at value Wh (step 0 only)


class Effect(NamedTuple):
    meter: int
    kind: str
    value: object = None


class Event(NamedTuple):
    """A last gasp or a restoration message, sent at ts_ms (inside its step)."""

    ts_ms: int
    status: str
    powered: bool          # False: the last gasp, at 0 V
    after_consumption: bool  # the register includes this step's (scaled) consumption


class Fault(NamedTuple):
    name: str              # ground-truth type: duplicate, late, malformed_json ...
    variant: str | None = None
    delay_steps: int = 0   # late: delivered this many steps after its own
