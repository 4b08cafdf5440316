import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from damon_bpf.access import ACCESS_DTYPE, ACCESS_READ, ACCESS_UNKNOWN, ACCESS_WRITE
from damon_bpf.core import regions as R
from damon_bpf.core.aggregator import Aggregator
from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.core.layout import page_size
from damon_bpf.errors import TargetError, UsageError

P = page_size()
US = 1000  # ns
T0 = 10**12  # start_ns: a realistic CLOCK_MONOTONIC value, not zero
# 10 samples of 1 ms per aggregation. With min = max = 3 on a 300-page range, each of the three
# regions is exactly sz_limit (so none merge) and 3 > max/2 (so none split): fixed regions.
FIXED = MonitoringAttrs(sample_interval_us=1000, aggr_interval_us=10000, update_interval_us=10**6,
                        min_nr_regions=3, max_nr_regions=3)
RANGE = (0x10000 * P, 0x10000 * P + 300 * P)


def region_addr(i, offset=0):
    return RANGE[0] + i * 100 * P + offset


def records(*rows):
    """rows: (addr, time_ns[, cpu, tid, write[, ip]])"""
    out = np.zeros(len(rows), ACCESS_DTYPE)
    for i, row in enumerate(rows):
        addr, t, cpu, tid, write = (tuple(row) + (0, 1, ACCESS_READ))[:5] if len(row) == 2 else row[:5]
        out[i] = (addr, t, cpu, 0, tid, write, 0, 0, row[5] if len(row) > 5 else 0)
    return out


def fixed_aggregator(**kw):
    return Aggregator(FIXED, lambda: [RANGE], start_ns=T0, **kw)


def sample_time(k, within=0):
    return T0 + k * 1000 * US + within


def test_rejects_bad_attributes():
    with pytest.raises(UsageError):
        Aggregator(MonitoringAttrs(min_nr_regions=2), lambda: [RANGE], 0)


def test_initial_regions_follow_the_layout():
    agg = fixed_aggregator()
    assert agg.nr_regions == 3
    assert agg.regions.start.tolist() == [region_addr(0), region_addr(1), region_addr(2)]


def test_region_counts_once_per_sample_and_reports_all():
    agg = fixed_aggregator()
    agg.feed(records(*[(region_addr(0, j * P), sample_time(0, j)) for j in range(5)],
                     (region_addr(0), sample_time(1)),
                     *[(region_addr(2), sample_time(9, j)) for j in range(3)]))
    (snap,) = agg.advance(sample_time(10))
    assert snap.nr_accesses.tolist() == [2, 0, 1]
    assert snap.nr_reports.tolist() == [6, 0, 3]
    assert (snap.start_ns, snap.end_ns) == (T0, sample_time(10))


def test_age_follows_the_aggregation_threshold():
    agg = fixed_aggregator()
    agg.feed(records(*[(region_addr(0), sample_time(k)) for k in range(10)],
                     *[(region_addr(1), sample_time(k)) for k in range(5)],
                     *[(region_addr(0), sample_time(10 + k)) for k in range(10)],
                     *[(region_addr(1), sample_time(10 + k)) for k in range(4)]))
    first, second = agg.advance(sample_time(20))
    assert first.nr_accesses.tolist() == [10, 5, 0] and second.nr_accesses.tolist() == [10, 4, 0]
    # first: zero -> non-zero restarts age, zero stays zero ages; second: thresh = 10 // 10 = 1,
    # so 5 -> 4 is the same frequency and ages too
    assert first.age.tolist() == [0, 0, 1]
    assert second.age.tolist() == [1, 1, 2]


