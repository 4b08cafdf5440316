"""The reports' work over many snapshots at once (reports/columns.py, reports/spread.py) gives exactly, bit for
bit, what their per-snapshot code gave (tests/report_reference.py): same JSON text, same raw heatmap lines."""

from __future__ import annotations

import json
from dataclasses import replace
from contextlib import ExitStack
from unittest.mock import patch

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import report_reference as reference
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import UsageError
from damon_bpf.recordfile import TargetRecord, read_record, reader, write_record
from damon_bpf.reports import access, breakdown, columns, dirty_rate, heatmap, wss
from damon_bpf.reports.common import bin_masses
from damon_bpf.reports.heatmap import axis as axis_mod
from damon_bpf.reports.heatmap import grid as grid_mod
from damon_bpf.reports.spread import bin_masses_each

AGGR_NS = 100_000_000
T0 = 7_000_000_000_000
BASES = (0x1000, 0x7F00_0000_0000, 2**63 + 12345, 2**64 - 2**36)   # big ones round when made floats


@st.composite
def snapshots(draw, nr_max: int = 6) -> Snapshot:
    """A snapshot of 0..nr_max regions with any counts, per-cpu/thread counts and (sometimes) functions."""
    nr = draw(st.integers(0, nr_max))
    pos = draw(st.sampled_from(BASES))
    start, end = [], []
    for _ in range(nr):
        pos += draw(st.integers(0, 3)) * 4096 + draw(st.integers(0, 7))
        start.append(pos)
        pos += draw(st.integers(1, 300)) * 4096 - draw(st.integers(0, 1))
        end.append(pos)

    def counts(hi: int) -> np.ndarray:
        return np.array(draw(st.lists(st.integers(0, hi), min_size=nr, max_size=nr)), dtype=np.int64)

    reports = counts(10**6)
    writes = np.array([draw(st.integers(0, int(r))) for r in reports], dtype=np.int64)
    reads = np.array([draw(st.integers(0, int(r - w))) for r, w in zip(reports, writes)], dtype=np.int64)

    def by(ids: list[int]) -> dict[int, np.ndarray]:
        return {i: counts(999) for i in draw(st.lists(st.sampled_from(ids), unique=True, max_size=3))}

    snap = Snapshot(0, 0, np.array(start, np.uint64), np.array(end, np.uint64), counts(20), counts(50), reports,
                    writes, reads, by([0, 1, 2, 3]), by([100, 7, 42]))
    if draw(st.integers(0, 3)) == 0:
        snap.mappings = [draw(st.sampled_from([[], [("libc.so.6", "file")], [("[heap]", "anon"), ("a", "file")]]))
                         for _ in range(nr)]
    if draw(st.integers(0, 4)) == 0:
        snap.functions = [draw(st.dictionaries(st.sampled_from(["main", "memcpy", "f"]), st.integers(1, 9),
                                               max_size=2)) for _ in range(nr)]
    return snap


