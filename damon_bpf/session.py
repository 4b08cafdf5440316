"""The run loop shared by trace, record and live: drain the source on a short timer, hand batches on,
watch the targets, and end cleanly on a duration, Ctrl-C, SIGTERM or the targets' exit.

Each round drains the accesses ring first and the targets' lifecycle records second, and hands the
batch on only after the lifecycle: subscribers of Targets know every process whose reports they get.
Exits are told after the batch, and only those from before the previous round's drain, so a
subscriber has every report of a process before it hears that the process exited."""

from __future__ import annotations

import resource
import signal
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from damon_bpf import log
from damon_bpf.sources import procevents
from damon_bpf.sources.targets import Targets
from damon_bpf.sources.tracer import Accounting, Tracer

POLL_INTERVAL_S = 0.01    # drain period: the ring needs no wakeups, so this bounds latency only
IDLE_POLL_S = 0.05        # with nothing arriving, the period doubles up to this: an idle target costs ~5x less


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


@dataclass
class RunResult:
    reason: str                      # "duration", "interrupted", "targets-exited" (or what request_stop said)
    elapsed_s: float
    cpu_s: float                     # the collector's own CPU time during the run
    accounting: Accounting
    exited: list[int] = field(default_factory=list)
    exit_status: int | None = None   # of a command we started
    samplers: list[dict] = field(default_factory=list)   # each sampler's summary (damon_bpf.samplers)
    placement: dict = field(default_factory=dict)   # where record/live put the reports (Recorder.accounting)
    following: dict = field(default_factory=dict)        # Targets.following(): what cn_proc repaired

    def command_status(self) -> int:
        """perf's convention for how damon-bpf exits: the launched command's status when it ended the
        run (128 + N when signal N killed it, as a shell says), else 0: a run ended by --duration, a
        signal to us, or a -p target that simply ended is a complete run."""
        if self.reason != "targets-exited" or self.exit_status is None:
            return 0
        return self.exit_status if self.exit_status >= 0 else 128 - self.exit_status

    @property
    def events_per_s(self) -> float:
        return self.accounting.delivered / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary_line(self) -> str:
        acc = self.accounting
        return (f"{acc.seen} events seen, {acc.delivered} delivered, {acc.filtered} filtered, {acc.lost} lost "
                f"in {self.elapsed_s:.2f} s ({self.events_per_s:.0f} events/s); collector CPU {self.cpu_s:.2f} s "
                f"({100 * self.cpu_s / max(self.elapsed_s, 1e-9):.1f}% of a core); ended: {self.reason}")

    def placement_line(self) -> str:
        """Where every delivered report went in record/live: the counters add up to delivered."""
        p = self.placement
        delivered = self.accounting.delivered
        share = 100 * p["in_regions"] / delivered if delivered else 100.0
        line = (f"of {delivered} delivered: {p['in_regions']} in regions ({share:.2f}%), "
                f"{p['outside_regions']} outside regions, {p['late']} late, {p['unattributed']} after their "
                f"process's end")
        missing = p.get("pending", 0) + p.get("unaccounted", 0)
        return line + (f", {missing} NOT ACCOUNTED FOR (a bug: please report it)" if missing else "")

    def advice(self, priority: str) -> list[str]:
        """What would have avoided lost reports, said when some were lost."""
        lost = self.accounting.lost
        if not lost:
            return []
        share = 100 * lost / max(self.accounting.seen, 1)
        return [f"{lost} reports ({share:.1f}%) were lost: the ring buffer was full because the collector "
                f"(at {priority} priority, {100 * self.cpu_s / max(self.elapsed_s, 1e-9):.0f}% of a core) fell "
                "behind. A bigger --ring-mb absorbs bursts; --collector-priority rt keeps it running when the "
                "target saturates the CPUs; filters (--cpus, --tids, --write-only) cut the reports at the source."]

    def as_dict(self) -> dict:
        extra: dict = {"samplers": self.samplers} if self.samplers else {}
        extra.update({"following": self.following} if self.following else {})
        return {**self.accounting.as_dict(), "duration_s": self.elapsed_s, "events_per_s": self.events_per_s,
                "cpu_s": self.cpu_s, "reason": self.reason, "exited": self.exited, "exit_status": self.exit_status,
                **extra}


