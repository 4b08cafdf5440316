"""--source damon where kernel DAMON has paddr but not vaddr (this host): the frames backing a target are
monitored by a kdamond (ours, or a host's own paddr kdamond read without touching it) and mapped back to the
target's pages through pagemap. The mapping is pure and checked on its own; the real run uses real kernel
DAMON and a real steady workload."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from damon_bpf.core.physmap import PageMap, to_virtual

P = 4096
DAMON_BPF = str(Path(sys.executable).parent / "damon-bpf")


def test_each_page_takes_its_frames_region():
    pages = PageMap(np.array([10, 11, 12, 20, 21]), np.array([100, 101, 500, 102, 900]))
    got = to_virtual(pages, np.array([100 * P, 400 * P]), np.array([102 * P, 600 * P]), np.array([7, 2]),
                     np.array([3, 1]), P, 100)
    # 10-11 in region 0; 12 in region 1; 20 in region 0 (frame 102 is past its end) -> unseen; 21 unseen
    assert got.start.tolist() == [10 * P, 12 * P] and got.end.tolist() == [12 * P, 13 * P]
    assert got.nr_accesses.tolist() == [7, 2] and got.age.tolist() == [3, 1]
    assert (got.pages_seen, got.pages_unseen) == (3, 2)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 5), st.integers(0, 20)), min_size=1, max_size=60),
       st.integers(1, 10), st.randoms(use_true_random=False))
def test_mapping_back_is_per_page_and_bounded(frames, max_nr, rnd):
    """Every seen page lies in exactly one output region; with room for all runs, each page has its frame's
    region's nr_accesses; the region count stays within max_nr unless virtual gaps alone exceed it."""
    nr_phys = 6
    starts = np.arange(nr_phys) * 10 * P
    ends = starts + 8 * P                                   # frames 8, 9 of each ten are in no region
    nr = np.array([rnd.randint(0, 20) for _ in range(nr_phys)])
    vpages = np.cumsum([1 + (rnd.random() < 0.2) for _ in frames])
    pfns = np.array([r * 10 + f % 10 for r, f in frames])
    pages = PageMap(vpages, pfns)
    got = to_virtual(pages, starts, ends, nr, np.zeros(nr_phys), P, max_nr)
    seen = (pfns % 10) < 8
    assert got.pages_seen == int(seen.sum()) and got.pages_seen + got.pages_unseen == len(frames)
    sizes = (got.end - got.start) // P
    assert int(sizes.sum()) == got.pages_seen and (got.end[:-1] <= got.start[1:]).all()
    runs = 1 + int((np.diff(vpages[seen]) != 1).sum()) if seen.any() else 0
    assert len(got.start) <= max(max_nr, runs)
    exact = to_virtual(pages, starts, ends, nr, np.zeros(nr_phys), P, 10 ** 6)
    for v, f, s in zip(vpages, pfns, seen):
        if s:
            i = int(np.searchsorted(exact.start, v * P, side="right")) - 1
            assert exact.nr_accesses[i] == nr[f // 10]


RANGE_KIB = 256 << 10   # big enough that DAMON's regions hold mostly this process's frames even when borrowed
# A borrowed kdamond's regions were shaped before the workload's frames turned hot (on this host: 1024-8192
# regions over 9 GiB, merged while that memory idled). DAMON splits a region in at most three per aggregation,
# so it takes aggregations to part hot frames from cold: measured with two CPU hogs, the hot range's mean
# nr_accesses was 1.1-1.5x the cold one's in the first aggregation, 2.2-2.3x in the second and 3-6x from the
# fourth. The first ADAPT aggregations are therefore not judged.
ADAPT, JUDGED = 4, 3
# The ranges are backed by huge pages: with 4 KiB pages the allocator interleaved the hot and cold ranges' frames
# (657 of 836 2 MiB blocks held both) and other processes' among them, so a region could not hold one without
# the other; once, beside an emulated guest writing its memory on this host, the cold range was shown hot on 92%
# of its bytes and the hot one on 88%. A 2 MiB huge page is one physically contiguous run of one range's frames.
STEADY = """
import ctypes, json, mmap, sys, time
size, until = int(sys.argv[1]), time.monotonic() + float(sys.argv[2])
ranges = {}
for name in ("hot", "cold"):
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.madvise(mmap.MADV_HUGEPAGE)
    for i in range(0, size, 4096):
        m[i] = 1
    start = ctypes.addressof(ctypes.c_char.from_buffer(m))
    ranges[name] = (m, {"name": name, "start": start, "end": start + size})
print(json.dumps({"pid": __import__("os").getpid(), "threads": [r[1] for r in ranges.values()]}), flush=True)
hot = ranges["hot"][0]
while time.monotonic() < until:
    for i in range(0, size, 4096):
        hot[i] = 2
"""


def _compact_free_memory() -> None:
    """Huge pages need free 2 MiB blocks: compacting first makes them likely on a long-running host."""
    Path("/proc/sys/vm/compact_memory").write_text("1\n")


def _huge_share(pid: int) -> float:
    rollup = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:])
    return int(rollup["AnonHugePages"].split()[0]) / (2 * RANGE_KIB)


