"""``damon-bpf live``: a live terminal heatmap of a process, with per-CPU, per-thread and
read/write views; optionally recording at the same time."""

from __future__ import annotations

import contextlib

import click
from rich.console import Console

from cli.options import (apply_options, apply_quota, exit_with_target_status, metrics_option, monitor_config,
                         monitor_options, numa_applier, recording_spec, region_options, serve_metrics,
                         verbosity_options, with_applier)
from cli.record import collector_priority_option
from damon_bpf import log
from damon_bpf.dark import DarkWatch
from damon_bpf.live.app import LiveScreen, SnapshotPrinter
from damon_bpf.live.model import LiveModel
from damon_bpf.live.views import VIEW_NAMES
from damon_bpf.monitor import Monitor
from damon_bpf.recordfile import RecordWriter
from damon_bpf.reports.recent import RecentRecords


@click.command()
@monitor_options
@verbosity_options
@region_options
@collector_priority_option
@apply_options
@metrics_option
@click.option("-o", "--output", type=click.Path(dir_okay=False),
              help="Also record to this file (the same file as `record -o`).")
@click.option("--view", type=click.Choice(tuple(VIEW_NAMES)), default="all", show_default=True,
              help="The view to start with (keys a, c, t, w switch later).")
@click.option("--refresh-hz", type=click.FloatRange(0.2, 20), default=4.0, show_default=True,
              help="Redraw the screen at most this often.")
def live(output: str | None, view: str, refresh_hz: float, **options) -> None:
    """Watch a process's memory heat live: -p PID, or -- COMMAND ARGS...

    \b
    Keys: a all accesses, c by CPU, t by thread, w reads vs writes,
          d dirty rate per target, s threads sharing memory, m NUMA placement
          (each in the table's place, over the last minute; the key again: back),
          p pause the display (recording goes on), n next target, q quit.

    When the output is not a terminal, prints one line per aggregation snapshot instead.
    With NO_COLOR set, the heatmap uses plain characters instead of colours. A command's own
    output shares the terminal (the next refresh draws over it): --command-output FILE keeps the
    screen clean.
    """
    config = monitor_config(options, recording_spec(options))
    quota = apply_quota(options)
    metrics = serve_metrics(options.pop("metrics_listen"), bool(config.targets.cgroups))
    writer = RecordWriter(output) if output else None
    with writer.abandoned_on_error() if writer else contextlib.nullcontext():
        monitor = Monitor(config, writer)
    if metrics is not None:
        metrics.attach(monitor)
    recorder = monitor.recorder
    assert recorder is not None   # a recording was configured
    recent = RecentRecords.listening(recorder)   # the live aggregation the answer keys and --apply read
    applier = numa_applier(quota, recorder, recent, metrics)
    console = Console()
    display: LiveScreen | SnapshotPrinter
    if console.is_terminal and not console.is_dumb_terminal:
        model = LiveModel()
        display = LiveScreen(model, config.attrs, monitor.tracer, console, monitor.request_stop, VIEW_NAMES[view],
                             refresh_hz, output, placement=recorder.accounting, recent=recent)
        recorder.listeners.append(model.on_snapshot)
    else:
        display = SnapshotPrinter(recorder.start_ns, monitor.request_stop, comm_of=recent.comm)
        recorder.listeners.append(display.on_snapshot)
    notes: list[str] = []   # said after the screen is given back
    sampler = config.sampler.name if config.sampler.name != "none" else None
    recorder.listeners.append(DarkWatch(notes.append, sampler, kernel_view=config.source == "damon").on_snapshot)
    # the recorder's tick closes snapshots first; they reach the display through its listener
    result = monitor.run(on_tick=with_applier(display.on_tick, applier), display=display)
    snapshots = sum(s.snapshots for s in recorder.states())
    where = f", written to {output}" if output else ", not written (no -o)"
    log.result(f"{result.summary_line()}; {snapshots} snapshots of {len(recorder.states())} target(s){where}")
    log.result(result.placement_line())
    if applier is not None:
        applier.finish()
        log.result(applier.line())
    for note in notes:
        log.note(f"note: {note}")
    for line in result.advice(monitor.priority.applied or "normal"):
        log.warning(line)
    exit_with_target_status(result, config)
