"""Options shared by the commands that monitor a process (trace, record, live)."""

from __future__ import annotations

import contextlib
from typing import Callable

import click

from cli.types import Duration, RingMegabytes
from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.core.layout import LAYOUT_MODES
from damon_bpf.filters import build_filters
from damon_bpf.samplers import SAMPLER_NAMES, make_sampler, warn_stderr
from damon_bpf.samplers.numa_state import recover_stale
from damon_bpf.errors import DamonBpfError, UsageError
from damon_bpf.recorder import Recorder, run_meta
from damon_bpf.session import RunResult, Session
from damon_bpf.sources.host import SOURCE_ORDER
from damon_bpf.sources.kdamond import KernelDamon, stop_all_ours
from damon_bpf.sources.perf_mem import DEFAULT_SAMPLE_PERIOD, PerfMemTracer
from damon_bpf.sources.targets import Targets
from damon_bpf.sources.tracer import DEFAULT_RING_BYTES, Tracer

DEFAULT_SAMPLER_BUDGET_PCT = 10.0   # of one CPU; kdamond used 7% in the README's comparison

_OPTIONS = [
    click.option("-p", "--pid", "pids", type=int, multiple=True, help="Monitor this process (all its threads); repeatable."),
    click.option("--follow-children", is_flag=True, help="Add child processes as they fork."),
    click.option("--source", type=click.Choice(("auto",) + SOURCE_ORDER + ("perf-mem", "damon")),
                 default="auto", show_default=True,
                 help="Where access reports come from (see `damon-bpf probe`); perf-mem samples loads/stores with the "
                      "PMU (Intel PEBS, AMD IBS); damon (record/live) adds kernel DAMON's own view to the record, next "
                      "to the page-fault view of --source auto."),
    click.option("--sample-period", type=click.IntRange(1, 2**32), default=DEFAULT_SAMPLE_PERIOD, show_default=True,
                 help="perf-mem: one sample per this many loads/stores (IBS: ops, rounded to 16)."),
    click.option("--cpus", metavar="CPULIST", help="Keep only reports from these CPUs (e.g. 0-3,8)."),
    click.option("--tids", metavar="TIDS", help="Keep only reports from these threads (e.g. 1234,1240)."),
    click.option("--write-only", is_flag=True, help="Keep only writes."),
    click.option("--read-only", is_flag=True, help="Keep only reads."),
    click.option("--filter", "filter_specs", metavar="TYPE:MATCHING:ALLOW[:ARG]", multiple=True,
                 help="A DAMON sample filter (cpumask|threads|write), applied in order after the shorthands; repeatable."),
    click.option("--duration", type=Duration(), metavar="SECONDS",
                 help="Stop after this long (default: until Ctrl-C or the targets exit)."),
    click.option("--sampler", type=click.Choice(SAMPLER_NAMES), default="none", show_default=True,
                 help="Make steady-state accesses fault again: soft-dirty (writes; clear_refs every interval) or "
                      "numa-hint (reads and writes; the kernel's NUMA-balancing scanner, 2+ nodes)."),
    click.option("--sampler-us", type=click.IntRange(100, 2**40), metavar="US",
                 help="How often the sampler re-arms faults (default: --sample-us, or 5000)."),
    click.option("--sampler-budget", type=click.FloatRange(0, 100, min_open=True), metavar="PCT",
                 help="Most of one CPU the soft-dirty sampler may use (default 10); on a big target its interval "
                      "stretches to stay within it (100: no cap)."),
    click.option("--command-output", type=click.Path(dir_okay=False), metavar="FILE",
                 help="Send a started command's stdout and stderr to FILE (keeps live's screen clean)."),
    click.option("--ring-mb", type=RingMegabytes(), default=DEFAULT_RING_BYTES >> 20, show_default=True,
                 help="Ring buffer size; 64 MiB holds 1 s of reports at 1M events/s."),
    click.argument("command", nargs=-1, type=click.UNPROCESSED),
]


def monitor_options(func):
    """Decorate a command with the target, source and filter options."""
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


def sampler_budget(options: dict) -> float | None:
    """--sampler-budget as a fraction of one CPU (None: no cap); only soft-dirty's own thread has one."""
    pct = options.get("sampler_budget")
    if pct is not None and options.get("sampler") != "soft-dirty":
        raise UsageError("--sampler-budget caps the soft-dirty sampler only (numa-hint's scanning is the kernel's, "
                         "in the target's own context)")
    pct = DEFAULT_SAMPLER_BUDGET_PCT if pct is None else pct
    return None if pct >= 100 else pct / 100


