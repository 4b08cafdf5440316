"""report numa's decision on synthetic records (a two-node answer this one-node host cannot produce for
real: the page placement comes from a given function), and the sysfs CPU -> node map."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports import numa as nm
from damon_bpf.sources import numa as numa_src
from test_reports import A, MiB, plain, snap

TWO_NODES = {"numa_cpu_nodes": {"0": 0, "1": 0, "2": 1, "3": 1}}


def remote_region(cpu_reports: dict[int, int], age: int = 10, windows: int = 5) -> list[TargetRecord]:
    """Five aggregation windows of a 4 MiB region and a cold one; the first has ``cpu_reports`` in the last
    ``windows`` of them (none in the others) and DAMON's ``age`` in each."""
    def regions(i: int) -> list[dict]:
        reports = cpu_reports if i >= 5 - windows else {}
        return [{"start": A, "end": A + 4 * MiB, "acc": 5 if reports else 0, "age": age,
                 "rep": sum(reports.values()), "cpus": reports},
                {"start": A + 4 * MiB, "end": A + 8 * MiB, "age": age}]
    return [TargetRecord(0, 4242, 5000, 100_000, 1_000_000, [snap(i, regions(i)) for i in range(5)],
                         dict(TWO_NODES))]


def on_node(node: int):
    return lambda pid, addrs: np.full(len(addrs), node, dtype=np.int32)


def test_a_region_used_from_node_1_living_on_node_0_is_named_with_its_bytes():
    report = nm.numa(remote_region({2: 90, 0: 10}), query=on_node(0), page_size=4096)
    (r,) = report.regions                              # the cold region has no reports: not listed
    assert r.access_share == pytest.approx({1: 0.9, 0: 0.1})
    assert r.page_bytes == {0: 4 * MiB}
    assert (r.move_to, r.move_bytes) == (1, 4 * MiB)
    assert report.cpu_map_from == "record"
    assert "move 4 MiB in 1 regions" in plain(nm.table(report))


@pytest.mark.parametrize("cpus, placement, age, windows, why", [
    ({2: 90, 0: 10}, 1, 10, 5, "already local"),
    ({2: 40, 0: 60}, 1, 10, 5, "mostly node 0, on node 1: move to 0"),
    ({2: 50, 0: 50}, 0, 10, 5, "even split: min_share 0.5 reached by node 0 ... or 1"),
    ({2: 90, 0: 10}, 0, 1, 2, "too young: DAMON's age and the windows with reports both under min_age"),
    ({2: 90, 0: 10}, 0, 0, 3, "DAMON's age restarted (a fault sampler's flicker), but reports in 3 windows: old"),
    ({2: 90, 0: 10}, 0, 4, 1, "DAMON's age is enough alone"),
    ({2: 1}, 0, 10, 5, "too cold"),
])
def test_what_is_not_worth_moving(cpus, placement, age, windows, why):
    report = nm.numa(remote_region(cpus, age, windows), query=on_node(placement), page_size=4096)
    (r,) = report.regions
    assert r.windows == windows
    dominant = max(r.access_share, key=r.access_share.get)
    old = age >= nm.DEFAULT_MIN_AGE or windows >= nm.DEFAULT_MIN_AGE
    expect = windows * sum(cpus.values()) >= nm.DEFAULT_MIN_REPORTS and old and dominant != placement
    assert (r.move_to is not None) == expect, why
    if not expect:
        assert report.note.startswith("nothing to move")


def test_windows_with_reports_count_each_window_once_across_relayouts():
    """A layout region counts a window when any of that window's regions overlapping it had reports, whatever
    DAMON's split and merge did to the regions in between."""
    whole = [{"start": A, "end": A + 8 * MiB, "rep": 4}]
    halves = [{"start": A, "end": A + 4 * MiB, "rep": 3}, {"start": A + 4 * MiB, "end": A + 8 * MiB}]
    quiet = [{"start": A, "end": A + 8 * MiB}]
    layout = snap(9, [{"start": A, "end": A + 2 * MiB}, {"start": A + 2 * MiB, "end": A + 6 * MiB},
                      {"start": A + 6 * MiB, "end": A + 8 * MiB}])
    snaps = [snap(0, whole), snap(1, halves), snap(2, quiet), snap(3, whole)]
    assert nm.windows_with_reports(snaps, layout).tolist() == [3, 3, 2]


