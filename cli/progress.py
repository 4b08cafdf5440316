"""``record``'s start line and progress line on stderr, shown only when stderr is a terminal (a log or a pipe
gets the end-of-run lines alone) and not with --quiet."""

from __future__ import annotations

import logging
import os
import time

from rich.console import Console
from rich.live import Live
from rich.text import Text

from damon_bpf import log
from damon_bpf.recorder import Recorder

REFRESH_S = 0.25      # how often the progress line is redrawn
RATE_WINDOW_S = 1.0   # reports/s over about this much of the recent past


def _size(nbytes: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if nbytes < 1024 or unit == "GiB":
            return f"{nbytes:.0f} {unit}" if unit == "B" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    raise AssertionError("unreachable")


class Progress:
    """The line under a recording: elapsed time, reports/s, lost, filtered, targets, regions, snapshots, and
    the snapshots and size of the file on disk; redrawn every REFRESH_S, gone at the end (the end-of-run lines
    say it all)."""

    def __init__(self, recorder: Recorder, tracer, output: str | None) -> None:
        self.recorder, self.tracer, self.output = recorder, tracer, output
        self.console = Console(stderr=True)
        # asked once: rich looks it up afresh on every call; --quiet asks for the end-of-run lines only
        self.on_terminal = self.console.is_terminal and log.LOG.isEnabledFor(logging.INFO)
        self.live = Live(Text(""), console=self.console, refresh_per_second=1 / REFRESH_S, transient=True)
        self.start = time.monotonic()
        self.next_update = 0.0
        self.events = 0
        self.recent: list[tuple[float, int]] = []   # (when, events so far) over the last RATE_WINDOW_S

    @property
    def display(self) -> Live | None:
        """The rich display the run goes inside (it routes stderr above the line); none off a terminal."""
        return self.live if self.on_terminal else None

    def say_start(self, what: str) -> None:
        """The start line: what is recorded, how, and where to."""
        if self.on_terminal:
            self.console.print(f"damon-bpf: {what}", soft_wrap=True, markup=False, highlight=False)

    def count(self, batch) -> None:
        self.events += len(batch)

    def tick(self, _now_ns: int) -> None:
        now = time.monotonic()
        if not self.on_terminal or now < self.next_update:
            return
        self.next_update = now + REFRESH_S
        self.live.update(Text(self.line(now), style="bold"))

    def _rate(self, now: float) -> float:
        self.recent.append((now, self.events))
        while len(self.recent) > 2 and now - self.recent[1][0] >= RATE_WINDOW_S:
            self.recent.pop(0)
        (then, before) = self.recent[0]
        return (self.events - before) / (now - then) if now > then else 0.0

    def line(self, now: float) -> str:
        targets = self.recorder.states()
        acc = self.tracer.accounting()
        text = (f"recording {now - self.start:7.1f} s | {self._rate(now):9.0f} reports/s | lost {acc.lost} | "
                f"filtered {acc.filtered} | targets {len(targets)} | regions {sum(s.last_regions for s in targets)}"
                f" | snapshots {sum(s.snapshots for s in targets)}")
        writer = self.recorder.writer
        if writer is not None:
            try:
                size = _size(os.stat(writer.path).st_size)
            except OSError:
                size = "not yet written"
            text += f" | {self.output}: {writer.flushed_snapshots} snapshots, {size}"
        return text
