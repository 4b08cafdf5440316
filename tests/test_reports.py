"""Reports on synthetic snapshots with known answers, and the `report` CLI."""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from cli.main import cli
from conftest import DAMON_BPF
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.errors import UsageError
from damon_bpf.recordfile import TargetRecord, write_record
from damon_bpf.reports import access, breakdown, heatmap, wss
from damon_bpf.reports.common import bin_masses

A = 0x7F00_0000_0000
KiB, MiB, TiB = 1 << 10, 1 << 20, 1 << 40
AGGR_NS = 100_000_000  # aggr_us = 100_000: nr_accesses 20 = 200 Hz
T0 = 7_000_000_000_000


def snap(i: int, regions: list[dict]) -> Snapshot:
    """Snapshot ``i`` (aggregation i of 100 ms) from region dicts: start, end, acc, rep, w, r,
    cpus {cpu: n}, tids {tid: n}; missing counters are 0."""
    n = len(regions)

    def col(key: str) -> np.ndarray:
        return np.array([r.get(key, 0) for r in regions], dtype=np.int64)

    def by(key: str) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        for idx, r in enumerate(regions):
            for ident, v in r.get(key, {}).items():
                out.setdefault(ident, np.zeros(n, dtype=np.int64))[idx] = v
        return out

    return Snapshot(T0 + i * AGGR_NS, T0 + (i + 1) * AGGR_NS,
                    np.array([r["start"] for r in regions], dtype=np.uint64),
                    np.array([r["end"] for r in regions], dtype=np.uint64),
                    col("acc"), col("age"), col("rep"), col("w"), col("r"), by("cpus"), by("tids"))


def record(snaps: list[Snapshot], target_id: int = 0) -> list[TargetRecord]:
    return [TargetRecord(target_id, 99, 5000, 100_000, 1_000_000, snaps, {})]


def hot_middle(nr: int = 30, hot_from: int = 0, hot_to: int | None = None) -> list[TargetRecord]:
    """[A, A+2MiB): cold, except [A+1MiB, A+1MiB+64KiB) at 20 samples (200 Hz), with reports
    split cpu0/cpu1 and two threads, 3 writes and 9 reads per aggregation."""
    hot_to = nr if hot_to is None else hot_to
    out = []
    for i in range(nr):
        hot = hot_from <= i < hot_to
        out.append(snap(i, [
            {"start": A, "end": A + MiB},
            {"start": A + MiB, "end": A + MiB + 64 * KiB, "acc": 20 if hot else 0,
             "rep": 12 if hot else 0, "w": 3 if hot else 0, "r": 9 if hot else 0,
             "cpus": {0: 9, 1: 3} if hot else {}, "tids": {7: 12} if hot else {}},
            {"start": A + MiB + 64 * KiB, "end": A + 2 * MiB},
        ]))
    return record(out)


def two_spots() -> list[TargetRecord]:
    """A 64 KiB spot at 200 Hz and, 1 TiB away, an 8 KiB spot at 100 Hz; cold between."""
    regions = [
        {"start": A, "end": A + 64 * KiB, "acc": 20, "rep": 40, "cpus": {0: 40}, "tids": {1: 40},
         "w": 40},
        {"start": A + 64 * KiB, "end": A + TiB},
        {"start": A + TiB, "end": A + TiB + 8 * KiB, "acc": 10, "rep": 10, "cpus": {1: 10},
         "tids": {2: 10}, "r": 10},
        {"start": A + TiB + 8 * KiB, "end": A + TiB + MiB},
    ]
    return record([snap(i, regions) for i in range(10)])


def plain(renderable) -> str:
    console = Console(width=200, color_system=None, record=True)
    console.print(renderable)
    return console.export_text()


# ------------------------------------------------------------------------------------ heatmap

def test_hot_range_is_the_hot_row():
    hm = heatmap.heatmap(hot_middle(), resol=(32, 30), address_range=(A, A + 2 * MiB))
    assert hm.grid.shape == (32, 30)
    np.testing.assert_allclose(hm.grid[16], 200.0)  # row 16 = [A+1MiB, A+1MiB+64KiB)
    assert np.all(np.delete(hm.grid, 16, axis=0) == 0)


