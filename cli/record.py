"""``damon-bpf record``: DAMON snapshots with per-CPU/thread/write attribution, in damo's file format."""

from __future__ import annotations

import time

import click
from rich.console import Console
from rich.live import Live
from rich.text import Text

from cli.options import exit_with_target_status, monitor_config, monitor_options, recording_spec, region_options
from damon_bpf.dark import DarkWatch
from damon_bpf.priority import PRIORITIES
from damon_bpf.recorder import Recorder
from damon_bpf.monitor import Monitor
from damon_bpf.recordfile import RecordWriter


class StatusLine:
    """A one-line rich status on stderr while recording (only on a terminal)."""

    def __init__(self, recorder: Recorder, tracer) -> None:
        self.recorder, self.tracer = recorder, tracer
        self.console = Console(stderr=True)
        self.on_terminal = self.console.is_terminal   # asked once: rich looks it up afresh on every call
        self.live = Live(Text(""), console=self.console, refresh_per_second=4, transient=True)
        self.start = time.monotonic()
        self.next_update = 0.0
        self.events = 0

    def count(self, batch) -> None:
        self.events += len(batch)

    def tick(self, _now_ns: int) -> None:
        now = time.monotonic()
        if not self.on_terminal or now < self.next_update:
            return
        self.next_update = now + 0.25
        elapsed = now - self.start
        acc = self.tracer.accounting()
        regions = sum(s.last_regions for s in self.recorder.states())
        snapshots = sum(s.snapshots for s in self.recorder.states())
        self.live.update(Text(f"recording {elapsed:6.1f} s | {self.events / max(elapsed, 1e-9):9.0f} events/s | "
                              f"lost {acc.lost} | filtered {acc.filtered} | targets {len(self.recorder.states())} | "
                              f"regions {regions} | snapshots {snapshots}", style="bold"))


def collector_priority_option(func):
    return click.option("--collector-priority", type=click.Choice(PRIORITIES), default="rt", show_default=True,
                        help="Scheduling of the thread that drains the ring: rt (SCHED_RR 1), nice (-10) or "
                             "normal. Under a CPU-saturating target the collector must keep up or reports are "
                             "lost.")(func)


@click.command()
@monitor_options
@region_options
@collector_priority_option
@click.option("-o", "--output", default="damon.data", show_default=True, type=click.Path(dir_okay=False),
              help="Record file (zlib-compressed JSON in damo's schema, mode 0600).")
def record(output: str, **options) -> None:
    """Record DAMON snapshots of a process: -p PID, or -- COMMAND ARGS..."""
    config = monitor_config(options, recording_spec(options))
    writer = RecordWriter(output)
    monitor = Monitor(config, writer)
    recorder = monitor.recorder
    status = StatusLine(recorder, monitor.tracer)
    sampler = config.sampler.name if config.sampler.name != "none" else None

    def say(note: str) -> None:
        status.console.print(f"damon-bpf: note: {note}", soft_wrap=True, markup=False, highlight=False)

    recorder.listeners.append(DarkWatch(say, sampler).on_snapshot)
    result = monitor.run(status.count, status.tick, status.live)
    snapshots = sum(s.snapshots for s in recorder.states())
    click.echo(f"damon-bpf: {result.summary_line()}; {snapshots} snapshots of {len(recorder.states())} target(s), "
               f"written to {output}", err=True)
    click.echo(f"damon-bpf: {result.placement_line()}", err=True)
    for line in result.advice(monitor.priority.applied or "normal"):
        click.echo(f"damon-bpf: {line}", err=True)
    exit_with_target_status(result, config)