def test_apply_moves_under_the_quota_and_counts_what_moved():
    where = {}

    def query(pid, addrs):
        return np.array([where.get(int(a), 0) for a in addrs], dtype=np.int32)

    def move(pid, addrs, node):
        where.update({int(a): node for a in addrs[::2]})  # every other page refuses (e.g. shared)
        return np.array([node if i % 2 == 0 else -16 for i in range(len(addrs))], dtype=np.int32)

    report = nm.numa(remote_region({2: 90}), query=query, page_size=4096)
    moved = nm.apply(report, quota=1e12, page_size=4096, move=move, query=query)
    assert moved == [{"start": A, "end": A + 4 * MiB, "to_node": 1, "moved_bytes": 2 * MiB, "failed_pages": 512,
                      "errors": {"EBUSY": 512}}]
    assert "moved 2 MiB of 4 MiB" in nm.moved_line(report)


def test_sample_pages_spread_evenly_and_never_leave_the_region():
    addrs = nm.sample_pages(A, A + 10 * 4096, 4096, 4)
    assert list(addrs) == [A, A + 2 * 4096, A + 5 * 4096, A + 7 * 4096]
    assert len(nm.sample_pages(A, A + 3 * 4096, 4096, 512)) == 3


def test_cpu_map_reads_each_nodes_cpulist(tmp_path):
    for node, cpus in ((0, "0-1,4"), (1, "2-3"), (2, "")):  # node 2: memory only
        (tmp_path / f"node{node}").mkdir()
        (tmp_path / f"node{node}" / "cpulist").write_text(cpus + "\n")
    assert numa_src.cpu_nodes(tmp_path) == {0: 0, 1: 0, 2: 1, 3: 1, 4: 0}
    assert set(numa_src.cpu_nodes().values()) >= {0}   # this host


def test_record_apply_moves_during_the_run_and_counts_the_accesses_that_turned_local():
    """NumaApplier (record/live --apply) on synthetic snapshots of two nodes: a region used from node 1
    living on node 0 is moved within the quota; the snapshots after the move count as local from node 1."""
    from damon_bpf.core.attrs import MonitoringAttrs
    from damon_bpf.reports.numa_live import NumaApplier
    from damon_bpf.reports.recent import RecentRecords

    where: dict[int, int] = {}
    mover_threads = set()

    def query(pid, addrs):
        return np.array([where.get(int(a), 0) for a in addrs], dtype=np.int32)

    def move(pid, addrs, node):
        mover_threads.add(threading.get_ident())
        where.update({int(a): node for a in addrs})
        return np.full(len(addrs), node, dtype=np.int32)

    recent = RecentRecords(MonitoringAttrs())
    recent.meta = dict(TWO_NODES)             # the map the recorder would store on a two-node host
    cpus = {int(c): n for c, n in TWO_NODES["numa_cpu_nodes"].items()}
    applier = NumaApplier(recent, 1e12, period_s=0.0, query=query, move=move, cpu_nodes=cpus, memory_nodes=[0, 1])
    (rec,) = remote_region({2: 90, 0: 10})
    for s in rec.snapshots:
        recent.on_snapshot(0, 4242, s)
        applier.on_snapshot(0, 4242, s)
    applier.on_tick(0)                        # hands the round to the worker, returns without waiting
    assert applier.worker.wait(10)
    assert applier.moves == []                # not taken yet: the collector takes them at its next tick
    later = remote_region({2: 50})[0].snapshots[0]
    later.start_ns = later.end_ns = 2**62   # after the move, closed before the collector took the move
    recent.on_snapshot(0, 4242, later)
    applier.on_snapshot(0, 4242, later)
    applier.on_tick(0)                        # takes the move (and counts `later`); already local: nothing moves twice
    applier.finish()
    assert mover_threads and threading.get_ident() not in mover_threads   # moved on the worker
    assert set(where.values()) == {1}
    summary = applier.summary()
    assert summary["moved_bytes"] == 4 * MiB and summary["regions_moved"] == 1
    assert summary["reports_after"] == summary["local_after"] == 50
    assert "moved 4 MiB in 1 regions" in applier.line() and "10% before" in applier.line()
    assert "100% of their 50 reports since" in applier.line()
    assert NumaApplier(recent, 1e12, cpu_nodes={0: 0}, memory_nodes=[0]).line() == (
        "--apply: nothing to move: this host has one NUMA node, every page is local")