def _seen_share_and_heat(snaps, t: dict) -> tuple[float, float, float]:
    """Over ``snaps``: the mean share of the range's bytes that lay in monitored regions, and, of those
    bytes, the share shown hot and the mean nr_accesses per byte."""
    seen, hot, heat = 0.0, 0.0, 0.0
    for s in snaps:
        covered = np.clip(np.minimum(s.end, t["end"]).astype(np.int64)
                          - np.maximum(s.start, t["start"]).astype(np.int64), 0, None)
        seen += float(covered.sum())
        hot += float(covered[s.nr_accesses > 0].sum())
        heat += float((covered * s.nr_accesses.astype(np.float64)).sum())
    size = float(t["end"] - t["start"]) * len(snaps)
    return seen / size, hot / max(seen, 1.0), heat / max(seen, 1.0)


def _run_for_snapshots(kernel, pid: int, want: int, timeout_s: float) -> None:
    """Run ``kernel`` on ``pid`` until it has filed ``want`` snapshots of it or ``timeout_s`` passed, then close."""
    kernel.start(SimpleNamespace(pids={pid}))
    try:
        deadline = time.monotonic() + timeout_s
        while len(kernel.snapshots.get(pid, [])) < want and time.monotonic() < deadline:
            kernel.tick(0)
            time.sleep(0.1)
    finally:
        kernel.close()


