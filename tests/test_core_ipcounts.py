"""(region, ip) counts of an aggregation: exact against a plain count, also after compaction and when the
regions merge before the aggregation ends; the aggregator's snapshots carry them for every placed report."""

from __future__ import annotations

from collections import Counter

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from damon_bpf.core import ipcounts
from damon_bpf.core.ipcounts import IpCounts
from test_core_aggregator import fixed_aggregator, records, region_addr, sample_time

P = 4096
BOUNDS = np.arange(0, 9 * P, P, dtype=np.uint64)   # 8 regions of a page each


def _expected(addr, ip, start, end):
    out = Counter()
    for a, i in zip(addr.tolist(), ip.tolist()):
        region = int(np.searchsorted(start, a, side="right")) - 1
        if region >= 0 and a < end[region]:
            out[(region, i)] += 1
    return out


def _got(counts: IpCounts, start, end):
    region, ip, count = counts.by_region(start, end)
    return Counter({(r, i): c for r, i, c in zip(region.tolist(), ip.tolist(), count.tolist())})


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 8 * P - 1), st.sampled_from([0, 0x401000, 0x401004, 2**64 - 1])),
                max_size=200), st.integers(1, 64), st.integers(0, 3), st.booleans())
def test_counts_per_region_and_ip(reports, compact_at, fast_ips, merge):
    addr = np.array([a for a, _ in reports], np.uint64)
    ip = np.array([i for _, i in reports], np.uint64)
    start, end = BOUNDS[:-1], BOUNDS[1:]
    counts = IpCounts()
    saved = ipcounts._COMPACT_AT, ipcounts._FAST_IPS
    ipcounts._COMPACT_AT, ipcounts._FAST_IPS = compact_at, fast_ips   # every path: bincounts, sorts, compaction
    try:
        for lo in range(0, len(addr), 7):   # batches, as the aggregator places them
            part = slice(lo, lo + 7)
            counts.add(addr[part], ip[part], (addr[part] // np.uint64(P)).astype(np.int64))
    finally:
        ipcounts._COMPACT_AT, ipcounts._FAST_IPS = saved
    if merge:   # pairs of regions merged before the aggregation ended
        start, end = start[::2], end[1::2]
    assert _got(counts, start, end) == _expected(addr, ip, start, end)


def test_nothing_buffered_gives_empty_arrays():
    region, ip, count = IpCounts().by_region(BOUNDS[:-1], BOUNDS[1:])
    assert len(region) == len(ip) == len(count) == 0


def test_snapshots_count_every_placed_report_by_ip():
    agg = fixed_aggregator()
    agg.feed(records(*[(region_addr(i % 3), sample_time(1), 0, 1, 0, 0x1000 + i % 2) for i in range(30)]))
    snap = next(s for s in agg.close(sample_time(40)) if s.nr_reports.sum())
    region, ip, count = snap.ips
    per_region = np.bincount(region, weights=count, minlength=snap.nr_regions)
    assert (per_region == snap.nr_reports).all() and set(ip.tolist()) == {0x1000, 0x1001}