def test_sample_and_aggregation_boundaries():
    agg = fixed_aggregator()
    # the first instant of sample 1, the last of sample 9, the first of the next aggregation
    agg.feed(records((region_addr(0), sample_time(0)), (region_addr(0), sample_time(1) - 1),
                     (region_addr(0), sample_time(1)), (region_addr(1), sample_time(10) - 1),
                     (region_addr(2), sample_time(10))))
    assert agg.advance(sample_time(10) - 1) == []  # sample 9 has not ended yet
    (first,) = agg.advance(sample_time(10))
    assert first.nr_accesses.tolist() == [2, 1, 0]
    assert agg.pending == 1
    (second,) = agg.advance(sample_time(20))
    assert second.nr_accesses.tolist() == [0, 0, 1]
    assert second.start_ns == first.end_ns
    assert agg.snapshots_emitted == 2


def test_long_aggregations_of_many_regions_count_samples_too():
    # 10000 samples x 500 regions: too large a table for the bincount path, np.unique does it
    attrs = MonitoringAttrs(sample_interval_us=100, aggr_interval_us=1_000_000, min_nr_regions=500, max_nr_regions=500)
    base = RANGE[0]
    sample = 100 * US   # the collector's floor (MIN_SAMPLE_US)
    agg = Aggregator(attrs, lambda: [(base, base + 500 * 4 * P)], T0)
    agg.feed(records(*[(base, T0 + k * sample + j) for k in range(10) for j in (0, 5)],
                     (base + 499 * 4 * P, T0 + 9999 * sample), (base + 499 * 4 * P, T0 + 9999 * sample + 999)))
    (snap,) = agg.advance(T0 + 10000 * sample)
    assert snap.nr_regions == 500
    assert (snap.nr_accesses[0], snap.nr_accesses[499], snap.nr_accesses.sum()) == (10, 1, 11)


def test_advance_closes_several_aggregations_at_once():
    agg = fixed_aggregator()
    agg.feed(records((region_addr(1), sample_time(35))))
    snaps = agg.advance(sample_time(40) + 5)
    assert [s.end_ns for s in snaps] == [sample_time(10 * k) for k in (1, 2, 3, 4)]
    assert [s.nr_reports.sum() for s in snaps] == [0, 0, 0, 1]


def test_late_reports_are_counted_never_dropped():
    agg = fixed_aggregator()
    agg.feed(records((region_addr(0), T0 - 1)))  # before start_ns
    agg.advance(sample_time(5))
    agg.feed(records((region_addr(0), sample_time(4, 999)), (region_addr(0), sample_time(2)),
                     (region_addr(0), sample_time(5))))  # two closed samples, one open
    assert agg.late == 3
    (snap,) = agg.advance(sample_time(10))
    assert snap.nr_reports.tolist() == [1, 0, 0]


def test_reports_outside_the_regions_get_regions():
    calls = []
    new_mapping = (RANGE[1] + 100 * P, RANGE[1] + 200 * P)

    def layout():  # a mapping appears after the first read
        calls.append(1)
        return [RANGE] if len(calls) == 1 else [RANGE, new_mapping]

    agg = Aggregator(FIXED, layout, start_ns=T0)
    agg.feed(records((new_mapping[0] + 5 * P, sample_time(0)), (0x1000 * P + 7, sample_time(1)),
                     (region_addr(1), sample_time(0))))
    (snap,) = agg.advance(sample_time(10))
    # the new mapping came from a fresh read; the unmapped address got a region of its own page
    assert (agg.rereads, agg.report_ranges, agg.outside) == (1, 1, 0)
    assert snap.nr_reports.sum() == 3 == agg.in_regions
    covered = list(zip(snap.start.tolist(), snap.end.tolist()))
    assert (0x1000 * P, 0x1001 * P) in covered
    assert R.normalize_ranges(covered, P) == [(0x1000 * P, 0x1001 * P), RANGE, new_mapping]
    assert len(calls) == 2  # one re-read, not one per report


def test_a_process_gone_before_its_first_read_gets_regions_from_its_reports():
    def layout():
        raise TargetError("process 42 is gone")

    agg = Aggregator(FIXED, layout, start_ns=T0)
    assert agg.exited and agg.nr_regions == 0
    agg.feed(records(*[(0x7000 * P + j * P, sample_time(2)) for j in range(4)], (0x9000 * P, sample_time(3))))
    (snap,) = agg.close(sample_time(4))
    assert snap.nr_reports.sum() == 5 and agg.outside == 0
    assert (snap.start_ns, snap.end_ns) == (T0, sample_time(4))  # partial: 4 of 10 samples


