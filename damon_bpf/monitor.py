"""The monitor as a library: a typed configuration, and the Monitor it assembles.

A Monitor owns the access source (a loaded tracer), the targets, the samplers that make steady-state
accesses fault again, and the companions that run beside the source (kernel DAMON); with a recording
configured it also owns the Recorder that turns reports into DAMON snapshots. ``run`` drives a
Session over all of them. The command line (cli/) only converts its options into a MonitorConfig and
prints what a run returns; a script can do the same without click::

    config = MonitorConfig(TargetSpec(command=("./myprog",)), duration_s=5, recording=RecordingSpec())
    monitor = Monitor(config)
    monitor.recorder.listeners.append(lambda target_id, pid, snapshot: print(snapshot.nr_regions))
    result = monitor.run()
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Callable, ContextManager, Sequence

import numpy as np

from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import UsageError, warn_stderr
from damon_bpf.filters import SampleFilter, build_filters
from damon_bpf.priority import CollectorPriority
from damon_bpf.recorder import Recorder, run_meta
from damon_bpf.recordfile import RecordWriter, TargetRecord
from damon_bpf.recordfile.sidefiles import SideFiles
from damon_bpf.samplers import Sampler, make_sampler
from damon_bpf.samplers.numa_state import recover_stale
from damon_bpf.session import RunResult, Session
from damon_bpf.sources.bpf_env import require_privileges
from damon_bpf.sources.companion import Companion, SnapshotSink
from damon_bpf.sources.kdamond import stop_all_ours
from damon_bpf.sources.kdamond_paddr import kernel_damon
from damon_bpf.sources.perf_mem import DEFAULT_SAMPLE_PERIOD, PerfMemTracer
from damon_bpf.sources.targets import Targets, pids_by_comm
from damon_bpf.sources.tracer import DEFAULT_RING_BYTES, Tracer

DEFAULT_SAMPLER_BUDGET_PCT = 10.0   # of one CPU; kdamond used 7% in the README's comparison
COMPANION_FIRST_ID = 1000           # record target ids of companions' snapshots start here


@dataclass(frozen=True)
class TargetSpec:
    """What to monitor: existing processes and/or the processes of cgroups, or a command started paused
    and traced from its exec.

    ``cgroups`` are cgroup v2 paths (under a cgroup2 mount, or relative to it: "system.slice/x.service"):
    every process in one of them or in a descendant cgroup is a target while it is there, those that
    join later included, each with its own aggregation; the run lasts while one of them exists."""

    pids: tuple[int, ...] = ()
    command: tuple[str, ...] = ()
    follow_children: bool = False
    command_output: str | None = None   # a started command's stdout and stderr go here
    comms: tuple[str, ...] = ()         # processes by command name (the standing monitor: also found later)
    cgroups: tuple[str, ...] = ()       # cgroup v2 directories: their processes, followed in BPF

    def describe(self) -> list[str]:
        """How a record names its targets (the command, or ``-p PID`` / ``--comm`` / ``--cgroup PATH``)."""
        return list(self.command) or ([f"-p {pid}" for pid in self.pids] + [f"--comm {c}" for c in self.comms]
                                      + [f"--cgroup {path}" for path in self.cgroups])


@dataclass(frozen=True)
class FilterSpec:
    """Sample filters as the command line gives them: shorthands first, then general specs in order."""

    cpus: str | None = None
    tids: str | None = None
    write_only: bool = False
    read_only: bool = False
    specs: tuple[str, ...] = ()   # TYPE:MATCHING:ALLOW[:ARG]

    def build(self) -> list[SampleFilter]:
        return build_filters(self.cpus, self.tids, self.write_only, self.read_only, self.specs)


@dataclass(frozen=True)
class SamplerSpec:
    name: str = "none"                 # damon_bpf.samplers.SAMPLER_NAMES
    interval_us: int | None = None     # default: the sample interval
    budget_pct: float | None = None    # soft-dirty only: most of one CPU it may use (default 10; 100: no cap)

    def budget(self) -> float | None:
        """The budget as a fraction of one CPU (None: no cap); only soft-dirty's own thread has one."""
        pct = self.budget_pct
        if pct is not None and self.name != "soft-dirty":
            raise UsageError("--sampler-budget caps the soft-dirty sampler only (numa-hint's scanning is the "
                             "kernel's, in the target's own context)")
        pct = DEFAULT_SAMPLER_BUDGET_PCT if pct is None else pct
        return None if pct >= 100 else pct / 100


