"""Glue between a monitoring session and DAMON's core: one Aggregator per target process, closed
snapshots to a record file and to any listener (the live view)."""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from damon_bpf import __version__, log
from damon_bpf.access import ACCESS_READ, ACCESS_UNKNOWN, ACCESS_WRITE
from damon_bpf.core.aggregator import Aggregator
from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.core.events import Kind
from damon_bpf.core.ipcounts import BEFORE_EXEC
from damon_bpf.core.mappings import Mapping, region_mappings
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.recordfile import RecordWriter, TargetRecord
from damon_bpf.recordfile.sidefiles import SideFiles
from damon_bpf.session import RunResult
from damon_bpf.sources.numa import cpu_nodes_meta
from damon_bpf.sources.symbols import Symbolizer
from damon_bpf.sources.targets import is_alive
from damon_bpf.sources.vaddr import Footprint, layout_for

# The session's tick time is when its last drain began, so every report before it has been read,
# except one a producer was still writing at that instant (microseconds): a small margin covers it.
CLOSE_LAG_NS = 2_000_000
PROCESS_PERIOD_NS = 50_000_000   # half of DAMON's default aggregation interval
# A collector that falls behind (a slow CPU: a TCG guest took 0.17 s per snapshot, over 1 s when its host was
# loaded) catches up one aggregation at a time and returns to the session's loop once a tick has used
# TICK_BUDGET_S, so the ring keeps being drained and a stop is honoured within about a snapshot's work;
# finish() closes what is left.
TICK_BUDGET_S = 0.2
TOP_FUNCTIONS = 5                # functions kept per region in a snapshot

SnapshotListener = Callable[[int, int, Snapshot], None]   # (target_id, pid, snapshot)

# The BPF record's access kinds (bpf/access.h) as the core's Kind. They are the same numbers today, so a
# batch passes unchanged; should the header ever renumber them, each batch's column is translated.
_CORE_KIND = np.full(256, Kind.UNKNOWN, np.uint8)
_CORE_KIND[ACCESS_READ], _CORE_KIND[ACCESS_WRITE] = Kind.READ, Kind.WRITE
_SAME_KINDS = (ACCESS_READ, ACCESS_WRITE, ACCESS_UNKNOWN) == (Kind.READ, Kind.WRITE, Kind.UNKNOWN)


def core_reports(records: np.ndarray, same_kinds: bool = _SAME_KINDS) -> np.ndarray:
    """BPF access records (ACCESS_DTYPE) as the core's reports (core.events.REPORT_COLUMNS)."""
    if same_kinds:
        return records
    adapted = records.copy()
    adapted["write"] = _CORE_KIND[records["write"]]
    return adapted


@dataclass
class MapsSeen:
    """The named mappings of a target's layout reads: the last read's, and every one read since the last
    snapshot (a mapping gone by the aggregation's end still names the region its reports fell in)."""

    current: list[Mapping] = field(default_factory=list)
    since_snapshot: set[Mapping] = field(default_factory=set)

    def on_maps(self, mappings: list[Mapping]) -> None:
        self.current = mappings
        self.since_snapshot.update(mappings)

    def name(self, snapshot: Snapshot) -> None:
        """Give ``snapshot`` its regions' mappings (none known: the layout was never read)."""
        if self.since_snapshot.issubset(self.current):   # the usual case: nothing unmapped since
            seen = self.current
        else:
            seen = _disjoint(sorted(self.since_snapshot.union(self.current)))
        if seen:
            snapshot.mappings = region_mappings(snapshot.start, snapshot.end, seen)
        self.since_snapshot = set()


def _disjoint(mappings: list[Mapping]) -> list[Mapping]:
    """Sorted mappings with those overlapping an earlier one (an older read's, since replaced) left out."""
    out: list[Mapping] = []
    for m in mappings:
        if not out or m.start >= out[-1].end:
            out.append(m)
    return out


@dataclass
class TargetState:
    target_id: int
    pid: int
    aggregator: Aggregator
    snapshots: int = 0
    gone: bool = False                 # closed: its last snapshot is written
    close_at_ns: int | None = None     # its exit (or when its layout could not be read any more)
    last_regions: int = 0
    meta: dict = field(default_factory=dict)   # born_ns, comm, ppid, cgroup, left, layout
    maps: MapsSeen = field(default_factory=MapsSeen)
    footprint: Footprint | None = None
    previous: TargetState | None = None   # the pid's earlier target (a cgroup member that left and came back)
    exec_ns: int | None = None         # its latest exec: reports before it ran another image's code


