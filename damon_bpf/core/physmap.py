"""Kernel DAMON's physical regions seen from one process (docs/design.md §16).

DAMON's ``paddr`` operations monitor physical memory: a region is a range of page frames. A process's
heat is read off them through its page table: each resident page of the process takes the
``nr_accesses`` and ``age`` of the physical region its frame lies in (by page: a page is wholly in one
region, so a region that covers some of a process's pages and some of others' gives each its own
pages, and a page shared with other processes is as hot as its frame, whoever touched it). The pages
are then joined, in virtual address order, into regions as DAMON would show them: neighbouring pages
of one virtual run join while their ``nr_accesses`` differ by at most a threshold, 0 first and
doubled until there are at most ``max_nr`` regions (or it passes the largest ``nr_accesses``); a
joined region takes the pages' mean ``nr_accesses`` and age, rounded down, as DAMON's merge does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PageMap:
    """A process's resident pages at one moment: virtual page numbers, ascending, and their frames."""

    vpages: np.ndarray   # int64
    pfns: np.ndarray     # int64, one per vpage

    def frame_addrs(self, page: int) -> np.ndarray:
        return self.pfns.astype(np.uint64) * np.uint64(page)


@dataclass(frozen=True)
class VirtualRegions:
    """What one physical snapshot says of one process: its regions, and how much of it was seen."""

    start: np.ndarray        # uint64 virtual addresses
    end: np.ndarray
    nr_accesses: np.ndarray  # uint64
    age: np.ndarray
    pages_seen: int          # resident pages whose frame lay in a physical region
    pages_unseen: int        # resident pages outside every region (not monitored)


def region_of_pages(pfns: np.ndarray, start: np.ndarray, end: np.ndarray, page: int) -> np.ndarray:
    """Index of the physical region (``start``/``end`` in bytes, ascending, disjoint) holding each
    frame, -1 where none does."""
    addrs = pfns.astype(np.uint64) * np.uint64(page)
    idx = np.searchsorted(start.astype(np.uint64), addrs, side="right").astype(np.int64) - 1
    inside = idx >= 0
    inside[inside] = addrs[inside] < end.astype(np.uint64)[idx[inside]]
    return np.where(inside, idx, -1)


def to_virtual(pagemap: PageMap, start: np.ndarray, end: np.ndarray, nr_accesses: np.ndarray, age: np.ndarray,
               page: int, max_nr: int) -> VirtualRegions:
    """The process's view of one physical snapshot (regions ``start``..``end`` with their counters)."""
    order = np.argsort(start, kind="stable")
    start, end = np.asarray(start)[order], np.asarray(end)[order]
    nr_accesses, age = np.asarray(nr_accesses)[order].astype(np.int64), np.asarray(age)[order].astype(np.int64)
    idx = region_of_pages(pagemap.pfns, start, end, page)
    seen = idx >= 0
    vpages, idx = pagemap.vpages[seen], idx[seen]
    empty = np.zeros(0, np.uint64)
    if len(vpages) == 0:
        return VirtualRegions(empty, empty, empty, empty, 0, len(seen))
    nr, ages = nr_accesses[idx], age[idx]
    firsts = _run_starts(vpages, nr, max_nr)
    lasts = np.r_[firsts[1:], len(vpages)] - 1
    counts = np.diff(np.r_[firsts, len(vpages)])
    size = np.uint64(page)
    return VirtualRegions(vpages[firsts].astype(np.uint64) * size, (vpages[lasts] + 1).astype(np.uint64) * size,
                          (np.add.reduceat(nr, firsts) // counts).astype(np.uint64),
                          (np.add.reduceat(ages, firsts) // counts).astype(np.uint64),
                          int(seen.sum()), int((~seen).sum()))


def _run_starts(vpages: np.ndarray, nr: np.ndarray, max_nr: int) -> np.ndarray:
    """First page of each region: a region breaks where the virtual pages are not contiguous, or
    where the next page's nr_accesses differs by more than the threshold (doubled from 0 until at
    most ``max_nr`` regions remain or the threshold passes the largest nr_accesses)."""
    gap = np.diff(vpages) != 1
    step = np.abs(np.diff(nr))
    thresh, top = 0, int(nr.max())
    while True:
        breaks = gap | (step > thresh)
        if int(breaks.sum()) + 1 <= max_nr or thresh > top:
            return np.r_[0, np.flatnonzero(breaks) + 1]
        thresh = max(1, thresh * 2)