def test_paddr_source_finds_the_steady_hot_range_hot_and_the_cold_one_cold():
    from damon_bpf.core.attrs import MonitoringAttrs
    from damon_bpf.sources.kdamond import ADMIN
    from damon_bpf.sources.kdamond_paddr import PaddrDamon, read_pagemap

    _compact_free_memory()
    proc = subprocess.Popen([sys.executable, "-c", STEADY, str(RANGE_KIB << 10), "120"], stdout=subprocess.PIPE,
                            text=True)
    notes = []
    try:
        info = json.loads(proc.stdout.readline())
        threads = {t["name"]: t for t in info["threads"]}
        pages = read_pagemap(info["pid"])
        for t in threads.values():   # written before monitoring: resident, with frames root can see
            mine = (pages.vpages >= t["start"] // P) & (pages.vpages < t["end"] // P)
            assert int(mine.sum()) == RANGE_KIB // 4 and (pages.pfns[mine] > 0).all()
        assert _huge_share(info["pid"]) >= 0.9, "the ranges did not get huge pages (THP off or memory fragmented)"
        kernel = PaddrDamon(MonitoringAttrs(), warn=notes.append)
        # 7 aggregations of a borrowed kdamond take 35 s; loaded hosts lag
        _run_for_snapshots(kernel, info["pid"], ADAPT + JUDGED, 100)
    finally:
        proc.kill()
        proc.wait()
    snaps = kernel.snapshots.get(info["pid"], [])
    assert len(snaps) >= ADAPT + JUDGED, notes
    # judged over the bytes the kdamond monitors (a borrowed one watches a fixed physical window: 4-13 GiB
    # of this host's 25, and frames outside it are unseen, not cold); a page takes its whole region's heat,
    # so cold pages sharing regions with hot frames (others' or ours) look warm: what holds is the hot lead
    seen, share, heat = {}, {}, {}
    for name, t in threads.items():
        seen[name], share[name], heat[name] = _seen_share_and_heat(snaps[ADAPT:], t)
    assert min(seen.values()) >= 0.25, ("most frames lay outside the kdamond's regions", seen, notes)
    print("judged", {"seen": seen, "share": share, "heat": heat})   # shown with -rA
    assert share["hot"] > share["cold"] and heat["hot"] >= 2 * heat["cold"] and heat["hot"] > 0, \
        (seen, share, heat, notes[-1:])
    summary = kernel.summary()
    assert summary["pages_seen"] > 0 and summary["error"] is None, summary
    if summary["borrowed_kdamond"] is None:   # ours: removed at the end
        assert (ADMIN / "kdamonds" / "nr_kdamonds").read_text().strip() == "0"
    else:                                     # a host's own: left on, as found
        assert (ADMIN / "kdamonds" / str(summary["borrowed_kdamond"]) / "state").read_text().strip() == "on"
        assert any("nothing of it is changed" in n for n in notes), notes


def _dark_notes(**kwargs) -> list[str]:
    """Notes of a DarkWatch on a target with reports for 3 aggregations, then none while busy."""
    from damon_bpf.core.snapshot import Snapshot
    from damon_bpf.dark import DARK_AGGREGATIONS, DarkWatch

    notes, cpu = [], {"t": 0.0}
    watch = DarkWatch(notes.append, cpu_of=lambda pid: cpu["t"], huge_of=lambda pid: 0, **kwargs)
    for i in range(3 + 2 * DARK_AGGREGATIONS):
        cpu["t"] += 0.09
        n = np.array([5 if i < 3 else 0], np.int64)
        watch.on_snapshot(0, 42, Snapshot(i * 10 ** 8, (i + 1) * 10 ** 8, np.array([0], np.uint64),
                                          np.array([P], np.uint64), n, n, n, n, n))
    return notes


def test_a_dark_target_is_pointed_to_kernel_damon_on_this_host():
    """This host has DAMON paddr: --source damon is offered; in use, the note says where its view is."""
    from damon_bpf.sources.host import extra_sources

    assert extra_sources()["damon"][0], extra_sources()
    offered = _dark_notes()
    assert len(offered) == 1 and "--source damon runs kernel DAMON" in offered[0], offered
    running = _dark_notes(kernel_view=True)
    assert "targets from id 1000" in running[0] and "--source damon runs" not in running[0], running
    with_sampler = _dark_notes(sampler="numa-hint", kernel_view=True)
    assert "targets from id 1000" in with_sampler[0], with_sampler


# ------------------------------------------------------------------------------------------------ --damon-ops

def _one_error_line(run: subprocess.CompletedProcess) -> str:
    lines = run.stderr.strip().splitlines()
    assert run.returncode != 0 and len(lines) == 1 and lines[0].startswith("damon-bpf: error: "), run.stderr
    return lines[0]


def test_damon_ops_vaddr_is_refused_in_one_line_naming_paddr(tmp_path):
    """This host's DAMON has paddr only: asking for vaddr is one line that says what to use instead, and no
    record file is left behind."""
    from damon_bpf.sources.host import damon_info

    info = damon_info()
    assert info["paddr"] and not info["vaddr"], info   # what this CI host is; the guest case is test_vm_paddr.py
    out = tmp_path / "d"
    run = subprocess.run([DAMON_BPF, "record", "--source", "damon", "--damon-ops", "vaddr", "--duration", "1",
                          "-o", str(out), "--", "true"], capture_output=True, text=True, timeout=120)
    line = _one_error_line(run)
    assert "--damon-ops vaddr" in line and "CONFIG_DAMON_VADDR" in line and "use --damon-ops paddr" in line, line
    assert not out.exists()


def test_damon_ops_without_source_damon_is_one_usage_line(tmp_path):
    out = str(tmp_path / "d")
    for args in (["record", "-o", out, "--", "true"], ["live", "-o", out, "--", "true"], ["trace", "--", "true"],
                 ["monitor", "-p", "1", "--metrics-listen", "127.0.0.1:0"]):
        run = subprocess.run([DAMON_BPF, args[0], "--damon-ops", "paddr", "--duration", "1", *args[1:]],
                             capture_output=True, text=True, timeout=120)
        assert "--damon-ops paddr" in _one_error_line(run) and "use it with --source damon" in run.stderr, args
        assert run.returncode == 2, (args, run.returncode)
    assert not (tmp_path / "d").exists()


def test_kernel_damon_paddr_is_what_auto_picks_here():
    from damon_bpf.core.attrs import MonitoringAttrs
    from damon_bpf.errors import UsageError
    from damon_bpf.sources.kdamond_paddr import PaddrDamon, kernel_damon

    for ops in ("auto", "paddr"):
        kernel = kernel_damon(MonitoringAttrs(), warn=lambda _m: None, ops=ops)
        try:
            assert type(kernel) is PaddrDamon, (ops, kernel)
        finally:
            kernel.bpf.cleanup()
    try:
        kernel_damon(MonitoringAttrs(), ops="page")
    except UsageError as err:
        assert "must be one of auto, vaddr, paddr" in str(err)
    else:
        raise AssertionError("--damon-ops page was accepted")


def test_record_with_damon_ops_paddr_files_the_kernel_view_of_the_hot_range(tmp_path, accessgen):
    """record --source damon --damon-ops paddr end to end: the kernel-damon target, mapped back, covers the
    target's resident hot range (how hot it looks is judged by the in-process test above)."""
    from damon_bpf.recordfile import read_record

    out = tmp_path / "d"
    # a borrowed platform kdamond aggregates every 5 s: 14 s give at least two aggregations
    run = subprocess.run([DAMON_BPF, "record", "--source", "damon", "--damon-ops", "paddr", "--duration", "14",
                          "-o", str(out), "--", accessgen, "--duration", "60", f"hot:-1:W:{64 << 10}:0"],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0 and "damon: paddr on the targets' frames" in run.stderr, run.stderr
    assert "Traceback" not in run.stderr
    kernel = [r for r in read_record(str(out)) if r.meta.get("view") == "kernel-damon"]
    assert len(kernel) == 1 and kernel[0].target_id >= 1000 and "paddr" in kernel[0].meta["tool"], kernel
    assert kernel[0].snapshots, "no aggregation of kernel DAMON reached the record"
    hot = json.loads(run.stdout.splitlines()[0])["threads"][0]
    overlap = [int(np.clip(np.minimum(s.end, hot["end"]).astype(np.int64)
                           - np.maximum(s.start, hot["start"]).astype(np.int64), 0, None).sum())
               for s in kernel[0].snapshots]
    # a borrowed kdamond watches only part of physical memory (4-11 GiB here), so some of the range's frames
    # may lie outside its regions; what lies inside is mapped back onto the range's own pages
    assert max(overlap) > 0, "no mapped-back region covers the hot range"


def test_a_process_gone_before_its_first_page_map_is_a_gone_target_not_a_host_error():
    """`record --source damon -- true`: the command can exit before the paddr source reads its page map;
    that is a target that ended (exit 0 as for any source), not "cannot read pagemap" (it was exit 1)."""
    from damon_bpf.errors import TargetError
    from damon_bpf.sources.kdamond_paddr import read_pagemap

    child = subprocess.Popen(["true"])
    child.wait()
    with pytest.raises(TargetError, match="gone"):
        read_pagemap(child.pid)


def _per_page(pages, rows: np.ndarray, snap) -> tuple[np.ndarray, np.ndarray]:
    """For the pages whose frame lies in one of ``rows``' regions: their region's nr_accesses, and the index
    of the virtual region of ``snap`` holding the page (-1 where none does)."""
    from damon_bpf.core.physmap import region_of_pages

    rows = rows[np.argsort(rows["start"], kind="stable")]
    idx = region_of_pages(pages.pfns, rows["start"], rows["end"], P)
    addrs = pages.vpages[idx >= 0].astype(np.uint64) * np.uint64(P)
    at = np.searchsorted(snap.start, addrs, side="right").astype(np.int64) - 1
    inside = (at >= 0) & (addrs < snap.end[np.maximum(at, 0)])
    return rows["nr_accesses"][idx[idx >= 0]].astype(np.int64), np.where(inside, at, -1)


def test_each_aggregation_of_a_real_kdamond_reaches_the_targets_pages_with_its_heat(accessgen):
    """Issue 15's question, on this host: the kdamond's own rows (a real kdamond's, 4 KiB pages, one range
    written nonstop and one written once) against the virtual snapshot made of them. Every page whose frame
    lies in a row's region is in the snapshot, every snapshot byte is such a page, and each virtual region has
    its pages' mean nr_accesses, rounded down (DAMON's merge); unmerged (a region of pages of one heat), that is
    each page's own row's."""
    from damon_bpf.core.attrs import MonitoringAttrs
    from damon_bpf.sources.kdamond_paddr import PaddrDamon

    class Capturing(PaddrDamon):
        def _emit(self, index: int, rows: np.ndarray) -> None:
            maps = dict(self.maps)   # the page maps this aggregation is mapped back through
            super()._emit(index, rows)
            captured.append((rows.copy(), maps))

    captured, notes = [], []
    proc = subprocess.Popen([accessgen, "--duration", "120", f"hot:-1:W:{16 << 10}:0", f"cold:-1:c:{16 << 10}:0"],
                            stdout=subprocess.PIPE, text=True)
    try:
        info = json.loads(proc.stdout.readline())
        pid = info["pid"]
        kernel = Capturing(MonitoringAttrs(), warn=notes.append)
        _run_for_snapshots(kernel, pid, 3, 60)   # a borrowed kdamond here aggregates every 5 s
    finally:
        proc.kill()
        proc.wait()
    snaps = kernel.snapshots.get(pid, [])
    assert len(captured) >= 3 and len(snaps) == len(captured), (len(captured), notes)
    hot = next(t for t in info["threads"] if t["name"] == "hot")
    in_hot_rows = 0
    for (rows, maps), snap in zip(captured, snaps):
        pages = maps[pid]
        physical, region = _per_page(pages, rows, snap)
        assert len(physical) > 0 and (region >= 0).all(), (len(physical), int((region < 0).sum()))
        pages_in = np.bincount(region, minlength=len(snap.start))
        assert (pages_in * P == (snap.end - snap.start)).all()   # nothing in the snapshot but those pages
        sums = np.bincount(region, weights=physical, minlength=len(snap.start))
        assert (snap.nr_accesses.astype(np.int64) == sums.astype(np.int64) // pages_in).all()
        mine = (pages.vpages >= hot["start"] // P) & (pages.vpages < hot["end"] // P)
        in_hot_rows += int(mine.sum())
    assert in_hot_rows > 0, "the hot range's frames lay in no region of any aggregation"
