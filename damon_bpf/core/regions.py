"""DAMON's regions and the rules that reshape them (docs/design.md §3 and §5), as pure functions.

A ``Regions`` holds one target's regions in address order as parallel numpy arrays. The
functions below return new ``Regions`` (or update counters in place where said) and never touch
time or access reports; the aggregator decides when each runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

Range = tuple[int, int]


@dataclass
class Regions:
    """Regions of one target. ``start``/``end`` are uint64 (the dtype of report addresses, so
    lookups compare without casting); the rest are int64. ``counts`` holds the per-aggregation
    report counters, one column per region; damon_bpf.core.attribution owns its rows."""

    start: np.ndarray
    end: np.ndarray
    nr_accesses: np.ndarray
    last_nr_accesses: np.ndarray
    age: np.ndarray
    counts: np.ndarray

    @classmethod
    def from_bounds(cls, start: Sequence[int] | np.ndarray, end: Sequence[int] | np.ndarray,
                    rows: int = 0) -> "Regions":
        """Fresh regions: every counter zero."""
        n = len(start)
        zeros = np.zeros(n, np.int64)
        return cls(np.asarray(start, np.uint64), np.asarray(end, np.uint64),
                   zeros, zeros.copy(), zeros.copy(), np.zeros((rows, n), np.int64))

    def __len__(self) -> int:
        return len(self.start)

    @property
    def sizes(self) -> np.ndarray:
        return (self.end - self.start).astype(np.int64)


def normalize_ranges(ranges: Sequence[Range], page: int, max_ranges: Optional[int] = None) -> list[Range]:
    """Page-align, sort and coalesce ``ranges``; with more than ``max_ranges`` left, bridge the
    smallest gaps, since no region can span a gap and each range needs at least one region."""
    merged: list[list[int]] = []
    for s, e in sorted((s - s % page, -(-e // page) * page) for s, e in ranges):
        if s >= e:
            continue
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    if max_ranges is not None and len(merged) > max_ranges:
        gaps = [merged[i + 1][0] - merged[i][1] for i in range(len(merged) - 1)]
        bridged = set(np.argsort(gaps, kind="stable")[: len(merged) - max_ranges].tolist())
        kept: list[list[int]] = [merged[0]]
        for i, nxt in enumerate(merged[1:]):
            if i in bridged:
                kept[-1][1] = nxt[1]
            else:
                kept.append(nxt)
        merged = kept
    return [(s, e) for s, e in merged]


def page_ranges(addr: np.ndarray, page: int, max_ranges: int) -> list[tuple[int, int]]:
    """The pages of ``addr`` as at most ``max_ranges`` ranges, bridging all but the largest gaps,
    as DAMON's three regions bridge all but the two largest: a process known only by its reports
    must not cost a region per page it touched (and a process's scattered physical pages, in
    sources/kdamond_paddr.py, not a DAMON region per run of frames)."""
    pages = np.unique(addr // np.uint64(page)).astype(np.int64)
    gaps = np.diff(pages)
    # the largest max_ranges - 1 gaps are kept (all of them when there are fewer)
    cuts: np.ndarray | list[int] = (
        np.argsort(gaps, kind="stable")[max(0, len(gaps) - (max_ranges - 1)):] if max_ranges > 1 else [])
    cuts = np.sort(np.asarray(cuts, np.int64)[gaps[cuts] > 1]) if len(gaps) else np.empty(0, np.int64)
    starts = pages[np.r_[0, cuts + 1]]
    ends = pages[np.r_[cuts, len(pages) - 1]] + 1
    return [(int(s) * page, int(e) * page) for s, e in zip(starts, ends)]


def _piece_counts(pages: list[int], min_nr: int) -> list[int]:
    """How many even pieces each range gets: DAMON's ``size / (total / min_nr)`` (at least one),
    then one more piece at a time for the range with the largest pieces until there are
    ``min_nr`` in all (the kernel's floor can leave up to one piece per range short)."""
    unit = max(1, sum(pages) // min_nr)
    pieces = [max(1, p // unit) for p in pages]
    while sum(pieces) < min_nr:
        open_ = [i for i, p in enumerate(pages) if pieces[i] < p]
        if not open_:
            break
        grow = max(open_, key=lambda i: pages[i] / pieces[i])
        pieces[grow] += 1
    return pieces


def initial_regions(ranges: Sequence[Range], min_nr: int, page: int, rows: int = 0) -> Regions:
    """Regions covering normalized ``ranges``, each range split evenly (page aligned)."""
    pages = [(e - s) // page for s, e in ranges]
    starts, ends = [], []
    for (s, _), p, n in zip(ranges, pages, _piece_counts(pages, min_nr)):
        bounds = s + (np.arange(n + 1, dtype=np.int64) * p // n) * page
        starts.append(bounds[:-1])
        ends.append(bounds[1:])
    if not starts:
        return Regions.from_bounds([], [], rows)
    return Regions.from_bounds(np.concatenate(starts), np.concatenate(ends), rows)


def inherit(regs: Regions, parent: np.ndarray, start: np.ndarray, end: np.ndarray) -> Regions:
    """New regions ``[start, end)`` taking the counters of ``regs[parent]`` (fresh where parent
    is -1). Report counts go to the first piece of a parent only, so they are never doubled."""
    parent = np.asarray(parent, np.int64)
    fresh = parent < 0
    out = Regions.from_bounds(start, end, regs.counts.shape[0])
    if len(regs) == 0 or fresh.all():
        return out
    src = np.where(fresh, 0, parent)
    for name in ("nr_accesses", "last_nr_accesses", "age"):
        values = getattr(regs, name)[src]
        values[fresh] = 0
        setattr(out, name, values)
    first = ~fresh & (parent != np.concatenate([[-2], parent[:-1]]))
    out.counts = np.where(first, regs.counts[:, src], 0)
    return out


def set_regions(regs: Regions, ranges: Sequence[Range]) -> Regions:
    """DAMON's update rule (damon_set_regions) for any normalized ranges: drop regions that
    intersect no range, stretch or clip the first and last region of each range to its bounds,
    and fill holes inside a range with fresh regions. A range nothing intersects becomes one
    fresh region."""
    start, end = regs.start.tolist(), regs.end.tolist()
    new_start: list[int] = []
    new_end: list[int] = []
    parent: list[int] = []

    def add(s: int, e: int, p: int) -> None:
        new_start.append(s)
        new_end.append(e)
        parent.append(p)

    for rs, re in ranges:
        first = int(np.searchsorted(regs.end, np.uint64(rs), side="right"))  # first with end > rs
        stop = int(np.searchsorted(regs.start, np.uint64(re), side="left"))  # regions with start < re
        if first >= stop:
            add(rs, re, -1)
            continue
        cursor = rs
        for i in range(first, stop):
            s = rs if i == first else start[i]
            e = re if i == stop - 1 else end[i]
            if s > cursor:
                add(cursor, s, -1)  # a hole between two surviving regions
            add(s, e, i)
            cursor = e
    return inherit(regs, np.array(parent, np.int64), np.array(new_start, np.uint64), np.array(new_end, np.uint64))


def merge_limits(regs: Regions, min_nr: int, page: int) -> tuple[int, int]:
    """``thresh`` and ``sz_limit`` of this aggregation's merge (docs/design.md §5 step 1): a tenth of
    the largest nr_accesses, and the target's size over min_nr_regions (at least a page)."""
    thresh = int(regs.nr_accesses.max()) // 10 if len(regs) else 0
    return thresh, max(page, int(regs.sizes.sum()) // min_nr)


def weighted(left: int, sz_l: int, right: int, sz_r: int) -> int:
    """damon_merge_two_regions' size-weighted integer average (for nr_accesses and age)."""
    return (left * sz_l + right * sz_r) // (sz_l + sz_r)


def _aged(nr: int, last: int, age: int, thresh: int) -> int:
    """The kernel's ageing inside damon_merge_regions_of: restart when the access frequency
    changed by more than ``thresh``, else one aggregation older. (A 2025 patch on the DAMON list
    also restarts on zero <-> non-zero; mainline's core.c, which we follow, does not.)"""
    return 0 if abs(nr - last) > thresh else age + 1


def _merge_groups(regs: Regions, thresh: int, sz_limit: int) -> tuple[list[int], list[tuple[int, int, int]]]:
    """One left-to-right pass of the kernel's damon_merge_regions_of: each region is first aged,
    then either joins the group on its left (compared with the group's averaged nr_accesses) or
    starts one. A group keeps its first region's last_nr_accesses, as damon_merge_two_regions
    averages only nr_accesses and age. Returns the index of each group's first region and its
    (nr_accesses, age, last_nr_accesses). Python ints: size * age overflows int64 on large targets."""
    start, end = regs.start.tolist(), regs.end.tolist()
    nr, age, last = regs.nr_accesses.tolist(), regs.age.tolist(), regs.last_nr_accesses.tolist()
    firsts, values = [0], [(nr[0], _aged(nr[0], last[0], age[0], thresh), last[0])]
    g_start, g_end = start[0], end[0]
    for i in range(1, len(start)):
        g_nr, g_age, g_last = values[-1]
        age_i = _aged(nr[i], last[i], age[i], thresh)
        sz_l, sz_r = g_end - g_start, end[i] - start[i]
        if g_end == start[i] and abs(g_nr - nr[i]) <= thresh and sz_l + sz_r <= sz_limit:
            values[-1] = (weighted(g_nr, sz_l, nr[i], sz_r), weighted(g_age, sz_l, age_i, sz_r), g_last)
            g_end = end[i]
        else:
            firsts.append(i)
            values.append((nr[i], age_i, last[i]))
            g_start, g_end = start[i], end[i]
    return firsts, values


def _merge_pass(regs: Regions, thresh: int, sz_limit: int) -> Regions:
    if len(regs) == 0:
        return regs
    firsts, values = _merge_groups(regs, thresh, sz_limit)
    nr, age, last = (np.array(v, np.int64) for v in zip(*values))
    if len(firsts) == len(regs):
        return Regions(regs.start, regs.end, nr, last, age, regs.counts)
    lasts = np.array(firsts[1:] + [len(regs)]) - 1
    # Report counters are counts, so a merged region has their sum.
    counts = np.add.reduceat(regs.counts, firsts, axis=1)
    return Regions(regs.start[firsts], regs.end[lasts], nr, last, age, counts)


def merge_regions(regs: Regions, thresh: int, sz_limit: int, max_nr: int, max_nr_accesses: int) -> Regions:
    """docs/design.md §5 step 1 (kdamond_merge_regions): merge passes that also age every region,
    repeated with a doubled threshold while there are more than ``max_nr`` regions and
    ``thresh / 2 < max_nr_accesses``; each repeated pass ages the regions again, as the kernel's."""
    while True:
        regs = _merge_pass(regs, thresh, sz_limit)
        thresh = max(1, thresh * 2)
        if not (len(regs) > max_nr and thresh // 2 < max_nr_accesses):
            return regs


def reset(regs: Regions) -> None:
    """docs/design.md §5 step 3, in place. New arrays rather than zeroing, so a snapshot may keep
    views of the old counters."""
    regs.last_nr_accesses = regs.nr_accesses
    regs.nr_accesses = np.zeros(len(regs), np.int64)
    regs.counts = np.zeros((0, len(regs)), np.int64)


def split_count(nr_regions: int, last_split_nr: int, max_nr: int) -> int:
    """Pieces per region for this split (kdamond_split_regions): 0 to skip when there are more
    than max/2 regions, 3 when the count did not change since the previous split and is below
    max/3, else 2."""
    if nr_regions > max_nr // 2:
        return 0
    if nr_regions == last_split_nr and nr_regions < max_nr // 3:
        return 3
    return 2


def split_regions(regs: Regions, nr_subs: int, page: int, rng: np.random.Generator) -> Regions:
    """docs/design.md §5 step 4 (damon_split_regions_of): cut each region larger than two pages at a
    random 10%..90% point (in tenths, as the kernel's damon_rand(1, 10)), page aligned; with 3
    pieces the left piece is cut again. A cut that would leave an empty piece is skipped."""
    if len(regs) == 0 or nr_subs < 2:
        return regs
    tenths = rng.integers(1, 10, size=(len(regs), nr_subs - 1))
    size = regs.sizes
    cuts = [regs.start]
    for j in range(nr_subs - 1):
        sub = tenths[:, j] * size // 10
        sub -= sub % page
        ok = (size > 2 * page) & (sub > 0) & (sub < size)
        cuts.append(regs.start[ok] + sub[ok].astype(np.uint64))
        size = np.where(ok, sub, size)
    start = np.sort(np.concatenate(cuts))
    parent = np.searchsorted(regs.start, start, side="right") - 1
    following = np.append(start[1:], np.uint64(np.iinfo(np.uint64).max))
    end = np.minimum(following, regs.end[parent])
    return inherit(regs, parent, start, end)