def test_record_apply_never_holds_the_collector_and_skips_a_round_due_while_one_runs():
    """A move that takes long (move_pages under TCG) holds the worker, not the collector's tick; the rounds due
    meanwhile are skipped and counted, and their snapshots judged by the next round that starts."""
    from damon_bpf.core.attrs import MonitoringAttrs
    from damon_bpf.reports.numa_live import NumaApplier
    from damon_bpf.reports.recent import RecentRecords

    release, judged = threading.Event(), []

    def query(pid, addrs):
        return np.zeros(len(addrs), dtype=np.int32)   # every page on node 0

    def slow_move(pid, addrs, node):
        assert release.wait(10)
        return np.full(len(addrs), node, dtype=np.int32)

    recent = RecentRecords(MonitoringAttrs())
    recent.meta = dict(TWO_NODES)
    cpus = {int(c): n for c, n in TWO_NODES["numa_cpu_nodes"].items()}
    applier = NumaApplier(recent, 1e12, period_s=0.0, query=query, move=slow_move, cpu_nodes=cpus,
                          memory_nodes=[0, 1])
    judge = applier.worker.work
    applier.worker.work = lambda rec: (judged.append(len(rec.snapshots)), judge(rec))[1]
    (rec,) = remote_region({2: 90, 0: 10})
    for s in rec.snapshots:
        recent.on_snapshot(0, 4242, s)
    applier.on_tick(0)                    # round 1 starts and blocks in move_pages
    more = remote_region({2: 90})[0].snapshots
    for s in more:
        recent.on_snapshot(0, 4242, s)
        applier.on_tick(0)                # returns at once: skipped, the worker still runs
    assert applier.worker.busy and applier.worker.skipped == len(more) and applier.rounds == 1
    release.set()
    assert applier.worker.wait(10)
    applier.on_tick(0)                    # round 2: every snapshot the skipped rounds would have judged
    applier.finish()
    assert judged == [len(rec.snapshots), len(more)]
    assert applier.summary()["rounds_skipped"] == len(more)
    assert f"{len(more)} skipped while one ran" in applier.line()


def test_a_range_written_nonstop_under_a_sparse_sampler_is_old_enough_to_move():
    """The real region core at DAMON's defaults (5 ms samples, 100 ms windows) fed what soft-dirty gave in the
    two-node guest: every 250 ms one sweep writing each page of an 8 MiB range once, from a CPU of node 1.
    nr_accesses flickers between windows (0 in some, 1-4 in others), so DAMON's age keeps restarting; the range
    has reports in most windows, and report numa moves all of it to node 1."""
    from damon_bpf.access import ACCESS_DTYPE, ACCESS_WRITE
    from damon_bpf.core.aggregator import Aggregator
    from damon_bpf.core.attrs import MonitoringAttrs

    page, t0 = 4096, 10**12
    lo, pages = 0x100000000000, 2048
    agg = Aggregator(MonitoringAttrs(), lambda: [(lo, lo + pages * page)], start_ns=t0)
    snaps = []
    for sweep in range(12):   # 3 s
        reports = np.zeros(pages, ACCESS_DTYPE)
        reports["addr"] = lo + np.arange(pages, dtype=np.uint64) * page
        reports["time_ns"] = t0 + sweep * 250_000_000 + np.arange(pages) * 10_000   # a sweep takes ~20 ms
        reports["cpu"], reports["pid"], reports["tid"], reports["write"] = 2, 4242, 7, ACCESS_WRITE
        agg.feed(reports)
        snaps += agg.advance(t0 + (sweep + 1) * 250_000_000)
    rec = [TargetRecord(0, 4242, 5000, 100_000, 1_000_000, snaps, dict(TWO_NODES))]
    layout = snaps[-1]
    assert (layout.age < nm.DEFAULT_MIN_AGE).all(), layout.age   # the flicker: no region is old by DAMON's age
    report = nm.numa(rec, query=on_node(0), page_size=page)
    assert sum(r.move_bytes for r in report.to_move) == pages * page
    assert {r.move_to for r in report.to_move} == {1}
    assert all(r.windows >= nm.DEFAULT_MIN_AGE for r in report.to_move)
