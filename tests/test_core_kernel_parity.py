"""The region core against the kernel's own unit tests: cases transcribed from
mm/damon/tests/core-kunit.h and mm/damon/tests/vaddr-kunit.h (torvalds/linux), with the
kernel's byte addresses (DAMON_MIN_REGION is 1 in its kunit build, so ``page=1`` here)."""

import numpy as np
import pytest

from damon_bpf.core import regions as R
from damon_bpf.core.layout import three_regions


def regions_of(bounds, nr=None, age=None, last=None):
    regs = R.Regions.from_bounds([s for s, _ in bounds], [e for _, e in bounds])
    for name, values in (("nr_accesses", nr), ("age", age), ("last_nr_accesses", last)):
        if values is not None:
            setattr(regs, name, np.array(values, np.int64))
    return regs


def bounds_of(regs):
    return list(zip(regs.start.tolist(), regs.end.tolist()))


def test_split_at_gives_both_pieces_every_counter():
    # damon_test_split_at: [0, 100) with nr 42, last 15, age 10 split at 25
    regs = regions_of([(0, 100)], nr=[42], age=[10], last=[15])
    out = R.inherit(regs, np.array([0, 0]), np.array([0, 25], np.uint64), np.array([25, 100], np.uint64))
    assert bounds_of(out) == [(0, 25), (25, 100)]
    assert out.nr_accesses.tolist() == [42, 42]
    assert out.last_nr_accesses.tolist() == [15, 15]
    assert out.age.tolist() == [10, 10]


def test_merge_two_weights_nr_accesses_and_age_by_size():
    # damon_test_merge_two: [0, 100) nr 10 age 9 + [100, 300) nr 20 age 21 -> nr 16, age 17
    assert R.weighted(10, 100, 20, 200) == 16
    assert R.weighted(9, 100, 21, 200) == 17


def test_merge_regions_of():
    # damon_test_merge_regions_of: thres 9, sz_limit 9999
    sa = [0, 100, 114, 122, 130, 156, 170, 184, 230]
    ea = [100, 112, 122, 130, 156, 170, 184, 230, 10170]
    nrs = [0, 0, 10, 10, 20, 30, 1, 2, 5]
    out = R.merge_regions(regions_of(list(zip(sa, ea)), nr=nrs), 9, 9999, max_nr=1000, max_nr_accesses=20)
    assert bounds_of(out) == [(0, 112), (114, 130), (130, 156), (156, 170), (170, 230), (230, 10170)]
    # beyond the kunit case, the ages this pass gives (all last_nr_accesses 0): a region whose
    # nr_accesses moved by more than 9 restarts, the others grow, before merging
    assert out.age.tolist() == [1, 0, 0, 0, 1, 1]
    assert out.nr_accesses.tolist() == [0, 10, 20, 30, (1 * 14 + 2 * 46) // 60, 5]


def test_ages_before_merging_not_after():
    # Two one-page regions, thresh 2: the left changed (4 vs 0: restart), the right is steady
    # (4 vs 4: 6 -> 7). The kernel ages each, then merges: (0 + 7) // 2 = 3, keeping the left's
    # last_nr_accesses 0. Merging first (averaged last 2, |4 - 2| <= 2) would give age 7.
    regs = regions_of([(0, 1), (1, 2)], nr=[4, 4], age=[6, 6], last=[0, 4])
    out = R.merge_regions(regs, 2, 100, max_nr=10, max_nr_accesses=20)
    assert bounds_of(out) == [(0, 2)]
    assert out.age.tolist() == [3]
    assert out.nr_accesses.tolist() == [4]
    assert out.last_nr_accesses.tolist() == [0]


def test_each_repeated_pass_ages_again():
    # more regions than max_nr: kdamond_merge_regions runs the pass again with a doubled
    # threshold, and every pass ages each surviving region once more
    regs = regions_of([(i, i + 1) for i in range(4)], nr=[0, 4, 0, 4], age=[0] * 4, last=[0, 4, 0, 4])
    once = R.merge_regions(regs, 0, 100, max_nr=100, max_nr_accesses=20)
    assert len(once) == 4 and once.age.tolist() == [1, 1, 1, 1]
    out = R.merge_regions(regs, 0, 100, max_nr=2, max_nr_accesses=20)
    # pass 1 (thresh 0): no merge, all age 1; pass 2 (thresh 1): none merge, age 2;
    # pass 3 (thresh 2): none; pass 4 (thresh 4): all merge after ageing to 4
    assert len(out) == 1
    assert out.age.tolist() == [4]
    assert out.last_nr_accesses.tolist() == [0]


@pytest.mark.parametrize("old, new, expect", [
    # damon_test_set_regions: initial build up on an empty target
    ([], [(5, 15), (15, 25)], [(5, 15), (15, 25)]),
    # un-intersecting regions are removed
    ([(4, 16), (24, 32)], [(18, 23)], [(18, 23)]),
    # holes are filled with new regions
    ([(4, 16), (24, 32)], [(8, 28)], [(8, 16), (16, 24), (24, 28)]),
    # new regions can be appended
    ([(0, 4), (4, 17)], [(0, 15), (25, 40)], [(0, 4), (4, 15), (25, 40)]),
    # new regions can be inserted
    ([(0, 4), (42, 52)], [(0, 15), (25, 40), (44, 50)], [(0, 15), (25, 40), (44, 50)]),
    # vaddr-kunit damon_test_apply_three_regions1..4
    ([(10, 20), (20, 30), (50, 55), (55, 57), (57, 59), (70, 80), (80, 90), (90, 100)],
     [(5, 27), (45, 55), (73, 104)], [(5, 20), (20, 27), (45, 55), (73, 80), (80, 90), (90, 104)]),
    ([(10, 20), (20, 30), (50, 55), (55, 57), (57, 59), (70, 80), (80, 90), (90, 100)],
     [(5, 27), (56, 57), (65, 104)], [(5, 20), (20, 27), (56, 57), (65, 80), (80, 90), (90, 104)]),
    ([(10, 20), (20, 30), (50, 55), (55, 57), (57, 59), (70, 80), (80, 90), (90, 100)],
     [(5, 27), (61, 63), (65, 104)], [(5, 20), (20, 27), (61, 63), (65, 80), (80, 90), (90, 104)]),
    ([(10, 20), (20, 30), (50, 55), (55, 57), (57, 59), (70, 80), (80, 90), (90, 100)],
     [(5, 7), (30, 32), (65, 68)], [(5, 7), (30, 32), (65, 68)]),
])
def test_set_regions(old, new, expect):
    assert bounds_of(R.set_regions(regions_of(old), new)) == expect


def test_three_regions_in_vmas(monkeypatch):
    # damon_test_three_regions_in_vmas: 10-20-25, 200-210-220, 300-305, 307-330
    monkeypatch.setattr("damon_bpf.core.layout.page_size", lambda: 1)
    vmas = [(10, 20), (20, 25), (200, 210), (210, 220), (300, 305), (307, 330)]
    assert three_regions(vmas) == [(10, 25), (200, 220), (300, 330)]


@pytest.mark.parametrize("bounds, nr_subs, at_most", [
    # damon_test_split_regions_of
    ([(0, 22)], 2, 2),
    ([(0, 220)], 4, 4),
    ([(0, 220), (300, 400), (500, 700)], 4, 12),
])
def test_split_regions_of(bounds, nr_subs, at_most):
    out = R.split_regions(regions_of(bounds), nr_subs, 1, np.random.default_rng(0))
    assert len(bounds) <= len(out) <= at_most
    assert R.normalize_ranges(bounds_of(out), 1) == R.normalize_ranges(bounds, 1)
