#!/usr/bin/env python3
"""`trace -o` JSON lines: events/s of the per-record formatter and of the vectorised writer (4-byte cells), same
batches. (The byte-matrix writer this replaced was compared here until the access record gained the ip.)

    bench_eventlog.py [--events 2000000] [--batch 65536] [--runs 3]

Batches look like a real trace (user-space addresses, monotonic times, few CPUs, pids and tids of a few
digits, reads and writes); each writer formats them all, best of --runs. Checks that all give the same
bytes, prints figures, asserts nothing else.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

from damon_bpf.access import ACCESS_DTYPE
from damon_bpf.eventlog import jsonl_bytes, jsonl_lines_per_event


def batches(events: int, batch: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    records = np.zeros(events, ACCESS_DTYPE)
    records["addr"] = 0x7F0000000000 + rng.integers(0, 1 << 36, events, dtype=np.uint64) * 4096
    records["time_ns"] = 10**13 + np.cumsum(rng.integers(100, 2000, events, dtype=np.uint64))
    records["cpu"] = rng.integers(0, 2, events)
    records["pid"] = rng.integers(1000, 400000, events)
    records["tid"] = records["pid"] + rng.integers(0, 64, events)
    records["write"] = rng.integers(0, 2, events)
    return [records[start:start + batch] for start in range(0, events, batch)]


def measure(writers: dict, work: list[np.ndarray], runs: int) -> dict[str, tuple[float, float, int]]:
    """Per writer: events/s by the best wall time and by the best CPU time of the process, and the bytes
    written. The writers take turns in each run, so a load that comes and goes hits them alike; CPU time is the
    steadier figure on a machine other work shares."""
    events = sum(map(len, work))
    best = {name: (float("inf"), float("inf"), 0) for name in writers}
    for _ in range(runs):
        for name, writer in writers.items():
            wall, cpu = time.perf_counter(), time.process_time()
            size = sum(len(writer(batch)) for batch in work)
            wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
            best[name] = (min(best[name][0], wall), min(best[name][1], cpu), size)
    return {name: (events / wall, events / cpu, size) for name, (wall, cpu, size) in best.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2_000_000)
    parser.add_argument("--batch", type=int, default=65536)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    work = batches(args.events, args.batch)
    assert all(jsonl_bytes(batch) == jsonl_lines_per_event(batch).encode() for batch in work[:3])
    figures = measure({"per-record f-strings": lambda batch: jsonl_lines_per_event(batch).encode(),
                       "4-byte cells (numpy)": jsonl_bytes},
                      work, args.runs)
    print(f"{args.events} events in batches of {args.batch}, best of {args.runs}; "
          f"{figures['4-byte cells (numpy)'][2] / args.events:.1f} bytes/event; load average "
          f"{os.getloadavg()[0]:.1f}")
    for name, (by_wall, by_cpu, _) in figures.items():
        print(f"{name}: {by_wall / 1e6:.2f} M events/s (wall), {by_cpu / 1e6:.2f} M events/s (CPU)")
    assert len({size for _, _, size in figures.values()}) == 1


if __name__ == "__main__":
    main()
