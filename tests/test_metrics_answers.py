"""The sharing and NUMA answers as metrics, their pure parts: folding a target's recent snapshots into the
served numbers (metrics.answers), --apply's moves into counters, and the families they make (bounded labels,
names promtool accepts). The real scrape of a real workload is in test_metrics_prometheus.py.

This host has one NUMA node, so the two-node placement here comes from a page-placement function given to
``reports.numa.numa`` (its ``query`` argument, as report numa's own tests do): where move_pages would say the
pages live."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry, generate_latest

from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.metrics import MetricsExporter
from damon_bpf.metrics.answers import TargetAnswers, target_answers
from damon_bpf.metrics.fold import TargetTotals, fold_moves
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports.numa_live import Move
from damon_bpf.reports.recent import RecentRecords

PAGE = 4096
A, B, C = (0, 64 * PAGE), (64 * PAGE, 128 * PAGE), (128 * PAGE, 192 * PAGE)   # regions: two hot, one idle
TWO_NODES = {"0": 0, "1": 1}   # CPU 0 on node 0, CPU 1 on node 1


def window(i: int) -> Snapshot:
    """Threads 11 and 12 write region A from CPU 0; thread 13 reads region B from CPU 1; C is idle."""
    start = np.array([A[0], B[0], C[0]], dtype=np.uint64)
    end = np.array([A[1], B[1], C[1]], dtype=np.uint64)
    reports = np.array([40, 20, 0])
    return Snapshot(i * 10**8, (i + 1) * 10**8, start, end, np.array([10, 10, 0]), np.array([5, 5, 5]), reports,
                    np.array([40, 0, 0]), np.array([0, 20, 0]),
                    by_cpu={0: np.array([40, 0, 0]), 1: np.array([0, 20, 0])},
                    by_tid={11: np.array([20, 0, 0]), 12: np.array([20, 0, 0]), 13: np.array([0, 20, 0])})


def on_node_1(_pid: int, addrs: np.ndarray) -> np.ndarray:
    """Every page lives on node 1 (what move_pages' query would answer)."""
    return np.ones(len(addrs), dtype=np.int32)


def record(snapshots: list[Snapshot], pid: int = 4242) -> TargetRecord:
    return TargetRecord(pid, pid, 5000, 100000, 1000000, snapshots, {"numa_cpu_nodes": TWO_NODES})


def test_the_answers_of_two_threads_sharing_a_region_on_the_wrong_node():
    answers = target_answers(record([window(i) for i in range(10)]), query=on_node_1)
    size_a, size_b = A[1] - A[0], B[1] - B[0]
    # both writers accessed A in each of the 10 windows: A's size per window (report sharing sums 10 x that)
    assert answers.pairs == [(11, 12, pytest.approx(size_a))]
    assert answers.nr_pairs == 1 and answers.nr_groups == 1   # {11, 12}; 13 alone is no group
    assert answers.accessed_by_node == pytest.approx({0: size_a, 1: size_b})
    assert answers.home_by_node == pytest.approx({1: size_a + size_b})   # C has no report: not counted
    # the same present bytes, split by where they were accessed from: A from node 0, B from node 1
    # A is accessed from node 0 and lives on node 1: report numa's rule moves it to node 0; B is local
    assert answers.movable_by_node == pytest.approx({0: size_a, 1: 0.0})


def test_too_young_regions_are_not_worth_moving_and_a_gone_process_has_no_placement():
    young = [window(i) for i in range(2)]
    for s in young:
        s.age = np.array([1, 1, 1])   # report numa wants 3 aggregations of age, or reports in 3 windows
    assert target_answers(record(young), query=on_node_1).movable_by_node == {0: 0.0, 1: 0.0}

    def gone(pid: int, _addrs: np.ndarray) -> np.ndarray:
        from damon_bpf.errors import TargetError
        raise TargetError(f"process {pid} is gone")

    answers = target_answers(record([window(i) for i in range(10)]), query=gone)
    assert answers.home_by_node == answers.accessed_by_node == answers.movable_by_node == {}
    assert answers.pairs   # the sharing answer needs no live process


def test_the_numa_bytes_are_present_pages_not_region_sizes():
    """A region spanning an unmapped gap (most of its pages absent) counts the pages that are there."""
    def half_present(_pid: int, addrs: np.ndarray) -> np.ndarray:
        return np.where((addrs // PAGE) % 2 == 0, 1, -2).astype(np.int32)   # every other page: -ENOENT

    answers = target_answers(record([window(i) for i in range(10)]), query=half_present)
    size_a, size_b = A[1] - A[0], B[1] - B[0]
    assert answers.home_by_node == pytest.approx({1: (size_a + size_b) / 2})
    assert answers.accessed_by_node == pytest.approx({0: size_a / 2, 1: size_b / 2})
    assert answers.movable_by_node == pytest.approx({0: size_a / 2, 1: 0.0})


def test_only_the_top_pairs_are_kept_and_the_rest_counted():
    tids = list(range(100, 108))   # 8 threads in one region: 28 pairs
    s = window(0)
    s.by_tid = {tid: np.array([5, 0, 0]) for tid in tids}
    answers = target_answers(record([s]), top=3, query=on_node_1)
    assert len(answers.pairs) == 3 and answers.nr_pairs == 28 and answers.nr_groups == 1


@st.composite
def windows(draw) -> list[Snapshot]:
    """Windows over one layout of 1-6 regions, random reports by 1-5 threads on CPUs 0 and 1."""
    nr = draw(st.integers(1, 6))
    sizes = draw(st.lists(st.integers(1, 16), min_size=nr, max_size=nr))
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(np.uint64) * PAGE
    out = []
    for i in range(draw(st.integers(1, 5))):
        tids = {tid: np.array(draw(st.lists(st.integers(0, 9), min_size=nr, max_size=nr)))
                for tid in range(1, draw(st.integers(1, 5)) + 1)}
        reports = sum(tids.values())
        on_cpu0 = np.array([draw(st.integers(0, int(r))) for r in reports])
        out.append(Snapshot(i * 10**8, (i + 1) * 10**8, bounds[:-1], bounds[1:], np.minimum(reports, 20),
                            np.full(nr, 4), reports, reports, np.zeros(nr, int),
                            by_cpu={0: on_cpu0, 1: reports - on_cpu0}, by_tid=tids))
    return out


@settings(max_examples=60, deadline=None)
@given(windows(), st.integers(1, 4))
def test_answers_are_bounded_and_add_up(snapshots, top):
    answers = target_answers(record(snapshots), top=top, query=on_node_1)
    assert len(answers.pairs) <= top and answers.nr_pairs >= len(answers.pairs)
    assert [p[2] for p in answers.pairs] == sorted((p[2] for p in answers.pairs), reverse=True)
    assert all(a < b for a, b, _size in answers.pairs)
    last = snapshots[-1]
    touched = sum(s.nr_reports for s in snapshots) > 0
    accessed = float(((last.end - last.start).astype(float) * touched).sum())   # one layout, every page present
    assert sum(answers.accessed_by_node.values()) == pytest.approx(accessed)
    assert sum(answers.home_by_node.values()) == pytest.approx(accessed)
    assert 0 <= sum(answers.movable_by_node.values()) <= accessed + 1e-6
    assert set(answers.movable_by_node) >= {0, 1}   # every node has its gauge, 0 when nothing moves there


def test_moves_add_up_per_process_and_node():
    targets = {7: TargetTotals(7)}
    moves = [Move(0, 0, PAGE, 1, 3 * PAGE, 0, 0.0), Move(0, PAGE, 2 * PAGE, 1, PAGE, 0, 0.0),
             Move(1, 0, PAGE, 0, 2 * PAGE, 0, 0.0)]
    fold_moves(targets, moves, {0: 7, 1: 9})
    assert targets[7].moved_bytes_by_node == {1: 4 * PAGE}
    assert targets[9].moved_bytes_by_node == {0: 2 * PAGE}


def test_recent_records_name_their_process_and_forget_it():
    meta = {"comm": "accessgen", "ppid": 1}
    recent = RecentRecords(MonitoringAttrs(), keep=3, target_meta=lambda tid, pid: meta if pid == 42 else None)
    for i in range(5):
        recent.on_snapshot(0, 42, window(i))
        recent.on_snapshot(1, 43, window(i))
    rec = recent.record(0)
    assert rec is not None and len(rec.snapshots) == 3 and rec.meta["target"] == meta
    assert recent.comm(0) == "accessgen" and recent.comm(1) is None
    assert [r.target_id for r in recent.records()] == [0, 1]
    recent.forget(0)
    assert recent.record(0) is None and [r.target_id for r in recent.records()] == [1]


def test_the_answer_families_have_bounded_labels_and_promtool_accepts_them():
    exporter = MetricsExporter(top_pairs=2)
    answers = TargetAnswers([(11, 12, 8.0 * PAGE), (11, 13, 2.0 * PAGE)], 3, 1, {0: 10.0 * PAGE, -1: PAGE},
                            {0: 11.0 * PAGE}, {0: 0.0})
    exporter.targets = {42: TargetTotals(42, "accessgen", answers=answers)}
    exporter.applier = object()   # --apply runs: moved-bytes counters for every node, 0 so far
    families = {f.name: f for f in exporter._build([])}
    pairs = families["damon_bpf_thread_pair_shared_bytes"].samples
    assert [(s.labels["a"], s.labels["b"], s.value) for s in pairs] == [("11", "12", 8 * PAGE), ("11", "13", 2 * PAGE)]
    assert all(set(s.labels) == {"pid", "comm", "a", "b"} for s in pairs)
    assert families["damon_bpf_thread_pairs"].samples[0].value == 3
    assert families["damon_bpf_thread_groups"].samples[0].value == 1
    accessed = {s.labels["node"]: s.value for s in families["damon_bpf_numa_accessed_bytes"].samples}
    assert accessed == {"-1": PAGE, "0": 10 * PAGE}
    moved = families["damon_bpf_numa_moved_bytes"].samples
    assert [(s.name, s.labels["node"], s.value) for s in moved] == [("damon_bpf_numa_moved_bytes_total", "0", 0)]

    registry = CollectorRegistry(auto_describe=False)
    exporter._families = list(families.values())
    registry.register(exporter)
    page = generate_latest(registry).decode()
    assert 'damon_bpf_thread_pair_shared_bytes{a="11",b="12",comm="accessgen",pid="42"} 32768.0' in page
    check = subprocess.run(["promtool", "check", "metrics"], input=page, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
