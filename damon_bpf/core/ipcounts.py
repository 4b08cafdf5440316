"""Which instructions made the reports of each region: (region, instruction pointer) counts of one aggregation.

The aggregator hands over the address, instruction pointer and region of every report it placed; they are kept
as distinct (region, ip) pairs with the address of one of their reports, and counted against the regions of the
snapshot only when the aggregation ends, so merges and layout updates in between need no bookkeeping (that
report's address finds its region). Names are given later, outside the core
(damon_bpf.sources.symbols): here an instruction is only a number.
"""

from __future__ import annotations

import numpy as np

_COMPACT_AT = 1 << 16   # buffered entries before they are reduced to distinct (region, ip) pairs
_FAST_IPS = 8           # distinct ips per batch counted without a sort
# The ip of a report made by an earlier image of the process (it exec'd since): the mappings known now are the
# new image's and would name it wrongly. No instruction lives at address 1.
BEFORE_EXEC = 1


class IpCounts:
    """Distinct (region, ip) pairs of the aggregation in progress, each with its count and the address of one of
    its reports; ``by_region`` counts them against the snapshot's regions.

    The representative address stays in its region until the aggregation ends: regions only merge, or lose pages
    at their edges in a layout update (a report there is then counted ``outside`` too)."""

    def __init__(self) -> None:
        self.clear()

    def clear(self) -> None:
        self._addr: list[np.ndarray] = []
        self._ip: list[np.ndarray] = []
        self._count: list[np.ndarray] = []
        self._idx: list[np.ndarray] = []
        self._buffered = 0

    def add(self, addr: np.ndarray, ip: np.ndarray, idx: np.ndarray) -> None:
        """Reports placed in regions ``idx`` (of the regions at that time). A batch's first few distinct ips
        are counted with a bincount each (a loop's faults share one ip: no sort); the rest are sorted."""
        rest = ip
        for _ in range(_FAST_IPS):
            if not len(rest):
                return
            mine = rest == rest[0]
            self._add_one_ip(addr[mine], idx[mine], rest[0])
            if mine.all():
                return
            addr, idx, rest = addr[~mine], idx[~mine], rest[~mine]
        self._append(addr, rest, idx, np.ones(len(rest), np.int64))   # reduced when enough have gathered

    def _add_one_ip(self, addr: np.ndarray, idx: np.ndarray, ip: np.uint64) -> None:
        counts = np.bincount(idx)
        regions = np.flatnonzero(counts)
        first = np.empty(len(counts), np.intp)
        first[idx[::-1]] = np.arange(len(idx) - 1, -1, -1)   # each region's first report (the last write wins)
        self._append(addr[first[regions]], np.full(len(regions), ip, np.uint64), regions, counts[regions])

    def _append(self, addr: np.ndarray, ip: np.ndarray, idx: np.ndarray, count: np.ndarray) -> None:
        self._addr.append(addr)
        self._ip.append(ip)
        self._idx.append(idx.astype(np.int64, copy=False))
        self._count.append(count)
        self._buffered += len(addr)
        if self._buffered > _COMPACT_AT:
            self._compact()

    def _compact(self) -> None:
        """One entry per (region, ip) with its summed count and one representative address."""
        addr, ip, idx, count = (np.concatenate(parts) for parts in (self._addr, self._ip, self._idx, self._count))
        order = np.lexsort((ip, idx))
        idx, ip = idx[order], ip[order]
        first = np.flatnonzero(np.r_[True, (idx[1:] != idx[:-1]) | (ip[1:] != ip[:-1])])
        self._addr, self._ip, self._idx = [addr[order][first]], [ip[first]], [idx[first]]
        self._count = [np.add.reduceat(count[order], first)]
        self._buffered = len(first)

    def by_region(self, start: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(region index, ip, count) of every distinct pair, for regions ``[start, end)`` in address order.
        Reports in none of them (their region was dropped by a layout update) are left out."""
        if not self._addr:
            return np.empty(0, np.int64), np.empty(0, np.uint64), np.empty(0, np.int64)
        addr, ip, count = (np.concatenate(parts) for parts in (self._addr, self._ip, self._count))
        region = np.searchsorted(start, addr, side="right").astype(np.int64) - 1
        inside = (region >= 0) & (addr < end[np.maximum(region, 0)])
        region, ip, count = region[inside], ip[inside], count[inside]
        ips, ip_index = np.unique(ip, return_inverse=True)
        keys, key_index = np.unique(region * max(1, len(ips)) + ip_index.reshape(-1), return_inverse=True)
        counts = np.bincount(key_index.reshape(-1), weights=count, minlength=len(keys)).astype(np.int64)
        return keys // max(1, len(ips)), ips[keys % max(1, len(ips))], counts

    def retire(self) -> None:
        """The process exec'd: every ip buffered so far is of its old image."""
        self._ip = [np.full_like(ip, BEFORE_EXEC) for ip in self._ip]
