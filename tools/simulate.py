"""Simulate a smart-meter fleet with ground truth: readings into Kafka (or a file), the meter
registry as CSV, and one ground-truth entry per injected anomaly, data fault and control.

    python -m tools.simulate --mode replay --meters 1000 --days 2 --seed 7
    python -m tools.simulate --meters 200 --days 2 --out .stack/sim/readings.jsonl
    python -m tools.simulate --mode live --meters 5000 --rate 2000

replay: event time runs from --start for --days, meters interleaved in event-time order, as
fast as the sink takes it. The same arguments give byte-identical records and truth, except
the ts inside clock-skew copies: one day after the wall clock when they are built.
live: event time is the wall clock (--start is ignored); tools/simulator/pacing.py says how
meters, --rate and the clock relate. Rates are expected injections per meter-day (--help shows
each default); --clean sets them all to 0. tools/simulator/__init__.py describes the truth.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
import time
import typing
from pathlib import Path

from jobs.config import ConfigError, load_config
from tools.simulator.file_writer import FileWriter
from tools.simulator.fleet import write_registry
from tools.simulator.pacing import Pacer, check_rate
from tools.simulator.progress import Progress
from tools.simulator.settings import Settings, SimulatorError
from tools.simulator.simulation import Simulation, iso
from tools.simulator.truth import write_summary, write_truth

METAVARS = {int: "N", float: "X", str: "TEXT", Path: "PATH"}
PLURAL = {"anomaly": "anomalies", "fault": "faults", "control": "controls"}
LIVE_LINGER_MS = 5  # live mode: a last gasp must not wait for a batch to fill


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.simulate",
                                     description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    hints = typing.get_type_hints(Settings)
    for field in dataclasses.fields(Settings):
        kind = hints[field.name]
        options = [a for a in typing.get_args(kind) if a is not type(None)]
        flag = "--" + field.name.replace("_", "-")
        if typing.get_origin(kind) is typing.Literal:
            parser.add_argument(flag, choices=typing.get_args(kind), default=field.default,
                                help=field.metadata["help"])
        else:
            convert = options[0] if options else kind
            parser.add_argument(flag, type=convert, default=field.default,
                                metavar=METAVARS[convert], help=field.metadata["help"])
    parser.add_argument("--clean", action="store_true",
                        help="no anomalies, faults or controls: a fleet that raises no alert")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    clean = args.pop("clean")
    settings = Settings(**args)
    if clean:
        settings = settings.clean()
    try:
        return run(settings.validate())
    except (SimulatorError, ConfigError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def run(settings: Settings) -> int:
    from kafka.errors import KafkaError

    live = settings.mode == "live"
    if live:
        check_rate(settings.meters, settings.rate)
    sim = Simulation(settings)
    writer, target = open_writer(settings, sim, live)
    write_registry(sim.fleet, settings.registry)
    progress = Progress(sim.expected_records())
    pacer = Pacer(settings.rate) if live else None
    # kafka-python allocates several objects per record; with the default thresholds the
    # cyclic collector runs every few hundred sends over the whole fleet's objects, which cost
    # a fifth of the throughput. The fleet and plan never become garbage: freeze them.
    gc.freeze()
    gc.set_threshold(100_000, 50, 100)
    reached, complete, started = sim.timeline.start_ms, False, time.monotonic()
    try:
        for batch in sim.batches():
            if pacer is None:
                writer.write(batch.meters, batch.values)
                progress.update(len(batch.values), sim.timeline.end(batch.step))
            else:
                for start, stop in pacer.slices(batch):
                    writer.write(batch.meters[start:stop], batch.values[start:stop])
                    progress.update(stop - start, batch.ts[start])
            reached = sim.timeline.end(batch.step)
        complete = True
        writer.close()
    except KafkaError as err:
        raise SimulatorError(f"Kafka failed while sending ({type(err).__name__}: {err}): check "
                             f"the broker with `make status`") from None
    except KeyboardInterrupt:
        writer.close()
        progress.finish()
        print(f"interrupted: truth and summary cover event time up to {iso(reached)}",
              file=sys.stderr)
    progress.finish()
    elapsed = time.monotonic() - started
    until = None if complete else reached
    write_truth(sim.truth(until), settings.truth)
    summary = sim.summary(until)
    write_summary(summary, settings.summary)
    print(summary_line(summary, target, elapsed, settings.truth))
    return 0 if complete else 130


def open_writer(settings: Settings, sim: Simulation, live: bool):
    if settings.out is not None:
        return FileWriter(settings.out, sim.fleet.ids), str(settings.out)
    from tools.simulator.kafka_writer import KafkaWriter

    config = load_config(settings.config)
    topic = settings.topic or config.topics.readings.name
    writer = KafkaWriter(config, str(settings.config), topic, sim.fleet.keys,
                         linger_ms=LIVE_LINGER_MS if live else 50)
    return writer, f"topic {topic}"


def summary_line(summary: dict, target: str, elapsed: float, truth_path: Path) -> str:
    outcomes = ", ".join(f"{k} {v:,}" for k, v in summary["records_by_outcome"].items())
    injected = ", ".join(f"{sum(types.values()):,} {PLURAL[kind]}"
                         for kind, types in summary["truth"].items())
    total = summary["records"]
    return (f"simulate: {total:,} records to {target} in {elapsed:.1f}s "
            f"({total / max(elapsed, 1e-9):,.0f}/s); {outcomes}; injected: {injected or 'none'}; "
            f"truth in {truth_path}")


if __name__ == "__main__":
    sys.exit(main())