def test_hot_time_is_the_hot_columns():
    hm = heatmap.heatmap(hot_middle(hot_from=10, hot_to=20), resol=(32, 30),
                         address_range=(A, A + 2 * MiB))
    np.testing.assert_allclose(hm.grid[16, 10:20], 200.0)
    assert np.all(hm.grid[16, :10] == 0) and np.all(hm.grid[16, 20:] == 0)
    # a time range inside the hot period: every column hot
    hm = heatmap.heatmap(hot_middle(hot_from=10, hot_to=20), resol=(32, 5),
                         address_range=(A, A + 2 * MiB), time_range=(1_000_000_000, 2_000_000_000))
    np.testing.assert_allclose(hm.grid[16], 200.0)


def test_partial_cells_average_by_bytes_and_time():
    # 2 rows of 1 MiB: the 64 KiB hot region is 1/16 of row 1
    hm = heatmap.heatmap(hot_middle(hot_from=0, hot_to=15), resol=(2, 1),
                         address_range=(A, A + 2 * MiB))
    assert hm.grid[0, 0] == 0
    assert hm.grid[1, 0] == pytest.approx(200.0 / 16 / 2)  # hot half of the time


def test_unmonitored_cells_are_nan():
    hm = heatmap.heatmap(hot_middle(), resol=(4, 3), address_range=(A + MiB, A + 5 * MiB))
    assert not np.isnan(hm.grid[0]).any() and np.isnan(hm.grid[2:]).all()


def two_span_axis() -> heatmap.AddressAxis:
    """40 rows of a page in two spans, a skipped gap between rows 29 and 30."""
    lo = [0x1000 * r for r in range(30)] + [0x100000 + 0x1000 * r for r in range(10)]
    return heatmap.AddressAxis(lo, [a + 0x1000 for a in lo], [30])


def test_pooled_rows_keep_the_hottest_cell_and_the_skipped_gaps():
    from damon_bpf.reports.heatmap import Heatmap

    axis = two_span_axis()  # one hot row, one unmonitored column
    grid = np.zeros((40, 5))
    grid[7, 2] = 150.0
    grid[:, 4] = np.nan
    grid[3, 4] = 1.0
    pooled = heatmap.pool_rows([Heatmap("accesses", "Hz", grid, axis, np.arange(6), 0, 0, 1)], 8)[0]
    assert pooled.grid.shape == (8, 5) and pooled.axis.rows == 8
    assert len(pooled.axis.breaks) == 1  # the gap is still marked
    first_of_upper = pooled.axis.breaks[0]
    assert pooled.axis.lo[first_of_upper] == 0x100000 and pooled.axis.lo[0] == 0
    assert pooled.grid[:, 2].max() == 150.0  # the hot cell is not averaged away
    assert np.isnan(pooled.grid[:, 4]).sum() == 7  # NaN only where nothing pooled was monitored
    assert pooled.grid[:, 4][~np.isnan(pooled.grid[:, 4])].tolist() == [1.0]
    assert pooled.axis.rows - first_of_upper == 1  # the upper span: a quarter of the bytes, no heat

    # rows follow heat as well as bytes: the same quarter, now with all the heat
    grid = np.zeros((40, 5))
    grid[35, :] = 100.0
    pooled = heatmap.pool_rows([Heatmap("accesses", "Hz", grid, axis, np.arange(6), 0, 0, 1)], 8)[0]
    assert pooled.axis.rows - pooled.axis.breaks[0] >= 4


def test_pooled_rows_follow_only_the_recent_columns_when_asked():
    from damon_bpf.reports.heatmap import Heatmap

    axis = two_span_axis()
    grid = np.zeros((40, 20))
    grid[35, :5] = 1000.0     # the upper span was hot long ago
    grid[3, -3:] = 1.0        # the lower one is hot now
    maps = [Heatmap("accesses", "Hz", grid, axis, np.arange(21), 0, 0, 1)]
    assert heatmap.pool_rows(maps, 8)[0].axis.breaks == [3]       # all columns: the upper span gets 5 of 8
    assert heatmap.pool_rows(maps, 8, recent_cols=3)[0].axis.breaks == [7]   # now: the lower gets 7


