import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from damon_bpf.core.index import RegionIndex

P = 4096


def reference(start, end, addr):
    """The plain answer: np.searchsorted, then a bounds check."""
    idx = np.searchsorted(start, addr, side="right") - 1
    ok = (idx >= 0) & (addr < end[np.maximum(idx, 0)])
    return np.where(ok, idx, len(start))


@st.composite
def layouts(draw):
    # (gap before, size) in pages; gap 0 makes the region contiguous with the previous one
    pieces = draw(st.lists(st.tuples(st.sampled_from([0, 0, 0, 1, 7, 2**20]), st.integers(1, 64)),
                           min_size=1, max_size=60))
    base = draw(st.sampled_from([0, P, 0x7F00_0000_0000]))
    start, end, pos = [], [], base
    for gap, size in pieces:
        pos += gap * P
        start.append(pos)
        pos += size * P
        end.append(pos)
    return np.array(start, np.uint64), np.array(end, np.uint64)


@settings(max_examples=150, deadline=None)
@given(layouts(), st.sampled_from([1, 4, 64, 1 << 16]), st.integers(0, 2**32))
def test_lookup_matches_searchsorted(layout, buckets, seed):
    start, end = layout
    rng = np.random.default_rng(seed)
    lo, hi = int(start[0]), int(end[-1])
    inside = rng.integers(lo, hi, 500, dtype=np.uint64)
    edges = np.concatenate([start, end, start - np.uint64(1), end - np.uint64(1)])
    wild = rng.integers(0, 2**64 - 1, 50, dtype=np.uint64, endpoint=True)
    addr = np.concatenate([inside, edges, wild, np.array([0, 2**64 - 1], np.uint64)])
    got = RegionIndex(start, end, buckets=buckets).lookup(addr)
    assert got.tolist() == reference(start, end, addr).tolist()


def test_many_runs_use_searchsorted_path():
    start = np.arange(0, 40 * P, 2 * P, dtype=np.uint64)  # 20 runs of one region each
    end = start + np.uint64(P)
    addr = np.arange(0, 41 * P, P // 2, dtype=np.uint64)
    assert RegionIndex(start, end).lookup(addr).tolist() == reference(start, end, addr).tolist()


def test_no_regions_means_every_address_is_outside():
    idx = RegionIndex(np.empty(0, np.uint64), np.empty(0, np.uint64)).lookup(np.array([0, 5], np.uint64))
    assert idx.tolist() == [0, 0]