class Session:
    """One monitoring run over a loaded tracer and a target set.

    ``samplers`` are started with the targets, ticked after every drain and closed on every exit
    path: samplers (damon_bpf.samplers) that make steady-state accesses fault again, and companions
    (damon_bpf.sources.companion) such as kernel DAMON; damon_bpf.monitor.Monitor assembles them."""

    def __init__(self, tracer: Tracer, targets: Targets, duration_s: float | None = None,
                 poll_interval_s: float = POLL_INTERVAL_S, samplers: list | None = None,
                 until_targets_exit: bool = True) -> None:
        self.tracer = tracer
        self.until_targets_exit = until_targets_exit   # False: a standing monitor waits for targets to come
        self.targets = targets
        self.samplers = list(samplers or ())
        self.duration_s = duration_s
        self.poll_interval_s = poll_interval_s
        self.stop_reason: str | None = None
        # Before anything is timed (a recorder's windows, --duration): attach opens the cn_proc socket, whose
        # import took seconds on a loaded machine while the targets waited, untraced, to be registered.
        procevents.preload()

    def request_stop(self, reason: str = "interrupted") -> None:
        self.stop_reason = self.stop_reason or reason

    def run(self, on_batch: Callable[[np.ndarray], None],
            on_tick: Callable[[int], None] | None = None) -> RunResult:
        """Run until stopped. ``on_batch`` gets every delivered record exactly once; ``on_tick`` gets,
        after each drain, the monotonic time in ns at which that drain began: every report that
        happened before it has been handed to ``on_batch`` (give or take a report still being written
        by a producer at that instant). A failing callback still leaves the kernel side quiet."""
        previous = {sig: signal.signal(sig, lambda *_: self.request_stop()) for sig in (signal.SIGINT, signal.SIGTERM)}
        start, cpu_start = time.monotonic(), cpu_seconds()
        started = []
        try:
            self.targets.attach(self.tracer)
            for sampler in self.samplers:
                sampler.start(self.targets)
                started.append(sampler)
            self._loop(on_batch, on_tick, start)
        finally:
            for sampler in started:   # before the tracer stops: what they changed goes back first
                try:
                    sampler.close()
                except Exception as err:  # noqa: BLE001 - one sampler's failure must not skip the rest
                    log.warning(f"warning: closing the {sampler.name} sampler failed: {err}")
            try:
                last = self.tracer.quiesce()
                self.targets.update(self.tracer)
                if len(last):
                    on_batch(last)
                    self._observe(last)
                self.targets.publish_exits()
            finally:
                self.targets.close()
                for sig, handler in previous.items():
                    signal.signal(sig, handler)
        return RunResult(self.stop_reason or "interrupted", time.monotonic() - start, cpu_seconds() - cpu_start,
                         self.tracer.accounting(), list(self.targets.exited), self.targets.exit_status(),
                         [sampler.summary() for sampler in self.samplers], following=self.targets.following())

    def _observe(self, batch: np.ndarray) -> None:
        for sampler in self.samplers:   # companions (kernel DAMON) have no use for the fault reports
            observe = getattr(sampler, "observe", None)
            if observe is not None:
                observe(batch)

    def _loop(self, on_batch, on_tick, start: float) -> None:
        idle_limit = max(self.poll_interval_s, IDLE_POLL_S)
        period = self.poll_interval_s
        previous_drain = time.monotonic_ns()
        while self.stop_reason is None:
            drained_at = time.monotonic_ns()
            batch = self.tracer.drain()
            self.targets.update(self.tracer)   # after the drain: see the module's docstring
            if len(batch):
                on_batch(batch)
                self._observe(batch)
                period = self.poll_interval_s
            else:
                period = min(2 * period, idle_limit)
            self.targets.publish_exits(previous_drain)
            previous_drain = drained_at
            if on_tick is not None:
                on_tick(drained_at)
            for sampler in self.samplers:
                sampler.tick(drained_at)
            if self.duration_s is not None and time.monotonic() - start >= self.duration_s:
                self.request_stop("duration")
            elif self.until_targets_exit and not self.targets.alive:
                self.request_stop("targets-exited")
            if self.stop_reason is None:
                time.sleep(period)