@dataclass(frozen=True)
class RecordingSpec:
    """DAMON's regions over the reports: attributes, initial regions and the seed of random splits."""

    attrs: MonitoringAttrs = field(default_factory=MonitoringAttrs)
    regions: str = "damon"   # damon_bpf.core.layout.LAYOUT_MODES
    seed: int = 0


@dataclass(frozen=True)
class MonitorConfig:
    targets: TargetSpec
    source: str = "auto"            # a fault source, "perf-mem", or "damon" (kernel DAMON beside "auto")
    filters: FilterSpec = FilterSpec()
    sampler: SamplerSpec = SamplerSpec()
    ring_bytes: int = DEFAULT_RING_BYTES
    sample_period: int = DEFAULT_SAMPLE_PERIOD   # perf-mem only
    duration_s: float | None = None              # None: until stopped or the targets exit
    recording: RecordingSpec | None = None       # None: reports only (trace); else DAMON snapshots
    collector_priority: str = "normal"           # damon_bpf.priority.PRIORITIES; record/live ask for "rt"
    standing: bool = False                       # `monitor`: runs on with no target left; targets can be adopted
    damon_ops: str = "auto"                      # source "damon": kernel DAMON's operations (kdamond_paddr.DAMON_OPS)

    def __post_init__(self) -> None:
        if self.damon_ops != "auto" and self.source != "damon":   # said before anything starts, in every command
            raise UsageError(f"--damon-ops {self.damon_ops} chooses kernel DAMON's operations: use it with "
                             "--source damon")

    @property
    def attrs(self) -> MonitoringAttrs:
        """The monitoring attributes (DAMON's defaults when nothing is recorded: samplers pace by them)."""
        return self.recording.attrs if self.recording is not None else MonitoringAttrs()


class CompanionRecords:
    """Files companions' snapshots in a record as extra targets, ids from COMPANION_FIRST_ID."""

    def __init__(self, writer: RecordWriter, attrs: MonitoringAttrs) -> None:
        self.writer, self.attrs = writer, attrs
        self.ids: dict[tuple[int, int], int] = {}   # (companion, pid) -> record target id

    def sink_for(self, companion: Companion) -> SnapshotSink:
        meta, key = dict(companion.snapshot_meta or {}), id(companion)
        attrs = getattr(companion, "attrs", self.attrs)   # a borrowed kdamond's own intervals

        def sink(pid: int, snapshot: Snapshot) -> None:
            target_id = self.ids.get((key, pid))
            if target_id is None:
                target_id = self.ids[key, pid] = COMPANION_FIRST_ID + len(self.ids)
                self.writer.add_target(TargetRecord(target_id, pid, attrs.sample_interval_us,
                                                    attrs.aggr_interval_us, attrs.update_interval_us,
                                                    [], dict(meta)))
            self.writer.add_snapshots(target_id, [snapshot])

        return sink


