#!/usr/bin/env python3
"""What do the sharing and NUMA series cost, by threads, and how long do they hold the collector's thread?
``metrics.answers.target_answers`` (report sharing and report numa over one target's last 15 s: 150 windows at
DAMON's 100 ms) on synthetic windows whose regions lie in a buffer of this process, so report numa's
move_pages(2) query is the real syscall. Each thread reports in a random third of the regions in each window, on
CPU 0 or 1.

    bench_metric_answers.py [--threads 2 16 32 200] [--regions 100] [--windows 150] [--repeat 3]

First table: per thread count, the best wall time of a call and of its two parts (sharing*: report sharing over
every thread; the answers compare the MAX_THREADS busiest only). Second table: the collector's thread per
answers round, before (the round computed on it, as the exporter did until the answers got their own thread:
it is held the whole round) and after (``MetricsExporter._answer`` hands the round to its worker): the time the
call holds the thread (median over --repeat rounds), and, while the worker computes, how late a 10 ms tick of
the collector's thread comes (median and max over the ticks: the worker shares the GIL), next to the worker's
round time. Asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
import time

import numpy as np

from damon_bpf.core.attrs import MonitoringAttrs
from damon_bpf.core.snapshot import Snapshot
from damon_bpf.metrics import MetricsExporter
from damon_bpf.metrics.answers import NUMA_SAMPLES, TOP_PAIRS, target_answers
from damon_bpf.recordfile import TargetRecord
from damon_bpf.reports import numa, sharing
from damon_bpf.reports.recent import RecentRecords

PAGE = os.sysconf("SC_PAGESIZE")
REGION_PAGES = 64


def make_record(buffer: np.ndarray, threads: int, regions: int, windows: int, seed: int = 1) -> TargetRecord:
    rng = np.random.default_rng(seed)
    base = (buffer.ctypes.data + PAGE - 1) // PAGE * PAGE
    start = (base + np.arange(regions, dtype=np.uint64) * REGION_PAGES * PAGE).astype(np.uint64)
    end = start + np.uint64(REGION_PAGES * PAGE)
    snaps = []
    for i in range(windows):
        by_tid = {tid: (rng.random(regions) < 1 / 3) * rng.integers(1, 20, regions) for tid in range(1, threads + 1)}
        reports = sum(by_tid.values())
        on_cpu0 = rng.integers(0, reports + 1)
        snaps.append(Snapshot(i * 10**8, (i + 1) * 10**8, start, end, np.minimum(reports, 20), np.full(regions, 5),
                              reports, reports, np.zeros(regions, int), by_cpu={0: on_cpu0, 1: reports - on_cpu0},
                              by_tid=by_tid))
    return TargetRecord(0, os.getpid(), 5000, 100_000, 1_000_000, snaps, {"numa_cpu_nodes": {"0": 0, "1": 0}})


def best(repeat: int, call, *args, **kwargs) -> float:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        call(*args, **kwargs)
        times.append(time.perf_counter() - began)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[2, 16, 32, 200])
    parser.add_argument("--regions", type=int, default=100)
    parser.add_argument("--windows", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    buffer = np.ones((args.regions + 1) * REGION_PAGES * PAGE, dtype=np.uint8)   # written: every page present
    print(f"{args.regions} regions of {REGION_PAGES} pages, {args.windows} windows, best of {args.repeat}; "
          f"load average {os.getloadavg()[0]:.1f}")
    print(f"{'threads':>8} {'answers':>10} {'sharing*':>10} {'numa':>10} {'pairs':>7}")
    for threads in args.threads:
        rec = make_record(buffer, threads, args.regions, args.windows)
        total = best(args.repeat, target_answers, rec)
        shared = best(args.repeat, sharing.sharing, [rec], target_id=0)
        placed = best(args.repeat, numa.numa, [rec], 0, samples=NUMA_SAMPLES)
        pairs = target_answers(rec).nr_pairs
        print(f"{threads:>8} {1e3 * total:>8.1f}ms {1e3 * shared:>8.1f}ms {1e3 * placed:>8.1f}ms {pairs:>7}")
    print("the collector's thread per answers round (one target): held by the call; a 10 ms tick's lateness "
          "while the worker runs (median / max)")
    print(f"{'threads':>8} {'before: held':>13} {'after: held':>12} {'tick late':>18} {'worker round':>13}")
    for threads in args.threads:
        rec = make_record(buffer, threads, args.regions, args.windows)
        before = [held(target_answers, rec, TOP_PAIRS) for _ in range(args.repeat)]
        after = [handed_over(rec) for _ in range(args.repeat)]
        late = [x for _held, ticks, _round in after for x in ticks]
        print(f"{threads:>8} {1e3 * statistics.median(before):>11.1f}ms "
              f"{1e3 * statistics.median(h for h, _t, _r in after):>10.2f}ms "
              f"{1e3 * statistics.median(late):>7.1f} / {1e3 * max(late):>5.1f}ms "
              f"{1e3 * statistics.median(r for _h, _t, r in after):>11.1f}ms")


def held(call, *args) -> float:
    began = time.perf_counter()
    call(*args)
    return time.perf_counter() - began


def handed_over(rec: TargetRecord) -> tuple[float, list[float], float]:
    """One round through a MetricsExporter fed ``rec``'s windows: the time ``_answer`` held the calling thread,
    the lateness of each 10 ms tick of this thread until the worker's round ended, and the round's wall time."""
    ended = threading.Event()
    exporter = MetricsExporter()
    exporter.answers.on_done = ended.set
    exporter.recent = RecentRecords(MonitoringAttrs(), keep=len(rec.snapshots))
    for snapshot in rec.snapshots:
        exporter.on_snapshot(0, rec.pid, snapshot)
    exporter._fold()
    hold = held(exporter._answer)
    ticks = []
    while not ended.is_set():
        due = time.perf_counter() + 0.01
        time.sleep(0.01)
        ticks.append(max(0.0, time.perf_counter() - due))
    done = exporter.answers.take()
    assert done is not None and done.results[rec.pid][1] is not None
    return hold, ticks or [0.0], done.wall_s


if __name__ == "__main__":
    main()
