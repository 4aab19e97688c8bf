"""Every knob of the simulator and its default, in one dataclass.

The command line (tools/simulate.py) is generated from these fields, so a default lives here
and nowhere else. Rates are expected counts per meter-day (per feeder-day for feeder outages):
a run injects round(rate x meter-days) of each kind, at least one when the rate is above zero,
so even a small fleet exercises every rule.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from jobs.config import REPO_ROOT
from tools.processes import STACK_DIR

SIM_DIR = STACK_DIR / "sim"
QUARTER_MS = 15 * 60_000


class SimulatorError(ValueError):
    """A problem the user can fix; the message is one line: the cause, then the fix."""


def _help(text: str) -> dict:
    return {"help": text}


@dataclass(frozen=True)
class Settings:
    mode: Literal["replay", "live"] = field(default="replay", metadata=_help(
        "replay: historic event time from --start, as fast as the sink takes it; live: event "
        "time is the wall clock"))
    meters: int = field(default=1000, metadata=_help("fleet size"))
    days: float = field(default=1.0, metadata=_help("simulated span (ZERO_CONSUMPTION needs 2)"))
    seed: int = field(default=7, metadata=_help("same seed and arguments, same output"))
    start: str = field(default="2026-01-01T00:00:00Z", metadata=_help(
        "replay: start of event time, RFC 3339 on a 15-minute boundary"))
    profile: Literal["en50160", "ansi"] = field(default="en50160", metadata=_help(
        "en50160: 230 V / 50 Hz; ansi: 120 V / 60 Hz (ANSI C84.1 Range A)"))
    rate: float = field(default=10_000.0, metadata=_help(
        "live: readings/s at which each interval's readings are sent, from the interval end"))
    share_30min: float = field(default=0.2, metadata=_help("share of meters on 30-min intervals"))
    share_commercial: float = field(default=0.12, metadata=_help("share of commercial meters"))
    share_generation: float = field(default=0.10, metadata=_help(
        "share of residential meters with solar generation"))
    id_prefix: str = field(default="", metadata=_help(
        "prefix of every meter, feeder and region id: several fleets in one stack"))
    share_rfc3339: float = field(default=0.05, metadata=_help(
        "share of meters sending ts as RFC 3339 local time with offset"))

    outage_rate: float = field(default=0.002, metadata=_help("OUTAGE per meter-day"))
    feeder_outage_rate: float = field(default=0.05, metadata=_help("FEEDER_OUTAGE per feeder-day"))
    voltage_sag_rate: float = field(default=0.002, metadata=_help("VOLTAGE_SAG per meter-day"))
    voltage_swell_rate: float = field(default=0.002, metadata=_help("VOLTAGE_SWELL per meter-day"))
    stale_rate: float = field(default=0.002, metadata=_help("STALE_METER per meter-day"))
    zero_consumption_rate: float = field(default=0.001, metadata=_help(
        "ZERO_CONSUMPTION per meter-day (needs --days >= 2)"))
    rollback_rate: float = field(default=0.001, metadata=_help(
        "REGISTER_ROLLBACK per meter-day"))
    reverse_flow_rate: float = field(default=0.0015, metadata=_help("REVERSE_FLOW per meter-day"))
    spike_rate: float = field(default=0.002, metadata=_help("CONSUMPTION_SPIKE per meter-day"))
    frequency_rate: float = field(default=0.001, metadata=_help(
        "FREQUENCY_EXCURSION per meter-day"))
    rollover_rate: float = field(default=0.001, metadata=_help(
        "legitimate register rollovers (control, no alert) per meter-day"))

    duplicate_rate: float = field(default=0.005, metadata=_help("re-sent readings per meter-day"))
    out_of_order_rate: float = field(default=0.002, metadata=_help(
        "readings swapped with the meter's next one, per meter-day"))
    late_rate: float = field(default=0.001, metadata=_help(
        "readings delivered 2+ hours of event time late, per meter-day"))
    clock_skew_rate: float = field(default=0.001, metadata=_help(
        "copies dated 1 day after the wall clock, per meter-day"))
    malformed_rate: float = field(default=0.001, metadata=_help(
        "truncated JSON copies per meter-day"))
    wrong_type_rate: float = field(default=0.0015, metadata=_help(
        "copies with a field of the wrong type, per meter-day"))
    missing_field_rate: float = field(default=0.0015, metadata=_help(
        "copies missing a required field, per meter-day"))

    config: Path = field(default=REPO_ROOT / "conf" / "local.yaml", metadata=_help(
        "job config: Kafka connection and the readings topic"))
    topic: str | None = field(default=None, metadata=_help(
        "Kafka topic (default: topics.readings.name of --config)"))
    out: Path | None = field(default=None, metadata=_help(
        "write {key, value} JSON lines to this file instead of Kafka"))
    registry: Path = field(default=SIM_DIR / "registry.csv", metadata=_help("meter registry CSV"))
    truth: Path = field(default=SIM_DIR / "truth.jsonl", metadata=_help("ground truth, JSON lines"))
    summary: Path = field(default=SIM_DIR / "summary.json", metadata=_help("counts, JSON"))

    @property
    def steps(self) -> int:
        """Number of 15-minute steps in the simulated span."""
        return round(self.days * 96)

    @property
    def meter_days(self) -> float:
        return self.meters * self.days

    def rates(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if f.name.endswith("_rate")}

    def clean(self) -> Settings:
        """The same fleet with no anomaly, fault or control injected."""
        return dataclasses.replace(self, **dict.fromkeys(self.rates(), 0.0))

    def start_ms(self) -> int:
        return parse_start(self.start)

    def validate(self) -> Settings:
        if self.meters < 1:
            raise SimulatorError(f"--meters {self.meters}: must be at least 1")
        if self.seed < 0:
            raise SimulatorError(f"--seed {self.seed}: must be >= 0")
        if not re.fullmatch(r"[A-Za-z0-9_.:-]{0,40}", self.id_prefix):
            raise SimulatorError(f"--id-prefix {self.id_prefix!r}: use up to 40 of "
                                 f"A-Z a-z 0-9 _ . : - (meter ids allow no others)")
        if self.steps < 1:
            raise SimulatorError(f"--days {self.days:g}: shorter than one 15-minute interval: "
                                 f"give at least 0.011")
        if self.rate <= 0:
            raise SimulatorError(f"--rate {self.rate:g}: must be > 0 readings/s")
        for name, value in self.rates().items():
            if value < 0:
                raise SimulatorError(f"--{name.replace('_', '-')} {value:g}: must be >= 0")
        for name in ("share_30min", "share_commercial", "share_generation", "share_rfc3339"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise SimulatorError(f"--{name.replace('_', '-')} {getattr(self, name):g}: must "
                                     f"be between 0 and 1")
        self.start_ms()
        return self


def parse_start(text: str) -> int:
    """Epoch ms of an RFC 3339 instant on a 15-minute boundary."""
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise SimulatorError(f"--start {text!r}: not an RFC 3339 instant: write it as "
                             f"2026-01-01T00:00:00Z") from None
    if moment.tzinfo is None:
        raise SimulatorError(f"--start {text!r}: no UTC offset: add Z or +hh:mm")
    ms = int(moment.astimezone(timezone.utc).timestamp() * 1000)
    if ms % QUARTER_MS:
        raise SimulatorError(f"--start {text!r}: not on a 15-minute boundary: meters report at "
                             f":00, :15, :30 and :45")
    return ms
