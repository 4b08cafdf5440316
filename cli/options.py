"""Options shared by the commands that monitor a process (trace, record, live)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Callable

import click

from cli.types import Duration, Microseconds, RingMegabytes, parse_rate
from damon_bpf import log
from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.core.layout import LAYOUT_MODES
from damon_bpf.metrics import parse_listen
from damon_bpf.monitor import FilterSpec, MonitorConfig, RecordingSpec, SamplerSpec, TargetSpec
from damon_bpf.recorder import Recorder
from damon_bpf.reports.numa_live import NumaApplier
from damon_bpf.reports.recent import RecentRecords
from damon_bpf.samplers import SAMPLER_NAMES
from damon_bpf.session import RunResult
from damon_bpf.sources.host import SOURCE_ORDER
from damon_bpf.sources.kdamond_paddr import DAMON_OPS
from damon_bpf.sources.perf_mem import DEFAULT_SAMPLE_PERIOD
from damon_bpf.sources.tracer import DEFAULT_RING_BYTES

if TYPE_CHECKING:
    from damon_bpf.metrics import MetricsExporter

_OPTIONS = [
    click.option("-p", "--pid", "pids", type=int, multiple=True,
                 help="Monitor this process (all its threads); repeatable."),
    click.option("--cgroup", "cgroups", metavar="PATH", multiple=True,
                 help="Monitor every process of this cgroup v2 and its descendant cgroups (a container, a systemd "
                      "service), those that join later too: a directory under /sys/fs/cgroup or a path relative "
                      "to it (system.slice/cron.service); repeatable."),
    click.option("--follow-children", is_flag=True, help="Add child processes as they fork."),
    click.option("--source", type=click.Choice(("auto",) + SOURCE_ORDER + ("perf-mem", "damon")),
                 default="auto", show_default=True,
                 help="Where access reports come from (see `damon-bpf probe`); perf-mem samples loads/stores with the "
                      "PMU (Intel PEBS, AMD IBS); damon (record/live) adds kernel DAMON's own view to the record, next "
                      "to the page-fault view of --source auto."),
    click.option("--damon-ops", type=click.Choice(DAMON_OPS), default="auto", show_default=True,
                 help="With --source damon: kernel DAMON's operations, vaddr (the target's page tables) or paddr "
                      "(the frames backing it, mapped back through pagemap); auto: vaddr where the kernel has it."),
    click.option("--sample-period", type=click.IntRange(1, 2**32), default=DEFAULT_SAMPLE_PERIOD, show_default=True,
                 help="perf-mem: one sample per this many loads/stores (IBS: ops, rounded to 16)."),
    click.option("--cpus", metavar="CPULIST", help="Keep only reports from these CPUs (e.g. 0-3,8)."),
    click.option("--tids", metavar="TIDS", help="Keep only reports from these threads (e.g. 1234,1240)."),
    click.option("--write-only", is_flag=True, help="Keep only writes."),
    click.option("--read-only", is_flag=True, help="Keep only reads."),
    click.option("--filter", "filter_specs", metavar="TYPE:MATCHING:ALLOW[:ARG]", multiple=True,
                 help="A DAMON sample filter (cpumask|threads|write), applied in order after the shorthands; "
                      "repeatable."),
    click.option("--duration", type=Duration(), metavar="TIME",
                 help="Stop after this long: 30 (seconds), 500ms, 2m (default: until Ctrl-C or the targets exit)."),
    click.option("--sampler", type=click.Choice(SAMPLER_NAMES), default="none", show_default=True,
                 help="Make steady-state accesses fault again: soft-dirty (writes; clear_refs every interval) or "
                      "numa-hint (reads and writes; the kernel's NUMA-balancing scanner; on one node only "
                      "multi-threaded targets that keep running)."),
    click.option("--sampler-us", type=Microseconds(100, 2**40), metavar="TIME",
                 help="How often the sampler re-arms faults: microseconds, or 5ms (default: --sample-us, or 5000)."),
    click.option("--sampler-budget", type=click.FloatRange(0, 100, min_open=True), metavar="PCT",
                 help="Most of one CPU the soft-dirty sampler may use (default 10); on a big target its interval "
                      "stretches to stay within it (100: no cap)."),
    click.option("--command-output", type=click.Path(dir_okay=False), metavar="FILE",
                 help="Send a started command's stdout and stderr to FILE (keeps live's screen clean)."),
    click.option("--ring-mb", type=RingMegabytes(), default=DEFAULT_RING_BYTES >> 20, show_default=True,
                 metavar="SIZE", help="Ring buffer size: MiB, or 1GiB; 64 MiB holds 1 s of reports at 1M events/s."),
    click.argument("command", nargs=-1, type=click.UNPROCESSED),
]


def monitor_options(func):
    """Decorate a command with the target, source and filter options."""
    for option in reversed(_OPTIONS):
        func = option(func)
    return func


def monitor_config(options: dict, recording: RecordingSpec | None = None) -> MonitorConfig:
    """The typed configuration of the monitor the options describe (``recording``: record and live)."""
    return MonitorConfig(
        TargetSpec(tuple(options["pids"]), tuple(options["command"]), options["follow_children"],
                   options.get("command_output"), cgroups=tuple(options.get("cgroups") or ())),
        options["source"],
        FilterSpec(options["cpus"], options["tids"], options["write_only"], options["read_only"],
                   tuple(options["filter_specs"])),
        SamplerSpec(options.get("sampler") or "none", options.get("sampler_us"), options.get("sampler_budget")),
        options["ring_mb"] << 20, options.get("sample_period") or DEFAULT_SAMPLE_PERIOD, options["duration"],
        recording, options.get("collector_priority") or "normal", damon_ops=options.get("damon_ops") or "auto")


_REGION_OPTIONS = [
    click.option("--sample-us", type=Microseconds(), metavar="TIME",
                 default=MonitoringAttrs.sample_interval_us, show_default=True,
                 help="DAMON sample interval: microseconds, or 5ms, 2s."),
    click.option("--aggr-us", type=Microseconds(), metavar="TIME",
                 default=MonitoringAttrs.aggr_interval_us, show_default=True,
                 help="DAMON aggregation interval: microseconds, or 5ms, 2s."),
    click.option("--update-us", type=Microseconds(), metavar="TIME",
                 default=MonitoringAttrs.update_interval_us, show_default=True,
                 help="How often the target's memory layout is re-read: microseconds, or 5ms, 2s."),
    click.option("--min-regions", type=int, default=MonitoringAttrs.min_nr_regions, show_default=True),
    click.option("--max-regions", type=int, default=MonitoringAttrs.max_nr_regions, show_default=True),
    click.option("--regions", type=click.Choice(LAYOUT_MODES), default="damon", show_default=True,
                 help="damon: DAMON's three regions (skips the two largest gaps); all-mappings: every mapping."),
    click.option("--seed", type=click.IntRange(0, 2**63 - 1), default=0, show_default=True,
                 help="Seed of the random region splits."),
]


def region_options(func):
    """Decorate a command with DAMON's monitoring attributes."""
    for option in reversed(_REGION_OPTIONS):
        func = option(func)
    return func


