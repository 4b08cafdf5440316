"""``record --apply`` and ``live --apply``: NUMA placement acted on during the run.

Every ``period_s`` the numa report (``reports.numa.numa``, the same decision as ``report numa``) is made
for each target over the snapshots closed since the last round, and the regions worth moving are moved
with move_pages(2) (``reports.numa.apply``) under one size quota for the whole run. A round never waits
for the quota: what does not fit waits for the next round. It runs on a worker thread (``rounds``), not the
collector's: in the two-node guest one round held the collector up to 1.2 s, with no ring buffer emptied
meanwhile. The collector hands it each target's fresh snapshots and takes the moves at a later tick; a round
due while the last one runs is skipped and counted.
Each move is then followed in the snapshots that begin after it: of the reports in the moved range,
the share that came from CPUs of the node it moved to is the share of accesses that turned local.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import DamonBpfError
from damon_bpf.reports import numa as numa_mod
from damon_bpf.reports.common import bin_masses, fmt_size
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports.recent import RecentRecords
from damon_bpf.rounds import Job, RoundWorker
from damon_bpf.sources import numa as numa_src

DEFAULT_PERIOD_S = 2.0
END_WAIT_S = 30.0   # at the end of a run, how long the last round may still take to finish


@dataclass
class Move:
    target_id: int
    start: int
    end: int
    to_node: int
    moved_bytes: int
    at_ns: int            # CLOCK_MONOTONIC, the clock of snapshot times
    local_before: float   # expected share of local accesses before: access shares x page placement
    reports_after: float = 0.0
    local_after: float = 0.0   # of reports_after, from CPUs of to_node


def _local_share(region: numa_mod.NumaRegion) -> float:
    present = sum((region.page_bytes or {}).values())
    if not present:
        return 0.0
    return sum(share * (region.page_bytes or {}).get(node, 0.0) / present
               for node, share in region.access_share.items())


class NumaApplier:
    """A Recorder listener (``on_snapshot``) and tick hook (``on_tick``) that moves pages as it goes."""

    def __init__(self, recent: RecentRecords, quota_bytes_per_s: float, period_s: float = DEFAULT_PERIOD_S,
                 query: Callable = numa_src.page_nodes, move: Callable = numa_src.move_to,
                 cpu_nodes: dict[int, int] | None = None, memory_nodes: list[int] | None = None) -> None:
        self.recent, self.period_s = recent, period_s
        self.quota = numa_mod.Quota(quota_bytes_per_s)   # the worker's alone: one round at a time uses it
        self.query, self.move = query, move
        self.cpu_nodes = numa_src.cpu_nodes() if cpu_nodes is None else cpu_nodes
        nodes = {*self.cpu_nodes.values(), *(numa_src.memory_nodes() if memory_nodes is None else memory_nodes)}
        self.one_node = len(nodes) <= 1
        self.moves: list[Move] = []       # the collector's: filled when it takes a round's results
        self.round_s_max = 0.0   # the longest round (on the worker; the collector is not held)
        self.errors: list[str] = []   # a target gone before it could be asked, etc.
        self.worker: RoundWorker[TargetRecord, tuple[list[Move], list[str]]] = RoundWorker(
            self._judge_and_move, name="damon-bpf-apply")
        self._judged: dict[int, int] = {}   # target -> snapshots it had when last handed to a round
        self._due = time.monotonic() + period_s

    @property
    def rounds(self) -> int:
        return self.worker.rounds

    def on_snapshot(self, target_id: int, _pid: int, snapshot: Snapshot) -> None:
        for m in self.moves:
            if m.target_id == target_id and snapshot.start_ns >= m.at_ns and snapshot.nr_regions:
                self._count_after(m, snapshot)

    def _count_after(self, m: Move, s: Snapshot) -> None:
        cpus = sorted(s.by_cpu)
        mass = np.array([s.by_cpu[c] for c in cpus], np.float64).reshape(len(cpus), s.nr_regions)
        inside = bin_masses(s.start, s.end, mass, np.array([m.start]), np.array([m.end]))[:, 0]
        m.reports_after += float(inside.sum())
        m.local_after += float(sum(v for c, v in zip(cpus, inside) if self.cpu_nodes.get(c) == m.to_node))

    def on_tick(self, _now_ns: int) -> None:
        self._take()
        if time.monotonic() < self._due:
            return
        self._due = time.monotonic() + self.period_s
        if self.one_node:   # nothing can be remote: no page is ever asked about
            return
        jobs, seen = self._fresh_jobs()
        if jobs and self.worker.submit(jobs):   # else the last round still runs: these wait for the next
            self._judged.update(seen)

    def _fresh_jobs(self) -> tuple[list[Job], dict[int, int]]:
        """Each target with snapshots closed since its last round, as a record of just those."""
        jobs, seen = [], {}
        for rec in self.recent.records():
            seen[rec.target_id] = self.recent.seen[rec.target_id]
            fresh = min(seen[rec.target_id] - self._judged.get(rec.target_id, 0), len(rec.snapshots))
            if fresh > 0:
                rec.snapshots = rec.snapshots[-fresh:]
                jobs.append((rec.target_id, seen[rec.target_id], rec))
        return jobs, seen

    def _take(self) -> None:
        """A finished round's moves, each then followed in the snapshots that began after it: first in those
        closed while the collector did not know of it yet, from then on by ``on_snapshot``."""
        done = self.worker.take()
        if done is None:
            return
        self.round_s_max = max(self.round_s_max, done.wall_s)
        for target_id, (_, result) in sorted(done.results.items()):
            if result is None:
                continue
            moves, errors = result
            self.errors.extend(errors)
            for m in moves:
                for s in self.recent.snapshots.get(target_id, ()):
                    if s.start_ns >= m.at_ns and s.nr_regions:
                        self._count_after(m, s)
            self.moves.extend(moves)

    def finish(self, timeout_s: float = END_WAIT_S) -> None:
        """At the end of a run: the round still running, if any, finished and taken."""
        self.worker.wait(timeout_s)
        self._take()

    def _judge_and_move(self, rec: TargetRecord) -> tuple[list[Move], list[str]]:
        """On the worker: report numa over ``rec``, and the moves it asks for within the quota."""
        try:
            report = numa_mod.numa([rec], rec.target_id, query=self.query)
            if not report.placement_known:
                return [], []
            before = {(r.start, r.end): _local_share(r) for r in report.to_move}
            now_ns = time.monotonic_ns()
            return [Move(rec.target_id, done["start"], done["end"], done["to_node"], done["moved_bytes"], now_ns,
                         before[done["start"], done["end"]])
                    for done in numa_mod.apply(report, self.quota, move=self.move, query=self.query, block=False)
                    if done["moved_bytes"]], []
        except DamonBpfError as err:   # the process exited between the snapshot and the move
            return [], [str(err)]

    def summary(self) -> dict:
        return {"one_node": self.one_node, "rounds": self.rounds, "rounds_skipped": self.worker.skipped,
                "round_s_max": self.round_s_max,
                "quota_bytes_per_s": self.quota.bytes_per_s,
                "moved_bytes": sum(m.moved_bytes for m in self.moves), "regions_moved": len(self.moves),
                "reports_after": sum(m.reports_after for m in self.moves),
                "local_after": sum(m.local_after for m in self.moves), "errors": self.errors[-5:]}

    def line(self) -> str:
        """What --apply did in this run, in one line."""
        if self.one_node:
            return "--apply: nothing to move: this host has one NUMA node, every page is local"
        if not self.moves:
            return (f"--apply: nothing moved in {self._rounds_text()}: no hot, old "
                    "region was mostly accessed from a node its pages do not live on")
        s = self.summary()
        weight = sum(m.moved_bytes for m in self.moves)
        before = sum(m.local_before * m.moved_bytes for m in self.moves) / weight
        after = (f"{s['local_after'] / s['reports_after']:.0%} of their {s['reports_after']:.0f} reports since"
                 if s["reports_after"] else "no reports in them since")
        return (f"--apply: moved {fmt_size(s['moved_bytes'])} in {len(self.moves)} regions; local accesses in "
                f"them: {before:.0%} before the move (expected from the placement), {after}; {self._rounds_text()}")

    def _rounds_text(self) -> str:
        skipped = f", {self.worker.skipped} skipped while one ran" if self.worker.skipped else ""
        return f"{self.rounds} rounds (the longest {self.round_s_max:.2g} s, off the collector{skipped})"
