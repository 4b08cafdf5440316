"""The sharing and NUMA answers of one target, as the metrics serve them.

Each is the offline report's own function (``reports.sharing.sharing``, ``reports.numa.numa``: the same
windows, thresholds and move rule) over the target's recent snapshots (``reports.recent.RecentRecords``),
reduced to a few numbers with bounded labels:

- sharing: among the ``MAX_THREADS`` threads with the most reports (its cost grows with the square of the
  threads), the ``top`` thread pairs by shared hot bytes, each as the bytes both threads accessed hot in the
  same aggregation window, averaged over the windows (``report sharing`` sums them: a 4 MiB range both
  threads write in 35 windows is 140 MiB there, 4 MiB here); how many pairs shared anything; how many of the
  suggested groups hold two threads or more.
- NUMA: the bytes of the accessed regions' pages (move_pages(2) query of ``samples`` pages a region) by the
  node they live on, the same bytes split by the share of each region's reports from each node's CPUs (so the
  two add up alike and compare: 8 MiB accessed from node 0 and living on node 1 is 8 MiB to move), and the
  bytes ``report numa`` would move, by the node it would move them to. Present pages, not region sizes: a
  DAMON region can span an unmapped gap (gigabytes around a few MiB of pages). Nothing once the process is
  gone (where its pages live cannot be asked).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Sequence

import numpy as np

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports import numa, sharing
from damon_bpf.sources import numa as numa_src

TOP_PAIRS = 5        # thread-pair series per target; the rest are counted in the pairs gauge
MAX_THREADS = 32     # threads compared for sharing: the busiest (200 threads took seconds; 16, ~0.15 s)
NUMA_SAMPLES = 64    # pages asked about per region and scrape (report numa asks 512: its estimate is finer)


@dataclass
class TargetAnswers:
    pairs: list[tuple[int, int, float]]   # the top pairs: tid a < tid b, shared hot bytes per window
    nr_pairs: int                         # pairs that shared any hot bytes (exported or not)
    nr_groups: int                        # suggested groups of at least two threads
    accessed_by_node: dict[int, float]    # node -> present bytes x that node's share of the region's reports
    home_by_node: dict[int, float]        # node -> present bytes living there
    movable_by_node: dict[int, float] = field(default_factory=dict)   # node -> bytes worth moving there


def _add(into: dict[int, float], node: int, value: float) -> None:
    into[node] = into.get(node, 0.0) + value


def _by_node(placement: numa.NumaReport) -> tuple[dict[int, float], dict[int, float], dict[int, float]]:
    """Present bytes by accessing node and by home node, and bytes to move by destination (see above)."""
    accessed: dict[int, float] = {}
    home: dict[int, float] = {}
    if not placement.placement_known:
        return accessed, home, {}
    for region in placement.regions:
        pages = region.page_bytes or {}
        for node, share in region.access_share.items():
            _add(accessed, node, share * sum(pages.values()))
        for node, size in pages.items():
            _add(home, node, size)
    movable = dict.fromkeys(placement.nodes, 0.0)
    for region in placement.to_move:
        assert region.move_to is not None   # to_move holds the regions with a node to move to
        _add(movable, region.move_to, region.move_bytes)
    return accessed, home, movable


def busiest_threads(snapshots: Sequence[Snapshot], keep: int = MAX_THREADS) -> Sequence[Snapshot]:
    """``snapshots`` with the reports by thread of the ``keep`` threads with the most reports only."""
    reports: Counter = Counter()
    for s in snapshots:
        reports.update({tid: int(counts.sum()) for tid, counts in s.by_tid.items()})
    if len(reports) <= keep:
        return snapshots
    kept = {tid for tid, _n in reports.most_common(keep)}
    return [replace(s, by_tid={tid: c for tid, c in s.by_tid.items() if tid in kept}) for s in snapshots]


def target_answers(rec: TargetRecord, top: int = TOP_PAIRS, samples: int = NUMA_SAMPLES,
                   query: Callable[[int, np.ndarray], np.ndarray] = numa_src.page_nodes) -> TargetAnswers:
    """Both answers over every snapshot of ``rec`` (one target, at least one snapshot)."""
    shared = sharing.sharing([replace(rec, snapshots=busiest_threads(rec.snapshots))], target_id=rec.target_id)
    windows = max(1, shared.nr_windows)
    pairs = [(p.a, p.b, p.shared_bytes / windows) for p in shared.pairs[:top]]
    groups = sum(len(g) > 1 for g in shared.groups)
    placement = numa.numa([rec], rec.target_id, samples=samples, query=query)
    return TargetAnswers(pairs, len(shared.pairs), groups, *_by_node(placement))
