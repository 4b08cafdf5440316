import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from damon_bpf.core import regions as R
from damon_bpf.core.layout import page_size

P = page_size()


def make(bounds_pages, nr=None, age=None, last=None):
    """Regions from (start, end) in pages, with optional counters."""
    start = [s * P for s, _ in bounds_pages]
    end = [e * P for _, e in bounds_pages]
    regs = R.Regions.from_bounds(start, end)
    if nr is not None:
        regs.nr_accesses = np.array(nr, np.int64)
    if age is not None:
        regs.age = np.array(age, np.int64)
    if last is not None:
        regs.last_nr_accesses = np.array(last, np.int64)
    return regs


def bounds(regs):
    return list(zip((regs.start // P).tolist(), (regs.end // P).tolist()))


def check_wellformed(regs):
    assert regs.start.dtype == np.uint64 and regs.end.dtype == np.uint64
    assert np.all(regs.start < regs.end)
    assert np.all(regs.end[:-1] <= regs.start[1:])  # sorted and disjoint
    assert not np.any(regs.start % P) and not np.any(regs.end % P)
    n = len(regs)
    for a in (regs.nr_accesses, regs.last_nr_accesses, regs.age):
        assert a.shape == (n,)
    assert regs.counts.shape[1] == n


def covered(regs):
    """Union of the regions as sorted disjoint (start, end) in bytes."""
    return R.normalize_ranges(list(zip(regs.start.tolist(), regs.end.tolist())), P)


# ---- initial regions and range normalization


def test_initial_regions_reach_min_nr_regions_evenly():
    regs = R.initial_regions([(0, 1000 * P), (5000 * P, 5500 * P), (9000 * P, 9010 * P)], 10, P)
    check_wellformed(regs)
    assert len(regs) == 10
    assert covered(regs) == [(0, 1000 * P), (5000 * P, 5500 * P), (9000 * P, 9010 * P)]
    sizes = regs.sizes // P
    # size-proportional: the 1000-page range gets the most pieces, all of nearly equal size
    assert sorted(set(sizes[:6].tolist())) == [166, 167]


def test_initial_regions_top_up_what_the_floor_leaves_short():
    # DAMON's per-range floor gives 3 + 3 + 3 pieces of 45 pages; min_nr_regions asks for 10
    regs = R.initial_regions([(0, 150 * P), (1000 * P, 1150 * P), (2000 * P, 2150 * P)], 10, P)
    assert len(regs) == 10
    assert set((regs.sizes // P).tolist()) <= {37, 38, 50}


def test_initial_regions_are_capped_by_pages():
    regs = R.initial_regions([(0, 2 * P), (10 * P, 11 * P)], 10, P)
    assert bounds(regs) == [(0, 1), (1, 2), (10, 11)]


def test_normalize_ranges_aligns_sorts_coalesces():
    ranges = [(5 * P + 1, 6 * P), (0, P - 1), (P, 2 * P), (2 * P, 3 * P), (7 * P, 7 * P)]
    assert R.normalize_ranges(ranges, P) == [(0, 3 * P), (5 * P, 6 * P)]


def test_normalize_ranges_bridges_smallest_gaps_beyond_max():
    ranges = [(0, P), (2 * P, 3 * P), (10 * P, 11 * P), (12 * P, 13 * P)]
    assert R.normalize_ranges(ranges, P, max_ranges=2) == [(0, 3 * P), (10 * P, 13 * P)]


# ---- merge


def test_merge_limits():
    regs = make([(0, 100), (100, 250), (300, 301)], nr=[20, 19, 0])
    assert R.merge_limits(regs, 10, P) == (2, 251 * P // 10)
    regs.nr_accesses[:] = 9
    assert R.merge_limits(regs, 1000, P) == (0, P)  # at least one page


def test_merge_within_threshold_with_weighted_averages():
    regs = make([(0, 1), (1, 4), (4, 5)], nr=[10, 12, 20], age=[4, 8, 1], last=[0, 4, 20])
    out = R.merge_regions(regs, thresh=2, sz_limit=100 * P, max_nr=100, max_nr_accesses=20)
    assert bounds(out) == [(0, 4), (4, 5)]
    assert out.nr_accesses.tolist() == [(10 * 1 + 12 * 3) // 4, 20]
    # each region is aged before it merges: 10 vs 0 restarts, 12 vs 4 restarts, 20 vs 20 grows
    assert out.age.tolist() == [0, 2]
    assert out.last_nr_accesses.tolist() == [0, 20]  # the left region's, not averaged


def test_merge_threshold_is_inclusive_and_exact():
    regs = make([(0, 1), (1, 2)], nr=[5, 8])
    assert len(R.merge_regions(regs, 3, 100 * P, 100, 20)) == 1
    assert len(R.merge_regions(regs, 2, 100 * P, 100, 20)) == 2


def test_merge_compares_with_the_merged_average():
    # 0 and 2 merge (avg 1); 1 vs 4 differs by 3 > 2, so the third region stays apart even
    # though 2 vs 4 alone would merge.
    regs = make([(0, 1), (1, 2), (2, 3)], nr=[0, 2, 4])
    assert bounds(R.merge_regions(regs, 2, 100 * P, 100, 20)) == [(0, 2), (2, 3)]


def test_merge_respects_size_limit_and_gaps():
    regs = make([(0, 2), (2, 4), (5, 6)], nr=[1, 1, 1])
    assert len(R.merge_regions(regs, 0, 3 * P, 100, 20)) == 3  # 2+2 pages > 3 pages; 4..5 is a gap
    assert bounds(R.merge_regions(regs, 0, 4 * P, 100, 20)) == [(0, 4), (5, 6)]


def test_merge_doubles_threshold_while_above_max():
    regs = make([(i, i + 1) for i in range(8)], nr=[0, 4, 0, 4, 0, 4, 0, 4])
    assert len(R.merge_regions(regs, 0, 100 * P, max_nr=100, max_nr_accesses=20)) == 8
    out = R.merge_regions(regs, 0, 100 * P, max_nr=4, max_nr_accesses=20)
    assert len(out) <= 4
    # stops once thresh / 2 reaches max_nr_accesses, even above max_nr
    assert len(R.merge_regions(regs, 0, 100 * P, max_nr=4, max_nr_accesses=1)) > 4


def test_merge_sums_report_counts():
    regs = make([(0, 1), (1, 2), (2, 3)], nr=[1, 1, 9])
    regs.counts = np.array([[1, 2, 3], [10, 20, 30]], np.int64)
    out = R.merge_regions(regs, 0, 100 * P, 100, 20)
    assert out.counts.tolist() == [[3, 3], [30, 30]]


# ---- age


def test_age_rules():
    # regions far apart never merge, so each keeps its own age
    regs = make([(2 * i, 2 * i + 1) for i in range(6)], nr=[5, 7, 8, 0, 1, 0], last=[4, 5, 5, 0, 0, 2], age=[3] * 6)
    out = R.merge_regions(regs, thresh=2, sz_limit=100 * P, max_nr=100, max_nr_accesses=20)
    # |diff| <= thresh: +1 (2 is still within, also between zero and non-zero); |8-5| > 2: reset
    assert out.age.tolist() == [4, 4, 0, 4, 4, 4]


def test_reset_moves_nr_accesses_to_last():
    regs = make([(0, 1)], nr=[7], last=[1])
    regs.counts = np.ones((3, 1), np.int64)
    R.reset(regs)
    assert regs.last_nr_accesses.tolist() == [7] and regs.nr_accesses.tolist() == [0]
    assert regs.counts.shape == (0, 1)


# ---- split


def test_split_count_rules():
    assert R.split_count(501, 0, 1000) == 0  # more than max/2: no split
    assert R.split_count(500, 0, 1000) == 2
    assert R.split_count(300, 300, 1000) == 3  # unchanged since last split and < max/3
    assert R.split_count(333, 333, 1000) == 2  # not < max/3
    assert R.split_count(300, 299, 1000) == 2


def test_split_pieces_are_page_aligned_in_tenths():
    regs = make([(0, 100), (100, 102), (200, 203)], nr=[3, 4, 5], age=[6, 7, 8])
    out = R.split_regions(regs, 2, P, np.random.default_rng(1))
    check_wellformed(out)
    assert covered(out) == covered(regs)
    assert (100 * P, 102 * P) in list(zip(out.start.tolist(), out.end.tolist()))  # two pages: kept whole
    first = [(s, e) for s, e in bounds(out) if e <= 100]
    assert len(first) == 2 and first[0][1] in range(10, 91, 10)
    assert dict(zip(out.start.tolist(), out.nr_accesses.tolist()))[first[1][0] * P] == 3  # inherited
    assert set(out.age.tolist()) == {6, 7, 8}


def test_split_cuts_at_every_tenth_and_only_there():
    regs = make([(0, 100)])
    cuts = set()
    for seed in range(300):
        b = bounds(R.split_regions(regs, 2, P, np.random.default_rng(seed)))
        assert len(b) == 2  # 100 pages: every tenth is a page boundary, no cut fails
        cuts.add(b[0][1])
    assert cuts == set(range(10, 100, 10))


def test_split_in_three_cuts_the_left_piece_again():
    regs = make([(0, 1000)], nr=[2])
    for seed in range(20):
        out = R.split_regions(regs, 3, P, np.random.default_rng(seed))
        b = bounds(out)
        assert 2 <= len(b) <= 3 and b[-1][1] == 1000
        if len(b) == 3:
            cut2, cut1 = b[1][0], b[2][0]
            assert cut1 % 100 == 0 and cut2 < cut1


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 300), st.integers(0, 5)), min_size=1, max_size=40),
       st.integers(2, 3), st.integers(0, 2**32))
def test_split_preserves_coverage(pieces, nr_subs, seed):
    b, pos = [], 0
    for size, gap in pieces:
        b.append((pos + gap, pos + gap + size))
        pos += gap + size
    regs = make(b)
    out = R.split_regions(regs, nr_subs, P, np.random.default_rng(seed))
    check_wellformed(out)
    assert covered(out) == covered(regs)
    assert int(out.sizes.sum()) == int(regs.sizes.sum())
    assert len(regs) <= len(out) <= nr_subs * len(regs)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 50), st.integers(0, 20), st.integers(0, 1)), min_size=1, max_size=40),
       st.integers(0, 20), st.integers(1, 200), st.integers(1, 40))