def open_monitor(options: dict) -> tuple[Tracer, Targets]:
    """Check the cheap things first (filters, targets), then load the BPF program."""
    filters = build_filters(options["cpus"], options["tids"], options["write_only"], options["read_only"],
                            options["filter_specs"])
    targets = Targets(options["pids"], options["command"], options["follow_children"], options.get("command_output"))
    recover_stale(warn_stderr)   # NUMA-balancing settings a crashed numa-hint run left changed
    stop_all_ours(warn_stderr)   # a kdamond a killed --source damon run left on
    sample_us = options.get("sample_us") or MonitoringAttrs.sample_interval_us
    budget = sampler_budget(options)
    sampler = make_sampler(options.get("sampler") or "none", options.get("sampler_us") or sample_us,
                           options.get("aggr_us") or MonitoringAttrs.aggr_interval_us,
                           budget=budget)
    kernel_damon = None
    if options.get("source") == "damon":
        if "sample_us" not in options:
            raise UsageError("--source damon records kernel DAMON's regions: use it with record or live")
        kernel_damon = KernelDamon(monitoring_attrs(options))
    if options.get("source") == "perf-mem":
        tracer = PerfMemTracer(filters, options["follow_children"], options["ring_mb"] << 20,
                               options.get("sample_period") or DEFAULT_SAMPLE_PERIOD)
    else:
        fault_source = "auto" if kernel_damon else options["source"]
        tracer = Tracer(fault_source, filters, options["follow_children"], options["ring_mb"] << 20)
    # Session.run starts and closes these with the targets, on every exit path
    tracer.samplers = [s for s in (sampler, kernel_damon) if s is not None]
    return tracer, targets


def bind_record(tracer, writer) -> None:
    """Let companions that produce snapshots of their own (kernel DAMON) write into the record file."""
    if writer is not None:
        for companion in getattr(tracer, "samplers", ()):
            if hasattr(companion, "bind_writer"):
                companion.bind_writer(writer)


_REGION_OPTIONS = [
    click.option("--sample-us", type=int, default=MonitoringAttrs.sample_interval_us, show_default=True,
                 help="DAMON sample interval (microseconds)."),
    click.option("--aggr-us", type=int, default=MonitoringAttrs.aggr_interval_us, show_default=True,
                 help="DAMON aggregation interval (microseconds)."),
    click.option("--update-us", type=int, default=MonitoringAttrs.update_interval_us, show_default=True,
                 help="How often the target's memory layout is re-read (microseconds)."),
    click.option("--min-regions", type=int, default=MonitoringAttrs.min_nr_regions, show_default=True),
    click.option("--max-regions", type=int, default=MonitoringAttrs.max_nr_regions, show_default=True),
    click.option("--regions", type=click.Choice(LAYOUT_MODES), default="damon", show_default=True,
                 help="damon: DAMON's three regions (skips the two largest gaps); all-mappings: every mapping."),
    click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True, help="Seed of the random region splits."),
]


def region_options(func):
    """Decorate a command with DAMON's monitoring attributes."""
    for option in reversed(_REGION_OPTIONS):
        func = option(func)
    return func


def monitoring_attrs(options: dict) -> MonitoringAttrs:
    attrs = MonitoringAttrs(options["sample_us"], options["aggr_us"], options["update_us"], options["min_regions"],
                            options["max_regions"])
    attrs.validate()
    return attrs


def open_recording(options: dict, attrs: MonitoringAttrs, writer) -> tuple[Tracer, Targets, Recorder]:
    """The tracer, targets and DAMON recorder of `record` and `live` (``writer`` may be None)."""
    tracer, targets = open_monitor(options)
    bind_record(tracer, writer)   # --source damon: kernel DAMON's snapshots go to the same file
    command = list(options["command"]) or [f"-p {pid}" for pid in options["pids"]]
    recorder = Recorder(attrs, options["regions"], writer,
                        run_meta(tracer.source, tracer.filters, command, options["regions"]), seed=options["seed"])
    recorder.add_targets(targets.pids)
    return tracer, targets, recorder


def run_session(session: Session, on_batch, on_tick=None, display=None,
                finish: Callable[[RunResult | None], None] = lambda result: None) -> RunResult:
    """Run to the end; whatever happens, ``finish`` completes the output and the kernel side is unloaded."""
    result = None
    try:
        with display or contextlib.nullcontext():
            result = session.run(on_batch, on_tick)
    finally:
        try:
            finish(result)
        finally:
            session.tracer.close()
    return result


def check_target_lifetime(result: RunResult, options: dict) -> None:
    """A -p target that exits before --duration is an error the user should see (the output is complete)."""
    if result.reason == "targets-exited" and options["pids"] and options["duration"]:
        raise DamonBpfError(f"target process {', '.join(map(str, result.exited))} exited before --duration ran out; "
                            "everything up to then was written")
