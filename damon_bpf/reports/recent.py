"""The live aggregation as the offline reports read it: the latest snapshots of each target, as TargetRecords.

A Recorder listener (``on_snapshot``) keeps references to the snapshots the recorder closes, at most
``keep`` per target, so ``record --apply``, the live view's answer keys and the metrics' answers run the
same functions as ``report numa``, ``report dirty-rate`` and ``report sharing`` over the last seconds of
the run. Each target's record carries the recorder's meta of it (comm, parent, cgroup) under ``target``,
as a record file does, so the reports name the process.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Callable

from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.recordfile import TargetRecord
from damon_bpf.sources.numa import cpu_nodes_meta

if TYPE_CHECKING:
    from damon_bpf.recorder import Recorder

KEEP = 600   # per target: a minute at DAMON's default 100 ms aggregation

# (target id, pid) -> the recorder's meta of that target (born_ns, comm, ppid, cgroup), None when unknown
TargetMeta = Callable[[int, int], "dict | None"]


def recorder_meta(recorder: Recorder) -> TargetMeta:
    """The meta ``recorder`` keeps of a target, while the pid's current target is that one (the dict
    itself: it follows the process's later events, e.g. its comm at exec)."""
    def meta(target_id: int, pid: int) -> dict | None:
        state = recorder.targets.get(pid)
        return state.meta if state is not None and state.target_id == target_id else None
    return meta


class RecentRecords:
    def __init__(self, attrs: MonitoringAttrs, keep: int = KEEP, target_meta: TargetMeta | None = None) -> None:
        self.attrs, self.keep = attrs, keep
        self.meta = cpu_nodes_meta()   # as the recorder's meta: the numa answer needs the CPU -> node map
        self.target_meta = target_meta
        self.pids: dict[int, int] = {}
        self.snapshots: dict[int, deque[Snapshot]] = {}
        self.seen: dict[int, int] = {}   # snapshots received per target, the dropped ones included
        self.targets: dict[int, dict] = {}   # target id -> the recorder's meta of it, as last known

    @classmethod
    def listening(cls, recorder: Recorder, keep: int = KEEP) -> RecentRecords:
        """Fed by ``recorder``'s snapshots from now on, each target named by the recorder's meta of it."""
        recent = cls(recorder.attrs, keep, recorder_meta(recorder))
        recorder.listeners.append(recent.on_snapshot)
        return recent

    def on_snapshot(self, target_id: int, pid: int, snapshot: Snapshot) -> None:
        if target_id not in self.snapshots:
            self.snapshots[target_id] = deque(maxlen=self.keep)
        self.pids[target_id] = pid
        self.snapshots[target_id].append(snapshot)
        self.seen[target_id] = self.seen.get(target_id, 0) + 1
        meta = self.target_meta(target_id, pid) if self.target_meta is not None else None
        if meta is not None:
            self.targets[target_id] = meta

    def comm(self, target_id: int) -> str | None:
        """The target's command name, as the recorder knows it (None when it does not)."""
        return self.targets.get(target_id, {}).get("comm") or None

    def forget(self, target_id: int) -> None:
        """Drop a target (a long-running monitor's gone process)."""
        for kept in (self.pids, self.snapshots, self.seen, self.targets):
            kept.pop(target_id, None)

    def record(self, target_id: int, last: int | None = None) -> TargetRecord | None:
        """The target with its newest ``last`` snapshots (all kept when None); None when it has none."""
        snaps = self.snapshots.get(target_id)
        kept = (list(snaps)[-last:] if last else list(snaps)) if snaps else []
        if not kept:
            return None
        a = self.attrs
        meta = {**self.meta, "target": dict(self.targets.get(target_id, {}))}
        return TargetRecord(target_id, self.pids[target_id], a.sample_interval_us, a.aggr_interval_us,
                            a.update_interval_us, kept, meta)

    def records(self, last: int | None = None) -> list[TargetRecord]:
        """Every target with snapshots, each with its newest ``last`` (all kept when None)."""
        return [rec for target_id in sorted(self.snapshots) if (rec := self.record(target_id, last)) is not None]