def test_merge_preserves_coverage_and_bounds_count(pieces, thresh, limit_pages, max_nr):
    b, nr, pos = [], [], 0
    for size, accesses, gap in pieces:
        b.append((pos + gap, pos + gap + size))
        nr.append(accesses)
        pos += gap + size
    regs = make(b, nr=nr, last=nr[::-1])
    regs.counts = np.arange(2 * len(b), dtype=np.int64).reshape(2, len(b))
    out = R.merge_regions(regs, thresh, limit_pages * P, max_nr, 20)
    check_wellformed(out)
    assert covered(out) == covered(regs)
    assert out.counts.sum(axis=1).tolist() == regs.counts.sum(axis=1).tolist()
    assert out.nr_accesses.min() >= min(nr) and out.nr_accesses.max() <= max(nr)
    merged = out.sizes > regs.sizes.max()
    assert np.all(out.sizes[merged] <= limit_pages * P)


# ---- layout update (DAMON's damon_set_regions)


def test_set_regions_drops_stretches_and_fills():
    regs = make([(10, 20), (20, 30), (40, 50), (100, 110)], nr=[1, 2, 3, 4], age=[5, 6, 7, 8])
    regs.counts = np.array([[1, 1, 1, 1]], np.int64)
    out = R.set_regions(regs, [(5 * P, 60 * P), (200 * P, 210 * P)])
    check_wellformed(out)
    # 100..110 dropped; 10..20 stretched down to 5, 40..50 stretched up to 60; hole 30..40 filled;
    # 200..210 intersects nothing: one fresh region.
    assert bounds(out) == [(5, 20), (20, 30), (30, 40), (40, 60), (200, 210)]
    assert out.nr_accesses.tolist() == [1, 2, 0, 3, 0]
    assert out.age.tolist() == [5, 6, 0, 7, 0]
    assert out.counts.tolist() == [[1, 1, 0, 1, 0]]


