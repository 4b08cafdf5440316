"""A real Prometheus server scrapes a running ``record --metrics-listen``: the target's series arrive with
its labels and values the workload's ground truth bounds, and ``promtool check metrics`` accepts the page."""

from __future__ import annotations

import json
import signal
import subprocess
import time

import pytest

from conftest import DAMON_BPF
from promserver import Prometheus, as_instant_query, dashboard_queries, free_port, wait_for_page

pytestmark = pytest.mark.bpf
MiB = 1 << 20


@pytest.fixture
def prometheus_for(tmp_path):
    servers = []

    def start(targets: list[str]) -> Prometheus:
        servers.append(Prometheus(tmp_path, targets))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def one(series: list[dict]) -> float:
    assert len(series) == 1, series
    return float(series[0]["value"][1])


def test_prometheus_scrapes_record(tmp_path, accessgen, prometheus_for):
    port = free_port()
    prom = prometheus_for([f"127.0.0.1:{port}"])
    record = subprocess.Popen(
        [DAMON_BPF, "record", "-o", str(tmp_path / "r.data"), "--metrics-listen", f"127.0.0.1:{port}", "--",
         accessgen, "--duration", "12", "wr:0:w:4096:0", "rd:1:r:1024:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(record.stdout.readline())
        tids = {str(t["tid"]): t["name"] for t in info["threads"]}
        target = f'pid="{info["pid"]}",comm="accessgen"'

        page = wait_for_page(f"http://127.0.0.1:{port}/metrics")
        while "damon_bpf_working_set_bytes{" not in page:   # the first snapshots close after 100 ms
            page = wait_for_page(f"http://127.0.0.1:{port}/metrics")
        check = subprocess.run(["promtool", "check", "metrics"], input=page, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr

        prom.wait_for(f"damon_bpf_written_bytes_total{{{target}}}")
        prom.wait_for(f"count_over_time(damon_bpf_dirty_set_bytes{{{target}}}[1m]) >= 5")
        wss = one(prom.query(f"max_over_time(damon_bpf_working_set_bytes{{{target}}}[1m])"))
        dirty_set = one(prom.query(f"max_over_time(damon_bpf_dirty_set_bytes{{{target}}}[1m])"))
        hot = one(prom.query(f"max_over_time(damon_bpf_hot_bytes{{{target}}}[1m])"))
        dirty_rate = one(prom.query(f"max_over_time(damon_bpf_dirty_bytes_per_second{{{target}}}[1m])"))
        assert 5 * MiB <= wss < 512 * MiB        # both ranges (4 + 1 MiB) are touched in every window
        assert 4 * MiB <= dirty_set <= wss       # the written range; the read one is not dirty
        assert 0 < hot <= wss
        assert dirty_rate >= 20 * MiB            # 4 MiB rewritten many times per 100 ms window

        by_cpu = {s["metric"]["cpu"]: float(s["value"][1])
                  for s in prom.query(f"damon_bpf_cpu_reports_total{{{target}}}")}
        assert by_cpu.get("0", 0) > 0 and by_cpu.get("1", 0) > 0, by_cpu   # the threads are pinned to 0 and 1
        by_node = prom.query(f"damon_bpf_node_reports_total{{{target}}}")
        assert [s["metric"]["node"] for s in by_node] == ["0"]   # one node on this host
        shares = {s["metric"]["tid"]: float(s["value"][1])
                  for s in prom.query(f"damon_bpf_thread_report_share{{{target}}}")}
        assert set(shares) <= set(tids) | {str(info["pid"]), "other"}, shares
        assert max(shares, key=shares.get) in tids and sum(shares.values()) == pytest.approx(1)

        seen = one(prom.query("damon_bpf_reports_seen_total"))
        delivered = one(prom.query("damon_bpf_reports_delivered_total"))
        assert seen >= delivered > 0 and one(prom.query("damon_bpf_reports_lost_total")) >= 0
        places = {s["metric"]["place"] for s in prom.query("damon_bpf_reports_placed_total")}
        assert places == {"in_regions", "outside_regions", "late", "unattributed"}
        assert one(prom.query("damon_bpf_collector_cpu_seconds_total")) > 0
        assert one(prom.query("damon_bpf_targets")) == 1
        for expr in dashboard_queries():   # every panel's query is valid PromQL over what was scraped
            answer = prom.query(as_instant_query(expr))
            # no sampler, no filter, no --apply here, and no two threads share memory (the next test has those)
            assert answer or any(word in expr for word in ("sampler", "filtered", "numa_moved", "thread_pair_")), expr
        assert not prom.query("damon_bpf_numa_moved_bytes_total")   # served only with --apply
        last_written = one(prom.query(f"max_over_time(damon_bpf_written_bytes_total{{{target}}}[1m])"))

        result = json.loads(record.stdout.readline())
        assert record.wait(timeout=60) == 0, record.stderr.read()
    finally:
        if record.poll() is None:
            record.kill()
    writer = next(t for t in result["threads"] if t["tid"] == int(next(k for k, v in tids.items() if v == "wr")))
    # a window counts a page once, and each write report is one write fault: never more than the writes made
    assert 4 * MiB <= last_written <= (writer["touches"] + 4096) * info["page_size"]


def test_prometheus_scrapes_the_sharing_and_numa_answers(tmp_path, accessgen, prometheus_for):
    """Two threads write one shared range, a third its own: once the answers' 15 s window has left the first
    windows behind (DAMON's first regions span the gaps between mappings, so every thread then shares
    gigabytes of them), the top pair is the two writers with about the range's size and the third shares
    nothing; one group is suggested; on this one-node host the accessed pages are accessed from and live on
    node 0, nothing is worth moving, and --apply's moved bytes are served, 0."""
    port = free_port()
    prom = prometheus_for([f"127.0.0.1:{port}"])
    record = subprocess.Popen(
        [DAMON_BPF, "record", "-o", str(tmp_path / "r.data"), "--apply", "--metrics-listen", f"127.0.0.1:{port}",
         "--", accessgen, "--duration", "120", "one:0:s:4096:0", "two:1:s:4096:0", "own:-1:w:4096:0"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        info = json.loads(record.stdout.readline())
        tids = {t["name"]: str(t["tid"]) for t in info["threads"]}
        target = f'pid="{info["pid"]}",comm="accessgen"'
        writers = tuple(sorted((tids["one"], tids["two"]), key=int))
        page = wait_for_page(f"http://127.0.0.1:{port}/metrics")
        while "damon_bpf_thread_pair_shared_bytes{" not in page:   # BPF built, the first answers made
            page = wait_for_page(f"http://127.0.0.1:{port}/metrics")
        check = subprocess.run(["promtool", "check", "metrics"], input=page, capture_output=True, text=True)
        assert check.returncode == 0, check.stdout + check.stderr

        deadline = time.monotonic() + 90
        while True:
            pairs = {(s["metric"]["a"], s["metric"]["b"]): float(s["value"][1])
                     for s in prom.query(f"damon_bpf_thread_pair_shared_bytes{{{target}}}")}
            shared = pairs.get(writers, 0.0)
            with_own = [size for pair, size in pairs.items() if tids["own"] in pair]
            if 2 * MiB <= shared <= 64 * MiB and all(size <= 0.05 * shared for size in with_own):
                break   # the 4 MiB range, at region granularity, per window; the own writer (almost) nothing
            assert time.monotonic() < deadline, pairs
            time.sleep(1)
        assert max(pairs, key=pairs.get) == writers and len(pairs) <= 5, pairs
        assert len(pairs) <= one(prom.query(f"max_over_time(damon_bpf_thread_pairs{{{target}}}[1m])"))
        assert one(prom.query(f"max_over_time(damon_bpf_thread_groups{{{target}}}[1m])")) >= 1

        accessed = prom.query(f"damon_bpf_numa_accessed_bytes{{{target}}}")
        home = prom.query(f"damon_bpf_numa_home_bytes{{{target}}}")
        assert [s["metric"]["node"] for s in accessed] == [s["metric"]["node"] for s in home] == ["0"]
        assert float(home[0]["value"][1]) > 0   # present pages (sampled): the writers drop theirs after each pass
        assert float(accessed[0]["value"][1]) == pytest.approx(float(home[0]["value"][1]))   # same pages, one node
        movable = prom.query(f"damon_bpf_numa_movable_bytes{{{target}}}")
        assert [(s["metric"]["node"], float(s["value"][1])) for s in movable] == [("0", 0.0)]
        moved = prom.query(f"damon_bpf_numa_moved_bytes_total{{{target}}}")
        assert [(s["metric"]["node"], float(s["value"][1])) for s in moved] == [("0", 0.0)]
        for expr in dashboard_queries():   # the sharing and NUMA panels have data here
            if "thread_pair" in expr or "numa_" in expr:
                assert prom.query(as_instant_query(expr)), expr

        record.send_signal(signal.SIGTERM)
        assert record.wait(timeout=60) == 0, record.stderr.read()
    finally:
        if record.poll() is None:
            record.kill()
