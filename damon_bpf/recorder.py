"""Glue between a monitoring session and DAMON's core: one Aggregator per target process, closed
snapshots to a record file and to any listener (the live view)."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from damon_bpf import __version__
from damon_bpf.core.aggregator import Aggregator
from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.core.ipcounts import BEFORE_EXEC
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.recordfile import RecordWriter, TargetRecord
from damon_bpf.session import RunResult
from damon_bpf.sources.numa import cpu_nodes_meta
from damon_bpf.sources.symbols import Symbolizer
from damon_bpf.sources.targets import is_alive
from damon_bpf.sources.vaddr import layout_for

# The session's tick time is when its last drain began, so every report before it has been read,
# except one a producer was still writing at that instant (microseconds): a small margin covers it.
CLOSE_LAG_NS = 2_000_000
PROCESS_PERIOD_NS = 50_000_000   # half of DAMON's default aggregation interval
TOP_FUNCTIONS = 5                # functions kept per region in a snapshot

SnapshotListener = Callable[[int, int, Snapshot], None]   # (target_id, pid, snapshot)


@dataclass
class TargetState:
    target_id: int
    pid: int
    aggregator: Aggregator
    snapshots: int = 0
    gone: bool = False                 # closed: its last snapshot is written
    close_at_ns: int | None = None     # its exit (or when its layout could not be read any more)
    last_regions: int = 0
    meta: dict = field(default_factory=dict)   # born_ns, comm, ppid, layout
    exec_ns: int | None = None         # its latest exec: reports before it ran another image's code


@dataclass
class Recorder:
    """Turns batches of access reports into per-target DAMON snapshots.

    Every process gets its own target the first time it is seen: from ``add_targets``, from a
    fork event (``on_target_event``), or lazily from its first reports. A target's aggregations
    start when it was born (its fork, else its first report; the run's start for targets known
    at the start) and end at its exit with a partial snapshot, so every report a source delivers
    ends up in one of ``accounting()``'s counters."""

    attrs: MonitoringAttrs
    regions_mode: str = "damon"
    writer: RecordWriter | None = None
    meta: dict = field(default_factory=dict)
    seed: int = 0
    listeners: list[SnapshotListener] = field(default_factory=list)
    start_ns: int = field(default_factory=time.monotonic_ns)
    targets: dict[int, TargetState] = field(default_factory=dict)
    unattributed: int = 0   # reports of a process whose target was already closed at its exit
    symbolizer: Symbolizer = field(default_factory=Symbolizer)
    _batches: list = field(default_factory=list)
    _processed_ns: int = 0

    def _target(self, pid: int, born_ns: int | None = None) -> TargetState:
        state = self.targets.get(pid)
        if state is None:
            start_ns = self.start_ns if born_ns is None else born_ns
            layout = layout_for(pid, self.regions_mode, seen=self.symbolizer.remember)
            aggregator = Aggregator(self.attrs, layout, start_ns, self.seed)
            state = self.targets[pid] = TargetState(len(self.targets), pid, aggregator,
                                                    meta={"born_ns": start_ns})
            if self.writer is not None:
                self.writer.add_target(TargetRecord(state.target_id, pid, self.attrs.sample_interval_us,
                                                    self.attrs.aggr_interval_us, self.attrs.update_interval_us,
                                                    [], dict(self.meta)))
        return state

    def add_targets(self, pids) -> None:
        """Start monitoring known processes now, so their layout is read before they change."""
        for pid in pids:
            self._target(pid)

    def on_target_event(self, event) -> None:
        """A process event (``kind`` fork/exec/exit, ``pid``, ``ppid``, ``comm``, ``time_ns`` on the
        reports' clock), delivered before any batch holding that pid's reports: a fork starts a
        target at its birth (layout read at once), an exec re-reads the layout, an exit closes
        the target once every report up to the exit time has been routed."""
        if event.kind == "fork" and event.pid in self.targets and not self.targets[event.pid].gone:
            return   # already known (pid listed at the start, or seen earlier)
        if event.kind == "exit" and event.pid not in self.targets:
            return   # no report and no fork of it reached us: nothing to close
        state = self._target(event.pid, event.time_ns if event.kind == "fork" else None)
        if event.comm:
            state.meta["comm"] = event.comm                  # the latest: it changes at exec
        if event.ppid is not None:
            state.meta.setdefault("ppid", event.ppid)        # the parent at birth (an orphan's becomes 1)
        if event.kind == "exec" and not state.gone:
            # A new image: the old one's mappings are forgotten, and the reports already fed (all made before
            # the exec: the ring gives it before any later report) keep no ip the new mappings could misname.
            self.symbolizer.forget(event.pid)
            state.exec_ns = int(event.time_ns)
            state.aggregator.exec_seen()
            state.aggregator.reread()
        elif event.kind == "exit" and state.close_at_ns is None:
            state.close_at_ns = int(event.time_ns)

    def on_batch(self, batch: np.ndarray) -> None:
        self._batches.append(batch)

    def _route(self, batch: np.ndarray) -> None:
        pids = batch["pid"]
        if pids[0] == pids[-1] and (pids == pids[0]).all():
            self._feed(int(pids[0]), batch)   # one process: no sort, no masks
            return
        for pid in np.unique(pids).tolist():
            self._feed(pid, batch[pids == pid])

    def _feed(self, pid: int, reports: np.ndarray) -> None:
        state = self.targets.get(pid)
        if state is None:   # born after the start, no fork event: it starts with its first report
            state = self._target(pid, int(reports["time_ns"].min()))
        if state.gone:
            self.unattributed += len(reports)
            return
        if state.exec_ns is not None:
            before = reports["time_ns"] < state.exec_ns
            if before.any():
                reports = reports.copy()
                reports["ip"][before] = BEFORE_EXEC
        state.aggregator.feed(reports)

    def on_tick(self, now_ns: int, lag_ns: int = CLOSE_LAG_NS, force: bool = False) -> None:
        # Batches are routed and intervals closed every PROCESS_PERIOD_NS, not every drain: per-call numpy
        # costs dominate at 100 calls/s, and reports keep their own timestamps, so nothing moves in time.
        if not force and now_ns - self._processed_ns < PROCESS_PERIOD_NS:
            return
        self._processed_ns = now_ns
        if self._batches:
            batches, self._batches = self._batches, []
            self._route(np.concatenate(batches) if len(batches) > 1 else batches[0])
        until_ns = now_ns - lag_ns
        for state in list(self.targets.values()):
            if state.gone:
                continue
            if state.close_at_ns is not None and until_ns >= state.close_at_ns:
                self._close(state, state.close_at_ns)
                continue
            self._emit(state, state.aggregator.advance(until_ns))
            if state.close_at_ns is None and (state.aggregator.exited or not is_alive(state.pid)):
                # The process is gone (no exit event told us): close it at the next tick, once
                # the reports it made before it died have been drained and routed.
                state.close_at_ns = until_ns
        if self.writer is not None:
            self.writer.maybe_flush()

    def _close(self, state: TargetState, end_ns: int) -> None:
        self._emit(state, state.aggregator.close(end_ns))
        state.gone = True
        state.meta["layout"] = "maps" if state.aggregator.read_ok else "reports"
        state.meta["in_regions"] = state.aggregator.in_regions

    def _emit(self, state: TargetState, snapshots: list[Snapshot]) -> None:
        if not snapshots:
            return
        state.snapshots += len(snapshots)
        state.last_regions = snapshots[-1].nr_regions
        for snapshot in snapshots:
            snapshot.functions = top_functions(snapshot, lambda ips: self.symbolizer.names(state.pid, ips))
        if self.writer is not None:
            self.writer.add_snapshots(state.target_id, snapshots)
        for listener in self.listeners:
            for snapshot in snapshots:
                listener(state.target_id, state.pid, snapshot)

    def accounting(self) -> dict:
        """Where the reports went: ``in_regions + outside_regions + late + unattributed +
        pending`` is every report routed so far (``pending``: not placed yet; 0 after finish)."""
        aggregators = [s.aggregator for s in self.targets.values()]
        return {"in_regions": sum(a.in_regions for a in aggregators),
                "outside_regions": sum(a.outside for a in aggregators),
                "late": sum(a.late for a in aggregators), "unattributed": self.unattributed,
                "pending": sum(a.pending + a.in_progress for a in aggregators),
                "layout_rereads": sum(a.rereads for a in aggregators),
                "ranges_from_reports": sum(a.report_ranges for a in aggregators)}

    def finish(self, result: RunResult | None) -> None:
        """Route what the session's end delivered, close every target (a partial last snapshot
        each), store the accounting and write the file."""
        now_ns = time.monotonic_ns()
        self.on_tick(now_ns, lag_ns=0, force=True)
        for state in self.targets.values():
            if not state.gone:
                self._close(state, now_ns if state.close_at_ns is None else min(now_ns, state.close_at_ns))
        accounting = self.accounting()
        if result is not None:
            accounting["unaccounted"] = result.accounting.delivered - sum(
                accounting[k] for k in ("in_regions", "outside_regions", "late", "unattributed", "pending"))
            result.placement = accounting
        meta = {"accounting": {**(result.as_dict() if result else {}), **accounting}}
        if self.writer is not None:
            for state in self.targets.values():
                self.writer.update_meta(state.target_id, {**meta, "snapshots": state.snapshots,
                                                          "target": state.meta})
            self.writer.close()


def top_functions(snapshot: Snapshot, names: Callable[[list[int]], list[str]],
                  keep: int = TOP_FUNCTIONS) -> list[dict[str, int]]:
    """Per region, its ``keep`` functions with the most reports, {name: reports}: the snapshot's
    instruction pointers named (once per distinct ip), and those of one function summed."""
    functions: list[dict[str, int]] = [{} for _ in range(snapshot.nr_regions)]
    if snapshot.ips is None or not len(snapshot.ips[0]):
        return functions
    region, ips, counts = snapshot.ips
    for i, name, count in zip(region.tolist(), names(ips.tolist()), counts.tolist()):
        functions[i][name] = functions[i].get(name, 0) + count
    return [dict(sorted(f.items(), key=lambda kv: (-kv[1], kv[0]))[:keep]) for f in functions]


def run_meta(source: str, filters, command: list[str], regions_mode: str) -> dict:
    """What a record says about how it was made."""
    return {"tool": f"damon-bpf {__version__}", "source": source, "filters": [f.describe() for f in filters],
            "regions": regions_mode, "command": command, "host": platform.node(), "kernel": os.uname().release,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), **cpu_nodes_meta()}