def test_set_regions_clips_and_splits_across_ranges():
    regs = make([(0, 100)], nr=[9])
    regs.counts = np.array([[4]], np.int64)
    out = R.set_regions(regs, [(10 * P, 20 * P), (50 * P, 60 * P)])
    assert bounds(out) == [(10, 20), (50, 60)]
    assert out.nr_accesses.tolist() == [9, 9]
    assert out.counts.tolist() == [[4, 0]]  # report counts are never doubled


@settings(max_examples=80, deadline=None)
@given(st.lists(st.integers(0, 400), min_size=2, max_size=30), st.lists(st.integers(0, 400), min_size=2, max_size=12))
def test_set_regions_covers_exactly_the_ranges(region_cuts, range_cuts):
    cuts = sorted(set(region_cuts))
    if len(cuts) < 2:
        return
    regs = make(list(zip(cuts[:-1], cuts[1:]))[::2])  # every other piece: regions with gaps
    rc = sorted(set(range_cuts))
    ranges = R.normalize_ranges([(s * P, e * P) for s, e in zip(rc[:-1], rc[1:])][::2], P)
    out = R.set_regions(regs, ranges)
    check_wellformed(out)
    assert covered(out) == ranges
    kept = set(zip(out.start.tolist(), out.end.tolist()))
    old = list(zip(regs.start.tolist(), regs.end.tolist()))
    for rs, re in ranges:
        hits = [(s, e) for s, e in old if s < re and rs < e]
        if not hits:
            assert (rs, re) in kept  # nothing intersects: one fresh region
            continue
        # the first and last intersecting regions are stretched or clipped to the range ...
        assert (rs, hits[0][1] if len(hits) > 1 else re) in kept
        assert (hits[-1][0] if len(hits) > 1 else rs, re) in kept
        # ... and those between them are kept as they were
        assert all(h in kept for h in hits[1:-1])