def test_attribution_by_kind_cpu_and_thread():
    agg = fixed_aggregator()
    t = sample_time(3)
    agg.feed(records((region_addr(0), t, 0, 100, ACCESS_WRITE), (region_addr(0), t, 1, 100, ACCESS_READ),
                     (region_addr(0), t, 1, 101, ACCESS_UNKNOWN), (region_addr(2), t, 7, 4_000_000, ACCESS_WRITE)))
    (snap,) = agg.advance(sample_time(10))
    assert snap.nr_reports.tolist() == [3, 0, 1]
    assert snap.writes.tolist() == [1, 0, 1]
    assert snap.reads.tolist() == [1, 0, 0]
    assert {k: v.tolist() for k, v in snap.by_cpu.items()} == {0: [1, 0, 0], 1: [2, 0, 0], 7: [0, 0, 1]}
    assert {k: v.tolist() for k, v in snap.by_tid.items()} == {100: [2, 0, 0], 101: [1, 0, 0], 4_000_000: [0, 0, 1]}
    # the next aggregation starts from zero
    agg.feed(records((region_addr(1), sample_time(12), 2, 102, ACCESS_READ)))
    (snap,) = agg.advance(sample_time(20))
    assert list(snap.by_cpu) == [2] and list(snap.by_tid) == [102]


def test_layout_is_reread_every_update_interval_after_the_aggregation():
    calls = []

    def layout():
        calls.append(1)
        return [RANGE] if len(calls) == 1 else [(RANGE[0], RANGE[1] + 300 * P)]

    attrs = MonitoringAttrs(sample_interval_us=1000, aggr_interval_us=10000, update_interval_us=20000,
                            min_nr_regions=3, max_nr_regions=3)
    agg = Aggregator(attrs, layout, T0)
    snaps = agg.advance(sample_time(30))
    assert len(calls) == 2  # at start and after sample 20
    assert snaps[1].end[-1] == RANGE[1]  # the aggregation ending at sample 20 saw the old layout
    assert snaps[2].end[-1] == RANGE[1] + 300 * P
    agg.advance(sample_time(65))
    assert len(calls) == 4


def test_update_interval_not_a_multiple_of_aggregation():
    calls = []
    attrs = MonitoringAttrs(sample_interval_us=1000, aggr_interval_us=10000, update_interval_us=7000,
                            min_nr_regions=3, max_nr_regions=3)
    agg = Aggregator(attrs, lambda: calls.append(1) or [RANGE], T0)
    agg.feed(records(*[(region_addr(1), sample_time(k)) for k in range(10)]))
    (snap,) = agg.advance(sample_time(10))
    assert len(calls) == 2  # start, sample 7
    assert snap.nr_accesses.tolist() == [0, 10, 0]  # counts survive a mid-aggregation update


def test_an_exited_process_keeps_its_regions_and_closes_with_a_partial_snapshot():
    calls = []

    def layout():
        calls.append(1)
        if len(calls) > 1:
            raise TargetError("process 42 is gone")
        return [RANGE]

    attrs = MonitoringAttrs(sample_interval_us=1000, aggr_interval_us=10000, update_interval_us=10000,
                            min_nr_regions=3, max_nr_regions=3)
    agg = Aggregator(attrs, layout, T0)
    agg.feed(records((region_addr(0), sample_time(3)), (region_addr(0), sample_time(15))))
    (first,) = agg.advance(sample_time(12))
    assert agg.exited and first.nr_reports.sum() == 1 and agg.nr_regions == 3
    (last,) = agg.close(sample_time(17))
    assert (last.start_ns, last.end_ns) == (sample_time(10), sample_time(17))
    assert last.nr_reports.sum() == 1 and agg.pending == 0 and agg.in_regions == 2


