"""The metrics' pure parts: folding snapshots, bounded thread shares, HOST:PORT, the page with no monitor."""

from __future__ import annotations

import subprocess
from collections import deque

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from damon_bpf.core.snapshot import Snapshot
from damon_bpf.metrics import MetricsExporter, MetricsServer, parse_listen
from damon_bpf.metrics.fold import OTHER, TargetTotals, fold, hot_threshold, thread_shares
from promserver import fetch, free_port

PAGE = 4096


def snapshot(end_ns: int = 100_000_000) -> Snapshot:
    # three regions: 8 pages written 3 times, 4 pages read often, 2 pages idle
    start = np.array([0, 8 * PAGE, 12 * PAGE], dtype=np.uint64)
    end = np.array([8 * PAGE, 12 * PAGE, 14 * PAGE], dtype=np.uint64)
    return Snapshot(end_ns - 100_000_000, end_ns, start, end, np.array([1, 9, 0]), np.array([0, 3, 5]),
                    np.array([3, 40, 0]), np.array([3, 0, 0]), np.array([0, 40, 0]),
                    by_cpu={0: np.array([3, 0, 0]), 1: np.array([0, 40, 0])},
                    by_tid={11: np.array([3, 0, 0]), 12: np.array([0, 40, 0])})


def test_fold_gauges_and_counters():
    totals = TargetTotals(7)
    for index in range(3):
        fold(totals, snapshot((index + 1) * 100_000_000), PAGE, hot_threshold(20), {0: 0, 1: 1}, 10**9)
    assert totals.working_set_bytes == 12 * PAGE and totals.hot_bytes == 4 * PAGE
    assert totals.dirty_set_bytes == 8 * PAGE and totals.regions == 3
    assert totals.written_bytes == 3 * 3 * PAGE            # 3 write reports a window, a page each, 3 windows
    assert totals.dirty_bytes_per_s == pytest.approx(3 * PAGE / 0.1)
    assert totals.reports_by_cpu == {0: 9, 1: 120} and totals.reports_by_node == {0: 9, 1: 120}


def test_thread_shares_keep_a_window():
    totals = TargetTotals(7)
    for index in range(30):
        fold(totals, snapshot((index + 1) * 100_000_000), PAGE, 2, {}, 10**9)
    assert len(totals.recent_tids) == 11   # the last second, both ends included
    assert thread_shares(totals.recent_tids, 1) == [("12", 40 / 43), (OTHER, 3 / 43)]


@given(st.lists(st.dictionaries(st.integers(1, 10**6), st.integers(0, 1000), max_size=40), max_size=20),
       st.integers(1, 10))
def test_thread_shares_bounded(windows, top):
    shares = thread_shares(deque((i, tids) for i, tids in enumerate(windows)), top)
    assert len(shares) <= top + 1
    if shares:
        assert shares[-1][0] == OTHER and sum(s for _t, s in shares) == pytest.approx(1)


@pytest.mark.parametrize("text, expected", [("127.0.0.1:9101", ("127.0.0.1", 9101)), (":9101", ("0.0.0.0", 9101)),
                                            ("[::1]:80", ("::1", 80)), ("localhost:0", ("localhost", 0))])
def test_parse_listen(text, expected):
    assert parse_listen(text) == expected


@pytest.mark.parametrize("text", ["9101", "host:", "host:port", "h:70000", "h:٣"])
def test_parse_listen_refuses(text):
    with pytest.raises(ValueError):
        parse_listen(text)


def test_page_without_a_monitor_is_valid():
    with MetricsServer(f"127.0.0.1:{free_port()}", MetricsExporter()) as server:
        page = fetch(f"http://127.0.0.1:{server.port}/metrics")
    assert "damon_bpf_reports_seen_total 0.0" in page
    check = subprocess.run(["promtool", "check", "metrics"], input=page, capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_busy_port_is_one_error_line(tmp_path):
    from conftest import DAMON_BPF

    with MetricsServer(f"127.0.0.1:{free_port()}", MetricsExporter()) as server:
        run = subprocess.run([DAMON_BPF, "record", "-o", str(tmp_path / "x"), "--metrics-listen",
                              f"127.0.0.1:{server.port}", "-p", "1"], capture_output=True, text=True)
    assert run.returncode == 2
    assert run.stderr.startswith("damon-bpf: error: --metrics-listen") and len(run.stderr.splitlines()) == 1
