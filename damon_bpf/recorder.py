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
from damon_bpf.core.layout import layout_for
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import TargetError
from damon_bpf.recordfile import RecordWriter, TargetRecord
from damon_bpf.session import RunResult

# The session's tick time is when its last drain began, so every report before it has been read,
# except one a producer was still writing at that instant (microseconds): a small margin covers it.
CLOSE_LAG_NS = 2_000_000
PROCESS_PERIOD_NS = 50_000_000   # half of DAMON's default aggregation interval

SnapshotListener = Callable[[int, int, Snapshot], None]   # (target_id, pid, snapshot)


@dataclass
class TargetState:
    target_id: int
    pid: int
    aggregator: Aggregator | None
    snapshots: int = 0
    gone: bool = False
    last_regions: int = 0


@dataclass
class Recorder:
    """Turns batches of access reports into per-target DAMON snapshots."""

    attrs: MonitoringAttrs
    regions_mode: str = "damon"
    writer: RecordWriter | None = None
    meta: dict = field(default_factory=dict)
    seed: int = 0
    listeners: list[SnapshotListener] = field(default_factory=list)
    start_ns: int = field(default_factory=time.monotonic_ns)
    targets: dict[int, TargetState] = field(default_factory=dict)
    unattributed: int = 0   # reports of a process whose memory map could not be read
    _batches: list = field(default_factory=list)
    _processed_ns: int = 0

    def _target(self, pid: int) -> TargetState:
        state = self.targets.get(pid)
        if state is None:
            try:
                aggregator = Aggregator(self.attrs, layout_for(pid, self.regions_mode), self.start_ns, self.seed)
            except TargetError:
                aggregator = None  # exited before we could read its layout
            state = self.targets[pid] = TargetState(len(self.targets), pid, aggregator, gone=aggregator is None)
            if self.writer is not None:
                self.writer.add_target(TargetRecord(state.target_id, pid, self.attrs.sample_interval_us,
                                                    self.attrs.aggr_interval_us, self.attrs.update_interval_us,
                                                    [], dict(self.meta)))
        return state

    def add_targets(self, pids) -> None:
        """Start monitoring known processes now, so their layout is read before they change."""
        for pid in pids:
            self._target(pid)

    def on_batch(self, batch: np.ndarray) -> None:
        self._batches.append(batch)

    def _route(self, batch: np.ndarray) -> None:
        pids = batch["pid"]
        if pids[0] == pids[-1] and (pids == pids[0]).all():
            self._feed(self._target(int(pids[0])), batch)   # one process: no sort, no masks
            return
        for pid in np.unique(pids).tolist():
            self._feed(self._target(pid), batch[pids == pid])

    def _feed(self, state: TargetState, reports: np.ndarray) -> None:
        if state.aggregator is None or state.gone:
            self.unattributed += len(reports)
        else:
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
        for state in self.targets.values():
            if state.aggregator is not None and not state.gone:
                self._advance(state, now_ns - lag_ns)
        if self.writer is not None:
            self.writer.maybe_flush()

    def _advance(self, state: TargetState, until_ns: int) -> None:
        try:
            snapshots = state.aggregator.advance(until_ns)
        except TargetError as err:  # the process exited: keep what it completed, stop there
            snapshots = getattr(err, "snapshots", [])
            state.gone = True
        if snapshots:
            state.snapshots += len(snapshots)
            state.last_regions = snapshots[-1].nr_regions
            if self.writer is not None:
                self.writer.add_snapshots(state.target_id, snapshots)
            for listener in self.listeners:
                for snapshot in snapshots:
                    listener(state.target_id, state.pid, snapshot)

    def accounting(self) -> dict:
        aggregators = [s.aggregator for s in self.targets.values() if s.aggregator is not None]
        return {"late": sum(a.late for a in aggregators), "outside_regions": sum(a.outside for a in aggregators),
                "unattributed": self.unattributed}

    def finish(self, result: RunResult | None) -> None:
        """Close what the session's end allows, store the accounting and write the file."""
        self.on_tick(time.monotonic_ns(), lag_ns=0, force=True)
        meta = {"accounting": {**(result.as_dict() if result else {}), **self.accounting()}}
        if self.writer is not None:
            for state in self.targets.values():
                self.writer.update_meta(state.target_id, {**meta, "snapshots": state.snapshots})
            self.writer.close()


def run_meta(source: str, filters, command: list[str], regions_mode: str) -> dict:
    """What a record says about how it was made."""
    return {"tool": f"damon-bpf {__version__}", "source": source, "filters": [f.describe() for f in filters],
            "regions": regions_mode, "command": command, "host": platform.node(), "kernel": os.uname().release,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
