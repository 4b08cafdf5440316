"""Per-target totals folded from DAMON snapshots: what the metrics say about one process.

Counters (reports by CPU and by node, bytes written) only grow; gauges (working set, dirty set, hot
bytes, regions, dirty rate) describe the target's latest snapshot. Thread shares come from the
snapshots of the last ``window_ns``, so a scrape sees recent behaviour, not the process's whole life."""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass, field

import numpy as np

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.metrics.answers import TargetAnswers
from damon_bpf.reports.dirty_rate import dirty_bytes

OTHER = "other"   # the label of every thread outside the top N


@dataclass
class TargetTotals:
    pid: int
    comm: str = ""
    reports_by_cpu: Counter = field(default_factory=Counter)
    reports_by_node: Counter = field(default_factory=Counter)
    written_bytes: float = 0.0          # sum over windows of the bytes each dirtied (a page once per window)
    snapshots: int = 0
    working_set_bytes: int = 0          # regions with nr_accesses >= 1 in the latest snapshot
    dirty_set_bytes: int = 0            # regions with a write report in the latest snapshot
    hot_bytes: int = 0                  # regions with nr_accesses >= the hot threshold
    regions: int = 0
    dirty_bytes_per_s: float = 0.0      # the latest window's dirtied bytes over its length
    recent_tids: deque = field(default_factory=deque)   # (end_ns, {tid: reports}) of the last window_ns
    gone_ns: int | None = None          # monotonic time it was last seen gone (its series go later)
    answers: TargetAnswers | None = None   # sharing and NUMA over the recent snapshots, as of ``answered_at``
    answered_at: int = 0                # ``snapshots`` when its last answers round was started
    moved_bytes_by_node: Counter = field(default_factory=Counter)   # --apply's moves, by the node moved to


def hot_threshold(max_nr_accesses: int) -> int:
    """nr_accesses from which a region is hot: a tenth of the samples of a window (DAMON's merge
    threshold, the smallest difference in heat the region core tells apart), at least 1."""
    return max(1, max_nr_accesses // 10)


def fold(totals: TargetTotals, snapshot: Snapshot, page: int, hot_from: int, cpu_nodes: dict[int, int],
         window_ns: int) -> None:
    """Add one closed snapshot to ``totals``."""
    sizes = (snapshot.end - snapshot.start).astype(np.int64)
    for cpu, counts in snapshot.by_cpu.items():
        reports = int(counts.sum())
        totals.reports_by_cpu[int(cpu)] += reports
        totals.reports_by_node[cpu_nodes.get(int(cpu), -1)] += reports
    dirtied = dirty_bytes(snapshot, page)
    totals.written_bytes += dirtied
    window_s = (snapshot.end_ns - snapshot.start_ns) / 1e9
    totals.dirty_bytes_per_s = dirtied / window_s if window_s > 0 else 0.0
    totals.working_set_bytes = int(sizes[snapshot.nr_accesses >= 1].sum())
    totals.dirty_set_bytes = int(sizes[snapshot.writes > 0].sum())
    totals.hot_bytes = int(sizes[snapshot.nr_accesses >= hot_from].sum())
    totals.regions = snapshot.nr_regions
    totals.snapshots += 1
    tids = {int(tid): int(counts.sum()) for tid, counts in snapshot.by_tid.items()}
    totals.recent_tids.append((snapshot.end_ns, tids))
    while totals.recent_tids and totals.recent_tids[0][0] < snapshot.end_ns - window_ns:
        totals.recent_tids.popleft()


def thread_shares(recent: deque, top: int) -> list[tuple[str, float]]:
    """The ``top`` threads by reports over ``recent``, each with its share, then ``other`` for the
    rest (present, possibly 0, whenever any thread reported): at most ``top + 1`` label values."""
    counts: Counter = Counter()
    for _end, tids in recent:
        counts.update(tids)
    total = sum(counts.values())
    if not total:
        return []
    ranked = counts.most_common(top)
    shares = [(str(tid), n / total) for tid, n in ranked]
    return shares + [(OTHER, (total - sum(n for _tid, n in ranked)) / total)]


def fold_moves(targets: dict[int, TargetTotals], moves: list, pids: dict[int, int]) -> None:
    """Add ``record --apply``'s moves (``reports.numa_live.Move``: target id, node, bytes) to the totals of
    their processes (``pids``: target id -> pid)."""
    for move in moves:
        pid = pids[move.target_id]
        totals = targets.get(pid)
        if totals is None:
            totals = targets[pid] = TargetTotals(pid)
        totals.moved_bytes_by_node[move.to_node] += move.moved_bytes