def test_cell_max_shows_a_small_hot_spot_at_its_own_rate():
    # 16 rows of 128 KiB: the 64 KiB spot at 200 Hz is half of row 8, so its mean is 100 Hz; its
    # finer rows of 16 KiB are all hot, so the max cell shows the spot's own 200 Hz
    resol, span = (16, 3), (A, A + 2 * MiB)
    mean = heatmap.heatmaps(hot_middle(), None, resol, span)[0]
    top = heatmap.heatmaps(hot_middle(), None, resol, span, cell="max")[0]
    assert mean.axis == top.axis and mean.grid.shape == top.grid.shape == (16, 3)
    np.testing.assert_allclose(mean.grid[8], 100.0)
    np.testing.assert_allclose(top.grid[8], 200.0)
    assert np.all(np.delete(top.grid, 8, axis=0) == 0)
    with pytest.raises(UsageError, match="mean, max"):
        heatmap.heatmaps(hot_middle(), None, resol, span, cell="median")


def test_default_axis_skips_the_cold_gap_and_keeps_both_spots():
    hm = heatmap.heatmap(two_spots(), resol=(30, 10))
    axis = hm.axis
    assert len(axis.breaks) == 1
    first, second = slice(0, axis.breaks[0]), slice(axis.breaks[0], axis.rows)
    assert max(axis.hi[first]) <= A + 2 * MiB and min(axis.lo[second]) >= A + TiB - MiB
    assert np.nanmax(hm.grid[first]) == pytest.approx(200.0)
    assert np.nanmax(hm.grid[second]) == pytest.approx(100.0, rel=0.02)
    # the cold gap is not drawn: the rows cover a few hundred KiB, not a terabyte
    assert sum(h - lo for lo, h in zip(axis.lo, axis.hi)) < MiB
    text = plain(heatmap.render([hm], color=False))
    assert "1024 GiB not accessed, not drawn" in text
    rows = [line for line in text.splitlines() if "@" in line]
    assert len(rows) >= 2  # both spots drawn at top heat (log scale)


def test_default_axis_covers_the_accessed_span():
    hm = heatmap.heatmap(hot_middle(), resol=(20, 10))
    assert not hm.axis.breaks
    assert hm.axis.lo[0] <= A + MiB and hm.axis.hi[-1] >= A + MiB + 64 * KiB
    assert hm.axis.hi[-1] - hm.axis.lo[0] < 256 * KiB  # not the whole 2 MiB of cold regions
    assert np.nanmax(hm.grid) == pytest.approx(200.0)


def test_by_cpu_tid_rw_panels():
    maps = heatmap.heatmaps(two_spots(), by="cpu", resol=(30, 5))
    assert [m.name for m in maps] == ["cpu 0", "cpu 1"]
    second = maps[0].axis.breaks[0]
    # cpu 0 only reported the first spot, cpu 1 only the second: each panel has its spot's whole rate, in Hz
    # like the accesses panel (the same unit in every view)
    assert {m.unit for m in maps} == {"Hz"}
    assert np.nanmax(maps[0].grid[:second]) == pytest.approx(200.0)
    assert np.nanmax(maps[0].grid[second:]) == 0
    assert np.nanmax(maps[1].grid[:second]) == 0
    assert np.nanmax(maps[1].grid[second:]) == pytest.approx(100.0, rel=0.02)
    assert [m.name for m in heatmap.heatmaps(two_spots(), by="tid")] == ["thread 1", "thread 2"]
    reads, writes = heatmap.heatmaps(two_spots(), by="rw", resol=(30, 5))
    whole = heatmap.heatmaps(two_spots(), resol=(30, 5))[0]
    np.testing.assert_allclose(np.nan_to_num(reads.grid + writes.grid), np.nan_to_num(whole.grid))   # they add up
    assert np.nanmax(writes.grid[:second]) > 0 and np.nanmax(writes.grid[second:]) == 0
    assert np.nanmax(reads.grid[:second]) == 0 and np.nanmax(reads.grid[second:]) > 0
    with pytest.raises(UsageError):
        heatmap.heatmaps(two_spots(), by="numa")