def test_close_places_reports_beyond_its_end_and_never_leaves_a_target_without_snapshots():
    agg = fixed_aggregator()
    (snap,) = agg.close(T0)
    assert snap.end_ns == sample_time(1) and snap.nr_reports.sum() == 0
    agg = fixed_aggregator()
    agg.feed(records((region_addr(2), sample_time(14))))
    snaps = agg.close(sample_time(3))
    assert [s.end_ns for s in snaps] == [sample_time(10), sample_time(15)]  # a full one, then a partial one
    assert agg.in_regions == 1 and agg.pending == 0
    # the last report's sample ends an aggregation exactly: its reports still make a snapshot
    agg = fixed_aggregator()
    agg.feed(records((region_addr(2), sample_time(19))))
    snaps = agg.close(sample_time(3))
    assert [s.end_ns for s in snaps] == [sample_time(10), sample_time(20)]
    assert agg.in_regions == 1 and agg.pending == agg.in_progress == 0


def test_dropped_regions_move_their_reports_to_outside():
    calls = []

    def layout():  # a second range at start, gone at the update after sample 5
        calls.append(1)
        return [RANGE, (RANGE[1] + 100 * P, RANGE[1] + 400 * P)] if len(calls) == 1 else [RANGE]

    attrs = MonitoringAttrs(sample_interval_us=1000, aggr_interval_us=10000, update_interval_us=5000,
                            min_nr_regions=3, max_nr_regions=6)
    agg = Aggregator(attrs, layout, T0)
    agg.feed(records((RANGE[1] + 150 * P, sample_time(1)), (region_addr(0), sample_time(1))))
    (snap,) = agg.advance(sample_time(10))
    assert agg.outside == 1 and snap.nr_reports.sum() == 1


# ---- properties