@dataclass
class Recorder:
    """Turns batches of access reports into per-target DAMON snapshots.

    Every process gets its own target the first time it is seen: from ``add_targets``, from a
    fork or cgroup-join event (``on_target_event``), or lazily from its first reports; a process that
    left the followed cgroups and joins again gets a new one. A target's aggregations
    start when it was born (its fork, else its first report; the run's start for targets known
    at the start) and end at its exit with a partial snapshot, so every report a source delivers
    ends up in one of ``accounting()``'s counters."""

    attrs: MonitoringAttrs
    regions_mode: str = "damon"
    writer: RecordWriter | None = None
    meta: dict = field(default_factory=dict)
    seed: int = 0
    listeners: list[SnapshotListener] = field(default_factory=list)
    side: SideFiles | None = None   # damo's .mem_footprint / .vmas beside the record file
    start_ns: int = field(default_factory=time.monotonic_ns)
    targets: dict[int, TargetState] = field(default_factory=dict)   # each pid's latest target
    retired: list[TargetState] = field(default_factory=list)         # earlier targets of a pid
    unattributed: int = 0   # reports of a process whose target was already closed at its exit
    forgotten: dict = field(default_factory=dict)   # forget_gone: the counts of the targets it dropped
    _next_id: int = 0
    symbolizer: Symbolizer = field(default_factory=Symbolizer)
    _batches: list = field(default_factory=list)
    _processed_ns: int = 0

    def states(self) -> list[TargetState]:
        """Every target of the run, in the order they were made."""
        return sorted([*self.retired, *self.targets.values()], key=lambda state: state.target_id)

    def _target(self, pid: int, born_ns: int | None = None, reborn: bool = False) -> TargetState:
        """``pid``'s target, made when there is none (``reborn``: also when the pid's target has exited
        or left, the earlier one is then kept as ``previous``)."""
        state = self.targets.get(pid)
        if state is None or (reborn and state.close_at_ns is not None):
            start_ns = self.start_ns if born_ns is None else born_ns
            maps = MapsSeen()
            layout = layout_for(pid, self.regions_mode, maps.on_maps, seen=self.symbolizer.remember)
            aggregator = Aggregator(self.attrs, layout, start_ns, self.seed)
            if state is not None:
                self.retired.append(state)
            state = self.targets[pid] = TargetState(self._next_id, pid, aggregator,
                                                    meta={"born_ns": start_ns}, maps=maps,
                                                    footprint=Footprint(pid), previous=state)
            self._next_id += 1
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
        """A process event (``kind`` fork/exec/exit/join/leave, ``pid``, ``ppid``, ``comm``, ``time_ns``
        on the reports' clock, ``cgroup``), delivered before any batch holding that pid's reports: a fork
        or a cgroup join starts a target at that time (layout read at once), an exec re-reads the layout,
        an exit or a leave closes the target once every report up to that time has been routed."""
        born = event.kind in ("fork", "join")
        current = self.targets.get(event.pid)
        if born and current is not None and current.close_at_ns is None:
            return   # already known (pid listed at the start, or seen earlier)
        if event.kind in ("exit", "leave") and current is None:
            return   # no report and no fork of it reached us: nothing to close
        state = self._target(event.pid, event.time_ns if born else None, reborn=born)
        if event.comm:
            state.meta["comm"] = event.comm                  # the latest: it changes at exec
        if event.ppid is not None:
            state.meta.setdefault("ppid", event.ppid)        # the parent at birth (an orphan's becomes 1)
        if getattr(event, "cgroup", None) is not None:
            state.meta["cgroup"] = event.cgroup
        if event.kind == "exec" and not state.gone:
            # A new image: the old one's mappings are forgotten, and the reports already fed (all made before
            # the exec: the ring gives it before any later report) keep no ip the new mappings could misname.
            self.symbolizer.forget(event.pid)
            state.exec_ns = int(event.time_ns)
            state.aggregator.exec_seen()
            state.aggregator.reread()
        elif event.kind in ("exit", "leave") and state.close_at_ns is None:
            state.close_at_ns = int(event.time_ns)
        if event.kind == "leave":
            state.meta["left"] = True   # it left the followed cgroups (and may come back as a new target)

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
        previous = state.previous
        if previous is not None and not previous.gone:   # reports from before it left are the earlier one's
            before = reports["time_ns"] < previous.close_at_ns
            if before.any():
                previous.aggregator.feed(reports[before])
                reports = reports[~before]
        if state.gone:
            self.unattributed += len(reports)
            return
        if state.exec_ns is not None:
            before = reports["time_ns"] < state.exec_ns
            if before.any():
                reports = reports.copy()
                reports["ip"][before] = BEFORE_EXEC
        state.aggregator.feed(core_reports(reports))

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
        deadline = float("inf") if force else time.monotonic() + TICK_BUDGET_S
        for state in self.states():
            if state.gone:
                continue
            if state.close_at_ns is not None and until_ns >= state.close_at_ns:
                self._close(state, state.close_at_ns)
                continue
            self._advance(state, until_ns, deadline)
            if state.close_at_ns is None and (state.aggregator.exited or not is_alive(state.pid)):
                # The process is gone (no exit event told us): close it at the next tick, once
                # the reports it made before it died have been drained and routed.
                state.close_at_ns = until_ns
        if self.side is not None:
            self.side.maybe_sample([s.pid for s in self.targets.values() if not s.gone])
        if self.writer is not None:
            self.writer.maybe_flush()

    def _advance(self, state: TargetState, until_ns: int, deadline: float) -> None:
        """Close the target's intervals up to ``until_ns``, at least one step, more while time is left."""
        aggregator = state.aggregator
        rereads, report_ranges = aggregator.rereads, aggregator.report_ranges
        aggregation_ns = self.attrs.aggr_interval_us * 1000
        while True:
            step_ns = min(until_ns, aggregator.closed_until_ns + aggregation_ns)
            self._emit(state, aggregator.advance(step_ns))
            if step_ns >= until_ns or time.monotonic() >= deadline:
                break
        if log.verbose() and (aggregator.rereads, aggregator.report_ranges) != (rereads, report_ranges):
            log.detail(f"pid {state.pid}: reports outside its regions: layout re-read ({aggregator.rereads} "
                       f"so far), {aggregator.report_ranges - report_ranges} ranges made of the reports' own pages")

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
        footprint = state.footprint.latest(time.monotonic_ns()) if state.footprint else None
        for snapshot in snapshots:
            state.maps.name(snapshot)
            snapshot.footprint = footprint
            snapshot.functions = top_functions(snapshot, lambda ips: self.symbolizer.names(state.pid, ips))
        if self.writer is not None:
            self.writer.add_snapshots(state.target_id, snapshots)
        for listener in self.listeners:
            for snapshot in snapshots:
                listener(state.target_id, state.pid, snapshot)

    def accounting(self) -> dict:
        """Where the reports went: ``in_regions + outside_regions + late + unattributed +
        pending`` is every report routed so far (``pending``: not placed yet; 0 after finish)."""
        states = self.states()
        counts = [_counts(s.aggregator) for s in states]   # once per target (live asks every frame)
        totals = {key: self.forgotten.get(key, 0) + sum(c[key] for c in counts) for key in _COUNTS}
        return {**totals, "unattributed": self.unattributed,
                "pending": sum(s.aggregator.pending + s.aggregator.in_progress for s in states)}

    def forget_gone(self) -> int:
        """Drop the closed targets, keeping their counts in ``accounting``: a long-running monitor would
        otherwise keep every process it ever saw. Returns how many went."""
        gone = [pid for pid, state in self.targets.items() if state.gone]
        dropped = [self.targets.pop(pid) for pid in gone] + [s for s in self.retired if s.gone]
        self.retired = [s for s in self.retired if not s.gone]
        for state in dropped:
            counts = _counts(state.aggregator)
            state.previous = None
            self.forgotten = {key: self.forgotten.get(key, 0) + counts[key] for key in _COUNTS}
        return len(gone)

    def finish(self, result: RunResult | None) -> None:
        """Route what the session's end delivered, close every target (a partial last snapshot
        each), store the accounting and write the file."""
        now_ns = time.monotonic_ns()
        self.on_tick(now_ns, lag_ns=0, force=True)
        for state in self.states():
            if not state.gone:
                self._close(state, now_ns if state.close_at_ns is None else min(now_ns, state.close_at_ns))
        accounting = self.accounting()
        if result is not None:
            accounting["unaccounted"] = result.accounting.delivered - sum(
                accounting[k] for k in ("in_regions", "outside_regions", "late", "unattributed", "pending"))
            result.placement = accounting
        meta = {"accounting": {**(result.as_dict() if result else {}), **accounting}}
        if self.writer is not None:
            for state in self.states():
                self.writer.update_meta(state.target_id, {**meta, "snapshots": state.snapshots,
                                                          "target": state.meta})
            try:
                self.writer.close()
            finally:
                if self.side is not None:
                    self.side.write()


_COUNTS = ("in_regions", "outside_regions", "late", "layout_rereads", "ranges_from_reports")


def _counts(aggregator: Aggregator) -> dict:
    return {"in_regions": aggregator.in_regions, "outside_regions": aggregator.outside, "late": aggregator.late,
            "layout_rereads": aggregator.rereads, "ranges_from_reports": aggregator.report_ranges}


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
