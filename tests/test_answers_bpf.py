"""The decision reports on real recordings of the ground-truth workload: dirty-rate, sharing, numa."""

from __future__ import annotations

import contextlib
import json
import subprocess

import pytest

from conftest import DAMON_BPF
from damon_bpf.recordfile import read_record
from damon_bpf.reports import dirty_rate as dr

pytestmark = pytest.mark.bpf

MiB = 1 << 20


@contextlib.contextmanager
def running(accessgen, *specs, seconds=20.0):
    """accessgen running freely (no --wait); yields its ground truth; stopped at the end."""
    proc = subprocess.Popen([accessgen, "--duration", str(seconds), *specs], stdout=subprocess.PIPE, text=True)
    try:
        yield json.loads(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait()


def record_pids(tmp_path, pids, *options, seconds=3):
    out = tmp_path / "damon.data"
    result = subprocess.run([DAMON_BPF, "record", "-o", str(out), "--duration", str(seconds), *options,
                             *(arg for pid in pids for arg in ("-p", str(pid)))],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return out


def report(path, *args) -> dict:
    result = subprocess.run([DAMON_BPF, "report", *args, "-i", str(path), "--json"], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_dirty_rate_ranks_the_slow_writer_first_and_the_estimate_is_the_arithmetic(tmp_path, accessgen):
    # fast: 16 MiB written and dropped over and over; slow: 64 KiB, so at most 64 KiB per window
    with running(accessgen, "fast:0:w:16384:0") as fast, running(accessgen, "slow:1:w:64:0") as slow:
        path = record_pids(tmp_path, [fast["pid"], slow["pid"]])
    window_s = read_record(str(path))[0].aggr_us / 1e6
    plain = report(path, "dirty-rate", "--skip", "5")
    rates = {t["pid"]: t["mean_bytes_per_s"] for t in plain["targets"]}
    # at region granularity slow's 64 KiB count as the whole region they lie in (seen: 64-512 KiB a window)
    assert rates[fast["pid"]] > 5 * rates[slow["pid"]] > 0, rates
    assert [t["pid"] for t in plain["targets"]] == [slow["pid"], fast["pid"]]
    assert rates[slow["pid"]] * window_s >= 64 * 1024 * 0.5  # it rewrites its range many times a window
    # a link between the two rates: the slow writer converges, the fast one does not
    bandwidth = (rates[fast["pid"]] * rates[slow["pid"]]) ** 0.5
    data = report(path, "dirty-rate", "--skip", "5", "--bandwidth", f"{bandwidth:.0f}", "--memory", "64MiB")
    first, second = data["targets"]
    assert first["pid"] == slow["pid"] and first["migration"]["converges"]
    assert second["pid"] == fast["pid"] and not second["migration"]["converges"]
    for t in data["targets"]:
        expected = dr.precopy(64 * MiB, t["mean_bytes_per_s"], round(bandwidth), 0.3)
        assert t["migration"]["rounds"] == expected.rounds
        assert t["migration"]["sent_bytes"] == pytest.approx(expected.sent_bytes)
    m = first["migration"]
    r = first["mean_bytes_per_s"] / round(bandwidth)
    geometric = sum(64 * MiB * r**i / round(bandwidth) for i in range(m["rounds"] + 1))
    assert m["total_s"] == pytest.approx(geometric, rel=1e-6)
    text = subprocess.run([DAMON_BPF, "report", "dirty-rate", "-i", str(path), "--skip", "5", "--bandwidth",
                           f"{bandwidth:.0f}", "--memory", "64MiB"], capture_output=True, text=True).stdout
    assert text.strip().splitlines()[0].startswith(f"move first: target {first['target_id']} (pid {slow['pid']})")


def test_sharing_pairs_the_two_writers_of_one_range_and_not_the_third(tmp_path, accessgen):
    """Recorded while the threads make their passes only (attached after they started, ended before they
    stop): their start-up and exit fault in the big regions of the mmap area (stacks, own's range and the
    gaps between), which made the writers and own share gigabytes there in the windows that held them.

    A window of 500 ms, not DAMON's 100 ms: a writer is seen in a window only if it got the CPU for a pass
    over its 1024 pages there (a fault is reported only for the first touch after the range is dropped),
    about 20 ms of CPU with tracing. On the 2-CPU machine at load 10-12 each writer got 5-10 ms of CPU per
    100 ms (schedstat), so 100 ms windows held partial passes and whole windows without one writer; 500 ms
    windows hold 25-50 ms of CPU each, a pass or more, even so."""
    with running(accessgen, "one:0:s:4096:0", "two:1:s:4096:0", "own:-1:w:4096:0", seconds=60) as info:
        out = record_pids(tmp_path, [info["pid"]], "--aggr-us", "500ms", seconds=4)
    tids = {t["name"]: t["tid"] for t in info["threads"]}
    data = report(out, "sharing")
    jaccard = {(p["a"], p["b"]): p["jaccard"] for p in data["pairs"]}
    shared = {(p["a"], p["b"]): p["shared_bytes"] for p in data["pairs"]}
    writers = tuple(sorted((tids["one"], tids["two"])))
    assert jaccard[writers] >= 0.5, data["pairs"]
    assert (data["pairs"][0]["a"], data["pairs"][0]["b"]) == writers
    # the shared range (4 MiB) in most windows
    assert data["nr_windows"] >= 4 and shared[writers] >= data["nr_windows"] / 2 * 4 * MiB, data
    for writer in writers:
        key = tuple(sorted((writer, tids["own"])))
        assert jaccard.get(key, 0.0) <= 0.05, data["pairs"]
        assert shared.get(key, 0) <= 0.05 * shared[writers]
    assert list(writers) in data["groups"] and not any(tids["own"] in g and len(g) > 1 for g in data["groups"])


def test_numa_on_this_one_node_host_says_plainly_there_is_nothing_to_move(tmp_path, accessgen):
    with running(accessgen, "hot:0:w:8192:0", "steady:1:W:8192:0", seconds=60) as info:
        path = record_pids(tmp_path, [info["pid"]])
        data = report(path, "numa")
        applied = subprocess.run([DAMON_BPF, "report", "numa", "-i", str(path), "--apply"], capture_output=True,
                                 text=True, timeout=120)
    assert data["nodes"] == [0] and data["pid"] == info["pid"]
    assert data["cpu_map_from"] == "record"        # record stores the CPU -> node map in its meta
    assert data["placement_known"] and data["to_move"] == [] and data["bytes_to_move"] == 0
    assert data["note"] == "nothing to move: this host has one NUMA node, every page is local"
    lo, hi = next((t["start"], t["end"]) for t in info["threads"] if t["name"] == "hot")
    inside = [r for r in data["regions"] if r["start"] < hi and r["end"] > lo]
    assert inside and all(r["access_share_by_node"] == {"0": pytest.approx(1.0)} for r in inside)
    present = sum(sum((r["page_bytes_by_node"] or {}).values()) for r in data["regions"])
    assert present > 0 and all(set(r["page_bytes_by_node"]) <= {"0"} for r in data["regions"])
    assert applied.returncode == 0, applied.stderr
    assert "--apply: nothing to move: this host has one NUMA node" in applied.stdout
    # the process is gone now: the access side is still there, the placement is said to be unknown
    gone = report(path, "numa")
    assert not gone["placement_known"] and "is gone" in gone["note"] and gone["regions"]
    applied = subprocess.run([DAMON_BPF, "report", "numa", "-i", str(path), "--apply"], capture_output=True,
                             text=True, timeout=120)
    assert applied.returncode == 1 and applied.stderr.startswith("damon-bpf: error: cannot --apply: process")
    assert len(applied.stderr.strip().splitlines()) == 1


def test_record_apply_on_this_one_node_host_says_plainly_there_is_nothing_to_move(tmp_path, accessgen):
    with running(accessgen, "hot:0:w:8192:0", seconds=60) as info:
        out = tmp_path / "damon.data"
        result = subprocess.run([DAMON_BPF, "record", "-o", str(out), "--duration", "3", "--apply", "-p",
                                 str(info["pid"])], capture_output=True, text=True, timeout=120)
        bad = subprocess.run([DAMON_BPF, "record", "-o", str(tmp_path / "x.data"), "--duration", "1", "--apply",
                              "--quota", "fast", "-p", str(info["pid"])], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "damon-bpf: --apply: nothing to move: this host has one NUMA node, every page is local" in result.stderr
    assert read_record(str(out))[0].snapshots   # the recording itself is whole
    assert bad.returncode == 2, bad.stderr
    assert bad.stderr.startswith("damon-bpf: error: bad --quota: 'fast' is not a rate"), bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