@st.composite
def records(draw) -> list[TargetRecord]:
    """One target's snapshots, mostly one aggregation each after the other, some of odd (even no) length."""
    snaps = draw(st.lists(snapshots(), min_size=1, max_size=12))
    t = T0
    for s in snaps:
        t += draw(st.sampled_from([0, 0, 0, AGGR_NS // 3, -AGGR_NS // 2]))
        s.start_ns = t
        t += draw(st.sampled_from([AGGR_NS, AGGR_NS, AGGR_NS // 7, 3 * AGGR_NS, 0]))
        s.end_ns = t
    return [TargetRecord(0, 9, 5000, 100_000, 1_000_000, snaps, {})]


def small_parts():
    """Parts of a few snapshots, so every record is cut into several."""
    return patch.object(columns, "WORK_VALUES", 16)


def per_snapshot_heatmaps():
    """The heatmap with its per-snapshot code (the panels, the spans touched and the grid)."""
    stack = ExitStack()
    stack.enter_context(patch.object(grid_mod, "_grids", reference.grids))
    stack.enter_context(patch.object(grid_mod, "_panels", reference.panels))
    for name in ("in_time", "mapping_names"):
        stack.enter_context(patch.object(grid_mod, name, getattr(reference, name)))
    stack.enter_context(patch.object(axis_mod, "_touched_spans", reference.touched_spans))
    return stack


def bits(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype=np.float64).tobytes()


def outcome(call) -> str:
    """What a report gives, as JSON text, or its error."""
    try:
        return json.dumps(call())
    except UsageError as err:
        return f"error: {err}"


@settings(max_examples=100, deadline=None)
@given(st.lists(snapshots(nr_max=9), min_size=1, max_size=8),
       st.lists(st.tuples(st.sampled_from(BASES), st.integers(0, 3 * 2**20), st.integers(1, 2**21)), max_size=9))
def test_bin_masses_each_is_bin_masses_of_each(snaps, bins):
    lo = np.array([base + off for base, off, _ in bins], dtype=np.float64)
    hi = lo + np.array([size for _, _, size in bins], dtype=np.float64)
    joined = columns.columns(snaps, columns.SOURCES)
    size = (joined.end - joined.start).astype(np.float64)
    mass = np.stack([size, joined.nr_accesses * size / 7, joined.nr_reports.astype(np.float64)])
    got = bin_masses_each(joined.start, joined.end, joined.bounds, mass, lo, hi)
    for i, (a, b) in enumerate(zip(joined.bounds, joined.bounds[1:])):
        assert bits(got[i]) == bits(bin_masses(joined.start[a:b], joined.end[a:b], mass[:, a:b], lo, hi))


@settings(max_examples=60, deadline=None)
@given(records(), st.integers(1, 12), st.integers(-3, 2),
       st.one_of(st.none(), st.tuples(st.integers(0, 6), st.integers(1, 6)).map(
           lambda t: (t[0] * AGGR_NS // 2, (t[0] + t[1]) * AGGR_NS // 2))))
def test_breakdown_is_the_per_snapshot_one(recs, top, snapshot, time_range):
    with small_parts():
        got = outcome(lambda: breakdown.to_json(breakdown.breakdown(recs, top, snapshot, time_range)))
    assert got == outcome(lambda: breakdown.to_json(reference.breakdown(recs, top, snapshot, time_range)))


@settings(max_examples=60, deadline=None)
@given(records(), st.sampled_from([None, "cpu", "tid", "rw"]), st.sampled_from(heatmap.CELLS),
       st.tuples(st.integers(1, 9), st.integers(1, 7)),
       st.one_of(st.none(), st.tuples(st.integers(0, 8), st.integers(1, 8)).map(
           lambda t: (t[0] * AGGR_NS // 3, (t[0] + t[1]) * AGGR_NS // 3))))
def test_heatmap_is_the_per_snapshot_one(recs, by, cell, resol, time_range):
    def maps() -> dict:
        result = heatmap.heatmaps(recs, by, resol, None, time_range, None, cell)
        return {"json": heatmap.to_json(result), "raw": [heatmap.raw_text(m) for m in result]}

    with small_parts():
        got = outcome(maps)
    with per_snapshot_heatmaps():
        assert got == outcome(maps)


@settings(max_examples=60, deadline=None)
@given(records(), st.booleans(), st.integers(0, 3), st.integers(0, 20), st.integers(1, 2**20))
def test_wss_hottest_and_dirty_rates_are_the_per_snapshot_ones(recs, write, skip, acc_thres, sz_thres):
    with small_parts():
        got = wss.to_json(wss.wss(recs, write=write, skip=skip, acc_thres=acc_thres, sz_thres=sz_thres))
        hottest = access.hottest_snapshot(recs[0])
        dirty = dirty_rate._rates(recs[0], 4096, skip)
    assert json.dumps(got) == json.dumps(wss.to_json(reference.wss(recs, write=write, skip=skip, acc_thres=acc_thres,
                                                                   sz_thres=sz_thres)))
    assert hottest == reference.hottest_snapshot(recs[0])
    assert json.dumps(dirty) == json.dumps(reference.dirty_rates(recs[0], 4096, skip))


def test_hottest_beyond_exact_floats_is_np_dots():
    """Sums past 2**53 round: the snapshot np.dot makes hottest is still the one chosen."""
    big = [Snapshot(i, i + 1, np.array([0, 2**62], np.uint64), np.array([2**62, 2**63 + i], np.uint64),
                    np.array([20 - i, 3], np.int64), np.zeros(2, np.int64), np.zeros(2, np.int64),
                    np.zeros(2, np.int64), np.zeros(2, np.int64)) for i in range(3)]
    rec = TargetRecord(0, None, 5000, 100_000, 1_000_000, big, {})
    assert access.hottest_snapshot(rec) == reference.hottest_snapshot(rec) == 0


@pytest.mark.parametrize("sources", [(), columns.SOURCES])
def test_columns_join_the_snapshots(sources):
    one = Snapshot(1, 2, np.array([10, 20], np.uint64), np.array([15, 30], np.uint64), np.array([1, 2]),
                   np.zeros(2, np.int64), np.array([5, 6]), np.array([1, 2]), np.array([3, 4]),
                   {1: np.array([5, 0])}, {})
    empty = Snapshot(2, 3, *(np.zeros(0, np.int64) for _ in range(7)))
    two = Snapshot(3, 4, np.array([40], np.uint64), np.array([50], np.uint64), np.array([3]),
                   np.zeros(1, np.int64), np.array([7]), np.array([7]), np.array([0]),
                   {0: np.array([3]), 1: np.array([4])}, {9: np.array([7])})
    joined = columns.columns([one, empty, two], sources)
    assert joined.bounds.tolist() == [0, 2, 2, 3] and joined.start.dtype == np.uint64
    assert joined.end.tolist() == [15, 30, 50] and joined.per_snapshot(joined.nr_reports).tolist() == [11, 0, 7]
    assert joined.snapshot_of_region.tolist() == [0, 0, 2]
    if sources:
        assert list(joined.by_cpu) == [1, 0]   # first seen first
        assert {k: v.tolist() for k, v in joined.by_cpu.items()} == {1: [5, 0, 4], 0: [0, 0, 3]}
        assert {k: v.tolist() for k, v in joined.by_tid.items()} == {9: [0, 0, 7]}
    else:
        assert joined.by_cpu == {} and joined.by_tid == {}


def test_parts_stay_small_and_cover_every_snapshot():
    snaps = [Snapshot(i, i + 1, *(np.zeros(10, np.int64) for _ in range(7))) for i in range(100)]
    with patch.object(columns, "WORK_VALUES", 200):
        parts = list(columns.chunks(snaps, 4, 10))
    assert [len(p) for p in parts] == [4] * 25 and [s for p in parts for s in p] == snaps
    assert list(columns.chunks([], 4)) == []


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(records(), st.sampled_from([None, "cpu", "tid", "rw"]))
def test_reports_of_a_record_file_are_the_per_snapshot_ones(tmp_path_factory, recs, by):
    """On what read_record gives (batches kept as columns), the reports equal the per-snapshot code on the
    same snapshots as objects."""
    path = str(tmp_path_factory.mktemp("r") / "d")
    write_record(path, recs)
    with patch.object(reader, "_BATCH", 3):
        read = read_record(path)
    objects = [replace(r, snapshots=list(r.snapshots)) for r in read]

    def reports(records: list[TargetRecord], old: bool) -> list[str]:
        mod = reference if old else breakdown
        return [outcome(lambda: breakdown.to_json(mod.breakdown(records, 5))),
                outcome(lambda: heatmap.to_json(heatmap.heatmaps(records, by, (6, 5)))),
                outcome(lambda: wss.to_json((reference if old else wss).wss(records, write=by == "rw"))),
                str((reference if old else access).hottest_snapshot(records[0])),
                json.dumps((reference.dirty_rates if old else dirty_rate._rates)(records[0], 4096, 0))]

    with small_parts():
        got = reports(read, False)
    with per_snapshot_heatmaps():
        assert got == reports(objects, True)
