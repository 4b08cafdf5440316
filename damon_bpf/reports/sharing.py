"""Which threads (or processes) touch the same hot memory at the same time, and how to group them.

Per aggregation window, an entity (a thread of one target, or a target process) *accessed* a hot region
(``nr_accesses >= min_accesses``) when it has at least one report there. Two entities share the bytes of
the hot regions both accessed in the same window; over the record, ``shared_bytes(a, b)`` sums that,
``accessed(a)`` sums a's own bytes, and ``jaccard = shared / (accessed(a) + accessed(b) - shared)``.

Regions are DAMON's, so this is at region granularity: two threads touching different pages of one
region share its bytes. For processes, each target has its own regions; a window's regions of every
target are cut into common pieces first. The same virtual address in two processes is the same memory
only for mappings shared across fork (shared memory, e.g. PostgreSQL's shared_buffers); private memory
at one address is separate memory once written, so ``--by process`` is a hint there.

Grouping is greedy agglomerative with average linkage on Jaccard: start with each entity alone, merge
the two groups whose members' mean pairwise Jaccard is highest, while it is at least ``min_jaccard``
(and the merged group fits ``max_group``): threads that share most end up together, to place on one
LLC or node.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from rich import box
from rich.table import Table

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import UsageError
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports.common import comm_of, fmt_size, ppid_of, process_line, select_target

BY_MODES = ("thread", "process")
DEFAULT_MIN_JACCARD = 0.2


@dataclass
class Pair:
    a: int
    b: int
    shared_bytes: int
    jaccard: float


@dataclass
class Sharing:
    by: str
    nr_windows: int
    accessed: dict[int, int]  # entity -> bytes of hot regions it accessed, summed over windows
    pairs: list[Pair]  # shared_bytes > 0, most shared first
    groups: list[list[int]]  # biggest first; every accessing entity is in exactly one
    processes: dict[int, dict] = field(default_factory=dict)   # target id -> pid, comm, ppid (the targets read)


def _cut(pieces: list[tuple[int, np.ndarray, np.ndarray]]) -> tuple[list[int], np.ndarray, np.ndarray]:
    """Entities' hot intervals (sorted, disjoint per entity) cut into common pieces:
    (entities, membership matrix entities x pieces, piece sizes)."""
    bounds = np.unique(np.concatenate([np.concatenate([s, e]) for _, s, e in pieces]))
    lo, sizes = bounds[:-1], np.diff(bounds).astype(np.float64)
    member = np.zeros((len(pieces), len(lo)), dtype=bool)
    for row, (_, starts, ends) in enumerate(pieces):
        # a piece is inside one of the entity's intervals iff more starts than ends lie at or below it
        member[row] = (np.searchsorted(starts, lo, side="right") - np.searchsorted(ends, lo, side="right")) > 0
    return [ident for ident, _, _ in pieces], member, sizes


def _thread_pieces(s: Snapshot, min_accesses: int) -> list[tuple[int, np.ndarray, np.ndarray]]:
    hot = s.nr_accesses >= min_accesses
    return [(tid, s.start[hot & (counts > 0)], s.end[hot & (counts > 0)])
            for tid, counts in s.by_tid.items() if (hot & (counts > 0)).any()]


def _windows(records: list[TargetRecord], by: str, target_id: int | None, skip: int,
             min_accesses: int) -> dict[int, list]:
    """Window (aggregation end, in intervals) -> [(entity, starts, ends)] of what it accessed hot."""
    windows: dict[int, list] = {}
    if by == "thread":
        rec = select_target(records, target_id)
        for i, s in enumerate(rec.snapshots[skip:]):
            windows[i] = _thread_pieces(s, min_accesses)
        return windows
    for rec in records:
        if rec.meta.get("view") == "kernel-damon":
            continue  # no reports there: cannot tell who accessed
        aggr_ns = rec.aggr_us * 1000
        for s in rec.snapshots[skip:]:
            used = (s.nr_accesses >= min_accesses) & (s.nr_reports > 0)
            if used.any():
                windows.setdefault(round(s.end_ns / aggr_ns), []).append((rec.target_id, s.start[used], s.end[used]))
    return windows


def sharing(records: list[TargetRecord], by: str = "thread", target_id: int | None = None, skip: int = 0,
            min_accesses: int = 1, min_jaccard: float = DEFAULT_MIN_JACCARD,
            max_group: int | None = None) -> Sharing:
    """Shared hot bytes per pair of threads of one target (or of target processes) and the grouping."""
    if by not in BY_MODES:
        raise UsageError(f"unknown --by {by!r} (use {' or '.join(BY_MODES)})")
    if by == "process" and target_id is not None:
        raise UsageError("--by process compares every target: leave out --target")
    windows = _windows(records, by, target_id, skip, min_accesses)
    accessed, pairs = _totals(windows)
    shown = records if by == "process" else [select_target(records, target_id)]
    processes = {rec.target_id: {"pid": rec.pid, "comm": comm_of(rec), "ppid": ppid_of(rec)} for rec in shown}
    return Sharing(by, len(windows), accessed, pairs, group(accessed, pairs, min_jaccard, max_group), processes)


def _totals(windows: dict[int, list]) -> tuple[dict[int, int], list[Pair]]:
    """Each entity's accessed bytes and each pair's shared bytes, summed over the windows: one matrix of
    every entity, so a window costs numpy work, not a Python loop over its pairs (hundreds of threads)."""
    ids = sorted({ident for pieces in windows.values() for ident, _, _ in pieces})
    index = {ident: k for k, ident in enumerate(ids)}
    totals = np.zeros((len(ids), len(ids)))
    for pieces in windows.values():
        if not pieces:
            continue
        who, member, sizes = _cut(pieces)
        shared = (member * sizes) @ member.T.astype(np.float64)
        rows = np.array([index[ident] for ident in who])
        upper = np.triu_indices(len(who))   # each pair of pieces once (an entity can have two in a window)
        a, b = rows[upper[0]], rows[upper[1]]
        np.add.at(totals, (np.minimum(a, b), np.maximum(a, b)), shared[upper])
    accessed = {ident: int(totals[k, k]) for k, ident in enumerate(ids) if totals[k, k] > 0}
    i, j = np.nonzero(np.triu(totals, 1))
    pairs = sorted((Pair(ids[a], ids[b], int(totals[a, b]),
                         float(totals[a, b] / (totals[a, a] + totals[b, b] - totals[a, b]))) for a, b in zip(i, j)),
                   key=lambda p: (-p.shared_bytes, p.a, p.b))
    return accessed, pairs


def group(accessed: dict[int, int], pairs: list[Pair], min_jaccard: float = DEFAULT_MIN_JACCARD,
          max_group: int | None = None) -> list[list[int]]:
    """Greedy agglomerative grouping, average linkage on Jaccard (see the module's docstring).

    ``linked[g, h]`` holds the sum of the Jaccard of every pair across groups g and h (a merged group's
    row and column are the sums of its parts'), so a merge costs O(groups^2) numpy work, not a Python loop
    over every pair of members. Ties go to the first pair in the groups' order, as a scan would find it."""
    ids = sorted(accessed)
    index = {ident: k for k, ident in enumerate(ids)}
    linked = np.zeros((len(ids), len(ids)))
    for p in pairs:
        linked[index[p.a], index[p.b]] = linked[index[p.b], index[p.a]] = p.jaccard
    members = [[ident] for ident in ids]
    sizes = np.ones(len(ids))
    alive = np.ones(len(ids), dtype=bool)
    while alive.sum() > 1:
        allowed = np.triu(np.outer(alive, alive), 1)
        if max_group is not None:
            allowed &= np.add.outer(sizes, sizes) <= max_group
        mean = np.where(allowed, linked / np.outer(sizes, sizes), -np.inf)
        g, h = divmod(int(np.argmax(mean)), len(ids))   # the first maximum: lowest g, then lowest h
        if not allowed[g, h] or mean[g, h] < min_jaccard or mean[g, h] <= 0:
            break
        linked[g] += linked[h]
        linked[:, g] = linked[g]
        members[g], sizes[g], alive[h] = sorted(members[g] + members[h]), sizes[g] + sizes[h], False
    return sorted((members[k] for k in np.flatnonzero(alive)), key=lambda m: (-len(m), m))


def to_json(report: Sharing) -> dict:
    return {"by": report.by, "nr_windows": report.nr_windows,
            "accessed_bytes": {str(k): v for k, v in sorted(report.accessed.items())},
            "pairs": [{"a": p.a, "b": p.b, "shared_bytes": p.shared_bytes, "jaccard": p.jaccard}
                      for p in report.pairs],
            "groups": report.groups, "processes": {str(k): v for k, v in report.processes.items()}}


def table(report: Sharing, top: int = 20) -> Table:
    who = "TID" if report.by == "thread" else "target"
    together = [g for g in report.groups if len(g) > 1]
    caption = ("suggested groups: " + "  ".join("{" + ", ".join(map(str, g)) + "}" for g in together)
               if together else "suggested groups: none (no pair shares enough to group)")
    of = ""
    if report.by == "thread" and len(report.processes) == 1:
        (target_id, proc), = report.processes.items()
        of = " of " + process_line(target_id, proc["pid"], proc["comm"], proc["ppid"])
    elif report.processes:
        of = " (" + ", ".join(f"{k}: {v['comm'] or v['pid']}" for k, v in sorted(report.processes.items())) + ")"
    t = Table(title=f"hot memory shared by {report.by}s{of} over {report.nr_windows} aggregation windows",
              caption=caption, box=box.SIMPLE_HEAD, pad_edge=False)
    for name in (f"{who} a", f"{who} b", "shared", "a accessed", "b accessed", "jaccard"):
        t.add_column(name, justify="right")
    for p in report.pairs[:top]:
        t.add_row(str(p.a), str(p.b), fmt_size(p.shared_bytes), fmt_size(report.accessed[p.a]),
                  fmt_size(report.accessed[p.b]), f"{p.jaccard:.2f}")
    if not report.pairs:
        t.add_row("-", "-", "nothing shared", "", "", "")
    return t