def apply_options(func):
    """Decorate record and live with NUMA placement acted on during the run (report numa --apply's quota)."""
    func = click.option("--quota", default="256MiB/s", show_default=True, metavar="RATE",
                        help="With --apply: at most this many bytes moved per second.")(func)
    return click.option("--apply", "do_apply", is_flag=True,
                        help="Move regions worth moving to the NUMA node that accesses them (move_pages), every "
                             "2 s as report numa --apply decides; the end says what moved and what turned local.")(func)


def apply_quota(options: dict) -> float | None:
    """--apply's quota in bytes per second (None without --apply), checked before anything starts."""
    quota = parse_rate(options["quota"], "--quota")
    return quota if options["do_apply"] else None


def numa_applier(quota: float | None, recorder: Recorder, recent: RecentRecords | None = None,
                 metrics: MetricsExporter | None = None) -> NumaApplier | None:
    """With --apply: the applier, fed by ``recorder``'s snapshots (through ``recent``, made when not given);
    ``metrics`` (--metrics-listen) then serves the bytes it moves."""
    if quota is None:
        return None
    if recent is None:
        recent = RecentRecords.listening(recorder)
    applier = NumaApplier(recent, quota)
    recorder.listeners.append(applier.on_snapshot)
    if metrics is not None:
        metrics.follow_moves(applier)
    return applier