def _events(rng, ranges, n, first_sample, nr_samples, sample_ns):
    """Random reports: half uniform over (and a little beyond) the ranges, half on a hot spot."""
    lo, hi = ranges[0][0], ranges[-1][1]
    addr = rng.integers(lo - P, hi + P, n, dtype=np.uint64)
    hot_start, hot_end = ranges[rng.integers(len(ranges))]
    hot_lo = rng.integers(hot_start, hot_end)
    addr[: n // 2] = rng.integers(hot_lo, min(hot_end, hot_lo + 40 * P) + 1, n // 2, dtype=np.uint64)
    rec = np.zeros(n, ACCESS_DTYPE)
    rec["addr"] = addr
    rec["time_ns"] = T0 + first_sample * sample_ns + rng.integers(0, nr_samples * sample_ns, n)
    rec["cpu"] = rng.integers(0, 4, n)
    rec["tid"] = rng.integers(1, 6, n)
    rec["write"] = rng.integers(0, 3, n)
    return rec


def _inside(rec, ranges):
    """The reports inside ``ranges`` (one outside makes the regions grow when it is placed)."""
    return rec[np.any([(rec["addr"] >= s) & (rec["addr"] < e) for s, e in ranges], axis=0)]


def _layouts(rng, nr):
    """A sequence of page-aligned three-range layouts that grow, shrink and move."""
    out = []
    base = [0x5555_0000_0000, 0x7F00_0000_0000, 0x7FFF_F000_0000]
    for _ in range(nr):
        out.append([(b - int(rng.integers(0, 50)) * P, b + int(rng.integers(50, 2000)) * P) for b in base])
    return out


@st.composite
def attrs_(draw):
    min_nr = draw(st.integers(3, 20))
    return MonitoringAttrs(sample_interval_us=1000, aggr_interval_us=1000 * draw(st.integers(1, 12)),
                           update_interval_us=1000 * draw(st.integers(1, 40)), min_nr_regions=min_nr,
                           max_nr_regions=draw(st.integers(2 * min_nr + 8, 400)))


def _run(attrs, layouts, seed, batches, on_advance=None, inside=False):
    rng = np.random.default_rng(seed)
    calls = []

    def layout():
        calls.append(1)
        return layouts[min(len(calls), len(layouts)) - 1]

    agg = Aggregator(attrs, layout, T0, seed=seed)
    sample_ns, per_aggr = attrs.sample_interval_us * US, attrs.max_nr_accesses
    snaps, fed, sample = [], 0, 0
    for _ in range(batches):
        nr_samples = int(rng.integers(1, 3 * per_aggr))
        rec = _events(rng, layouts[min(len(calls), len(layouts)) - 1], int(rng.integers(0, 400)),
                      sample - 1, nr_samples + 1, sample_ns)  # a little of it late
        if inside:
            rec = _inside(rec, layouts[min(len(calls), len(layouts)) - 1])
        rng.shuffle(rec)
        agg.feed(rec)
        fed += len(rec)
        sample += nr_samples
        new = agg.advance(T0 + sample * sample_ns + int(rng.integers(0, sample_ns)))
        snaps += new
        if on_advance:
            on_advance(agg, new, layouts[min(len(calls), len(layouts)) - 1])
    return agg, snaps, fed


@settings(max_examples=40, deadline=None)
@given(attrs_(), st.integers(0, 2**32))
def test_invariants_hold_through_changing_layouts(attrs, seed):
    layouts = _layouts(np.random.default_rng(seed), 8)

    def check(agg, new, ranges):
        regs = agg.regions
        assert np.all(regs.start < regs.end) and np.all(regs.end[:-1] <= regs.start[1:])
        assert not np.any(regs.start % P) and not np.any(regs.end % P)
        union = R.normalize_ranges(list(zip(regs.start.tolist(), regs.end.tolist())), P)
        # the layout's ranges, grown by what reports outside them asked for
        assert R.normalize_ranges(union + R.normalize_ranges(ranges, P, attrs.max_nr_regions), P) == union
        for snap in new:
            assert np.all(snap.nr_accesses >= 0) and np.all(snap.nr_accesses <= attrs.max_nr_accesses)
            if attrs.samples_per_update % attrs.max_nr_accesses == 0:
                # (an update mid-aggregation may cut a region in two: both pieces keep its
                # nr_accesses, as in DAMON, while its reports stay with the first)
                assert np.all(snap.nr_accesses <= snap.nr_reports)
            assert np.all(snap.writes + snap.reads <= snap.nr_reports)
            zero = np.zeros(snap.nr_regions, np.int64)
            assert sum(snap.by_cpu.values(), zero).tolist() == snap.nr_reports.tolist()
            assert sum(snap.by_tid.values(), zero).tolist() == snap.nr_reports.tolist()
            assert snap.end_ns - snap.start_ns == attrs.aggr_interval_us // attrs.sample_interval_us * \
                attrs.sample_interval_us * US

    agg, snaps, fed = _run(attrs, layouts, seed, 12, check)
    # every report is somewhere: in a snapshot, late, outside or still pending; the reports of
    # the unfinished aggregation are none of these until it ends
    in_snapshots = sum(int(s.nr_reports.sum()) for s in snaps)
    assert in_snapshots + agg.late + agg.outside + agg.pending <= fed
    # closing the target places every report still waiting and ends the aggregation in progress
    snaps += agg.close(agg.start_ns + agg.closed_samples * attrs.sample_interval_us * US)
    in_snapshots = sum(int(s.nr_reports.sum()) for s in snaps)
    assert agg.pending == 0
    assert in_snapshots == agg.in_regions
    assert agg.in_regions + agg.late + agg.outside == fed


@settings(max_examples=30, deadline=None)
@given(attrs_(), st.integers(0, 2**32))
def test_region_count_stays_within_bounds(attrs, seed):
    rng = np.random.default_rng(seed)
    # large enough: every range holds many pages per region
    layout = [[(b, b + int(rng.integers(1, 40)) * attrs.min_nr_regions * 64 * P)
               for b in (0x5555_0000_0000, 0x7F00_0000_0000, 0x7FFF_F000_0000)]]

    def check(agg, new, _):
        for snap in new:
            assert snap.nr_regions <= attrs.max_nr_regions
        if new:
            assert attrs.min_nr_regions <= agg.nr_regions <= attrs.max_nr_regions

    agg, snaps, _ = _run(attrs, layout, seed, 15, check, inside=True)
    assert agg.snapshots_emitted == len(snaps) > 0


@settings(max_examples=15, deadline=None)
@given(attrs_(), st.integers(0, 2**32))
def test_same_seed_same_result(attrs, seed):
    layouts = _layouts(np.random.default_rng(seed), 4)
    _, a, _ = _run(attrs, layouts, seed, 8)
    _, b, _ = _run(attrs, layouts, seed, 8)
    assert len(a) == len(b)
    for x, y in zip(a, b):
        for f in ("start", "end", "nr_accesses", "age", "nr_reports", "writes", "reads"):
            assert getattr(x, f).tolist() == getattr(y, f).tolist()


def test_different_seeds_split_differently():
    attrs = MonitoringAttrs(sample_interval_us=1000, aggr_interval_us=10000)
    layouts = _layouts(np.random.default_rng(0), 1)
    starts = {tuple(_run(attrs, layouts, seed, 6)[0].regions.start.tolist()) for seed in (1, 2, 3)}
    assert len(starts) > 1


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**32), st.lists(st.integers(0, 2000), max_size=6))
def test_batching_and_order_do_not_matter(seed, cuts):
    rng = np.random.default_rng(seed)
    attrs = MonitoringAttrs(sample_interval_us=1000, aggr_interval_us=5000, min_nr_regions=5, max_nr_regions=40)
    ranges = _layouts(rng, 1)[0]
    rec = np.sort(_events(rng, ranges, 2000, 0, 60, 1000 * US), order="time_ns")
    # only reports inside the layout: one outside grows the regions when it is placed, which
    # depends on when advance() runs
    rec = _inside(rec, ranges)
    end = T0 + 60 * 1000 * US

    def run(parts):
        agg = Aggregator(attrs, lambda: ranges, T0, seed=seed)
        out = []
        for part in parts:
            agg.feed(part[rng.permutation(len(part))])
            if len(part):
                out += agg.advance(int(part["time_ns"].max()))  # the newest report's sample stays open
        return out + agg.advance(end), agg

    whole, agg_whole = run([rec])
    pieces, agg_pieces = run(np.split(rec, sorted(set(cuts))))
    assert agg_whole.late == agg_pieces.late == 0
    assert len(whole) == len(pieces) == 12
    for x, y in zip(whole, pieces):
        for f in ("start", "end", "nr_accesses", "age", "nr_reports", "writes", "reads"):
            assert getattr(x, f).tolist() == getattr(y, f).tolist()
        assert {k: v.tolist() for k, v in x.by_tid.items()} == {k: v.tolist() for k, v in y.by_tid.items()}


def test_reports_far_ahead_wait_for_their_sample():
    agg = fixed_aggregator()
    for k in range(40):  # many feeds of reports for a sample far ahead, each followed by a tick
        agg.feed(records((region_addr(2), sample_time(95))))
        agg.advance(sample_time(k + 1))
    assert agg.pending == 40
    snaps = agg.advance(sample_time(100))
    assert snaps[-1].nr_reports.tolist() == [0, 0, 40] and snaps[-1].nr_accesses.tolist() == [0, 0, 1]
    assert agg.pending == 0 and agg.late == 0


def test_reports_own_pages_become_few_ranges():
    from damon_bpf.core.regions import page_ranges as _page_ranges

    addr = np.array([p * P + 5 for p in (3, 1, 2, 2, 10, 11, 100)], np.uint64)
    assert _page_ranges(addr, P, 3) == [(1 * P, 4 * P), (10 * P, 12 * P), (100 * P, 101 * P)]
    assert _page_ranges(addr, P, 2) == [(1 * P, 12 * P), (100 * P, 101 * P)]  # the smaller gap bridged
    assert _page_ranges(addr, P, 1) == [(1 * P, 101 * P)]
    assert _page_ranges(addr[:1], P, 10) == [(3 * P, 4 * P)]