class Monitor:
    """Source, targets, samplers, companions and (when recording) the recorder of one run.

    Built in the order that reports a user's mistake before anything costly: filters and targets are
    checked first, state a crashed run left behind is put back, then samplers and companions are made,
    and the BPF program is loaded last. ``writer`` (recording only) also receives companions' snapshots;
    ``companions`` run beside the ones the configuration asks for (a script's own)."""

    def __init__(self, config: MonitorConfig, writer: RecordWriter | None = None,
                 warn: Callable[[str], None] = warn_stderr, companions: Sequence[Companion] = ()) -> None:
        if writer is not None and config.recording is None:
            raise ValueError("a record file needs a recording configuration")
        self.config = config
        if config.recording is not None:
            config.recording.attrs.validate()
        filters = config.filters.build()
        spec = config.targets
        pids = tuple(spec.pids) + tuple(sorted(pids_by_comm(spec.comms) - set(spec.pids)))
        self.targets = Targets(pids, spec.command, spec.follow_children, spec.command_output, standing=config.standing,
                               cgroups=spec.cgroups)
        require_privileges()   # before the state files under /run, which only root may read
        recover_stale(warn)   # NUMA-balancing settings a crashed numa-hint run left changed
        stop_all_ours(warn)   # a kdamond a killed --source damon run left on
        self.samplers: list[Sampler] = self._samplers(warn)
        self.companions: list[Companion] = [*self._companions(), *companions]
        self.tracer = self._tracer(filters)
        # started with the targets, closed on every exit path, samplers before companions
        self.session = Session(self.tracer, self.targets, config.duration_s,
                               samplers=[*self.samplers, *self.companions], until_targets_exit=not config.standing)
        self.recorder = self._recorder(config.recording, writer) if config.recording is not None else None
        # raised at the first tick, after a command started: neither it nor the samplers inherit it
        self.priority = CollectorPriority(config.collector_priority)
        # more observers of the run (the metrics exporter): ticks after the recorder's, the end after its finish
        self.tick_hooks: list[Callable[[int], None]] = []
        self.end_hooks: list[Callable[[RunResult | None], None]] = []

    def _samplers(self, warn: Callable[[str], None]) -> list[Sampler]:
        spec, attrs = self.config.sampler, self.config.attrs
        budget = spec.budget()
        sampler = make_sampler(spec.name, spec.interval_us or attrs.sample_interval_us, attrs.aggr_interval_us,
                               warn=warn, budget=budget)
        return [sampler] if sampler is not None else []

    def _companions(self) -> list[Companion]:
        if self.config.source != "damon":
            return []
        if self.config.recording is None:
            raise UsageError("--source damon records kernel DAMON's regions: use it with record or live")
        if self.config.targets.cgroups:
            raise UsageError("--source damon watches the processes known when it starts and cannot follow a "
                             "cgroup's: use --cgroup with a page-fault source (--source auto)")
        return [kernel_damon(self.config.attrs, ops=self.config.damon_ops)]

    def _tracer(self, filters: list[SampleFilter]) -> Tracer:
        config = self.config
        follow, by_cgroup = config.targets.follow_children, bool(config.targets.cgroups)
        if config.source == "perf-mem":
            return PerfMemTracer(filters, follow, config.ring_bytes, config.sample_period, follow_cgroups=by_cgroup)
        # kernel DAMON runs beside the page-fault view of the best fault source
        return Tracer("auto" if config.source == "damon" else config.source, filters, follow, config.ring_bytes,
                      follow_cgroups=by_cgroup)

    def _recorder(self, recording: RecordingSpec, writer: RecordWriter | None) -> Recorder:
        if writer is not None:   # --source damon: kernel DAMON's snapshots go to the same file
            records = CompanionRecords(writer, recording.attrs)
            for companion in self.companions:
                if companion.snapshot_meta is not None:
                    companion.add_snapshot_sink(records.sink_for(companion))
        meta = run_meta(self.tracer.source, self.tracer.filters, self.config.targets.describe(), recording.regions)
        recorder = Recorder(recording.attrs, recording.regions, writer, meta, seed=recording.seed,
                            side=SideFiles(writer.path, warn=writer.warn) if writer is not None else None)
        recorder.add_targets(self.targets.pids)
        # forks, execs and exits reach the recorder before the reports of the process they concern
        self.targets.subscribe(recorder.on_target_event)
        return recorder

    def adopt(self, pids) -> list[int]:
        """Monitor more running processes from now on (a standing monitor's new --comm matches)."""
        return self.targets.adopt(pids, self.tracer)

    def request_stop(self, reason: str = "interrupted") -> None:
        self.session.request_stop(reason)

    def run(self, on_batch: Callable[[np.ndarray], None] | None = None, on_tick: Callable[[int], None] | None = None,
            display: ContextManager | None = None,
            finish: Callable[[RunResult | None], None] | None = None) -> RunResult:
        """Run to the end, once. Batches and ticks reach the recorder first, then ``on_batch``/``on_tick``;
        whatever happens, the recorder and ``finish`` complete the output and the kernel side is unloaded."""
        result = None
        try:
            with display or contextlib.nullcontext():
                result = self.session.run(self._batch_handler(on_batch), self._tick_handler(on_tick))
        finally:
            try:
                self._finish(result, finish)
            finally:
                self.tracer.close()
        return result

    def _batch_handler(self, on_batch: Callable[[np.ndarray], None] | None) -> Callable[[np.ndarray], None]:
        first = self.recorder.on_batch if self.recorder is not None else None
        return _chain([h for h in (first, on_batch) if h is not None])

    def _tick_handler(self, on_tick: Callable[[int], None] | None) -> Callable[[int], None] | None:
        first = self.recorder.on_tick if self.recorder is not None else None
        return _chain([h for h in (self.priority, first, *self.tick_hooks, on_tick) if h is not None])

    def _finish(self, result: RunResult | None, finish: Callable[[RunResult | None], None] | None) -> None:
        try:
            if self.recorder is not None:
                self.recorder.finish(result)
            for hook in self.end_hooks:
                hook(result)
        finally:
            if finish is not None:
                finish(result)


def _chain(handlers: list[Callable]) -> Callable:
    """One callable calling each handler in turn (the handler itself when there is one)."""
    if len(handlers) == 1:
        return handlers[0]
    if not handlers:
        return lambda _arg: None

    def call_all(arg) -> None:
        for handler in handlers:
            handler(arg)

    return call_all
