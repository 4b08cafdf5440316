"""The live aggregation as the offline reports read it: the latest snapshots of each target, as TargetRecords.

A Recorder listener (``on_snapshot``) keeps references to the snapshots the recorder closes, at most
``keep`` per target, so ``record --apply`` and the live view's answer keys run the same functions as
``report numa``, ``report dirty-rate`` and ``report sharing`` over the last seconds of the run.
"""

from __future__ import annotations

from collections import deque

from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.recordfile import TargetRecord
from damon_bpf.sources.numa import cpu_nodes_meta

KEEP = 600   # per target: a minute at DAMON's default 100 ms aggregation


class RecentRecords:
    def __init__(self, attrs: MonitoringAttrs, keep: int = KEEP) -> None:
        self.attrs, self.keep = attrs, keep
        self.meta = cpu_nodes_meta()   # as the recorder's meta: the numa answer needs the CPU -> node map
        self.pids: dict[int, int] = {}
        self.snapshots: dict[int, deque[Snapshot]] = {}
        self.seen: dict[int, int] = {}   # snapshots received per target, the dropped ones included

    def on_snapshot(self, target_id: int, pid: int, snapshot: Snapshot) -> None:
        if target_id not in self.snapshots:
            self.snapshots[target_id] = deque(maxlen=self.keep)
        self.pids[target_id] = pid
        self.snapshots[target_id].append(snapshot)
        self.seen[target_id] = self.seen.get(target_id, 0) + 1

    def records(self, last: int | None = None) -> list[TargetRecord]:
        """Every target with snapshots, each with its newest ``last`` (all kept when None)."""
        a = self.attrs
        out = []
        for target_id, snaps in sorted(self.snapshots.items()):
            kept = list(snaps)[-last:] if last else list(snaps)
            if kept:
                out.append(TargetRecord(target_id, self.pids[target_id], a.sample_interval_us, a.aggr_interval_us,
                                        a.update_interval_us, kept, dict(self.meta)))
        return out