def with_applier(on_tick: Callable[[int], None], applier: NumaApplier | None) -> Callable[[int], None]:
    """``on_tick``, then --apply's round when one is due."""
    if applier is None:
        return on_tick

    def tick(now_ns: int) -> None:
        on_tick(now_ns)
        applier.on_tick(now_ns)

    return tick


def recording_spec(options: dict) -> RecordingSpec:
    """DAMON's attributes (checked here, before any output file is opened), regions mode and seed."""
    attrs = MonitoringAttrs(options["sample_us"], options["aggr_us"], options["update_us"], options["min_regions"],
                            options["max_regions"])
    attrs.validate()
    return RecordingSpec(attrs, options["regions"], options["seed"])


def exit_with_target_status(result: RunResult, config: MonitorConfig) -> None:
    """End like perf: with the launched command's status (RunResult.command_status); a -p target that
    exited before --duration is told in a note, not an error (everything up to then was written)."""
    if result.reason == "targets-exited" and config.targets.cgroups and config.duration_s:
        log.note(f"note: cgroup {', '.join(config.targets.cgroups)} was removed before --duration ran out")
    elif result.reason == "targets-exited" and config.targets.pids and config.duration_s:
        log.note(f"note: target process {', '.join(map(str, result.exited))} exited before --duration ran out")
    status = result.command_status()
    if status:
        sys.exit(status)


def _set_verbosity(ctx: click.Context, param: click.Parameter, value: bool) -> None:
    if not value:   # neither given (so far): the default, also when one process runs several commands (tests)
        if "damon_bpf.verbosity" not in ctx.meta:
            log.set_verbosity(log.NORMAL)
        return
    if ctx.meta.setdefault("damon_bpf.verbosity", param.name) != param.name:
        raise click.UsageError("--quiet and --verbose contradict each other: give one")
    log.set_verbosity(log.QUIET if param.name == "quiet" else log.VERBOSE)


def verbosity_options(func):
    """-q/--quiet and -v/--verbose (damon_bpf.log), applied before anything else runs."""
    func = click.option("-v", "--verbose", is_flag=True, expose_value=False, is_eager=True, callback=_set_verbosity,
                        help="Also say the details: headers tree, source chosen and why, sampler state, layout "
                             "re-reads.")(func)
    return click.option("-q", "--quiet", is_flag=True, expose_value=False, is_eager=True, callback=_set_verbosity,
                        help="Say only errors, warnings and the end-of-run accounting (loss is never hidden).")(func)


def _check_listen(_ctx, _param, value: str | None) -> str | None:
    if value is not None:
        try:
            parse_listen(value)
        except ValueError as err:
            raise click.BadParameter(str(err)) from None
    return value


metrics_option = click.option(
    "--metrics-listen", metavar="HOST:PORT", callback=_check_listen,
    help="Serve Prometheus metrics at http://HOST:PORT/metrics while running (e.g. 127.0.0.1:9101, :9101).")


def serve_metrics(listen: str | None, cgroups: bool = False) -> MetricsExporter | None:
    """Start serving /metrics (before the monitor is built: a busy port fails first); the caller attaches the
    monitor to the exporter. With ``cgroups`` (--cgroup targets) every target series has a ``cgroup`` label."""
    if not listen:
        return None
    from damon_bpf.metrics import MetricsExporter, MetricsServer   # only when asked: ~0.3 s of imports

    exporter = MetricsExporter(cgroup_of=(lambda pid: _cgroup_of(exporter, pid)) if cgroups else None)
    MetricsServer(listen, exporter)
    return exporter


def _cgroup_of(exporter: MetricsExporter, pid: int) -> str:
    """The cgroup a target was found in (Targets.info), as the record names it."""
    targets = exporter.monitor.targets if exporter.monitor is not None else None
    info = targets.info.get(pid) if targets is not None else None
    return getattr(info, "cgroup", None) or ""
