"""A plain-text progress bar on stderr: redrawn in place on a terminal, a line every
ten seconds otherwise (logs, CI)."""

from __future__ import annotations

import sys
import time
from datetime import datetime, timezone
from typing import TextIO

WIDTH = 24


class Progress:
    def __init__(self, total: int, stream: TextIO = sys.stderr):
        self.total = max(total, 1)
        self.stream = stream
        self.tty = stream.isatty()
        self.every = 0.5 if self.tty else 10.0
        self.started = self.shown = time.monotonic()
        self.done = 0

    def update(self, sent: int, event_ts_ms: int) -> None:
        self.done += sent
        now = time.monotonic()
        if now - self.shown >= self.every:
            self.shown = now
            self._draw(now, event_ts_ms)

    def rate(self) -> float:
        return self.done / max(time.monotonic() - self.started, 1e-9)

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\r\033[K")
            self.stream.flush()

    def _draw(self, now: float, event_ts_ms: int) -> None:
        share = min(self.done / self.total, 1.0)
        bar = "#" * round(share * WIDTH) + "." * (WIDTH - round(share * WIDTH))
        rate = self.done / max(now - self.started, 1e-9)
        left = (self.total - self.done) / rate if rate and share < 1 else 0
        at = datetime.fromtimestamp(event_ts_ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M")
        line = (f"[{bar}] {share:4.0%} {self.done:,}/{self.total:,} readings  {rate:,.0f}/s  "
                f"event time {at}Z  eta {int(left) // 60}m{int(left) % 60:02d}s")
        self.stream.write(f"\r{line}\033[K" if self.tty else line + "\n")
        self.stream.flush()