def test_raw_text_lines_match_the_grid():
    hm = heatmap.heatmap(hot_middle(), resol=(4, 3), address_range=(A, A + 4 * MiB))
    lines = heatmap.raw_text(hm).splitlines()
    assert len(lines) == 12
    for k in range(3):
        for r in range(4):
            t, addr, heat = lines[k * 4 + r].split("\t")
            assert int(t) == k * 1_000_000_000 and int(addr) == A + r * MiB
            want = hm.grid[r, k]
            assert (heat == "NaN") if math.isnan(want) else float(heat) == want


def test_levels_never_hide_an_access():
    grid = np.array([[np.nan, 0.0, 1e-9, 1.0, 50.0, 100.0]])
    for scale in ("log", "linear"):
        lv = heatmap.levels(grid, 100.0, scale)[0].tolist()
        assert lv[:2] == [-1, 0] and all(v >= 1 for v in lv[2:]) and lv[-1] == 9
        assert lv == sorted(lv)


def test_no_access_says_so():
    cold = record([snap(i, [{"start": A, "end": A + MiB}]) for i in range(3)])
    text = plain(heatmap.render([heatmap.heatmap(cold, resol=(5, 5))], color=False))
    assert "no access was recorded" in text


def test_bad_ranges_are_usage_errors():
    with pytest.raises(UsageError):
        heatmap.heatmap(hot_middle(), address_range=(A + 10, A))
    with pytest.raises(UsageError):
        heatmap.heatmap(hot_middle(), time_range=(5, 5))
    # past the end: clamped to the record, not blank columns
    hm = heatmap.heatmap(hot_middle(), resol=(4, 3), time_range=(0, 10**15))
    assert int(hm.time_edges_ns[-1] - hm.time_edges_ns[0]) == 3_000_000_000
    with pytest.raises(UsageError, match="no target 3"):
        heatmap.heatmap(hot_middle(), target_id=3)


@pytest.mark.parametrize("by", [None, "cpu", "tid", "rw"])
def test_png(tmp_path, by):
    out = tmp_path / "heat.png"
    heatmap.to_png(two_spots(), str(out), by=by, resol=(60, 40))
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------- access, wss, ...

def test_access_last_and_nth_snapshot():
    recs = hot_middle(hot_from=0, hot_to=10)
    last = access.access(recs)
    assert last.snapshot == 29 and len(last.regions) == 3 and last.regions[1].hz == 0
    first = access.access(recs, snapshot=0)
    hot = first.regions[1]
    assert (hot.start, hot.size, hot.nr_accesses) == (A + MiB, 64 * KiB, 20)
    assert hot.hz == pytest.approx(200.0) and hot.percent == pytest.approx(100.0)
    assert first.accessed_size == 64 * KiB and first.total_size == 2 * MiB
    json.dumps(access.to_json(first))
    assert "0x7f0000100000" in plain(access.table(first))
    with pytest.raises(UsageError, match="snapshot 30 does not exist"):
        access.access(recs, snapshot=30)


