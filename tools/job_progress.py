"""A bounded job run as a subprocess, with a progress line every few seconds: how far its
consumer group has read the readings topic (from the offsets it commits at each checkpoint).
Used by the commands that run a job over a preloaded topic for minutes (score_detection,
bench-aggregate, bench-detect's catch-up)."""

from __future__ import annotations

import subprocess
import tempfile
import time
from dataclasses import dataclass, field

from jobs.config import REPO_ROOT, JobConfig
from tools.live_traffic import Lag, stop_process_group

EVERY_S = 10.0


@dataclass
class JobRun:
    result: subprocess.CompletedProcess
    # (monotonic seconds, readings committed) at each poll while the job was reading
    samples: list[tuple[float, int]] = field(default_factory=list)

    def steady_rate(self) -> float | None:
        """Readings/s between the first and the last commit: the start-up of the MiniCluster
        and the Python workers left out (None if too few commits)."""
        first, last = (self.samples[0], self.samples[-1]) if self.samples else (None, None)
        if first is None or last[0] - first[0] < 2:
            return None
        return (last[1] - first[1]) / (last[0] - first[0])


def run_with_progress(command: list[str], config: JobConfig, topic: str, group: str,
                      label: str, every_s: float = EVERY_S,
                      env: dict[str, str] | None = None) -> JobRun:
    samples: list[tuple[float, int]] = []
    with tempfile.TemporaryFile("w+") as stdout, tempfile.TemporaryFile("w+") as stderr:
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=stdout, stderr=stderr,
                                   text=True, start_new_session=True, env=env)
        lag = Lag(config, topic, group)
        total = sum(lag.consumer.end_offsets(lag.partitions).values())
        started = time.monotonic()
        next_report = started + every_s
        try:
            while process.poll() is None:
                time.sleep(1.0)
                behind = lag()
                if behind is not None and 0 < total - behind < total:
                    samples.append((time.monotonic(), total - behind))
                if time.monotonic() >= next_report:
                    next_report += every_s
                    elapsed = time.monotonic() - started
                    done = "starting" if behind is None or behind == total else (
                        f"{total - behind:,} / {total:,} readings")
                    print(f"  {label}: {done} ({elapsed:.0f} s)", flush=True)
        finally:
            lag.close()
            if process.poll() is None:  # interrupted: the job goes too
                stop_process_group(process)
        stdout.seek(0)
        stderr.seek(0)
        return JobRun(subprocess.CompletedProcess(command, process.returncode, stdout.read(),
                                                  stderr.read()), samples)
