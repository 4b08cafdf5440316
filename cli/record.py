"""``damon-bpf record``: DAMON snapshots with per-CPU/thread/write attribution, in damo's file format."""

from __future__ import annotations

import click

from cli.options import (apply_options, apply_quota, exit_with_target_status, metrics_option, monitor_config,
                         monitor_options, numa_applier, recording_spec, region_options, serve_metrics,
                         verbosity_options, with_applier)
from cli.progress import Progress
from damon_bpf import log
from damon_bpf.dark import DarkWatch
from damon_bpf.priority import PRIORITIES
from damon_bpf.monitor import Monitor
from damon_bpf.recordfile import RecordWriter


def collector_priority_option(func):
    return click.option("--collector-priority", type=click.Choice(PRIORITIES), default="rt", show_default=True,
                        help="Scheduling of the thread that drains the ring: rt (SCHED_RR 1), nice (-10) or "
                             "normal. Under a CPU-saturating target the collector must keep up or reports are "
                             "lost.")(func)


@click.command()
@monitor_options
@verbosity_options
@region_options
@collector_priority_option
@apply_options
@metrics_option
@click.option("-o", "--output", default="damon.data", show_default=True, type=click.Path(dir_okay=False),
              help="Record file (zlib-compressed JSON in damo's schema, mode 0600).")
def record(output: str, **options) -> None:
    """Record DAMON snapshots of a process: -p PID, or -- COMMAND ARGS..."""
    config = monitor_config(options, recording_spec(options))
    quota = apply_quota(options)
    metrics = serve_metrics(options.pop("metrics_listen"), bool(config.targets.cgroups))
    writer = RecordWriter(output, columns=True)
    with writer.abandoned_on_error():
        monitor = Monitor(config, writer)
    if metrics is not None:
        metrics.attach(monitor)
    recorder = monitor.recorder
    assert recorder is not None   # a recording was configured
    applier = numa_applier(quota, recorder, metrics=metrics)
    progress = Progress(recorder, monitor.tracer, output)
    progress.say_start(f"recording {' '.join(config.targets.describe())} with source {monitor.tracer.source} "
                       f"into {output} (Ctrl-C ends it, the file complete)")
    sampler = config.sampler.name if config.sampler.name != "none" else None
    recorder.listeners.append(DarkWatch(lambda note: log.note(f"note: {note}"), sampler,
                                         kernel_view=config.source == "damon").on_snapshot)
    result = monitor.run(progress.count, with_applier(progress.tick, applier), progress.display)
    snapshots = sum(s.snapshots for s in recorder.states())
    log.result(f"{result.summary_line()}; {snapshots} snapshots of {len(recorder.states())} target(s), "
               f"written to {output}")
    log.result(result.placement_line())
    if applier is not None:
        applier.finish()
        log.result(applier.line())
    for line in result.advice(monitor.priority.applied or "normal"):
        log.warning(line)
    exit_with_target_status(result, config)