def test_wss_known_sizes_and_percentiles():
    # snapshot i has i+1 accessed 4 KiB regions out of 10
    snaps = [snap(i, [{"start": A + k * 4096, "end": A + (k + 1) * 4096, "acc": int(k <= i),
                       "rep": int(k <= i), "w": int(k <= i and k % 2 == 0)}
                      for k in range(10)]) for i in range(10)]
    report = wss.wss(record(snaps))
    assert report.sizes == [4096 * (i + 1) for i in range(10)]
    assert report.percentiles == {0: 4096, 25: 4096 * 3, 50: 4096 * 6, 75: 4096 * 8,
                                  100: 4096 * 10}
    assert report.average == pytest.approx(4096 * 5.5)
    assert wss.wss(record(snaps), skip=8).sizes == [4096 * 9, 4096 * 10]
    assert wss.wss(record(snaps), acc_thres=2).sizes == [0] * 10
    dirty = wss.wss(record(snaps), write=True)
    assert dirty.sizes == [4096 * (i // 2 + 1) for i in range(10)]
    assert dirty.write_rates == [10.0 * (i // 2 + 1) for i in range(10)]
    json.dumps(wss.to_json(dirty))
    assert "dirty set" in plain(wss.table(dirty))


def test_breakdown_shares():
    b = breakdown.breakdown(hot_middle(), top=2)
    hot = b.regions[0]
    assert (hot.start, hot.size) == (A + MiB, 64 * KiB) and hot.hz == pytest.approx(200.0)
    assert hot.reports == pytest.approx(12 * 30)
    assert hot.by_cpu == pytest.approx({0: 0.75, 1: 0.25}) and hot.by_tid == {7: 1.0}
    assert (hot.reads, hot.writes) == (pytest.approx(270), pytest.approx(90))
    assert b.total.reports == 360 and list(b.total.by_cpu) == [0, 1]
    text = plain(breakdown.table(b))
    assert "0:75% 1:25%" in text and "75/25" in text
    json.dumps(breakdown.to_json(b))


def test_breakdown_total_has_the_function_shares():
    """The run-wide row gets the functions behind every report (they once landed in its mappings)."""
    one = snap(0, [{"start": A, "end": A + 4096, "rep": 4}, {"start": A + 4096, "end": A + 8192, "rep": 4}])
    one.functions = [{"main": 3, "memcpy": 1}, {"main": 4}]
    b = breakdown.breakdown(record([one]), top=5)
    assert b.total.functions == pytest.approx({"main": 7 / 8, "memcpy": 1 / 8}) and b.total.mappings == []
    assert breakdown.to_json(b)["total"]["function_share"] == pytest.approx({"main": 7 / 8, "memcpy": 1 / 8})
    assert "memcpy" in plain(breakdown.table(b))


def test_breakdown_moves_counts_onto_the_layout():
    """Earlier snapshots' regions differ from the layout's: counts move by byte overlap."""
    early = snap(0, [{"start": A, "end": A + 8192, "rep": 10, "cpus": {3: 10}, "acc": 4}])
    late = snap(1, [{"start": A, "end": A + 4096}, {"start": A + 4096, "end": A + 8192}])
    b = breakdown.breakdown(record([early, late]), top=5)
    assert [r.reports for r in b.regions] == pytest.approx([5, 5])
    assert sum(r.reports for r in b.regions) == b.total.reports
    assert all(r.by_cpu == {3: 1.0} for r in b.regions)
    assert all(r.hz == pytest.approx(20.0) for r in b.regions)  # 4 samples, half the time


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(1, 6), st.integers(0, 9)), max_size=8),
       st.lists(st.tuples(st.integers(0, 60), st.integers(0, 12)), min_size=1, max_size=8))
def test_bin_masses_match_brute_force(regions, bins):
    start, end, density, pos = [], [], [], 0
    for gap, size, d in regions:
        start.append(pos + gap)
        end.append(pos + gap + size)
        density.append(d)
        pos = end[-1]
    per_byte = np.zeros((2, 200))  # two quantities: d per byte, and 1 per byte
    for s, e, d in zip(start, end, density):
        per_byte[0, s:e] = d
        per_byte[1, s:e] = 1
    lo = np.array([b[0] for b in bins], dtype=np.float64)
    hi = lo + np.array([b[1] for b in bins])
    sizes = np.array(end) - np.array(start)
    got = bin_masses(np.array(start), np.array(end),
                     np.stack([np.array(density) * sizes, sizes]).reshape(2, len(start)), lo, hi)
    want = [[row[int(a):int(b)].sum() for a, b in zip(lo, hi)] for row in per_byte]
    np.testing.assert_allclose(got, want, atol=1e-9)


# ---------------------------------------------------------------------------------------- CLI

@pytest.fixture
def data_file(tmp_path):
    path = tmp_path / "damon.data"
    write_record(str(path), two_spots())
    return str(path)


def run(*args: str):
    return CliRunner().invoke(cli, ["report", *args], catch_exceptions=False)


@pytest.mark.parametrize("args, expect", [
    (["heatmap", "--resol", "12", "40"], "not accessed, not drawn"),
    (["heatmap", "--by", "cpu", "--resol", "12", "20"], "cpu 1"),
    (["heatmap", "--output", "raw", "--resol", "2", "3"], "\t"),
    (["heatmap", "--time-range", "200ms", "0.5s", "--address-range", hex(A), hex(A + 4 * MiB)],
     "0x7f0000000000"),
    (["access"], "200 Hz"),
    (["access", "--snapshot", "0", "--json"], '"nr_accesses": 20'),
    (["wss"], "percentile"),
    (["wss", "--write", "--json"], '"kind": "dirty"'),
    (["breakdown", "--top", "2"], "0:100%"),
    (["breakdown", "--json", "--time-range", "0", "1"], '"cpu_share"'),
])
def test_cli_reports(data_file, args, expect):
    result = run(*args, "-i", data_file)
    assert result.exit_code == 0, result.output
    assert expect in result.stdout


def test_cli_cell_max_raw(data_file):
    # rows of 256 KiB over the 8 KiB spot at 100 Hz: mean 100 * 8/256, max 100 * 8/32 (finer rows)
    spot = ["--output", "raw", "--resol", "4", "1", "--address-range", hex(A + TiB), hex(A + TiB + MiB)]
    heat = {cell: max(float(line.split("\t")[2]) for line in run("heatmap", "-i", data_file, *spot,
                                                                   "--cell", cell).stdout.splitlines())
            for cell in ("mean", "max")}
    assert heat == pytest.approx({"mean": 3.125, "max": 25.0})


def test_cli_unknown_cell_is_one_line(data_file):
    # through the installed entry point: click's own usage errors are one line there, not in CliRunner
    result = subprocess.run([DAMON_BPF, "report", "heatmap", "-i", data_file, "--cell", "median"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "'median' is not one of 'mean', 'max'" in result.stderr


def test_cli_png(data_file, tmp_path):
    out = tmp_path / "h.png"
    result = run("heatmap", "-i", data_file, "--output", str(out), "--by", "rw")
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:4] == b"\x89PNG"


@pytest.mark.parametrize("sub", ["heatmap", "access", "wss", "breakdown"])
def test_cli_corrupt_file_is_one_line(tmp_path, sub):
    bad = tmp_path / "damon.data"
    bad.write_bytes(b"\x78\x9c not really zlib")
    result = run(sub, "-i", str(bad))
    assert result.exit_code != 0
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.output
    assert result.stderr.startswith("damon-bpf: error: record file") and str(bad) in result.stderr


@pytest.mark.parametrize("args, words", [
    (["access", "--target", "5"], "no target 5"),
    (["access", "--snapshot", "99"], "does not exist"),
    (["heatmap", "--time-range", "2s", "1s"], "not after"),
    (["heatmap", "--time-range", "soon", "1s"], "bad time"),
    (["heatmap", "--time-range", "0", "1e999"], "too large"),
    (["heatmap", "--time-range", "1 fortnight", "2"], "bad time"),
    (["heatmap", "--time-range", "20s", "30s"], "after the record ends"),
    (["heatmap", "--address-range", "zz", "1"], "bad --address-range"),
    (["heatmap", "--address-range", "4KiB", "1"], "empty or out of range"),   # 4 KiB read as 4096
    (["heatmap", "--output", "x.nosuchformat"], "cannot draw"),
])
def test_cli_bad_input_is_one_line(data_file, tmp_path, args, words, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run(*args, "-i", data_file)
    assert result.exit_code != 0 and words in result.stderr and result.stderr.count("\n") == 1


def test_cli_missing_default_input(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run("wss")
    assert result.exit_code != 0 and "damon.data: no such file" in result.stderr
